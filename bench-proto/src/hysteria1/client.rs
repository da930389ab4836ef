//! The client side: SOCKS5 in, Hysteria v1 out, all over one QUIC
//! connection that is re-established when it dies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, VarInt};
use tokio::net::{TcpListener, TcpStream};

use super::udp::{fragment, parse};
use super::wire::{
    read_message, ClientHello, Request, Response, ServerHello, MAX_RESPONSE, MAX_SERVER_HELLO,
};
use super::{
    endpoint, Hysteria1Error, Settings, ALPN, CLOSE_AUTH_ERROR, CLOSE_GENERIC,
    CLOSE_PROTOCOL_ERROR, PROTOCOL_TIMEOUT,
};
use crate::addr::TargetAddr;
use crate::brutal;
use crate::quic::client::{DatagramClient, StreamClient};
use crate::quic::{self, Handshake, Link, QuicStream};
use crate::relay::RelayOptions;
use crate::udp_frag::Inboxes;

/// Packets queued per UDP session; more are dropped as a full socket buffer
/// would drop them.
const UDP_QUEUE: usize = 256;
/// Keep-alive interval (Hysteria's default), so that a connection kept for
/// later use is not closed by the idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Options of the client side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server endpoint (UDP).
    pub server: SocketAddr,
    /// The TLS server name to send and verify.
    pub server_name: String,
    /// The authentication string.
    pub auth: String,
    /// TLS 1.3 configuration that trusts the server, e.g. from
    /// [`pki::client_config`](crate::pki::client_config); its ALPN list is
    /// replaced by `hysteria`.
    pub tls: rustls::ClientConfig,
    /// Hysteria v1 settings.
    pub settings: Settings,
    /// How to relay once a stream is up.
    pub relay: RelayOptions,
}

/// A Hysteria v1 client: one QUIC endpoint, at most one live accepted
/// connection, shared by every stream and UDP session. Cheap to clone.
pub type Client = quic::client::Client<Hello>;

/// Hysteria v1's part of the client: the hellos on a new connection's first
/// stream, the request of a stream, the UDP sessions.
pub struct Hello {
    auth: String,
    settings: Settings,
    sessions: Arc<Inboxes<u32>>,
}

/// An accepted connection.
#[derive(Clone)]
pub struct Live {
    conn: Connection,
    /// The hello stream, kept open for the connection's life as Hysteria
    /// clients keep it.
    _control: Arc<QuicStream>,
}

/// Serves the client side on `listener` forever: SOCKS5 CONNECT in,
/// Hysteria v1 out to `opts.server`. Returns only if the listener fails.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> Result<(), Hysteria1Error> {
    Client::new(opts)?.serve(listener).await?;
    Ok(())
}

impl Handshake for Hello {
    type Live = Live;
    type Error = Hysteria1Error;

    fn connection(live: &Live) -> &Connection {
        &live.conn
    }

    async fn establish(
        &self,
        conn: Connection,
        server: SocketAddr,
    ) -> Result<Live, Hysteria1Error> {
        let timed_out = || Hysteria1Error::Hello {
            server,
            reason: "no server hello in time".into(),
        };
        let auth = self.hello(&conn, server);
        let live =
            quic::authenticate_within(&conn, PROTOCOL_TIMEOUT, CLOSE_GENERIC, auth, timed_out)
                .await?;
        tokio::spawn(quic::deliver_datagrams(
            conn,
            Arc::clone(&self.sessions),
            "hysteria1 client",
            |d| parse(d).map(|(h, data)| (h.session_id, h, data)),
        ));
        Ok(live)
    }
}

impl Hello {
    /// Sends `request` on `stream`, just opened, and reads the server's
    /// response; the session id it gives if it is ok.
    async fn request(
        &self,
        stream: &mut QuicStream,
        request: &Request,
    ) -> Result<u32, Hysteria1Error> {
        let bytes = request.encode()?;
        stream
            .send
            .write_all(&bytes)
            .await
            .map_err(quic::Error::Write)?;
        let response = read_message(&mut stream.recv, Response::decode, MAX_RESPONSE).await?;
        if !response.ok {
            return Err(quic::Error::TargetRefused {
                target: request.target.clone(),
                message: response.message,
            }
            .into());
        }
        Ok(response.session_id)
    }

    /// Sends the client hello on the first stream and reads the server's;
    /// sets Brutal's rate from it.
    async fn hello(&self, conn: &Connection, server: SocketAddr) -> Result<Live, Hysteria1Error> {
        let failed = |e: &dyn std::fmt::Display| Hysteria1Error::Hello {
            server,
            reason: e.to_string(),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(&e))?;
        let hello = ClientHello {
            send_bps: self.settings.send_bps(),
            recv_bps: self.settings.recv_bps(),
            auth: self.auth.as_bytes().to_vec(),
        }
        .encode()?;
        send.write_all(&hello).await.map_err(|e| failed(&e))?;
        let answer = match read_message(&mut recv, ServerHello::decode, MAX_SERVER_HELLO).await {
            Ok(a) => a,
            Err(e) => {
                // The server may close (code 2) before its refusing hello
                // arrives: that is a refusal too.
                if let Some(ConnectionError::ApplicationClosed(c)) = conn.close_reason() {
                    if c.error_code == VarInt::from_u32(CLOSE_AUTH_ERROR) {
                        return Err(Hysteria1Error::AuthRejected {
                            server,
                            message: String::from_utf8_lossy(&c.reason).into_owned(),
                        });
                    }
                }
                return Err(failed(&e));
            }
        };
        if !answer.ok {
            return Err(Hysteria1Error::AuthRejected {
                server,
                message: answer.message,
            });
        }
        if answer.recv_bps == 0 {
            conn.close(VarInt::from_u32(CLOSE_PROTOCOL_ERROR), b"protocol error");
            return Err(failed(&"server hello with a receive rate of 0"));
        }
        brutal::set_rate(conn, self.settings.send_bps().min(answer.recv_bps));
        Ok(Live {
            conn: conn.clone(),
            _control: Arc::new(QuicStream { send, recv }),
        })
    }
}

impl quic::client::Client<Hello> {
    /// Creates the QUIC endpoint (on loopback when the server is, else on
    /// the unspecified address); connects lazily. Must be called inside a
    /// tokio runtime.
    pub fn new(opts: ClientOptions) -> Result<Client, Hysteria1Error> {
        let ClientOptions {
            server,
            server_name,
            auth,
            tls,
            settings,
            relay,
        } = opts;
        let mut transport = settings.transport()?;
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        let config = quic::client_config(tls, vec![ALPN.to_vec()], transport)
            .map_err(|e| Hysteria1Error::Config(format!("TLS for QUIC: {e}")))?;
        let socket = quic::bind_toward(server).map_err(quic::Error::Endpoint)?;
        let mut endpoint = endpoint(socket, None, settings.udp_buffer, settings.xplus())?;
        endpoint.set_default_client_config(config);
        let sessions = Arc::new(Inboxes::default());
        let hello = Hello {
            auth,
            settings,
            sessions,
        };
        Ok(Client::with_link(
            Link::new(endpoint, server, server_name, hello),
            relay,
        ))
    }

    /// Opens a UDP session (its first target is `target`, as Hysteria
    /// clients name one; packets may go anywhere).
    pub async fn udp_session(&self, target: &TargetAddr) -> Result<UdpSession, Hysteria1Error> {
        let request = Request {
            udp: true,
            target: target.clone(),
        };
        let (_, mut stream) = self.link().open_bi().await?;
        let id = self.protocol().request(&mut stream, &request).await?;
        let (id, rx) = self
            .protocol()
            .sessions
            .open(|| id, 1, UDP_QUEUE)
            .ok_or_else(|| Hysteria1Error::Hello {
                server: self.link().server(),
                reason: format!("UDP session id {id} given twice"),
            })?;
        Ok(UdpSession::new(self.clone(), id, rx, stream))
    }
}

/// One UDP session through the server: packets to any target, answers from
/// any source. Dropping it closes its stream, which ends it on the server.
pub type UdpSession = quic::client::UdpSession<Hello, QuicStream>;

impl DatagramClient for Hello {
    fn sessions(&self) -> &Inboxes<u32> {
        &self.sessions
    }

    /// A connection relays UDP if it takes datagrams: a server that does
    /// not refuses the session's request instead.
    fn relays_udp(_: &Live) -> bool {
        true
    }

    fn fragment(
        session_id: u32,
        msg_id: u16,
        target: &TargetAddr,
        payload: &[u8],
        max_datagram: usize,
    ) -> Result<Vec<Bytes>, Hysteria1Error> {
        fragment(session_id, msg_id, target, payload, max_datagram)
    }
}

impl StreamClient for Hello {
    const NAME: &'static str = "hysteria1 client";
    type InUse = ();

    fn in_use(&self) {}

    /// A TCP request; the stream carries the proxied bytes once the server
    /// has answered.
    async fn start_stream(
        &self,
        stream: &mut QuicStream,
        target: &TargetAddr,
    ) -> Result<(), Hysteria1Error> {
        let request = Request {
            udp: false,
            target: target.clone(),
        };
        self.request(stream, &request).await.map(drop)
    }

    async fn relay(
        &self,
        inbound: TcpStream,
        mut stream: QuicStream,
        opts: &RelayOptions,
    ) -> std::io::Result<()> {
        quic::relay_or_abort(inbound, &mut stream, opts, CLOSE_GENERIC).await
    }
}
