//! The `protoprof-endpoint` binary as a child process, and a blocking
//! SOCKS5 CONNECT for tests that drive it from plain threads.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::Proc;

pub const BIN: &str = env!("CARGO_BIN_EXE_protoprof-endpoint");

/// Starts `protoprof-endpoint ARGS`, killed when dropped.
pub fn endpoint(name: &str, args: &[&str]) -> Proc {
    Proc::spawn(name, Command::new(BIN).args(args))
}

/// Runs the binary to completion (at most `wait`); returns its exit code
/// and stderr lines.
pub fn run_to_exit(args: &[&str], wait: Duration) -> (Option<i32>, Vec<String>) {
    let mut p = endpoint("endpoint", args);
    let status = p.wait(wait);
    (status.code(), p.rest_of_stderr())
}

/// A blocking SOCKS5 CONNECT to an IPv4 `target`, reads timing out after
/// `wait`; returns the stream and the reply code.
pub fn socks_connect_blocking(
    proxy: SocketAddr,
    target: SocketAddr,
    wait: Duration,
) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
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

/// Sends `payload` through the SOCKS5 proxy `socks` to a sink that answers
/// with its input reversed after EOF (writing from a second thread while
/// reading), and checks the answer.
pub fn check_reversed_echo(socks: SocketAddr, payload: Vec<u8>, wait: Duration) {
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let sink_thread = thread::spawn(move || {
        let (mut s, _) = sink.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.reverse();
        s.write_all(&got).unwrap();
    });

    let (mut s, code) = socks_connect_blocking(socks, sink_addr, wait);
    assert_eq!(code, 0);
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
}

/// Stops `server` with SIGTERM and `client` with SIGINT; both must exit 0.
pub fn stop_both(server: &mut Proc, client: &mut Proc, wait: Duration) {
    server.signal(libc::SIGTERM);
    client.signal(libc::SIGINT);
    assert!(server.wait(wait).success());
    assert!(client.wait(wait).success());
}
