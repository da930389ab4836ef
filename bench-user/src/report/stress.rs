//! The stress patterns' sections: open-loop schedules, churn, concurrency
//! sweeps and the limits that bound them (their conversions from the
//! runtime's types are at the end, as `from_run` does for the rest).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LatencySummary, Role};
use crate::drive;

/// How an open-loop `rr` phase kept to its schedule. Latency of such a
/// phase counts from each request's due time, so a slow chain shows in the
/// latency, and a slow generator here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Schedule {
    /// Requests per second asked of each connection.
    pub rate_per_connection: f64,
    /// Requests due inside the window, all connections (sent, or missed
    /// because the window closed first).
    pub due: u64,
    /// Of those, requests the generator sent more than one interval late
    /// or not at all: it fell behind its own schedule (above zero, the
    /// achieved rate is below the asked one for the generator's sake, not
    /// the chain's).
    pub behind: u64,
    /// Send time minus due time per request sent (timer slack included).
    pub lag_us: LatencySummary,
}

/// What a `churn` phase measured: short connections, one round trip each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Churn {
    /// Connections per second asked for; absent: as fast as possible.
    pub target_per_s: Option<f64>,
    /// Most connections in flight at once.
    pub concurrency: usize,
    /// Connections started over the whole phase (warm-up and window):
    /// each is either in the integrity check or in `failures`.
    pub all_started: u64,
    /// Connections started inside the measured window.
    pub started: u64,
    /// Of those, completed with their bytes checked.
    pub completed: u64,
    /// Of those, failed (by kind in `failures`).
    pub failed: u64,
    /// `completed` / the window's length.
    pub connections_per_s: f64,
    /// TCP connect start to the SOCKS5 success reply, every completed
    /// connection of the window.
    pub setup_us: LatencySummary,
    /// TCP connect start to the end of the one response.
    pub first_response_us: LatencySummary,
    /// Open loop: start minus due time of each connection of the window.
    pub start_lag_us: Option<LatencySummary>,
    /// Connections due in the window that started more than one interval
    /// late, or not before the window closed.
    pub behind: u64,
    /// Failed connections (warm-up and window) by kind: `connect`,
    /// `socks5`, `timeout`, `io`, `protocol`, `fd_limit`,
    /// `port_exhaustion`, `other`.
    pub failures: Vec<Failures>,
}

/// Failed connections of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failures {
    pub kind: String,
    pub count: u64,
    /// The first one's message.
    pub example: String,
}

/// A concurrency sweep: levels of connections held open at once, each
/// driven closed-loop rr for the phase's duration, lowest first. It stops
/// at the first level with a failed connection or an integrity error, or
/// before the first level a limit of the machine forbids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConcurrencySweep {
    /// The `[[phase]]` table (0-based) that asked for it.
    pub spec_phase: usize,
    /// The levels asked for.
    pub planned: Vec<usize>,
    pub request_size: usize,
    pub response_size: usize,
    /// Each level reached, in order.
    pub levels: Vec<SweepLevel>,
    /// The first level that failed, with the error: the chain's limit.
    pub first_failure: Option<LevelStop>,
    /// The first level not tried because a limit of the machine or of the
    /// protocol (not the target) forbade it.
    pub limited: Option<LevelStop>,
    /// The limits the levels were checked against.
    pub limits: Limits,
}

/// One level of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SweepLevel {
    /// Connections held open.
    pub connections: usize,
    /// Its phase in `workload.phases`.
    pub phase: usize,
    /// Payload bytes per second, both directions (window mean).
    pub throughput_bps: f64,
    /// Round trips per second, all connections.
    pub round_trips_per_s: f64,
    /// Round-trip latency, µs (absent below the sample count that bounds
    /// it: 5 for p50, 299 for p99).
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    /// Each endpoint with the level's connections open.
    pub targets: Vec<LevelTarget>,
}

/// One endpoint at one level, read from /proc as the window closed (the
/// connections still open), against its reading before the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LevelTarget {
    pub role: Role,
    pub pid: u32,
    pub rss_bytes: u64,
    pub fds: u64,
    pub sockets: u64,
    pub threads: u64,
    /// (RSS at this level − RSS before the sweep) / connections.
    pub rss_per_connection_bytes: f64,
    /// (descriptors at this level − before the sweep) / connections.
    pub fds_per_connection: f64,
}

/// A level the sweep did not pass, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LevelStop {
    pub connections: usize,
    pub reason: String,
}

/// Limits of this machine and chain that bound a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// RLIMIT_NOFILE soft limit before the runner raised it.
    pub fd_limit_before: u64,
    /// The soft limit the runner and the endpoints it started ran with.
    pub fd_limit: u64,
    /// The hard limit (how far it may be raised).
    pub fd_hard_limit: u64,
    /// Local ports for outgoing connections (net.ipv4.ip_local_port_range).
    pub local_ports: usize,
    /// Concurrent streams per QUIC connection of the reference endpoints,
    /// when the protocol carries connections as streams.
    pub stream_limit: Option<u64>,
}

impl From<&drive::ScheduleResult> for Schedule {
    fn from(s: &drive::ScheduleResult) -> Schedule {
        Schedule {
            rate_per_connection: s.rate_per_connection,
            due: s.due,
            behind: s.behind,
            lag_us: (&s.lag_us).into(),
        }
    }
}

impl From<&drive::ChurnResult> for Churn {
    fn from(c: &drive::ChurnResult) -> Churn {
        Churn {
            target_per_s: c.target_per_s,
            concurrency: c.concurrency,
            all_started: c.all_started,
            started: c.started,
            completed: c.completed,
            failed: c.failed,
            connections_per_s: c.connections_per_s,
            setup_us: (&c.setup_us).into(),
            first_response_us: (&c.first_response_us).into(),
            start_lag_us: c.start_lag_us.as_ref().map(Into::into),
            behind: c.behind,
            failures: c
                .failures
                .iter()
                .map(|f| Failures {
                    kind: f.kind.clone(),
                    count: f.count,
                    example: f.example.clone(),
                })
                .collect(),
        }
    }
}
