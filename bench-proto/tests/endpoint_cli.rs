//! The `protoprof-endpoint` binary: argument errors, and a real chain of two
//! processes that relays and exits cleanly on signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// A spawned endpoint, killed by its handle if a test ends early.
struct Endpoint {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Endpoint {
    fn spawn(args: &[&str]) -> Endpoint {
        let mut child = Command::new(env!("CARGO_BIN_EXE_protoprof-endpoint"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Lines arrive on a channel so that waiting for one can time out.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Endpoint { child, stderr: rx }
    }

    /// Waits for the `listening on ADDR` line.
    fn listening_on(&self) -> SocketAddr {
        let line = self
            .stderr
            .recv_timeout(WAIT)
            .expect("no 'listening on' line");
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "endpoint did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything it wrote to stderr (after it exited).
    fn stderr_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to completion; returns its exit code and stderr lines.
fn run_to_exit(args: &[&str]) -> (Option<i32>, Vec<String>) {
    let mut e = Endpoint::spawn(args);
    let status = e.wait();
    (status.code(), e.stderr_lines())
}

#[test]
fn unknown_setting_exits_2_naming_the_key() {
    let (code, stderr) = run_to_exit(&[
        "tcp",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--set",
        "relay.nope=1",
    ]);
    assert_eq!(code, Some(2), "{stderr:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("relay.nope"), "{stderr:?}");
    assert!(
        stderr[0].contains("relay.buffer_size"),
        "names the fix: {stderr:?}"
    );
}

#[test]
fn bad_setting_value_exits_2_naming_the_key() {
    for arg in [
        "relay.buffer_size=lots",
        "relay.buffer_size=0",
        "relay.buffer_size",
    ] {
        let (code, stderr) =
            run_to_exit(&["tcp", "server", "--listen", "127.0.0.1:0", "--set", arg]);
        assert_eq!(code, Some(2), "{arg}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{arg}: {stderr:?}");
        assert!(stderr[0].contains("relay.buffer_size"), "{arg}: {stderr:?}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    let cases: [&[&str]; 5] = [
        // --server is required for the client side...
        &["tcp", "client", "--listen", "127.0.0.1:0"],
        // ...and refused on the server side.
        &[
            "tcp",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
        ],
        // --listen has no default.
        &["tcp", "server"],
        &["carrier-pigeon", "server", "--listen", "127.0.0.1:0"],
        &["tcp", "server", "--listen", "not-an-address"],
    ];
    for args in cases {
        let (code, stderr) = run_to_exit(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr:?}");
        assert!(!stderr.is_empty(), "{args:?}");
    }
}

/// A SOCKS5 CONNECT to `target`; returns the stream and the reply code.
fn socks_connect(proxy: SocketAddr, target: SocketAddr) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut method = [0u8; 2];
    s.read_exact(&mut method).unwrap();
    assert_eq!(method, [5, 0]);
    let SocketAddr::V4(v4) = target else {
        panic!("IPv4 target expected")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10]; // IPv4 bound address: the endpoints bind 127.0.0.1
    s.read_exact(&mut reply).unwrap();
    (s, reply[1])
}

#[test]
fn chain_of_two_processes_relays_and_exits_0_on_signals() {
    let mut server = Endpoint::spawn(&[
        "tcp",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--set",
        "relay.buffer_size=4096",
    ]);
    let server_addr = server.listening_on().to_string();
    let mut client = Endpoint::spawn(&[
        "tcp",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &server_addr,
    ]);
    let socks = client.listening_on();

    // A sink that answers with its input reversed, after the client's EOF.
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let sink_thread = thread::spawn(move || {
        let (mut s, _) = sink.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.reverse();
        s.write_all(&got).unwrap();
    });

    let (mut s, code) = socks_connect(socks, sink_addr);
    assert_eq!(code, 0);
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    s.write_all(&payload).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    sink_thread.join().unwrap();
    let mut want = payload;
    want.reverse();
    assert!(answer == want, "answer of {} bytes differs", answer.len());

    // A refused target through the real processes.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(socks_connect(socks, closed_addr).1, 0x05);

    server.signal(libc::SIGTERM);
    client.signal(libc::SIGINT);
    assert!(server.wait().success());
    assert!(client.wait().success());
}
