//! The workload section: the traffic driven through the chain, phase by
//! phase (converted from `drive::PhaseResult` in `from_run`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The traffic that was driven through the chain.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    /// `ok` only when every phase's hashes matched and every direction asked
    /// to carry payload carried some, in every pass (control, main and
    /// per-call).
    pub integrity: IntegrityStatus,
    /// Payload bytes generator → sink, all phases, whole connections.
    pub bytes_up: u64,
    /// Payload bytes sink → generator.
    pub bytes_down: u64,
    pub phases: Vec<Phase>,
    /// The per-call pass's integrity, when it ran apart from the main pass.
    pub per_call_pass: PassIntegrity,
    /// The set-up phase (before the main pass's phases, outside any
    /// measured window); absent when the profile switched it off.
    #[serde(default)]
    pub setup: Option<SetupPhase>,
    /// The machine's load in each measured window, main pass then
    /// per-call pass: what else ran beside the targets.
    #[serde(default)]
    pub windows: Vec<WindowLoad>,
    /// The fixed send rate the profile says the chain holds (its
    /// `[rate_limit]`), absent when it sets none.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// Fixed send rates per direction, Mbit/s (10^6 bits per second) of the
/// protocol's packets as the endpoints count them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RateLimit {
    /// The client's send rate (generator → sink).
    pub up_mbps: Option<f64>,
    /// The server's send rate (sink → generator).
    pub down_mbps: Option<f64>,
}

/// Connection set-up over many short connections, one after another: TCP
/// connect, SOCKS5 CONNECT, one request and its response, close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SetupPhase {
    /// Connections the profile asked for.
    pub planned: usize,
    /// Connections made before the phase's time bound (`setup.max_s`).
    pub connections: usize,
    pub request_size: usize,
    pub response_size: usize,
    /// Real length of the phase, seconds.
    pub elapsed_s: f64,
    /// TCP connect start to the SOCKS5 success reply, one sample per
    /// connection: the source of the `setup_p50_us`/`setup_p99_us` metrics.
    pub setup_us: LatencySummary,
    /// TCP connect start to the end of the connection's one response.
    pub first_response_us: LatencySummary,
    /// Every connection's request and response, checked both ways.
    pub integrity: Integrity,
}

/// The machine's load over one measured window, in cores (CPU seconds per
/// second of the window): what ran beside the targets, so that a disturbed
/// window can be recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowLoad {
    /// `main` or `per_call`.
    pub pass: String,
    /// The phase whose window this was.
    pub phase: usize,
    /// When the window opened, seconds since the Unix epoch (to line it up
    /// with other monitoring).
    pub opened_unix_s: f64,
    /// Wall-clock length of the window, seconds.
    pub seconds: f64,
    /// Steal time: a hypervisor ran something else while a CPU of this
    /// machine wanted to run (/proc/stat).
    pub steal_cores: f64,
    /// Interrupt and softirq time, charged to no process (on loopback
    /// much of the targets' network stack runs there).
    pub irq_cores: f64,
    /// The targets' CPU (/proc/PID/stat).
    pub targets_cores: f64,
    /// The runner's: load generator, sink and probe reading.
    pub runner_cores: f64,
    /// Every other process's CPU: the machine's user + nice + system time
    /// less the targets' and the runner's.
    pub other_cores: f64,
}

impl WindowLoad {
    /// Above this many cores of steal or other processes' CPU, report.md
    /// points the window out.
    pub const NOTABLE_CORES: f64 = 0.05;

    /// Whether something else took enough CPU to disturb the window.
    pub fn notable(&self) -> bool {
        self.steal_cores > Self::NOTABLE_CORES || self.other_cores > Self::NOTABLE_CORES
    }
}

/// The integrity checks of a pass whose phases are not otherwise reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PassIntegrity {
    /// One check per phase, in phase order; empty when the pass did not run.
    pub phases: Vec<Integrity>,
}

/// The outcome of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Phase {
    /// `bulk`, `rr` or `churn` (a concurrency sweep's levels are `rr`).
    pub pattern: String,
    /// Number of connections (churn: most in flight at once).
    pub connections: usize,
    /// `up`, `down` or `both` for bulk; absent for rr.
    pub direction: Option<String>,
    /// Real length of the warm-up, from the moment every connection was set
    /// up to the opening of the measured window, in seconds.
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
    /// bulk exact-length: bytes each connection moved each way it carried.
    #[serde(default)]
    pub bytes_per_connection: Option<u64>,
    /// rr open loop: the schedule and the generator's lag behind it.
    #[serde(default)]
    pub schedule: Option<super::Schedule>,
    /// churn: connection rate, set-up times, failures by kind.
    #[serde(default)]
    pub churn: Option<super::Churn>,
    /// Payload that reached the receiving end inside the measured window;
    /// absent where the sink did not count it (attach without traffic,
    /// reports written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
}

/// Payload that arrived at the receiving end inside a phase's measured
/// window, per direction: the sink's received bytes (up) and the
/// generator's (down). Unlike `window_bytes_up`, what the generator wrote,
/// which the chain's socket buffers can hold past the window, this is what
/// crossed the chain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Goodput {
    /// Payload bytes the sink received in the window.
    pub up_bytes: u64,
    /// Payload bytes the generator received in the window (the same count
    /// as `window_bytes_down`).
    pub down_bytes: u64,
    /// `up_bytes` over the window's length, bytes/s.
    pub up_bps: f64,
    /// `down_bytes` over the window's length, bytes/s.
    pub down_bps: f64,
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
    /// `round_trips` round trips, µs (rr; each absent below the sample
    /// count that bounds it: 5 and 299).
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
}

/// A latency distribution in microseconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    pub mean: f64,
    /// p50, p90, p99 and p99.9, each with its bounds or "too few samples".
    pub percentiles: Vec<super::Percentile>,
    pub max: f64,
}

impl LatencySummary {
    /// The percentile labelled `label` ("p99").
    pub fn percentile(&self, label: &str) -> Option<&super::Percentile> {
        self.percentiles.iter().find(|p| p.label == label)
    }
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
    /// Every connection's payload bytes per direction, by connection id.
    pub connections: Vec<ConnectionBytes>,
}

/// Payload bytes one connection moved over its whole life (warm-up, window
/// and drain), as the generator counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionBytes {
    /// Connection id within the phase (0-based).
    pub id: u32,
    /// Generator → sink.
    pub bytes_up: u64,
    /// Sink → generator.
    pub bytes_down: u64,
}
