//! Leak figures per target: how each resource grew after warm-up, per
//! hour and per connection served, with 95 % intervals
//! (`analyze::leak`), and whether descriptors and sockets returned to
//! their baseline once traffic ended.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One target's resource slopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeakSummary {
    /// How the slopes were estimated, in one sentence.
    pub method: String,
    /// The readings the slopes cover: after warm-up, while connections
    /// were being served; seconds since the run started.
    pub from_s: f64,
    pub to_s: f64,
    /// Readings in that span, and how many consecutive readings each
    /// Theil–Sen point is the median of.
    pub readings: usize,
    pub readings_per_point: usize,
    /// Connections the sink accepted in that span (each crossed the whole
    /// chain).
    pub connections: u64,
    /// `rss_bytes`, `fds`, `threads`, `tcp_sockets`.
    pub resources: Vec<ResourceSlope>,
    /// Why a slope is missing, when one is.
    pub notes: Vec<String>,
    /// Descriptors and TCP sockets before the main pass and after the
    /// run's last connection closed (from `resources`).
    pub return_to_baseline: Option<BaselineCheck>,
}

/// One resource's slopes; each absent when it could not be estimated
/// (`LeakSummary::notes` says why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceSlope {
    pub resource: String,
    /// The resource's unit: `B` or `count`.
    pub unit: String,
    /// Growth per hour of run time.
    pub per_hour: Option<SlopeInterval>,
    /// Growth per connection served.
    pub per_connection: Option<SlopeInterval>,
}

/// A Theil–Sen slope and its 95 % moving-block bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlopeInterval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Points it was estimated from (medians of runs of readings).
    pub points: usize,
}

/// Descriptors and TCP sockets before the main pass and after the last
/// connection of the run closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineCheck {
    /// Read after the control pass (which opens what a target keeps for
    /// good, such as a QUIC connection) and before the main pass.
    pub before: HeldCounts,
    /// Read once every connection of the run had closed: the first reading
    /// equal to the baseline, or the last one after `settle_ms`.
    pub after: HeldCounts,
    /// How long the runner waited for the counts to return.
    pub settle_ms: u64,
}

/// What a target held at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeldCounts {
    /// Open descriptors of every kind.
    pub fds: u64,
    /// TCP sockets the target holds a descriptor to, listening ones
    /// included; TIME_WAIT sockets belong to no process and are never
    /// counted.
    pub tcp_sockets: u64,
}
