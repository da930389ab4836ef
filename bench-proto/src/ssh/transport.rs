//! The TCP stream under an SSH connection, on both sides.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes the read-ahead task asks the kernel for per read.
const READ_AHEAD_CHUNK: usize = 64 * 1024;

/// The TCP stream under an SSH connection, read by its own task as fast as
/// data arrives.
///
/// russh's session loop stops reading while it writes out what it has
/// queued (and while a channel's queue is full). When both ends of a
/// connection do that at once with their socket buffers full, each waits
/// for the other to read: with a few dozen busy channels both ways this
/// deadlocks on loopback within seconds. Reading ahead breaks the cycle.
/// What is read ahead is bounded by SSH flow control: the peer may send no
/// more channel data than the windows this side granted.
pub(super) struct ReadAhead {
    chunks: mpsc::UnboundedReceiver<io::Result<Bytes>>,
    current: Bytes,
    eof: bool,
    write: OwnedWriteHalf,
    reader: JoinHandle<()>,
}

impl ReadAhead {
    pub(super) fn new(stream: TcpStream) -> ReadAhead {
        let (mut read, write) = stream.into_split();
        let (tx, chunks) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_AHEAD_CHUNK);
            loop {
                // Reuses the allocation once the chunks split off it have
                // been consumed.
                buf.reserve(READ_AHEAD_CHUNK);
                match read.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.send(Ok(buf.split().freeze())).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        ReadAhead {
            chunks,
            current: Bytes::new(),
            eof: false,
            write,
            reader,
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // The task holds the read half: end it so that the socket closes.
        self.reader.abort();
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.eof = true;
                    return Poll::Ready(Err(e));
                }
                // The task ended: EOF.
                None => self.eof = true,
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.write.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}
