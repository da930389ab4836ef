//! The bidirectional byte pump every protocol uses once its stream is up.
//!
//! Both directions run in the task that calls [`relay`], each as a [`Pump`]
//! with its own buffer, reused for every read. When one side reads EOF, the
//! other side's write half is shut down and the opposite direction keeps
//! running, so half-closed conversations (send a request, shut down, read the
//! answer) work through the chain.
//!
//! The copy loop is [`Pump::pump`], a named function that is never inlined, so
//! that it shows up by name (`bench_proto::relay::Pump::pump`) in CPU flame
//! graphs.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::settings::{parse_in_range, SettingError};

/// Default size of each direction's buffer.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;
/// Largest buffer a setting may ask for; a guard against a typo allocating
/// gigabytes per connection.
pub const MAX_BUFFER_SIZE: usize = 64 * 1024 * 1024;

/// How [`relay`] moves bytes.
///
/// Built from [`Default`] and changed field by field or with
/// [`RelayOptions::set`]; it is `non_exhaustive` so that options added later
/// (the relay mode) break no caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Bytes per read, the size of each direction's buffer.
    pub buffer_size: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

impl RelayOptions {
    /// The keys [`RelayOptions::set`] accepts, without the `relay.` prefix.
    pub const KEYS: &'static [&'static str] = &["buffer_size"];

    /// Sets one option from its key (without the `relay.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("relay.{key}");
        match key {
            "buffer_size" => {
                self.buffer_size =
                    parse_in_range(&full_key, value, 1, MAX_BUFFER_SIZE, DEFAULT_BUFFER_SIZE)?;
                Ok(())
            }
            _ => Err(SettingError::UnknownKey {
                key: full_key,
                known: Self::KEYS.iter().map(|k| format!("relay.{k}")).collect(),
            }),
        }
    }
}

/// Bytes moved by [`relay`], per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes read from `a` and written to `b`.
    pub a_to_b: u64,
    /// Bytes read from `b` and written to `a`.
    pub b_to_a: u64,
}

/// Copies `a` to `b` and `b` to `a` concurrently until both directions have
/// reached EOF, shutting down the write half of the side opposite an EOF.
///
/// Returns the first I/O error of either direction; the streams are dropped
/// (closed) then.
pub async fn relay<A, B>(mut a: A, mut b: B, opts: &RelayOptions) -> io::Result<RelayStats>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut a_to_b = Pump::new(opts.buffer_size);
    let mut b_to_a = Pump::new(opts.buffer_size);
    // Both directions are polled from this one future rather than from two
    // tasks over split halves: no lock, no Arc, no cross-task wakeups.
    poll_fn(|cx| {
        let up = a_to_b.pump(cx, Pin::new(&mut a), Pin::new(&mut b))?;
        let down = b_to_a.pump(cx, Pin::new(&mut b), Pin::new(&mut a))?;
        match (up, down) {
            (Poll::Ready(a_to_b), Poll::Ready(b_to_a)) => {
                Poll::Ready(Ok(RelayStats { a_to_b, b_to_a }))
            }
            _ => Poll::Pending,
        }
    })
    .await
}

/// One direction of a relay: reads into its buffer, writes it all out, and
/// again, until EOF; then shuts down the writer.
#[derive(Debug)]
pub struct Pump {
    buf: Box<[u8]>,
    /// Bytes `buf[pos..end]` have been read and not yet written.
    pos: usize,
    end: usize,
    read_eof: bool,
    /// Something was written since the last flush.
    unflushed: bool,
    done: bool,
    moved: u64,
}

impl Pump {
    /// A pump with a buffer of `buffer_size` bytes (at least 1).
    pub fn new(buffer_size: usize) -> Pump {
        Pump {
            buf: vec![0u8; buffer_size.max(1)].into_boxed_slice(),
            pos: 0,
            end: 0,
            read_eof: false,
            unflushed: false,
            done: false,
            moved: 0,
        }
    }

    /// Bytes written so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// Moves bytes from `r` to `w` until either would block (`Pending`) or
    /// `r` is at EOF and `w` is shut down (`Ready` with the bytes moved).
    /// Once done it keeps returning `Ready` with the same count.
    #[inline(never)]
    pub fn pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.moved));
            }
            if self.pos == self.end && !self.read_eof {
                let mut rb = ReadBuf::new(&mut self.buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.read_eof = true;
                        } else {
                            self.pos = 0;
                            self.end = n;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing more to read for now: push out what a
                        // buffering writer still holds before sleeping.
                        if self.unflushed {
                            ready!(w.as_mut().poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.end {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.moved += n as u64;
                self.unflushed = true;
            }
            if self.read_eof {
                match ready!(w.as_mut().poll_shutdown(cx)) {
                    // The peer may have closed already; then there is no
                    // write half left to shut down, which is what we wanted.
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                self.unflushed = false;
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close() {
        // outside_a <-> a ==relay== b <-> outside_b; the pipes hold all the
        // data, so the test can write everything before reading.
        let (mut outside_a, a) = duplex(64 * 1024);
        let (mut outside_b, b) = duplex(64 * 1024);
        let opts = RelayOptions {
            buffer_size: 7, // odd and small: many partial reads
        };
        let relay = tokio::spawn(async move { relay(a, b, &opts).await });

        let up: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        outside_a.write_all(&up).await.unwrap();
        outside_a.shutdown().await.unwrap();
        // a's EOF reaches b as EOF...
        let mut got_up = Vec::new();
        outside_b.read_to_end(&mut got_up).await.unwrap();
        assert_eq!(got_up, up);
        // ...while b -> a still runs.
        let down = b"answer after the half-close".repeat(100);
        outside_b.write_all(&down).await.unwrap();
        outside_b.shutdown().await.unwrap();
        let mut got_down = Vec::new();
        outside_a.read_to_end(&mut got_down).await.unwrap();
        assert_eq!(got_down, down);

        let stats = relay.await.unwrap().unwrap();
        assert_eq!(
            stats,
            RelayStats {
                a_to_b: up.len() as u64,
                b_to_a: down.len() as u64
            }
        );
    }

    #[tokio::test]
    async fn empty_streams() {
        let (outside_a, a) = duplex(16);
        let (outside_b, b) = duplex(16);
        drop((outside_a, outside_b));
        let stats = relay(a, b, &RelayOptions::default()).await.unwrap();
        assert_eq!(stats, RelayStats::default());
    }

    #[test]
    fn settings() {
        let mut o = RelayOptions::default();
        assert_eq!(o.buffer_size, 64 * 1024);
        o.set("buffer_size", "4096").unwrap();
        assert_eq!(o.buffer_size, 4096);
        for bad in ["0", "abc", "-1", "67108865"] {
            let err = o.set("buffer_size", bad).unwrap_err();
            assert!(
                err.to_string().contains("relay.buffer_size"),
                "{bad}: {err}"
            );
        }
        assert_eq!(o.buffer_size, 4096);
        let err = o.set("nope", "1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown setting `relay.nope`; use one of: relay.buffer_size"
        );
    }
}
