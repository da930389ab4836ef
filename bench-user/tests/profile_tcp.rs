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
    assert_eq!(report.workload.phases.len(), 2);
    for p in &report.workload.phases {
        // Whole connections carry at least what their window did, and the
        // mean throughput is window bytes over window seconds.
        assert!(p.bytes_up >= p.window_bytes_up && p.bytes_down >= p.window_bytes_down);
        let mean = p.window_bytes_up as f64 / p.measured_s;
        assert!(
            (p.throughput.up_bps_mean / mean - 1.0).abs() < 0.01,
            "{}: mean {} against {mean}",
            p.pattern,
            p.throughput.up_bps_mean
        );
    }
    assert_eq!(
        report.workload.bytes_up,
        report
            .workload
            .phases
            .iter()
            .map(|p| p.bytes_up)
            .sum::<u64>()
    );
    // Bulk both ways on 4 connections: a working loopback relay moves tens of
    // MiB a second; 1 MiB in the window is far below any healthy run.
    let bulk = &report.workload.phases[0];
    assert!(
        bulk.window_bytes_up >= 1 << 20 && bulk.window_bytes_down >= 1 << 20,
        "bulk window moved {} up, {} down",
        bulk.window_bytes_up,
        bulk.window_bytes_down
    );
    // Closed-loop rr, 64-byte requests and 1 KiB responses on 4
    // connections: the window's bytes are its round trips' bytes, give or
    // take the one request per connection in flight at each window edge.
    let rr = &report.workload.phases[1];
    let latency = rr.latency_us.as_ref().expect("rr latency");
    assert_eq!(latency.count, rr.round_trips);
    assert!(rr.round_trips >= 100, "{} round trips", rr.round_trips);
    let edge = 2 * 4;
    assert!(
        rr.window_bytes_up.abs_diff(64 * rr.round_trips) <= 64 * edge,
        "rr: {} bytes up for {} round trips",
        rr.window_bytes_up,
        rr.round_trips
    );
    assert!(
        rr.window_bytes_down.abs_diff(1024 * rr.round_trips) <= 1024 * edge,
        "rr: {} bytes down for {} round trips",
        rr.window_bytes_down,
        rr.round_trips
    );
    assert!(
        (2.0..6.0).contains(&report.run.measured_s),
        "measured {}",
        report.run.measured_s
    );
    assert_eq!(report.targets.len(), 2);
    let window_s: f64 = report.workload.phases.iter().map(|p| p.measured_s).sum();
    let cpus = report.run.cpus as f64;
    for t in &report.targets {
        let calls: u64 = t.syscalls.iter().map(|s| s.count).sum();
        // The relay moves every payload byte through read/write-family calls.
        let moved: u64 = t.syscalls.iter().map(|s| s.bytes).sum();
        assert!(
            moved >= report.workload.bytes_up / 2,
            "{} endpoint moved only {moved} bytes",
            t.role
        );
        // No call moves more than the 64 KiB relay buffer.
        assert!(
            calls >= moved / 65536,
            "{} endpoint: {calls} syscalls moved {moved} bytes",
            t.role
        );
        // 99 Hz per CPU, only inside the windows: at most that many
        // samples (10 % for window edges), and a relay moving MiB a second
        // is on CPU for more than a tenth of a second.
        let most = 99.0 * cpus * window_s * 1.1;
        assert!(
            (10.0..=most).contains(&(t.cpu.samples as f64)),
            "{} endpoint: {} cpu samples (at most {most:.0})",
            t.role,
            t.cpu.samples
        );
        let rss = t.peak_rss_bytes.expect("peak RSS");
        assert!(
            (1 << 20..1 << 30).contains(&rss),
            "{} endpoint: peak RSS {rss}",
            t.role
        );
        match t.counters.get("task_clock_ns") {
            // CPU time inside the windows: no more than every CPU for
            // their whole length, and it agrees with the cpu samples ×
            // their period (10.1 ms) within sampling error.
            Some(protoprof::report::Reading::Value(ns)) => {
                let ns = *ns as f64;
                assert!(ns <= window_s * cpus * 1.05e9, "task clock {ns} ns");
                let sampled = t.cpu.samples as f64 * 1e9 / 99.0;
                assert!(
                    (0.4..2.5).contains(&(ns / sampled)),
                    "{} endpoint: task clock {ns} ns against {sampled} ns sampled",
                    t.role
                );
            }
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
        // Every thread blocks (epoll) between chunks; none can be off CPU
        // for longer than the windows last.
        let threads: usize = t.threads.iter().map(|th| th.threads).sum();
        let most = (threads as f64 * window_s * 1e6 * 1.1) as u64;
        assert!(
            (1000..=most).contains(&off.total_us),
            "{} endpoint: {} µs off CPU over {threads} threads",
            t.role,
            off.total_us
        );
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

/// Cost attribution, metrics, checklist and every rendered output of a
/// real run.
fn judged_and_rendered(dir: &std::path::Path, report: &protoprof::report::Report) {
    use protoprof::report::{Metric, Verdict};
    let window_s: f64 = report.workload.phases.iter().map(|p| p.measured_s).sum();
    let cpus = report.run.cpus as f64;
    for t in &report.targets {
        let costs = t.costs.as_ref().expect("cost attribution");
        let names: Vec<_> = costs
            .categories
            .iter()
            .map(|c| c.category.as_str())
            .collect();
        assert_eq!(names, protoprof::analyze::metrics::CATEGORIES);
        assert_eq!(costs.samples, t.cpu.samples);
        assert_eq!(
            costs.categories.iter().map(|c| c.samples).sum::<u64>(),
            costs.samples
        );
        // A plain relay's CPU is mostly syscalls and the network stack.
        let kernel = costs.categories.iter().find(|c| c.category == "kernel_io");
        assert!(kernel.is_some_and(|k| k.share > 0.3), "{costs:?}");
        // Both directions of every window of the main pass.
        assert_eq!(
            costs.bytes,
            report
                .workload
                .phases
                .iter()
                .map(|p| p.window_bytes())
                .sum::<u64>()
        );
        assert!(
            costs.cpu_ns > 0.0 && costs.cpu_ns <= window_s * cpus * 1.05e9,
            "{costs:?}"
        );
        // Over the bulk phase, each endpoint reads every payload byte once
        // and writes it once, at most 64 KiB a call: at least 32 calls per
        // MiB of both directions; a relay making a call per KiB is broken.
        match t.metrics.get("syscalls_per_mib") {
            Some(Metric::Value(v)) => assert!((32.0..1024.0).contains(v), "{v}"),
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
        // Per packet, the bulk AEAD call or the leftover-blocks call.
        let bytes = assert_a_call_per_quic_packet(&report, t, calls);
        // The family's bytes are the payload plus QUIC's framing, less the
        // last partial block of each packet (encrypted outside the family).
        let sealed: u64 = crypto
            .symbols
            .iter()
            .filter(|s| s.family.starts_with("ring AES-GCM"))
            .filter_map(|s| s.bytes)
            .sum();
        let ratio = sealed as f64 / bytes as f64;
        assert!(
            (0.8..2.0).contains(&ratio),
            "{}: the AES-GCM calls covered {sealed} bytes for {bytes} payload bytes",
            t.role
        );
    }
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    assert!(
        folded.contains("bench_proto::tuic"),
        "the TUIC endpoint's functions are not in the flame graph"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
