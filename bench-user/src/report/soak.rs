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
    /// What else took the machine's CPU in the interval's measured
    /// windows: an interval whose throughput dropped while the hypervisor
    /// took a core is the machine's doing, not the proxy's. Absent when the
    /// interval had no measured window (and in soak.json files written
    /// before it existed).
    #[serde(default)]
    pub machine_load: Option<IntervalLoad>,
}

/// The machine's load over an interval's measured windows (every pass),
/// weighted by each window's length, in cores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IntervalLoad {
    /// Steal: a hypervisor ran something else while this machine's CPUs
    /// wanted to run.
    pub steal_cores: f64,
    /// Processes other than the targets and the runner.
    pub other_cores: f64,
    /// Seconds of measured window the means cover.
    pub seconds: f64,
}

impl IntervalLoad {
    /// The length-weighted mean of `windows`; `None` without any.
    pub fn over(windows: &[super::WindowLoad]) -> Option<IntervalLoad> {
        let seconds: f64 = windows.iter().map(|w| w.seconds).sum();
        if seconds <= 0.0 {
            return None;
        }
        let mean = |f: fn(&super::WindowLoad) -> f64| {
            windows.iter().map(|w| f(w) * w.seconds).sum::<f64>() / seconds
        };
        Some(IntervalLoad {
            steal_cores: mean(|w| w.steal_cores),
            other_cores: mean(|w| w.other_cores),
            seconds,
        })
    }
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
    /// The runner's heap as its allocator (glibc's `mallinfo2`) counts it:
    /// bytes in use, and bytes freed but still held from the system. RSS
    /// growing with the first flat is the allocator's keeping, not data the
    /// runner holds. Absent where the allocator does not say.
    #[serde(default)]
    pub heap: Option<RunnerHeap>,
}

/// The allocator's view of the runner's heap at one reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub struct RunnerHeap {
    /// Allocated and not freed (arena chunks and mmapped blocks).
    pub in_use_bytes: u64,
    /// Free chunks the arenas count, whether or not their pages were
    /// handed back to the system (malloc_trim returns pages, not chunks).
    pub free_held_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::WindowLoad;

    fn window(seconds: f64, steal: f64, other: f64) -> WindowLoad {
        WindowLoad {
            pass: "main".into(),
            phase: 0,
            opened_unix_s: 0.0,
            seconds,
            steal_cores: steal,
            irq_cores: 0.3,
            targets_cores: 1.2,
            runner_cores: 0.2,
            other_cores: other,
        }
    }

    #[test]
    fn an_intervals_load_is_the_mean_weighted_by_window_length() {
        let l = IntervalLoad::over(&[window(100.0, 0.9, 0.0), window(50.0, 0.3, 0.6)])
            .expect("two windows");
        assert!((l.steal_cores - 0.7).abs() < 1e-12, "{l:?}");
        assert!((l.other_cores - 0.2).abs() < 1e-12, "{l:?}");
        assert_eq!(l.seconds, 150.0);
        assert_eq!(IntervalLoad::over(&[]), None);
        assert_eq!(IntervalLoad::over(&[window(0.0, 1.0, 1.0)]), None);
    }
}
