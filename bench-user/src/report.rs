//! report: the `report.json` contract.
//!
//! Every other output (report.md, the terminal summary, later HTML, pprof and
//! comparisons) is rendered from this structure, and tools read only it.
//! Bump [`SCHEMA_VERSION`] on any change that breaks a reader. A number that
//! could not be measured is absent (`null`) or `{"unavailable": reason}`,
//! never a guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::drive::{IntegrityStatus, PhaseResult};

/// Version of the report.json layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub run: RunInfo,
    pub workload: Workload,
    pub targets: Vec<Target>,
    pub probes: ProbesInfo,
    /// Output name → file name in the run directory.
    pub outputs: BTreeMap<String, String>,
    /// Things the reader should know about this run's numbers.
    pub warnings: Vec<String>,
}

/// What was run, and what defines it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// BLAKE3 (hex) of the effective spec, the endpoint binaries and the
    /// kernel release: two runs with the same id ran the same thing.
    pub id: String,
    pub profile: String,
    pub protocol: String,
    pub description: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Wall time of the whole run, start-up to report.
    pub duration_s: f64,
    /// Sum of the measured windows.
    pub measured_s: f64,
    pub kernel: String,
    pub cpus: usize,
    pub tool_version: String,
    /// The inputs hashed into the id.
    pub inputs: Vec<Input>,
    /// "ok", "failed: …" or "interrupted".
    pub status: String,
}

/// One input of the run id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub what: String,
    pub path: String,
    pub blake3: String,
}

/// The traffic that was driven through the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// `ok` only when every phase's hashes matched.
    pub integrity: IntegrityStatus,
    /// Payload bytes generator → sink, all phases, whole connections.
    pub bytes_up: u64,
    /// Payload bytes sink → generator.
    pub bytes_down: u64,
    pub phases: Vec<PhaseResult>,
}

/// One profiled endpoint process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// "client" or "server".
    pub role: String,
    pub pid: u32,
    pub exe: String,
    /// The command line; reference endpoints only carry ports and settings.
    pub command: Vec<String>,
    /// VmHWM at the end of the run, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Set when the process exited before the runner stopped it.
    pub exited: Option<String>,
    /// Counter name → `{"value": n}` or `{"unavailable": reason}`, over the
    /// measured windows, all threads.
    pub counters: BTreeMap<String, crate::capture::Reading>,
    /// Sorted by total time, largest first.
    pub syscalls: Vec<SyscallRow>,
    pub cpu: CpuSummary,
}

/// One syscall of one target over the measured windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyscallRow {
    pub name: String,
    pub nr: u32,
    pub count: u64,
    pub errors: u64,
    pub total_ns: u64,
    pub mean_ns: f64,
    pub max_ns: u64,
    /// Bytes moved (read/write/send/recv family; 0 for the others).
    pub bytes: u64,
    /// Non-empty log2 buckets: calls that took `[ge_ns, lt_ns)`.
    pub latency: Vec<LatencyBucket>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyBucket {
    pub ge_ns: u64,
    pub lt_ns: u64,
    pub count: u64,
}

/// On-CPU samples of one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuSummary {
    pub samples: u64,
    /// Samples whose user stack could not be walked.
    pub missed_user_stacks: u64,
    /// Median user-stack depth in frames, by sample.
    pub median_user_depth: Option<u64>,
    /// By self samples (the innermost frame), largest first.
    pub top_functions: Vec<FunctionCost>,
    /// Samples per thread name.
    pub threads: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionCost {
    pub name: String,
    pub self_samples: u64,
    /// self_samples / all samples of this target.
    pub self_share: f64,
    /// Samples with the function anywhere on the stack.
    pub total_samples: u64,
}

/// Which probes ran and what they cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbesInfo {
    pub syscalls: bool,
    pub cpu_frequency_hz: Option<u64>,
    pub counters: bool,
    /// Measured windows the probes were switched on for.
    pub windows: u32,
    /// The kernel's run count and run time of each BPF program over the
    /// whole run (these programs see every process, then filter).
    pub program_costs: Vec<crate::capture::ProgramCost>,
}
