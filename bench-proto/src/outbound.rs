//! The client side's one shape: SOCKS5 CONNECT in, one outbound stream per
//! connection out, relayed until both sides close.
//!
//! A protocol's client is an [`Outbound`]: how to open a stream to a target
//! through its server, and (if not the plain [`relay`]) how to relay over it.
//! [`run_client`] does the rest for every protocol alike: the SOCKS5
//! handshake, the reply (failures mapped by [`SocksReply`]), the relay and
//! the log line of a failed connection. Everything is generic, so each
//! protocol's client loop is monomorphised code, not calls through `dyn`
//! (these endpoints are what gets profiled).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::addr::TargetAddr;
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;
use crate::socks5::{self, Reply, ReplyCode, Socks5Error};

/// The one way an error becomes a SOCKS5 reply: every outbound error says
/// which failure code tells the SOCKS5 client best why its CONNECT failed.
pub trait SocksReply {
    /// The reply code for this failure.
    fn reply_code(&self) -> ReplyCode;
}

/// A stream through the server, as [`Outbound::open`] hands it over.
pub struct Opened<S> {
    /// The stream, carrying the proxied bytes from here on.
    pub stream: S,
    /// The address to report in the SOCKS5 reply (`BND.ADDR`).
    pub bound: SocketAddr,
}

/// A protocol's client: opens one stream per proxied connection.
pub trait Outbound: Clone + Send + Sync + 'static {
    /// The stream to the server.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send;
    /// Why a stream could not be opened.
    type Error: std::error::Error + SocksReply + Send + 'static;

    /// The log prefix, e.g. `tuic client`.
    const NAME: &'static str;

    /// Opens a stream to `target` through the server for a SOCKS5 client
    /// connected from `origin`.
    fn open(
        &self,
        target: &TargetAddr,
        origin: SocketAddr,
    ) -> impl Future<Output = Result<Opened<Self::Stream>, Self::Error>> + Send;

    /// How to relay once the stream is up.
    fn relay_options(&self) -> &RelayOptions;

    /// Relays between the SOCKS5 client and the stream until both sides
    /// have closed. The plain [`relay`] unless a protocol needs more (an
    /// abort code for its stream, `splice`).
    fn relay(
        &self,
        inbound: TcpStream,
        stream: Self::Stream,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            relay(inbound, stream, self.relay_options()).await?;
            Ok(())
        }
    }
}

/// Why one proxied connection failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError<E> {
    /// The SOCKS5 handshake failed.
    #[error(transparent)]
    Socks5(#[from] Socks5Error),
    /// No stream to the target.
    #[error(transparent)]
    Open(E),
    /// Relaying failed.
    #[error("relaying for {target}: {source}")]
    Relay {
        /// The target.
        target: TargetAddr,
        /// Why.
        source: io::Error,
    },
    /// Answering the SOCKS5 client failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serves the client side on `listener` forever: SOCKS5 CONNECT in, one
/// stream of `outbound` out per connection. Returns only if the listener
/// fails for good.
pub async fn run_client<O: Outbound>(listener: TcpListener, outbound: O) -> io::Result<()> {
    serve(listener, O::NAME, move |stream| {
        client_conn(outbound.clone(), stream)
    })
    .await
}

/// One SOCKS5 connection: handshake, stream, reply, relay.
pub async fn client_conn<O: Outbound>(
    outbound: O,
    mut inbound: TcpStream,
) -> Result<(), ClientError<O::Error>> {
    let target = socks5::accept(&mut inbound).await?;
    let origin = inbound.peer_addr()?;
    let opened = match outbound.open(&target, origin).await {
        Ok(o) => o,
        Err(e) => {
            socks5::reply(&mut inbound, Reply::Failed(e.reply_code())).await?;
            return Err(ClientError::Open(e));
        }
    };
    socks5::reply(&mut inbound, Reply::Succeeded(opened.bound)).await?;
    outbound
        .relay(inbound, opened.stream)
        .await
        .map_err(|source| ClientError::Relay { target, source })
}
