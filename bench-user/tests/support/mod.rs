//! What the end-to-end tests share: the binaries, scratch directories, and
//! the clean-up checks (no BPF program of ours loaded, no process left).
#![allow(dead_code)] // each test file uses a different part

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use protoprof::capture;

pub const PROTOPROF: &str = env!("CARGO_BIN_EXE_protoprof");

/// How long one protoprof command of a test may take before it counts as
/// hung: over three times the longest, soak.rs's three-minute soak
/// (`soak 180s`).
/// A hang then fails its test with what every thread was doing, instead of
/// running into CI's limit with no word of where.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(600);

/// What a test does with a command's standard error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// Captured and also copied to the test's standard error as it comes,
    /// so CI's log shows a run's progress.
    Echo,
    /// Captured only (the test reads it).
    Keep,
}

/// `cmd.output()`, bounded by `limit`: stdout and stderr are captured (see
/// [`Stderr`]). Past the limit, or when the command has exited but
/// something it started still holds its output open, the test fails with
/// the processes' threads, kernel stacks and (with gdb) backtraces.
pub fn output_within(cmd: &mut Command, limit: Duration, stderr: Stderr) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    finish_within(child, limit, stderr)
}

/// `child.wait_with_output()`, bounded by `limit` (see [`output_within`]);
/// the streams that were not piped come back empty.
pub fn finish_within(mut child: Child, limit: Duration, stderr: Stderr) -> Output {
    let pid = child.id();
    let out = child.stdout.take().map(|s| drain(s, None));
    let err = child
        .stderr
        .take()
        .map(|s| drain(s, (stderr == Stderr::Echo).then(std::io::stderr)));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on our own child") {
            break status;
        }
        if started.elapsed() > limit {
            let tree = describe_processes(&descendants(pid));
            stop_everything(&mut child);
            // A process that escaped both kills (reparented elsewhere)
            // may still hold the pipe: the text so far is not waited for.
            let settle = Instant::now() + Duration::from_secs(10);
            while err.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < settle {
                std::thread::sleep(Duration::from_millis(50));
            }
            let err = err
                .filter(|t| t.is_finished())
                .map(|t| t.join().unwrap_or_default())
                .unwrap_or_default();
            panic!(
                "command {pid} still running after {limit:?}; its processes:\n{tree}\n\
                 its stderr, last 4 KiB:\n{}",
                tail(&err, 4096)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its pipes close when it and everything that inherited them are gone.
    let quiet = Instant::now() + Duration::from_secs(10);
    while [&out, &err]
        .iter()
        .any(|t| t.as_ref().is_some_and(|t| !t.is_finished()))
    {
        if Instant::now() > quiet {
            let left = my_children();
            let tree = describe_processes(&left);
            for p in &left {
                // SAFETY: kill(2) on pids that are our children.
                unsafe { libc::kill(*p as i32, libc::SIGKILL) };
            }
            panic!(
                "command {pid} exited ({status}) but left processes holding its output open:\n{tree}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Output {
        status,
        stdout: out
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default(),
        stderr: err
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default(),
    }
}

/// Reads `from` to its end on a thread of its own, copying to `echo`.
fn drain(
    mut from: impl Read + Send + 'static,
    mut echo: Option<std::io::Stderr>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if let Some(e) = echo.as_mut() {
                let _ = e.write_all(&buf[..n]);
            }
        }
        all
    })
}

fn tail(bytes: &[u8], n: usize) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(n)..]).into_owned()
}

/// SIGTERM (the runner's own clean-up), then SIGKILL to what is left of
/// the command and of anything that came to us as an orphan.
fn stop_everything(child: &mut Child) {
    // SAFETY: kill(2) on our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut left = descendants(child.id());
    left.extend(my_children());
    for p in left {
        // SAFETY: kill(2) on our own child or its descendants.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    let _ = child.wait();
}

/// `pid` and every process under it, parents first.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let me = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == me).map(|(p, _)| *p));
        i += 1;
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Each process's command line, and for each of its threads the name,
/// state, wait channel and kernel stack; then gdb's backtraces, if gdb is
/// installed (bounded to a minute a process).
fn describe_processes(pids: &[u32]) -> String {
    let mut s = String::new();
    for pid in pids {
        let read =
            |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let cmdline = read("cmdline").replace('\0', " ");
        s.push_str(&format!("== pid {pid}: {cmdline}\n"));
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten();
        for t in tasks {
            let dir = t.path();
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim().chars().next().unwrap_or('?'));
            s.push_str(&format!(
                "  tid {} {} state {} wchan {}\n",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                state.unwrap_or('?'),
                read("wchan").trim()
            ));
            for line in read("stack").lines() {
                s.push_str(&format!("      {line}\n"));
            }
        }
        s.push_str(&gdb_backtraces(*pid));
    }
    s
}

fn gdb_backtraces(pid: u32) -> String {
    let Ok(mut gdb) = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return "  (no gdb: no user backtraces)\n".into();
    };
    let text = gdb.stdout.take().map(|s| drain(s, None));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && matches!(gdb.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = gdb.kill();
    let _ = gdb.wait();
    let text = text
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8_lossy(&text).into_owned()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

pub fn endpoint() -> PathBuf {
    let p = Path::new(PROTOPROF).with_file_name("protoprof-endpoint");
    assert!(
        p.is_file(),
        "{} missing: run `cargo xtask build` (xtask test does)",
        p.display()
    );
    p
}

pub fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("protoprof-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("out dir");
    d
}

pub fn profile_cmd(out: &Path, duration: &str) -> Command {
    profile_named("tcp", out, duration)
}

/// `protoprof profile NAME --duration D` into `out`.
pub fn profile_named(name: &str, out: &Path, duration: &str) -> Command {
    profile_named_with_endpoint(name, out, duration, &endpoint())
}

/// [`profile_named`] with another protoprof-endpoint binary.
pub fn profile_named_with_endpoint(
    name: &str,
    out: &Path,
    duration: &str,
    endpoint: &Path,
) -> Command {
    let mut cmd = Command::new(PROTOPROF);
    cmd.arg("profile")
        .arg(name)
        .arg("--duration")
        .arg(duration)
        .arg("--out")
        .arg(out)
        .arg("--profiles")
        .arg(workspace().join("profiles"))
        .arg("--endpoint")
        .arg(endpoint);
    cmd
}

/// `protoprof profile NAME` with the profile's own durations and `--set`
/// each of `sets`; it must succeed and write a valid report, whose
/// directory and contents are returned.
pub fn profile_as_written(
    name: &str,
    out: &Path,
    sets: &[&str],
) -> (PathBuf, protoprof::report::Report) {
    let mut cmd = Command::new(PROTOPROF);
    cmd.arg("profile")
        .arg(name)
        .arg("--out")
        .arg(out)
        .arg("--profiles")
        .arg(workspace().join("profiles"))
        .arg("--endpoint")
        .arg(endpoint());
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let result = output_within(&mut cmd, COMMAND_LIMIT, Stderr::Echo);
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "protoprof failed:\n{stdout}");
    let dir = PathBuf::from(stdout.lines().last().expect("a last line").trim());
    let report = assert_run_valid(&dir);
    (dir, report)
}

/// Run `protoprof profile NAME --duration D` into `out`; it must succeed and
/// print the run directory (inside `out`) last. Returns the directory, the
/// report and the printed output.
pub fn profile_ok(
    name: &str,
    out: &Path,
    duration: &str,
) -> (PathBuf, protoprof::report::Report, String) {
    profile_ok_with(name, out, duration, &[])
}

/// [`profile_ok`] with `--set` overrides.
pub fn profile_ok_with(
    name: &str,
    out: &Path,
    duration: &str,
    sets: &[&str],
) -> (PathBuf, protoprof::report::Report, String) {
    run_ok(profile_named(name, out, duration), out, sets)
}

/// Run a `protoprof profile` command with `--set` each of `sets`; it must
/// succeed and print the run directory (inside `out`) last.
pub fn run_ok(
    mut cmd: Command,
    out: &Path,
    sets: &[&str],
) -> (PathBuf, protoprof::report::Report, String) {
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let result = output_within(&mut cmd, COMMAND_LIMIT, Stderr::Echo);
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(
        result.status.success(),
        "protoprof failed ({}):\n{stdout}",
        result.status
    );
    let dir = PathBuf::from(stdout.lines().last().expect("a last line").trim());
    assert!(
        dir.starts_with(out),
        "last line is not the run dir: {}",
        dir.display()
    );
    let report = assert_run_valid(&dir);
    (dir, report, stdout)
}

/// The published schema, docs/report.schema.json.
pub fn published_schema() -> serde_json::Value {
    let path = workspace().join("docs/report.schema.json");
    let text = std::fs::read_to_string(&path).expect("docs/report.schema.json");
    serde_json::from_str(&text).expect("docs/report.schema.json is JSON")
}

/// Every way `value` breaks the published schema (empty when it is valid).
pub fn schema_errors(value: &serde_json::Value) -> Vec<String> {
    let schema = published_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect()
}

/// A run directory's report.json is valid against the published schema,
/// reads back as this protoprof's report, and every side file it names is
/// there with the BLAKE3 and size it gives. Returns the report.
pub fn assert_run_valid(dir: &Path) -> protoprof::report::Report {
    let path = dir.join("report.json");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("report.json"))
            .expect("report.json is JSON");
    let errors = schema_errors(&value);
    assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    let report = protoprof::render::read_json(&path).expect("report.json");
    for entry in &report.stacks {
        let bytes = protoprof::report::stacks::read_verified(dir, entry).expect("side file");
        assert_eq!(bytes.len() as u64, entry.bytes, "{}", entry.file);
    }
    report
}

/// Write `report` into the run directory `dir` the way a run does: each
/// graph as a side file under stacks/, named in report.json.
pub fn write_run(
    dir: &Path,
    report: &protoprof::report::Report,
    graphs: &[protoprof::report::FoldedGraph],
) {
    std::fs::create_dir_all(dir).expect("run dir");
    let mut r = report.clone();
    r.stacks = graphs
        .iter()
        .map(|g| protoprof::report::stacks::write_graph(dir, g).expect("side file"))
        .collect();
    protoprof::render::write_json(&r, dir).expect("report.json");
}

/// Orphans of anything we started come to us, so "no child left" can be
/// checked by process id after the runner is gone.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Pids whose parent is this test process.
pub fn my_children() -> Vec<u32> {
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
        // A stat line without a numeric ppid is a parsing bug: say so
        // rather than count the process as no child of ours.
        let ppid: u32 = f
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("/proc/{pid}/stat has no ppid: {stat}"));
        if ppid == me && state != "Z" {
            out.push(pid);
        }
    }
    out
}

pub fn assert_clean() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = capture::loaded_program_names().expect("listing loaded BPF programs");
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

/// Each endpoint of a QUIC chain seals or opens every payload byte once, in
/// packets of at most ~1.5 KB, each at least one AEAD call: `calls` (the
/// target's, per-call pass) must be at least window bytes / 1500. Returns
/// the window bytes.
pub fn assert_a_call_per_quic_packet(
    report: &protoprof::report::Report,
    t: &protoprof::report::Target,
    calls: u64,
) -> u64 {
    let bytes = report
        .probes
        .per_call_window_bytes
        .expect("per-call window bytes");
    assert!(
        calls >= bytes / 1500,
        "{}: {calls} AEAD calls for {bytes} bytes: {:?}",
        t.role,
        t.crypto.as_ref().map(|c| &c.symbols)
    );
    bytes
}

/// A profile's tail: one 3 s bulk phase on 2 connections (`direction`),
/// with the syscalls, counters and cpu probes only.
pub fn bulk_with_syscalls_and_cpu(direction: &str) -> String {
    format!(
        r#"[[phase]]
pattern = "bulk"
connections = 2
direction = "{direction}"
chunk_size = 65536
warmup_s = 0.5
duration_s = 3

[probes]
syscalls = true
counters = true

[probes.cpu]
enabled = true
frequency_hz = 99
"#
    )
}

/// Connections opened by the run's phases, summed (each makes one
/// handshake in the protocols that have one).
pub fn phase_connections(report: &protoprof::report::Report) -> u64 {
    report
        .workload
        .phases
        .iter()
        .map(|p| p.connections as u64)
        .sum()
}
