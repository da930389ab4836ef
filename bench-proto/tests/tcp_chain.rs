//! The `tcp` chain in one process: SOCKS5 client → client endpoint → server
//! endpoint → sink, with every byte hashed on both ends.

use std::net::SocketAddr;
use std::time::Duration;

use bench_proto::relay::RelayOptions;
use bench_proto::tcp::{run_client, run_server, ClientOptions, ServerOptions};
use bench_proto::TargetAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MIB: u64 = 1024 * 1024;
/// Odd sizes, different per direction, so that a lost, duplicated or
/// swapped chunk cannot go unnoticed.
const UP_LEN: u64 = 16 * MIB + 4099;
const DOWN_LEN: u64 = 16 * MIB + 777;
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes and BLAKE3 hash of one direction as one end saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    bytes: u64,
    hash: blake3::Hash,
}

/// What one end of a proxied connection sent and received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ends {
    sent: Tally,
    received: Tally,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A port with nothing listening on it.
async fn closed_port() -> SocketAddr {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

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

/// Writes `len` bytes of the BLAKE3 XOF stream of `seed`, then shuts the
/// write half down.
async fn send<W: AsyncWrite + Unpin>(mut w: W, seed: &str, len: u64) -> Tally {
    let mut source = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 48 * 1024 + 13];
    let mut left = len;
    while left > 0 {
        let n = buf.len().min(left as usize);
        source.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    w.shutdown().await.unwrap();
    Tally {
        bytes: len,
        hash: hasher.finalize(),
    }
}

/// Reads to EOF, hashing.
async fn receive<R: AsyncRead + Unpin>(mut r: R) -> Tally {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Tally {
        bytes,
        hash: hasher.finalize(),
    }
}

/// Sends and receives at the same time, as a real peer does.
async fn exchange(stream: TcpStream, seed: &str, len: u64) -> Ends {
    let (r, w) = stream.into_split();
    let (sent, received) = tokio::join!(send(w, seed, len), receive(r));
    Ends { sent, received }
}

/// A sink that, for every connection, hashes what it receives while sending
/// `down_len` bytes of the "down" stream, and reports each connection.
async fn start_sink(down_len: u64) -> (SocketAddr, mpsc::UnboundedReceiver<Ends>) {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(exchange(stream, "down", down_len).await);
            });
        }
    });
    (addr, rx)
}

/// A SOCKS5 CONNECT; returns the stream and the reply code.
async fn socks_connect(proxy: SocketAddr, target: &TargetAddr) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    s.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut req = vec![5, 1, 0];
    target.encode(&mut req).unwrap();
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 3];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!((head[0], head[2]), (5, 0), "reply header {head:?}");
    // The bound address has the same encoding as a target address.
    TargetAddr::read_from(&mut s).await.unwrap();
    (s, head[1])
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

async fn with_timeout<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_both_ways_by_ipv4() {
    with_timeout(bulk_through_chain("127.0.0.1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_both_ways_by_domain() {
    with_timeout(bulk_through_chain("localhost")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connections_stay_apart() {
    with_timeout(async {
        const CONNS: usize = 8;
        const LEN: u64 = MIB + 1;
        let (socks, _) = start_chain().await;
        let (sink, mut reports) = start_sink(LEN).await;
        let target = TargetAddr::Ip(sink);
        let mut tasks = Vec::new();
        for i in 0..CONNS {
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                let (stream, code) = socks_connect(socks, &target).await;
                assert_eq!(code, 0);
                // A different upload per connection.
                exchange(stream, &format!("up-{i}"), LEN + i as u64).await
            }));
        }
        let mut uploads = Vec::new();
        for t in tasks {
            let ends = t.await.unwrap();
            assert_eq!(ends.received.bytes, LEN);
            uploads.push(ends.sent);
        }
        let mut arrived = Vec::new();
        for _ in 0..CONNS {
            arrived.push(reports.recv().await.unwrap().received);
        }
        let key = |t: &Tally| (t.bytes, *t.hash.as_bytes());
        uploads.sort_by_key(key);
        arrived.sort_by_key(key);
        assert_eq!(uploads, arrived);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_closed_port_is_refused_through_the_chain() {
    with_timeout(async {
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
    with_timeout(async {
        let socks = start_client(closed_port().await).await;
        let target = TargetAddr::Ip("127.0.0.1:9".parse().unwrap());
        let (_, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0x05);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drops_bad_requests_and_keeps_serving() {
    with_timeout(async {
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
