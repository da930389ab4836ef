//! The targets section: each profiled endpoint process and what it did.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which endpoint of the chain a target is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SOCKS5 in, protocol out.
    Client,
    /// Protocol in, TCP out.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A perf counter's value over a window, or why there is none (serialized
/// as `{"value": n}` or `{"unavailable": "reason"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    Value(u64),
    Unavailable(String),
}

/// One allocator entry point the alloc probe attached to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocAttach {
    pub symbol: String,
    pub file: String,
    /// The counting role (malloc, calloc, …, free, runtime.mallocgc).
    pub role: String,
    /// Whether its return was probed too (for live bytes).
    pub return_probe: bool,
}

/// One profiled endpoint process.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Target {
    pub role: Role,
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
    pub counters: BTreeMap<String, Reading>,
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
    /// Syscalls, counters, CPU costs, off-CPU time, allocations and crypto
    /// calls split by phase (one measured window each).
    #[serde(default)]
    pub phases: Vec<PhaseFigures>,
    /// The phases the per-byte, per-MiB, per-read/write metrics and the
    /// CPU shares cover (and `costs`): the bulk phases when there are any
    /// (a request/response phase's costs per byte measure its pattern, not
    /// the data path, and would make those metrics follow the mix of
    /// phases).
    #[serde(default)]
    pub metrics_phases: Vec<usize>,
    /// For each metric in `metrics`: the pass and the phases its figures
    /// come from.
    #[serde(default)]
    pub metric_scopes: BTreeMap<String, MetricScope>,
    /// The target's processes: its own, then those it forked (or forked
    /// and exec'd) while followed, which the figures above include. Empty
    /// in reports from before processes were followed.
    #[serde(default)]
    pub processes: Vec<super::processes::TargetProcess>,
    /// How the target's resources grew after warm-up, per hour and per
    /// connection served (from `resources`); absent without readings.
    #[serde(default)]
    pub leak: Option<super::LeakSummary>,
}

/// Where a metric's figures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricScope {
    pub pass: MetricPass,
    /// The phases (measured windows) whose figures it divides, numerator
    /// and denominator alike; empty for whole-run figures (`pass: run`).
    pub phases: Vec<usize>,
    /// For a share: how many things it is a fraction of (CPU samples,
    /// syscalls, crypto calls, TCP sockets); for a percentile: the
    /// connections behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// For a share of CPU samples: its 95 % interval (the cost category's).
    /// Shares of exact counts (syscalls, calls, sockets) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<super::ShareInterval>,
}

/// What stands behind a share or percentile: `MetricScope::samples` and
/// `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvidence {
    pub samples: u64,
    pub interval: Option<super::ShareInterval>,
}

/// Which pass a metric's figures were measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricPass {
    /// The main pass (syscalls, cpu, off-CPU, counters).
    Main,
    /// The per-call pass (alloc and crypto probes), or the main pass when
    /// the per-call probes ran in it (`probes.per_call_window_bytes`).
    PerCall,
    /// The whole life of the process or run (peak RSS, live heap, sockets,
    /// connection set-up).
    Run,
}

/// What one target did in one phase's measured window.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PhaseFigures {
    pub phase: usize,
    pub syscalls: Vec<SyscallCount>,
    /// Counter name → value in this window, or why there is none.
    pub counters: BTreeMap<String, Reading>,
    /// This window's CPU by cost category: its samples, its CPU time, its
    /// payload bytes. Absent when the cpu probe was off.
    #[serde(default)]
    pub costs: Option<CostAttribution>,
    /// Off-CPU time in this window, µs, intervals split at its edges;
    /// absent when the offcpu probe was off.
    #[serde(default)]
    pub offcpu_us: Option<u64>,
    /// Allocations in this phase's window of the pass the alloc probe ran
    /// in; absent when it was off.
    #[serde(default)]
    pub alloc: Option<PhaseAlloc>,
    /// Crypto calls in this phase's window of the pass the crypto probe ran
    /// in; absent when it was off.
    #[serde(default)]
    pub crypto: Option<PhaseCrypto>,
}

/// Allocations of one phase window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseAlloc {
    /// Calls of every allocating role (all but free).
    pub calls: u64,
    /// Bytes they requested.
    pub bytes: u64,
    /// Allocations of 4 KiB or more.
    pub buffer_calls: u64,
    pub frees: u64,
}

/// Cipher calls of one phase window (handshake markers left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseCrypto {
    pub calls: u64,
    /// Calls of software fallbacks.
    pub software_calls: u64,
    /// Calls of record-carrying symbols whose length argument is known, and
    /// those lengths (the record size's numerator and denominator).
    pub length_calls: u64,
    pub length_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct SyscallCount {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
}

/// A metric's value, or why there is none (serialized as `{"value": x}` or
/// `{"unavailable": "reason"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

/// One target's CPU split by cost category (profiles/attribution.toml),
/// over the phases in `phases`: samples, CPU time and bytes all of those
/// phases' windows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CostAttribution {
    /// The phases (measured windows) covered; empty in reports written
    /// before costs were split by phase (there: every phase).
    #[serde(default)]
    pub phases: Vec<usize>,
    /// CPU samples of the target in those windows.
    pub samples: u64,
    /// The target's CPU time in those windows, ns.
    pub cpu_ns: f64,
    /// Where `cpu_ns` comes from: "task-clock counter" or "samples ×
    /// sampling period".
    pub cpu_ns_source: String,
    /// Payload bytes through the chain in those windows (both directions).
    pub bytes: u64,
    /// Every category, in the file's order, including empty ones.
    pub categories: Vec<CategoryCost>,
    /// The functions of the "other" category, by self samples: what the
    /// patterns missed.
    pub unclassified: Vec<WeightedName>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CategoryCost {
    pub category: String,
    pub samples: u64,
    /// samples / all samples of the target.
    pub share: f64,
    pub cpu_ns: f64,
    /// cpu_ns / bytes; absent when no bytes moved.
    pub ns_per_byte: Option<f64>,
    /// 95 % interval of `share`, respecting that consecutive samples are
    /// correlated.
    pub interval: super::ShareInterval,
    /// Our probes' own cost (the `profiler` category), shown apart from the target's.
    #[serde(default)]
    pub measuring: bool,
}

/// TCP socket options of one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SocketSummary {
    /// Connected TCP sockets seen.
    pub tcp: u32,
    /// TCP sockets with SO_KEEPALIVE on, of those where it could be read.
    pub keepalive: u32,
    /// TCP sockets with TCP_NODELAY on, of those where it could be read.
    pub nodelay: u32,
    /// TCP sockets whose SO_KEEPALIVE could not be read: neither on nor off.
    #[serde(default)]
    pub keepalive_unknown: u32,
    /// TCP sockets whose TCP_NODELAY could not be read.
    #[serde(default)]
    pub nodelay_unknown: u32,
    /// Sockets that could not be borrowed (pidfd_getfd failed other than
    /// by the fd closing meanwhile): their kind and options are unknown.
    #[serde(default)]
    pub unreadable: u32,
    /// UDP sockets (QUIC); their keep-alive lives in the protocol.
    pub udp: u32,
    /// Connected TCP sockets accepted on the endpoint's listening port.
    pub inbound: u32,
    /// Connected TCP sockets to the next hop's port (client → server).
    pub upstream: u32,
}

/// What protoprof could learn about a target's binary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct BinaryInfo {
    pub is_go: bool,
    pub has_symbols: bool,
    /// Why a probe was not attached somewhere.
    pub notes: Vec<String>,
}

/// Time the target's threads spent off CPU (blocked or waiting to run).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OffCpuSummary {
    pub total_us: u64,
    /// Where threads blocked: the innermost user function of the stack they
    /// were switched out in, by time.
    pub top_blocking: Vec<WeightedName>,
}

/// A name with a weight (µs, bytes, calls… as the field says).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WeightedName {
    pub name: String,
    pub weight: u64,
    /// weight / total of the list's population.
    pub share: f64,
}

/// Allocations of one target over the measured windows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocSummary {
    /// The entry points probed (which allocator the target really uses).
    pub attached: Vec<AllocAttach>,
    /// Exact calls and requested bytes per entry point role.
    pub by_function: Vec<AllocFunction>,
    /// Calls of every allocating role (all but free).
    pub calls: u64,
    pub bytes: u64,
    pub frees: u64,
    /// Calls per log2 size bucket, all allocating roles.
    pub size_histogram: Vec<SizeBucket>,
    /// Mean bytes between stack samples, and samples taken.
    pub sample_bytes: u64,
    pub samples: u64,
    /// Functions that allocate (first frame outside the allocator), by
    /// sampled bytes.
    pub top_sites: Vec<WeightedName>,
    /// Sampled bytes allocated during the pass and still not freed at its
    /// end, by site (return probes only; absent otherwise). Each sample
    /// stands for `sample_bytes`, so a site needs several samples before
    /// its figure means much. unfreed.svg has the whole stacks.
    pub unfreed: Option<UnfreedSummary>,
    /// Live sampled bytes over time (return probes only), seconds since the
    /// run started.
    pub live_bytes: Vec<LiveSample>,
}

/// What a target allocated and never freed while the alloc probe ran.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UnfreedSummary {
    /// Sampled bytes not freed (each sample worth `sample_bytes`).
    pub bytes: u64,
    /// Allocation sites (the innermost frame outside the allocator) by
    /// those bytes.
    pub sites: Vec<WeightedName>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocFunction {
    pub function: String,
    pub calls: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LiveSample {
    pub t_s: f64,
    pub bytes: i64,
}

/// Crypto of one target over the measured windows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CryptoSummary {
    /// Every probed symbol, with what it did.
    pub symbols: Vec<CryptoSymbolRow>,
    /// This target's CPU samples in the `crypto` cost category (the same
    /// matcher and phases as `costs`, so the same number); absent without
    /// the cpu probe.
    pub cpu_share: Option<CryptoCpuShare>,
}

/// The crypto cost category's share of a target's CPU samples, with the
/// samples behind it and its 95 % interval (the category's, from `costs`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CryptoCpuShare {
    pub share: f64,
    /// Samples with crypto on the stack.
    pub crypto_samples: u64,
    /// All the target's samples: the share's denominator.
    pub samples: u64,
    pub interval: super::ShareInterval,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CryptoSymbolRow {
    pub symbol: String,
    pub file: String,
    pub family: String,
    pub primitive: String,
    pub accel: String,
    /// Counted over the whole run, connection set-up included (handshake
    /// markers, ECH's HPKE); the other rows count inside the windows only.
    pub connection_setup: bool,
    /// One call is one record or packet; `false` for a helper called for
    /// pieces of one (left out of the record size).
    #[serde(default = "one_call_one_record")]
    pub record: bool,
    pub calls: u64,
    /// Bytes, where the length argument is known.
    pub bytes: Option<u64>,
    /// Mean time per call, where the return was probed.
    pub mean_ns: Option<f64>,
    pub latency: Vec<LatencyBucket>,
}

/// Figures of the threads sharing one name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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

/// Calls that took `[ge_ns, lt_ns)` nanoseconds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LatencyBucket {
    pub ge_ns: u64,
    pub lt_ns: u64,
    pub count: u64,
}

/// Allocations that asked for `[ge_bytes, lt_bytes)` bytes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SizeBucket {
    pub ge_bytes: u64,
    pub lt_bytes: u64,
    pub count: u64,
}

/// On-CPU samples of one target.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FunctionCost {
    pub name: String,
    pub self_samples: u64,
    /// self_samples / all samples of this target.
    pub self_share: f64,
    /// Samples with the function anywhere on the stack.
    pub total_samples: u64,
}

/// Rows written before `record` existed counted every call as a record.
fn one_call_one_record() -> bool {
    true
}
