//! `cargo xtask figures`: the measured numbers in docs/ are produced, not
//! typed. Each one lives in a marker block
//!
//! ```text
//! <!-- figures: ID -->
//! … generated …
//! <!-- /figures: ID -->
//! ```
//!
//! whose ID is one of [`FIGURES`]; `cargo xtask figures [DOC…]` reruns what
//! each block needs and rewrites it with the date, the machine (as the
//! runs' report.json names it), the command, the sample count and the
//! spread. A block that was not regenerated keeps its text, which says
//! since when.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// One generated block: where it lives and what produces it.
pub struct Figure {
    pub id: &'static str,
    pub doc: &'static str,
    /// What the block holds, for `--list`.
    pub what: &'static str,
    /// Runs for many minutes: only with `--slow`.
    pub slow: bool,
}

/// Every figure `cargo xtask figures` knows.
pub const FIGURES: &[Figure] = &[
    Figure {
        id: "probes-main",
        doc: "docs/probes.md",
        what: "main-pass probe cost against the control pass, floor rows first (tcp)",
        slow: false,
    },
    Figure {
        id: "probes-side-by-side",
        doc: "docs/probes.md",
        what: "main-pass probe cost measured side by side (probes.alternate): the method's A/A row, the floor, the default set (tcp)",
        slow: true,
    },
    Figure {
        id: "probes-per-call",
        doc: "docs/probes.md",
        what: "per-call pass of tuic: its throughput against the main pass, detach time, time per crypto call",
        slow: false,
    },
    Figure {
        id: "checklist-examples",
        doc: "docs/checklist.md",
        what: "the measured examples: tuic's CPU, crypto, copying, allocations, syscalls; tcp's copy share",
        slow: false,
    },
    Figure {
        id: "protocols",
        doc: "docs/benchmarks.md",
        what: "our endpoints against sing-box's, every protocol, probes off",
        slow: false,
    },
    Figure {
        id: "compare-pool",
        doc: "docs/validating-optimizations.md",
        what: "tcp relay.mode=copy against pooled, compared (6 runs a side)",
        slow: true,
    },
    Figure {
        id: "compare-splice",
        doc: "docs/validating-optimizations.md",
        what: "tcp relay.mode=reuse against splice, compared (6 runs a side)",
        slow: true,
    },
    Figure {
        id: "soak",
        doc: "docs/soak.md",
        what: "a one-hour soak of tuic: each interval's throughput, p99, RSS and descriptors, the leak verdicts, the runner's footprint",
        slow: true,
    },
    Figure {
        id: "stress",
        doc: "docs/stress.md",
        what: "connection rate, a 1 GiB transfer, 500 concurrent connections, leak and descriptor checks: every protocol, ours and sing-box's (`cargo xtask stress`)",
        slow: true,
    },
    Figure {
        id: "networks",
        doc: "docs/networks.md",
        what: "hysteria2 (Brutal, BBR), tuic, tls over 50 ms RTT, 100 Mbit/s, 0/1/5 % loss in namespaces, ours and sing-box's",
        slow: true,
    },
];

/// A marker block in a document: its id and the byte range of its body
/// (between the begin line and the end line).
#[derive(Debug, PartialEq)]
pub struct Block {
    pub id: String,
    pub body: std::ops::Range<usize>,
}

const BEGIN: &str = "<!-- figures: ";
const END: &str = "<!-- /figures: ";

/// The marker blocks of a document, in order. A begin without its end, an
/// end without its begin, or a nested block is an error naming the line.
pub fn blocks(text: &str) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, usize)> = None;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let marker = |prefix: &str| {
            trimmed
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(" -->"))
                .map(str::trim)
                .map(str::to_string)
        };
        if let Some(id) = marker(BEGIN) {
            if let Some((prev, at, _)) = &open {
                bail!(
                    "line {}: block {id:?} opens inside block {prev:?} (line {at})",
                    n + 1
                );
            }
            open = Some((id, n + 1, offset + line.len()));
        } else if let Some(id) = marker(END) {
            match open.take() {
                Some((begun, _, start)) if begun == id => out.push(Block {
                    id,
                    body: start..offset,
                }),
                Some((begun, at, _)) => {
                    bail!("line {}: end of {id:?} closes {begun:?} (line {at})", n + 1)
                }
                None => bail!("line {}: end of {id:?} without its begin", n + 1),
            }
        }
        offset += line.len();
    }
    if let Some((id, at, _)) = open {
        bail!("line {at}: block {id:?} is never closed ({END}{id} -->)");
    }
    Ok(out)
}

/// The document with block `id`'s body replaced.
pub fn rewrite(text: &str, id: &str, body: &str) -> Result<String> {
    let found = blocks(text)?;
    let Some(b) = found.iter().find(|b| b.id == id) else {
        bail!("no block {id:?} ({BEGIN}{id} -->)");
    };
    let mut body = body.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(format!(
        "{}{body}{}",
        &text[..b.body.start],
        &text[b.body.end..]
    ))
}

/// What `cargo xtask figures` was asked to do.
pub struct Request {
    /// Only the blocks of these documents (all when empty).
    pub docs: Vec<PathBuf>,
    /// Only these figures (all when empty).
    pub only: Vec<String>,
    /// Run the slow figures too.
    pub slow: bool,
    /// Write the soak figure from this finished soak instead of running one.
    pub soak_dir: Option<PathBuf>,
}

/// Regenerate the blocks asked for; each document is written as soon as one
/// of its blocks is done, so an interrupted run keeps what it finished.
pub fn run(root: &Path, req: &Request) -> Result<()> {
    for d in &req.docs {
        let rel = d.strip_prefix(root).unwrap_or(d);
        if !FIGURES.iter().any(|f| Path::new(f.doc) == rel) {
            bail!(
                "{}: no figure lives in this document; documents with figures: {}",
                d.display(),
                doc_list()
            );
        }
    }
    for id in &req.only {
        if !FIGURES.iter().any(|f| f.id == id) {
            bail!("--only {id}: no such figure; `cargo xtask figures --list` names them");
        }
    }
    let mut skipped = Vec::new();
    for f in FIGURES {
        let wanted_doc = req.docs.is_empty()
            || req
                .docs
                .iter()
                .any(|d| d.strip_prefix(root).unwrap_or(d) == Path::new(f.doc));
        let wanted_id = req.only.is_empty() || req.only.iter().any(|o| o == f.id);
        if !wanted_doc || !wanted_id {
            continue;
        }
        // A soak already run is no slow figure.
        let slow = f.slow && !(f.id == "soak" && req.soak_dir.is_some());
        if slow && !req.slow {
            skipped.push(f.id);
            continue;
        }
        println!("figures: {} ({}) …", f.id, f.doc);
        let body = generate(root, f.id, req.soak_dir.as_deref())?;
        let path = root.join(f.doc);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", f.doc))?;
        let text = rewrite(&text, f.id, &body).with_context(|| f.doc.to_string())?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", f.doc))?;
        println!("figures: {} written", f.id);
    }
    for id in skipped {
        println!("figures: {id} not regenerated (slow: add --slow)");
    }
    Ok(())
}

fn doc_list() -> String {
    let mut docs: Vec<_> = FIGURES.iter().map(|f| f.doc).collect();
    docs.dedup();
    docs.join(", ")
}

fn generate(root: &Path, id: &str, soak_dir: Option<&Path>) -> Result<String> {
    match id {
        "probes-main" => probes_main(root),
        "probes-side-by-side" => probes_side_by_side(root),
        "probes-per-call" => probes_per_call(root),
        "checklist-examples" => checklist_examples(root),
        "protocols" => protocols(root),
        "compare-pool" => compare(root, "relay.mode=copy,relay.mode=pooled"),
        "compare-splice" => compare(root, "relay.mode=reuse,relay.mode=splice"),
        "networks" => networks(root),
        "stress" => crate::stress::figure(root),
        "soak" => soak(root, soak_dir),
        _ => bail!("no generator for figure {id:?}"),
    }
}

/// The stamp every block opens with.
pub struct Stamp {
    pub command: String,
    pub machine: String,
    pub load: Load,
}

impl Stamp {
    pub fn line(&self) -> String {
        format!(
            "_Generated {} by `{}` on {}; load average (1 min) {} during the runs \
             (the machine may have been shared: see the spread)._\n\n",
            utc_now(),
            self.command,
            self.machine,
            self.load.range()
        )
    }
}

/// The lowest and highest 1-minute load average seen between runs.
#[derive(Default)]
pub struct Load {
    seen: Vec<f64>,
}

impl Load {
    pub fn sample(&mut self) {
        if let Some(v) = load_average() {
            self.seen.push(v);
        }
    }

    pub fn range(&self) -> String {
        let lo = self.seen.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.seen.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if self.seen.is_empty() {
            "unknown".into()
        } else {
            format!("{lo:.1}–{hi:.1}")
        }
    }
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "(date unknown)".into())
}

/// "CPU model, N CPUs, M GiB, Linux K (machine 0123abcd)" from a report's
/// `run.machine`, as bench-user's machine.rs describes it.
pub fn machine_line(report: &serde_json::Value) -> String {
    let m = &report["run"]["machine"];
    let gib = m["memory_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64;
    format!(
        "{}, {} CPUs, {gib:.0} GiB, Linux {} (machine {})",
        m["cpu_model"].as_str().unwrap_or("unknown CPU"),
        m["cpus"].as_u64().unwrap_or(0),
        m["kernel"].as_str().unwrap_or("?"),
        m["fingerprint"]
            .as_str()
            .map_or("?", |f| &f[..f.len().min(12)])
    )
}

/// One `protoprof profile` run; its run directory and report.json.
pub fn profile_run(
    root: &Path,
    out: &Path,
    profile: &str,
    duration: Option<f64>,
    sets: &[&str],
) -> Result<(PathBuf, serde_json::Value)> {
    let mut cmd = Command::new(root.join("target/release/protoprof"));
    cmd.current_dir(root)
        .args(["profile", profile, "--profiles"])
        .arg(root.join("profiles"))
        .arg("--out")
        .arg(out);
    if let Some(d) = duration {
        cmd.args(["--duration", &d.to_string()]);
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running protoprof")?;
    if !output.status.success() {
        bail!(
            "protoprof profile {profile} {sets:?} failed: {}",
            output.status
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(text.lines().last().unwrap_or_default().trim());
    let report = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json"))
            .with_context(|| format!("reading {}/report.json", dir.display()))?,
    )
    .context("parsing report.json")?;
    Ok((dir, report))
}

/// "median [min–max], n=N" of values, with `digits` decimals.
pub fn spread(v: &mut [f64], digits: usize) -> String {
    match crate::median(v) {
        // median() sorted v.
        Some(m) => format!(
            "{m:.digits$} [{:.digits$}–{:.digits$}], n={}",
            v[0],
            v[v.len() - 1],
            v.len()
        ),
        None => "–".into(),
    }
}

/// "median [min–max], n=N" as [`spread`], then the median's
/// distribution-free interval of at least 95 % (order statistics k and
/// n+1−k, the largest k whose binomial tail is at most 2.5 %), or "too few
/// runs for an interval" below the 6 runs it needs.
pub fn spread_with_interval(v: &mut [f64], digits: usize) -> String {
    let cell = spread(v, digits);
    if v.is_empty() {
        return cell;
    }
    // spread() sorted v.
    match median_interval_rank(v.len()) {
        Some(k) => format!(
            "{cell}; 95 % [{:.digits$}, {:.digits$}]",
            v[k - 1],
            v[v.len() - k]
        ),
        None => format!("{cell}; too few runs for an interval"),
    }
}

/// The rank k of the median's interval [x(k), x(n+1−k)] for n sorted
/// values: the largest k with P(Binomial(n, ½) ≤ k−1) ≤ 0.025.
fn median_interval_rank(n: usize) -> Option<usize> {
    let n = u32::try_from(n).ok().filter(|&n| n <= 1000)?;
    let total = 2f64.powi(n as i32);
    let (mut tail, mut choose, mut best) = (0.0, 1.0, None);
    for i in 0..n / 2 {
        // tail = P(X ≤ i), choose = C(n, i).
        tail += choose / total;
        if tail > 0.025 {
            break;
        }
        best = Some(i as usize + 1);
        choose = choose * f64::from(n - i) / f64::from(i + 1);
    }
    best
}

const PROBES_REPEAT: usize = 5;
const PROBES_DURATION: f64 = 4.0;
const PROBES_ONLY: &[&str] = &["floor", "default set"];

fn probes_main(root: &Path) -> Result<String> {
    let only: Vec<String> = PROBES_ONLY.iter().map(|s| s.to_string()).collect();
    let t = crate::bench_probes(root, PROBES_REPEAT, PROBES_DURATION, &only)?;
    let stamp = Stamp {
        command: format!(
            "cargo xtask bench probes --repeat {PROBES_REPEAT} --duration {PROBES_DURATION} {}",
            PROBES_ONLY
                .iter()
                .map(|o| format!("--only {o:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        machine: t.machine,
        load: t.load,
    };
    Ok(format!(
        "{}Each cell: probed / unprofiled from the control pass of the same run, median \
         [min–max] over n runs of {PROBES_DURATION} measured seconds (tcp profile: bulk, then \
         closed-loop rr), and from 6 runs on the median's distribution-free 95 % interval. The load generator, the sink (hashing every byte) and both \
         endpoints share the machine's cores.\n\n{}",
        stamp.line(),
        t.table
    ))
}

const SIDE_BY_SIDE_REPEAT: usize = 5;
const SIDE_BY_SIDE_DURATION: f64 = 45.0;
/// The A/A row, the default set against its floor, and each attach
/// point's floor beside its probe: where the cost sits.
const SIDE_BY_SIDE_ONLY: &[&str] = &[
    "counters",
    "floor of the default",
    "default set, main pass",
    "floor, one point: an empty program on sys_exit alone",
    "syscalls",
    "floor, one point: an empty program on sched_switch alone",
    "offcpu",
];

fn probes_side_by_side(root: &Path) -> Result<String> {
    let only: Vec<String> = SIDE_BY_SIDE_ONLY.iter().map(|s| s.to_string()).collect();
    let t =
        crate::bench_probes_alternating(root, SIDE_BY_SIDE_REPEAT, SIDE_BY_SIDE_DURATION, &only)?;
    let stamp = Stamp {
        command: format!(
            "cargo xtask bench probes --alternate --repeat {SIDE_BY_SIDE_REPEAT} --duration {SIDE_BY_SIDE_DURATION} {}",
            SIDE_BY_SIDE_ONLY
                .iter()
                .map(|o| format!("--only {o:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        machine: t.machine,
        load: t.load,
    };
    Ok(format!(
        "{}Each cell: throughput in a second with the programs attached / the adjacent \
         second without (`probes.alternate`), one ratio per pair of seconds, pooled over \
         {SIDE_BY_SIDE_REPEAT} runs of {SIDE_BY_SIDE_DURATION} measured seconds (tcp profile: \
         bulk, then closed-loop rr, 2:1): median [min–max], n pairs, and the median's \
         distribution-free 95 % interval. The counters row switches nothing (the counters are \
         read from /proc): its ratios are the method's own noise. The load generator, the sink \
         (hashing every byte) and both endpoints share the machine's cores.\n\n{}",
        stamp.line(),
        t.table
    ))
}

const PER_CALL_RUNS: usize = 3;

fn probes_per_call(root: &Path) -> Result<String> {
    let out = root.join("target/protoprof/figures-per-call");
    let _ = std::fs::remove_dir_all(&out);
    let mut load = Load::default();
    let (mut bulk, mut rr, mut detach, mut per_call_us) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut calls = 0u64;
    let mut machine = String::new();
    for _ in 0..PER_CALL_RUNS {
        load.sample();
        let (dir, r) = profile_run(root, &out, "tuic", None, &[])?;
        machine = machine_line(&r);
        for o in r["probes"]["per_call_pass"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match o["pattern"].as_str() {
                Some("bulk") => bulk.extend(o["ratio"].as_f64()),
                Some("rr") => rr.extend(o["ratio"].as_f64()),
                _ => {}
            }
        }
        let log = std::fs::read_to_string(dir.join("run.log")).context("reading run.log")?;
        detach.push(per_call_detach_s(&log).context("run.log has no per-call pass detach lines")?);
        // Mean time per timed crypto call, per run, over both endpoints:
        // each symbol's mean weighted by its calls.
        let (mut ns, mut n) = (0.0, 0u64);
        for t in r["targets"].as_array().into_iter().flatten() {
            for s in t["crypto"]["symbols"].as_array().into_iter().flatten() {
                if let (Some(mean), Some(c)) = (s["mean_ns"].as_f64(), s["calls"].as_u64()) {
                    ns += mean * c as f64;
                    n += c;
                }
            }
        }
        calls += n;
        if n > 0 {
            per_call_us.push(ns / n as f64 / 1000.0);
        }
    }
    load.sample();
    let stamp = Stamp {
        command: format!("cargo xtask profile tuic, {PER_CALL_RUNS} times"),
        machine,
        load,
    };
    Ok(format!(
        "{}| per-call pass of tuic (alloc + crypto uprobes) | median [min–max], n runs |\n\
         |---|---:|\n\
         | bulk throughput, per-call pass / main pass | {} |\n\
         | rr throughput, per-call pass / main pass | {} |\n\
         | detaching the per-call probes, s (run.log: `read … stacks` → `probes detached`) | {} |\n\
         | time per timed crypto call (entry + return probe included), µs; {calls} calls in all | {} |\n",
        stamp.line(),
        spread(&mut bulk, 3),
        spread(&mut rr, 3),
        spread(&mut detach, 3),
        spread(&mut per_call_us, 2),
    ))
}

/// Seconds between the per-call pass's last read and its "probes detached"
/// line in run.log (`[   12.345s] message`): the second pass's detach.
pub fn per_call_detach_s(log: &str) -> Option<f64> {
    let stamped: Vec<(f64, &str)> = log
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (t, msg) = rest.split_once("s] ")?;
            Some((t.trim().parse().ok()?, msg))
        })
        .collect();
    let start = stamped
        .iter()
        .position(|(_, m)| m.starts_with("per-call pass"))?;
    let pass = &stamped[start..];
    let done = pass.iter().position(|(_, m)| *m == "probes detached")?;
    let read = pass[..done]
        .iter()
        .rposition(|(_, m)| m.starts_with("read "))?;
    Some(pass[done].0 - pass[read].0)
}

const EXAMPLE_RUNS: usize = 3;

fn checklist_examples(root: &Path) -> Result<String> {
    let out = root.join("target/protoprof/figures-checklist");
    let _ = std::fs::remove_dir_all(&out);
    let mut load = Load::default();
    let mut machine = String::new();
    // (label, metric, scale, unit) per endpoint.
    let tuic_rows: &[(&str, &str, f64, &str)] = &[
        ("CPU per byte (bulk)", "cpu_ns_per_byte", 1.0, "ns/B"),
        ("crypto per byte", "crypto_ns_per_byte", 1.0, "ns/B"),
        (
            "crypto against the calibration",
            "crypto_vs_calibration",
            1.0,
            "×",
        ),
        ("copying, share of CPU", "copy_share", 100.0, "%"),
        ("allocations per MiB", "allocs_per_mib", 1.0, "1/MiB"),
        (
            "bytes allocated per byte moved",
            "alloc_bytes_per_byte",
            1.0,
            "B/B",
        ),
        ("syscalls per MiB (bulk)", "syscalls_per_mib", 1.0, "1/MiB"),
        (
            "bytes per read (bulk)",
            "bytes_per_read",
            1.0 / 1024.0,
            "KiB",
        ),
    ];
    let mut values: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; tuic_rows.len()];
    let mut calibration = std::collections::BTreeMap::<String, Vec<f64>>::new();
    let mut verdicts = std::collections::BTreeMap::<String, Vec<String>>::new();
    for _ in 0..EXAMPLE_RUNS {
        load.sample();
        let (_, r) = profile_run(root, &out, "tuic", Some(4.0), &[])?;
        machine = machine_line(&r);
        for t in r["targets"].as_array().into_iter().flatten() {
            let side = usize::from(t["role"] == "server");
            for (i, (_, key, scale, _)) in tuic_rows.iter().enumerate() {
                if let Some(v) = metric_value(&t["metrics"][key]) {
                    values[i][side].push(v * scale);
                }
            }
        }
        for c in r["calibration"].as_array().into_iter().flatten() {
            let name = c["implementation"].as_str().unwrap_or("?").to_string();
            calibration
                .entry(name)
                .or_default()
                .extend(c["ns_per_byte"].as_f64());
        }
        for c in r["checklist"].as_array().into_iter().flatten() {
            if c["id"] == "crypto.vs-calibration" || c["id"] == "cpu.per-byte" {
                let key = format!(
                    "{} {}",
                    c["target"].as_str().unwrap_or("?"),
                    c["id"].as_str().unwrap_or("?")
                );
                verdicts
                    .entry(key)
                    .or_default()
                    .push(c["verdict"].as_str().unwrap_or("?").to_string());
            }
        }
    }
    let mut copy = [Vec::new(), Vec::new()];
    for (i, mode) in ["relay.mode=reuse", "relay.mode=splice"].iter().enumerate() {
        for _ in 0..EXAMPLE_RUNS {
            load.sample();
            let (_, r) = profile_run(root, &out, "tcp", Some(3.0), &[mode])?;
            for t in r["targets"].as_array().into_iter().flatten() {
                copy[i].extend(metric_value(&t["metrics"]["copy_share"]).map(|v| v * 100.0));
            }
        }
    }
    load.sample();
    let stamp = Stamp {
        command: format!(
            "cargo xtask profile tuic --duration 4 ({EXAMPLE_RUNS} runs); \
             cargo xtask profile tcp --duration 3 --set relay.mode=reuse|splice ({EXAMPLE_RUNS} runs each)"
        ),
        machine,
        load,
    };
    let mut s = stamp.line();
    s.push_str(
        "Each cell: median [min–max] over n runs (tuic: n per endpoint). Per-MiB and \
         CPU-per-byte figures cover the bulk phase; allocation figures the per-call pass.\n\n\
         | tuic | client | server |\n|---|---:|---:|\n",
    );
    for (i, (label, _, _, unit)) in tuic_rows.iter().enumerate() {
        let [c, sv] = &mut values[i];
        let _ = writeln!(
            s,
            "| {label}, {unit} | {} | {} |",
            spread(c, 2),
            spread(sv, 2)
        );
    }
    let _ = writeln!(s, "\nCalibration (16 KiB records) in the same runs:\n");
    let _ = writeln!(s, "| cipher | ns/B |\n|---|---:|");
    for (name, v) in &mut calibration {
        let _ = writeln!(s, "| {name} | {} |", spread(v, 3));
    }
    let _ = writeln!(s, "\nVerdicts per run (tuic):\n");
    for (k, v) in &verdicts {
        let _ = writeln!(s, "- {k}: {}", v.join(", "));
    }
    let _ = writeln!(
        s,
        "\ntcp, copying as a share of CPU (both endpoints, per run): `relay.mode=reuse` {} %, \
         `relay.mode=splice` {} %.",
        spread(&mut copy[0], 1),
        spread(&mut copy[1], 1)
    );
    Ok(s)
}

/// A report metric's value, or None when it was not evaluated.
fn metric_value(m: &serde_json::Value) -> Option<f64> {
    m["value"].as_f64().or_else(|| m.as_f64())
}

const PROTOCOLS_REPEAT: usize = 3;
const PROTOCOLS_DURATION: f64 = 4.0;

fn protocols(root: &Path) -> Result<String> {
    let t = crate::bench_protocols(root, PROTOCOLS_REPEAT, PROTOCOLS_DURATION, &[])?;
    let stamp = Stamp {
        command: format!(
            "cargo xtask bench protocols --repeat {PROTOCOLS_REPEAT} --duration {PROTOCOLS_DURATION}"
        ),
        machine: t.machine,
        load: t.load,
    };
    Ok(format!(
        "{}Medians over {PROTOCOLS_REPEAT} repeats (each repeat runs ours, then the outside \
         implementation's: sing-box's, shoes's for reality), every probe off; the load generator, the sink (hashing every byte) and both endpoints \
         share the machine's cores, so these are throughputs of the whole loop, not of a proxy \
         alone. hysteria1 runs Brutal at {} Mbit/s each way on both sides. reality's \
         destination (the TLS server a REALITY server poses as) is served by the runner for \
         both.\n\n{}",
        stamp.line(),
        crate::HYSTERIA1_MBPS,
        t.table
    ))
}

fn compare(root: &Path, variants: &str) -> Result<String> {
    let mut load = Load::default();
    load.sample();
    let mut cmd = Command::new(root.join("target/release/protoprof"));
    cmd.current_dir(root)
        .args(["profile", "tcp", "--profiles"])
        .arg(root.join("profiles"))
        .arg("--out")
        .arg(root.join("target/protoprof/figures-compare"))
        .args(["--compare", variants]);
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running protoprof")?;
    load.sample();
    // 1 is a failed gate: still a comparison to show.
    if !matches!(output.status.code(), Some(0 | 1)) {
        bail!(
            "protoprof profile tcp --compare {variants}: {}",
            output.status
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(text.lines().last().unwrap_or_default().trim());
    let md = std::fs::read_to_string(dir.join("compare.md"))
        .with_context(|| format!("reading {}/compare.md", dir.display()))?;
    // The runs are in `a-1/<run>/`, `b-1/<run>/`, …: any run's report names
    // the machine.
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|it| it.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let machine = subdirs(&dir)
        .iter()
        .flat_map(|side| subdirs(side))
        .find_map(|run| {
            let text = std::fs::read_to_string(run.join("report.json")).ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        })
        .map_or_else(|| "(machine unknown)".to_string(), |r| machine_line(&r));
    let stamp = Stamp {
        command: format!("cargo xtask profile tcp --compare {variants}"),
        machine,
        load,
    };
    Ok(format!(
        "{}compare.md of that run, as written:\n\n{}",
        stamp.line(),
        // Run directories relative to the checkout: the doc must not name
        // the machine's paths.
        md.trim_end().replace(&format!("{}/", root.display()), "")
    ))
}

/// The link of docs/networks.md: 25 ms each way, 100 Mbit/s each way.
const NETWORK_LINK: &[&str] = &[
    "network.mode=namespaces",
    "network.up.delay_ms=25",
    "network.down.delay_ms=25",
    "network.up.rate_mbit=100",
    "network.down.rate_mbit=100",
    "setup.enabled=false",
];
/// rr on 16 connections: at 50 ms a round trip, 4 connections give about
/// 80 round trips a second, too few in a short phase for a p99 (which needs
/// about 300 samples for a distribution-free bound); 16 give about 300 a
/// second.
const NETWORK_RR: &[&str] = &["phase.1.connections=16"];
const NETWORK_LOSS: &[f64] = &[0.0, 1.0, 5.0];
const NETWORK_DURATION: f64 = 10.0;
const NETWORK_RATE_MBIT: f64 = 100.0;

/// Each protocol over the impaired link, ours then sing-box's, one short
/// run each: upload goodput against the link rate, rr p99, and what the
/// router counted.
fn networks(root: &Path) -> Result<String> {
    let rows: &[(&str, &str, &[&str], &str)] = &[
        (
            "hysteria2 Brutal 100 Mbit/s",
            "hysteria2",
            &["options.up_mbps=100", "options.down_mbps=100"],
            "sing-box-hysteria2-brutal",
        ),
        ("hysteria2 BBR", "hysteria2", &[], "sing-box-hysteria2"),
        ("tuic", "tuic", &[], "sing-box-tuic"),
        ("tls", "tls", &[], "sing-box-tls"),
    ];
    let out = root.join("target/protoprof/figures-networks");
    let _ = std::fs::remove_dir_all(&out);
    let mut load = Load::default();
    let mut machine = String::new();
    let mut table = String::from(
        "| loss each way | protocol | ours: upload Mbit/s sent / carried | sing-box: upload Mbit/s sent / carried | ours: rr p50 / p99 | sing-box: rr p50 / p99 | router: up packets lost / seen (ours; sing-box) | delay line: timing error p99, CPU (ours run) |\n|---:|---|---:|---:|---:|---:|---|---|\n",
    );
    for &loss in NETWORK_LOSS {
        let loss_sets = [
            format!("network.up.loss_percent={loss}"),
            format!("network.down.loss_percent={loss}"),
        ];
        for (label, ours, extra, theirs) in rows {
            let mut cells = Vec::new();
            for (profile, own) in [(*ours, *extra), (*theirs, &[][..])] {
                let mut sets: Vec<&str> = NETWORK_LINK.to_vec();
                sets.extend(NETWORK_RR);
                sets.extend(loss_sets.iter().map(String::as_str));
                sets.extend(own);
                // Ours as sing-box's: upload only (sing-box relays no half-close).
                sets.push("phase.0.direction=up");
                load.sample();
                let r = crate::plain_run(root, &out, profile, NETWORK_DURATION, &sets)?;
                if machine.is_empty() {
                    machine = machine_line(&r);
                }
                cells.push(r);
            }
            let up = |r: &serde_json::Value| {
                let bps = r["workload"]["phases"][0]["throughput"]["up_bps_median"]
                    .as_f64()
                    .unwrap_or(0.0);
                let carried = r["network"]["up"]["windows"]
                    .as_array()
                    .and_then(|w| w.iter().find(|w| w["pass"] == "main" && w["phase"] == 0))
                    .and_then(|w| w["measure"]["limiter_mbit_s"].as_f64())
                    .unwrap_or(f64::NAN);
                format!("{:.1} / {carried:.1}", bps * 8.0 / 1e6)
            };
            let rr = |r: &serde_json::Value| {
                let ps = &r["workload"]["phases"][1]["latency_us"]["percentiles"];
                let at = |label: &str| {
                    ps.as_array()
                        .and_then(|ps| ps.iter().find(|p| p["label"] == label))
                        .and_then(|p| p["estimate"]["value"]["value"].as_f64())
                        .map_or("too few".to_string(), |v| format!("{:.1} ms", v / 1e3))
                };
                format!("{} / {}", at("p50"), at("p99"))
            };
            let lost = |r: &serde_json::Value| {
                let m = &r["network"]["up"]["run"];
                format!(
                    "{} / {}",
                    m["lost"].as_u64().unwrap_or(0),
                    m["packets"].as_u64().unwrap_or(0)
                )
            };
            let dl = &cells[0]["network"]["delay_line"];
            table.push_str(&format!(
                "| {loss} % | {label} | {} | {} | {} | {} | {}; {} | {:.0} µs, {:.1} % of a core |\n",
                up(&cells[0]),
                up(&cells[1]),
                rr(&cells[0]),
                rr(&cells[1]),
                lost(&cells[0]),
                lost(&cells[1]),
                dl["timing_error_p99_us"].as_f64().unwrap_or(f64::NAN),
                100.0 * dl["cpu_share"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    let stamp = Stamp {
        command: "cargo xtask figures --slow --only networks".into(),
        machine,
        load,
    };
    Ok(format!(
        "{}One run of {NETWORK_DURATION} s per cell (bulk upload on 4 connections, then rr \
         64 B / 1 KiB on 16 connections), every probe off, set-up phase off; the link: 25 ms \
         each way (RTT 50 ms), {NETWORK_RATE_MBIT} Mbit/s each way (tbf), the loss each way \
         (nftables random drop). Sent: the bulk phase's median per-second upload as the load \
         generator wrote it (the chain's socket buffers hold megabytes, so over a few seconds \
         this can exceed what crossed the link); carried: what the router's rate limiter sent \
         towards the server in that window (link-layer bytes, retransmissions included), the \
         link's own measure. rr: 64 B / 1 KiB on 16 connections (on 4, a short \
         run at 50 ms has too few round trips for a p99), p50 / p99 over every round trip of \
         the phase; a p99 is printed only where its distribution-free interval exists at the \
         phase's sample count (\"too few\" otherwise). Single short runs: read differences under about \
         10 % as noise.\n\n{table}",
        stamp.line(),
    ))
}

const SOAK_DURATION: &str = "1h";
const SOAK_INTERVAL: &str = "5m";

/// `protoprof soak tuic` for an hour, as its soak.json says; or, with
/// `from`, the finished soak in that directory (a soak takes an hour: one
/// run when the machine was quiet can be written up later).
fn soak(root: &Path, from: Option<&Path>) -> Result<String> {
    match from {
        Some(dir) => soak_figure(dir, Load::default()),
        None => {
            let (dir, load) = run_soak(root)?;
            soak_figure(&dir, load)
        }
    }
}

/// Runs the figure's soak; its directory and the load averages seen.
fn run_soak(root: &Path) -> Result<(PathBuf, Load)> {
    let out = root.join("target/protoprof/figures-soak");
    let _ = std::fs::remove_dir_all(&out);
    let mut load = Load::default();
    load.sample();
    let output = Command::new(root.join("target/release/protoprof"))
        .current_dir(root)
        .args([
            "soak",
            "tuic",
            "--duration",
            SOAK_DURATION,
            "--interval",
            SOAK_INTERVAL,
            "--no-live",
        ])
        .arg("--profiles")
        .arg(root.join("profiles"))
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::inherit())
        .output()
        .context("running protoprof soak")?;
    load.sample();
    if !output.status.success() {
        bail!("protoprof soak tuic: {}", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(text.lines().last().unwrap_or_default().trim());
    Ok((dir, load))
}

/// The machine's steal and other processes' CPU over an interval's measured
/// windows, in cores: soak.json's, or for a soak.json written before it
/// had them, the same mean from the interval's report.json.
fn interval_load(dir: &Path, interval: &serde_json::Value) -> Option<(f64, f64)> {
    let l = &interval["machine_load"];
    if let (Some(steal), Some(other)) = (l["steal_cores"].as_f64(), l["other_cores"].as_f64()) {
        return Some((steal, other));
    }
    let report = dir.join(interval["dir"].as_str()?).join("report.json");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).ok()?).ok()?;
    let windows = r["workload"]["windows"].as_array()?;
    let seconds: f64 = windows.iter().filter_map(|w| w["seconds"].as_f64()).sum();
    if seconds <= 0.0 {
        return None;
    }
    let mean = |key: &str| {
        windows
            .iter()
            .map(|w| w[key].as_f64().unwrap_or(0.0) * w["seconds"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / seconds
    };
    Some((mean("steal_cores"), mean("other_cores")))
}

fn soak_figure(dir: &Path, load: Load) -> Result<String> {
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("soak.json"))
            .with_context(|| format!("reading {}/soak.json", dir.display()))?,
    )
    .context("parsing soak.json")?;
    let profile = s["profile"].as_str().unwrap_or("?");
    let duration = format!("{:.0}s", s["planned_s"].as_f64().unwrap_or(0.0));
    let interval = format!("{:.0}s", s["interval_s"].as_f64().unwrap_or(0.0));
    let m = &s["machine"];
    let machine = format!(
        "{}, {} CPUs, {:.0} GiB, Linux {}",
        m["cpu_model"].as_str().unwrap_or("unknown CPU"),
        m["cpus"].as_u64().unwrap_or(0),
        m["memory_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
        m["kernel"].as_str().unwrap_or("?")
    );
    let stamp = Stamp {
        command: format!("cargo xtask soak {profile} --duration {duration} --interval {interval}"),
        machine,
        load,
    };
    // A figure soak.json lacks (e.g. `heap`, before it was recorded) reads
    // "–", not NaN.
    let mib = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("–".to_string(), |b| format!("{:.1}", b / 1048576.0))
    };
    let mut t = String::from(
        "| interval | from–to s | bulk MiB/s (both ways) | rr p99 | RSS MiB client / server | descriptors client / server | live heap MiB client / server | machine: steal / other, cores | failed rules |\n|---:|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for i in s["intervals"].as_array().into_iter().flatten() {
        let phase = |pattern: &str| {
            i["phases"]
                .as_array()
                .and_then(|p| {
                    p.iter().find(|p| {
                        p["pattern"]
                            .as_str()
                            .is_some_and(|x| x.starts_with(pattern))
                    })
                })
                .cloned()
                .unwrap_or_default()
        };
        let bulk = phase("bulk");
        let rr = phase("rr");
        // Client first, as the column headers say, whatever order soak.json
        // lists the endpoints in.
        let mut targets: Vec<&serde_json::Value> =
            i["targets"].as_array().into_iter().flatten().collect();
        targets.sort_by_key(|t| t["role"].as_str().unwrap_or_default().to_string());
        let each = |f: &dyn Fn(&serde_json::Value) -> String| {
            targets.iter().map(|t| f(t)).collect::<Vec<_>>().join(" / ")
        };
        let failed: Vec<String> = i["failed_rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let _ = writeln!(
            t,
            "| {} | {:.0}–{:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
            i["index"],
            i["from_s"].as_f64().unwrap_or(0.0),
            i["to_s"].as_f64().unwrap_or(0.0),
            (bulk["up_bps"].as_f64().unwrap_or(0.0) + bulk["down_bps"].as_f64().unwrap_or(0.0))
                / 1048576.0,
            rr["p99_us"]
                .as_f64()
                .map_or("too few".into(), |v| format!("{:.2} ms", v / 1e3)),
            each(&|x| mib(&x["rss_bytes"])),
            each(&|x| x["fds"].to_string()),
            each(&|x| if x["live_heap_bytes"].is_null() {
                "–".into()
            } else {
                mib(&x["live_heap_bytes"])
            }),
            interval_load(dir, i).map_or("–".into(), |(steal, other)| format!(
                "{steal:.2} / {other:.2}"
            )),
            if failed.is_empty() {
                "–".into()
            } else {
                failed.join(", ")
            }
        );
    }
    let mut verdicts =
        String::from("| endpoint | rule | verdict | evidence |\n|---|---|---|---|\n");
    for c in s["leak_verdicts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            verdicts,
            "| {} | {} | {} | {} |",
            c["target"].as_str().unwrap_or("?"),
            c["id"].as_str().unwrap_or("?"),
            c["verdict"].as_str().unwrap_or("?"),
            c["evidence"].as_str().unwrap_or("").replace('|', "\\|")
        );
    }
    let runner = s["runner"].as_array().cloned().unwrap_or_default();
    let (first, last) = (
        runner.first().cloned().unwrap_or_default(),
        runner.last().cloned().unwrap_or_default(),
    );
    Ok(format!(
        "{}Status: {}; {} intervals of {interval} (each the {profile} profile's passes: bulk then rr, \
         the main pass and the per-call pass, phases scaled to the interval), one chain \
         throughout, the profile's probes on. Per interval: the phase's mean throughput, p99 of \
         its round trips, each endpoint's last reading; the machine's steal and other processes' CPU \
         over the interval's measured windows (throughput falls when they rise).\n\n{t}\nThe leak rules over the whole \
         soak:\n\n{verdicts}\nThe runner: RSS {} MiB after the first interval, {} MiB at the \
         end; heap in use (the allocator's count) {} MiB after the first interval, {} MiB at the \
         end; the soak directory {} MiB after the first interval, {} MiB at the end.\n",
        stamp.line(),
        s["status"].as_str().unwrap_or("?"),
        s["intervals"].as_array().map_or(0, Vec::len),
        mib(&first["rss_bytes"]),
        mib(&last["rss_bytes"]),
        mib(&first["heap"]["in_use_bytes"]),
        mib(&last["heap"]["in_use_bytes"]),
        mib(&first["dir_bytes"]),
        mib(&last["dir_bytes"]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_intervals_take_the_binomial_ranks() {
        // P(X ≤ k−1) for Binomial(n, ½): n=6, k=1: 1/64; n=10, k=2:
        // 11/1024 (k=3: 56/1024 > 2.5 %); n=15, k=4: 576/32768 (k=5:
        // 1941/32768).
        assert_eq!(median_interval_rank(5), None);
        assert_eq!(median_interval_rank(6), Some(1));
        assert_eq!(median_interval_rank(10), Some(2));
        assert_eq!(median_interval_rank(15), Some(4));
        let mut v: Vec<f64> = (1..=15).rev().map(f64::from).collect();
        assert_eq!(
            spread_with_interval(&mut v, 0),
            "8 [1–15], n=15; 95 % [4, 12]"
        );
        let mut v = vec![1.0, 2.0, 3.0];
        assert_eq!(
            spread_with_interval(&mut v, 1),
            "2.0 [1.0–3.0], n=3; too few runs for an interval"
        );
    }

    #[test]
    fn blocks_are_found_and_rewritten() {
        let doc = "a\n<!-- figures: x -->\nold\n<!-- /figures: x -->\nb\n";
        let b = blocks(doc).expect("parses");
        assert_eq!(b.len(), 1);
        assert_eq!(&doc[b[0].body.clone()], "old\n");
        assert_eq!(
            rewrite(doc, "x", "new").expect("rewrites"),
            "a\n<!-- figures: x -->\nnew\n<!-- /figures: x -->\nb\n"
        );
    }

    #[test]
    fn broken_markers_are_errors() {
        for doc in [
            "<!-- figures: x -->\n",
            "<!-- /figures: x -->\n",
            "<!-- figures: x -->\n<!-- /figures: y -->\n",
            "<!-- figures: x -->\n<!-- figures: y -->\n",
        ] {
            assert!(blocks(doc).is_err(), "{doc:?} accepted");
        }
    }

    #[test]
    fn per_call_detach_is_read_from_run_log() {
        let log = "[   1.000s] read 10 syscall rows, 5 stacks\n\
                   [   1.200s] probes detached\n\
                   [   2.000s] per-call pass: alloc and crypto probes\n\
                   [   9.500s] read 12 syscall rows, 7 stacks\n\
                   [  10.250s] probes detached\n\
                   [  10.300s] endpoints stopped, probes detached\n";
        let d = per_call_detach_s(log).expect("found");
        assert!((d - 0.75).abs() < 1e-9, "{d}");
        assert_eq!(per_call_detach_s("[ 1.0s] probes detached\n"), None);
    }

    /// Every marker block in docs/ names a figure this command produces, in
    /// the document the figure says, and every figure has its block.
    #[test]
    fn every_block_in_docs_is_a_known_figure() {
        let root = crate::workspace_root().expect("root");
        let mut seen = Vec::new();
        let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
            .expect("docs/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.push(root.join("README.md"));
        for path in docs {
            let text = std::fs::read_to_string(&path).expect("readable");
            let rel = path.strip_prefix(&root).expect("under root");
            for b in blocks(&text).unwrap_or_else(|e| panic!("{}: {e}", rel.display())) {
                let f = FIGURES
                    .iter()
                    .find(|f| f.id == b.id)
                    .unwrap_or_else(|| panic!("{}: unknown figure {:?}", rel.display(), b.id));
                assert_eq!(Path::new(f.doc), rel, "figure {} lives elsewhere", f.id);
                seen.push(f.id);
            }
        }
        seen.sort_unstable();
        let mut all: Vec<_> = FIGURES.iter().map(|f| f.id).collect();
        all.sort_unstable();
        assert_eq!(seen, all, "each figure has exactly one block");
    }
}
