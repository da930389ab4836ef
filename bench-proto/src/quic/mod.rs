//! What the QUIC protocols (tuic, hysteria2, hysteria1) share: binding the
//! endpoint, the client's one lazily opened connection that is opened
//! again when it dies ([`Link`]), the client's streams ([`client`]), the
//! server's accept loop and its proxy streams ([`server`]), a
//! bidirectional stream as one byte stream ([`QuicStream`]) and the UDP
//! relay's datagram loops.
//!
//! A protocol adds only what is its own: the authentication after the QUIC
//! handshake ([`Handshake`]), its stream header ([`client::StreamClient`],
//! [`server::StreamServer`]) and its UDP framing.

pub mod client;
mod error;
pub mod server;
pub mod udp;

pub(crate) use error::protocol_error;
pub use error::{Error, ProtocolError};

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, Connection, RecvStream, SendStream, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::addr::TargetAddr;
use crate::outbound::SocksReply;
use crate::relay::{relay, RelayOptions};
use crate::socks5::ReplyCode;
use crate::udp_frag::{FragmentHeader, Inboxes};

/// A bidirectional QUIC stream as one [`AsyncRead`] + [`AsyncWrite`] value,
/// for [`relay`](crate::relay::relay). Shutting down the write half finishes
/// the send stream.
#[derive(Debug)]
pub struct QuicStream {
    /// The sending half.
    pub send: SendStream,
    /// The receiving half.
    pub recv: RecvStream,
}

impl QuicStream {
    /// Aborts both directions with `code` (RESET_STREAM and STOP_SENDING),
    /// so the peer sees an error instead of a clean end.
    pub fn abort(&mut self, code: u32) {
        let code = VarInt::from_u32(code);
        // Either half may be closed already; then there is nothing to abort.
        let _ = self.send.reset(code);
        let _ = self.recv.stop(code);
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

/// Relays between `tcp` and `stream`; on failure aborts the stream with
/// `code`, so the peer sees an error instead of a clean end.
pub async fn relay_or_abort<T>(
    tcp: T,
    stream: &mut QuicStream,
    opts: &RelayOptions,
    code: u32,
) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    match relay(tcp, &mut *stream, opts).await {
        Ok(_) => Ok(()),
        Err(e) => {
            stream.abort(code);
            Err(e)
        }
    }
}

/// Hands the datagrams the server sends on `conn` to the client's UDP
/// sessions until the connection ends: `parse` splits one into its session
/// id, fragment header and data (each Hysteria version frames its own).
/// A datagram that does not parse, or whose fragment cannot be right, is
/// dropped with one line prefixed `who`.
pub async fn deliver_datagrams<H, E>(
    conn: Connection,
    sessions: Arc<Inboxes<u32>>,
    who: &'static str,
    parse: impl Fn(&Bytes) -> Result<(u32, H, Bytes), E>,
) where
    H: FragmentHeader,
    E: std::fmt::Display,
{
    while let Ok(d) = conn.read_datagram().await {
        let delivered = parse(&d)
            .map_err(|e| e.to_string())
            .and_then(|(id, h, data)| sessions.deliver(id, &h, data).map_err(|e| e.to_string()));
        if let Err(e) = delivered {
            eprintln!("{who}: datagram from server dropped: {e}");
        }
    }
}

/// Relays what a server's UDP session socket receives back to the client
/// in QUIC datagrams made by `fragment(message id, source, data, datagram
/// size)` (each Hysteria version frames its own), until receiving fails or
/// the connection ends. Failures are one line each through `log`.
pub async fn relay_udp_back<F, E>(
    conn: Connection,
    socket: Arc<tokio::net::UdpSocket>,
    session_id: u32,
    log: impl Fn(std::fmt::Arguments<'_>),
    fragment: F,
) where
    F: Fn(u16, &TargetAddr, &[u8], usize) -> Result<Vec<Bytes>, E>,
    E: std::fmt::Display,
{
    let mut buf = vec![0u8; 65536];
    let mut msg_id: u16 = 0;
    loop {
        // Runs until the session is released (which aborts this task) or
        // the connection ends.
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => return log(format_args!("UDP session {session_id}: receiving: {e}")),
        };
        // An IPv6 socket reports IPv4 peers as mapped addresses; the client
        // should see the address it sent to.
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let Some(max) = conn.max_datagram_size() else {
            return log(format_args!(
                "client takes no datagrams, UDP answers dropped"
            ));
        };
        match fragment(msg_id, &TargetAddr::Ip(from), &buf[..n], max) {
            Ok(ds) => {
                for d in ds {
                    if let Err(e) = conn.send_datagram_wait(d).await {
                        if conn.close_reason().is_some() {
                            return;
                        }
                        log(format_args!("UDP session {session_id}: to client: {e}"));
                        break;
                    }
                }
            }
            Err(e) => log(format_args!("UDP session {session_id}: {e}")),
        }
        msg_id = msg_id.wrapping_add(1);
    }
}

/// A UDP socket for talking to `peer`: on loopback when `peer` is (so a
/// profile's traffic stays there), else on the unspecified address of its
/// family; any port.
pub fn bind_toward(peer: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let ip = match (peer.is_ipv4(), peer.ip().is_loopback()) {
        (true, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (true, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (false, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (false, false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A tokio UDP socket from [`bind_toward`], for relaying a UDP session.
pub fn udp_socket_toward(peer: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::from_std(bind_toward(peer)?)
}

/// The receive buffer each QUIC endpoint asks for its UDP socket, bytes.
///
/// quinn leaves the kernel's default (`net.core.rmem_default`, 208 KiB on
/// most machines), which a loopback QUIC flow at a few hundred MB/s
/// overruns between two reads: the kernel drops the datagrams that do not
/// fit and QUIC sends them again (docs/case-studies/hysteria2.md). quic-go,
/// under sing-box and Hysteria, asks for 7 MiB; Linux doubles what it is
/// asked for, so 4 MiB gives an 8-MiB buffer.
pub const DEFAULT_UDP_BUFFER: usize = 4 << 20;

/// Largest `udp_buffer` a setting may ask for.
pub const MAX_UDP_BUFFER: usize = 256 << 20;

/// What the kernel granted for a socket's receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveBuffer {
    /// Bytes asked for (0: the kernel's default, left as it was).
    pub asked: usize,
    /// SO_RCVBUF as read back (Linux doubles the request for its own
    /// bookkeeping, so this is about twice `asked` when granted in full).
    pub granted: usize,
}

impl ReceiveBuffer {
    /// Whether the kernel held the buffer below what was asked for (its
    /// doubled size, as Linux reports it).
    pub fn is_short(&self) -> bool {
        self.granted < self.asked.saturating_mul(2)
    }
}

/// Asks for a receive buffer of `bytes` on `socket` (0 leaves the kernel's
/// default). SO_RCVBUF is capped at `net.core.rmem_max`; when the cap holds
/// it below `bytes`, SO_RCVBUFFORCE, which needs CAP_NET_ADMIN, is tried as
/// quic-go does. A refusal of either is not an error: the caller reads
/// what it got.
pub fn set_receive_buffer(socket: &std::net::UdpSocket, bytes: usize) -> io::Result<ReceiveBuffer> {
    let sock = socket2::SockRef::from(socket);
    if bytes > 0 {
        sock.set_recv_buffer_size(bytes)?;
        // Linux grants twice the request, or twice rmem_max when capped.
        if sock.recv_buffer_size()? < bytes.saturating_mul(2) {
            force_receive_buffer(socket, bytes);
        }
    }
    Ok(ReceiveBuffer {
        asked: bytes,
        granted: sock.recv_buffer_size()?,
    })
}

/// SO_RCVBUFFORCE (not in socket2); fails quietly without CAP_NET_ADMIN,
/// leaving the capped size in place.
fn force_receive_buffer(socket: &std::net::UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: an int option on a socket we own, value and length valid.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Parses a `udp_buffer` setting: bytes, 0 for the kernel's default.
pub fn parse_udp_buffer(key: &str, value: &str) -> Result<usize, crate::settings::SettingError> {
    crate::settings::parse_in_range(key, value, 0, MAX_UDP_BUFFER, DEFAULT_UDP_BUFFER)
}

/// The QUIC endpoint on `socket`: a server when `server` is given, else a
/// client only. The socket's receive buffer is set to `udp_buffer` bytes
/// ([`set_receive_buffer`]; one line on stderr when the kernel gives
/// less). `wrap` may put a layer between quinn and the socket (an
/// obfuscation); pass [`std::convert::identity`] for none.
pub fn endpoint<W>(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    udp_buffer: usize,
    wrap: W,
) -> io::Result<quinn::Endpoint>
where
    W: FnOnce(Arc<dyn AsyncUdpSocket>) -> Arc<dyn AsyncUdpSocket>,
{
    use quinn::Runtime;
    socket.set_nonblocking(true)?;
    let buffer = set_receive_buffer(&socket, udp_buffer)?;
    if buffer.is_short() {
        eprintln!(
            "UDP receive buffer: asked for {} bytes, the kernel gave {}; raise \
             net.core.rmem_max or run with CAP_NET_ADMIN, or datagrams may be dropped under load",
            buffer.asked, buffer.granted
        );
    }
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = wrap(runtime.wrap_udp_socket(socket)?);
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )
}

/// Streams of each direction a peer may have open at once: every proxied
/// TCP connection is a stream (and in TUIC's quic mode every UDP packet
/// too), and quinn's default of 100 would queue the load generator's
/// connections behind each other.
pub const MAX_STREAMS: u32 = 1024;

/// The transport every QUIC protocol starts from: `idle` as the idle
/// timeout, [`MAX_STREAMS`] bidirectional streams, congestion control by
/// `congestion`. Fails only if `idle` is beyond what QUIC can say.
pub fn transport(
    idle: std::time::Duration,
    congestion: Arc<dyn quinn::congestion::ControllerFactory + Send + Sync>,
) -> Result<quinn::TransportConfig, String> {
    let idle = quinn::IdleTimeout::try_from(idle).map_err(|_| format!("idle timeout {idle:?}"))?;
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    t.congestion_controller_factory(congestion);
    Ok(t)
}

/// quinn's client configuration: `tls` offering `alpn`, with `transport`.
pub fn client_config(
    mut tls: rustls::ClientConfig,
    alpn: Vec<Vec<u8>>,
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, NoInitialCipherSuite> {
    tls.alpn_protocols = alpn;
    let crypto = QuicClientConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// quinn's server configuration: `tls` accepting `alpn`, with `transport`.
pub fn server_config(
    mut tls: rustls::ServerConfig,
    alpn: Vec<Vec<u8>>,
    transport: quinn::TransportConfig,
) -> Result<quinn::ServerConfig, NoInitialCipherSuite> {
    tls.alpn_protocols = alpn;
    let crypto = QuicServerConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Accepts connections on `endpoint` until it is closed and runs `handle`
/// for each in its own task once its handshake is done. A failed handshake
/// is one stderr line prefixed with `who` (e.g. `tuic server`).
pub async fn accept_loop<F, Fut>(endpoint: &quinn::Endpoint, who: &'static str, handle: F)
where
    F: Fn(Connection) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    while let Some(incoming) = endpoint.accept().await {
        let handle = handle.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            match incoming.await {
                Ok(conn) => {
                    let _summary = SummaryOnDrop::new(who, peer, conn.clone());
                    handle(conn).await
                }
                Err(e) => eprintln!("{who}: connection from {peer}: handshake: {e}"),
            }
        });
    }
}

/// One line of quinn's statistics of a connection: packets sent and
/// declared lost, congestion events, UDP bytes and datagrams sent, RTT.
/// Lost packets are what a drop at a full receive buffer costs
/// (docs/case-studies/hysteria2.md).
pub fn summary_line(who: &str, peer: SocketAddr, s: &quinn::ConnectionStats) -> String {
    let lost_share = if s.path.sent_packets == 0 {
        0.0
    } else {
        100.0 * s.path.lost_packets as f64 / s.path.sent_packets as f64
    };
    format!(
        "{who}: connection with {peer}: {} packets sent, {} declared lost ({lost_share:.1} %), \
         {} congestion events, {} UDP bytes sent in {} datagrams, RTT {} µs",
        s.path.sent_packets,
        s.path.lost_packets,
        s.path.congestion_events,
        s.udp_tx.bytes,
        s.udp_tx.datagrams,
        s.path.rtt.as_micros()
    )
}

/// Writes a connection's [`summary_line`] to stderr when dropped: when the
/// connection's task ends, or when the endpoint shuts down under it.
struct SummaryOnDrop {
    who: &'static str,
    peer: SocketAddr,
    conn: Connection,
}

impl SummaryOnDrop {
    fn new(who: &'static str, peer: SocketAddr, conn: Connection) -> SummaryOnDrop {
        SummaryOnDrop { who, peer, conn }
    }
}

impl Drop for SummaryOnDrop {
    fn drop(&mut self) {
        eprintln!("{}", summary_line(self.who, self.peer, &self.conn.stats()));
    }
}

/// Runs a protocol's authentication `auth` of `conn` for at most `limit`.
/// If it fails, or `timed_out()` when it takes too long, the connection
/// is closed with `close_code` (so the server sees a clean end).
pub async fn authenticate_within<T, E>(
    conn: &Connection,
    limit: std::time::Duration,
    close_code: u32,
    auth: impl Future<Output = Result<T, E>>,
    timed_out: impl FnOnce() -> E,
) -> Result<T, E> {
    let result = tokio::time::timeout(limit, auth)
        .await
        .unwrap_or_else(|_| Err(timed_out()));
    if result.is_err() {
        conn.close(VarInt::from_u32(close_code), b"");
    }
    result
}

/// Why the client's connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The connection attempt could not even start (bad server name, ...).
    #[error("connecting to {server}: {source}")]
    Connect {
        /// The server.
        server: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// The QUIC handshake failed.
    #[error("QUIC handshake with {server}: {source}")]
    Handshake {
        /// The server.
        server: SocketAddr,
        /// Why.
        source: quinn::ConnectionError,
    },
    /// The connection died and opening a stream on a new one failed too.
    #[error("QUIC connection lost: {0}")]
    Lost(quinn::ConnectionError),
}

impl SocksReply for LinkError {
    fn reply_code(&self) -> ReplyCode {
        match self {
            // The server did not answer at all.
            LinkError::Handshake {
                source: quinn::ConnectionError::TimedOut,
                ..
            } => ReplyCode::HostUnreachable,
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// A protocol's part of setting up a client connection: what follows the
/// QUIC handshake (authentication, the tasks that serve the connection).
pub trait Handshake: Send + Sync + 'static {
    /// An established connection as the protocol keeps it (at least the
    /// [`Connection`]).
    type Live: Clone + Send + Sync + 'static;
    /// The protocol's error; a [`LinkError`] converts into it.
    type Error: From<LinkError> + Send + 'static;

    /// The QUIC connection of `live`.
    fn connection(live: &Self::Live) -> &Connection;

    /// Makes `conn`, just through its QUIC handshake with `server`, ready
    /// for streams.
    fn establish(
        &self,
        conn: Connection,
        server: SocketAddr,
    ) -> impl Future<Output = Result<Self::Live, Self::Error>> + Send;
}

/// The client's one connection to its server, opened on first use and
/// opened again on the first use after it died, shared by every stream.
pub struct Link<H: Handshake> {
    endpoint: quinn::Endpoint,
    server: SocketAddr,
    server_name: String,
    handshake: H,
    current: tokio::sync::Mutex<Option<H::Live>>,
    opened: AtomicU64,
}

/// The last connection's [`summary_line`] on stderr as the client stops.
impl<H: Handshake> Drop for Link<H> {
    fn drop(&mut self) {
        if let Some(live) = self.current.get_mut() {
            let stats = H::connection(live).stats();
            eprintln!("{}", summary_line("quic client", self.server, &stats));
        }
    }
}

impl<H: Handshake> Link<H> {
    /// A link to `server` (verified as `server_name`) through `endpoint`,
    /// which must have a default client configuration. Connects lazily.
    pub fn new(
        endpoint: quinn::Endpoint,
        server: SocketAddr,
        server_name: String,
        handshake: H,
    ) -> Link<H> {
        Link {
            endpoint,
            server,
            server_name,
            handshake,
            current: tokio::sync::Mutex::new(None),
            opened: AtomicU64::new(0),
        }
    }

    /// The protocol's part.
    pub fn handshake(&self) -> &H {
        &self.handshake
    }

    /// The server.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// QUIC connections opened so far (1 while the first one lives).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The local address of the QUIC endpoint.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The live connection; opens one if there is none or the last one has
    /// died.
    pub async fn live(&self) -> Result<H::Live, H::Error> {
        let mut current = self.current.lock().await;
        if let Some(l) = current.as_ref() {
            if H::connection(l).close_reason().is_none() {
                return Ok(l.clone());
            }
        }
        // The dead connection's figures, before it is replaced.
        if let Some(dead) = current.as_ref() {
            let stats = H::connection(dead).stats();
            eprintln!("{}", summary_line("quic client", self.server, &stats));
        }
        // Held across the handshake on purpose: concurrent callers wait for
        // this one connection instead of each opening their own.
        let live = self.connect().await?;
        *current = Some(live.clone());
        Ok(live)
    }

    /// The live connection if there is one now, without opening one (for a
    /// best-effort goodbye that is not worth a handshake).
    pub fn live_now(&self) -> Option<H::Live> {
        let current = self.current.try_lock().ok()?;
        current
            .as_ref()
            .filter(|l| H::connection(l).close_reason().is_none())
            .cloned()
    }

    async fn connect(&self) -> Result<H::Live, H::Error> {
        let server = self.server;
        let conn = self
            .endpoint
            .connect(server, &self.server_name)
            .map_err(|source| LinkError::Connect { server, source })?
            .await
            .map_err(|source| LinkError::Handshake { server, source })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.handshake.establish(conn, server).await
    }

    /// Opens a bidirectional stream on the live connection, on a new one if
    /// the connection died between the check and its use.
    pub async fn open_bi(&self) -> Result<(H::Live, QuicStream), H::Error> {
        let mut retried = false;
        loop {
            let live = self.live().await?;
            match H::connection(&live).open_bi().await {
                Ok((send, recv)) => return Ok((live, QuicStream { send, recv })),
                Err(_) if !retried => retried = true,
                Err(e) => return Err(LinkError::Lost(e).into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .expect("sysctl readable")
            .trim()
            .parse()
            .expect("a number")
    }

    /// Linux doubles a granted request; 0 leaves the kernel's default.
    #[test]
    fn receive_buffers_read_back_what_the_kernel_granted() {
        let socket = bind_toward("127.0.0.1:9".parse().expect("addr")).expect("bind");
        let untouched = set_receive_buffer(&socket, 0).expect("read");
        assert_eq!(untouched.granted, kernel("rmem_default"));
        assert!(!untouched.is_short());

        // Under every machine's rmem_max (at least 208 KiB).
        let small = set_receive_buffer(&socket, 64 << 10).expect("set");
        assert_eq!(small.granted, 128 << 10);

        // Above this machine's cap: granted in full only with
        // SO_RCVBUFFORCE, which needs CAP_NET_ADMIN.
        let asked = kernel("rmem_max") + (1 << 20);
        let big = set_receive_buffer(&socket, asked).expect("set");
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            assert_eq!(big.granted, 2 * asked);
        } else {
            assert_eq!(big.granted, 2 * kernel("rmem_max"));
            assert!(big.is_short());
        }
    }

    #[test]
    fn summary_lines_give_the_lost_share() {
        let mut s = quinn::ConnectionStats::default();
        s.path.sent_packets = 1_731_173;
        s.path.lost_packets = 753_049;
        s.path.congestion_events = 2532;
        s.path.rtt = std::time::Duration::from_micros(241);
        s.udp_tx.bytes = 2_375_735_374;
        s.udp_tx.datagrams = 1_731_172;
        let peer: SocketAddr = "127.0.0.1:4433".parse().expect("addr");
        assert_eq!(
            summary_line("quic client", peer, &s),
            "quic client: connection with 127.0.0.1:4433: 1731173 packets sent, 753049 declared \
             lost (43.5 %), 2532 congestion events, 2375735374 UDP bytes sent in 1731172 \
             datagrams, RTT 241 µs"
        );
        let quiet = quinn::ConnectionStats::default();
        assert!(summary_line("s", peer, &quiet).contains("0 declared lost (0.0 %)"));
    }

    #[test]
    fn udp_buffer_settings_are_bytes_in_range() {
        assert_eq!(parse_udp_buffer("tuic.udp_buffer", "0"), Ok(0));
        assert_eq!(
            parse_udp_buffer("tuic.udp_buffer", "4194304"),
            Ok(DEFAULT_UDP_BUFFER)
        );
        let err = parse_udp_buffer("tuic.udp_buffer", "1G").expect_err("not bytes");
        assert!(err.to_string().contains("tuic.udp_buffer=4194304"), "{err}");
        assert!(parse_udp_buffer("tuic.udp_buffer", "268435457").is_err());
    }
}
