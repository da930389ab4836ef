//! End to end: `protoprof profile tcp` as a user runs it, as a child
//! process. Needs root (eBPF); see tests/probes.rs.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod support;
use support::*;

#[test]
#[ignore = "needs root"]
fn tcp_profile_end_to_end() {
    become_subreaper();
    let out = out_dir("e2e");
    let (dir, report, stdout) = profile_ok("tcp", &out, "3");
    assert!(
        stdout.contains("syscalls:"),
        "no terminal summary:\n{stdout}"
    );
    assert_eq!(report.schema_version, protoprof::report::SCHEMA_VERSION);
    assert_eq!(report.run.id.len(), 64);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    assert!(report.workload.bytes_up > 0 && report.workload.bytes_down > 0);
    assert_eq!(report.workload.phases.len(), 2);
    let rr = &report.workload.phases[1];
    assert!(rr.round_trips > 0 && rr.latency_us.is_some());
    assert!(
        (2.0..6.0).contains(&report.run.measured_s),
        "measured {}",
        report.run.measured_s
    );
    assert_eq!(report.targets.len(), 2);
    for t in &report.targets {
        let calls: u64 = t.syscalls.iter().map(|s| s.count).sum();
        assert!(calls > 0, "{} endpoint: no syscalls", t.role);
        // The relay moves every payload byte through read/write-family calls.
        let moved: u64 = t.syscalls.iter().map(|s| s.bytes).sum();
        assert!(
            moved >= report.workload.bytes_up / 2,
            "{} endpoint moved only {moved} bytes",
            t.role
        );
        assert!(t.cpu.samples > 0, "{} endpoint: no cpu samples", t.role);
        assert!(t.peak_rss_bytes.unwrap_or(0) > 0);
        match t.counters.get("task_clock_ns") {
            Some(protoprof::report::Reading::Value(ns)) => assert!(*ns > 0),
            other => panic!("task clock: {other:?}"),
        }
        // Unavailable with a reason, or a real non-zero count: never zero.
        match t.counters.get("cycles") {
            Some(protoprof::report::Reading::Value(v)) => assert!(*v > 0),
            Some(protoprof::report::Reading::Unavailable(why)) => assert!(!why.is_empty()),
            None => panic!("cycles missing"),
        }
    }
    let svg = std::fs::read_to_string(dir.join("cpu.svg")).expect("cpu.svg");
    assert!(
        svg.contains("bench_proto::relay"),
        "the relay's own functions are not in the flame graph"
    );
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    assert!(
        folded.lines().any(|l| l.starts_with("client;"))
            && folded.lines().any(|l| l.starts_with("server;"))
    );
    assert!(dir.join("report.md").is_file() && dir.join("run.log").is_file());
    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).expect("timeseries.csv");
    assert!(csv.lines().count() > 2 && csv.starts_with("phase,pattern,t_s"));
    for graph in ["offcpu", "alloc", "alloc-count"] {
        assert!(
            dir.join(format!("{graph}.svg")).is_file(),
            "{graph}.svg missing"
        );
    }
    for t in &report.targets {
        let off = t.offcpu.as_ref().expect("offcpu summary");
        assert!(off.total_us > 0, "{} endpoint: no off-CPU time", t.role);
        let alloc = t.alloc.as_ref().expect("alloc summary");
        assert!(
            alloc.attached.iter().any(|a| a.symbol == "malloc"),
            "{} endpoint: malloc not found",
            t.role
        );
        assert!(
            t.threads.iter().any(|th| th.name.starts_with("tokio")),
            "{:?}",
            t.threads
        );
    }

    judged_and_rendered(&dir, &report);

    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

/// Every figure of `t` divides quantities of the same windows: the costs
/// cover the bulk phase, the categories add up to the total, each phase's
/// task clock agrees with its samples × period, and throughput is window
/// bytes over window seconds.
fn one_scope_per_figure(report: &protoprof::report::Report, t: &protoprof::report::Target) {
    use protoprof::report::{Metric, MetricPass, Reading};
    let costs = t.costs.as_ref().expect("cost attribution");
    // tcp: phase 0 is bulk, phase 1 rr; the per-byte costs cover bulk.
    assert_eq!(t.metrics_phases, vec![0]);
    assert_eq!(costs.phases, vec![0]);
    assert_eq!(costs.bytes, report.workload.phases[0].window_bytes());
    let value = |name: &str| match t.metrics.get(name) {
        Some(Metric::Value(v)) => *v,
        other => panic!("{} {name}: {other:?}", t.role),
    };
    let total = value("cpu_ns_per_byte");
    assert!(
        (total - costs.cpu_ns / costs.bytes as f64).abs() <= 1e-9 * total,
        "{total}"
    );
    let sum: f64 = protoprof::analyze::metrics::CATEGORIES
        .iter()
        .map(|c| value(&format!("cost.{c}.ns_per_byte")))
        .sum();
    assert!(
        (sum - total).abs() <= 0.01 * total,
        "{}: categories {sum} ns/B vs total {total} ns/B",
        t.role
    );
    assert_eq!(
        value("crypto_ns_per_byte"),
        value("cost.crypto.ns_per_byte")
    );
    let scope = &t.metric_scopes["cpu_ns_per_byte"];
    assert_eq!(
        (scope.pass, scope.phases.clone()),
        (MetricPass::Main, vec![0])
    );
    assert_eq!(t.metric_scopes.len(), t.metrics.len());
    // Every phase has its own costs; together they hold the target's
    // samples (a sample taken as a window closes may land in none).
    let phase_samples: u64 = t
        .phases
        .iter()
        .map(|p| p.costs.as_ref().expect("phase costs").samples)
        .sum();
    assert!(
        phase_samples <= t.cpu.samples && phase_samples * 100 >= t.cpu.samples * 99,
        "{} of {} samples in the phases",
        phase_samples,
        t.cpu.samples
    );
    let offcpu: u64 = t.phases.iter().filter_map(|p| p.offcpu_us).sum();
    assert_eq!(offcpu, t.offcpu.as_ref().expect("offcpu").total_us);
    // Task clock vs samples × period, phase by phase, within sampling
    // error (`task_clock_agrees` states the bound and why).
    let hz = report
        .probes
        .options
        .cpu_frequency_hz
        .expect("cpu probe on") as f64;
    for p in &t.phases {
        let c = p.costs.as_ref().expect("phase costs");
        let Some(Reading::Value(task_ns)) = p.counters.get("task_clock_ns") else {
            panic!("{} phase {}: no task clock", t.role, p.phase);
        };
        assert_eq!(c.cpu_ns, *task_ns as f64);
        if let Err(e) =
            protoprof::analyze::attribution::task_clock_agrees(*task_ns as f64, c.samples, hz)
        {
            panic!("{} phase {}: {e}", t.role, p.phase);
        }
    }
    // Throughput is the window's bytes over the window's seconds.
    for p in &report.workload.phases {
        let mean = p.throughput.up_bps_mean + p.throughput.down_bps_mean;
        let direct = p.window_bytes() as f64 / p.measured_s;
        assert!(
            (mean - direct).abs() <= 0.01 * direct,
            "{}: {mean} vs {direct}",
            p.pattern
        );
    }
}

/// Cost attribution, metrics, checklist and every rendered output of a
/// real run.
fn judged_and_rendered(dir: &std::path::Path, report: &protoprof::report::Report) {
    use protoprof::report::{Metric, Verdict};
    for t in &report.targets {
        let costs = t.costs.as_ref().expect("cost attribution");
        let names: Vec<_> = costs
            .categories
            .iter()
            .map(|c| c.category.as_str())
            .collect();
        assert_eq!(names, protoprof::analyze::metrics::CATEGORIES);
        one_scope_per_figure(report, t);
        assert_eq!(
            costs.categories.iter().map(|c| c.samples).sum::<u64>(),
            costs.samples
        );
        // A plain relay's CPU is mostly syscalls and the network stack.
        let kernel = costs.categories.iter().find(|c| c.category == "kernel_io");
        assert!(kernel.is_some_and(|k| k.share > 0.3), "{costs:?}");
        assert!(costs.cpu_ns > 0.0 && costs.bytes > 0);
        match t.metrics.get("syscalls_per_mib") {
            Some(Metric::Value(v)) => assert!(*v > 0.0),
            other => panic!("syscalls_per_mib: {other:?}"),
        }
        let sockets = t.sockets.as_ref().expect("sockets inspected");
        // 4 connections in, 4 out, all with TCP_NODELAY (tokio sets it for us).
        assert!(sockets.tcp >= 8 && sockets.inbound >= 4, "{sockets:?}");
        assert_eq!(sockets.nodelay, sockets.tcp);
    }
    let rules = protoprof::analyze::checklist::Checklist::load(&workspace().join("profiles"))
        .expect("checklist");
    assert!(rules.rules.len() >= 20);
    for rule in &rules.rules {
        let results: Vec<_> = report
            .checklist
            .iter()
            .filter(|r| r.id == rule.id)
            .collect();
        assert!(!results.is_empty(), "rule {} not judged", rule.id);
        for r in results {
            assert!(!r.evidence.is_empty(), "{r:?}");
            match r.verdict {
                Verdict::NotEvaluated => assert!(r.value.is_none() || rule.only_if.is_some()),
                Verdict::Ok => assert!(r.recommendation.is_empty()),
                Verdict::Warn | Verdict::Fail => assert!(!r.recommendation.is_empty()),
            }
        }
    }
    assert_eq!(report.calibration.len(), 3);
    let cpu = protoprof::report::stacks::read_named(dir, report, "cpu")
        .expect("cpu side file")
        .expect("cpu stacks");
    assert_eq!(
        cpu.stacks.iter().map(|s| s.count).sum::<u64>(),
        report.targets.iter().map(|t| t.cpu.samples).sum::<u64>()
    );
    for file in [
        "report.html",
        "profile.pb.gz",
        "report.md",
        "timeseries.csv",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
        assert!(
            report.outputs.values().any(|f| f == file),
            "{file} not in outputs"
        );
    }
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        md.contains("## Checklist") && md.contains("kernel_io"),
        "{md}"
    );
}

#[test]
#[ignore = "needs root"]
fn ctrl_c_stops_the_chain_and_detaches_the_probes() {
    become_subreaper();
    let out = out_dir("sigint");
    let mut child = profile_cmd(&out, "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until both endpoints are up (their logs say so), i.e. mid-run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|run| {
                ["client.log", "server.log"].iter().all(|l| {
                    std::fs::read_to_string(run.path().join(l))
                        .is_ok_and(|t| t.contains("listening"))
                })
            })
            .unwrap_or(false);
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "endpoints never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("wait");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_profile_exits_2_with_one_line() {
    let out = out_dir("bad");
    let spec = out.join("bad.toml");
    std::fs::write(&spec, "name = \"x\"\nprotocol = \"tcp\"\n[[phase]]\npattern = \"bulk\"\nduration_s = 1\nconnections = 0\n")
        .expect("write");
    let result = Command::new(PROTOPROF)
        .arg("profile")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--endpoint")
        .arg(PROTOPROF)
        .output()
        .expect("run");
    assert_eq!(result.status.code(), Some(2));
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("phase[0].connections") && err.contains("use 1 to 10000"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "needs root"]
fn tuic_profile_end_to_end() {
    become_subreaper();
    let out = out_dir("tuic");
    let (dir, report, _) = profile_ok("tuic", &out, "3");
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    for t in &report.targets {
        assert!(
            t.syscalls
                .iter()
                .any(|s| s.name == "sendmsg" || s.name == "sendto"),
            "{}",
            t.role
        );
        // The run's credentials never reach the report.
        let pw = t
            .command
            .iter()
            .position(|a| a == "--password")
            .expect("--password");
        assert_eq!(t.command[pw + 1], "<secret>");
        // QUIC's AEAD (ring, AES-GCM) is found and counted.
        let crypto = t.crypto.as_ref().expect("crypto");
        let calls: u64 = crypto
            .symbols
            .iter()
            .filter(|s| s.family.starts_with("ring AES-GCM"))
            .map(|s| s.calls)
            .sum();
        assert!(calls > 0, "{}: {:?}", t.role, crypto.symbols);
    }
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    assert!(
        folded.contains("bench_proto::tuic"),
        "the TUIC endpoint's functions are not in the flame graph"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
