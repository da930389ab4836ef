//! A server that forks a worker per connection (a Python stand-in speaking
//! the `tcp` protocol, run as the profile's server command) is measured
//! with its workers: the bytes relayed, the syscalls and the CPU samples
//! are the workers', and the report lists them under the server. Without
//! following forks this server was reported with zero syscalls and zero
//! samples. Needs root.

use protoprof::report::{IntegrityStatus, Metric, Role};

mod support;
use support::*;

/// The server: accept, fork; the child reads the target address (SOCKS5
/// form), connects, answers 0, relays both ways until both sides close.
/// No braces but the placeholder: the runner substitutes `{…}`.
const FORKING_SERVER: &str = r#"import os, select, signal, socket
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {server_port}))
s.listen(64)
def exact(c, n):
    b = b''
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            os._exit(0)
        b += x
    return b
def serve(c):
    t = exact(c, 1)[0]
    if t == 1:
        host = socket.inet_ntoa(exact(c, 4))
    elif t == 3:
        host = exact(c, exact(c, 1)[0]).decode()
    else:
        host = socket.inet_ntop(socket.AF_INET6, exact(c, 16))
    port = int.from_bytes(exact(c, 2), 'big')
    u = socket.create_connection((host, port))
    c.sendall(b'\0')
    peer = dict([(c, u), (u, c)])
    live = [c, u]
    while live:
        r, _, _ = select.select(live, [], [])
        for x in r:
            d = x.recv(65536)
            if d:
                peer[x].sendall(d)
            else:
                peer[x].shutdown(socket.SHUT_WR)
                live.remove(x)
while True:
    c, _ = s.accept()
    if os.fork() == 0:
        s.close()
        serve(c)
        os._exit(0)
    c.close()
"#;

#[test]
#[ignore = "needs root"]
fn a_server_forking_a_worker_per_connection_is_measured_with_its_workers() {
    become_subreaper();
    let out = out_dir("forking-server");
    let spec = out.join("forking.toml");
    let command = serde_json::to_string(&["python3", "-c", FORKING_SERVER]).expect("json");
    std::fs::write(
        &spec,
        format!(
            r#"name = "forking"
protocol = "tcp"

[endpoints.server]
command = {command}

[setup]
enabled = false

{}"#,
            bulk_with_syscalls_and_cpu("both")
        ),
    )
    .expect("write profile");
    let result = output_within(
        std::process::Command::new(PROTOPROF)
            .arg("profile")
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .arg("--endpoint")
            .arg(endpoint()),
        COMMAND_LIMIT,
        Stderr::Echo,
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "protoprof failed: {stdout}");
    let dir = std::path::PathBuf::from(stdout.lines().last().expect("run dir").trim());
    let report = assert_run_valid(&dir);
    assert_eq!(report.workload.integrity, IntegrityStatus::Ok);

    let server = report
        .targets
        .iter()
        .find(|t| t.role == Role::Server)
        .expect("server target");
    // The server process first, then one worker per connection of the
    // phase, each forked by it (and exited or still draining at the end).
    let (parent, workers) = server.processes.split_first().expect("processes");
    assert_eq!((parent.pid, parent.parent), (server.pid, None));
    assert_eq!(workers.len(), 2, "{:?}", server.processes);
    for w in workers {
        assert_eq!(w.parent, Some(server.pid), "{w:?}");
        assert_eq!(w.comm, parent.comm, "{w:?}");
    }
    // Every byte of the window went through a worker's recv and send: the
    // server's syscalls moved the window's bytes twice (in and out), all
    // of it in the workers (the parent only accepts); up to a tenth less,
    // for the bytes in socket buffers at the window's edges (the counted
    // syscalls are those that end in the window).
    let window_bytes: u64 = report
        .workload
        .phases
        .iter()
        .map(|p| p.window_bytes_up + p.window_bytes_down)
        .sum();
    let moved: u64 = server.syscalls.iter().map(|s| s.bytes).sum();
    assert!(window_bytes > 1 << 20, "{window_bytes} bytes in the window");
    assert!(
        moved * 10 >= 2 * window_bytes * 9 && moved <= 2 * window_bytes * 11 / 10,
        "the server's syscalls moved {moved} bytes, the window carried {window_bytes}"
    );
    let worker_syscalls: u64 = workers.iter().map(|w| w.syscalls).sum();
    assert!(
        worker_syscalls * 10 >= (worker_syscalls + parent.syscalls) * 9,
        "{:?}",
        server.processes
    );
    // Relaying in Python takes CPU: the samples are the workers'.
    let worker_samples: u64 = workers.iter().map(|w| w.cpu_samples).sum();
    assert!(
        server.cpu.samples >= worker_samples,
        "{:?}",
        server.processes
    );
    assert!(worker_samples >= 30, "{:?}", server.processes);
    // The per-call pass follows the workers too: each recv() of up to
    // 64 KiB makes a bytes object of its size through libc's malloc, in a
    // worker (the parent only accepts), so about 16 such allocations per
    // MiB relayed (8 leaves room for the socket buffers at the window's
    // edges); they were 0 while the allocator's uprobes stayed in the
    // parent. The report says how late the workers' uprobes came.
    match server.metrics.get("buffer_allocs_per_mib") {
        Some(Metric::Value(v)) => assert!(*v >= 8.0, "{v} buffer allocations per MiB"),
        other => panic!("buffer_allocs_per_mib: {other:?}"),
    }
    assert!(
        report.warnings.iter().any(|w| w.starts_with(
            "server endpoint: the per-call probes (alloc, crypto) were attached in 2 forked"
        )),
        "{:?}",
        report.warnings
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
