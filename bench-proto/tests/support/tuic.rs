//! Helpers the `tuic_*` tests share: our endpoints in process and a raw QUIC
//! client that speaks TUIC commands by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use bench_proto::pki;
use bench_proto::relay::RelayOptions;
use bench_proto::tuic::{self, Client, ClientOptions, ServerOptions, Settings, Uuid};
use tokio::net::TcpListener;

use super::Pki;

pub const UUID: &str = "6f1c2a4e-0d3b-4c5a-9e8f-1a2b3c4d5e6f";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn uuid() -> Uuid {
    UUID.parse().unwrap()
}

pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    let mut s = Settings::default();
    for (k, v) in pairs {
        s.set(k, v).unwrap();
    }
    s
}

pub fn server_options(pki: &Pki, settings: Settings) -> ServerOptions {
    ServerOptions {
        tls: pki::server_config(&pki.cert, &pki.key, &[]).unwrap(),
        users: vec![(uuid(), PASSWORD.to_owned())],
        settings,
        relay: RelayOptions::default(),
    }
}

/// Starts a tuic server on 127.0.0.1; returns its UDP address.
pub async fn start_server(pki: &Pki, settings: Settings) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let opts = server_options(pki, settings);
    tokio::spawn(async move {
        if let Err(e) = tuic::run_server(socket, opts).await {
            panic!("tuic server: {e}");
        }
    });
    addr
}

pub fn client_options(
    pki: &Pki,
    server: SocketAddr,
    settings: Settings,
    uuid: Uuid,
    password: &str,
) -> ClientOptions {
    ClientOptions {
        server,
        server_name: "localhost".into(),
        uuid,
        password: password.into(),
        tls: pki::client_config(&pki.cert, &[]).unwrap(),
        settings,
        relay: RelayOptions::default(),
    }
}

/// [`client_options`] with default settings and the right user.
pub fn default_client_options(pki: &Pki, server: SocketAddr) -> ClientOptions {
    client_options(pki, server, settings(&[]), uuid(), PASSWORD)
}

/// Starts a tuic client with a SOCKS5 listener on 127.0.0.1; returns the
/// SOCKS5 address and a handle on the client.
pub async fn start_client(opts: ClientOptions) -> (SocketAddr, Client) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socks = l.local_addr().unwrap();
    let client = Client::new(opts).unwrap();
    tokio::spawn(client.clone().serve(l));
    (socks, client)
}

/// A plain quinn client connection (ALPN h3, server name localhost) to a
/// tuic or hysteria2 server, for sending commands by hand.
pub async fn raw_connection(pki: &Pki, server: SocketAddr) -> quinn::Connection {
    let mut tls = pki::client_config(&pki.cert, &[]).unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(server, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// Sends a valid `Authenticate` on `conn`.
pub async fn authenticate(conn: &quinn::Connection) {
    let token = tuic::auth_token(conn, &uuid(), PASSWORD.as_bytes()).unwrap();
    let cmd = tuic::Command::Authenticate {
        uuid: uuid(),
        token,
    };
    send_uni(conn, &cmd.to_bytes().unwrap()).await;
}

/// Sends `bytes` on a new unidirectional stream and finishes it.
pub async fn send_uni(conn: &quinn::Connection, bytes: &[u8]) -> quinn::SendStream {
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.finish().unwrap();
    s
}
