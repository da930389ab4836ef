//! `soak.json`: what a soak measured so far. Rewritten after every
//! interval (the checkpoint), so a soak that is killed keeps every finished
//! interval; each interval also has a full report of its own under
//! `intervals/NNN/`. soak.md renders from this file.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LeakSummary, Machine, Role, RuleResult};

/// Bumped on any change a reader of soak.json must know about.
pub const SOAK_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SoakReport {
    pub schema_version: u32,
    pub profile: String,
    pub protocol: String,
    pub started_at: String,
    pub machine: Machine,
    /// The soak's planned length and each interval's, seconds.
    pub planned_s: f64,
    pub interval_s: f64,
    /// Seconds since the soak started, at this checkpoint.
    pub elapsed_s: f64,
    /// `running` (a checkpoint), `completed`, `interrupted` (Ctrl-C or
    /// SIGTERM: the interval under way is left out), or `failed: …`.
    pub status: String,
    /// Every finished interval, in order.
    pub intervals: Vec<SoakInterval>,
    /// Each endpoint's leak figures over the whole soak so far.
    pub targets: Vec<SoakTarget>,
    /// The `leak.*` rules of the checklist judged over the whole soak.
    pub leak_verdicts: Vec<RuleResult>,
    /// Seconds between the resource readings the soak keeps for its leak
    /// figures (each interval's report keeps all of its own).
    pub resource_step_s: f64,
    /// The runner's own footprint at each checkpoint.
    pub runner: Vec<RunnerReading>,
    /// Output name → file, relative to the soak directory.
    pub outputs: BTreeMap<String, String>,
}

/// One interval: the profile's passes run once, as `profile` runs them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SoakInterval {
    pub index: usize,
    /// Its full report, relative to the soak directory.
    pub dir: String,
    /// Seconds since the soak started.
    pub from_s: f64,
    pub to_s: f64,
    /// The interval report's status ("ok", "failed: …").
    pub status: String,
    pub phases: Vec<SoakPhase>,
    pub targets: Vec<IntervalTarget>,
    /// "ROLE RULE" for every rule that failed in the interval's report.
    pub failed_rules: Vec<String>,
}

/// One phase of an interval's main pass.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SoakPhase {
    pub pattern: String,
    pub up_bps: f64,
    pub down_bps: f64,
    pub round_trips_per_s: f64,
    /// Absent below the sample count that bounds it (299).
    pub p99_us: Option<f64>,
}

/// One endpoint at the end of an interval.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IntervalTarget {
    pub role: Role,
    /// The interval's last resource reading.
    pub rss_bytes: u64,
    pub fds: u64,
    pub threads: u64,
    pub tcp_sockets: u64,
    /// Mean CPU over the interval's readings, in cores.
    pub cpu_cores: Option<f64>,
    /// Live sampled heap bytes at the interval's last reading (the alloc
    /// probe's return probes; absent where they did not run).
    pub live_heap_bytes: Option<i64>,
}

/// One endpoint over the whole soak.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SoakTarget {
    pub role: Role,
    pub pid: u32,
    pub leak: Option<LeakSummary>,
}

/// The runner process and the soak directory at one checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub struct RunnerReading {
    pub t_s: f64,
    /// The runner's VmRSS.
    pub rss_bytes: u64,
    /// Every file under the soak directory.
    pub dir_bytes: u64,
}
