//! `protoprof-endpoint hysteria2`: two processes relay a few MiB (with and
//! without Salamander); bad settings exit 2 with one line.

mod hysteria2_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hysteria2_support::{pki, PASSWORD};

const WAIT: Duration = Duration::from_secs(30);

/// A spawned endpoint, killed by its handle when dropped.
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

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "endpoint did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

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
    let mut reply = [0u8; 10]; // IPv4 bound address: the client binds 127.0.0.1
    s.read_exact(&mut reply).unwrap();
    (s, reply[1])
}

/// Server and client processes with `extra` settings on both; 4 MiB go to a
/// sink that answers with them reversed.
fn relay_through_two_processes(extra: &[&str]) {
    let pki = pki();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    let mut args = vec![
        "hysteria2",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        cert,
        "--key",
        key,
        "--password",
        PASSWORD,
    ];
    args.extend_from_slice(extra);
    let mut server = Endpoint::spawn(&args);
    let server_addr = server.listening_on().to_string();
    let mut args = vec![
        "hysteria2",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &server_addr,
        "--ca",
        cert,
        "--server-name",
        "localhost",
        "--password",
        PASSWORD,
    ];
    args.extend_from_slice(extra);
    let mut client = Endpoint::spawn(&args);
    let socks = client.listening_on();

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
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let payload = payload.clone();
        thread::spawn(move || {
            s.write_all(&payload).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    writer.join().unwrap();
    sink_thread.join().unwrap();
    let mut want = payload;
    want.reverse();
    assert!(answer == want, "answer of {} bytes differs", answer.len());

    server.signal(libc::SIGTERM);
    client.signal(libc::SIGINT);
    assert!(server.wait().success());
    assert!(client.wait().success());
}

#[test]
fn two_processes_relay_and_exit_0_on_signals() {
    relay_through_two_processes(&[]);
}

#[test]
fn two_processes_relay_with_salamander_and_brutal() {
    relay_through_two_processes(&[
        "--set",
        "hysteria2.obfs=salamander",
        "--set",
        "hysteria2.obfs_password=pass the salt",
        "--set",
        "hysteria2.up_mbps=1000",
        "--set",
        "hysteria2.down_mbps=1000",
    ]);
}

#[test]
fn bad_hysteria2_settings_exit_2_with_one_line() {
    let pki = pki();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    for (set, names) in [
        ("hysteria2.x=1", "hysteria2.x"),
        ("hysteria2.obfs=xor", "hysteria2.obfs"),
        ("hysteria2.obfs=salamander", "hysteria2.obfs_password"),
        ("hysteria2.up_mbps=fast", "hysteria2.up_mbps"),
        ("hysteria2.udp=maybe", "hysteria2.udp"),
    ] {
        let mut e = Endpoint::spawn(&[
            "hysteria2",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
            "--password",
            PASSWORD,
            "--set",
            set,
        ]);
        let status = e.wait();
        let lines = e.stderr_lines();
        assert_eq!(status.code(), Some(2), "{set}: {lines:?}");
        assert_eq!(lines.len(), 1, "{set}: {lines:?}");
        assert!(lines[0].contains(names), "{set}: {lines:?}");
    }
    // A missing --ca or --password is a usage error too.
    for args in [
        &[
            "hysteria2",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--password",
            PASSWORD,
        ][..],
        &[
            "hysteria2",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
        ][..],
    ] {
        let mut e = Endpoint::spawn(args);
        let status = e.wait();
        let lines = e.stderr_lines();
        assert_eq!(status.code(), Some(2), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    }
}
