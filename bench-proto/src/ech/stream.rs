//! The stream both `ech` sides carry Trojan over: BoringSSL (tokio-boring)
//! on a TCP socket, bare or under a user-space buffer (`ech.io_buffer`),
//! closed so that the buffer's bytes leave before the close.
//!
//! Why a type of its own: tokio-boring's `poll_shutdown` calls
//! `SSL_shutdown` (which queues close_notify), then shuts the socket down.
//! A buffered socket's shutdown first flushes the buffer, and that can be
//! pending on a full socket. Polled again, tokio-boring calls
//! `SSL_shutdown` again; close_notify is sent by then, so BoringSSL waits
//! to *read* the peer's close_notify and returns "want read" before the
//! socket is polled. The buffer is never flushed: the peer waits for bytes
//! that never come, and this end waits for the peer's close_notify, for
//! ever (seen as a relay hanging at the end of a transfer with sing-box).
//! [`EchStream`] calls tokio-boring's shutdown once, once the buffer is
//! empty, and from then on drives only the socket.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use boring::ssl::SslRef;
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_boring::SslStream;
use tokio_util::either::Either;

/// The socket under BoringSSL: bare (`ech.io_buffer=0`) or buffered.
pub type EchSocket = Either<TcpStream, BufStream<TcpStream>>;

/// Smallest `ech.io_buffer` other than 0: a TLS 1.3 alert record (24
/// bytes) must fit into an empty buffer whole, so that queueing
/// close_notify never waits on the socket (see [`EchStream`]).
pub const MIN_IO_BUFFER: usize = 64;

/// Wraps `tcp` in the buffers BoringSSL reads and writes through; none for
/// 0. The setting refuses 1 to 63; a smaller size set in the options by
/// hand is raised to [`MIN_IO_BUFFER`], which [`EchStream`]'s close needs.
pub(super) fn buffered(tcp: TcpStream, io_buffer: usize) -> EchSocket {
    match io_buffer {
        0 => Either::Left(tcp),
        n => {
            let n = n.max(MIN_IO_BUFFER);
            Either::Right(BufStream::with_capacity(n, n, tcp))
        }
    }
}

/// A TLS stream of either side: BoringSSL over [`EchSocket`].
pub struct EchStream {
    tls: SslStream<EchSocket>,
    /// close_notify has been queued; only the socket's flush and shutdown
    /// are left.
    close_notify_queued: bool,
}

impl EchStream {
    /// The stream of a finished handshake.
    pub(super) fn new(tls: SslStream<EchSocket>) -> EchStream {
        EchStream {
            tls,
            close_notify_queued: false,
        }
    }

    /// The TLS session (ECH accepted or not, the server name, ...).
    pub fn ssl(&self) -> &SslRef {
        self.tls.ssl()
    }
}

impl std::fmt::Debug for EchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchStream")
            .field("buffered", &matches!(self.tls.get_ref(), Either::Right(_)))
            .field("close_notify_queued", &self.close_notify_queued)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for EchStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for EchStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.close_notify_queued {
            return Pin::new(this.tls.get_mut()).poll_shutdown(cx);
        }
        // What the buffer holds goes out first; then close_notify fits
        // into the empty buffer at once.
        ready!(Pin::new(&mut this.tls).poll_flush(cx))?;
        let closing = Pin::new(&mut this.tls).poll_shutdown(cx);
        // Bare, the socket's shutdown is never pending: a pending close is
        // close_notify waiting on the socket, which `SSL_shutdown` resumes.
        // Buffered, close_notify was queued whole (MIN_IO_BUFFER), so the
        // socket's flush is what is pending, and only the socket is left.
        if closing.is_pending() && matches!(this.tls.get_ref(), Either::Right(_)) {
            this.close_notify_queued = true;
        }
        closing
    }
}
