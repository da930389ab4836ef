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
use crate::relay::{relay, RelayMode, RelayOptions, RelayStats};
use crate::serve::serve;
use crate::socks5::{self, Reply, ReplyCode, Socks5Error};
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

/// Why one proxied connection failed.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Socks5(#[from] Socks5Error),
    #[error("reading target address: {0}")]
    Addr(#[from] AddrError),
    #[error("connecting to server {server}: {source}")]
    ConnectServer {
        server: SocketAddr,
        source: io::Error,
    },
    #[error("server closed before answering for {target}: {source}")]
    NoStatus {
        target: TargetAddr,
        source: io::Error,
    },
    #[error("server could not connect to {target}: SOCKS5 reply code {code:#04x}")]
    ServerRefused { target: TargetAddr, code: u8 },
    #[error("resolving {target}: {source}")]
    Resolve {
        target: TargetAddr,
        source: io::Error,
    },
    #[error("connecting to {target}: {source}")]
    ConnectTarget {
        target: TargetAddr,
        source: io::Error,
    },
    #[error("relaying for {target}: {source}")]
    Relay {
        target: TargetAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serves the client side on `listener` forever: SOCKS5 in, `tcp` out to
/// `opts.server`. Returns only if the listener fails for good.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    serve(listener, "tcp client", move |stream| {
        client_conn(stream, Arc::clone(&opts))
    })
    .await
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

async fn client_conn(mut inbound: TcpStream, opts: Arc<ClientOptions>) -> Result<(), ConnError> {
    let target = socks5::accept(&mut inbound).await?;

    let mut upstream = match TcpStream::connect(opts.server).await {
        Ok(s) => s,
        Err(source) => {
            // The SOCKS5 client learns why, e.g. "connection refused" when
            // the server endpoint is down.
            let code = ReplyCode::from_connect_error(&source);
            socks5::reply(&mut inbound, Reply::Failed(code)).await?;
            return Err(ConnError::ConnectServer {
                server: opts.server,
                source,
            });
        }
    };
    upstream.set_nodelay(true)?;

    let mut request = Vec::with_capacity(1 + 1 + 255 + 2);
    target.encode(&mut request)?;
    upstream.write_all(&request).await?;

    let mut status = [0u8; 1];
    if let Err(source) = upstream.read_exact(&mut status).await {
        socks5::reply(&mut inbound, Reply::Failed(ReplyCode::GeneralFailure)).await?;
        return Err(ConnError::NoStatus { target, source });
    }
    if status[0] != STATUS_CONNECTED {
        let code = ReplyCode::from_u8(status[0]).unwrap_or(ReplyCode::GeneralFailure);
        socks5::reply(&mut inbound, Reply::Failed(code)).await?;
        return Err(ConnError::ServerRefused {
            target,
            code: status[0],
        });
    }

    socks5::reply(&mut inbound, Reply::Succeeded(upstream.local_addr()?)).await?;
    relay_streams(inbound, upstream, &opts.relay)
        .await
        .map_err(|source| ConnError::Relay { target, source })?;
    Ok(())
}

async fn server_conn(mut inbound: TcpStream, opts: Arc<ServerOptions>) -> Result<(), ConnError> {
    let target = TargetAddr::read_from(&mut inbound).await?;
    let upstream = match connect(&target).await {
        Ok(s) => s,
        Err((code, err)) => {
            // Best effort: the client may be gone, and `err` says more.
            let _ = inbound.write_all(&[code.as_u8()]).await;
            return Err(err);
        }
    };
    inbound.write_all(&[STATUS_CONNECTED]).await?;
    relay_streams(inbound, upstream, &opts.relay)
        .await
        .map_err(|source| ConnError::Relay { target, source })?;
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
        RelayMode::Splice => splice::relay(a, b, opts.buffer_size).await,
        RelayMode::Reuse | RelayMode::Copy | RelayMode::Pooled => relay(a, b, opts).await,
    }
}

/// Connects to `target`, trying each resolved address in turn; on failure
/// returns the SOCKS5 code to report with the error to log.
async fn connect(target: &TargetAddr) -> Result<TcpStream, (ReplyCode, ConnError)> {
    let addrs: Vec<SocketAddr> = match target {
        TargetAddr::Ip(sa) => vec![*sa],
        TargetAddr::Domain(name, port) => {
            match tokio::net::lookup_host((name.as_str(), *port)).await {
                Ok(addrs) => addrs.collect(),
                Err(source) => {
                    let err = ConnError::Resolve {
                        target: target.clone(),
                        source,
                    };
                    return Err((ReplyCode::HostUnreachable, err));
                }
            }
        }
    };
    let mut last = io::Error::new(
        io::ErrorKind::HostUnreachable,
        "name resolved to no address",
    );
    for sa in addrs {
        match TcpStream::connect(sa).await {
            Ok(s) => {
                if let Err(e) = s.set_nodelay(true) {
                    last = e;
                    continue;
                }
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    let code = ReplyCode::from_connect_error(&last);
    let err = ConnError::ConnectTarget {
        target: target.clone(),
        source: last,
    };
    Err((code, err))
}
