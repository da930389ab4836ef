//! `protoprof compare`, `profile --compare` and `baseline save|check`,
//! end to end. The compare tests build run directories from synthetic
//! reports (no root needed); the profile and baseline tests run the real
//! chain (root).

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use protoprof::report::{FoldedGraph, FoldedStack, Metric, Report, Role, RuleResult, Verdict};
use support::{
    assert_clean, assert_run_valid, become_subreaper, endpoint, out_dir, workspace, write_run,
    PROTOPROF,
};

/// A small but complete report.json of the tcp profile (one bulk and one rr
/// phase, one target), as a real run writes it, trimmed.
fn template() -> Report {
    let phase = |pattern: &str, latency: serde_json::Value, round_trips: u64| {
        serde_json::json!({
            "pattern": pattern, "connections": 4, "direction": null,
            "warmup_s": 1.0, "measured_s": 3.0,
            "bytes_up": 300_000_000u64, "bytes_down": 300_000_000u64,
            "window_bytes_up": 150_000_000u64, "window_bytes_down": 150_000_000u64,
            "throughput": {"up_bps_median": 50e6, "up_bps_mean": 50e6,
                           "down_bps_median": 50e6, "down_bps_mean": 50e6},
            "timeseries": [],
            "latency_us": latency,
            "setup_us": {"count": 4, "mean": 900.0, "p50": 890.0, "p90": 1200.0,
                         "p99": 1200.0, "p999": 1200.0, "max": 1200.0},
            "round_trips": round_trips,
            "integrity": {"status": "ok", "connections_checked": 4,
                          "bytes_checked": 600_000_000u64, "mismatches": []}
        })
    };
    let v = serde_json::json!({
        "schema_version": 3,
        "run": {
            "id": "00", "profile": "tcp", "protocol": "tcp", "description": "synthetic",
            "started_at": "2026-01-01T00:00:00Z", "duration_s": 10.0, "measured_s": 6.0,
            "kernel": "6.0", "cpus": 2, "tool_version": "0.1.0", "inputs": [],
            "spec_blake3": "c677eedc20db6e91cb1c39f32e2f3e9d99a451a4a61ceb65fab24f11d421d98a",
            "machine": {"fingerprint": "2385d5724ec516bf85eb4951915db95fb16bb5e5eaf74c81f081164584c7c973",
                        "cpu_model": "test cpu", "cpus": 2, "memory_bytes": 1u64 << 34, "kernel": "6.0"},
            "status": "ok"
        },
        "workload": {
            "integrity": "ok", "bytes_up": 0, "bytes_down": 0,
            "phases": [
                phase("bulk", serde_json::Value::Null, 0),
                phase("rr", serde_json::json!({"count": 6000, "mean": 300.0, "p50": 240.0,
                    "p90": 340.0, "p99": 4000.0, "p999": 5000.0, "max": 9000.0}), 30000),
            ]
        },
        "targets": [{
            "role": "client", "pid": 1, "exe": "protoprof-endpoint", "command": [],
            "peak_rss_bytes": 6758400u64, "exited": null, "counters": {}, "syscalls": [],
            "cpu": {"samples": 10, "missed_user_stacks": 0, "median_user_depth": 20,
                    "top_functions": [], "threads": {}},
            "offcpu": null, "alloc": null, "crypto": null, "threads": [],
            "binary": {"is_go": false, "has_symbols": true, "notes": []},
            "costs": null, "metrics": {}, "sockets": null
        }],
        "probes": {
            "options": {"syscalls": true, "syscall_stack_every": 0, "cpu_frequency_hz": 99,
                        "offcpu": true, "counters": true,
                        "alloc": {"sample_bytes": 524288, "live": true},
                        "crypto": {"return_probes": true}},
            "windows": 2, "program_costs": [], "overhead": [], "per_call_pass": [],
            "per_call_window_bytes": null
        },
        "outputs": {}, "warnings": [], "checklist": [], "calibration": [], "stacks": []
    });
    serde_json::from_value(v).expect("template parses as a Report")
}

/// A run as written: its report and the graphs of its stacks/ side files.
type Run = (Report, Vec<FoldedGraph>);

/// One synthetic run: bulk throughput `bps`, the client's CPU ns/byte, a cpu
/// graph where `relay` takes `relay_samples`, and the verdict of one rule.
fn synthetic(bps: f64, ns_per_byte: f64, relay_samples: u64, verdict: Verdict) -> Run {
    let mut r = template();
    let p = &mut r.workload.phases[0];
    p.throughput.up_bps_median = bps / 2.0;
    p.throughput.down_bps_median = bps / 2.0;
    let t = &mut r.targets[0];
    t.metrics
        .insert("cpu_ns_per_byte".into(), Metric::Value(ns_per_byte));
    t.metrics.insert(
        "copy_share".into(),
        Metric::Unavailable("not measured".into()),
    );
    r.checklist.push(RuleResult {
        id: "io.buffer-size".into(),
        area: "io".into(),
        title: "reads of at least 16 KiB".into(),
        target: Role::Client,
        verdict,
        metric: "bytes_per_read".into(),
        value: None,
        unit: "B".into(),
        evidence: String::new(),
        recommendation: String::new(),
    });
    let cpu = FoldedGraph {
        name: "cpu".into(),
        title: "cpu".into(),
        unit: "samples".into(),
        stacks: vec![
            FoldedStack {
                stack: "client;worker;main;relay".into(),
                count: relay_samples,
            },
            FoldedStack {
                stack: "client;worker;main;poll".into(),
                count: 50,
            },
        ],
    };
    (r, vec![cpu])
}

/// Write each run as `<dir>/<name>-<k>/report.json` with its side files.
fn write_runs(dir: &Path, name: &str, runs: &[Run]) -> PathBuf {
    for (k, (r, graphs)) in runs.iter().enumerate() {
        write_run(&dir.join(format!("{name}-{k}")), r, graphs);
    }
    dir.to_path_buf()
}

fn compare(a: &Path, b: &Path, out: &Path) -> Output {
    Command::new(PROTOPROF)
        .arg("compare")
        .arg(a)
        .arg(b)
        .arg("--out")
        .arg(out)
        .arg("--gates")
        .arg(workspace().join("profiles/gates.toml"))
        .output()
        .expect("run protoprof compare")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn metric<'a>(c: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    c["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("no {name} in compare.json"))
}

#[test]
fn worse_throughput_beyond_the_gate_exits_1_and_names_it() {
    let root = out_dir("compare-worse");
    // A around 100 MB/s, B around 80 MB/s: 20 % worse, far beyond 5 %.
    let jitter = [0.0, 0.6, -0.4, 0.3, -0.2];
    let a: Vec<Run> = jitter
        .iter()
        .map(|j| synthetic(100e6 * (1.0 + j / 100.0), 2.0 + j / 10.0, 100, Verdict::Ok))
        .collect();
    let b: Vec<Run> = jitter
        .iter()
        .map(|j| synthetic(80e6 * (1.0 - j / 100.0), 2.0 - j / 10.0, 300, Verdict::Warn))
        .collect();
    let da = write_runs(&root.join("a"), "a", &a);
    let db = write_runs(&root.join("b"), "b", &b);
    let out = root.join("cmp");
    let o = compare(&da, &db, &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("GATE FAILED p0.throughput_bps"), "{stdout}");

    let md = std::fs::read_to_string(out.join("compare.md")).expect("compare.md");
    let gates_at = md.find("Gates: 1 failed").expect("gate failures listed");
    let gate_line = md
        .find("p0.throughput_bps: ")
        .expect("the gate names the metric");
    let significant = md
        .find("## Significant changes")
        .expect("significant changes");
    assert!(gates_at < gate_line && gate_line < significant, "{md}");
    assert!(md.contains("beyond the gate's 5.0 %"), "{md}");

    let c = json(&out.join("compare.json"));
    let t = metric(&c, "p0.throughput_bps");
    assert_eq!(t["change"], "worse");
    assert_eq!(t["gate_failed"], true);
    assert_eq!((t["n_a"].as_u64(), t["n_b"].as_u64()), (Some(5), Some(5)));
    assert!((t["rel_diff"].as_f64().expect("rel") + 0.2).abs() < 0.01);
    // Complete separation of 5 and 5: exact p = 2/252.
    assert!((t["p_value"].as_f64().expect("p") - 2.0 / 252.0).abs() < 1e-9);
    let ci = t["ci"].as_array().expect("ci");
    assert!(ci[1].as_f64().expect("hi") < 0.0);
    // The rr phase did not change: no significant change, gate untouched.
    assert_eq!(metric(&c, "p1.rr_per_s")["change"], "no_significant_change");
    // Per-target metrics come from Target.metrics; unavailable ones are left out.
    assert_eq!(
        metric(&c, "client.cpu_ns_per_byte")["change"],
        "no_significant_change"
    );
    assert!(c["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .all(|m| m["metric"] != "client.copy_share"));
    // Checklist: ok → warn on the client.
    let ch = &c["checklist_changes"][0];
    assert_eq!(
        (ch["rule"].as_str(), ch["a"].as_str(), ch["b"].as_str()),
        (Some("io.buffer-size"), Some("ok"), Some("warn"))
    );
    // Differential flame graph and its inputs.
    let svg = std::fs::read_to_string(out.join("diff-cpu.svg")).expect("diff-cpu.svg");
    assert!(svg.contains("relay"));
    let folded = std::fs::read_to_string(out.join("diff-cpu.folded")).expect("folded");
    assert!(folded.contains("client;worker;main;relay "), "{folded}");
    assert!(out.join("cpu-a.folded").is_file() && out.join("cpu-b.folded").is_file());
    // Reproducible: the same inputs give the same compare.json.
    let again = root.join("cmp2");
    assert_eq!(compare(&da, &db, &again).status.code(), Some(1));
    assert_eq!(json(&again.join("compare.json"))["metrics"], c["metrics"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn no_change_exits_0() {
    let root = out_dir("compare-same");
    let values = [100.0, 101.0, 99.5, 100.4, 99.8];
    let a: Vec<Run> = values
        .iter()
        .map(|v| synthetic(v * 1e6, 2.0, 100, Verdict::Ok))
        .collect();
    let b: Vec<Run> = values
        .iter()
        .rev()
        .map(|v| synthetic(v * 1e6 * 1.001, 2.0, 100, Verdict::Ok))
        .collect();
    let out = root.join("cmp");
    let o = compare(
        &write_runs(&root.join("a"), "a", &a),
        &write_runs(&root.join("b"), "b", &b),
        &out,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("gates: pass"), "{stdout}");
    let c = json(&out.join("compare.json"));
    assert_eq!(
        metric(&c, "p0.throughput_bps")["change"],
        "no_significant_change"
    );
    assert!(c["checklist_changes"].as_array().expect("list").is_empty());
    let md = std::fs::read_to_string(out.join("compare.md")).expect("md");
    assert!(
        md.contains("Gates: pass") && md.contains("No significant change"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn single_runs_test_throughput_per_second_and_nothing_else() {
    let root = out_dir("compare-single");
    let with_seconds = |bps: f64| {
        let mut r = synthetic(bps, 2.0, 100, Verdict::Ok);
        r.0.workload.phases[0].timeseries = (0..6)
            .map(|i| {
                let b = (bps / 2.0 * (1.0 + (i % 3) as f64 / 200.0)) as u64;
                serde_json::from_value(serde_json::json!({
                    "t_s": i as f64, "span_s": 1.0, "bytes_up": b, "bytes_down": b,
                    "round_trips": 0
                }))
                .expect("second")
            })
            .collect();
        r
    };
    let da = root.join("a");
    let db = root.join("b");
    for (d, bps) in [(&da, 100e6), (&db, 70e6)] {
        let (r, graphs) = with_seconds(bps);
        write_run(d, &r, &graphs);
    }
    let out = root.join("cmp");
    let o = compare(&da, &db, &out);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let c = json(&out.join("compare.json"));
    let t = metric(&c, "p0.throughput_bps");
    assert_eq!(t["samples"], "second");
    assert_eq!(t["n_a"], 6);
    assert_eq!(t["change"], "worse");
    let cpu = metric(&c, "client.cpu_ns_per_byte");
    assert_eq!(cpu["change"]["not_tested"], "n=1; use --repeat");
    assert!(cpu["median_a"].as_f64().is_some());
    let md = std::fs::read_to_string(out.join("compare.md")).expect("md");
    assert!(md.contains("per-second samples"), "{md}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let root = out_dir("compare-bad");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let a = write_runs(&root.join("a"), "a", &[synthetic(1e6, 1.0, 1, Verdict::Ok)]);
    let o = compare(&a, &empty, &root.join("cmp"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&empty.display().to_string()) && stderr.contains("report.json"));
    // Runs of another profile: refused without --force.
    let mut other = synthetic(1e6, 1.0, 1, Verdict::Ok);
    other.0.run.profile = "tls".into();
    let b = write_runs(&root.join("b"), "b", &[other]);
    let o = compare(&a, &b, &root.join("cmp"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    // A broken gates file names itself.
    let gates = root.join("gates.toml");
    std::fs::write(&gates, "[[gate]]\nmetric = 3\n").expect("write");
    let o = Command::new(PROTOPROF)
        .arg("compare")
        .arg(&a)
        .arg(&a)
        .arg("--gates")
        .arg(&gates)
        .arg("--out")
        .arg(root.join("cmp"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--gates") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Run directories (with report.json) under `dir`, any depth up to 2.
fn run_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("read").flatten() {
        for g in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            if g.path().join("report.json").is_file() {
                v.push(g.path());
            }
        }
    }
    v
}

#[test]
#[ignore = "needs root: loads eBPF programs"]
fn profile_compare_runs_interleaved_and_compares() {
    become_subreaper();
    let out = out_dir("profile-compare");
    let o = Command::new(PROTOPROF)
        .current_dir(workspace())
        .args(["profile", "tcp", "--duration", "1", "--compare"])
        .arg("relay.buffer_size=65536,relay.buffer_size=4096")
        .args(["--repeat", "2", "--out"])
        .arg(&out)
        .arg("--profiles")
        .arg(workspace().join("profiles"))
        .arg("--endpoint")
        .arg(endpoint())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run protoprof");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}: {stdout}",
        o.status
    );
    let root = PathBuf::from(stdout.lines().last().expect("last line").trim());
    assert!(root.starts_with(&out), "{}", root.display());
    let runs = run_dirs(&root);
    assert_eq!(runs.len(), 4, "{runs:?}");
    // Interleaved: by start time a, b, a, b.
    let mut started: Vec<(String, String)> = runs
        .iter()
        .map(|d| {
            let r = assert_run_valid(d);
            let label = d
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .expect("label");
            (r.run.started_at, label)
        })
        .collect();
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(order, ["a-1", "b-1", "a-2", "b-2"]);
    let c = json(&root.join("compare.json"));
    let t = metric(&c, "p0.throughput_bps");
    assert_eq!((t["n_a"].as_u64(), t["n_b"].as_u64()), (Some(2), Some(2)));
    assert!(t["change"].is_string() || t["change"].is_object());
    assert!(root.join("compare.md").is_file() && root.join("diff-cpu.svg").is_file());
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "needs root: loads eBPF programs"]
fn baseline_save_then_check() {
    become_subreaper();
    let out = out_dir("baseline");
    let store = out.join("baselines");
    let base = |action: &str, extra: &[&str]| {
        let mut cmd = Command::new(PROTOPROF);
        cmd.current_dir(workspace())
            .args([
                "baseline",
                action,
                "tcp",
                "--duration",
                "1",
                "--repeat",
                "2",
            ])
            .arg("--baselines")
            .arg(&store)
            .arg("--out")
            .arg(out.join("runs"))
            .arg("--profiles")
            .arg(workspace().join("profiles"))
            .arg("--endpoint")
            .arg(endpoint())
            .args(extra)
            .stderr(std::process::Stdio::piped());
        cmd.output().expect("run protoprof")
    };
    let o = base("save", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = PathBuf::from(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .expect("dir")
            .trim(),
    );
    assert!(dir.starts_with(store.join("tcp")), "{}", dir.display());
    let index = json(&dir.join("baseline.json"));
    assert_eq!(index["runs"].as_array().map(Vec::len), Some(2));
    // Each stored run is a valid report with the side files it names.
    let stored = assert_run_valid(&dir.join("run-1"));
    assert!(
        stored.stacks.iter().any(|s| s.name == "cpu"),
        "no cpu graph stored"
    );
    // Saving again needs --force.
    let o = base("save", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_clean();

    let o = base("check", &[]);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    // Another spec has no baseline: 2, before running anything, one line.
    let o = base("check", &["--set", "relay.buffer_size=4096"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("baseline save") && stderr.contains("existing"),
        "{stderr}"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
