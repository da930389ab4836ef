//! The probes section: which probes ran, with what settings, and what they
//! cost.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which probes ran and what they cost.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProbesInfo {
    pub options: ProbeOptions,
    /// Measured windows the probes were switched on for.
    pub windows: u32,
    /// The kernel's run count and run time of each BPF program over the
    /// whole run (tracepoint and perf programs see every process, then
    /// filter).
    pub program_costs: Vec<ProgramCost>,
    /// Throughput with the probes against without, per phase, when the
    /// profile ran a control pass.
    pub overhead: Vec<Overhead>,
    /// The main pass's programs' cost measured side by side, per phase,
    /// when they were detached and attached again second by second
    /// (`probes.alternate`); empty otherwise.
    #[serde(default)]
    pub alternating: Vec<Alternation>,
    /// The pass that measured the per-call probes (alloc, crypto), when it
    /// ran apart: its throughput against the main pass's (`ratio` < 1 is
    /// what a trap per call costs). Their counts in `targets` come from it.
    pub per_call_pass: Vec<Overhead>,
    /// Payload bytes (both directions) in the measured windows of the pass
    /// the per-call probes counted in: the denominator of allocations and
    /// crypto per byte.
    pub per_call_window_bytes: Option<u64>,
    /// The same per phase, in phase order (empty when the per-call probes
    /// ran in the main pass: then the workload's phases hold them).
    #[serde(default)]
    pub per_call_phase_window_bytes: Vec<u64>,
    /// The probe maps that were full in a pass: the records they could
    /// not hold were not kept, and every figure drawn from such a map
    /// misses them (each is also a warning). Empty when none was.
    #[serde(default)]
    pub full_maps: Vec<FullMap>,
    /// User stacks copied for unwinding from the binaries' tables (code
    /// without frame pointers), per pass; empty when none was copied.
    #[serde(default)]
    pub stack_copies: Vec<StackCopies>,
}

/// The stack copies of one pass: what they held and what unwinding them
/// cost the runner (docs/probes.md has the probes' side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StackCopies {
    /// "main" or "per_call", as in `workload.windows`.
    pub pass: String,
    /// Copies received (CPU samples, off-CPU walks, allocation and syscall
    /// stacks, in and between windows).
    pub copies: u64,
    /// Bytes of stack they held.
    pub bytes: u64,
    /// Copies whose stack could not be read at all.
    pub unreadable: u64,
    /// Copies whose unwinding ran past the copied bytes: their deepest
    /// frames are missing.
    pub cut: u64,
    /// Frames unwound, over all copies.
    pub frames: u64,
    /// The runner's CPU time unwinding them, ns.
    pub unwind_ns: u64,
}

/// A probe map that was full in a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FullMap {
    /// "main" or "per_call", as in `workload.windows`.
    pub pass: String,
    /// The map's name in the probe object (e.g. `CPU_SAMPLES`).
    pub map: String,
    /// Its entries (0: not known).
    pub capacity: u32,
    /// Records that found the map full and were not kept: CPU samples,
    /// off-CPU intervals, first calls of a (thread, syscall), stacks.
    pub lost: u64,
}

/// The probes switched on, and how.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProbeOptions {
    pub syscalls: bool,
    /// Syscalls were timed (`probes.syscall_time`): the syscall rows'
    /// times and latency buckets hold figures. When `false` they were
    /// counted at exit alone and their times are 0 and their buckets
    /// empty. Reports from before the option timed them.
    #[serde(default = "timed_before_the_option")]
    pub syscall_time: bool,
    /// The user stack of one syscall in N was recorded (0 = none).
    pub syscall_stack_every: u64,
    /// CPU samples per second per CPU; absent when the cpu probe was off.
    pub cpu_frequency_hz: Option<u64>,
    pub offcpu: bool,
    /// Off-CPU stacks were walked at most once per this many µs per thread;
    /// the switch-outs between were charged to the last walk's stacks (0 =
    /// walked at every switch-out).
    #[serde(default)]
    pub offcpu_stack_interval_us: u64,
    pub counters: bool,
    /// Absent when the alloc probe was off.
    pub alloc: Option<AllocProbeOptions>,
    /// Absent when the crypto probe was off.
    pub crypto: Option<CryptoProbeOptions>,
    /// How user stacks were taken: `auto`, `frame-pointers` or `dwarf`
    /// (`probes.unwind`); absent in reports from before stacks were copied
    /// (all walked by frame pointer).
    #[serde(default)]
    pub unwind: Option<String>,
    /// `probes.floor`: empty programs stood on the syscalls, cpu and
    /// off-CPU attach points, so those probes recorded nothing; the run
    /// measured what any program there costs (docs/probes.md).
    #[serde(default)]
    pub floor: bool,
    /// `probes.program_costs`: the kernel timed every run of the programs
    /// (`probes.program_costs` holds the times), at two clock reads a run.
    #[serde(default)]
    pub program_costs: bool,
    /// `probes.alternate`: the syscalls, cpu and offcpu programs were
    /// detached and attached again second by second in every measured
    /// window (`probes.alternating` holds what that cost); their figures
    /// then cover only the attached seconds and are not for use.
    #[serde(default)]
    pub alternate: bool,
}

/// The alloc probe's settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocProbeOptions {
    /// Mean bytes allocated between two stack samples.
    pub sample_bytes: u64,
    /// Whether sampled allocations were followed to their free.
    pub live: bool,
}

/// The crypto probe's settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CryptoProbeOptions {
    /// Whether each call was timed with a return probe.
    pub return_probes: bool,
}

/// Run time and run count the kernel kept for one BPF program.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProgramCost {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// One phase's throughput in seconds with the main pass's programs against
/// the adjacent seconds without them (docs/probes.md, "Side by side").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alternation {
    pub phase: usize,
    pub pattern: String,
    /// What was counted per second: "round trips" (rr) or "bytes" (payload,
    /// both ways).
    pub unit: String,
    /// attached / detached, one per pair of adjacent whole seconds, in
    /// window order (pairs alternate which second comes first).
    pub pair_ratios: Vec<f64>,
    /// Their median; absent with no pair.
    pub median_ratio: Option<f64>,
    /// The median's distribution-free bounds (each one-sided 95 %); absent
    /// when the pairs are too few for them.
    pub median_lower: Option<f64>,
    pub median_upper: Option<f64>,
    /// The longest the runner took to detach or attach the programs in
    /// the pass, ms: at most this much of a second ran in the wrong state.
    pub switch_ms_max: f64,
}

/// One phase run twice: as a baseline and with (more) probes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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

/// Reports saved before `probes.syscall_time` existed timed every syscall.
fn timed_before_the_option() -> bool {
    true
}
