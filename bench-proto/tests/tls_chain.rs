//! The `tls` (Trojan over TLS 1.3) chain in one process: SOCKS5 client →
//! tls client endpoint → tls server endpoint → sink, BLAKE3 on both ends;
//! the fallback for refused connections; bad input to the server.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bench_proto::pki;
use bench_proto::tls::{self, run_client, run_server, ClientOptions, ServerOptions};
use bench_proto::TargetAddr;
use rustls::pki_types::ServerName;
use support::trojan::{self, header};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const PASSWORD: &str = "correct horse battery staple";
const LIMIT: Duration = Duration::from_secs(300);
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A certificate for localhost in a temporary directory.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new() -> Certs {
        let dir = TempDir::new("tls-chain");
        pki::self_signed(&["localhost", "127.0.0.1"])
            .unwrap()
            .write(dir.path())
            .unwrap();
        Certs { dir }
    }
    fn cert(&self) -> std::path::PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> std::path::PathBuf {
        self.dir.join("key.pem")
    }
}

async fn start_server(certs: &Certs, settings: &tls::Settings) -> SocketAddr {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    let opts = ServerOptions::new(&certs.cert(), &certs.key(), PASSWORD, settings).unwrap();
    tokio::spawn(run_server(l, opts));
    addr
}

async fn start_client(certs: &Certs, server: SocketAddr, password: &str) -> SocketAddr {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    let opts = ClientOptions::new(
        server,
        &certs.cert(),
        "localhost",
        password,
        &tls::Settings::default(),
    )
    .unwrap();
    tokio::spawn(run_client(l, opts));
    addr
}

/// A bare TLS connection to the server, for writing raw Trojan bytes.
async fn tls_connect(certs: &Certs, server: SocketAddr) -> TlsStream<TcpStream> {
    let config = pki::client_config(&certs.cert(), &[]).unwrap();
    let tcp = TcpStream::connect(server).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_64_mib_both_ways() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let server = start_server(&certs, &tls::Settings::default()).await;
        let socks = start_client(&certs, server, PASSWORD).await;
        bulk_through(socks, BULK_UP, BULK_DOWN).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_connections_stay_apart() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let mut settings = tls::Settings::default();
        // ALPN on both sides must not change anything.
        settings.set("alpn", "h2,http/1.1").unwrap();
        let server = start_server(&certs, &settings).await;
        let socks = start_client(&certs, server, PASSWORD).await;
        concurrent_through(socks, 48, 256 * 1024 + 3).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_target_and_early_payload() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let server = start_server(&certs, &tls::Settings::default()).await;
        // Through the client endpoint, by name.
        let socks = start_client(&certs, server, PASSWORD).await;
        let (sink, mut reports) = start_sink(1000).await;
        let target = TargetAddr::Domain("localhost".into(), sink.port());
        let (stream, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0);
        let ends = exchange(stream, "by-name", 5000).await;
        let at_sink = reports.recv().await.unwrap();
        assert_eq!(at_sink.received, ends.sent);
        assert_eq!(ends.received, at_sink.sent);

        // Header and payload in one write: the payload must reach the sink.
        let mut s = tls_connect(&certs, server).await;
        let mut bytes = header(PASSWORD, 1, &TargetAddr::Ip(sink));
        bytes.extend_from_slice(b"early payload");
        s.write_all(&bytes).await.unwrap();
        s.shutdown().await.unwrap();
        let got = expect_closed(&mut s, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1000);
        let at_sink = reports.recv().await.unwrap();
        assert_eq!(at_sink.received.bytes, 13);
        assert_eq!(
            at_sink.received.hash,
            blake3::hash(b"early payload"),
            "payload differs"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_goes_to_the_fallback_with_every_byte() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let (fallback, mut recorded) = start_recorder(b"HTTP/1.1 200 OK\r\n\r\nfallback").await;
        let mut settings = tls::Settings::default();
        settings.set("fallback", &fallback.to_string()).unwrap();
        let server = start_server(&certs, &settings).await;
        let (sink, mut sink_reports) = start_sink(10).await;

        // A prober speaking HTTP over TLS gets the web server's answer.
        let mut s = tls_connect(&certs, server).await;
        let probe =
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: probe/1.0\r\nAccept: */*\r\n\r\n";
        s.write_all(probe).await.unwrap();
        s.shutdown().await.unwrap();
        let answer = expect_closed(&mut s, CLOSE_WITHIN).await;
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\nfallback");
        assert_eq!(recorded.recv().await.unwrap(), probe);

        // A short probe that then waits is handed over too.
        let mut s = tls_connect(&certs, server).await;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.shutdown().await.unwrap();
        expect_closed(&mut s, CLOSE_WITHIN).await;
        assert_eq!(recorded.recv().await.unwrap(), b"GET / HTTP/1.0\r\n\r\n");

        // Our client with the wrong password: the fallback sees its whole
        // request and payload, the target sees nothing.
        let socks = start_client(&certs, server, "wrong password").await;
        let target = TargetAddr::Ip(sink);
        let (mut stream, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0, "Trojan has no refusal to pass on");
        stream.write_all(b"client payload").await.unwrap();
        stream.shutdown().await.unwrap();
        let answer = expect_closed(&mut stream, CLOSE_WITHIN).await;
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\nfallback");
        let mut want = header("wrong password", 1, &target);
        want.extend_from_slice(b"client payload");
        assert_eq!(recorded.recv().await.unwrap(), want);

        // A malformed request with the right password goes there as well.
        let mut s = tls_connect(&certs, server).await;
        let bad = header(PASSWORD, 3, &target);
        s.write_all(&bad).await.unwrap();
        s.shutdown().await.unwrap();
        expect_closed(&mut s, CLOSE_WITHIN).await;
        assert_eq!(recorded.recv().await.unwrap(), bad);

        assert!(sink_reports.try_recv().is_err(), "the target was reached");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_without_fallback_is_closed() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let server = start_server(&certs, &tls::Settings::default()).await;
        let (sink, mut sink_reports) = start_sink(10).await;
        let socks = start_client(&certs, server, "wrong password").await;
        let (mut stream, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0, "Trojan has no refusal to pass on");
        // Not shut down: the server must close by itself.
        stream.write_all(b"client payload").await.unwrap();
        let got = expect_closed(&mut stream, CLOSE_WITHIN).await;
        assert!(got.is_empty(), "{got:?}");
        assert!(sink_reports.try_recv().is_err(), "the target was reached");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_closes_that_connection_and_others_go_on() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let server = start_server(&certs, &tls::Settings::default()).await;
        let socks = start_client(&certs, server, PASSWORD).await;

        // A client in the middle of its transfer while the bad ones come.
        let good = Midway::start(socks).await;
        let sink = good.sink;

        let target = TargetAddr::Ip(sink);
        let cases = trojan::bad_requests(PASSWORD, &target);
        for (what, bytes) in cases {
            let mut s = tls_connect(&certs, server).await;
            s.write_all(&bytes).await.unwrap();
            s.shutdown().await.unwrap();
            let got = expect_closed(&mut s, CLOSE_WITHIN).await;
            assert!(got.is_empty(), "{what}: got {got:?}");
        }
        // Not TLS at all.
        let mut s = TcpStream::connect(server).await.unwrap();
        s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
        expect_closed(&mut s, CLOSE_WITHIN).await;
        // A TLS client that never sends a byte is cut after the handshake
        // timeout, not kept forever; not waited for here.

        // The client in the middle goes on...
        good.finish().await;
        // ...and new ones are served.
        bulk_through(socks, MIB, MIB).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_closes_the_stream() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let server = start_server(&certs, &tls::Settings::default()).await;
        let socks = start_client(&certs, server, PASSWORD).await;
        let (mut stream, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0, "Trojan has no refusal to pass on");
        let got = expect_closed(&mut stream, CLOSE_WITHIN).await;
        assert!(got.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_an_untrusted_or_misnamed_server() {
    with_timeout(LIMIT, async {
        let certs = Certs::new();
        let server = start_server(&certs, &tls::Settings::default()).await;
        // Trusts another certificate.
        let other = Certs::new();
        let socks = start_client(&other, server, PASSWORD).await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0x01);
        // Right certificate, wrong name.
        let l = bind().await;
        let socks = l.local_addr().unwrap();
        let opts = ClientOptions::new(
            server,
            &certs.cert(),
            "example.com",
            PASSWORD,
            &tls::Settings::default(),
        )
        .unwrap();
        tokio::spawn(run_client(l, opts));
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0x01);
        // Server endpoint down.
        let socks = start_client(&certs, closed_port().await, PASSWORD).await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0x05);
    })
    .await;
}
