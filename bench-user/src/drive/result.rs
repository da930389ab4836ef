//! What a phase measured, in the shape `report.json` stores it.

use serde::{Deserialize, Serialize};

use crate::order_statistics::QuantileEstimate;

/// The outcome of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// `bulk` or `rr`.
    pub pattern: String,
    /// Number of connections.
    pub connections: usize,
    /// `up`, `down` or `both` for bulk; absent for rr.
    pub direction: Option<String>,
    /// Real length of the warm-up, from the moment every connection was set up
    /// to the opening of the measured window, in seconds.
    pub warmup_s: f64,
    /// Real length of the measured window, in seconds.
    pub measured_s: f64,
    /// Payload bytes the generator sent, over whole connections (warm-up,
    /// window and drain; the 48-byte header is not counted).
    pub bytes_up: u64,
    /// Payload bytes the generator received, over whole connections.
    pub bytes_down: u64,
    /// Payload bytes the generator sent inside the measured window.
    pub window_bytes_up: u64,
    /// Payload bytes the generator received inside the measured window.
    pub window_bytes_down: u64,
    /// Payload bytes the sink received inside the measured window: what
    /// crossed the chain (`window_bytes_up` is what the generator wrote,
    /// which socket buffers can hold past the window). `None` where the
    /// sink did not count it.
    #[serde(default)]
    pub window_bytes_up_received: Option<u64>,
    /// Throughput over the measured window.
    pub throughput: Throughput,
    /// One sample per second of the measured window.
    pub timeseries: Vec<SecondSample>,
    /// Round-trip latency of the round trips completed in the window (rr only).
    pub latency_us: Option<LatencySummary>,
    /// Connection setup time: TCP connect start to the SOCKS5 success reply.
    pub setup_us: LatencySummary,
    /// Round trips completed inside the measured window (0 for bulk).
    pub round_trips: u64,
    /// Whether every byte arrived as sent, on every connection.
    pub integrity: Integrity,
    /// bulk exact-length: the bytes each connection moved each way.
    pub bytes_per_connection: Option<u64>,
    /// rr open loop: how the generator kept to its schedule.
    pub schedule: Option<ScheduleResult>,
    /// churn: connections per second, set-up times, failures.
    pub churn: Option<ChurnResult>,
}

/// How an open-loop `rr` phase kept to its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleResult {
    /// Requests per second each connection was asked to send.
    pub rate_per_connection: f64,
    /// Requests due inside the window, all connections (sent, or missed
    /// because the window closed first).
    pub due: u64,
    /// Of those, requests sent more than one interval late or not at all:
    /// the generator itself fell behind its schedule (its lag, not the
    /// chain's latency).
    pub behind: u64,
    /// Send time minus due time, per request due in the window.
    pub lag_us: LatencySummary,
}

/// What a `churn` phase measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnResult {
    /// Connections per second asked for; `None`: as fast as possible.
    pub target_per_s: Option<f64>,
    /// Most connections in flight at once.
    pub concurrency: usize,
    /// Connections started over the whole phase (warm-up, window), each
    /// either checked by the integrity check or counted in `failures`.
    pub all_started: u64,
    /// Connections started inside the measured window.
    pub started: u64,
    /// Of those, connections that finished their exchange.
    pub completed: u64,
    /// Of those, connections that failed (by kind in `failures`).
    pub failed: u64,
    /// `completed` over the window's length.
    pub connections_per_s: f64,
    /// TCP connect start to the SOCKS5 success reply, one sample per
    /// completed connection of the window.
    pub setup_us: LatencySummary,
    /// TCP connect start to the end of the one response.
    pub first_response_us: LatencySummary,
    /// Open loop: start time minus due time of each connection of the window
    /// (late when `concurrency` connections were already in flight or the
    /// generator could not keep up).
    pub start_lag_us: Option<LatencySummary>,
    /// Connections due in the window that started more than one interval
    /// late, or not before the window closed.
    pub behind: u64,
    /// Failed connections (warm-up and window) by kind.
    pub failures: Vec<FailureCount>,
}

/// Failed connections of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    /// `connect`, `socks5`, `timeout`, `io`, `protocol` or `other`.
    pub kind: String,
    pub count: u64,
    /// The first such failure's message.
    pub example: String,
}

impl PhaseResult {
    /// Payload bytes, both directions, inside the measured window: the
    /// denominator of every per-byte figure.
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes_up + self.window_bytes_down
    }
}

/// The outcome of the set-up phase (see `drive::run_setup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupResult {
    /// Connections the profile asked for.
    pub planned: usize,
    /// Connections made before the time bound (all, normally).
    pub connections: usize,
    pub request_size: usize,
    pub response_size: usize,
    /// Real length of the phase, seconds.
    pub elapsed_s: f64,
    /// TCP connect start to the SOCKS5 success reply.
    pub setup_us: LatencySummary,
    /// TCP connect start to the end of the first response.
    pub first_response_us: LatencySummary,
    /// Every connection's request and response, checked both ways.
    pub integrity: Integrity,
}

/// Throughput in bytes per second. The medians are over the per-second samples
/// (each sample's bytes divided by its span); the means are window bytes over
/// the window's real length, i.e. the time-weighted mean of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Median generator → sink rate.
    pub up_bps_median: f64,
    /// Mean generator → sink rate.
    pub up_bps_mean: f64,
    /// Median sink → generator rate.
    pub down_bps_median: f64,
    /// Mean sink → generator rate.
    pub down_bps_mean: f64,
}

/// Traffic in one interval of the measured window.
///
/// Intervals are whole seconds, except the last, which takes the window's
/// fractional remainder: as its own sample when that is at least half a second
/// (or the window is shorter than a second), else folded into the previous
/// sample, whose span is then up to 1.5 s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Start of the interval, in seconds since the window opened.
    pub t_s: f64,
    /// Length of the interval in seconds (1.0 except possibly the last).
    pub span_s: f64,
    /// Payload bytes sent by the generator in the interval.
    pub bytes_up: u64,
    /// Payload bytes received by the generator in the interval.
    pub bytes_down: u64,
    /// Round trips completed in the interval (rr).
    pub round_trips: u64,
    /// Median and 99th percentile round-trip latency of the interval's
    /// `round_trips` round trips, µs (rr; each absent below the sample
    /// count that bounds it: 5 and 299).
    #[serde(default)]
    pub latency_p50_us: Option<f64>,
    #[serde(default)]
    pub latency_p99_us: Option<f64>,
}

/// A latency distribution in microseconds, from an HDR histogram of
/// nanoseconds with 3 significant digits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// p50, p90, p99, p99.9 with their distribution-free bounds, each
    /// without bounds when there are too few samples for them.
    pub percentiles: Vec<QuantileEstimate>,
    /// Largest sample.
    pub max: f64,
}

/// Whether the integrity check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrityStatus {
    /// Every connection's sent and received counts and hashes agree, both ways.
    Ok,
    /// At least one connection lost, gained or corrupted bytes.
    Mismatch,
}

/// The integrity check of a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// `ok` or `mismatch`.
    pub status: IntegrityStatus,
    /// Connections compared (all connections of the phase).
    pub connections_checked: usize,
    /// Payload bytes compared: the generator's sent plus received bytes.
    pub bytes_checked: u64,
    /// One line per problem: connection id, direction, expected and actual
    /// byte counts and hash prefixes.
    pub mismatches: Vec<String>,
    /// Every connection's payload bytes per direction, by connection id.
    pub connections: Vec<ConnectionBytes>,
    /// Connections that moved under a tenth of the median connection's
    /// bytes: not a failure, but the load was uneven.
    pub warnings: Vec<String>,
}

/// Payload bytes one connection moved over its whole life, as the generator
/// counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionBytes {
    /// The connection id the header carried.
    pub id: u32,
    /// Generator → sink.
    pub bytes_up: u64,
    /// Sink → generator.
    pub bytes_down: u64,
}

impl ConnectionBytes {
    /// Both directions.
    pub fn total(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }
}
