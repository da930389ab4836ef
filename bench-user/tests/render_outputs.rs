//! The outputs rendered from report.json: report.html loaded in headless
//! Chromium, profile.pb.gz decoded independently, report.md's content and
//! length. No root needed: everything renders from a trimmed real run
//! (tests/data/run-tcp: report.json and the stacks/ side files it names)
//! plus checklist, costs, metrics and calibration built here. Also: the
//! published JSON Schema is the one the report types generate, the fixture
//! is valid against it, and an older report or a changed side file is
//! refused in one line.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
};

use protoprof::{
    analyze::metrics::CATEGORIES,
    render,
    report::{
        CategoryCost, CipherBench, CostAttribution, FoldedGraph, Metric, Report, Role, RuleResult,
        ShareInterval, Verdict, WeightedName,
    },
};

mod support;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-tcp")
}

fn fixture() -> Report {
    render::read_json(&fixture_dir().join("report.json")).expect("fixture report")
}

/// The fixture's graphs, read through its report.json (hash-checked).
fn graphs() -> Vec<FoldedGraph> {
    render::read_run(&fixture_dir()).expect("fixture run").1
}

/// The fixture with the parts its run left empty filled in.
fn enriched() -> Report {
    let mut r = fixture();
    // Per-second latency of the rr phase (the fixture predates it).
    for p in r.workload.phases.iter_mut().filter(|p| p.pattern == "rr") {
        for (i, s) in p.timeseries.iter_mut().enumerate() {
            s.latency_p50_us = Some(250.0 + i as f64);
            s.latency_p99_us = Some(480.0 + i as f64);
        }
    }
    for t in &mut r.targets {
        let total = CATEGORIES.len() as u64 * 10;
        t.costs = Some(CostAttribution {
            phases: vec![0],
            samples: total,
            cpu_ns: 2e9,
            cpu_ns_source: "task-clock counter".into(),
            bytes: 600 << 20,
            categories: CATEGORIES
                .iter()
                .enumerate()
                .map(|(i, c)| CategoryCost {
                    category: c.to_string(),
                    samples: 10,
                    share: 10.0 / total as f64,
                    cpu_ns: 2e9 / CATEGORIES.len() as f64,
                    ns_per_byte: Some(0.125 * (i + 1) as f64),
                    interval: if i == 0 {
                        ShareInterval::Unavailable("2 thread(s) with samples".into())
                    } else {
                        ShareInterval::Interval {
                            low: 0.089,
                            high: 0.15 + 0.01 * i as f64,
                            blocks: 6,
                            method: "threads".into(),
                        }
                    },
                    measuring: *c == "profiler",
                })
                .collect(),
            unclassified: vec![WeightedName {
                name: "mystery<T>".into(),
                weight: 3,
                share: 0.3,
            }],
        });
        t.metrics
            .insert("cpu_ns_per_byte".into(), Metric::Value(3.25));
        t.metrics.insert(
            "allocs_per_mib".into(),
            Metric::Unavailable("alloc probe off".into()),
        );
    }
    r.checklist = checklist_rows(12);
    r.calibration = vec![CipherBench {
        primitive: "aes-gcm".into(),
        implementation: "ring AES-256-GCM".into(),
        record_bytes: 16384,
        ns_per_byte: 0.42,
    }];
    r
}

/// `n` rules for each target, verdicts cycling through all four; ids and
/// text carry characters that must be escaped.
fn checklist_rows(n: usize) -> Vec<RuleResult> {
    let verdicts = [
        Verdict::Fail,
        Verdict::Warn,
        Verdict::Ok,
        Verdict::NotEvaluated,
    ];
    let mut rows = Vec::new();
    for target in [Role::Client, Role::Server] {
        for i in 0..n {
            let verdict = verdicts[i % verdicts.len()];
            rows.push(RuleResult {
                id: format!("R{i:02}"),
                area: "syscalls".into(),
                title: format!("rule <{i}> & co"),
                target,
                verdict,
                metric: "bytes_per_write".into(),
                value: Some(512.0 + i as f64),
                unit: "B".into(),
                evidence: format!("evidence {target} {i}: 512 B | per write"),
                recommendation: if verdict == Verdict::Ok {
                    String::new()
                } else {
                    format!("batch writes ({target} {i})")
                },
            });
        }
    }
    rows
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-render-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser"] {
        if Command::new(name).arg("--version").output().is_ok() {
            return name;
        }
    }
    panic!(
        "headless Chromium is needed to check report.html: install it with `cargo xtask setup` \
         as root, or: apt-get update && apt-get install -y chromium"
    );
}

/// The DOM of `page` after its scripts ran, as Chromium serialises it.
fn dump_dom(page: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
            // Dump whatever is there rather than hang the test.
            "--timeout=30000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Values of `attr="…"` in order of appearance.
fn attr_values<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    dom.match_indices(&needle)
        .filter_map(|(i, _)| dom[i + needle.len()..].split('"').next())
        .collect()
}

/// Every frame name of a graph, as inferno labels it (without the kernel
/// suffix).
fn frame_names(graphs: &[FoldedGraph], graph: &str) -> Vec<String> {
    let g = graphs.iter().find(|g| g.name == graph).expect("graph");
    g.stacks
        .iter()
        .flat_map(|s| s.stack.split(';'))
        .map(|f| f.trim_end_matches("_[k]").to_string())
        .collect()
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let r = enriched();
    let graphs = graphs();
    let dir = scratch("html");
    render::write_all(&r, &graphs, &dir).expect("render");
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).expect("read html");
    for outside in ["src=\"http", "href=\"http", "<link", "url(http", "@import"] {
        assert!(
            !html.contains(outside),
            "report.html refers outside: {outside}"
        );
    }
    assert!(!html.contains("rule <0>"), "report text left unescaped");

    let dom = dump_dom(&page);
    assert!(
        attr_values(&dom, "data-errors").is_empty(),
        "page recorded errors: {:?}",
        attr_values(&dom, "data-errors")
    );
    assert_eq!(attr_values(&dom, "data-rendered"), vec!["ok"]);
    let charts = dom.matches("<svg class=\"chart\"").count();
    // bulk bytes; rr bytes, round trips and latency per second; latency
    // percentiles per phase.
    assert!(charts >= 5, "{charts} charts");
    assert!(
        dom.contains("phase 1 rr: round-trip latency per second"),
        "no latency-over-time chart"
    );

    // Checklist: one row per rule and target, coloured by verdict.
    assert_eq!(dom.matches("<tr class=\"rule ").count(), r.checklist.len());
    assert_eq!(
        dom.matches("<tr class=\"rule v-fail\"").count(),
        r.checklist
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .count()
    );
    assert!(dom.contains("batch writes (server 5)"));
    assert!(dom.contains("rule &lt;3&gt; &amp; co"));
    // Costs: every category with its ns/byte.
    for c in CATEGORIES {
        assert!(dom.contains(&format!("<td>{c}</td>")), "category {c}");
    }
    assert!(dom.contains("<td class=\"n\">0.875</td>"));
    assert!(dom.contains("12.5 % [8.9, 16.0] of 80 samples"));
    assert!(dom.contains("p99 — too few samples (n=4; p99 needs 299)"));
    assert!(dom.contains("aes-gcm"));

    // One iframe per graph; in each non-empty one, inferno's script ran and
    // its frames carry the graph's function names.
    assert_eq!(dom.matches("<iframe class=\"flame\"").count(), graphs.len());
    let drawn = attr_values(&dom, "data-frames");
    let firsts = attr_values(&dom, "data-first-frame");
    let non_empty: Vec<_> = graphs.iter().filter(|g| !g.stacks.is_empty()).collect();
    assert_eq!(drawn.len(), non_empty.len());
    for ((g, n), first) in non_empty.iter().zip(&drawn).zip(&firsts) {
        assert!(
            n.parse::<usize>().expect("count") > 0,
            "{}: no frames",
            g.name
        );
        let name = first.split(" (").next().expect("name");
        let name = name
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        assert!(
            name == "all" || frame_names(&graphs, &g.name).contains(&name),
            "{}: first frame {name:?} is not one of the graph's",
            g.name
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// The check above can fail: a page whose script throws reports it.
#[test]
fn report_html_check_catches_script_errors() {
    let dir = scratch("html-broken");
    render::write_html(&fixture(), &graphs(), &dir).expect("render");
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).expect("read");
    let broken = html.replacen(
        "</body>",
        "<script>throw new Error('boom')</script></body>",
        1,
    );
    std::fs::write(&page, broken).expect("write");
    let dom = dump_dom(&page);
    let errors = attr_values(&dom, "data-errors");
    assert!(
        errors.iter().any(|e| e.contains("boom")),
        "error not recorded: {errors:?}"
    );
    assert_eq!(attr_values(&dom, "data-rendered"), vec!["error"]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// profile.proto's messages, declared here apart from the renderer's, with
/// only the fields this test reads.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "12")]
        pub period: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

#[test]
fn profile_pb_gz_decodes_as_pprof() {
    use prost::Message as _;
    let r = fixture();
    let graphs = graphs();
    let dir = scratch("pprof");
    render::write_pprof(&r, &graphs, &dir).expect("render");
    let gz = std::fs::read(dir.join("profile.pb.gz")).expect("read");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .expect("gunzip");
    let p = pb::Profile::decode(&raw[..]).expect("decode");
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(s(0), "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(types, vec![("samples", "count"), ("cpu", "nanoseconds")]);
    let hz = r.probes.options.cpu_frequency_hz.expect("cpu probe on");
    assert_eq!(p.period, 1_000_000_000 / hz as i64);

    let cpu = graphs.iter().find(|g| g.name == "cpu").expect("cpu graph");
    assert_eq!(p.sample.len(), cpu.stacks.len());
    let counts: i64 = p.sample.iter().map(|x| x.value[0]).sum();
    assert_eq!(
        counts,
        cpu.stacks.iter().map(|x| x.count as i64).sum::<i64>()
    );
    let ns: i64 = p.sample.iter().map(|x| x.value[1]).sum();
    assert_eq!(ns, counts * p.period);

    let function = |location: u64| {
        let loc = p
            .location
            .iter()
            .find(|l| l.id == location)
            .expect("location");
        let f = p
            .function
            .iter()
            .find(|f| f.id == loc.line[0].function_id)
            .expect("function");
        (s(f.name), s(f.filename))
    };
    for (sample, stack) in p.sample.iter().zip(&cpu.stacks) {
        let parts: Vec<&str> = stack.stack.split(';').collect();
        // role and thread are labels, not frames.
        let labels: Vec<(&str, &str)> = sample.label.iter().map(|l| (s(l.key), s(l.str))).collect();
        assert_eq!(labels, vec![("role", parts[0]), ("thread", parts[1])]);
        let frames = &parts[2..];
        assert_eq!(sample.location_id.len(), frames.len());
        // Leaf first.
        let leaf = frames.last().expect("frames");
        let (name, file) = function(sample.location_id[0]);
        match leaf.strip_suffix("_[k]") {
            Some(k) => assert_eq!((name, file), (k, "[kernel]")),
            None => assert_eq!((name, file), (*leaf, "")),
        }
        let (root, _) = function(*sample.location_id.last().expect("root"));
        assert_eq!(root, frames[0].trim_end_matches("_[k]"));
    }
    let kernel = cpu.stacks.iter().any(|x| x.stack.ends_with("_[k]"));
    assert!(kernel, "fixture has a kernel leaf");
    assert!(p.string_table.iter().all(|x| !x.ends_with("_[k]")));
    for name in frame_names(&graphs, "cpu") {
        assert!(
            p.string_table.contains(&name),
            "{name} missing from the string table"
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn report_md_has_checklist_and_costs_within_budget() {
    let r = enriched();
    let md = render::markdown(&r);
    let lines = md.lines().count();
    assert!(lines <= 150, "report.md has {lines} lines");
    for c in &r.checklist {
        let row = format!(
            "| {} {} | {} | {} |",
            c.id,
            c.title,
            c.target,
            c.verdict.as_str()
        );
        assert!(md.contains(&row), "missing checklist row {row}");
    }
    assert!(md.contains("512 B \\| per write"), "cell pipe not escaped");
    // The categories table has one column pair per target.
    assert!(md.contains(
        "| category | server share | server CPU ns/B | client share | client CPU ns/B |"
    ));
    // Shares carry their samples and interval, or say there is none.
    assert!(
        md.contains("| copy | 12.5 % [8.9, 16.0] of 80 samples | 0.250 | 12.5 % [8.9, 16.0] of 80 samples | 0.250 |"),
        "{md}"
    );
    assert!(
        md.contains("| crypto | 12.5 % (no interval) of 80 samples |"),
        "{md}"
    );
    // Four connections: no set-up percentile, said so; 5498 round trips:
    // p50 to p99 with their bounds.
    assert!(
        md.contains("p50 — too few samples (n=4; p50 needs 5) · p99 — too few samples (n=4; p99 needs 299) (n=4)"),
        "{md}"
    );
    assert!(
        md.contains("p99 5.45 ms [321.0 µs, 22.69 ms] (n=5498)"),
        "{md}"
    );
    assert!(md.contains("6 fail · 6 warn · 6 ok · 6 not evaluated"));

    // A long checklist still fits, failed rows first.
    let mut long = r.clone();
    long.checklist = checklist_rows(60);
    long.warnings = (0..20).map(|i| format!("warning {i}")).collect();
    // More endpoints than a chain has: details must give way.
    let extra: Vec<_> = (0..3)
        .flat_map(|i| {
            r.targets.iter().cloned().map(move |mut t| {
                t.pid += 1000 * (i + 1);
                t
            })
        })
        .collect();
    long.targets.extend(extra);
    let md = render::markdown(&long);
    let lines = md.lines().count();
    assert!(lines <= 150, "long report.md has {lines} lines");
    let fails = md.lines().filter(|l| l.contains("| fail |")).count();
    assert_eq!(fails, 30);
    assert!(md.contains("more rows (ok or not evaluated) in report.html"));
    assert!(md.contains("left out to keep this short"));
}

#[test]
fn absent_parts_say_not_measured() {
    let r = fixture();
    assert!(r.checklist.is_empty() && r.targets.iter().all(|t| t.costs.is_none()));
    let md = render::markdown(&r);
    assert!(md.contains("Checklist: not evaluated."));
    assert!(md.contains("client: cost attribution not measured."));
    let html = render::html(&r, &[]).expect("html");
    assert!(html.contains("Checklist: not evaluated."));
    assert!(html.contains("Cost attribution: not measured."));
    assert!(html.contains("Metrics: not measured."));
    assert!(html.contains("Cipher calibration: not measured."));
}
