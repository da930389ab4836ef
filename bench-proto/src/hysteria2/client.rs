//! The client side: SOCKS5 in, Hysteria 2 out, all over one QUIC connection
//! that is re-established when it dies.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, VarInt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::udp::{fragment, parse, Reassembler};
use super::wire::{encode_tcp_request, padding, read_tcp_response};
use super::{
    congestion, endpoint, mbps_to_bytes, Hysteria2Error, QuicStream, Settings, AUTH_PATH,
    CLOSE_NORMAL, STATUS_AUTH_OK, STREAM_RELAY_FAILED,
};
use crate::addr::TargetAddr;
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;
use crate::socks5::{self, Reply, ReplyCode};

/// Packets queued per UDP session; more are dropped as a full socket buffer
/// would drop them.
const UDP_QUEUE: usize = 256;
/// How long the authentication exchange may take after the handshake.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive interval, so that a connection kept for later use is not
/// closed by the idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Options of the client side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server endpoint (UDP).
    pub server: SocketAddr,
    /// The TLS server name to send and verify.
    pub server_name: String,
    /// The password (`Hysteria-Auth`).
    pub password: String,
    /// TLS 1.3 configuration that trusts the server, e.g. from
    /// [`pki::client_config`](crate::pki::client_config); its ALPN list is
    /// replaced by `h3`.
    pub tls: rustls::ClientConfig,
    /// Hysteria 2 settings.
    pub settings: Settings,
    /// How to relay once a stream is up.
    pub relay: RelayOptions,
}

/// A Hysteria 2 client: one QUIC endpoint, at most one live authenticated
/// connection, shared by every stream and UDP session. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    server: SocketAddr,
    server_name: String,
    password: String,
    settings: Settings,
    relay: RelayOptions,
    endpoint: quinn::Endpoint,
    current: tokio::sync::Mutex<Option<Live>>,
    opened: AtomicU64,
    sessions: Arc<Mutex<HashMap<u32, SessionEntry>>>,
    next_session: AtomicU32,
}

/// An authenticated connection.
#[derive(Clone)]
struct Live {
    conn: Connection,
    /// Whether the server relays UDP.
    udp: bool,
    /// Kept so that h3 does not close the connection: it does when the last
    /// request sender is dropped.
    _h3: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
}

struct SessionEntry {
    tx: mpsc::Sender<(TargetAddr, Bytes)>,
    reassembler: Reassembler,
}

/// Serves the client side on `listener` forever: SOCKS5 CONNECT in,
/// Hysteria 2 out to `opts.server`. Returns only if the listener fails.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> Result<(), Hysteria2Error> {
    Client::new(opts)?.serve(listener).await?;
    Ok(())
}

impl Client {
    /// Creates the QUIC endpoint (on loopback when the server is, else on
    /// the unspecified address); connects lazily. Must be called inside a
    /// tokio runtime.
    pub fn new(opts: ClientOptions) -> Result<Client, Hysteria2Error> {
        let ClientOptions {
            server,
            server_name,
            password,
            mut tls,
            settings,
            relay,
        } = opts;
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| Hysteria2Error::Config(format!("TLS for QUIC: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = settings.transport()?;
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        config.transport_config(Arc::new(transport));
        let ip = match (server.is_ipv4(), server.ip().is_loopback()) {
            (true, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (true, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (false, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (false, false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket =
            std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(Hysteria2Error::Endpoint)?;
        let mut endpoint = endpoint(socket, None, settings.obfs()?)?;
        endpoint.set_default_client_config(config);
        Ok(Client {
            inner: Arc::new(Inner {
                server,
                server_name,
                password,
                settings,
                relay,
                endpoint,
                current: tokio::sync::Mutex::new(None),
                opened: AtomicU64::new(0),
                sessions: Arc::new(Mutex::new(HashMap::new())),
                next_session: AtomicU32::new(1),
            }),
        })
    }

    /// Serves SOCKS5 on `listener` forever, each CONNECT as one stream.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        serve(listener, "hysteria2 client", move |stream| {
            socks_conn(self.clone(), stream)
        })
        .await
    }

    /// QUIC connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// The local address of the QUIC endpoint.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// The live, authenticated connection; opens one if there is none or the
    /// last one has died.
    pub async fn connection(&self) -> Result<Connection, Hysteria2Error> {
        Ok(self.live().await?.conn)
    }

    async fn live(&self) -> Result<Live, Hysteria2Error> {
        let mut current = self.inner.current.lock().await;
        if let Some(l) = current.as_ref() {
            if l.conn.close_reason().is_none() {
                return Ok(l.clone());
            }
        }
        // Held across the handshake on purpose: concurrent callers wait for
        // this one connection instead of each opening their own.
        let live = self.connect().await?;
        *current = Some(live.clone());
        Ok(live)
    }

    async fn connect(&self) -> Result<Live, Hysteria2Error> {
        let inner = &self.inner;
        let server = inner.server;
        let conn = inner
            .endpoint
            .connect(server, &inner.server_name)
            .map_err(|source| Hysteria2Error::Connect { server, source })?
            .await
            .map_err(|source| Hysteria2Error::Handshake { server, source })?;
        inner.opened.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(AUTH_TIMEOUT, self.authenticate(&conn)).await {
            Ok(Ok(live)) => {
                tokio::spawn(receive_datagrams(conn.clone(), Arc::clone(&inner.sessions)));
                Ok(live)
            }
            Ok(Err(e)) => {
                conn.close(VarInt::from_u32(CLOSE_NORMAL), b"");
                Err(e)
            }
            Err(_) => {
                conn.close(VarInt::from_u32(CLOSE_NORMAL), b"");
                Err(Hysteria2Error::Http3 {
                    server,
                    reason: "no answer to /auth in time".into(),
                })
            }
        }
    }

    /// The HTTP/3 `POST /auth`; sets the congestion controller's rate from
    /// the answer.
    async fn authenticate(&self, conn: &Connection) -> Result<Live, Hysteria2Error> {
        let inner = &self.inner;
        let server = inner.server;
        let h3err = |e: &dyn std::fmt::Display| Hysteria2Error::Http3 {
            server,
            reason: e.to_string(),
        };
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| h3err(&e))?;
        // The driver handles the server's control stream; it ends with the
        // connection.
        tokio::spawn(async move {
            let _ = driver.wait_idle().await;
        });
        let rx = mbps_to_bytes(inner.settings.down_mbps);
        let pad = padding(256..2048);
        let request = http::Request::post(format!("https://hysteria{AUTH_PATH}"))
            .header("Hysteria-Auth", inner.password.as_str())
            .header("Hysteria-CC-RX", rx.to_string())
            .header("Hysteria-Padding", pad)
            .body(())
            .map_err(|e| h3err(&e))?;
        let mut stream = send.send_request(request).await.map_err(|e| h3err(&e))?;
        // The server may stop the request stream once it has answered
        // (RFC 9114 lets it), so finishing can fail; the answer decides.
        let _ = stream.finish().await;
        let response = stream.recv_response().await.map_err(|e| h3err(&e))?;
        let status = response.status().as_u16();
        if status != STATUS_AUTH_OK {
            return Err(Hysteria2Error::AuthRejected { server, status });
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let udp = header("Hysteria-UDP") == Some("true");
        // "auto" (or nothing usable): the server wants congestion control.
        let server_rx = header("Hysteria-CC-RX").and_then(|v| v.parse::<u64>().ok());
        let up = mbps_to_bytes(inner.settings.up_mbps);
        let tx = match server_rx {
            None => 0,
            Some(0) => up,
            Some(r) if up == 0 => r,
            Some(r) => r.min(up),
        };
        congestion::set_rate(conn, tx);
        Ok(Live {
            conn: conn.clone(),
            udp,
            _h3: send,
        })
    }

    /// Opens a stream to `target` through the server: `TCPRequest`, then
    /// the server's `TCPResponse`; the stream carries the proxied bytes from
    /// there on.
    pub async fn open_tcp(&self, target: &TargetAddr) -> Result<QuicStream, Hysteria2Error> {
        let request = encode_tcp_request(target, &padding(64..512))?;
        let mut retried = false;
        let (mut send, mut recv) = loop {
            let conn = self.connection().await?;
            match conn.open_bi().await {
                Ok(s) => break s,
                // The connection died between the check and its use:
                // reconnect once.
                Err(_) if !retried => retried = true,
                Err(e) => return Err(Hysteria2Error::ConnectionLost(e)),
            }
        };
        send.write_all(&request)
            .await
            .map_err(Hysteria2Error::Write)?;
        match read_tcp_response(&mut recv).await? {
            Ok(()) => Ok(QuicStream { send, recv }),
            Err(message) => Err(Hysteria2Error::TargetRefused {
                target: target.clone(),
                message,
            }),
        }
    }

    /// Starts a UDP session (a new session id).
    pub fn udp_session(&self) -> UdpSession {
        let (tx, rx) = mpsc::channel(UDP_QUEUE);
        let mut sessions = lock(&self.inner.sessions);
        let mut id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        while sessions.contains_key(&id) {
            id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        }
        sessions.insert(
            id,
            SessionEntry {
                tx,
                reassembler: Reassembler::default(),
            },
        );
        UdpSession {
            client: self.clone(),
            session_id: id,
            rx,
            next_packet: AtomicU16::new(0),
        }
    }
}

/// One UDP session through the server: packets to any target, answers from
/// any source. Hysteria has no message to end a session; dropping it only
/// forgets it here (the server times it out).
pub struct UdpSession {
    client: Client,
    session_id: u32,
    rx: mpsc::Receiver<(TargetAddr, Bytes)>,
    next_packet: AtomicU16,
}

impl UdpSession {
    /// The session id.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// Sends one UDP packet (at most 65535 bytes) to `target`, fragmented
    /// to fit the connection's datagrams.
    pub async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), Hysteria2Error> {
        let live = self.client.live().await?;
        if !live.udp {
            return Err(Hysteria2Error::UdpUnsupported);
        }
        let max = live
            .conn
            .max_datagram_size()
            .ok_or(Hysteria2Error::UdpUnsupported)?;
        let id = self.next_packet.fetch_add(1, Ordering::Relaxed);
        for d in fragment(self.session_id, id, target, payload, max)? {
            // Waits for room instead of dropping the oldest datagram, so a
            // burst is paced rather than truncated.
            live.conn
                .send_datagram_wait(d)
                .await
                .map_err(Hysteria2Error::Datagram)?;
        }
        Ok(())
    }

    /// The next packet that came back, with its source.
    pub async fn recv_from(&mut self) -> Result<(Bytes, TargetAddr), Hysteria2Error> {
        match self.rx.recv().await {
            Some((from, data)) => Ok((data, from)),
            None => Err(Hysteria2Error::SessionClosed),
        }
    }
}

impl Drop for UdpSession {
    fn drop(&mut self) {
        lock(&self.client.inner.sessions).remove(&self.session_id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn receive_datagrams(conn: Connection, sessions: Arc<Mutex<HashMap<u32, SessionEntry>>>) {
    while let Ok(d) = conn.read_datagram().await {
        let (h, payload) = match parse(&d) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("hysteria2 client: bad datagram from server: {e}");
                continue;
            }
        };
        let mut sessions = lock(&sessions);
        let Some(entry) = sessions.get_mut(&h.session_id) else {
            continue; // a session we dropped
        };
        match entry.reassembler.feed(&h, payload, Instant::now()) {
            // A full queue drops the packet, as a full socket buffer would.
            Ok(Some(packet)) => {
                let _ = entry.tx.try_send(packet);
            }
            Ok(None) => {}
            Err(e) => eprintln!("hysteria2 client: packet from server dropped: {e}"),
        }
    }
}

async fn socks_conn(client: Client, mut inbound: TcpStream) -> Result<(), Hysteria2Error> {
    let target = socks5::accept(&mut inbound).await?;
    let mut stream = match client.open_tcp(&target).await {
        Ok(s) => s,
        Err(e) => {
            socks5::reply(&mut inbound, Reply::Failed(reply_code(&e))).await?;
            return Err(e);
        }
    };
    let bound = client.local_addr()?;
    socks5::reply(&mut inbound, Reply::Succeeded(bound)).await?;
    if let Err(source) = relay(inbound, &mut stream, &client.inner.relay).await {
        stream.abort(STREAM_RELAY_FAILED);
        return Err(Hysteria2Error::Relay { target, source });
    }
    Ok(())
}

/// The SOCKS5 reply code for a failure to get a stream through.
fn reply_code(e: &Hysteria2Error) -> ReplyCode {
    match e {
        Hysteria2Error::AuthRejected { .. } => ReplyCode::NotAllowed,
        Hysteria2Error::TargetRefused { .. } => ReplyCode::HostUnreachable,
        Hysteria2Error::Handshake {
            source: quinn::ConnectionError::TimedOut,
            ..
        } => ReplyCode::HostUnreachable,
        _ => ReplyCode::GeneralFailure,
    }
}
