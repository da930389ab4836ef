//! The server side: TUIC in, TCP (and UDP) out.
//!
//! Per QUIC connection, three loops run side by side: unidirectional streams
//! (`Authenticate`, `Packet` in quic mode, `Dissociate`), bidirectional
//! streams (`Connect`) and datagrams (`Packet` in native mode, `Heartbeat`).
//! Each stream is handled in its own task: its header is read at once, then
//! it waits for the connection's authentication, which the auth timeout
//! bounds (the connection is closed when it expires).
//!
//! Bad input is dealt with where it arrives: a stream with a bad header is
//! reset / stopped with [`STREAM_BAD_COMMAND`] and the connection goes on; a
//! bad datagram has no stream to close, so it closes the connection with
//! [`CLOSE_PROTOCOL_ERROR`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, RecvStream, VarInt};
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use super::udp::{check_header, parse_datagram, send_packet};
use super::wire::{Command, PacketHeader, Uuid};
use super::{
    auth_token, Settings, TuicError, UdpRelayMode, CLOSE_AUTH_FAILED, CLOSE_AUTH_TIMEOUT,
    CLOSE_PROTOCOL_ERROR, STREAM_BAD_COMMAND, STREAM_CONNECT_FAILED, STREAM_RELAY_FAILED,
};
use crate::addr::TargetAddr;
use crate::dial::DialError;
use crate::quic::server::{serve_streams, StreamServer};
use crate::quic::udp::{UdpAssoc, UdpSessions};
use crate::quic::{self, QuicStream};
use crate::relay::{relay, RelayOptions};

/// How long a stream may take to deliver its command header (and a quic-mode
/// packet its payload) once it has been opened.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP sessions one connection may have at once; packets for more are dropped.
const MAX_ASSOCIATIONS: usize = 256;

/// Options of the server side.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TLS 1.3 configuration with the server's certificate, e.g. from
    /// [`pki::server_config`](crate::pki::server_config); its ALPN list is
    /// replaced by `settings.alpn`.
    pub tls: rustls::ServerConfig,
    /// The users: UUID and password.
    pub users: Vec<(Uuid, String)>,
    /// TUIC settings.
    pub settings: Settings,
    /// How to relay once a stream is up.
    pub relay: RelayOptions,
}

/// Serves the server side on `socket` until the endpoint fails: TUIC in, TCP
/// out to each stream's target, UDP out for each UDP session.
///
/// Must run inside a tokio runtime. Connection failures are logged to stderr
/// and do not end the server.
pub async fn run_server(socket: std::net::UdpSocket, opts: ServerOptions) -> Result<(), TuicError> {
    let ServerOptions {
        tls,
        users,
        settings,
        relay,
    } = opts;
    let config = quic::server_config(tls, settings.alpn.clone(), settings.transport()?)
        .map_err(|e| TuicError::Config(format!("TLS for QUIC: {e}")))?;
    let endpoint = quic::endpoint(
        socket,
        Some(config),
        settings.udp_buffer,
        std::convert::identity,
    )
    .map_err(crate::quic::Error::Endpoint)?;
    let shared = Arc::new(Shared {
        users: users
            .into_iter()
            .map(|(u, p)| (u, p.into_bytes()))
            .collect(),
        settings,
        relay,
    });
    quic::accept_loop(&endpoint, "tuic server", move |conn| {
        serve_connection(conn, Arc::clone(&shared))
    })
    .await;
    Ok(())
}

/// What every connection of one server shares.
struct Shared {
    users: HashMap<Uuid, Vec<u8>>,
    settings: Settings,
    relay: RelayOptions,
}

/// One authenticated-or-not QUIC connection.
struct Session {
    conn: Connection,
    peer: SocketAddr,
    shared: Arc<Shared>,
    authed: watch::Sender<bool>,
    udp: UdpSessions<u16, UdpRelayMode>,
}

/// One UDP session: its reassembly state and, once a packet went out, its
fn log(peer: SocketAddr, what: impl std::fmt::Display) {
    eprintln!("tuic server: connection from {peer}: {what}");
}

async fn serve_connection(conn: Connection, shared: Arc<Shared>) {
    let (authed, _) = watch::channel(false);
    let s = Arc::new(Session {
        peer: conn.remote_address(),
        conn,
        shared,
        authed,
        udp: UdpSessions::default(),
    });

    let auth_timer = {
        let s = Arc::clone(&s);
        async move {
            let mut rx = s.authed.subscribe();
            let timeout = s.shared.settings.auth_timeout;
            tokio::select! {
                r = tokio::time::timeout(timeout, rx.wait_for(|a| *a)) => {
                    if r.is_err() {
                        s.conn.close(VarInt::from_u32(CLOSE_AUTH_TIMEOUT), b"authentication timeout");
                        log(s.peer, "no valid Authenticate in time, closed");
                    }
                }
                _ = s.conn.closed() => {}
            }
        }
    };
    let uni = {
        let s = Arc::clone(&s);
        async move {
            while let Ok(recv) = s.conn.accept_uni().await {
                tokio::spawn(handle_uni(Arc::clone(&s), recv));
            }
        }
    };
    tokio::join!(
        auth_timer,
        uni,
        serve_streams(&s.conn, &s),
        datagrams(Arc::clone(&s))
    );

    // The loops end when the connection is closed; UDP sessions end with it.
    s.udp.lock().clear();
}

impl Session {
    /// Checks an `Authenticate`; closes the connection if it is wrong.
    fn authenticate(&self, uuid: Uuid, token: &[u8; 32]) {
        let valid = match self.shared.users.get(&uuid) {
            Some(password) => match auth_token(&self.conn, &uuid, password) {
                // Constant time: an early exit would leak how much of a guess was right.
                Ok(want) => bool::from(want.as_slice().ct_eq(token.as_slice())),
                Err(_) => false,
            },
            None => false,
        };
        if !valid {
            self.conn.close(
                VarInt::from_u32(CLOSE_AUTH_FAILED),
                b"authentication failed",
            );
            log(self.peer, format_args!("authentication failed for {uuid}"));
            return;
        }
        if !self.authed.send_replace(true) {
            // The only answer TUIC allows: lets our client know it is in
            // before it tells its SOCKS5 client so (see the module docs).
            let _ = self.conn.send_datagram(Bytes::from_static(&[
                super::wire::VERSION,
                super::wire::CMD_HEARTBEAT,
            ]));
        }
    }

    /// Waits until the connection is authenticated; false if it closed first.
    async fn wait_auth(&self) -> bool {
        let mut rx = self.authed.subscribe();
        tokio::select! {
            r = rx.wait_for(|a| *a) => r.is_ok(),
            _ = self.conn.closed() => false,
        }
    }

    /// Takes (a fragment of) a UDP packet from the client and sends it once
    /// whole. Errors are protocol errors of the peer; failures to send are
    /// logged, as a lost UDP packet would be unnoticed.
    async fn on_packet(
        &self,
        h: PacketHeader,
        payload: Bytes,
        mode: UdpRelayMode,
    ) -> Result<(), TuicError> {
        check_header(&h)?;
        let whole = {
            let mut udp = self.udp.lock();
            if !udp.contains_key(&h.assoc_id) && udp.len() >= MAX_ASSOCIATIONS {
                log(
                    self.peer,
                    format_args!("more than {MAX_ASSOCIATIONS} UDP sessions, packet dropped"),
                );
                return Ok(());
            }
            let assoc = udp.entry(h.assoc_id).or_insert_with(|| UdpAssoc::new(mode));
            assoc.reassembler.feed(&h, payload, Instant::now())?
        };
        let Some((target, data)) = whole else {
            return Ok(());
        };
        let (peer, id) = (self.peer, h.assoc_id);
        let back = |socket, mode: &UdpRelayMode| {
            tokio::spawn(udp_back(self.conn.clone(), socket, id, *mode, peer))
        };
        self.udp
            .send(id, &target, &data, |what| log(peer, what), back)
            .await;
        Ok(())
    }
}

/// Relays what a UDP session's socket receives back to the client, in the
/// mode the session was opened in.
async fn udp_back(
    conn: Connection,
    socket: Arc<UdpSocket>,
    assoc_id: u16,
    mode: UdpRelayMode,
    peer: SocketAddr,
) {
    let mut buf = vec![0u8; 65536];
    let mut pkt_id: u16 = 0;
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                log(peer, format_args!("UDP session {assoc_id}: receiving: {e}"));
                return;
            }
        };
        // An IPv6 socket reports IPv4 peers as mapped addresses; the client
        // should see the address it sent to.
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let sent = send_packet(
            &conn,
            mode,
            assoc_id,
            pkt_id,
            &TargetAddr::Ip(from),
            &buf[..n],
        )
        .await;
        if let Err(e) = sent {
            if conn.close_reason().is_some() {
                return;
            }
            log(peer, format_args!("UDP session {assoc_id}: to client: {e}"));
        }
        pkt_id = pkt_id.wrapping_add(1);
    }
}

async fn handle_uni(s: Arc<Session>, mut recv: RecvStream) {
    let cmd = match tokio::time::timeout(HEADER_TIMEOUT, Command::read_from(&mut recv)).await {
        Ok(Ok(cmd)) => cmd,
        Ok(Err(e)) => return bad_uni(&s, &mut recv, e),
        Err(_) => return bad_uni(&s, &mut recv, "no command header in time"),
    };
    match cmd {
        Command::Authenticate { uuid, token } => s.authenticate(uuid, &token),
        Command::Packet(h) => {
            if !s.wait_auth().await {
                return;
            }
            if let Err(e) = check_header(&h) {
                return bad_uni(&s, &mut recv, e);
            }
            let mut payload = vec![0u8; usize::from(h.size)];
            let read = AsyncReadExt::read_exact(&mut recv, &mut payload);
            match tokio::time::timeout(HEADER_TIMEOUT, read).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return bad_uni(&s, &mut recv, format_args!("Packet payload: {e}")),
                Err(_) => return bad_uni(&s, &mut recv, "Packet payload not in time"),
            }
            if let Err(e) = s
                .on_packet(h, Bytes::from(payload), UdpRelayMode::Quic)
                .await
            {
                bad_uni(&s, &mut recv, e);
            }
        }
        Command::Dissociate { assoc_id } => {
            if s.wait_auth().await {
                s.udp.lock().remove(&assoc_id);
            }
        }
        Command::Connect { .. } => bad_uni(&s, &mut recv, "Connect on a unidirectional stream"),
        Command::Heartbeat => bad_uni(&s, &mut recv, "Heartbeat on a unidirectional stream"),
    }
}

/// Refuses the rest of a unidirectional stream with a bad command.
fn bad_uni(s: &Session, recv: &mut RecvStream, why: impl std::fmt::Display) {
    let _ = recv.stop(VarInt::from_u32(STREAM_BAD_COMMAND));
    log(s.peer, format_args!("unidirectional stream: {why}"));
}

impl StreamServer for Session {
    const NAME: &'static str = "tuic server";
    const HEADER_TIMEOUT: Duration = HEADER_TIMEOUT;
    const HEADER: &'static str = "command header";
    const BAD_REQUEST: u32 = STREAM_BAD_COMMAND;
    const RELAY_FAILED: u32 = STREAM_RELAY_FAILED;
    type Request = TargetAddr;
    type BadRequest = TuicError;

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    async fn read_request(&self, recv: &mut RecvStream) -> Result<TargetAddr, TuicError> {
        match Command::read_from(recv).await? {
            Command::Connect { addr } => Ok(addr),
            _ => Err(TuicError::UnexpectedCommand(
                "on a bidirectional stream (only Connect)",
            )),
        }
    }

    /// Once the connection is authenticated.
    async fn target(&self, target: TargetAddr, _: &mut QuicStream) -> Option<TargetAddr> {
        self.wait_auth().await.then_some(target)
    }

    /// TUIC has no answer: the stream is aborted.
    async fn refuse(&self, stream: &mut QuicStream, _: &DialError) {
        stream.abort(STREAM_CONNECT_FAILED);
    }

    async fn accept(&self, _: &mut QuicStream) -> std::io::Result<()> {
        Ok(())
    }

    async fn relay(&self, stream: &mut QuicStream, tcp: TcpStream) -> std::io::Result<()> {
        relay(stream, tcp, &self.shared.relay).await.map(drop)
    }
}

async fn datagrams(s: Arc<Session>) {
    while let Ok(d) = s.conn.read_datagram().await {
        // Datagrams before authentication wait here; quinn's receive buffer
        // (bounded) holds or drops what comes meanwhile.
        if !s.wait_auth().await {
            return;
        }
        let result = match parse_datagram(&d).await {
            Ok((Command::Heartbeat, _)) => Ok(()),
            Ok((Command::Packet(h), payload)) => {
                s.on_packet(h, payload, UdpRelayMode::Native).await
            }
            Ok((_, _)) => Err(TuicError::UnexpectedCommand(
                "in a datagram (only Packet and Heartbeat)",
            )),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            s.conn
                .close(VarInt::from_u32(CLOSE_PROTOCOL_ERROR), b"bad datagram");
            log(s.peer, format_args!("bad datagram, closed: {e}"));
            return;
        }
    }
}
