//! The server side: Hysteria 2 in, TCP (and UDP) out.
//!
//! A connection starts as an HTTP/3 connection served by h3: requests are
//! answered one after the other, 404 for anything but a `POST /auth` with
//! the right password, which gets 233. From then on h3 is no longer asked
//! for requests, and the connection's bidirectional streams are accepted
//! here as proxy streams (see the module docs of `hysteria2`).
//!
//! Bad input is dealt with where it arrives: a stream without a valid
//! `TCPRequest` is reset and stopped, a bad datagram is dropped; the
//! connection goes on either way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, RecvStream, VarInt};
use subtle::ConstantTimeEq;
use tokio::net::{TcpStream, UdpSocket};

use super::udp::{fragment, parse};
use super::wire::{encode_tcp_response, padding, read_tcp_request, UdpHeader, WireError};
use super::{
    congestion, endpoint, mbps_to_bytes, Hysteria2Error, Settings, AUTH_PATH, STATUS_AUTH_OK,
    STREAM_BAD_REQUEST, STREAM_RELAY_FAILED,
};
use crate::addr::TargetAddr;
use crate::dial::DialError;
use crate::quic::server::{serve_streams, StreamServer};
use crate::quic::udp::{UdpAssoc, UdpSessions};
use crate::quic::{self, QuicStream};
use crate::relay::{relay, RelayOptions};

/// How long a stream may take to deliver its `TCPRequest`, and an HTTP/3
/// request its headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP sessions one connection may have at once; packets for more are
/// dropped.
const MAX_SESSIONS: usize = 256;
/// A UDP session the client has sent nothing on for this long is released
/// when another session starts (the spec lets the server do so; the
/// client's next packet starts a new one).
const UDP_SESSION_IDLE: Duration = Duration::from_secs(60);

/// Options of the server side.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TLS 1.3 configuration with the server's certificate, e.g. from
    /// [`pki::server_config`](crate::pki::server_config); its ALPN list is
    /// replaced by `h3`.
    pub tls: rustls::ServerConfig,
    /// The password clients must send in `Hysteria-Auth`.
    pub password: String,
    /// Hysteria 2 settings.
    pub settings: Settings,
    /// How to relay once a stream is up.
    pub relay: RelayOptions,
}

/// Serves the server side on `socket` until the endpoint fails.
///
/// Must run inside a tokio runtime. Connection failures are logged to
/// stderr and do not end the server.
pub async fn run_server(
    socket: std::net::UdpSocket,
    opts: ServerOptions,
) -> Result<(), Hysteria2Error> {
    let ServerOptions {
        tls,
        password,
        settings,
        relay,
    } = opts;
    let config = quic::server_config(tls, vec![b"h3".to_vec()], settings.transport()?)
        .map_err(|e| Hysteria2Error::Config(format!("TLS for QUIC: {e}")))?;
    let endpoint = endpoint(socket, Some(config), settings.udp_buffer, settings.obfs()?)?;
    let shared = Arc::new(Shared {
        password: password.into_bytes(),
        settings,
        relay,
    });
    quic::accept_loop(&endpoint, "hysteria2 server", move |conn| {
        serve_connection(conn, Arc::clone(&shared))
    })
    .await;
    Ok(())
}

struct Shared {
    password: Vec<u8>,
    settings: Settings,
    relay: RelayOptions,
}

/// One authenticated connection.
struct Session {
    conn: Connection,
    peer: SocketAddr,
    shared: Arc<Shared>,
    udp: UdpSessions<u32, ()>,
}

fn log(peer: SocketAddr, what: impl std::fmt::Display) {
    eprintln!("hysteria2 server: connection from {peer}: {what}");
}

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;

async fn serve_connection(conn: Connection, shared: Arc<Shared>) {
    let peer = conn.remote_address();
    let mut h3conn: H3Conn = match h3::server::builder()
        .build(h3_quinn::Connection::new(conn.clone()))
        .await
    {
        Ok(c) => c,
        Err(e) => return log(peer, format_args!("HTTP/3: {e}")),
    };
    let Some(client_rx) = http3_until_auth(&mut h3conn, &shared, peer).await else {
        return;
    };
    // The server sends at the client's receive rate, capped by its own.
    let up = mbps_to_bytes(shared.settings.up_mbps);
    let tx = match (client_rx, up) {
        (0, _) => 0,
        (r, 0) => r,
        (r, u) => r.min(u),
    };
    congestion::set_rate(&conn, tx);

    let s = Arc::new(Session {
        conn,
        peer,
        shared,
        udp: UdpSessions::default(),
    });
    tokio::join!(serve_streams(&s.conn, &s), datagrams(Arc::clone(&s)));
    // The loops end when the connection is closed; UDP sessions end with it.
    s.udp.lock().clear();
    // h3 closes the connection when dropped; it is closed already here.
    drop(h3conn);
}

/// Serves HTTP/3 requests until one authenticates; returns the client's
/// `Hysteria-CC-RX`, or `None` if the connection ended first.
async fn http3_until_auth(h3conn: &mut H3Conn, shared: &Shared, peer: SocketAddr) -> Option<u64> {
    loop {
        let resolver = match h3conn.accept().await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                if !e.is_h3_no_error() {
                    log(peer, format_args!("HTTP/3: {e}"));
                }
                return None;
            }
        };
        let (request, mut stream) =
            match tokio::time::timeout(HEADER_TIMEOUT, resolver.resolve_request()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    log(peer, format_args!("HTTP/3 request: {e}"));
                    continue;
                }
                Err(_) => {
                    log(peer, "HTTP/3 request headers not in time");
                    continue;
                }
            };
        let header = |name: &str| request.headers().get(name).map(|v| v.as_bytes());
        let authed = request.method() == http::Method::POST
            && request.uri().path() == AUTH_PATH
            && header("Hysteria-Auth")
                .is_some_and(|p| bool::from(p.ct_eq(shared.password.as_slice())));
        let response = if authed {
            let rx = match shared.settings.down_mbps {
                0 => "0".to_owned(), // unlimited
                d => mbps_to_bytes(d).to_string(),
            };
            http::Response::builder()
                .status(STATUS_AUTH_OK)
                .header(
                    "Hysteria-UDP",
                    if shared.settings.udp { "true" } else { "false" },
                )
                .header("Hysteria-CC-RX", rx)
                .header("Hysteria-Padding", padding(256..2048))
                .body(())
        } else {
            // What a web server without this resource says.
            if request.uri().path() == AUTH_PATH {
                log(peer, "authentication failed");
            }
            http::Response::builder()
                .status(http::StatusCode::NOT_FOUND)
                .header("content-type", "text/plain")
                .body(())
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                log(peer, format_args!("building the HTTP/3 response: {e}"));
                return None;
            }
        };
        let sent = async {
            stream.send_response(response).await?;
            if !authed {
                stream
                    .send_data(Bytes::from_static(b"404 page not found\n"))
                    .await?;
            }
            stream.finish().await
        };
        if let Err(e) = sent.await {
            // The client may stop the stream as soon as it has the status,
            // before our finish() goes out: that is no failure of the
            // authentication, which is settled by the password alone.
            if !authed {
                log(peer, format_args!("HTTP/3 response: {e}"));
            }
        }
        if authed {
            let rx = header("Hysteria-CC-RX")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            return Some(rx);
        }
    }
}

impl StreamServer for Session {
    const NAME: &'static str = "hysteria2 server";
    const HEADER_TIMEOUT: Duration = HEADER_TIMEOUT;
    const HEADER: &'static str = "TCPRequest";
    const BAD_REQUEST: u32 = STREAM_BAD_REQUEST;
    const RELAY_FAILED: u32 = STREAM_RELAY_FAILED;
    type Request = TargetAddr;
    type BadRequest = WireError;

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    async fn read_request(&self, recv: &mut RecvStream) -> Result<TargetAddr, WireError> {
        read_tcp_request(recv).await
    }

    async fn target(&self, target: TargetAddr, _: &mut QuicStream) -> Option<TargetAddr> {
        Some(target)
    }

    /// A `TCPResponse` saying why, then the end of the stream, as the spec
    /// asks.
    async fn refuse(&self, stream: &mut QuicStream, why: &DialError) {
        let why = why.io_error().to_string();
        if let Ok(resp) = encode_tcp_response(false, &why, &padding(128..1024)) {
            let _ = stream.send.write_all(&resp).await;
        }
        let _ = stream.send.finish();
        let _ = stream.recv.stop(VarInt::from_u32(0));
    }

    async fn accept(&self, stream: &mut QuicStream) -> std::io::Result<()> {
        let ok = match encode_tcp_response(true, "", &padding(128..1024)) {
            Ok(ok) => ok,
            Err(e) => {
                stream.abort(STREAM_BAD_REQUEST);
                return Err(std::io::Error::other(e));
            }
        };
        stream
            .send
            .write_all(&ok)
            .await
            .map_err(std::io::Error::from)
    }

    async fn relay(&self, stream: &mut QuicStream, tcp: TcpStream) -> std::io::Result<()> {
        relay(stream, tcp, &self.shared.relay).await.map(drop)
    }
}

async fn datagrams(s: Arc<Session>) {
    while let Ok(d) = s.conn.read_datagram().await {
        if !s.shared.settings.udp {
            continue; // UDP off: discarded silently, as the spec says
        }
        match parse(&d) {
            Ok((h, payload)) => s.on_packet(h, payload).await,
            Err(e) => log(s.peer, format_args!("bad datagram dropped: {e}")),
        }
    }
}

impl Session {
    /// Takes (a fragment of) a UDP packet from the client and sends it on
    /// once whole. Failures are logged: a lost UDP packet goes unnoticed.
    async fn on_packet(&self, h: UdpHeader, payload: Bytes) {
        let whole = {
            let mut udp = self.udp.lock();
            if !udp.contains_key(&h.session_id) {
                release_idle(&mut udp, Instant::now());
            }
            if !udp.contains_key(&h.session_id) && udp.len() >= MAX_SESSIONS {
                log(
                    self.peer,
                    format_args!("more than {MAX_SESSIONS} UDP sessions, packet dropped"),
                );
                return;
            }
            let assoc = udp.entry(h.session_id).or_insert_with(|| UdpAssoc::new(()));
            assoc.last_used = Instant::now();
            match assoc.reassembler.feed(&h, payload, Instant::now()) {
                Ok(w) => w,
                Err(e) => return log(self.peer, format_args!("UDP fragment dropped: {e}")),
            }
        };
        let Some((target, data)) = whole else {
            return;
        };
        let (peer, id) = (self.peer, h.session_id);
        let back = |socket, _: &()| tokio::spawn(udp_back(self.conn.clone(), socket, id, peer));
        self.udp
            .send(id, &target, &data, |what| log(peer, what), back)
            .await;
    }
}

/// Relays what a UDP session's socket receives back to the client.
async fn udp_back(conn: Connection, socket: Arc<UdpSocket>, session_id: u32, peer: SocketAddr) {
    quic::relay_udp_back(
        conn,
        socket,
        session_id,
        |what| log(peer, what),
        |id, from, data, max| fragment(session_id, id, from, data, max),
    )
    .await;
}

/// Releases UDP sessions idle for [`UDP_SESSION_IDLE`].
fn release_idle(udp: &mut HashMap<u32, UdpAssoc<()>>, now: Instant) {
    udp.retain(|_, a| now.duration_since(a.last_used) < UDP_SESSION_IDLE);
}
