//! The `tcp` chain in one process: SOCKS5 client → client endpoint → server
//! endpoint → sink, with every byte hashed on both ends.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bench_proto::relay::RelayOptions;
use bench_proto::tcp::{run_client, run_server, ClientOptions, ServerOptions};
use bench_proto::TargetAddr;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Odd sizes, different per direction, so that a lost, duplicated or
/// swapped chunk cannot go unnoticed.
const UP_LEN: u64 = 16 * MIB + 4099;
const DOWN_LEN: u64 = 16 * MIB + 777;
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts a server and a client endpoint; returns (socks address, server address).
async fn start_chain() -> (SocketAddr, SocketAddr) {
    let server_l = bind().await;
    let server = server_l.local_addr().unwrap();
    tokio::spawn(run_server(server_l, ServerOptions::default()));
    let socks = start_client(server).await;
    (socks, server)
}

async fn start_client(server: SocketAddr) -> SocketAddr {
    let client_l = bind().await;
    let socks = client_l.local_addr().unwrap();
    let opts = ClientOptions {
        server,
        relay: RelayOptions::default(),
    };
    tokio::spawn(run_client(client_l, opts));
    socks
}

async fn bulk_through_chain(target_host: &str) {
    let (socks, _) = start_chain().await;
    let (sink, mut reports) = start_sink(DOWN_LEN).await;
    let target = match target_host.parse() {
        Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, sink.port())),
        Err(_) => TargetAddr::Domain(target_host.into(), sink.port()),
    };
    let (stream, code) = socks_connect(socks, &target).await;
    assert_eq!(code, 0, "CONNECT {target} failed");
    let generator = exchange(stream, "up", UP_LEN).await;
    let sink = reports.recv().await.unwrap();

    assert_eq!(generator.sent.bytes, UP_LEN);
    assert_eq!(sink.sent.bytes, DOWN_LEN);
    assert_eq!(sink.received, generator.sent, "upload differs");
    assert_eq!(generator.received, sink.sent, "download differs");
    assert_ne!(generator.sent.hash, sink.sent.hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_both_ways_by_ipv4() {
    with_timeout(TEST_TIMEOUT, bulk_through_chain("127.0.0.1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_both_ways_by_domain() {
    with_timeout(TEST_TIMEOUT, bulk_through_chain("localhost")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connections_stay_apart() {
    with_timeout(TEST_TIMEOUT, async {
        const CONNS: usize = 8;
        const LEN: u64 = MIB + 1;
        let (socks, _) = start_chain().await;
        concurrent_through(socks, CONNS, LEN).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_closed_port_is_refused_through_the_chain() {
    with_timeout(TEST_TIMEOUT, async {
        let (socks, _) = start_chain().await;
        let target = TargetAddr::Ip(closed_port().await);
        let (mut stream, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0x05, "expected 'connection refused'");
        // ...and the client endpoint closes the connection after the reply.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_endpoint_down_is_refused() {
    with_timeout(TEST_TIMEOUT, async {
        let socks = start_client(closed_port().await).await;
        let target = TargetAddr::Ip("127.0.0.1:9".parse().unwrap());
        let (_, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0x05);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drops_bad_requests_and_keeps_serving() {
    with_timeout(TEST_TIMEOUT, async {
        let (_, server) = start_chain().await;
        let bad_requests: [&[u8]; 5] = [
            &[],              // nothing at all
            &[1, 127, 0],     // truncated IPv4
            &[4, 0, 0, 0],    // truncated IPv6
            &[9, 1, 2, 3, 4], // unknown ATYP
            &[3, 0, 0, 80],   // empty domain
        ];
        for bad in bad_requests {
            let mut s = TcpStream::connect(server).await.unwrap();
            s.write_all(bad).await.unwrap();
            s.shutdown().await.unwrap();
            // Closed without a status byte. A reset is also a close: the
            // server may not have read all of a malformed request.
            let mut answer = Vec::new();
            match s.read_to_end(&mut answer).await {
                Ok(_) => assert!(answer.is_empty(), "{bad:?} got {answer:?}"),
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{bad:?}"),
            }
        }

        // A good request afterwards is served.
        let (sink, mut reports) = start_sink(1000).await;
        let mut s = TcpStream::connect(server).await.unwrap();
        let mut req = Vec::new();
        TargetAddr::Ip(sink).encode(&mut req).unwrap();
        s.write_all(&req).await.unwrap();
        let mut status = [0xaa];
        s.read_exact(&mut status).await.unwrap();
        assert_eq!(status, [0]);
        let ends = exchange(s, "up", 2000).await;
        let at_sink = reports.recv().await.unwrap();
        assert_eq!(at_sink.received, ends.sent);
        assert_eq!(ends.received, at_sink.sent);
        assert_eq!(ends.received.bytes, 1000);

        // A refused target is reported with its SOCKS5 code.
        let mut s = TcpStream::connect(server).await.unwrap();
        let mut req = Vec::new();
        TargetAddr::Ip(closed_port().await)
            .encode(&mut req)
            .unwrap();
        s.write_all(&req).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, [0x05]);
    })
    .await;
}
