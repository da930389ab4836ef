//! Protocol `tcp`: a plain relay, the baseline that every other protocol's
//! costs are compared with.
//!
//! Wire, client endpoint to server endpoint, per connection:
//!
//! 1. client → server: the target address ([`TargetAddr::encode`]),
//! 2. server → client: one status byte, 0 when the server connected to the
//!    target, else the SOCKS5 reply code of the failure,
//! 3. then both directions carry the proxied bytes unchanged until each side
//!    has closed.
//!
//! Both sides relay between two plain `TcpStream`s, so besides the buffer
//! modes of [`crate::relay`](mod@crate::relay) they can run `relay.mode=splice`
//! ([`crate::splice`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::addr::{AddrError, TargetAddr};
use crate::dial::{connect, DialError};
use crate::outbound::{self, Opened, Outbound, SocksReply};
use crate::relay::{relay, RelayMode, RelayOptions, RelayStats};
use crate::serve::serve;
use crate::socks5::ReplyCode;
use crate::splice;

/// Status byte the server sends when it is connected to the target.
pub const STATUS_CONNECTED: u8 = 0;

/// Options of the client side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server endpoint to connect to.
    pub server: SocketAddr,
    /// How to relay once the stream is up.
    pub relay: RelayOptions,
}

/// Options of the server side.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// How to relay once the stream is up.
    pub relay: RelayOptions,
}

/// Why the client could not open a stream through the server.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The target cannot be encoded (a domain name over 255 bytes).
    #[error("encoding target address: {0}")]
    Addr(#[from] AddrError),
    /// The server endpoint did not take the connection.
    #[error("connecting to server {server}: {source}")]
    ConnectServer {
        /// The server.
        server: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The server closed before its status byte.
    #[error("server closed before answering for {target}: {source}")]
    NoStatus {
        /// The target.
        target: TargetAddr,
        /// Why.
        source: io::Error,
    },
    /// The server could not reach the target.
    #[error("server could not connect to {target}: SOCKS5 reply code {code:#04x}")]
    ServerRefused {
        /// The target.
        target: TargetAddr,
        /// The status byte it sent.
        code: u8,
    },
    /// Other I/O with the server.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SocksReply for OpenError {
    fn reply_code(&self) -> ReplyCode {
        match self {
            // The SOCKS5 client learns why, e.g. "connection refused" when
            // the server endpoint is down.
            OpenError::ConnectServer { source, .. } => ReplyCode::from_connect_error(source),
            OpenError::ServerRefused { code, .. } => {
                ReplyCode::from_u8(*code).unwrap_or(ReplyCode::GeneralFailure)
            }
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// Why one proxied connection failed on the server side.
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("reading target address: {0}")]
    Addr(#[from] AddrError),
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("relaying for {target}: {source}")]
    Relay {
        target: TargetAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The client side as an [`Outbound`]: one TCP connection to the server per
/// proxied connection.
#[derive(Debug, Clone)]
pub struct Client {
    opts: Arc<ClientOptions>,
}

impl Client {
    /// A client with these options.
    pub fn new(opts: ClientOptions) -> Client {
        Client {
            opts: Arc::new(opts),
        }
    }
}

impl Outbound for Client {
    type Stream = TcpStream;
    type Error = OpenError;
    const NAME: &'static str = "tcp client";

    async fn open(
        &self,
        target: &TargetAddr,
        _origin: SocketAddr,
    ) -> Result<Opened<TcpStream>, OpenError> {
        let mut request = Vec::with_capacity(1 + 1 + 255 + 2);
        target.encode(&mut request)?;
        let server = self.opts.server;
        let mut upstream = TcpStream::connect(server)
            .await
            .map_err(|source| OpenError::ConnectServer { server, source })?;
        upstream.set_nodelay(true)?;
        upstream.write_all(&request).await?;
        let mut status = [0u8; 1];
        if let Err(source) = upstream.read_exact(&mut status).await {
            return Err(OpenError::NoStatus {
                target: target.clone(),
                source,
            });
        }
        if status[0] != STATUS_CONNECTED {
            return Err(OpenError::ServerRefused {
                target: target.clone(),
                code: status[0],
            });
        }
        let bound = upstream.local_addr()?;
        Ok(Opened {
            stream: upstream,
            bound,
        })
    }

    fn relay_options(&self) -> &RelayOptions {
        &self.opts.relay
    }

    async fn relay(&self, inbound: TcpStream, upstream: TcpStream) -> io::Result<()> {
        relay_streams(inbound, upstream, &self.opts.relay).await?;
        Ok(())
    }
}

/// Serves the client side on `listener` forever: SOCKS5 in, `tcp` out to
/// `opts.server`. Returns only if the listener fails for good.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> io::Result<()> {
    outbound::run_client(listener, Client::new(opts)).await
}

/// Serves the server side on `listener` forever: `tcp` in, TCP out to each
/// connection's target. Returns only if the listener fails for good.
pub async fn run_server(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    serve(listener, "tcp server", move |stream| {
        server_conn(stream, Arc::clone(&opts))
    })
    .await
}

async fn server_conn(mut inbound: TcpStream, opts: Arc<ServerOptions>) -> Result<(), ServerError> {
    let target = TargetAddr::read_from(&mut inbound).await?;
    let upstream = match connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            // Best effort: the client may be gone, and `e` says more.
            let _ = inbound.write_all(&[e.reply_code().as_u8()]).await;
            return Err(e.into());
        }
    };
    inbound.write_all(&[STATUS_CONNECTED]).await?;
    relay_streams(inbound, upstream, &opts.relay)
        .await
        .map_err(|source| ServerError::Relay { target, source })?;
    Ok(())
}

/// Relays between two sockets in the mode the options ask for; unlike
/// [`relay`], this one can `splice`.
pub async fn relay_streams(
    a: TcpStream,
    b: TcpStream,
    opts: &RelayOptions,
) -> io::Result<RelayStats> {
    match opts.mode {
        RelayMode::Splice => {
            opts.leak.keep_for_connection();
            splice::relay(a, b, opts.buffer_size).await
        }
        RelayMode::Reuse | RelayMode::Copy | RelayMode::Pooled => relay(a, b, opts).await,
    }
}
