//! Obfuscation of every UDP packet below quinn, as the Hysteria protocols
//! do it: a random salt, then the packet XORed with a 32-byte mask hashed
//! from the key and that salt, repeated. Hysteria 2's Salamander (BLAKE2b,
//! 8-byte salt) and Hysteria v1's XPlus (SHA-256, 16-byte salt) differ only
//! in the hash and the salt length, so each is a [`SaltedMask`] and both run
//! on one [`ObfsSocket`].

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of the mask.
pub const MASK_LEN: usize = 32;
/// Longest salt a [`SaltedMask`] may use.
pub const MAX_SALT_LEN: usize = 32;

/// A packet transform: salt, then the packet XORed with `mask(salt)`.
pub trait SaltedMask: Clone + fmt::Debug + Send + Sync + 'static {
    /// Bytes of salt before each packet (at most [`MAX_SALT_LEN`]).
    const SALT_LEN: usize;

    /// The mask for `salt`, hashed with the key.
    fn mask(&self, salt: &[u8]) -> [u8; MASK_LEN];

    /// Appends `salt` (of [`SALT_LEN`](Self::SALT_LEN) bytes) and the
    /// obfuscated `packet` to `out`.
    fn obfuscate(&self, salt: &[u8], packet: &[u8], out: &mut Vec<u8>) {
        let mask = self.mask(salt);
        out.reserve(salt.len() + packet.len());
        out.extend_from_slice(salt);
        out.extend(packet.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    }

    /// Undoes [`obfuscate`](Self::obfuscate) in place: the packet ends up at
    /// the start of `buf`; returns its length, or `None` for a datagram too
    /// short to carry a salt (which must be discarded).
    fn deobfuscate(&self, buf: &mut [u8]) -> Option<usize> {
        let salt_len = Self::SALT_LEN;
        if buf.len() < salt_len {
            return None;
        }
        let mask = self.mask(&buf[..salt_len]);
        let n = buf.len() - salt_len;
        for i in 0..n {
            buf[i] = buf[i + salt_len] ^ mask[i % MASK_LEN];
        }
        Some(n)
    }
}

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
    obfs: Option<O>,
) -> io::Result<quinn::Endpoint> {
    crate::quic::endpoint(socket, server, |socket| match obfs {
        Some(obfs) => Arc::new(ObfsSocket::new(socket, obfs)),
        None => socket,
    })
}
