//! The client side: SOCKS5 in, TUIC out, all over one QUIC connection that is
//! re-established when it dies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, RecvStream};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::udp::{check_header, parse_datagram, send_packet};
use super::wire::{Command, PacketHeader, Uuid, CMD_HEARTBEAT, VERSION};
use super::{auth_token, Settings, TuicError, UdpRelayMode, STREAM_RELAY_FAILED};
use crate::addr::TargetAddr;
use crate::quic::client::StreamClient;
use crate::quic::{self, Handshake, Link, LinkError, QuicStream};
use crate::relay::RelayOptions;
use crate::udp_frag::Inboxes;

/// How long a new connection waits for the server's confirming heartbeat
/// before it is taken as authenticated anyway (a server that does not send
/// one), on top of a few round trips.
const AUTH_CONFIRM_GRACE: Duration = Duration::from_millis(250);
/// Packets queued per UDP session for [`UdpSession::recv_from`]; more are
/// dropped, as a full socket buffer would drop them.
const UDP_QUEUE: usize = 256;
/// How long a server-sent quic-mode packet may take to arrive whole.
const STREAM_PACKET_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the client side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server endpoint (UDP).
    pub server: SocketAddr,
    /// The TLS server name to send and verify.
    pub server_name: String,
    /// The user id.
    pub uuid: Uuid,
    /// The user's password.
    pub password: String,
    /// TLS 1.3 configuration that trusts the server, e.g. from
    /// [`pki::client_config`](crate::pki::client_config); its ALPN list is
    /// replaced by `settings.alpn`.
    pub tls: rustls::ClientConfig,
    /// TUIC settings.
    pub settings: Settings,
    /// How to relay once a stream is up.
    pub relay: RelayOptions,
}

/// A TUIC client: one QUIC endpoint, at most one live connection to the
/// server, shared by every stream and UDP session. Cheap to clone.
pub type Client = quic::client::Client<Authenticate>;

/// TUIC's part of the client: a new connection's tasks, then
/// `Authenticate` and the wait for the server's confirmation; the
/// `Connect` header of a stream; the UDP sessions.
pub struct Authenticate {
    uuid: Uuid,
    password: String,
    heartbeat: Duration,
    /// Streams and UDP sessions in use: heartbeats go out only while some are.
    active: Arc<AtomicUsize>,
    sessions: Arc<Inboxes<u16>>,
    udp_relay_mode: UdpRelayMode,
    next_assoc: AtomicU16,
}

/// Counts one user of the connection while it lives.
pub struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(count: &Arc<AtomicUsize>) -> ActiveGuard {
        count.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(count))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the client side on `listener` forever: SOCKS5 CONNECT in, TUIC out
/// to `opts.server`. Returns only if the listener fails for good.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> Result<(), TuicError> {
    Client::new(opts)?.serve(listener).await?;
    Ok(())
}

impl Handshake for Authenticate {
    type Live = Connection;
    type Error = TuicError;

    fn connection(live: &Connection) -> &Connection {
        live
    }

    async fn establish(
        &self,
        conn: Connection,
        server: SocketAddr,
    ) -> Result<Connection, TuicError> {
        let (confirmed_tx, mut confirmed) = watch::channel(false);
        tokio::spawn(receive_datagrams(
            conn.clone(),
            Arc::clone(&self.sessions),
            confirmed_tx,
        ));
        tokio::spawn(receive_streams(conn.clone(), Arc::clone(&self.sessions)));
        tokio::spawn(heartbeats(
            conn.clone(),
            Arc::clone(&self.active),
            self.heartbeat,
        ));

        let token = auth_token(&conn, &self.uuid, self.password.as_bytes())?;
        let auth = Command::Authenticate {
            uuid: self.uuid,
            token,
        }
        .to_bytes()?;
        let mut s = conn.open_uni().await.map_err(LinkError::Lost)?;
        s.write_all(&auth).await.map_err(quic::Error::Write)?;
        // Only fails if the server stopped the stream; the close says more.
        let _ = s.finish();

        let grace = AUTH_CONFIRM_GRACE + conn.rtt() * 4;
        tokio::select! {
            biased;
            reason = conn.closed() => Err(TuicError::AuthRejected { server, source: reason }),
            _ = confirmed.wait_for(|c| *c) => Ok(conn),
            _ = tokio::time::sleep(grace) => Ok(conn),
        }
    }
}

impl quic::client::Client<Authenticate> {
    /// Creates the QUIC endpoint (bound to loopback when the server is on
    /// loopback, else to the unspecified address); connects lazily. Must be
    /// called inside a tokio runtime.
    pub fn new(opts: ClientOptions) -> Result<Client, TuicError> {
        let ClientOptions {
            server,
            server_name,
            uuid,
            password,
            tls,
            settings,
            relay,
        } = opts;
        let config = quic::client_config(tls, settings.alpn.clone(), settings.transport()?)
            .map_err(|e| TuicError::Config(format!("TLS for QUIC: {e}")))?;
        let socket = quic::bind_toward(server).map_err(quic::Error::Endpoint)?;
        let mut endpoint =
            quic::endpoint(socket, None, settings.udp_buffer, std::convert::identity)
                .map_err(quic::Error::Endpoint)?;
        endpoint.set_default_client_config(config);
        let sessions = Arc::new(Inboxes::default());
        let auth = Authenticate {
            uuid,
            password,
            heartbeat: settings.heartbeat,
            active: Arc::new(AtomicUsize::new(0)),
            sessions,
            udp_relay_mode: settings.udp_relay_mode,
            next_assoc: AtomicU16::new(0),
        };
        Ok(Client::with_link(
            Link::new(endpoint, server, server_name, auth),
            relay,
        ))
    }

    /// Starts a UDP session (a new association id). Packets go out in
    /// `tuic.udp_relay_mode`; the server answers in the same mode.
    pub fn udp_session(&self) -> Result<UdpSession, TuicError> {
        let next = &self.protocol().next_assoc;
        let (assoc_id, rx) = self
            .protocol()
            .sessions
            .open(|| next.fetch_add(1, Ordering::Relaxed), 1 << 16, UDP_QUEUE)
            .ok_or_else(|| TuicError::Config("all 65536 UDP session ids in use".into()))?;
        Ok(UdpSession {
            client: self.clone(),
            assoc_id,
            rx,
            next_pkt: AtomicU16::new(0),
            dissociated: false,
            _active: self.protocol().in_use(),
        })
    }

    fn drop_session(&self, assoc_id: u16) {
        self.protocol().sessions.close(assoc_id);
    }
}

/// One UDP session through the server (a TUIC association): packets to any
/// target, answers from any source. Dropping it dissociates (best effort).
pub struct UdpSession {
    client: Client,
    assoc_id: u16,
    rx: mpsc::Receiver<(TargetAddr, Bytes)>,
    next_pkt: AtomicU16,
    dissociated: bool,
    _active: ActiveGuard,
}

impl UdpSession {
    /// The association id.
    pub fn assoc_id(&self) -> u16 {
        self.assoc_id
    }

    /// Sends one UDP packet (at most 65535 bytes) to `target`.
    pub async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), TuicError> {
        let conn = self.client.connection().await?;
        let pkt_id = self.next_pkt.fetch_add(1, Ordering::Relaxed);
        let mode = self.client.protocol().udp_relay_mode;
        send_packet(&conn, mode, self.assoc_id, pkt_id, target, payload).await
    }

    /// The next packet that came back, with its source address.
    pub async fn recv_from(&mut self) -> Result<(Bytes, TargetAddr), TuicError> {
        match self.rx.recv().await {
            Some((from, data)) => Ok((data, from)),
            None => Err(quic::Error::SessionClosed.into()),
        }
    }

    /// Ends the session on the server (`Dissociate`) and here.
    pub async fn dissociate(mut self) -> Result<(), TuicError> {
        self.dissociated = true;
        self.client.drop_session(self.assoc_id);
        let conn = self.client.connection().await?;
        send_dissociate(&conn, self.assoc_id).await
    }
}

impl Drop for UdpSession {
    fn drop(&mut self) {
        if self.dissociated {
            return;
        }
        self.client.drop_session(self.assoc_id);
        // Best effort: only over a connection that is up, never opening one
        // just to say goodbye, and only if there is a runtime to send from.
        let conn = self.client.link().live_now();
        if let (Some(conn), Ok(rt)) = (conn, tokio::runtime::Handle::try_current()) {
            let assoc_id = self.assoc_id;
            rt.spawn(async move {
                let _ = send_dissociate(&conn, assoc_id).await;
            });
        }
    }
}

async fn send_dissociate(conn: &Connection, assoc_id: u16) -> Result<(), TuicError> {
    let bytes = Command::Dissociate { assoc_id }.to_bytes()?;
    let mut s = conn.open_uni().await.map_err(LinkError::Lost)?;
    s.write_all(&bytes).await.map_err(quic::Error::Write)?;
    let _ = s.finish();
    Ok(())
}

/// Hands a packet (fragment) from the server to its session.
fn deliver(sessions: &Inboxes<u16>, h: &PacketHeader, payload: Bytes) {
    if let Err(e) = sessions.deliver(h.assoc_id, h, payload) {
        eprintln!("tuic client: packet from server dropped: {e}");
    }
}

async fn receive_datagrams(
    conn: Connection,
    sessions: Arc<Inboxes<u16>>,
    confirmed: watch::Sender<bool>,
) {
    while let Ok(d) = conn.read_datagram().await {
        match parse_datagram(&d).await {
            Ok((Command::Heartbeat, _)) => {
                confirmed.send_replace(true);
            }
            Ok((Command::Packet(h), payload)) => deliver(&sessions, &h, payload),
            Ok((other, _)) => eprintln!("tuic client: unexpected datagram from server: {other:?}"),
            Err(e) => eprintln!("tuic client: bad datagram from server: {e}"),
        }
    }
}

async fn receive_streams(conn: Connection, sessions: Arc<Inboxes<u16>>) {
    while let Ok(recv) = conn.accept_uni().await {
        let sessions = Arc::clone(&sessions);
        tokio::spawn(async move {
            match tokio::time::timeout(STREAM_PACKET_TIMEOUT, read_stream_packet(recv)).await {
                Ok(Ok((h, payload))) => deliver(&sessions, &h, payload),
                Ok(Err(e)) => eprintln!("tuic client: bad packet stream from server: {e}"),
                Err(_) => eprintln!("tuic client: packet stream from server timed out"),
            }
        });
    }
}

async fn read_stream_packet(mut recv: RecvStream) -> Result<(PacketHeader, Bytes), TuicError> {
    let Command::Packet(h) = Command::read_from(&mut recv).await? else {
        return Err(TuicError::UnexpectedCommand(
            "from the server on a stream (only Packet)",
        ));
    };
    check_header(&h)?;
    let mut payload = vec![0u8; usize::from(h.size)];
    AsyncReadExt::read_exact(&mut recv, &mut payload).await?;
    Ok((h, Bytes::from(payload)))
}

/// Sends a `Heartbeat` datagram every `interval` while something is relayed,
/// so that the idle timeout only closes connections nobody uses.
async fn heartbeats(conn: Connection, active: Arc<AtomicUsize>, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if active.load(Ordering::Relaxed) > 0 {
                    // Fails only when the connection is closing.
                    let _ = conn.send_datagram(Bytes::from_static(&[VERSION, CMD_HEARTBEAT]));
                }
            }
            _ = conn.closed() => return,
        }
    }
}

impl StreamClient for Authenticate {
    const NAME: &'static str = "tuic client";
    type InUse = ActiveGuard;

    fn in_use(&self) -> ActiveGuard {
        ActiveGuard::new(&self.active)
    }

    /// `Connect`; the server never answers, the stream carries the proxied
    /// bytes from here on.
    async fn start_stream(
        &self,
        stream: &mut QuicStream,
        target: &TargetAddr,
    ) -> Result<(), TuicError> {
        let header = Command::Connect {
            addr: target.clone(),
        }
        .to_bytes()?;
        stream
            .send
            .write_all(&header)
            .await
            .map_err(|e| quic::Error::Write(e).into())
    }

    async fn relay(
        &self,
        inbound: TcpStream,
        mut stream: QuicStream,
        opts: &RelayOptions,
    ) -> std::io::Result<()> {
        quic::relay_or_abort(inbound, &mut stream, opts, STREAM_RELAY_FAILED).await
    }
}
