//! Helpers the `hysteria1_*` tests share: our endpoints in process and a raw
//! QUIC client (ALPN `hysteria`) that speaks Hysteria v1 by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use bench_proto::hysteria1::wire::{read_message, ClientHello, ServerHello, MAX_SERVER_HELLO};
use bench_proto::hysteria1::{self, Client, ClientOptions, ServerOptions, Settings};
use bench_proto::pki;
use bench_proto::relay::RelayOptions;
use tokio::net::TcpListener;

pub use super::tuic::PASSWORD;
use super::Pki;

pub fn h1settings(pairs: &[(&str, &str)]) -> Settings {
    let mut s = Settings::default();
    for (k, v) in pairs {
        s.set(k, v).unwrap();
    }
    s
}

/// Starts a hysteria1 server on 127.0.0.1; returns its UDP address.
pub async fn start_h1_server(pki: &Pki, settings: Settings) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let opts = ServerOptions {
        tls: pki::server_config(&pki.cert, &pki.key, &[]).unwrap(),
        auth: PASSWORD.to_owned(),
        settings,
        relay: RelayOptions::default(),
    };
    tokio::spawn(async move {
        if let Err(e) = hysteria1::run_server(socket, opts).await {
            panic!("hysteria1 server: {e}");
        }
    });
    addr
}

pub fn h1client_options(
    pki: &Pki,
    server: SocketAddr,
    settings: Settings,
    auth: &str,
) -> ClientOptions {
    ClientOptions {
        server,
        server_name: "localhost".into(),
        auth: auth.into(),
        tls: pki::client_config(&pki.cert, &[]).unwrap(),
        settings,
        relay: RelayOptions::default(),
    }
}

/// Starts a hysteria1 client with a SOCKS5 listener on 127.0.0.1.
pub async fn start_h1_client(opts: ClientOptions) -> (SocketAddr, Client) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socks = l.local_addr().unwrap();
    let client = Client::new(opts).unwrap();
    tokio::spawn(client.clone().serve(l));
    (socks, client)
}

/// A plain quinn connection (ALPN `hysteria`, server name localhost), for
/// speaking the protocol by hand.
pub async fn raw_h1(pki: &Pki, server: SocketAddr) -> quinn::Connection {
    let mut tls = pki::client_config(&pki.cert, &[]).unwrap();
    tls.alpn_protocols = vec![hysteria1::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(server, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// Sends `hello` on the first stream and reads the server hello; returns
/// it and the hello stream (keep it: it lives as long as the connection).
pub async fn hello(
    conn: &quinn::Connection,
    hello: &ClientHello,
) -> (
    Result<ServerHello, hysteria1::WireError>,
    (quinn::SendStream, quinn::RecvStream),
) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&hello.encode().unwrap()).await.unwrap();
    let answer = read_message(&mut recv, ServerHello::decode, MAX_SERVER_HELLO).await;
    (answer, (send, recv))
}

/// The right client hello at 1000 Mbit/s each way.
pub fn good_hello() -> ClientHello {
    ClientHello {
        send_bps: 125_000_000,
        recv_bps: 125_000_000,
        auth: PASSWORD.as_bytes().to_vec(),
    }
}
