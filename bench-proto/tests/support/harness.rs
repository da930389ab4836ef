//! One test harness for every protocol: each protocol is a [`Case`] (how to
//! start its two endpoint processes, a client with a wrong credential, and
//! its bad command lines), and the suites below run the same checks on each:
//!
//! - [`relay_between_processes`]: server and client processes relay bulk and
//!   concurrent traffic, BLAKE3-checked, and exit 0 on SIGTERM / SIGINT;
//! - [`bad_options_exit_2`]: each bad command line exits 2 with one line
//!   naming what to fix;
//! - [`wrong_credentials_are_refused`]: a client with a wrong credential gets
//!   no byte through, and the server goes on serving a right one;
//! - [`garbage_is_dropped`]: bytes that are no protocol at all (on TCP, or
//!   as UDP datagrams for QUIC) end that connection only;
//! - [`our_client_to_peer_server`] and [`peer_client_to_our_server`]:
//!   interop with another implementation (a [`Peer`]), 64 MiB each way on
//!   separate connections, BLAKE3-checked.
//!
//! A new protocol adds a `Case` (and a `Peer` for its interop partner) and
//! one line per suite in `tests/protocols.rs` / `tests/interop.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use bench_proto::TargetAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::endpoint::{endpoint, run_to_exit, stop_both};
use super::{
    bulk_exact, bulk_through, concurrent_through, expect_closed, socks_connect, with_timeout, Proc,
    MIB,
};

/// How long a process may take to start, stop, or answer.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP listener.
    Tcp,
    /// A UDP socket (QUIC).
    Udp,
}

/// A protocol as the suites see it: command lines of `protoprof-endpoint`.
pub struct Case {
    /// The protocol argument (`tls`, `tuic`, …).
    pub protocol: &'static str,
    /// What the server listens on.
    pub transport: Transport,
    /// Server arguments after `PROTOCOL server --listen 127.0.0.1:0`.
    pub server: Vec<String>,
    /// Client arguments after `PROTOCOL client --listen 127.0.0.1:0
    /// --server ADDR`.
    pub client: Vec<String>,
    /// Like `client`, with a credential the server must refuse (`None`
    /// for a protocol without credentials, like `tcp`).
    pub wrong_client: Option<Vec<String>>,
    /// Whole command lines that must exit 2, each with a text its one
    /// stderr line must contain.
    pub bad: Vec<(Vec<String>, String)>,
    /// The certificate and key the server uses, for a peer that needs
    /// them too (`None` for ssh).
    pub cert_key: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Files the arguments name (certificates, keys), kept while the case
    /// lives.
    pub _files: Box<dyn std::any::Any>,
}

impl Case {
    /// Starts the server process; returns it and its address.
    pub fn start_server(&self) -> (Proc, SocketAddr) {
        let mut args = vec![self.protocol, "server", "--listen", "127.0.0.1:0"];
        args.extend(self.server.iter().map(String::as_str));
        let p = endpoint(&format!("{} server", self.protocol), &args);
        let addr = p.first_line_listening_on(WAIT);
        (p, addr)
    }

    /// Starts a client process against `server` with `extra` arguments;
    /// returns it and its SOCKS5 address.
    pub fn start_client_with(&self, server: SocketAddr, extra: &[String]) -> (Proc, SocketAddr) {
        let server = server.to_string();
        let mut args = vec![
            self.protocol,
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server,
        ];
        args.extend(extra.iter().map(String::as_str));
        let p = endpoint(&format!("{} client", self.protocol), &args);
        let addr = p.first_line_listening_on(WAIT);
        (p, addr)
    }

    /// Starts the right client against `server`.
    pub fn start_client(&self, server: SocketAddr) -> (Proc, SocketAddr) {
        self.start_client_with(server, &self.client)
    }
}

/// Strings from string slices, for building cases.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// Server and client processes relay a bulk exchange (uneven lengths) and
/// eight concurrent ones, then exit 0 on SIGTERM (server) and SIGINT
/// (client).
pub async fn relay_between_processes(case: &Case) {
    let (mut server, server_addr) = case.start_server();
    let (mut client, socks) = case.start_client(server_addr);
    with_timeout(Duration::from_secs(120), async {
        bulk_through(socks, 4 * MIB + 1, 3 * MIB + 5).await;
        concurrent_through(socks, 8, 100_000).await;
    })
    .await;
    stop_both(&mut server, &mut client, WAIT);
}

/// Every bad command line of `case` exits 2 with one stderr line that
/// contains its needle.
pub fn bad_options_exit_2(case: &Case) {
    assert!(
        !case.bad.is_empty(),
        "{}: no bad command lines",
        case.protocol
    );
    for (line, needle) in &case.bad {
        let line: Vec<&str> = line.iter().map(String::as_str).collect();
        let (code, stderr) = run_to_exit(&line, WAIT);
        assert_eq!(code, Some(2), "{line:?}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{line:?}: {stderr:?}");
        assert!(stderr[0].contains(needle.as_str()), "{line:?}: {stderr:?}");
    }
}

/// A client with a wrong credential gets no byte to the target: its CONNECT
/// fails, or (protocols without an answer, like Trojan) the stream closes
/// without the target ever seeing a connection. Then a right client still
/// gets through the same server.
pub async fn wrong_credentials_are_refused(case: &Case) {
    let wrong = case
        .wrong_client
        .as_ref()
        .expect("wrong_credentials_are_refused needs a case with credentials");
    let (_server, server_addr) = case.start_server();
    let (_wrong, wrong_socks) = case.start_client_with(server_addr, wrong);
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let (mut stream, code) = socks_connect(wrong_socks, &TargetAddr::Ip(target_addr)).await;
    if code == 0 {
        // Best effort: the server may have closed already.
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        expect_closed(&mut stream, WAIT).await;
    }
    let reached = tokio::time::timeout(Duration::from_millis(500), target.accept()).await;
    assert!(
        reached.is_err(),
        "{}: a client with a wrong credential reached the target",
        case.protocol
    );
    let (_right, socks) = case.start_client(server_addr);
    with_timeout(Duration::from_secs(60), bulk_through(socks, MIB, MIB)).await;
}

/// Bytes that are no protocol at all: on TCP the server closes that
/// connection (at the latest once the sender has finished); on UDP the
/// QUIC server drops the datagrams. Either way it goes on serving a right
/// client.
pub async fn garbage_is_dropped(case: &Case) {
    let (_server, server_addr) = case.start_server();
    // Fixed, so that a failure can be replayed: no protocol here starts
    // with 0xff, and the CRLFs end any line-based reader's line.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| match i % 64 {
            62 => b'\r',
            63 => b'\n',
            _ => 0xff ^ (i % 7) as u8,
        })
        .collect();
    match case.transport {
        Transport::Tcp => {
            for _ in 0..3 {
                let mut s = TcpStream::connect(server_addr).await.unwrap();
                // The server may close as soon as it has seen enough.
                let _ = s.write_all(&garbage).await;
                let _ = s.shutdown().await;
                expect_closed(&mut s, WAIT).await;
            }
        }
        Transport::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for chunk in garbage.chunks(1200) {
                s.send_to(chunk, server_addr).await.unwrap();
            }
        }
    }
    let (_client, socks) = case.start_client(server_addr);
    with_timeout(Duration::from_secs(60), bulk_through(socks, MIB, MIB)).await;
}

/// A running peer (stopped when dropped) and the address it offers.
pub type Started = (Box<dyn std::any::Any>, SocketAddr);

/// The other implementation of a protocol (sing-box, OpenSSH), as the
/// interop suite uses it. The handles it returns stop the peer when
/// dropped.
pub struct Peer {
    /// Its name, for messages.
    pub name: &'static str,
    /// Starts its server; returns a handle and the address to give our
    /// client.
    pub start_server: Box<dyn Fn() -> Started>,
    /// Starts its client against our server at the address; returns a
    /// handle and its SOCKS5 address.
    pub start_client: Box<dyn Fn(SocketAddr) -> Started>,
}

/// 64 MiB each way, on separate connections (8 × 8 MiB, known lengths
/// shut down only when complete: sing-box does not pass a half-close
/// through).
async fn bulk_64_mib(socks: SocketAddr) {
    bulk_exact(socks, 8, 8 * MIB, 8 * MIB).await;
}

/// Waits until a CONNECT through `socks` succeeds: a QUIC server has no
/// "port closed", so there is no other sign that the peer is up.
pub async fn wait_until_through(socks: SocketAddr, who: &str) {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = TargetAddr::Ip(target.local_addr().unwrap());
    for _ in 0..40 {
        if TcpStream::connect(socks).await.is_ok() {
            // A peer that closes instead of answering panics the helper;
            // that is one more failed try.
            let target = target.clone();
            let tried = tokio::spawn(async move { socks_connect(socks, &target).await.1 });
            if let Ok(0) = tried.await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no CONNECT through {who} succeeded");
}

/// Our client process against the peer's server.
pub async fn our_client_to_peer_server(case: &Case, peer: &Peer) {
    let (_peer, server) = (peer.start_server)();
    let (_client, socks) = case.start_client(server);
    with_timeout(Duration::from_secs(300), async {
        wait_until_through(socks, peer.name).await;
        bulk_64_mib(socks).await;
    })
    .await;
}

/// The peer's client against our server process.
pub async fn peer_client_to_our_server(case: &Case, peer: &Peer) {
    let (_server, server_addr) = case.start_server();
    let (_peer, socks) = (peer.start_client)(server_addr);
    with_timeout(Duration::from_secs(300), async {
        wait_until_through(socks, peer.name).await;
        bulk_64_mib(socks).await;
    })
    .await;
}
