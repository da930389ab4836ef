//! The bidirectional byte pump every protocol uses once its stream is up.
//!
//! Both directions run in the task that calls [`relay`], each as a [`Pump`].
//! When one side reads EOF, the other side's write half is shut down and the
//! opposite direction keeps running, so half-closed conversations (send a
//! request, shut down, read the answer) work through the chain.
//!
//! Where a pump's buffer comes from is the relay mode ([`RelayMode`]):
//! `reuse` (one buffer per direction for the whole connection, the default),
//! `copy` (a fresh `Vec` per read, the naive variant a profiler should flag)
//! or `pooled` (taken from the endpoint's [`BufferPool`] for each read and
//! given back after the write). The fourth mode, `splice`, needs two plain
//! `TcpStream`s and lives in [`crate::splice`]; [`relay`] refuses it.
//!
//! The copy loop is [`Pump::pump`], a named function that is never inlined, so
//! that it shows up by name (`bench_proto::relay::Pump::pump`) in CPU flame
//! graphs; so do the per-read allocation of `copy` (`Pump::fresh_buffer`)
//! and the pool's `take` and `put`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::buffer_pool::BufferPool;
use crate::leak_fault::LeakFault;
use crate::settings::{parse_in_range, SettingError};

/// Default size of each direction's buffer.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;
/// Largest buffer a setting may ask for; a guard against a typo allocating
/// gigabytes per connection.
pub const MAX_BUFFER_SIZE: usize = 64 * 1024 * 1024;

/// How a relay gets the memory it moves bytes through (`relay.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayMode {
    /// One buffer per direction, allocated at the first read and reused for
    /// every read of the connection.
    #[default]
    Reuse,
    /// A fresh heap buffer for every read, dropped after its write: one
    /// allocation per read, on purpose.
    Copy,
    /// A buffer from the endpoint's bounded pool for every read, returned
    /// after the write (and whenever the pump waits for input): no
    /// allocation in steady state and no memory held by idle connections.
    Pooled,
    /// `splice(2)` socket → pipe → socket, no user-space copy; protocol
    /// `tcp` only (see [`crate::splice`]).
    Splice,
}

impl RelayMode {
    /// Every mode, as written in `relay.mode=NAME`.
    pub const NAMES: &'static [&'static str] = &["reuse", "copy", "pooled", "splice"];

    /// The name of the mode in settings.
    pub fn name(self) -> &'static str {
        match self {
            RelayMode::Reuse => "reuse",
            RelayMode::Copy => "copy",
            RelayMode::Pooled => "pooled",
            RelayMode::Splice => "splice",
        }
    }
}

impl fmt::Display for RelayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RelayMode {
    type Err = SettingError;

    fn from_str(value: &str) -> Result<Self, SettingError> {
        match value {
            "reuse" => Ok(RelayMode::Reuse),
            "copy" => Ok(RelayMode::Copy),
            "pooled" => Ok(RelayMode::Pooled),
            "splice" => Ok(RelayMode::Splice),
            _ => Err(SettingError::BadValue {
                key: "relay.mode".into(),
                value: value.to_owned(),
                expected: format!("one of {}", RelayMode::NAMES.join(", ")),
            }),
        }
    }
}

/// How [`relay`] moves bytes.
///
/// Built from [`Default`] and changed field by field or with
/// [`RelayOptions::set`]; it is `non_exhaustive` so that options added later
/// break no caller. Clones share one [`BufferPool`], so the connections of
/// an endpoint (which clone its options) share it in mode `pooled`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Bytes per read, the size of each buffer (and of a splice pipe).
    pub buffer_size: usize,
    /// Where buffers come from, or splice.
    pub mode: RelayMode,
    /// The buffers of mode `pooled`; unused by the other modes.
    pub pool: Arc<BufferPool>,
    /// A leak injected on purpose per connection (a test aid; `none`).
    pub leak: LeakFault,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            buffer_size: DEFAULT_BUFFER_SIZE,
            mode: RelayMode::default(),
            pool: Arc::default(),
            leak: LeakFault::None,
        }
    }
}

// By hand: the pool is shared state, not an option to compare.
impl PartialEq for RelayOptions {
    fn eq(&self, other: &Self) -> bool {
        (self.buffer_size, self.mode, self.leak) == (other.buffer_size, other.mode, other.leak)
    }
}

impl Eq for RelayOptions {}

impl RelayOptions {
    /// The keys [`RelayOptions::set`] accepts, without the `relay.` prefix.
    pub const KEYS: &'static [&'static str] = &["buffer_size", "mode", "leak"];

    /// Sets one option from its key (without the `relay.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("relay.{key}");
        match key {
            "buffer_size" => {
                self.buffer_size =
                    parse_in_range(&full_key, value, 1, MAX_BUFFER_SIZE, DEFAULT_BUFFER_SIZE)?;
                Ok(())
            }
            "mode" => {
                self.mode = value.parse()?;
                Ok(())
            }
            "leak" => {
                self.leak = value.parse()?;
                Ok(())
            }
            _ => Err(SettingError::UnknownKey {
                key: full_key,
                known: Self::KEYS.iter().map(|k| format!("relay.{k}")).collect(),
            }),
        }
    }

    /// Refuses the modes that [`relay`] cannot run, for the start-up of an
    /// endpoint of `protocol` (anything but `tcp`).
    pub fn check_generic(&self, protocol: &str) -> Result<(), SettingError> {
        if self.mode != RelayMode::Splice {
            return Ok(());
        }
        Err(SettingError::BadValue {
            key: "relay.mode".into(),
            value: self.mode.to_string(),
            expected: format!(
                "reuse, copy or pooled: splice is only for protocol tcp, not {protocol}"
            ),
        })
    }
}

/// What a relay did: bytes per direction, and how it moved them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes read from `a` and written to `b`.
    pub a_to_b: u64,
    /// Bytes read from `b` and written to `a`.
    pub b_to_a: u64,
    /// Reads into user-space buffers, both directions, the EOF reads
    /// included; 0 in mode `splice`.
    pub reads: u64,
    /// Buffers this relay allocated, both directions (pool hits are not
    /// allocations).
    pub buffers_allocated: u64,
    /// `splice(2)` calls that moved bytes, both directions (mode `splice`).
    pub splices: u64,
}

/// Copies `a` to `b` and `b` to `a` concurrently until both directions have
/// reached EOF, shutting down the write half of the side opposite an EOF.
///
/// Runs modes `reuse`, `copy` and `pooled`; mode `splice` is refused with
/// [`io::ErrorKind::Unsupported`] (see [`crate::splice::relay`]).
///
/// Returns the first I/O error of either direction; the streams are dropped
/// (closed) then.
pub async fn relay<A, B>(mut a: A, mut b: B, opts: &RelayOptions) -> io::Result<RelayStats>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    opts.leak.keep_for_connection();
    let buffers = match opts.mode {
        RelayMode::Reuse => Buffers::Reuse,
        RelayMode::Copy => Buffers::Copy,
        RelayMode::Pooled => Buffers::Pooled(Arc::clone(&opts.pool)),
        RelayMode::Splice => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "relay.mode=splice needs two TCP sockets (protocol tcp)",
            ))
        }
    };
    let mut a_to_b = Pump::with_buffers(opts.buffer_size, buffers.clone());
    let mut b_to_a = Pump::with_buffers(opts.buffer_size, buffers);
    let (up, down) = both_directions(|cx| {
        Ok((
            a_to_b.pump(cx, Pin::new(&mut a), Pin::new(&mut b))?,
            b_to_a.pump(cx, Pin::new(&mut b), Pin::new(&mut a))?,
        ))
    })
    .await?;
    Ok(RelayStats {
        a_to_b: up,
        b_to_a: down,
        reads: a_to_b.reads + b_to_a.reads,
        buffers_allocated: a_to_b.allocated + b_to_a.allocated,
        splices: 0,
    })
}

/// Runs `step`, which polls both directions of a relay, until both are
/// done; returns their byte counts, or the first error.
///
/// Both directions are polled from this one future rather than from two
/// tasks over split halves: no lock, no Arc, no cross-task wakeups.
pub(crate) async fn both_directions<F>(mut step: F) -> io::Result<(u64, u64)>
where
    F: FnMut(&mut Context<'_>) -> io::Result<(Poll<u64>, Poll<u64>)>,
{
    poll_fn(|cx| match step(cx)? {
        (Poll::Ready(up), Poll::Ready(down)) => Poll::Ready(Ok((up, down))),
        _ => Poll::Pending,
    })
    .await
}

/// Where a [`Pump`] gets its buffer before a read and what it does with it
/// after the write; see [`RelayMode`].
#[derive(Debug, Clone)]
pub enum Buffers {
    /// Keep the first buffer for good.
    Reuse,
    /// A new buffer per read, dropped after its write.
    Copy,
    /// Take from the pool per read, give back after the write.
    Pooled(Arc<BufferPool>),
}

/// One direction of a relay: reads into its buffer, writes it all out, and
/// again, until EOF; then shuts down the writer.
#[derive(Debug)]
pub struct Pump {
    /// Empty while the pump holds no buffer (modes `copy` and `pooled`
    /// between reads); an empty `Vec` does not allocate.
    buf: Vec<u8>,
    buffer_size: usize,
    buffers: Buffers,
    /// Bytes `buf[pos..end]` have been read and not yet written.
    pos: usize,
    end: usize,
    read_eof: bool,
    /// Something was written since the last flush.
    unflushed: bool,
    done: bool,
    moved: u64,
    reads: u64,
    allocated: u64,
}

impl Pump {
    /// A pump in mode `reuse` with a buffer of `buffer_size` bytes (at
    /// least 1).
    pub fn new(buffer_size: usize) -> Pump {
        Pump::with_buffers(buffer_size, Buffers::Reuse)
    }

    /// A pump whose `buffer_size`-byte buffers (at least 1) come from
    /// `buffers`.
    pub fn with_buffers(buffer_size: usize, buffers: Buffers) -> Pump {
        Pump {
            buf: Vec::new(),
            buffer_size: buffer_size.max(1),
            buffers,
            pos: 0,
            end: 0,
            read_eof: false,
            unflushed: false,
            done: false,
            moved: 0,
            reads: 0,
            allocated: 0,
        }
    }

    /// Bytes written so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// Reads done so far, the EOF read included.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Buffers allocated so far.
    pub fn buffers_allocated(&self) -> u64 {
        self.allocated
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
                self.acquire();
                let mut rb = ReadBuf::new(&mut self.buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        self.reads += 1;
                        if n == 0 {
                            self.read_eof = true;
                        } else {
                            self.pos = 0;
                            self.end = n;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // An idle pump holds no pooled buffer.
                        if matches!(self.buffers, Buffers::Pooled(_)) {
                            self.release();
                        }
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
            // Everything read is written: the buffer is free again.
            (self.pos, self.end) = (0, 0);
            self.release();
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

    /// Makes sure the pump holds a buffer to read into.
    fn acquire(&mut self) {
        if !self.buf.is_empty() {
            return;
        }
        self.buf = match &self.buffers {
            Buffers::Pooled(pool) => match pool.take(self.buffer_size) {
                Some(buf) => buf,
                None => self.fresh_buffer(),
            },
            Buffers::Reuse | Buffers::Copy => self.fresh_buffer(),
        };
    }

    /// A new zeroed buffer. Its own never-inlined function so that mode
    /// `copy`'s allocation per read shows up by name in flame graphs.
    #[inline(never)]
    fn fresh_buffer(&mut self) -> Vec<u8> {
        self.allocated += 1;
        vec![0u8; self.buffer_size]
    }

    /// Lets go of the buffer after a write, as the mode says.
    fn release(&mut self) {
        match &self.buffers {
            Buffers::Reuse => {}
            Buffers::Copy => self.buf = Vec::new(),
            Buffers::Pooled(pool) => {
                if !self.buf.is_empty() {
                    pool.put(std::mem::take(&mut self.buf));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    /// outside_a <-> a ==relay== b <-> outside_b: sends `up`, half-closes,
    /// and only then answers `down`; returns the relay's stats.
    async fn half_close_through(mode: RelayMode, up: &[u8], down: &[u8]) -> RelayStats {
        // The pipes hold all the data, so the test can write everything
        // before reading.
        let (mut outside_a, a) = duplex(64 * 1024);
        let (mut outside_b, b) = duplex(64 * 1024);
        let opts = RelayOptions {
            buffer_size: 7, // odd and small: many partial reads
            mode,
            ..RelayOptions::default()
        };
        let relay = tokio::spawn(async move { relay(a, b, &opts).await });

        outside_a.write_all(up).await.unwrap();
        outside_a.shutdown().await.unwrap();
        // a's EOF reaches b as EOF...
        let mut got_up = Vec::new();
        outside_b.read_to_end(&mut got_up).await.unwrap();
        assert_eq!(got_up, up, "{mode}");
        // ...while b -> a still runs.
        outside_b.write_all(down).await.unwrap();
        outside_b.shutdown().await.unwrap();
        let mut got_down = Vec::new();
        outside_a.read_to_end(&mut got_down).await.unwrap();
        assert_eq!(got_down, down, "{mode}");

        let stats = relay.await.unwrap().unwrap();
        assert_eq!(
            (stats.a_to_b, stats.b_to_a, stats.splices),
            (up.len() as u64, down.len() as u64, 0),
            "{mode}"
        );
        // At least one read per 7 bytes, plus the EOF read of each side.
        let least = (up.len() as u64).div_ceil(7) + (down.len() as u64).div_ceil(7) + 2;
        assert!(stats.reads >= least, "{mode}: {stats:?}");
        stats
    }

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close_in_each_mode() {
        let up: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let down = b"answer after the half-close".repeat(100);

        let stats = half_close_through(RelayMode::Reuse, &up, &down).await;
        assert_eq!(stats.buffers_allocated, 2, "one per direction");

        let stats = half_close_through(RelayMode::Copy, &up, &down).await;
        assert_eq!(stats.buffers_allocated, stats.reads, "one per read");

        let stats = half_close_through(RelayMode::Pooled, &up, &down).await;
        // Each direction holds at most one buffer at a time.
        assert!(stats.buffers_allocated <= 2, "{stats:?}");
    }

    #[tokio::test]
    async fn generic_pump_refuses_splice() {
        let (_outside_a, a) = duplex(16);
        let (_outside_b, b) = duplex(16);
        let opts = RelayOptions {
            mode: RelayMode::Splice,
            ..RelayOptions::default()
        };
        let err = relay(a, b, &opts).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    #[tokio::test]
    async fn empty_streams() {
        let (outside_a, a) = duplex(16);
        let (outside_b, b) = duplex(16);
        drop((outside_a, outside_b));
        let stats = relay(a, b, &RelayOptions::default()).await.unwrap();
        assert_eq!((stats.a_to_b, stats.b_to_a), (0, 0));
        assert_eq!(stats.reads, 2, "one EOF read per direction");
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
            "unknown setting `relay.nope`; use one of: relay.buffer_size, relay.mode, relay.leak"
        );
    }

    #[test]
    fn mode_setting() {
        let mut o = RelayOptions::default();
        assert_eq!(o.mode, RelayMode::Reuse, "reuse is the default");
        for (name, mode) in [
            ("copy", RelayMode::Copy),
            ("pooled", RelayMode::Pooled),
            ("splice", RelayMode::Splice),
            ("reuse", RelayMode::Reuse),
        ] {
            o.set("mode", name).unwrap();
            assert_eq!(o.mode, mode);
            assert_eq!(mode.to_string(), name);
        }
        for bad in ["foo", "", "Copy", "pool"] {
            let err = o.set("mode", bad).unwrap_err();
            assert_eq!(
                err,
                SettingError::BadValue {
                    key: "relay.mode".into(),
                    value: bad.into(),
                    expected: "one of reuse, copy, pooled, splice".into(),
                }
            );
        }
        assert_eq!(o.mode, RelayMode::Reuse, "a bad value changes nothing");
    }

    #[test]
    fn splice_is_refused_outside_tcp() {
        let mut o = RelayOptions::default();
        for ok in ["reuse", "copy", "pooled"] {
            o.set("mode", ok).unwrap();
            assert_eq!(o.check_generic("tls"), Ok(()), "{ok}");
        }
        o.set("mode", "splice").unwrap();
        let msg = o.check_generic("ssh").unwrap_err().to_string();
        assert_eq!(
            msg,
            "bad value `splice` for setting `relay.mode`: expected reuse, copy or pooled: \
             splice is only for protocol tcp, not ssh"
        );
    }

    #[test]
    fn clones_share_the_pool_and_compare_by_options() {
        let a = RelayOptions::default();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.pool, &b.pool));
        assert_eq!(a, RelayOptions::default(), "the pool is not an option");
    }
}
