//! What a phase does: the traffic pattern, its sizes, and how long and how
//! patiently it runs.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::DriveError;

/// Default size of one payload write in `bulk` (64 KiB).
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// Largest accepted `bulk` chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;
/// Largest accepted `rr` request or response size (1 GiB).
pub const MAX_MESSAGE_SIZE: usize = 1 << 30;
/// Largest accepted number of connections in one phase.
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// Longest accepted measured window (24 h); the per-second series is sized by it.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Default time a network wait may go without progress before the phase fails.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default warm-up before the measured window.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
/// Default length of the measured window.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Which way `bulk` payload flows, seen from the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Generator → sink (upload through the chain).
    Up,
    /// Sink → generator (download through the chain).
    Down,
    /// Both at once, on every connection.
    Both,
}

impl Direction {
    /// The lowercase name used in specs and reports: `up`, `down` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        }
    }

    /// Whether the generator streams payload to the sink.
    pub(crate) fn sends_up(self) -> bool {
        matches!(self, Direction::Up | Direction::Both)
    }

    /// Whether the sink streams payload to the generator.
    pub(crate) fn sends_down(self) -> bool {
        matches!(self, Direction::Down | Direction::Both)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Direction`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown direction {input:?}: expected one of \"up\", \"down\", \"both\"")]
pub struct ParseDirectionError {
    /// The text that was not a direction.
    pub input: String,
}

impl FromStr for Direction {
    type Err = ParseDirectionError;

    /// Parses `up`, `down` or `both` (ASCII case-insensitive, surrounding
    /// whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "up" => Ok(Direction::Up),
            "down" => Ok(Direction::Down),
            "both" => Ok(Direction::Both),
            _ => Err(ParseDirectionError {
                input: s.to_string(),
            }),
        }
    }
}

/// Options of the `bulk` pattern: N connections stream payload for the whole
/// phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOptions {
    /// Number of concurrent connections (at least 1).
    pub connections: usize,
    /// Which way the payload flows.
    pub direction: Direction,
    /// Size of one payload write, in bytes (1 ..= [`MAX_CHUNK_SIZE`]).
    pub chunk_size: usize,
    /// Exact-length mode: each connection moves this many bytes in every
    /// direction it carries, and closes only once both ends have counted
    /// them (no half-close needed); the phase ends when every transfer has.
    /// `None`: stream until the window ends.
    pub bytes_per_connection: Option<u64>,
}

impl Default for BulkOptions {
    /// One connection, `up`, 64 KiB chunks.
    fn default() -> Self {
        BulkOptions {
            connections: 1,
            direction: Direction::Up,
            chunk_size: DEFAULT_CHUNK_SIZE,
            bytes_per_connection: None,
        }
    }
}

/// Options of the `rr` pattern: closed-loop request/response on N connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrOptions {
    /// Number of concurrent connections, each with one request in flight.
    pub connections: usize,
    /// Bytes per request, generator → sink (1 ..= [`MAX_MESSAGE_SIZE`]).
    pub request_size: usize,
    /// Bytes per response, sink → generator (1 ..= [`MAX_MESSAGE_SIZE`]).
    pub response_size: usize,
    /// Open loop: each connection sends its k-th request at start + k ×
    /// this interval (1 / rate), and latency counts from that intended time.
    /// `None`: closed loop, the next request as soon as the response is in.
    pub interval: Option<Duration>,
}

impl Default for RrOptions {
    /// One connection, 1 KiB requests and 1 KiB responses.
    fn default() -> Self {
        RrOptions {
            connections: 1,
            request_size: 1024,
            response_size: 1024,
            interval: None,
        }
    }
}

/// Options of the `churn` pattern: open, one request and its response,
/// close; over and over for the whole phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnOptions {
    /// Most connections in flight at once (at least 1).
    pub concurrency: usize,
    /// Open loop: one connection starts every `interval` (1 / target rate);
    /// `None`: as fast as possible, `concurrency` always in flight.
    pub interval: Option<Duration>,
    /// Bytes of each connection's one request.
    pub request_size: usize,
    /// Bytes of its response.
    pub response_size: usize,
}

/// A traffic pattern with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Streaming throughput.
    Bulk(BulkOptions),
    /// Request/response latency, closed or open loop.
    Rr(RrOptions),
    /// Short connections: connection rate and set-up time.
    Churn(ChurnOptions),
}

impl Pattern {
    /// The pattern's name as reports spell it: `bulk` or `rr`.
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::Bulk(_) => "bulk",
            Pattern::Rr(_) => "rr",
            Pattern::Churn(_) => "churn",
        }
    }

    /// The number of connections the pattern holds open at once.
    pub fn connections(&self) -> usize {
        match self {
            Pattern::Bulk(b) => b.connections,
            Pattern::Rr(r) => r.connections,
            Pattern::Churn(c) => c.concurrency,
        }
    }
}

/// Everything [`run_phase`](super::run_phase) needs to know about one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseOptions {
    /// The traffic pattern.
    pub pattern: Pattern,
    /// Traffic run before the measured window, not counted in throughput or
    /// latency (integrity still covers it). Starts once every connection is
    /// set up.
    pub warmup: Duration,
    /// Length of the measured window (more than zero, at most [`MAX_DURATION`]).
    pub duration: Duration,
    /// How long any network wait may go without progress before the phase
    /// fails with [`DriveError::Timeout`].
    pub io_timeout: Duration,
}

impl PhaseOptions {
    /// Options for `pattern` with the default warm-up (2 s), duration (10 s)
    /// and I/O timeout (10 s).
    pub fn new(pattern: Pattern) -> Self {
        PhaseOptions {
            pattern,
            warmup: DEFAULT_WARMUP,
            duration: DEFAULT_DURATION,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }

    /// Checks every limit; the error names the offending option.
    pub fn validate(&self) -> Result<(), DriveError> {
        let bad = |m: String| Err(DriveError::InvalidOptions(m));
        let n = self.pattern.connections();
        if n == 0 || n > MAX_CONNECTIONS {
            return bad(format!(
                "connections must be 1..={MAX_CONNECTIONS}, got {n}"
            ));
        }
        match &self.pattern {
            Pattern::Bulk(b) => {
                if b.chunk_size == 0 || b.chunk_size > MAX_CHUNK_SIZE {
                    return bad(format!(
                        "chunk_size must be 1..={MAX_CHUNK_SIZE} bytes, got {}",
                        b.chunk_size
                    ));
                }
            }
            Pattern::Rr(r) => {
                check_sizes(r.request_size, r.response_size)?;
                check_interval("rate_per_connection", r.interval)?;
            }
            Pattern::Churn(c) => {
                check_sizes(c.request_size, c.response_size)?;
                check_interval("rate", c.interval)?;
            }
        }
        if let Pattern::Bulk(BulkOptions {
            bytes_per_connection: Some(0),
            ..
        }) = &self.pattern
        {
            return bad("bytes_per_connection must be at least 1".to_string());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "duration must be more than 0 and at most {MAX_DURATION:?}, got {:?}",
                self.duration
            ));
        }
        if self.warmup > MAX_DURATION {
            return bad(format!(
                "warmup must be at most {MAX_DURATION:?}, got {:?}",
                self.warmup
            ));
        }
        check_io_timeout("io_timeout", self.io_timeout)
    }
}

fn check_sizes(request: usize, response: usize) -> Result<(), DriveError> {
    for (name, v) in [("request_size", request), ("response_size", response)] {
        if v == 0 || v > MAX_MESSAGE_SIZE {
            return Err(DriveError::InvalidOptions(format!(
                "{name} must be 1..={MAX_MESSAGE_SIZE} bytes, got {v}"
            )));
        }
    }
    Ok(())
}

/// Shortest schedule interval: 1 µs (a million a second per schedule).
pub const MIN_INTERVAL: Duration = Duration::from_micros(1);

fn check_interval(name: &str, interval: Option<Duration>) -> Result<(), DriveError> {
    match interval {
        Some(i) if i < MIN_INTERVAL || i > MAX_DURATION => Err(DriveError::InvalidOptions(
            format!("{name} gives an interval of {i:?}; it must be 1 µs ..= 24 h"),
        )),
        _ => Ok(()),
    }
}

/// The header carries the I/O timeout in milliseconds as a u32.
pub(super) fn check_io_timeout(name: &str, t: Duration) -> Result<(), DriveError> {
    let ms = t.as_millis();
    if ms == 0 || ms > u128::from(u32::MAX) {
        return Err(DriveError::InvalidOptions(format!(
            "{name} must be 1 ms ..= {} ms, got {t:?}",
            u32::MAX
        )));
    }
    Ok(())
}
