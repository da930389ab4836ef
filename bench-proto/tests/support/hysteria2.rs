//! Helpers the `hysteria2_*` tests share: our endpoints in process and a raw
//! QUIC + HTTP/3 client that speaks Hysteria 2 by hand.

use std::any::Any;
use std::net::SocketAddr;

use bench_proto::hysteria2::wire::{encode_tcp_request, put_varint, read_tcp_response};
use bench_proto::hysteria2::{
    self, Client, ClientOptions, Hysteria2Error, ServerOptions, Settings,
};
use bench_proto::pki;
use bench_proto::quic::QuicStream;
use bench_proto::relay::RelayOptions;
use bench_proto::TargetAddr;
use bytes::Bytes;
use tokio::net::TcpListener;

use super::quic::{QuicCase, UdpSession};

use super::tuic::raw_connection;
pub use super::tuic::PASSWORD;
use super::Pki;

pub fn h2settings(pairs: &[(&str, &str)]) -> Settings {
    let mut s = Settings::default();
    for (k, v) in pairs {
        s.set(k, v).unwrap();
    }
    s
}

/// Starts a hysteria2 server on 127.0.0.1; returns its UDP address.
pub async fn start_h2_server(pki: &Pki, settings: Settings) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let opts = ServerOptions {
        tls: pki::server_config(&pki.cert, &pki.key, &[]).unwrap(),
        password: PASSWORD.to_owned(),
        settings,
        relay: RelayOptions::default(),
    };
    tokio::spawn(async move {
        if let Err(e) = hysteria2::run_server(socket, opts).await {
            panic!("hysteria2 server: {e}");
        }
    });
    addr
}

pub fn h2client_options(
    pki: &Pki,
    server: SocketAddr,
    settings: Settings,
    password: &str,
) -> ClientOptions {
    ClientOptions {
        server,
        server_name: "localhost".into(),
        password: password.into(),
        tls: pki::client_config(&pki.cert, &[]).unwrap(),
        settings,
        relay: RelayOptions::default(),
    }
}

/// [`h2client_options`] with default settings and the right password.
pub fn default_h2client_options(pki: &Pki, server: SocketAddr) -> ClientOptions {
    h2client_options(pki, server, h2settings(&[]), PASSWORD)
}

/// Starts a hysteria2 client with a SOCKS5 listener on 127.0.0.1.
pub async fn start_h2_client(opts: ClientOptions) -> (SocketAddr, Client) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socks = l.local_addr().unwrap();
    let client = Client::new(opts).unwrap();
    tokio::spawn(client.clone().serve(l));
    (socks, client)
}

/// A raw QUIC connection with HTTP/3 on top, for requests and streams by
/// hand. Keep `send` alive: h3 closes the connection when it goes.
pub struct Raw {
    pub conn: quinn::Connection,
    pub send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
}

pub async fn raw(pki: &Pki, server: SocketAddr) -> Raw {
    let conn = raw_connection(pki, server).await;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = driver.wait_idle().await;
    });
    Raw { conn, send }
}

impl Raw {
    /// Sends a request (no body); returns the status and the body.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        password: Option<&str>,
    ) -> (u16, http::HeaderMap, Vec<u8>) {
        use bytes::Buf;
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://hysteria{path}"));
        if let Some(p) = password {
            req = req
                .header("Hysteria-Auth", p)
                .header("Hysteria-CC-RX", "0")
                .header("Hysteria-Padding", "xyz");
        }
        let mut s = self.send.send_request(req.body(()).unwrap()).await.unwrap();
        // The server may stop the stream once it has answered (RFC 9114
        // lets it), so finishing may fail; the response decides.
        let _ = s.finish().await;
        let resp = s.recv_response().await.unwrap();
        let mut body = Vec::new();
        while let Some(mut chunk) = s.recv_data().await.unwrap() {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                body.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        (resp.status().as_u16(), resp.headers().clone(), body)
    }

    /// Authenticates with the right password.
    pub async fn authenticate(&mut self) -> http::HeaderMap {
        let (status, headers, _) = self
            .request(http::Method::POST, hysteria2::AUTH_PATH, Some(PASSWORD))
            .await;
        assert_eq!(status, hysteria2::STATUS_AUTH_OK);
        headers
    }
}

/// Hysteria 2 in the QUIC chain harness.
pub struct Hysteria2;

impl QuicCase for Hysteria2 {
    type Protocol = hysteria2::Authenticate;
    type Session = hysteria2::UdpSession;
    const BAD_REQUEST: u32 = hysteria2::STREAM_BAD_REQUEST;

    async fn start_server(pki: &Pki) -> SocketAddr {
        start_h2_server(pki, h2settings(&[])).await
    }

    fn client(pki: &Pki, server: SocketAddr) -> Client {
        Client::new(default_h2client_options(pki, server)).unwrap()
    }

    /// Authenticated, announcing UDP; the h3 request sender is kept.
    async fn raw(pki: &Pki, server: SocketAddr) -> (quinn::Connection, Box<dyn Any>) {
        let mut raw = raw(pki, server).await;
        let headers = raw.authenticate().await;
        assert_eq!(headers.get("Hysteria-UDP").unwrap(), "true");
        (raw.conn.clone(), Box::new(raw))
    }

    async fn open_raw(conn: &quinn::Connection, target: &TargetAddr) -> QuicStream {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&encode_tcp_request(target, b"pad").unwrap())
            .await
            .unwrap();
        assert_eq!(read_tcp_response(&mut recv).await.unwrap(), Ok(()));
        QuicStream { send, recv }
    }

    fn bad_requests() -> Vec<(&'static str, Vec<u8>, bool)> {
        let varints = |ns: &[u64]| {
            let mut v = Vec::new();
            for n in ns {
                put_varint(&mut v, *n).unwrap();
            }
            v
        };
        let good =
            encode_tcp_request(&TargetAddr::Ip("127.0.0.1:9".parse().unwrap()), b"").unwrap();
        let wrong_id = [&varints(&[0x402])[..], &good[2..]].concat();
        let oversized_pad = [
            &varints(&[0x401, 11])[..],
            b"127.0.0.1:9",
            &varints(&[100_000]),
        ]
        .concat();
        let bad_addr = [&varints(&[0x401, 7])[..], b"no port", &varints(&[0])].concat();
        vec![
            (
                "truncated TCPRequest",
                good[..good.len() - 3].to_vec(),
                true,
            ),
            ("truncated request id", vec![0x44], true),
            ("wrong request id", wrong_id, false),
            (
                "oversized address length",
                varints(&[0x401, 1 << 20]),
                false,
            ),
            ("oversized padding length", oversized_pad, false),
            ("address without a port", bad_addr, false),
            ("garbage", b"GET / HTTP/1.1\r\n\r\n garbage".to_vec(), false),
            // An HTTP/3 request after authentication is no proxy request
            // either.
            ("HTTP/3 frame", vec![0x01, 0x02, 0x00, 0x00], false),
        ]
    }

    async fn udp_session(client: &Client, _: &TargetAddr) -> hysteria2::UdpSession {
        client.udp_session()
    }
}

impl UdpSession for hysteria2::UdpSession {
    type Error = Hysteria2Error;

    async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), Hysteria2Error> {
        hysteria2::UdpSession::send_to(self, payload, target).await
    }

    async fn recv_from(&mut self) -> (Bytes, TargetAddr) {
        hysteria2::UdpSession::recv_from(self).await.unwrap()
    }

    fn too_large(e: &Hysteria2Error) -> bool {
        matches!(
            e,
            Hysteria2Error::Quic(bench_proto::quic::Error::Split(
                bench_proto::udp_frag::SplitError::PacketTooLarge(65_536)
            ))
        )
    }
}
