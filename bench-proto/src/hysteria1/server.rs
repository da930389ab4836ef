//! The server side: Hysteria v1 in, TCP (and UDP) out.
//!
//! A connection's first stream carries the client hello. A wrong version,
//! a rate of 0 or a truncated hello closes the connection with code 1
//! (protocol error); a wrong authentication string gets a refusing server
//! hello and the close with code 2, as sing-box answers. Then every stream
//! starts with a request: TCP streams are relayed to their target, UDP
//! streams open a session that lives until the client closes the stream.
//!
//! Bad input is dealt with where it arrives: a stream without a valid
//! request is reset and stopped, a bad datagram is dropped; the connection
//! goes on either way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, RecvStream, VarInt};
use subtle::ConstantTimeEq;
use tokio::net::{TcpStream, UdpSocket};

use super::udp::{fragment, parse};
use super::wire::{
    read_message, ClientHello, Request, Response, ServerHello, UdpHeader, WireError,
    MAX_CLIENT_HELLO, MAX_REQUEST,
};
use super::{
    endpoint, Hysteria1Error, Settings, ALPN, CLOSE_AUTH_ERROR, CLOSE_GENERIC,
    CLOSE_PROTOCOL_ERROR, PROTOCOL_TIMEOUT, UDP_DISABLED, WRONG_PASSWORD,
};
use crate::addr::TargetAddr;
use crate::brutal;
use crate::dial::DialError;
use crate::quic::server::{serve_streams, StreamServer};
use crate::quic::udp::{UdpAssoc, UdpSessions};
use crate::quic::{self, QuicStream};
use crate::relay::{relay, RelayOptions};

/// UDP sessions one connection may have at once; more are refused.
const MAX_SESSIONS: usize = 256;
/// How long a refusing server hello may take to be acknowledged before the
/// connection is closed (closing drops what is not yet sent).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Options of the server side.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TLS 1.3 configuration with the server's certificate, e.g. from
    /// [`pki::server_config`](crate::pki::server_config); its ALPN list is
    /// replaced by `hysteria`.
    pub tls: rustls::ServerConfig,
    /// The authentication string clients must send.
    pub auth: String,
    /// Hysteria v1 settings.
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
) -> Result<(), Hysteria1Error> {
    let ServerOptions {
        tls,
        auth,
        settings,
        relay,
    } = opts;
    let config = quic::server_config(tls, vec![ALPN.to_vec()], settings.transport()?)
        .map_err(|e| Hysteria1Error::Config(format!("TLS for QUIC: {e}")))?;
    let endpoint = endpoint(socket, Some(config), settings.udp_buffer, settings.xplus())?;
    let shared = Arc::new(Shared {
        auth: auth.into_bytes(),
        settings,
        relay,
    });
    quic::accept_loop(&endpoint, "hysteria1 server", move |conn| {
        serve_connection(conn, Arc::clone(&shared))
    })
    .await;
    Ok(())
}

struct Shared {
    auth: Vec<u8>,
    settings: Settings,
    relay: RelayOptions,
}

/// One accepted connection.
struct Session {
    conn: Connection,
    peer: SocketAddr,
    shared: Arc<Shared>,
    udp: UdpSessions<u32, ()>,
    next_session: AtomicU32,
}

/// One UDP session: reassembly state and, once a packet went out, its
fn log(peer: SocketAddr, what: impl std::fmt::Display) {
    eprintln!("hysteria1 server: connection from {peer}: {what}");
}

fn close(conn: &Connection, code: u32, reason: &str) {
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

async fn serve_connection(conn: Connection, shared: Arc<Shared>) {
    let peer = conn.remote_address();
    let hello = tokio::time::timeout(PROTOCOL_TIMEOUT, async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let hello = read_message(&mut recv, ClientHello::decode, MAX_CLIENT_HELLO)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((hello, QuicStream { send, recv }))
    })
    .await;
    let (hello, mut control) = match hello {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            close(&conn, CLOSE_PROTOCOL_ERROR, "protocol error");
            return log(peer, format_args!("client hello: {e}"));
        }
        Err(_) => {
            close(&conn, CLOSE_PROTOCOL_ERROR, "protocol error");
            return log(peer, "no client hello in time");
        }
    };
    if !bool::from(hello.auth.ct_eq(shared.auth.as_slice())) {
        refuse(&conn, &mut control).await;
        return log(peer, "authentication failed");
    }
    let answer = ServerHello {
        ok: true,
        send_bps: shared.settings.send_bps(),
        recv_bps: shared.settings.recv_bps(),
        message: String::new(),
    };
    if let Err(e) = control.send.write_all(&answer.encode()).await {
        close(&conn, CLOSE_GENERIC, "");
        return log(peer, format_args!("server hello: {e}"));
    }
    // The server sends at its own rate, capped by the client's receive rate.
    brutal::set_rate(&conn, shared.settings.send_bps().min(hello.recv_bps));

    let s = Arc::new(Session {
        conn,
        peer,
        shared,
        udp: UdpSessions::default(),
        next_session: AtomicU32::new(1),
    });
    tokio::join!(serve_streams(&s.conn, &s), datagrams(Arc::clone(&s)));
    // The loops end when the connection is closed; UDP sessions end with it.
    s.udp.lock().clear();
    drop(control);
}

/// Answers a wrong authentication string as sing-box does: a refusing
/// hello, then the close with code 2.
async fn refuse(conn: &Connection, control: &mut QuicStream) {
    let answer = ServerHello {
        ok: false,
        send_bps: 0,
        recv_bps: 0,
        message: WRONG_PASSWORD.into(),
    };
    if control.send.write_all(&answer.encode()).await.is_ok() && control.send.finish().is_ok() {
        // Give the hello a moment to arrive: closing drops unsent data.
        let _ = tokio::time::timeout(REFUSAL_LINGER, control.send.stopped()).await;
    }
    close(conn, CLOSE_AUTH_ERROR, "auth error");
}

impl StreamServer for Session {
    const NAME: &'static str = "hysteria1 server";
    const HEADER_TIMEOUT: Duration = PROTOCOL_TIMEOUT;
    const HEADER: &'static str = "request";
    const BAD_REQUEST: u32 = CLOSE_PROTOCOL_ERROR;
    const RELAY_FAILED: u32 = CLOSE_GENERIC;
    type Request = Request;
    type BadRequest = WireError;

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    async fn read_request(&self, recv: &mut RecvStream) -> Result<Request, WireError> {
        read_message(recv, Request::decode, MAX_REQUEST).await
    }

    /// A UDP request is served here as its session.
    async fn target(&self, request: Request, stream: &mut QuicStream) -> Option<TargetAddr> {
        if request.udp {
            self.udp_session(stream).await;
            return None;
        }
        Some(request.target)
    }

    /// A refusing response saying why, then the end of the stream.
    async fn refuse(&self, stream: &mut QuicStream, why: &DialError) {
        let answer = Response {
            ok: false,
            session_id: 0,
            message: why.io_error().to_string(),
        };
        let _ = stream.send.write_all(&answer.encode()).await;
        let _ = stream.send.finish();
        let _ = stream.recv.stop(VarInt::from_u32(CLOSE_GENERIC));
    }

    async fn accept(&self, stream: &mut QuicStream) -> std::io::Result<()> {
        let ok = Response {
            ok: true,
            session_id: 0,
            message: String::new(),
        };
        stream
            .send
            .write_all(&ok.encode())
            .await
            .map_err(std::io::Error::from)
    }

    async fn relay(&self, stream: &mut QuicStream, tcp: TcpStream) -> std::io::Result<()> {
        relay(stream, tcp, &self.shared.relay).await.map(drop)
    }
}

async fn datagrams(s: Arc<Session>) {
    while let Ok(d) = s.conn.read_datagram().await {
        match parse(&d) {
            Ok((h, data)) => s.on_packet(h, data).await,
            Err(e) => log(s.peer, format_args!("bad datagram dropped: {e}")),
        }
    }
}

impl Session {
    /// A UDP session requested on `stream`: numbered, answered, and kept
    /// until the client closes the stream.
    async fn udp_session(&self, stream: &mut QuicStream) {
        let refused = |message: &str| Response {
            ok: false,
            session_id: 0,
            message: message.to_owned(),
        };
        let id = {
            let mut udp = self.udp.lock();
            if !self.shared.settings.udp {
                Err(refused(UDP_DISABLED))
            } else if udp.len() >= MAX_SESSIONS {
                Err(refused("too many UDP sessions"))
            } else {
                // 2^32 ids and at most MAX_SESSIONS in use: a free one comes soon.
                let mut id = self.next_session.fetch_add(1, Ordering::Relaxed);
                while udp.contains_key(&id) {
                    id = self.next_session.fetch_add(1, Ordering::Relaxed);
                }
                udp.insert(id, UdpAssoc::new(()));
                Ok(id)
            }
        };
        let id = match id {
            Ok(id) => id,
            Err(answer) => {
                let _ = stream.send.write_all(&answer.encode()).await;
                let _ = stream.send.finish();
                return;
            }
        };
        let ok = Response {
            ok: true,
            session_id: id,
            message: String::new(),
        };
        if stream.send.write_all(&ok.encode()).await.is_ok() {
            // The session lasts until the client ends the stream (what it
            // sends on it means nothing).
            let mut hold = [0u8; 1024];
            while let Ok(Some(_)) = stream.recv.read(&mut hold).await {}
        }
        self.udp.lock().remove(&id);
        let _ = stream.send.finish();
    }

    /// Takes (a fragment of) a UDP packet from the client and sends it on
    /// once whole. Failures are logged: a lost UDP packet goes unnoticed.
    async fn on_packet(&self, h: UdpHeader, data: Bytes) {
        let whole = {
            let mut udp = self.udp.lock();
            let Some(assoc) = udp.get_mut(&h.session_id) else {
                return log(
                    self.peer,
                    format_args!("datagram for unknown UDP session {} dropped", h.session_id),
                );
            };
            match assoc.reassembler.feed(&h, data, Instant::now()) {
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
