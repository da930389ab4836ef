//! Helpers the `tuic_*` tests share: our endpoints in process and a raw QUIC
//! client that speaks TUIC commands by hand.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use bench_proto::pki;
use bench_proto::quic::QuicStream;
use bench_proto::relay::RelayOptions;
use bench_proto::tuic::{self, Client, ClientOptions, ServerOptions, Settings, TuicError, Uuid};
use bench_proto::TargetAddr;
use bytes::Bytes;
use tokio::net::TcpListener;

use super::quic::{QuicCase, UdpSession};
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

/// TUIC in the QUIC chain harness.
pub struct Tuic;

impl QuicCase for Tuic {
    type Protocol = tuic::Authenticate;
    type Session = tuic::UdpSession;
    const BAD_REQUEST: u32 = tuic::STREAM_BAD_COMMAND;

    async fn start_server(pki: &Pki) -> SocketAddr {
        start_server(pki, settings(&[])).await
    }

    fn client(pki: &Pki, server: SocketAddr) -> Client {
        Client::new(default_client_options(pki, server)).unwrap()
    }

    async fn raw(pki: &Pki, server: SocketAddr) -> (quinn::Connection, Box<dyn Any>) {
        let conn = raw_connection(pki, server).await;
        authenticate(&conn).await;
        (conn, Box::new(()))
    }

    /// `Connect`; TUIC's server does not answer.
    async fn open_raw(conn: &quinn::Connection, target: &TargetAddr) -> QuicStream {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let connect = tuic::Command::Connect {
            addr: target.clone(),
        };
        send.write_all(&connect.to_bytes().unwrap()).await.unwrap();
        QuicStream { send, recv }
    }

    fn bad_requests() -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![
            ("truncated Connect header", vec![5, 1, 1, 127, 0], true),
            ("truncated before the type", vec![5], true),
            (
                "unknown command type",
                vec![5, 9, 1, 127, 0, 0, 1, 0, 80],
                true,
            ),
            (
                "unknown address type",
                vec![5, 1, 7, 127, 0, 0, 1, 0, 80],
                true,
            ),
            (
                "SOCKS5's IPv4 type is not TUIC's",
                vec![5, 1, 3, 127, 0, 0, 1, 0, 80],
                true,
            ),
            ("wrong version", vec![4, 1, 1, 127, 0, 0, 1, 0, 80], true),
            ("Heartbeat on a stream", vec![5, 4], true),
            (
                "garbage",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                true,
            ),
        ]
    }

    async fn udp_session(client: &Client, _: &TargetAddr) -> tuic::UdpSession {
        client.udp_session().unwrap()
    }
}

impl UdpSession for tuic::UdpSession {
    type Error = TuicError;

    async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), TuicError> {
        tuic::UdpSession::send_to(self, payload, target).await
    }

    async fn recv_from(&mut self) -> (Bytes, TargetAddr) {
        tuic::UdpSession::recv_from(self).await.unwrap()
    }

    fn too_large(e: &TuicError) -> bool {
        matches!(
            e,
            TuicError::Quic(bench_proto::quic::Error::Split(
                bench_proto::udp_frag::SplitError::PacketTooLarge(65_536)
            ))
        )
    }
}
