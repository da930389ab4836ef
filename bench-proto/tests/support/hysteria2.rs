//! Helpers the `hysteria2_*` tests share: our endpoints in process and a raw
//! QUIC + HTTP/3 client that speaks Hysteria 2 by hand.

use std::net::SocketAddr;

use bench_proto::hysteria2::{self, Client, ClientOptions, ServerOptions, Settings};
use bench_proto::pki;
use bench_proto::relay::RelayOptions;
use bytes::Bytes;
use tokio::net::TcpListener;

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
