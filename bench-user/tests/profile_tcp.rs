//! End to end: `protoprof profile tcp` as a user runs it, as a child
//! process. Needs root (eBPF); see tests/probes.rs.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use protoprof::capture;

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
        protoprof::drive::IntegrityStatus::Ok
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
            Some(capture::Reading::Value(ns)) => assert!(*ns > 0),
            other => panic!("task clock: {other:?}"),
        }
        // Unavailable with a reason, or a real non-zero count: never zero.
        match t.counters.get("cycles") {
            Some(capture::Reading::Value(v)) => assert!(*v > 0),
            Some(capture::Reading::Unavailable(why)) => assert!(!why.is_empty()),
            None => panic!("cycles missing"),
        }
    }
    let svg = std::fs::read_to_string(dir.join("cpu.svg")).expect("cpu.svg");
    assert!(
        svg.contains("bench_proto::relay"),
        "the relay's own functions are not in the flame graph"
    );
    let folded = std::fs::read_to_string(dir.join("cpu.folded")).expect("cpu.folded");
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

    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
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
        protoprof::drive::IntegrityStatus::Ok
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
    let folded = std::fs::read_to_string(dir.join("cpu.folded")).expect("cpu.folded");
    assert!(
        folded.contains("bench_proto::tuic"),
        "the TUIC endpoint's functions are not in the flame graph"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
