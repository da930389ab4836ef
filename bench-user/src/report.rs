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
pub const SCHEMA_VERSION: u32 = 2;

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
    /// Every rule of the optimization checklist, per target.
    pub checklist: Vec<RuleResult>,
    /// Micro-benchmarks of the ciphers on this machine, the yardstick of
    /// the crypto ns/byte rule.
    pub calibration: Vec<CipherBench>,
    /// The folded stacks of every graph, so that flame graphs, pprof and
    /// differential graphs render from this file alone.
    pub stacks: Vec<FoldedGraph>,
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
    /// BLAKE3 (hex) of the effective spec alone (after overrides and
    /// duration): half of a baseline's key.
    pub spec_blake3: String,
    /// The machine it ran on: the other half.
    pub machine: Machine,
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
    /// Absent when the offcpu probe was off.
    pub offcpu: Option<OffCpuSummary>,
    /// Absent when the alloc probe was off.
    pub alloc: Option<AllocSummary>,
    /// Absent when the crypto probe was off.
    pub crypto: Option<CryptoSummary>,
    /// The same figures split by thread name (threads of one name merged,
    /// e.g. all tokio workers).
    pub threads: Vec<ThreadSummary>,
    /// Whether the binary is Go, and whether it has symbols to name frames.
    pub binary: BinaryInfo,
    /// Where the CPU went, by cost category; absent when the cpu probe was
    /// off.
    pub costs: Option<CostAttribution>,
    /// The checklist's metrics (see `analyze::metrics::CATALOGUE`), each a
    /// value or the reason it is missing.
    pub metrics: BTreeMap<String, Metric>,
    /// Options of the target's TCP sockets, inspected mid-run; absent when
    /// they could not be read.
    pub sockets: Option<SocketSummary>,
    /// Syscalls and counters split by phase (one measured window each).
    #[serde(default)]
    pub phases: Vec<PhaseFigures>,
    /// The phases the per-MiB, per-read/write and CPU-per-byte metrics
    /// cover: the bulk phases when there are any (a request/response
    /// phase's syscalls per byte measure its pattern, not the data path,
    /// and would make those metrics follow the mix of phases).
    #[serde(default)]
    pub metrics_phases: Vec<usize>,
}

/// What one target did in one phase's measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseFigures {
    pub phase: usize,
    pub syscalls: Vec<SyscallCount>,
    /// Counter name → value in this window, or why there is none.
    pub counters: BTreeMap<String, crate::capture::Reading>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyscallCount {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
}

/// Identity of the machine a run measured: what makes numbers comparable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Machine {
    /// BLAKE3 (hex) of the fields below.
    pub fingerprint: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    pub kernel: String,
}

/// A metric's value, or why there is none (serialized as `{"value": x}` or
/// `{"unavailable": "reason"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Value(f64),
    Unavailable(String),
}

impl Metric {
    pub fn value(&self) -> Option<f64> {
        match self {
            Metric::Value(v) => Some(*v),
            Metric::Unavailable(_) => None,
        }
    }
}

/// One target's CPU split by cost category (profiles/attribution.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostAttribution {
    /// CPU samples of the target in the measured windows.
    pub samples: u64,
    /// The target's CPU time in the windows, ns.
    pub cpu_ns: f64,
    /// Where `cpu_ns` comes from: "task-clock counter" or "samples ×
    /// sampling period".
    pub cpu_ns_source: String,
    /// Payload bytes through the chain in the windows (both directions).
    pub bytes: u64,
    /// Every category, in the file's order, including empty ones.
    pub categories: Vec<CategoryCost>,
    /// The functions of the "other" category, by self samples: what the
    /// patterns missed.
    pub unclassified: Vec<WeightedName>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryCost {
    pub category: String,
    pub samples: u64,
    /// samples / all samples of the target.
    pub share: f64,
    pub cpu_ns: f64,
    /// cpu_ns / bytes; absent when no bytes moved.
    pub ns_per_byte: Option<f64>,
    /// The profiler's own probes, not the target's work (the `profiler`
    /// category): shown apart from the target's costs.
    #[serde(default)]
    pub measuring: bool,
}

/// TCP socket options of one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SocketSummary {
    /// Connected TCP sockets seen.
    pub tcp: u32,
    pub keepalive: u32,
    pub nodelay: u32,
    /// UDP sockets (QUIC); their keep-alive lives in the protocol.
    pub udp: u32,
    /// Connected TCP sockets accepted on the endpoint's listening port.
    pub inbound: u32,
    /// Connected TCP sockets to the next hop's port (client → server).
    pub upstream: u32,
}

/// How one checklist rule judged one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleResult {
    pub id: String,
    pub area: String,
    pub title: String,
    /// The target's role ("client", "server").
    pub target: String,
    pub verdict: Verdict,
    pub metric: String,
    /// The measured value, when there is one.
    pub value: Option<f64>,
    pub unit: String,
    /// The measured numbers behind the verdict, or why it was not
    /// evaluated.
    pub evidence: String,
    /// What to change; empty when the verdict is ok.
    pub recommendation: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    NotEvaluated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::NotEvaluated => "not evaluated",
        }
    }
}

/// A cipher's speed on this machine, measured by protoprof in-process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CipherBench {
    /// As the crypto families name it ("aes-gcm", "chacha20-poly1305").
    pub primitive: String,
    /// The exact algorithm and implementation timed.
    pub implementation: String,
    pub record_bytes: u64,
    pub ns_per_byte: f64,
}

/// One graph's folded stacks: `role;thread;outermost;…;leaf` with a count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldedGraph {
    /// File stem: "cpu", "offcpu", "alloc", "alloc-count", "syscalls".
    pub name: String,
    pub title: String,
    /// What a count is: "samples", "us", "bytes", "calls".
    pub unit: String,
    pub stacks: Vec<FoldedStack>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FoldedStack {
    /// Frames joined by ';', outermost first; kernel frames end in `_[k]`.
    pub stack: String,
    pub count: u64,
}

/// What protoprof could learn about a target's binary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BinaryInfo {
    pub is_go: bool,
    pub has_symbols: bool,
    /// Why a probe was not attached somewhere.
    pub notes: Vec<String>,
}

/// Time the target's threads spent off CPU (blocked or waiting to run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OffCpuSummary {
    pub total_us: u64,
    /// Where threads blocked: the innermost user function of the stack they
    /// were switched out in, by time.
    pub top_blocking: Vec<WeightedName>,
}

/// A name with a weight (µs, bytes, calls… as the field says).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightedName {
    pub name: String,
    pub weight: u64,
    /// weight / total of the list's population.
    pub share: f64,
}

/// Allocations of one target over the measured windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocSummary {
    /// The entry points probed (which allocator the target really uses).
    pub attached: Vec<crate::capture::AllocAttach>,
    /// Exact calls and requested bytes per entry point role.
    pub by_function: Vec<AllocFunction>,
    /// Calls of every allocating role (all but free).
    pub calls: u64,
    pub bytes: u64,
    pub frees: u64,
    /// Calls per log2 size bucket, all allocating roles.
    pub size_histogram: Vec<LatencyBucket>,
    /// Mean bytes between stack samples, and samples taken.
    pub sample_bytes: u64,
    pub samples: u64,
    /// Functions that allocate (first frame outside the allocator), by
    /// sampled bytes.
    pub top_sites: Vec<WeightedName>,
    /// Live sampled bytes over time (return probes only), seconds since the
    /// run started.
    pub live_bytes: Vec<LiveSample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocFunction {
    pub function: String,
    pub calls: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveSample {
    pub t_s: f64,
    pub bytes: i64,
}

/// Crypto of one target over the measured windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CryptoSummary {
    /// Every probed symbol, with what it did.
    pub symbols: Vec<CryptoSymbolRow>,
    /// Share of this target's CPU samples with a crypto function on the
    /// stack (from the cpu probe, at no extra cost); absent without it.
    pub cpu_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CryptoSymbolRow {
    pub symbol: String,
    pub file: String,
    pub family: String,
    pub primitive: String,
    pub accel: String,
    pub calls: u64,
    /// Bytes, where the length argument is known.
    pub bytes: Option<u64>,
    /// Mean time per call, where the return was probed.
    pub mean_ns: Option<f64>,
    pub latency: Vec<LatencyBucket>,
}

/// Figures of the threads sharing one name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadSummary {
    pub name: String,
    pub threads: usize,
    pub cpu_samples: u64,
    pub offcpu_us: u64,
    pub syscalls: u64,
    pub syscall_bytes: u64,
    pub alloc_calls: u64,
    pub alloc_bytes: u64,
    /// From the perf counters of these threads (and of the threads they
    /// started after protoprof attached); absent when counters were off.
    pub task_clock_ns: Option<u64>,
    pub context_switches: Option<u64>,
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
    pub options: crate::capture::CaptureOptions,
    /// Measured windows the probes were switched on for.
    pub windows: u32,
    /// The kernel's run count and run time of each BPF program over the
    /// whole run (tracepoint and perf programs see every process, then
    /// filter).
    pub program_costs: Vec<crate::capture::ProgramCost>,
    /// Throughput with the probes against without, per phase, when the
    /// profile ran a control pass.
    pub overhead: Vec<Overhead>,
    /// The pass that measured the per-call probes (alloc, crypto), when it
    /// ran apart: its throughput against the main pass's (`ratio` < 1 is
    /// what a trap per call costs). Their counts in `targets` come from it.
    pub per_call_pass: Vec<Overhead>,
    /// Payload bytes (both directions) in the measured windows of the pass
    /// the per-call probes counted in: the denominator of allocations and
    /// crypto per byte.
    pub per_call_window_bytes: Option<u64>,
}

/// One phase run twice: as a baseline and with (more) probes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overhead {
    pub phase: usize,
    pub pattern: String,
    /// Median bytes/s (up + down) of the baseline run.
    pub baseline_bps: f64,
    /// The same with the probes in question.
    pub probed_bps: f64,
    /// probed / baseline (1.0 = no cost).
    pub ratio: f64,
    /// rr only: round trips per second, baseline and probed.
    pub baseline_rps: Option<f64>,
    pub probed_rps: Option<f64>,
}
