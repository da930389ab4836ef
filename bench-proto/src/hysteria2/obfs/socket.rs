//! [`SalamanderSocket`]: Salamander below quinn.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use ring::rand::{SecureRandom, SystemRandom};

use super::{Salamander, SALT_LEN};

/// A UDP socket that obfuscates what quinn sends and deobfuscates what it
/// receives.
pub struct SalamanderSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    obfs: Salamander,
    rng: SystemRandom,
}

impl fmt::Debug for SalamanderSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalamanderSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl SalamanderSocket {
    /// Wraps a socket made by quinn's runtime (e.g.
    /// `quinn::TokioRuntime.wrap_udp_socket`).
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, obfs: Salamander) -> SalamanderSocket {
        SalamanderSocket {
            inner,
            obfs,
            rng: SystemRandom::new(),
        }
    }
}

impl AsyncUdpSocket for SalamanderSocket {
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
        let mut buf = Vec::with_capacity(SALT_LEN + seg);
        for packet in transmit.contents.chunks(seg) {
            let mut salt = [0u8; SALT_LEN];
            self.rng
                .fill(&mut salt)
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
            let new_stride = stride.saturating_sub(SALT_LEN);
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
