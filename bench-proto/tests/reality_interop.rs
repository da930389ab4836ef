//! Interop with shoes 0.3.2 (Rust, its own REALITY and TLS 1.3 on aws-lc),
//! the only REALITY implementation installable here, through the one
//! harness (`support::harness`): our client process against shoes's
//! REALITY server, and shoes's client against our server process, 64 MiB
//! each way on separate connections, BLAKE3-checked.
//!
//! shoes's server always forwards the ClientHello to its destination and
//! waits for a real TLS 1.3 answer before it answers an authenticated
//! client itself, so the test runs a destination: a TLS 1.3 server in this
//! process (rustls on ring, which has no X25519MLKEM768: shoes's server
//! cannot read a destination's ServerHello that picked the hybrid group
//! our client offers as Chrome does, see `reality::hello`).
//!
//! Ignored by default: they need shoes (`cargo xtask setup` builds it into
//! its cache, or `PROTOPROF_SHOES=/path/to/shoes`). `cargo xtask test` runs
//! them; without shoes they fail, naming the install command.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;

use support::cases::{self, RealityKeys};
use support::harness::*;
use support::shoes::Shoes;
use support::sing_box::free_tcp_port;
use support::tuic::UUID;
use support::TempDir;

/// A TLS 1.3 server for localhost (rustls on ring) on a free port, running
/// on the test's runtime: shoes's REALITY destination. Returns its port.
///
/// It sends a chain of two certificates, as web sites do: shoes takes a
/// destination's flight as complete only with six records or a first
/// encrypted record over 512 bytes, and rustls's one encrypted record with
/// a lone P-256 certificate is about 512 bytes, its length varying with
/// the two ECDSA signatures; below 512 shoes waited 5 s and fell back, and
/// our client met the destination's certificate.
fn start_tls_dest() -> u16 {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let intermediate_key = rcgen::KeyPair::generate().unwrap();
    let intermediate = rcgen::CertificateParams::new(vec!["intermediate.invalid".to_owned()])
        .unwrap()
        .self_signed(&intermediate_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![
            CertificateDer::from(cert.der().to_vec()),
            CertificateDer::from(intermediate.der().to_vec()),
        ],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    port
}

/// shoes as both sides of `keys`'s REALITY.
fn shoes_peer(keys: &RealityKeys) -> Peer {
    let server_keys = keys.clone();
    let client_keys = keys.clone();
    Peer {
        name: "shoes",
        start_server: Box::new(move || {
            let dir = TempDir::new("shoes-reality-server");
            let port = free_tcp_port();
            let dest_port = start_tls_dest();
            let yaml = format!(
                r#"- address: "127.0.0.1:{port}"
  protocol:
    type: tls
    reality_targets:
      "localhost":
        private_key: "{private}"
        short_ids: ["{short_id}"]
        dest: "localhost:{dest_port}"
        protocol:
          type: vless
          user_id: "{UUID}"
          udp_enabled: false
  rules:
    - masks: ["0.0.0.0/0", "::/0"]
      action: allow
"#,
                private = server_keys.private,
                short_id = server_keys.short_id,
            );
            let shoes = Shoes::start(dir.path(), "server", &yaml);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            (Box::new((shoes, dir)), addr)
        }),
        start_client: Box::new(move |server: SocketAddr| {
            let dir = TempDir::new("shoes-reality-client");
            let port = free_tcp_port();
            let yaml = format!(
                r#"- address: "127.0.0.1:{port}"
  protocol:
    type: socks
    udp_enabled: false
  rules:
    - masks: ["0.0.0.0/0", "::/0"]
      action: allow
      client_chain:
        address: "{server}"
        protocol:
          type: reality
          public_key: "{public}"
          short_id: "{short_id}"
          sni_hostname: "localhost"
          protocol:
            type: vless
            user_id: "{UUID}"
            udp_enabled: false
"#,
                public = client_keys.public,
                short_id = client_keys.short_id,
            );
            let shoes = Shoes::start(dir.path(), "client", &yaml);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            (Box::new((shoes, dir)), addr)
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs shoes: cargo xtask setup"]
async fn our_client_to_shoes_server() {
    let keys = RealityKeys::new();
    let case = cases::reality_with(keys.clone());
    our_client_to_peer_server(&case, &shoes_peer(&keys)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs shoes: cargo xtask setup"]
async fn shoes_client_to_our_server() {
    let keys = RealityKeys::new();
    let case = cases::reality_with(keys.clone());
    peer_client_to_our_server(&case, &shoes_peer(&keys)).await;
}
