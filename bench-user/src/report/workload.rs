//! The workload section: the traffic driven through the chain, phase by
//! phase (converted from `drive::PhaseResult` in `from_run`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The traffic that was driven through the chain.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    /// `ok` only when every phase's hashes matched.
    pub integrity: IntegrityStatus,
    /// Payload bytes generator → sink, all phases, whole connections.
    pub bytes_up: u64,
    /// Payload bytes sink → generator.
    pub bytes_down: u64,
    pub phases: Vec<Phase>,
}

/// The outcome of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Phase {
    /// `bulk` or `rr`.
    pub pattern: String,
    /// Number of connections.
    pub connections: usize,
    /// `up`, `down` or `both` for bulk; absent for rr.
    pub direction: Option<String>,
    /// Real length of the warm-up, from the moment every connection was set
    /// up to the opening of the measured window, in seconds.
    pub warmup_s: f64,
    /// Real length of the measured window, in seconds.
    pub measured_s: f64,
    /// Payload bytes the generator sent, over whole connections (warm-up,
    /// window and drain; the 40-byte header is not counted).
    pub bytes_up: u64,
    /// Payload bytes the generator received, over whole connections.
    pub bytes_down: u64,
    /// Payload bytes the generator sent inside the measured window.
    pub window_bytes_up: u64,
    /// Payload bytes the generator received inside the measured window.
    pub window_bytes_down: u64,
    /// Throughput over the measured window.
    pub throughput: Throughput,
    /// One sample per second of the measured window.
    pub timeseries: Vec<SecondSample>,
    /// Round-trip latency of the round trips completed in the window (rr
    /// only).
    pub latency_us: Option<LatencySummary>,
    /// Connection setup time: TCP connect start to the SOCKS5 success reply.
    pub setup_us: LatencySummary,
    /// Round trips completed inside the measured window (0 for bulk).
    pub round_trips: u64,
    /// Whether every byte arrived as sent, on every connection.
    pub integrity: Integrity,
}

impl Phase {
    /// Payload bytes, both directions, inside the measured window: the
    /// denominator of every per-byte figure.
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes_up + self.window_bytes_down
    }

    /// "bulk (both)", "rr": the phase as tables name it.
    pub fn label(&self) -> String {
        match &self.direction {
            Some(d) => format!("{} ({d})", self.pattern),
            None => self.pattern.clone(),
        }
    }
}

/// Throughput in bytes per second. The medians are over the per-second
/// samples (each sample's bytes divided by its span); the means are window
/// bytes over the window's real length.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Throughput {
    pub up_bps_median: f64,
    pub up_bps_mean: f64,
    pub down_bps_median: f64,
    pub down_bps_mean: f64,
}

/// Traffic in one interval of the measured window (whole seconds; the last
/// takes the remainder).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecondSample {
    /// Start of the interval, seconds since the window opened.
    pub t_s: f64,
    /// Length of the interval in seconds.
    pub span_s: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Round trips completed in the interval (rr).
    pub round_trips: u64,
    /// Median and 99th percentile round-trip latency of the interval's
    /// round trips, µs (rr; absent without round trips).
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
}

/// A latency distribution in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Whether the integrity check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntegrityStatus {
    /// Every connection's sent and received counts and hashes agree.
    Ok,
    /// At least one connection lost, gained or corrupted bytes.
    Mismatch,
}

impl IntegrityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityStatus::Ok => "ok",
            IntegrityStatus::Mismatch => "mismatch",
        }
    }
}

/// The integrity check of a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Integrity {
    pub status: IntegrityStatus,
    /// Connections compared (all connections of the phase).
    pub connections_checked: usize,
    /// Payload bytes compared: the generator's sent plus received bytes.
    pub bytes_checked: u64,
    /// One line per problem: connection id, direction, expected and actual
    /// byte counts and hash prefixes.
    pub mismatches: Vec<String>,
}
