//! `drive`: the load generator and the sink.
//!
//! The generator speaks SOCKS5 to the chain's client endpoint and CONNECTs to
//! the sink, which lives in this process:
//!
//! ```text
//! generator ──SOCKS5──▶ client endpoint ══protocol══▶ server endpoint ──TCP──▶ sink
//! ```
//!
//! Right after the SOCKS5 success reply the generator sends a 48-byte header
//! (see `header.rs`: magic `PPDR`, version, run nonce, connection id, pattern,
//! direction, sizes, io timeout, check bytes) so the sink knows what to do.
//! Then, per [`Pattern`]:
//!
//! - `bulk`: each connection streams payload up, down or both. At the end of
//!   the window the generator stops sending and shuts down its write half; the
//!   sink, on EOF, stops sending, records its hashes and shuts down its write
//!   half; the generator reads to EOF. (The chain must pass half-closes on;
//!   one that closes both ways at the first FIN loses the tail of a `down`
//!   stream, which the integrity check reports.)
//! - `rr`: each connection sends a request, the sink reads exactly that many
//!   bytes and answers, the generator reads the answer; round-trip latency
//!   goes into an HDR histogram.
//!
//! Integrity: both sides count and BLAKE3-hash every payload byte they send
//! and receive, over the whole connection (warm-up and drain included). After
//! the phase, each connection's two views are compared both ways; any
//! difference, or a direction the pattern asks to carry payload that carried
//! none (two empty hashes agree, so agreement alone proves nothing), fails
//! the phase with [`DriveError::Integrity`], which still
//! carries the complete [`PhaseResult`] so the report can be written first.
//!
//! - `bulk` exact-length: each connection moves N bytes each way and the
//!   sink closes once it has counted them; the generator never half-closes
//!   first, so peers that close both ways at the first FIN lose nothing.
//! - `rr` open loop: requests fall due at fixed times per connection and
//!   latency counts from the due time (no coordinated omission); the
//!   generator's own lag behind the schedule is reported apart.
//! - `churn` (churn.rs): connection after connection, one round trip each.
//!
//! The set-up phase ([`run_setup`]) opens many short connections one after
//! another, each with one `rr` round trip, to time connection set-up over
//! enough samples for its percentiles.
//!
//! Robustness: every network wait is bounded by `io_timeout` without progress,
//! cancellation stops a phase promptly, and no task outlives `run_phase`.

mod churn;
mod error;
mod generator;
mod header;
mod integrity;
mod limits;
mod meter;
mod options;
mod payload;
mod phase;
mod result;
mod setup;
mod sink;
mod socks5;
mod stats;
mod watchdog;
mod window;

#[cfg(test)]
mod stress_tests;
#[cfg(test)]
pub(crate) mod test_relay;
#[cfg(test)]
mod tests;

pub use error::DriveError;
pub use limits::{level_limit, local_port_count, raise_fd_limit, FdLimit, FD_HEADROOM};
pub use meter::{LiveCounters, WindowState};
pub use options::{
    BulkOptions, ChurnOptions, Direction, ParseDirectionError, Pattern, PhaseOptions, RrOptions,
    DEFAULT_CHUNK_SIZE, DEFAULT_DURATION, DEFAULT_IO_TIMEOUT, DEFAULT_WARMUP, MAX_CHUNK_SIZE,
    MAX_CONNECTIONS, MAX_DURATION, MAX_MESSAGE_SIZE,
};
pub use phase::run_phase;
pub use result::{
    ChurnResult, ConnectionBytes, FailureCount, Integrity, IntegrityStatus, LatencySummary,
    PhaseResult, ScheduleResult, SecondSample, SetupResult, Throughput,
};
pub use setup::{run_setup, SetupOptions, MAX_SETUP_CONNECTIONS};
pub use sink::Sink;
pub use socks5::{connect as socks5_connect, reply_meaning, Socks5Error, TargetAddr};
pub use window::{NoWindow, Window};
