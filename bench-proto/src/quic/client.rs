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
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use quinn::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Handshake, Link, QuicStream};
use crate::addr::TargetAddr;
use crate::outbound::{self, Opened, Outbound, SocksReply};
use crate::relay::RelayOptions;
use crate::udp_frag::Inboxes;

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

/// A QUIC protocol whose client carries UDP sessions in datagrams that it
/// fragments itself, one inbox per session (Hysteria 1 and 2).
pub trait DatagramClient: Handshake<Error: From<super::Error>> {
    /// The sessions' inboxes, by session id, filled from the connection's
    /// datagrams.
    fn sessions(&self) -> &Inboxes<u32>;

    /// Whether the server relays UDP on `live` (besides taking datagrams).
    fn relays_udp(live: &Self::Live) -> bool;

    /// Splits `payload` to `target` into the protocol's datagrams of at
    /// most `max_datagram` bytes, all with the packet id `packet_id`.
    fn fragment(
        session_id: u32,
        packet_id: u16,
        target: &TargetAddr,
        payload: &[u8],
        max_datagram: usize,
    ) -> Result<Vec<Bytes>, Self::Error>;
}

/// One UDP session of a [`DatagramClient`] through the server: packets to
/// any target, answers from any source. Holds `K` as long as it lives
/// (Hysteria v1: the stream whose closing ends the session on the server).
/// Dropping it forgets it here.
pub struct UdpSession<P: DatagramClient, K> {
    client: Client<P>,
    session_id: u32,
    rx: mpsc::Receiver<(TargetAddr, Bytes)>,
    next_packet: AtomicU16,
    _keep: K,
}

impl<P: DatagramClient, K> UdpSession<P, K> {
    /// The session `session_id` of `client`, whose answers arrive on `rx`.
    pub fn new(
        client: Client<P>,
        session_id: u32,
        rx: mpsc::Receiver<(TargetAddr, Bytes)>,
        keep: K,
    ) -> UdpSession<P, K> {
        UdpSession {
            client,
            session_id,
            rx,
            next_packet: AtomicU16::new(0),
            _keep: keep,
        }
    }

    /// The session id.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// Sends one UDP packet (at most 65535 bytes) to `target`, fragmented
    /// to fit the connection's datagrams.
    pub async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), P::Error> {
        let live = self.client.link().live().await?;
        if !P::relays_udp(&live) {
            return Err(super::Error::UdpUnsupported.into());
        }
        let conn = P::connection(&live);
        let max = conn
            .max_datagram_size()
            .ok_or(super::Error::UdpUnsupported)?;
        let id = self.next_packet.fetch_add(1, Ordering::Relaxed);
        for d in P::fragment(self.session_id, id, target, payload, max)? {
            // Waits for room instead of dropping the oldest datagram, so a
            // burst is paced rather than truncated.
            conn.send_datagram_wait(d)
                .await
                .map_err(super::Error::Datagram)?;
        }
        Ok(())
    }

    /// The next packet that came back, with its source.
    pub async fn recv_from(&mut self) -> Result<(Bytes, TargetAddr), P::Error> {
        match self.rx.recv().await {
            Some((from, data)) => Ok((data, from)),
            None => Err(super::Error::SessionClosed.into()),
        }
    }
}

impl<P: DatagramClient, K> Drop for UdpSession<P, K> {
    fn drop(&mut self) {
        self.client.protocol().sessions().close(self.session_id);
    }
}
