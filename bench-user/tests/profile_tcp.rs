//! End to end: `protoprof profile tcp` as a user runs it, as a child
//! process. Needs root (eBPF); see tests/probes.rs.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use protoprof::{capture, render};

const PROTOPROF: &str = env!("CARGO_BIN_EXE_protoprof");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn endpoint() -> PathBuf {
    let p = Path::new(PROTOPROF).with_file_name("protoprof-endpoint");
    assert!(
        p.is_file(),
        "{} missing: run `cargo xtask build` (xtask test does)",
        p.display()
    );
    p
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("protoprof-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("out dir");
    d
}

fn profile_cmd(out: &Path, duration: &str) -> Command {
    let mut cmd = Command::new(PROTOPROF);
    cmd.arg("profile")
        .arg("tcp")
        .arg("--duration")
        .arg(duration)
        .arg("--out")
        .arg(out)
        .arg("--profiles")
        .arg(workspace().join("profiles"))
        .arg("--endpoint")
        .arg(endpoint());
    cmd
}

/// Orphans of anything we started come to us, so "no child left" can be
/// checked by process id after the runner is gone.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Pids whose parent is this test process.
fn my_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid: u32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == me && state != "Z" {
            out.push(pid);
        }
    }
    out
}

fn assert_clean() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = capture::loaded_program_names();
        let kids = my_children();
        if left.is_empty() && kids.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: programs {left:?}, processes {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn tcp_profile_end_to_end() {
    become_subreaper();
    let out = out_dir("e2e");
    let result = profile_cmd(&out, "3")
        .stderr(Stdio::inherit())
        .output()
        .expect("run protoprof");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "protoprof failed ({}):\n{stdout}",
        result.status
    );
    let dir = PathBuf::from(stdout.lines().last().expect("a last line").trim());
    assert!(
        dir.starts_with(&out),
        "last line is not the run dir: {}",
        dir.display()
    );
    assert!(
        stdout.contains("syscalls:"),
        "no terminal summary:\n{stdout}"
    );

    let report = render::read_json(&dir.join("report.json")).expect("report.json");
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
