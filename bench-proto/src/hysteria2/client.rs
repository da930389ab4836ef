//! The client side: SOCKS5 in, Hysteria 2 out, all over one QUIC connection
//! that is re-established when it dies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::Connection;
use tokio::net::{TcpListener, TcpStream};

use super::udp::{fragment, parse};
use super::wire::{encode_tcp_request, padding, read_tcp_response};
use super::{
    congestion, endpoint, mbps_to_bytes, Hysteria2Error, Settings, AUTH_PATH, CLOSE_NORMAL,
    STATUS_AUTH_OK, STREAM_RELAY_FAILED,
};
use crate::addr::TargetAddr;
use crate::quic::client::{DatagramClient, StreamClient};
use crate::quic::{self, Handshake, Link, QuicStream};
use crate::relay::RelayOptions;
use crate::udp_frag::Inboxes;

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
pub type Client = quic::client::Client<Authenticate>;

/// Hysteria 2's part of the client: the HTTP/3 `POST /auth` of a new
/// connection, the `TCPRequest` of a stream, the UDP sessions.
pub struct Authenticate {
    password: String,
    settings: Settings,
    sessions: Arc<Inboxes<u32>>,
    next_session: AtomicU32,
}

/// An authenticated connection.
#[derive(Clone)]
pub struct Live {
    conn: Connection,
    /// Whether the server relays UDP.
    udp: bool,
    /// Kept so that h3 does not close the connection: it does when the last
    /// request sender is dropped.
    _h3: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
}

/// Serves the client side on `listener` forever: SOCKS5 CONNECT in,
/// Hysteria 2 out to `opts.server`. Returns only if the listener fails.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> Result<(), Hysteria2Error> {
    Client::new(opts)?.serve(listener).await?;
    Ok(())
}

impl Handshake for Authenticate {
    type Live = Live;
    type Error = Hysteria2Error;

    fn connection(live: &Live) -> &Connection {
        &live.conn
    }

    async fn establish(
        &self,
        conn: Connection,
        server: SocketAddr,
    ) -> Result<Live, Hysteria2Error> {
        let timed_out = || Hysteria2Error::Http3 {
            server,
            reason: "no answer to /auth in time".into(),
        };
        let auth = self.authenticate(&conn, server);
        let live =
            quic::authenticate_within(&conn, AUTH_TIMEOUT, CLOSE_NORMAL, auth, timed_out).await?;
        tokio::spawn(quic::deliver_datagrams(
            conn,
            Arc::clone(&self.sessions),
            "hysteria2 client",
            |d| parse(d).map(|(h, data)| (h.session_id, h, data)),
        ));
        Ok(live)
    }
}

impl Authenticate {
    /// The HTTP/3 `POST /auth`; sets the congestion controller's rate from
    /// the answer.
    async fn authenticate(
        &self,
        conn: &Connection,
        server: SocketAddr,
    ) -> Result<Live, Hysteria2Error> {
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
        let rx = mbps_to_bytes(self.settings.down_mbps);
        let pad = padding(256..2048);
        let request = http::Request::post(format!("https://hysteria{AUTH_PATH}"))
            .header("Hysteria-Auth", self.password.as_str())
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
        let up = mbps_to_bytes(self.settings.up_mbps);
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
}

impl quic::client::Client<Authenticate> {
    /// Creates the QUIC endpoint (on loopback when the server is, else on
    /// the unspecified address); connects lazily. Must be called inside a
    /// tokio runtime.
    pub fn new(opts: ClientOptions) -> Result<Client, Hysteria2Error> {
        let ClientOptions {
            server,
            server_name,
            password,
            tls,
            settings,
            relay,
        } = opts;
        let mut transport = settings.transport()?;
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        let config = quic::client_config(tls, vec![b"h3".to_vec()], transport)
            .map_err(|e| Hysteria2Error::Config(format!("TLS for QUIC: {e}")))?;
        let socket = quic::bind_toward(server).map_err(quic::Error::Endpoint)?;
        let mut endpoint = endpoint(socket, None, settings.udp_buffer, settings.obfs()?)?;
        endpoint.set_default_client_config(config);
        let sessions = Arc::new(Inboxes::default());
        let auth = Authenticate {
            password,
            settings,
            sessions,
            next_session: AtomicU32::new(1),
        };
        Ok(Client::with_link(
            Link::new(endpoint, server, server_name, auth),
            relay,
        ))
    }

    /// Starts a UDP session (a new session id).
    pub fn udp_session(&self) -> UdpSession {
        let next = &self.protocol().next_session;
        // 2^32 ids and a few hundred sessions at most: a free one comes soon.
        let (id, rx) = self
            .protocol()
            .sessions
            .open(
                || next.fetch_add(1, Ordering::Relaxed),
                usize::MAX,
                UDP_QUEUE,
            )
            .unwrap_or_else(|| unreachable!("an endless search ends only with an id"));
        UdpSession::new(self.clone(), id, rx, ())
    }
}

/// One UDP session through the server: packets to any target, answers from
/// any source. Hysteria has no message to end a session; dropping it only
/// forgets it here (the server times it out).
pub type UdpSession = quic::client::UdpSession<Authenticate, ()>;

impl DatagramClient for Authenticate {
    fn sessions(&self) -> &Inboxes<u32> {
        &self.sessions
    }

    fn relays_udp(live: &Live) -> bool {
        live.udp
    }

    fn fragment(
        session_id: u32,
        packet_id: u16,
        target: &TargetAddr,
        payload: &[u8],
        max_datagram: usize,
    ) -> Result<Vec<Bytes>, Hysteria2Error> {
        fragment(session_id, packet_id, target, payload, max_datagram)
    }
}

impl StreamClient for Authenticate {
    const NAME: &'static str = "hysteria2 client";
    type InUse = ();

    fn in_use(&self) {}

    /// `TCPRequest`, then the server's `TCPResponse`.
    async fn start_stream(
        &self,
        stream: &mut QuicStream,
        target: &TargetAddr,
    ) -> Result<(), Hysteria2Error> {
        let request = encode_tcp_request(target, &padding(64..512))?;
        stream
            .send
            .write_all(&request)
            .await
            .map_err(quic::Error::Write)?;
        read_tcp_response(&mut stream.recv)
            .await?
            .map_err(|message| {
                quic::Error::TargetRefused {
                    target: target.clone(),
                    message,
                }
                .into()
            })
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
