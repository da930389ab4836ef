//! The client side every QUIC protocol shares: one [`Link`] to the server,
//! a bidirectional stream per proxied connection, SOCKS5 in through
//! [`run_client`](crate::outbound::run_client).
//!
//! A protocol adds a [`StreamClient`]: its [`Handshake`], how a stream to a
//! target starts (its request header, and the server's answer if it sends
//! one) and its relay. Generic, not `dyn`: each protocol's client is
//! monomorphised code.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::Connection;
use tokio::net::{TcpListener, TcpStream};

use super::{Handshake, Link, QuicStream};
use crate::addr::TargetAddr;
use crate::outbound::{self, Opened, Outbound, SocksReply};
use crate::relay::RelayOptions;

/// A QUIC protocol's client: its connection set-up and how one stream to
/// a target starts.
pub trait StreamClient: Handshake<Error: SocksReply + std::error::Error + From<io::Error>> {
    /// The log prefix, e.g. `tuic client`.
    const NAME: &'static str;

    /// Held while a stream opens and while it relays (TUIC sends
    /// heartbeats only while something holds one).
    type InUse: Send;

    /// Marks the connection in use until the value is dropped.
    fn in_use(&self) -> Self::InUse;

    /// Starts `stream`, just opened, as a stream to `target`: writes the
    /// request header and reads the server's answer if the protocol has
    /// one.
    fn start_stream(
        &self,
        stream: &mut QuicStream,
        target: &TargetAddr,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Relays between the SOCKS5 client and `stream` until both sides have
    /// closed (on failure the stream is aborted with the protocol's code).
    /// The protocol's own function, so that its name is on the relay's
    /// stacks in flame graphs; usually [`relay_or_abort`](super::relay_or_abort).
    fn relay(
        &self,
        inbound: TcpStream,
        stream: QuicStream,
        opts: &RelayOptions,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// A QUIC protocol's client: one endpoint, at most one live connection to
/// the server, shared by every stream (and the protocol's UDP sessions).
/// Cheap to clone.
pub struct Client<P: Handshake> {
    inner: Arc<Inner<P>>,
}

struct Inner<P: Handshake> {
    link: Link<P>,
    relay: RelayOptions,
}

impl<P: Handshake> Clone for Client<P> {
    fn clone(&self) -> Self {
        Client {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: Handshake> Client<P> {
    /// A client over `link` relaying with `relay`.
    pub fn with_link(link: Link<P>, relay: RelayOptions) -> Client<P> {
        Client {
            inner: Arc::new(Inner { link, relay }),
        }
    }

    /// The connection to the server.
    pub fn link(&self) -> &Link<P> {
        &self.inner.link
    }

    /// The protocol's part.
    pub fn protocol(&self) -> &P {
        self.inner.link.handshake()
    }

    /// QUIC connections opened so far (1 while the first one lives).
    pub fn connections_opened(&self) -> u64 {
        self.inner.link.opened()
    }

    /// The local address of the QUIC endpoint.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.link.local_addr()
    }

    /// The live, authenticated connection; opens one if there is none or
    /// the last one has died.
    pub async fn connection(&self) -> Result<Connection, P::Error> {
        let live = self.inner.link.live().await?;
        Ok(P::connection(&live).clone())
    }
}

impl<P: StreamClient> Client<P> {
    /// Serves SOCKS5 on `listener` forever, each CONNECT as one stream.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        outbound::run_client(listener, self).await
    }

    /// Opens a stream to `target` through the server; it carries the
    /// proxied bytes from here on.
    pub async fn open_tcp(&self, target: &TargetAddr) -> Result<QuicStream, P::Error> {
        let (_, mut stream) = self.inner.link.open_bi().await?;
        self.protocol().start_stream(&mut stream, target).await?;
        Ok(stream)
    }
}

impl<P: StreamClient> Outbound for Client<P> {
    type Stream = QuicStream;
    type Error = P::Error;
    const NAME: &'static str = P::NAME;

    async fn open(
        &self,
        target: &TargetAddr,
        _origin: SocketAddr,
    ) -> Result<Opened<QuicStream>, P::Error> {
        let _in_use = self.protocol().in_use();
        let stream = self.open_tcp(target).await?;
        let bound = self.local_addr()?;
        Ok(Opened { stream, bound })
    }

    fn relay_options(&self) -> &RelayOptions {
        &self.inner.relay
    }

    async fn relay(&self, inbound: TcpStream, stream: QuicStream) -> io::Result<()> {
        let _in_use = self.protocol().in_use();
        self.protocol()
            .relay(inbound, stream, &self.inner.relay)
            .await
    }
}
