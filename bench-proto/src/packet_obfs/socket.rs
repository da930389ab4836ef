//! [`ObfsSocket`]: a [`SaltedMask`] applied below quinn.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use ring::rand::{SecureRandom, SystemRandom};

use super::{SaltedMask, MAX_SALT_LEN};

/// A UDP socket that obfuscates what quinn sends and deobfuscates what it
/// receives.
pub struct ObfsSocket<O> {
    inner: Arc<dyn AsyncUdpSocket>,
    obfs: O,
    rng: SystemRandom,
}

impl<O: SaltedMask> fmt::Debug for ObfsSocket<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObfsSocket")
            .field("inner", &self.inner)
            .field("obfs", &self.obfs)
            .finish_non_exhaustive()
    }
}

impl<O: SaltedMask> ObfsSocket<O> {
    /// Wraps a socket made by quinn's runtime (e.g.
    /// `quinn::TokioRuntime.wrap_udp_socket`).
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, obfs: O) -> ObfsSocket<O> {
        ObfsSocket {
            inner,
            obfs,
            rng: SystemRandom::new(),
        }
    }
}

impl<O: SaltedMask> AsyncUdpSocket for ObfsSocket<O> {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // max_transmit_segments is 1, but split anyway should quinn ever
        // hand over a GSO batch: every datagram needs its own salt.
        let seg = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut buf = Vec::with_capacity(O::SALT_LEN + seg);
        let mut salt = [0u8; MAX_SALT_LEN];
        let salt = &mut salt[..O::SALT_LEN];
        for packet in transmit.contents.chunks(seg) {
            self.rng
                .fill(salt)
                .map_err(|_| io::Error::other("system random number generator failed"))?;
            buf.clear();
            self.obfs.obfuscate(salt, packet, &mut buf);
            self.inner.try_send(&Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: &buf,
                segment_size: None,
                src_ip: transmit.src_ip,
            })?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        for (buf, m) in bufs.iter_mut().zip(meta.iter_mut()).take(n) {
            // A GRO batch holds datagrams of `stride` bytes (the last may be
            // shorter); each loses its salt, so the batch is compacted to a
            // stride of `stride - SALT_LEN`.
            let stride = m.stride.max(1);
            let new_stride = stride.saturating_sub(O::SALT_LEN);
            let mut out = 0;
            let mut at = 0;
            while at < m.len {
                let end = (at + stride).min(m.len);
                if let Some(k) = self.obfs.deobfuscate(&mut buf[at..end]) {
                    buf.copy_within(at..at + k, out);
                    out += k;
                }
                // A short datagram can only be the last one: dropped.
                at = end;
            }
            m.len = out;
            m.stride = new_stride.max(1);
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// A quinn endpoint on `socket` (see [`quic::endpoint`](crate::quic::endpoint)),
/// obfuscated with `obfs` if given.
pub fn endpoint<O: SaltedMask>(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    udp_buffer: usize,
    obfs: Option<O>,
) -> io::Result<quinn::Endpoint> {
    crate::quic::endpoint(socket, server, udp_buffer, |socket| match obfs {
        Some(obfs) => Arc::new(ObfsSocket::new(socket, obfs)),
        None => socket,
    })
}
