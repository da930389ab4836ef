//! Relay mode `splice`: bytes go socket → pipe → socket with `splice(2)`
//! and never through user space. Only for two plain [`TcpStream`]s (protocol
//! `tcp`, both sides); every other protocol has user-space framing or
//! encryption in the way.
//!
//! Each direction has its own pipe and runs as a [`SplicePump`], driven by
//! tokio's readiness: a splice that would block (`EAGAIN`, with
//! `SPLICE_F_NONBLOCK`) clears the socket's readiness through
//! [`TcpStream::try_io`] and the pump waits for the next event. Half-close
//! works as in [`crate::relay`](mod@crate::relay): EOF on one side shuts down the other side's
//! write half and the opposite direction keeps running.
//!
//! The loop is [`SplicePump::pump`], never inlined, so it shows up by name
//! (`bench_proto::splice::SplicePump::pump`) in flame graphs.
//!
//! Writing into a socket whose peer has gone raises SIGPIPE here (splice
//! sends no `MSG_NOSIGNAL`); Rust programs ignore SIGPIPE, so it is an
//! `EPIPE` error like any other.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::ptr;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

use crate::relay::{both_directions, RelayStats};

/// Copies `a` to `b` and `b` to `a` with `splice(2)` until both directions
/// have reached EOF, as [`crate::relay::relay`] does with buffers. Each
/// direction's pipe is asked to hold `buffer_size` bytes (the kernel rounds
/// up to a power of two pages, and may refuse sizes above
/// `/proc/sys/fs/pipe-max-size`; the default size is kept then).
pub async fn relay(
    mut a: TcpStream,
    mut b: TcpStream,
    buffer_size: usize,
) -> io::Result<RelayStats> {
    let mut a_to_b = SplicePump::new(buffer_size)?;
    let mut b_to_a = SplicePump::new(buffer_size)?;
    let (up, down) = both_directions(|cx| {
        Ok((
            a_to_b.pump(cx, &mut a, &mut b)?,
            b_to_a.pump(cx, &mut b, &mut a)?,
        ))
    })
    .await?;
    Ok(RelayStats {
        a_to_b: up,
        b_to_a: down,
        reads: 0,
        buffers_allocated: 0,
        splices: a_to_b.splices + b_to_a.splices,
    })
}

/// One direction: splices from the reader into its pipe while the pipe is
/// empty, then from the pipe into the writer until it is empty again.
#[derive(Debug)]
pub struct SplicePump {
    /// Both ends close when the pump is dropped, on every path.
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
    /// What one splice into the pipe may ask for.
    pipe_size: usize,
    /// Bytes in the pipe, spliced in and not yet out.
    in_pipe: usize,
    read_eof: bool,
    done: bool,
    moved: u64,
    splices: u64,
}

impl SplicePump {
    /// A pump with a new pipe of about `buffer_size` bytes.
    pub fn new(buffer_size: usize) -> io::Result<SplicePump> {
        let (reader, writer) = io::pipe()?;
        let (pipe_r, pipe_w) = (OwnedFd::from(reader), OwnedFd::from(writer));
        let pipe_size = set_pipe_size(pipe_w.as_fd(), buffer_size)?;
        Ok(SplicePump {
            pipe_r,
            pipe_w,
            pipe_size,
            in_pipe: 0,
            read_eof: false,
            done: false,
            moved: 0,
            splices: 0,
        })
    }

    /// Bytes written so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// Splice calls that moved bytes so far.
    pub fn splices(&self) -> u64 {
        self.splices
    }

    /// Moves bytes from `r` to `w` until either would block (`Pending`) or
    /// `r` is at EOF and `w` is shut down (`Ready` with the bytes moved).
    #[inline(never)]
    pub fn pump(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut TcpStream,
        w: &mut TcpStream,
    ) -> Poll<io::Result<u64>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.moved));
            }
            // Fill only an empty pipe: a pipe counts pages, not bytes, so a
            // partly filled one can refuse more with EAGAIN, which would be
            // taken for "socket empty" and wait for an event that never
            // comes.
            if self.in_pipe == 0 && !self.read_eof {
                ready!(r.poll_read_ready(cx))?;
                let (from, to, len) = (r.as_fd(), self.pipe_w.as_fd(), self.pipe_size);
                match r.try_io(Interest::READABLE, || splice(from, to, len)) {
                    Ok(0) => self.read_eof = true,
                    Ok(n) => {
                        self.in_pipe = n;
                        self.splices += 1;
                    }
                    // Readiness is cleared; polling again registers the waker.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            while self.in_pipe > 0 {
                ready!(w.poll_write_ready(cx))?;
                let (from, to, len) = (self.pipe_r.as_fd(), w.as_fd(), self.in_pipe);
                match w.try_io(Interest::WRITABLE, || splice(from, to, len)) {
                    // Partial splices are normal: the rest stays in the pipe.
                    Ok(n) if n > 0 => {
                        self.in_pipe -= n;
                        self.moved += n as u64;
                        self.splices += 1;
                    }
                    Ok(_) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if self.read_eof {
                match ready!(Pin::new(&mut *w).poll_shutdown(cx)) {
                    // The peer may have closed already, as in the generic pump.
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                self.done = true;
            }
        }
    }
}

/// Asks for a pipe of `size` bytes; returns the size the pipe has.
fn set_pipe_size(pipe: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pipe` is an open pipe descriptor for the whole call; these
    // fcntl commands take an int argument and touch no memory of ours.
    let got = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    if got >= 0 {
        return Ok(got as usize);
    }
    // EPERM above the unprivileged limit: keep what the pipe has.
    // SAFETY: as above.
    let got = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if got > 0 {
        Ok(got as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One non-blocking `splice(2)` of at most `len` bytes; 0 means EOF when
/// `from` is a socket.
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the whole call (borrowed), the
    // null offsets tell the kernel to use (and for pipes, require) none, and
    // no memory of ours is read or written.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            ptr::null_mut(),
            to.as_raw_fd(),
            ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
