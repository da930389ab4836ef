//! The `reality` chain in one process: SOCKS5 client → reality client
//! endpoint → reality server endpoint → sink, BLAKE3 on both ends; the
//! fallback that relays every unauthenticated connection byte for byte to
//! the destination; replays; bad input after the handshake.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bench_proto::reality::client::{self, run_client, ClientOptions};
use bench_proto::reality::server::{run_server, ServerOptions};
use bench_proto::reality::{auth, hello, parse_x25519_key, Settings};
use bench_proto::relay::RelayOptions;
use bench_proto::TargetAddr;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use support::tuic::UUID;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SHORT_ID: &str = "0a1b2c3d";
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A server key pair and the settings of a server that falls back to `dest`.
struct Keys {
    private: [u8; 32],
    public: [u8; 32],
}

impl Keys {
    fn new() -> Keys {
        let (private, public) = bench_proto::reality::generate_key_pair().unwrap();
        Keys {
            private: parse_x25519_key(&private).unwrap(),
            public: parse_x25519_key(&public).unwrap(),
        }
    }
}

async fn start_server(keys: &Keys, dest: Option<SocketAddr>) -> SocketAddr {
    let mut settings = Settings::default();
    settings.set("short_ids", SHORT_ID).unwrap();
    settings.set("max_time_diff_s", "60").unwrap();
    if let Some(d) = dest {
        settings.set("dest", &d.to_string()).unwrap();
    }
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    let opts = ServerOptions::new(keys.private, UUID.parse().unwrap(), &settings);
    tokio::spawn(run_server(l, opts));
    addr
}

fn client_options(keys: &Keys, server: SocketAddr) -> ClientOptions {
    ClientOptions {
        server,
        server_name: "localhost".into(),
        server_key: keys.public,
        short_id: auth::ShortId::parse(SHORT_ID).unwrap(),
        user: UUID.parse().unwrap(),
        hybrid_share: true,
        relay: RelayOptions::default(),
    }
}

async fn start_client(keys: &Keys, server: SocketAddr) -> SocketAddr {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(run_client(l, client_options(keys, server)));
    addr
}

/// A destination that records every byte each connection sends until the
/// sender shuts down, then answers `reply` and closes.
async fn start_recording_dest(
    reply: &'static [u8],
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                let _ = tx.send(got);
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, rx)
}

/// A real TLS 1.3 server (rustls) for `localhost` that greets each client.
async fn start_tls_dest() -> (SocketAddr, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().to_vec();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(der.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let _ = tls.write_all(b"hello from the destination").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, der)
}

/// A ClientHello record sealed as a REALITY client would, with the given
/// server key, short id and clock.
fn sealed_hello(server_public: &[u8; 32], short_id: &str, now: SystemTime) -> Vec<u8> {
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).unwrap();
    let mut secret_bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret_bytes).unwrap();
    let secret = x25519_dalek::StaticSecret::from(secret_bytes);
    let public = x25519_dalek::PublicKey::from(&secret);
    let mut msg = hello::client_hello(&hello::HelloParams {
        random,
        server_name: "localhost",
        x25519_public: *public.as_bytes(),
        hybrid_share: Some(&[0u8; hello::HYBRID_SHARE_LEN]),
        grease_seed: [0x0a, 0x1a, 0x2a, 0x3a],
        ech_grease_payload: &[9u8; 144],
    });
    let shared = secret
        .diffie_hellman(&x25519_dalek::PublicKey::from(*server_public))
        .to_bytes();
    let key = auth::AuthKey::derive(&shared, &random);
    let id = auth::ShortId::parse(short_id).unwrap();
    auth::seal(&key, &mut msg, hello::SESSION_ID_OFFSET, &random, &id, now).unwrap();
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    record.extend_from_slice(&msg);
    record
}

/// Sends `bytes` to the server, shuts down, and returns what came back.
async fn send_and_read(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    within(10, async {
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back).await;
        back
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_moves_data_both_ways_blake3_checked() {
    let keys = Keys::new();
    let server = start_server(&keys, None).await;
    let socks = start_client(&keys, server).await;
    within(120, async {
        bulk_through(socks, 16 * MIB + 3, 9 * MIB + 7).await;
        concurrent_through(socks, 16, 200_000).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_hellos_reach_the_destination_byte_for_byte() {
    let keys = Keys::new();
    let (dest, mut recorded) = start_recording_dest(b"the destination answers").await;
    let server = start_server(&keys, Some(dest)).await;
    let now = SystemTime::now();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "another server's key",
            sealed_hello(&Keys::new().public, SHORT_ID, now),
        ),
        (
            "a clock 10 minutes slow",
            sealed_hello(&keys.public, SHORT_ID, now - Duration::from_secs(600)),
        ),
        (
            "a clock 10 minutes fast",
            sealed_hello(&keys.public, SHORT_ID, now + Duration::from_secs(600)),
        ),
        (
            "an unknown short id",
            sealed_hello(&keys.public, "ffff", now),
        ),
        (
            "not TLS at all",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        (
            "a truncated record",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00],
        ),
        (
            "an oversized record",
            vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0x00],
        ),
    ];
    for (what, hello) in cases {
        let mut sent = hello.clone();
        // Bytes after the ClientHello go to the destination too.
        sent.extend_from_slice(b"\x17\x03\x03\x00\x05after");
        let back = send_and_read(server, &sent).await;
        let got = within(10, recorded.recv()).await.unwrap();
        assert_eq!(got, sent, "{what}: the destination got other bytes");
        assert_eq!(back, b"the destination answers", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tls_client_gets_the_destinations_own_certificate() {
    let keys = Keys::new();
    let (dest, dest_cert) = start_tls_dest().await;
    let server = start_server(&keys, Some(dest)).await;
    // Trusts only the destination's certificate: the handshake succeeds
    // only if that is the certificate that came back through our server.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(dest_cert)).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(server).await.unwrap();
    let mut tls = within(
        10,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("handshake with the destination through our server");
    let mut greeting = Vec::new();
    within(10, tls.read_to_end(&mut greeting)).await.unwrap();
    assert_eq!(greeting, b"hello from the destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_hello_goes_to_the_destination() {
    let keys = Keys::new();
    let (dest, mut recorded) = start_recording_dest(b"the destination answers").await;
    let server = start_server(&keys, Some(dest)).await;
    let hello = sealed_hello(&keys.public, SHORT_ID, SystemTime::now());
    // First time: authenticated, so our server answers with its own
    // ServerHello (a handshake record), and the destination sees nothing.
    let mut first = TcpStream::connect(server).await.unwrap();
    first.write_all(&hello).await.unwrap();
    let mut head = [0u8; 1];
    within(10, first.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[0], 0x16, "the server answered the first hello itself");
    // The same bytes again: a replay, relayed untouched.
    let back = send_and_read(server, &hello).await;
    assert_eq!(within(10, recorded.recv()).await.unwrap(), hello);
    assert_eq!(back, b"the destination answers");
    assert!(
        recorded.try_recv().is_err(),
        "the first hello reached the destination"
    );
}

/// A REALITY session to the server, handshake done, for writing raw
/// VLESS bytes.
async fn reality_session(
    keys: &Keys,
    server: SocketAddr,
) -> bench_proto::tls13::record::TlsStream<TcpStream> {
    let opts = client_options(keys, server);
    let tcp = TcpStream::connect(server).await.unwrap();
    within(10, client::handshake(&opts, tcp)).await.unwrap()
}

/// The server closes a session whose VLESS request it refuses; the
/// target sees no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_vless_requests_close_the_session_and_the_server_serves_on() {
    let keys = Keys::new();
    let server = start_server(&keys, None).await;
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    let user: [u8; 16] = {
        let u: bench_proto::tuic::wire::Uuid = UUID.parse().unwrap();
        u.0
    };
    let request = |uuid: [u8; 16], command: u8| {
        let mut r = vec![0u8];
        r.extend_from_slice(&uuid);
        r.extend_from_slice(&[0, command]);
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(&[1, 127, 0, 0, 1]);
        r
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an unknown user id", request([0x42; 16], 1)),
        ("command UDP", request(user, 2)),
        ("command mux", request(user, 3)),
        ("version 1", {
            let mut r = request(user, 1);
            r[0] = 1;
            r
        }),
        ("address type 9", {
            let mut r = request(user, 1);
            let n = r.len();
            r[n - 5] = 9;
            r
        }),
    ];
    for (what, bytes) in cases {
        let mut tls = reality_session(&keys, server).await;
        tls.write_all(&bytes).await.unwrap();
        tls.flush().await.unwrap();
        let mut rest = Vec::new();
        // Within 5 s, under the server's 10-s wait for a request: the
        // close must be the refusal, not that wait running out.
        let read = within(5, tls.read_to_end(&mut rest)).await;
        assert!(
            read.is_err() || rest.is_empty(),
            "{what}: the server answered {rest:?}"
        );
    }
    let reached = tokio::time::timeout(Duration::from_millis(300), target.accept()).await;
    assert!(reached.is_err(), "a refused request reached the target");
    let socks = start_client(&keys, server).await;
    within(60, bulk_through(socks, MIB, MIB)).await;
}

/// Records that break the TLS layer after the handshake (garbage, a
/// truncated record, an oversized length) end that session only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_records_after_the_handshake_close_the_session_only() {
    let keys = Keys::new();
    let server = start_server(&keys, None).await;
    // (what, bytes, whether our side then ends the stream). Only the
    // truncated record needs the end to be noticed; the others must close
    // the session while our side stays open, so the close is the server's
    // verdict on the bytes, not on an end of stream.
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", vec![0xff; 300], false),
        (
            "a truncated record",
            vec![0x17, 0x03, 0x03, 0x00, 0x64, 1, 2, 3],
            true,
        ),
        (
            "an oversized length",
            vec![0x17, 0x03, 0x03, 0x48, 0x01, 0, 0, 0],
            false,
        ),
        (
            "a record that does not authenticate",
            {
                let mut r = vec![0x17, 0x03, 0x03, 0x00, 0x20];
                r.extend_from_slice(&[0x55; 32]);
                r
            },
            false,
        ),
    ];
    for (what, bytes, end) in cases {
        let tls = reality_session(&keys, server).await;
        let mut tcp = tls.into_inner();
        tcp.write_all(&bytes).await.unwrap();
        if end {
            let _ = tcp.shutdown().await;
        }
        expect_closed(&mut tcp, CLOSE_WITHIN).await;
        eprintln!("{what}: closed");
    }
    let socks = start_client(&keys, server).await;
    within(60, bulk_through(socks, MIB, MIB)).await;
}

/// A CONNECT through a client that holds another server's key fails, and
/// with no destination set the server only closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_another_key_gets_no_stream() {
    let keys = Keys::new();
    let server = start_server(&keys, None).await;
    let socks = start_client(&Keys::new(), server).await;
    let target = TargetAddr::Ip("127.0.0.1:9".parse().unwrap());
    let (_, code) = within(20, socks_connect(socks, &target)).await;
    assert_ne!(code, 0, "CONNECT succeeded with the wrong key");
}
