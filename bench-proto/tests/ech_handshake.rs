//! ECH handshakes between our client and server, as BoringSSL reports
//! them and as they look on the wire:
//!
//! - with the server's config, ECH is accepted on both ends, the server
//!   sees the inner name, and the ClientHello on the wire names only the
//!   public name: the inner name's bytes appear nowhere in what the client
//!   sends;
//! - with a wrong config, the server completes the outer handshake as the
//!   public name (its certificate) and offers its configs as retry
//!   configs; our client aborts (it does not retry);
//! - a GREASE-ECH client reaches a server without ECH (our rustls `tls`
//!   server) and carries Trojan traffic through it.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bench_proto::ech::keys::{self, DEFAULT_PUBLIC_NAME};
use bench_proto::ech::{self, HandshakeFailure};
use bench_proto::tls;
use boring::ssl::NameType;
use support::ech::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(120);
/// TLS extension numbers.
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ECH: u16 = 0xfe0d;

/// A TCP relay to `upstream` that keeps every byte the client sends.
async fn start_tap(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (client, _) = l.accept().await.unwrap();
            let server = TcpStream::connect(upstream).await.unwrap();
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 16384];
                    loop {
                        let n = cr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            let _ = sw.shutdown().await;
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (addr, seen)
}

/// The extensions of the first ClientHello in `wire` (TLS records as the
/// client sent them): (type, body) pairs.
fn client_hello_extensions(wire: &[u8]) -> Vec<(u16, Vec<u8>)> {
    // Handshake bytes from the leading handshake records.
    let mut hs = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 && rest[0] == 0x16 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    assert_eq!(hs[0], 1, "not a ClientHello");
    let body_len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
    let mut b = &hs[4..4 + body_len];
    let skip = |b: &mut &[u8], n: usize| *b = &b[n..];
    skip(&mut b, 2 + 32); // legacy_version, random
    let sid = b[0] as usize;
    skip(&mut b, 1 + sid);
    let suites = u16::from_be_bytes([b[0], b[1]]) as usize;
    skip(&mut b, 2 + suites);
    let compression = b[0] as usize;
    skip(&mut b, 1 + compression);
    let ext_len = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut e = &b[2..2 + ext_len];
    let mut out = Vec::new();
    while !e.is_empty() {
        let ty = u16::from_be_bytes([e[0], e[1]]);
        let len = u16::from_be_bytes([e[2], e[3]]) as usize;
        out.push((ty, e[4..4 + len].to_vec()));
        e = &e[4 + len..];
    }
    out
}

/// The host name in a server_name extension body.
fn sni(body: &[u8]) -> String {
    assert_eq!(body[2], 0, "name type host_name");
    let len = u16::from_be_bytes([body[3], body[4]]) as usize;
    String::from_utf8(body[5..5 + len].to_vec()).unwrap()
}

fn ext(exts: &[(u16, Vec<u8>)], ty: u16) -> Option<&[u8]> {
    exts.iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, b)| b.as_slice())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_on_both_ends_and_the_inner_name_never_on_the_wire() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        let server_opts = pki.server_options(&ech::Settings::default());
        assert_eq!(server_opts.public_names, vec![DEFAULT_PUBLIC_NAME]);
        let l = bind().await;
        let server = l.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut s = ech::server::accept(&server_opts, tcp).await.unwrap();
            let ssl = s.ssl();
            let seen = (
                ssl.ech_accepted(),
                ssl.servername(NameType::HOST_NAME).map(str::to_owned),
            );
            let mut got = [0u8; 5];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(b"world").await.unwrap();
            s.shutdown().await.unwrap();
            (seen, got)
        });
        let (tap, wire) = start_tap(server).await;

        let opts = pki.client_options(tap, PASSWORD, false);
        let tcp = TcpStream::connect(tap).await.unwrap();
        let mut s = ech::client::handshake(&opts, tcp).await.unwrap();
        assert!(s.ssl().ech_accepted(), "client: ECH not accepted");
        s.write_all(b"hello").await.unwrap();
        // The stream buffers below BoringSSL (`ech.io_buffer`): written
        // bytes leave on flush.
        s.flush().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world");

        let ((server_accepted, server_name), got) = accepted.await.unwrap();
        assert!(server_accepted, "server: ECH not accepted");
        assert_eq!(server_name.as_deref(), Some(INNER_NAME));
        assert_eq!(&got, b"hello");

        let wire = wire.lock().unwrap().clone();
        let exts = client_hello_extensions(&wire);
        let outer_sni = ext(&exts, EXT_SERVER_NAME).expect("an SNI extension");
        assert_eq!(sni(outer_sni), DEFAULT_PUBLIC_NAME);
        let ech_ext = ext(&exts, EXT_ECH).expect("an ECH extension");
        assert_eq!(ech_ext[0], 0, "ECH type outer");
        let inner = INNER_NAME.as_bytes();
        assert!(
            !wire.windows(inner.len()).any(|w| w == inner),
            "the inner name {INNER_NAME:?} is in the clear in {} bytes the client sent",
            wire.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_config_gets_the_public_name_and_retry_configs_and_the_client_aborts() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        let server_opts = pki.server_options(&ech::Settings::default());
        let l = bind().await;
        let server = l.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            // The client aborts after the server's flight, so the server's
            // handshake fails; what matters is what it served.
            let _ = ech::server::accept(&server_opts, tcp).await;
        });
        let wrong = pki.wrong_config();
        let opts = pki.client_options_with(server, &wrong);
        let tcp = TcpStream::connect(server).await.unwrap();
        let err = ech::client::handshake(&opts, tcp)
            .await
            .expect_err("rejected");
        let HandshakeFailure::Rejected {
            public_name,
            retry_configs,
            peer_names,
        } = err
        else {
            panic!("not a rejection: {err}");
        };
        assert_eq!(public_name, DEFAULT_PUBLIC_NAME);
        assert_eq!(peer_names, vec![DEFAULT_PUBLIC_NAME.to_owned()]);
        let server_list = keys::load_config_list(&pki.ech_config).unwrap();
        assert_eq!(retry_configs.as_deref(), Some(server_list.as_slice()));
        served.await.unwrap();

        // Through the client endpoint: the CONNECT fails, nothing retried.
        let server = start_server(pki.server_options(&ech::Settings::default())).await;
        let socks = start_client(pki.client_options_with(server, &wrong)).await;
        let (sink, mut reports) = start_sink(10).await;
        let (_, code) = socks_connect(socks, &bench_proto::TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0x01, "general failure");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(reports.try_recv().is_err(), "the target was reached");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grease_client_reaches_a_server_without_ech() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        // Our rustls Trojan server: no ECH at all.
        let l = bind().await;
        let server = l.local_addr().unwrap();
        let tls_opts =
            tls::ServerOptions::new(&pki.cert, &pki.key, PASSWORD, &tls::Settings::default())
                .unwrap();
        tokio::spawn(tls::run_server(l, tls_opts));
        let (tap, wire) = start_tap(server).await;

        let opts = pki.client_options(tap, PASSWORD, true);
        let tcp = TcpStream::connect(tap).await.unwrap();
        let s = ech::client::handshake(&opts, tcp).await.unwrap();
        assert!(!s.ssl().ech_accepted());
        drop(s);
        let wire = wire.lock().unwrap().clone();
        let exts = client_hello_extensions(&wire);
        // GREASE: an ECH extension is sent, and the real name in the clear.
        assert_eq!(ext(&exts, EXT_ECH).expect("a GREASE ECH extension")[0], 0);
        assert_eq!(sni(ext(&exts, EXT_SERVER_NAME).unwrap()), INNER_NAME);

        // And the whole chain carries traffic.
        let socks = start_client(pki.client_options(server, PASSWORD, true)).await;
        bulk_through(socks, 4 * MIB + 1, 4 * MIB + 3).await;
    })
    .await;
}
