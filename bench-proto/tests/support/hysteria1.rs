//! Helpers the `hysteria1_*` tests share: our endpoints in process and a raw
//! QUIC client (ALPN `hysteria`) that speaks Hysteria v1 by hand.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use bench_proto::hysteria1::wire::{
    read_message, ClientHello, Request, Response, ServerHello, MAX_RESPONSE, MAX_SERVER_HELLO,
};
use bench_proto::hysteria1::{
    self, Client, ClientOptions, Hysteria1Error, ServerOptions, Settings,
};
use bench_proto::pki;
use bench_proto::quic::QuicStream;
use bench_proto::relay::RelayOptions;
use bench_proto::udp_frag::SplitError;
use bench_proto::TargetAddr;
use bytes::Bytes;
use tokio::net::TcpListener;

use super::quic::{QuicCase, UdpSession};

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

/// Hysteria v1 in the QUIC chain harness.
pub struct Hysteria1;

impl QuicCase for Hysteria1 {
    type Protocol = hysteria1::Hello;
    type Session = hysteria1::UdpSession;
    const BAD_REQUEST: u32 = hysteria1::CLOSE_PROTOCOL_ERROR;

    async fn start_server(pki: &Pki) -> SocketAddr {
        start_h1_server(pki, h1settings(&[])).await
    }

    fn client(pki: &Pki, server: SocketAddr) -> Client {
        Client::new(h1client_options(pki, server, h1settings(&[]), PASSWORD)).unwrap()
    }

    /// Through the hellos; the hello stream is kept.
    async fn raw(pki: &Pki, server: SocketAddr) -> (quinn::Connection, Box<dyn Any>) {
        let conn = raw_h1(pki, server).await;
        let (answer, control) = hello(&conn, &good_hello()).await;
        assert!(answer.unwrap().ok);
        (conn, Box::new(control))
    }

    async fn open_raw(conn: &quinn::Connection, target: &TargetAddr) -> QuicStream {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let request = Request {
            udp: false,
            target: target.clone(),
        };
        send.write_all(&request.encode().unwrap()).await.unwrap();
        let response = read_message(&mut recv, Response::decode, MAX_RESPONSE)
            .await
            .unwrap();
        assert!(response.ok, "{response:?}");
        QuicStream { send, recv }
    }

    fn bad_requests() -> Vec<(&'static str, Vec<u8>, bool)> {
        let good = Request {
            udp: false,
            target: TargetAddr::Domain("example.com".into(), 80),
        }
        .encode()
        .unwrap();
        let mut unknown = good.clone();
        unknown[0] = 2;
        vec![
            ("truncated request", good[..good.len() - 1].to_vec(), true),
            ("request without a host length", vec![0], true),
            ("unknown request type", unknown, false),
            ("host length 65535", vec![0, 0xff, 0xff], false),
            ("empty host", vec![0, 0, 0, 0, 80], false),
            (
                "host with a colon",
                vec![0, 0, 3, b'a', b':', b'b', 0, 80],
                false,
            ),
            ("garbage", b"\xffGET / HTTP/1.1\r\n\r\n".to_vec(), false),
        ]
    }

    async fn udp_session(client: &Client, target: &TargetAddr) -> hysteria1::UdpSession {
        client.udp_session(target).await.unwrap()
    }
}

impl UdpSession for hysteria1::UdpSession {
    type Error = Hysteria1Error;

    async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), Hysteria1Error> {
        hysteria1::UdpSession::send_to(self, payload, target).await
    }

    async fn recv_from(&mut self) -> (Bytes, TargetAddr) {
        hysteria1::UdpSession::recv_from(self).await.unwrap()
    }

    fn too_large(e: &Hysteria1Error) -> bool {
        matches!(
            e,
            Hysteria1Error::Quic(bench_proto::quic::Error::Split(SplitError::PacketTooLarge(
                65_536
            )))
        )
    }
}
