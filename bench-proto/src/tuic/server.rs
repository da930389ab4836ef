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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::udp::{check_header, parse_datagram, send_packet, Reassembler};
use super::wire::{Command, PacketHeader, Uuid};
use super::{
    auth_token, Settings, TuicError, UdpRelayMode, CLOSE_AUTH_FAILED, CLOSE_AUTH_TIMEOUT,
    CLOSE_PROTOCOL_ERROR, STREAM_BAD_COMMAND, STREAM_CONNECT_FAILED, STREAM_RELAY_FAILED,
};
use crate::addr::TargetAddr;
use crate::dial::{connect, resolve};
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
    let endpoint = quic::endpoint(socket, Some(config), std::convert::identity)
        .map_err(TuicError::Endpoint)?;
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
    udp: Mutex<HashMap<u16, Assoc>>,
}

/// One UDP session: its reassembly state and, once a packet went out, its
/// socket and the task that sends what comes back to the client.
struct Assoc {
    mode: UdpRelayMode,
    reassembler: Reassembler,
    socket: Option<Arc<UdpSocket>>,
    back: Option<JoinHandle<()>>,
}

impl Drop for Assoc {
    fn drop(&mut self) {
        // Dissociated or connection gone: stop relaying back, which drops
        // the socket.
        if let Some(task) = &self.back {
            task.abort();
        }
    }
}

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
        udp: Mutex::new(HashMap::new()),
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
    let bi = {
        let s = Arc::clone(&s);
        async move {
            while let Ok((send, recv)) = s.conn.accept_bi().await {
                tokio::spawn(handle_bi(Arc::clone(&s), send, recv));
            }
        }
    };
    tokio::join!(auth_timer, uni, bi, datagrams(Arc::clone(&s)));

    // The loops end when the connection is closed; UDP sessions end with it.
    let mut udp = s.udp.lock().unwrap_or_else(|p| p.into_inner());
    udp.clear();
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
            let mut udp = self.udp.lock().unwrap_or_else(|p| p.into_inner());
            if !udp.contains_key(&h.assoc_id) && udp.len() >= MAX_ASSOCIATIONS {
                log(
                    self.peer,
                    format_args!("more than {MAX_ASSOCIATIONS} UDP sessions, packet dropped"),
                );
                return Ok(());
            }
            let assoc = udp.entry(h.assoc_id).or_insert_with(|| Assoc {
                mode,
                reassembler: Reassembler::default(),
                socket: None,
                back: None,
            });
            assoc.reassembler.feed(&h, payload, Instant::now())?
        };
        let Some((target, data)) = whole else {
            return Ok(());
        };
        let dest = match resolve(&target).await {
            Ok(sa) => sa,
            Err(e) => {
                log(self.peer, format_args!("UDP to {target}: resolving: {e}"));
                return Ok(());
            }
        };
        let socket = match self.udp_socket(h.assoc_id, dest) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()), // dissociated meanwhile
            Err(e) => {
                log(
                    self.peer,
                    format_args!("UDP session {}: binding: {e}", h.assoc_id),
                );
                return Ok(());
            }
        };
        if let Err(e) = socket.send_to(&data, dest).await {
            log(self.peer, format_args!("UDP to {dest}: {e}"));
        }
        Ok(())
    }

    /// The session's socket, bound on first use in the family of `dest`
    /// (loopback when `dest` is loopback), with its task that relays what
    /// arrives back to the client.
    fn udp_socket(
        &self,
        assoc_id: u16,
        dest: SocketAddr,
    ) -> std::io::Result<Option<Arc<UdpSocket>>> {
        let mut udp = self.udp.lock().unwrap_or_else(|p| p.into_inner());
        let Some(assoc) = udp.get_mut(&assoc_id) else {
            return Ok(None);
        };
        if let Some(s) = &assoc.socket {
            return Ok(Some(Arc::clone(s)));
        }
        let socket = Arc::new(quic::udp_socket_toward(dest)?);
        assoc.back = Some(tokio::spawn(udp_back(
            self.conn.clone(),
            Arc::clone(&socket),
            assoc_id,
            assoc.mode,
            self.peer,
        )));
        assoc.socket = Some(Arc::clone(&socket));
        Ok(Some(socket))
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
                let mut udp = s.udp.lock().unwrap_or_else(|p| p.into_inner());
                udp.remove(&assoc_id);
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

async fn handle_bi(s: Arc<Session>, send: SendStream, recv: RecvStream) {
    let mut stream = QuicStream { send, recv };
    let header = tokio::time::timeout(HEADER_TIMEOUT, Command::read_from(&mut stream.recv)).await;
    let target = match header {
        Ok(Ok(Command::Connect { addr })) => addr,
        Ok(Ok(_)) => {
            return bad_bi(
                &s,
                &mut stream,
                "only Connect is allowed on a bidirectional stream",
            )
        }
        Ok(Err(e)) => return bad_bi(&s, &mut stream, e),
        Err(_) => return bad_bi(&s, &mut stream, "no command header in time"),
    };
    if !s.wait_auth().await {
        return;
    }
    let tcp = match connect(&target).await {
        Ok(t) => t,
        Err(e) => {
            stream.abort(STREAM_CONNECT_FAILED);
            return log(s.peer, e);
        }
    };
    if let Err(e) = relay(&mut stream, tcp, &s.shared.relay).await {
        stream.abort(STREAM_RELAY_FAILED);
        log(s.peer, format_args!("relaying for {target}: {e}"));
    }
}

fn bad_bi(s: &Session, stream: &mut QuicStream, why: impl std::fmt::Display) {
    stream.abort(STREAM_BAD_COMMAND);
    log(s.peer, format_args!("stream: {why}"));
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
