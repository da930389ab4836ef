//! report: the `report.json` contract.
//!
//! Every other output (report.md, the terminal summary, HTML, pprof and
//! comparisons) is rendered from this structure, and tools read only it.
//! Its types are its own, split by section: the runtime's types (capture,
//! drive, chain) convert into them in [`from_run`] alone, so a change of a
//! probe or of the load generator cannot silently change what compare and
//! baselines read back. New fields are added here, not to runtime types.
//!
//! Bump [`SCHEMA_VERSION`] on any change that breaks a reader; readers
//! refuse any other version with one line ([`read`]). A number that could
//! not be measured is absent (`null`) or `{"unavailable": reason}`, never a
//! guess. The folded stacks live in side files (`stacks/*.folded`) that the
//! report names with their BLAKE3 ([`stacks`]); `docs/report.schema.json`
//! is the JSON Schema of this module's types (`protoprof schema` prints
//! it).

mod checklist;
pub mod from_run;
mod leak;
mod network;
mod probes;
pub mod processes;
mod resources;
mod run;
mod soak;
pub mod stacks;
mod stress;
mod target;
mod uncertainty;
mod workload;

use std::{collections::BTreeMap, path::Path};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use checklist::{CipherBench, RuleResult, Verdict};
pub use leak::{BaselineCheck, HeldCounts, LeakSummary, ResourceSlope, SlopeInterval};
pub use network::{
    DelayLineReport, HostAddress, LinkMeasure, LinkReport, LinkSettings, LinkWindow, LossInterval,
    NetworkReport, RttReport, TcpSegments,
};
pub use probes::{
    AllocProbeOptions, Alternation, CryptoProbeOptions, FullMap, Overhead, ProbeOptions,
    ProbesInfo, ProgramCost, StackCopies,
};
pub use processes::TargetProcess;
pub use resources::{resources, FdCounts, ResourcePoint, Resources, TargetResources, TcpCounts};
pub use run::{Input, Machine, RunInfo};
pub use soak::{
    IntervalLoad, IntervalTarget, RunnerHeap, RunnerReading, SoakInterval, SoakPhase, SoakReport,
    SoakTarget, SOAK_SCHEMA_VERSION,
};
pub use stacks::{FoldedGraph, FoldedStack, StackFile};
pub use stress::{
    Churn, ConcurrencySweep, Failures, LevelStop, LevelTarget, Limits, Schedule, SweepLevel,
};
pub use target::{
    AllocAttach, AllocFunction, AllocSummary, BinaryInfo, CategoryCost, CostAttribution,
    CpuSummary, CryptoCpuShare, CryptoSummary, CryptoSymbolRow, FunctionCost, LatencyBucket,
    LiveSample, Metric, MetricEvidence, MetricPass, MetricScope, OffCpuSummary, PhaseAlloc,
    PhaseCrypto, PhaseFigures, Reading, Role, SizeBucket, SocketSummary, SyscallCount, SyscallRow,
    Target, ThreadSummary, UnfreedSummary, WeightedName,
};
pub use uncertainty::{Percentile, PercentileEstimate, ShareInterval};
pub use workload::{
    ConnectionBytes, Goodput, Integrity, IntegrityStatus, LatencySummary, PassIntegrity, Phase,
    RateLimit, SecondSample, SetupPhase, Throughput, WindowLoad, Workload,
};

/// Version of the report.json layout.
pub const SCHEMA_VERSION: u32 = 3;

/// One run's report: the entry point of everything it wrote.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Always `SCHEMA_VERSION` (3) for this protoprof.
    #[schemars(range(min = SCHEMA_VERSION, max = SCHEMA_VERSION))]
    pub schema_version: u32,
    pub run: RunInfo,
    pub workload: Workload,
    pub targets: Vec<Target>,
    pub probes: ProbesInfo,
    /// Output name → file name in the run directory.
    pub outputs: BTreeMap<String, String>,
    /// Things the reader should know about this run's numbers.
    pub warnings: Vec<String>,
    /// Every rule of the optimization checklist, per target.
    pub checklist: Vec<RuleResult>,
    /// Micro-benchmarks of the ciphers on this machine, the yardstick of
    /// the crypto ns/byte rule.
    pub calibration: Vec<CipherBench>,
    /// The side files holding each graph's folded stacks, with their
    /// BLAKE3, so that flame graphs, pprof and differential graphs render
    /// from this file and what it names.
    pub stacks: Vec<StackFile>,
    /// Each target's memory, descriptors, threads, CPU and TCP sockets,
    /// read once a second for the whole run; absent in reports written
    /// before it existed.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// The concurrency sweeps of the profile, with per-level figures.
    #[serde(default)]
    pub sweeps: Vec<ConcurrencySweep>,
    /// Where the hosts ran and what the link did; absent on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkReport>,
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: schema_version {found} is not this protoprof's {SCHEMA_VERSION}; re-run the profile (or re-record the baseline) with this protoprof")]
    Version { path: String, found: String },
    #[error("{0}")]
    Stacks(#[from] stacks::StackError),
}

/// Read a `report.json`, refusing any schema but [`SCHEMA_VERSION`] before
/// looking at the rest (an older report fails on its version, not on the
/// first field that moved).
pub fn read(path: &Path) -> Result<Report, ReportError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: shown.clone(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ReportError::Parse {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    match value.get("schema_version") {
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        other => {
            return Err(ReportError::Version {
                path: shown,
                found: other.map_or_else(|| "(missing)".to_string(), |v| v.to_string()),
            })
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| ReportError::Parse {
        path: shown,
        message: format!("field {}: {}", e.path(), e.inner()),
    })
}

/// The JSON Schema of [`Report`], as published in docs/report.schema.json.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Report)).unwrap_or_default()
}
