//! Types shared by the probes (`bench-ebpf`) and the runner (`bench-user`).
//!
//! Every type here is a BPF map key or value, so each is `#[repr(C)]`, has no
//! implicit padding (the verifier rejects reads of uninitialised stack bytes
//! and hash-map keys must compare byte for byte) and, with the `user` feature,
//! implements `aya::Pod` so the runner can read it out of a map.
#![no_std]

/// Number of log2 buckets in the syscall latency histogram: bucket `b` holds
/// latencies in `[2^b, 2^(b+1))` nanoseconds; the last one is open-ended
/// (2^31 ns is about 2.1 s).
pub const LATENCY_BUCKETS: u32 = 32;

/// Index into the `CONFIG` array map of the word that switches every probe
/// on (1) or off (0). The runner opens it for the measured window only.
pub const CONFIG_ENABLED: u32 = 0;
/// `CONFIG` word: byte offset of `pid` (the thread id) in the kernel's
/// `struct task_struct`, read from the kernel's BTF by the runner (offcpu).
pub const CONFIG_TASK_PID_OFFSET: u32 = 1;
/// `CONFIG` word: byte offset of `tgid` in `struct task_struct`.
pub const CONFIG_TASK_TGID_OFFSET: u32 = 2;
/// `CONFIG` word: mean bytes between allocation stack samples.
pub const CONFIG_ALLOC_SAMPLE_BYTES: u32 = 3;
/// `CONFIG` word: record the user stack of one syscall in N per thread (0 =
/// syscall stacks off).
pub const CONFIG_SYSCALL_STACK_EVERY: u32 = 4;
/// `CONFIG` word: 1 = track live bytes of sampled allocations (the runner
/// sets it only where it attached the allocator's return probes).
pub const CONFIG_ALLOC_LIVE: u32 = 5;
/// `CONFIG` word: CLOCK_MONOTONIC time (ns) the current window opened at:
/// off-CPU intervals are clipped to it, CPU samples take their time slot
/// from it.
pub const CONFIG_WINDOW_START_NS: u32 = 6;
/// `CONFIG` word: index of the current measured window (the phase), or
/// [`OUTSIDE_WINDOWS`] between windows. Every record carries it, so each
/// phase's costs stay apart.
pub const CONFIG_WINDOW_INDEX: u32 = 7;
/// `CONFIG` word: the off-CPU probe walks a thread's stacks at a
/// switch-out only when its last walk is at least this many ns old, and
/// otherwise charges the interval to the stacks of that walk (0 = walk at
/// every switch-out). The walks are most of the probe's cost, paid on the
/// targets' critical path at every switch.
pub const CONFIG_OFFCPU_STACK_INTERVAL_NS: u32 = 8;
/// `CONFIG` words 9..=14: byte offsets in `struct task_struct` of the
/// thread's totals an exit event carries ([`ThreadTotals`]), in its field
/// order: `se.sum_exec_runtime`, `nvcsw`, `nivcsw`, `min_flt`, `maj_flt`,
/// `se.nr_migrations` (0: unknown, the totals are sent as 0).
pub const CONFIG_TASK_TOTALS_OFFSETS: u32 = 9;
/// Number of offsets from [`CONFIG_TASK_TOTALS_OFFSETS`] on.
pub const TASK_TOTALS_FIELDS: u32 = 6;
/// `CONFIG` word: how many slots the syscall probe's in-flight array has
/// (the runner sizes the map to it at load; 0: [`INFLIGHT_SLOTS`]).
pub const CONFIG_INFLIGHT_SLOTS: u32 = CONFIG_TASK_TOTALS_OFFSETS + TASK_TOTALS_FIELDS;
/// Number of words in the `CONFIG` array map.
pub const CONFIG_LEN: u32 = CONFIG_INFLIGHT_SLOTS + 1;

/// Index into the `FULL` per-CPU array map of each map whose inserts can
/// fail once it is full: a hash map holds at most its `max_entries`, and a
/// record that finds no room is gone. The probes count each such record,
/// so that a long pass that kept only its beginning says so.
pub const FULL_CPU_SAMPLES: u32 = 0;
pub const FULL_OFFCPU: u32 = 1;
pub const FULL_SYSCALLS: u32 = 2;
pub const FULL_SYSCALL_STACKS: u32 = 3;
pub const FULL_ALLOC_STATS: u32 = 4;
pub const FULL_ALLOC_HIST: u32 = 5;
pub const FULL_ALLOC_STACKS: u32 = 6;
pub const FULL_CRYPTO: u32 = 7;
pub const FULL_CRYPTO_HIST: u32 = 8;
pub const FULL_USER_STACKS: u32 = 9;
/// A stack copy that found no room in the `STACK_COPIES` ring (the runner
/// drains it too slowly): the record keeps a frame-pointer walk instead.
pub const FULL_STACK_COPIES: u32 = 10;
/// The maps of the `FULL_*` indices, by index.
pub const FULL_MAPS: [&str; 11] = [
    "CPU_SAMPLES",
    "OFFCPU",
    "SYSCALLS",
    "SYSCALL_STACKS",
    "ALLOC_STATS",
    "ALLOC_HIST",
    "ALLOC_STACKS",
    "CRYPTO",
    "CRYPTO_HIST",
    "USER_STACKS",
    "STACK_COPIES",
];
/// Number of words in the `FULL` map.
pub const FULL_LEN: u32 = FULL_MAPS.len() as u32;

/// The window index of what is recorded between windows (handshake
/// markers only). Window indices stay below it.
pub const OUTSIDE_WINDOWS: u32 = 0xffff;

/// Length of a CPU sample's time slot within its window: consecutive slots
/// are the blocks the share intervals resample (samples carry no time of
/// their own).
pub const TIME_SLOT_NS: u64 = 100_000_000;

/// The time slot of `now_ns` in a window opened at `start_ns`, clamped to
/// what a key's 16 bits hold.
#[inline(always)]
pub fn time_slot(now_ns: u64, start_ns: u64) -> u16 {
    let slot = now_ns.saturating_sub(start_ns) / TIME_SLOT_NS;
    if slot > 0xfffe {
        0xfffe
    } else {
        slot as u16
    }
}

/// The processes the probes record: key = tgid, value = role index (with
/// [`TARGET_FOLLOWED`] set for the processes a target forked). Room for
/// the children of a server that forks a worker per connection: the
/// probes drop a child from the map when it exits.
pub const MAX_TARGETS: u32 = 8192;

/// `TARGETS` value bit: the process was added by the probes when a target
/// forked it (a followed child), not by the runner.
pub const TARGET_FOLLOWED: u32 = 1 << 31;

/// [`ProcessEvent::kind`]: a target forked a new process (`pid`).
pub const PROCESS_FORK: u32 = 0;
/// [`ProcessEvent::kind`]: a target process (`pid`) called execve.
pub const PROCESS_EXEC: u32 = 1;
/// [`ProcessEvent::kind`]: a target process's main thread exited.
pub const PROCESS_EXIT: u32 = 2;
/// [`ProcessEvent::kind`]: another thread of a target process exited.
pub const PROCESS_THREAD_EXIT: u32 = 3;

/// What the kernel counted for one thread over its life: the software
/// counters the runner reads from /proc at window edges, and that an exit
/// event carries for a thread that ends inside a window (it is gone from
/// /proc by the window's close).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadTotals {
    /// On-CPU time, ns (`se.sum_exec_runtime`).
    pub runtime_ns: u64,
    /// Voluntary and involuntary context switches.
    pub context_switches: u64,
    /// Minor and major page faults.
    pub page_faults: u64,
    /// Moves to another CPU (`se.nr_migrations`).
    pub migrations: u64,
}

/// One event of a target's process tree, sent to the runner through a ring
/// buffer so that it can read the process's mappings while it lives.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    /// `PROCESS_FORK`, `PROCESS_EXEC`, `PROCESS_EXIT` or
    /// `PROCESS_THREAD_EXIT`.
    pub kind: u32,
    /// The process (tgid) the event is about.
    pub pid: u32,
    /// For a fork: the forking process's tgid; else 0.
    pub parent: u32,
    /// The `TARGETS` value of the process (role index, flags).
    pub role: u32,
    /// CLOCK_MONOTONIC ns.
    pub time_ns: u64,
    /// For an exit: the thread that exited (the process's own id for
    /// `PROCESS_EXIT`); else 0.
    pub tid: u32,
    pub _pad: u32,
    /// For an exit: the exiting thread's totals; else zero.
    pub totals: ThreadTotals,
}

/// Slots of the target pre-filter (a power of two): slot `tgid % N` counts
/// the targets whose tgid falls in it. The syscall and sched_switch probes
/// run for every process on the machine; for almost all of them an empty
/// slot (one array load, which the verifier inlines) says "not a target"
/// before any hash lookup.
pub const TARGET_FILTER_SLOTS: u32 = 4096;

/// The pre-filter slot of a tgid.
#[inline(always)]
pub fn target_slot(tgid: u32) -> u32 {
    tgid & (TARGET_FILTER_SLOTS - 1)
}

/// `InFlight::nr` of a thread with no syscall in progress: entries are
/// reused in place rather than deleted (a hash delete takes the bucket
/// lock; a store into the looked-up value does not).
pub const NO_SYSCALL: u32 = u32::MAX;

/// Key of the per-(thread, syscall) statistics.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyscallKey {
    pub tgid: u32,
    pub tid: u32,
    /// Syscall number (x86_64 numbering).
    pub nr: u32,
    pub _pad: u32,
}

/// Key of a sampled syscall stack: which thread entered which syscall from
/// which user stack (a `USER_STACKS` hash).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyscallStackKey {
    pub tgid: u32,
    pub tid: u32,
    pub nr: u32,
    pub _pad: u32,
    pub user_stack: u64,
}

/// Per-(process, syscall) statistics, kept per CPU and summed by the runner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallStats {
    /// Completed calls (counted at syscall exit).
    pub count: u64,
    /// Sum of entry-to-exit times, nanoseconds.
    pub total_ns: u64,
    /// Longest entry-to-exit time on this CPU, nanoseconds.
    pub max_ns: u64,
    /// Bytes moved, from the return values of the read/write/send/recv
    /// family (only successful, positive returns count).
    pub bytes: u64,
    /// Calls that returned an error (negative return value).
    pub errors: u64,
}

/// The syscalls probe's value per (thread, syscall), kept per CPU: the
/// statistics and the log2 latency histogram in one entry, so that a
/// syscall's exit does one hash lookup for both (the cost of measuring:
/// docs/probes.md).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallValue {
    pub stats: SyscallStats,
    /// Calls per latency bucket ([`latency_bucket`]).
    pub latency: [u64; LATENCY_BUCKETS as usize],
}

/// A syscall in progress on one thread, between sys_enter and sys_exit.
/// The entry is also the exit's target check: only a target's threads
/// have one, and `tid`/`tgid` tell a reused (or, in the slot array, a
/// colliding) thread id from the one that made it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub start_ns: u64,
    /// [`NO_SYSCALL`] between calls.
    pub nr: u32,
    pub tgid: u32,
    /// 0: a slot no thread has claimed yet.
    pub tid: u32,
    pub _pad: u32,
}

/// Slots of the syscall probe's in-flight array, indexed by thread id
/// modulo their number, as the probe object declares them: the kernel's
/// default `pid_max`. The runner sizes the array to the machine's
/// `pid_max` (up to [`INFLIGHT_SLOTS_MAX`]) and says so in
/// [`CONFIG_INFLIGHT_SLOTS`]; thread ids collide only beyond it (those
/// threads take a hash map instead).
pub const INFLIGHT_SLOTS: u32 = 32768;
/// The most slots the runner gives the in-flight array: 8 MiB of them.
pub const INFLIGHT_SLOTS_MAX: u32 = 1 << 18;

/// Key of an on-CPU sample: which thread, which user stack (a hash into
/// the `USER_STACKS` map; 0 = not captured) and which kernel stack (an id
/// into the `KERNEL_STACKS` stack-trace map; negative = not captured,
/// holding the helper's error code).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
    pub kernel_stack_id: i32,
    /// The measured window (phase) the sample fell in.
    pub window: u16,
    /// Its [`TIME_SLOT_NS`] slot since the window opened.
    pub slot: u16,
}

/// Key of off-CPU time: a thread, and the user and kernel stacks it blocked
/// in.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffCpuKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
    pub kernel_stack_id: i32,
    /// The measured window the (clipped) interval fell in.
    pub window: u32,
}

/// Off-CPU time of one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuValue {
    pub total_ns: u64,
    pub count: u64,
}

/// A thread switched out, waiting to be switched in again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuStart {
    /// 0 once counted (switched in inside a window).
    pub start_ns: u64,
    pub user_stack: u64,
    pub kernel_stack_id: i64,
    /// The thread's process, so the runner can count the in-window part of
    /// intervals still open when a window closes.
    pub tgid: u32,
    pub _pad: u32,
    /// When `user_stack` and `kernel_stack_id` were walked (CLOCK_MONOTONIC
    /// ns); see [`CONFIG_OFFCPU_STACK_INTERVAL_NS`].
    pub walked_ns: u64,
}

/// Allocator entry points, passed to the probes as the attach cookie.
pub mod alloc_fn {
    pub const MALLOC: u64 = 0;
    pub const CALLOC: u64 = 1;
    pub const REALLOC: u64 = 2;
    pub const POSIX_MEMALIGN: u64 = 3;
    pub const ALIGNED_ALLOC: u64 = 4;
    pub const FREE: u64 = 5;
    /// Go's `runtime.mallocgc(size, typ, needzero)`, size in RAX.
    pub const GO_MALLOCGC: u64 = 6;
    pub const COUNT: usize = 7;
    /// Names, by id.
    pub const NAMES: [&str; COUNT] = [
        "malloc",
        "calloc",
        "realloc",
        "posix_memalign",
        "aligned_alloc",
        "free",
        "runtime.mallocgc",
    ];
}

/// Key of allocation counts: a thread and an allocator entry point.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocKey {
    pub tgid: u32,
    pub tid: u32,
    pub func: u32,
    /// The measured window.
    pub window: u32,
}

/// Allocation counts of one key (per CPU, summed by the runner).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    pub calls: u64,
    /// Bytes requested (0 for free).
    pub bytes: u64,
}

/// Key of the allocation size histogram (log2 of the requested size).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocHistKey {
    pub tgid: u32,
    pub func: u32,
    pub bucket: u32,
    /// The measured window.
    pub window: u32,
}

/// Key of sampled allocation stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocStackKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
    /// The measured window.
    pub window: u32,
    pub _pad: u32,
}

/// What the samples of one allocation stack stand for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStackValue {
    /// Bytes these samples represent (sample count × mean sampling bytes).
    pub bytes: u64,
    /// Allocations they represent (each sample: represented bytes / size).
    pub calls: u64,
    /// Samples taken.
    pub samples: u64,
}

/// A sampled allocation still waiting for its return value (the pointer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocPending {
    pub bytes: u64,
    pub user_stack: u64,
    /// For realloc: the pointer being replaced (freed).
    pub old_ptr: u64,
}

/// A sampled allocation not yet freed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveAlloc {
    pub tgid: u32,
    /// The allocating thread.
    pub tid: u32,
    pub bytes: u64,
    pub user_stack: u64,
}

/// Key of crypto call statistics: a process and a matched symbol (the
/// runner's index, passed as the attach cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CryptoKey {
    pub tgid: u32,
    pub symbol: u32,
    /// The measured window, or [`OUTSIDE_WINDOWS`] (handshake markers).
    pub window: u32,
    pub _pad: u32,
}

/// Crypto call statistics of one key (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CryptoStats {
    pub calls: u64,
    /// Calls whose return was timed (return probes attached).
    pub timed: u64,
    pub total_ns: u64,
    /// Bytes, for symbols whose length argument is known.
    pub bytes: u64,
}

/// Key of the crypto time-per-call histogram.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CryptoHistKey {
    pub tgid: u32,
    pub symbol: u32,
    pub bucket: u32,
    /// The measured window.
    pub window: u32,
}

/// The outermost probed crypto call in progress on one thread, and how
/// many probed calls (itself included) are open in it: a call made while
/// another is open (EVP_CipherUpdate tail-calling EVP_EncryptUpdate,
/// EVP_HPKE_CTX_seal calling EVP_AEAD_CTX_seal) is not counted again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CryptoPending {
    /// When the outermost call began; 0 when it is not timed.
    pub start_ns: u64,
    /// The stack pointer at its entry: a later call with a higher one
    /// cannot be inside it (its return was missed), and starts afresh.
    pub sp: u64,
    pub symbol: u32,
    pub depth: u32,
}

/// Cookie bit of a crypto probe that counts calls whenever its target runs,
/// not only inside measured windows: handshake markers, whose calls happen
/// while connections are set up, before a window opens.
pub const CRYPTO_COUNT_ALWAYS: u64 = 1 << 40;

/// Cookie bit of a crypto probe whose return is probed too: its calls open
/// and close the thread's nesting depth ([`CryptoPending`]). Without a
/// return probe (Go) a call cannot be seen to end, so it is only counted
/// when no other probed call is open.
pub const CRYPTO_NESTS: u64 = 1 << 41;

/// The attach cookie of a crypto probe: symbol index in the low 32 bits,
/// the length argument's index + 1 in bits 32..40 (0 = unknown length),
/// [`CRYPTO_COUNT_ALWAYS`] and [`CRYPTO_NESTS`].
pub fn crypto_cookie(symbol: u32, length_arg: Option<u8>, always: bool, nests: bool) -> u64 {
    let always = if always { CRYPTO_COUNT_ALWAYS } else { 0 };
    let nests = if nests { CRYPTO_NESTS } else { 0 };
    symbol as u64 | (length_arg.map_or(0, |a| a as u64 + 1) << 32) | always | nests
}

/// Most user frames the probes walk.
pub const MAX_USER_FRAMES: usize = 96;

/// A user stack as the probes walked it: return addresses, innermost first
/// (`ips[0]` is the sampled instruction pointer).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UserStack {
    pub len: u64,
    pub ips: [u64; MAX_USER_FRAMES],
}

/// Most bytes of user stack a probe copies, from the stack pointer up, for
/// a stack the runner unwinds from the binaries' unwind tables
/// (`.eh_frame`) rather than by frame pointer; a multiple of the page
/// size (the copy is read page by page). More than perf's default of
/// 8 KiB: a tokio worker's stack is deeper than that (docs/probes.md).
/// Deeper frames than fit are cut off.
pub const STACK_COPY_BYTES: usize = 32768;

/// The off-CPU probe takes a thread's stacks again at a switch-out only
/// this long (ns) after a walk that was a copy, whatever
/// `CONFIG_OFFCPU_STACK_INTERVAL_NS` says: each copy is a key of its own
/// in the off-CPU map (a walk's hash is shared by every walk of that
/// stack), so copies at the walks' 1-ms pace would fill it in seconds.
/// The switch-outs between are charged to the last copy's stacks, as
/// between walks.
pub const OFFCPU_COPY_INTERVAL_NS: u64 = 10_000_000;

/// Most address ranges of frame-pointer code per process in
/// [`UnwindRanges`]; a process with more such modules has the rest copied.
pub const MAX_FRAME_POINTER_RANGES: usize = 6;

/// Top bit of a user-stack reference that names a stack copy (sent through
/// the `STACK_COPIES` ring as a [`StackCopy`] with this tag) rather than a
/// walked stack in `USER_STACKS` (whose hashes keep the bit clear).
pub const STACK_COPY_TAG: u64 = 1 << 63;

/// Which stacks of one process the probes copy (the `UNWIND` map, by
/// tgid; a process without an entry is walked by frame pointer).
/// Written by the runner from the process's modules: code built without
/// frame pointers but with unwind tables is copied for the runner to
/// unwind; code with frame pointers (`fp`, as [start, end) address ranges)
/// is walked in the kernel, which costs less and keeps no copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindRanges {
    /// Ranges in use in `fp`; stacks whose instruction pointer lies in
    /// none of them are copied.
    pub n: u32,
    pub _pad: u32,
    pub fp: [[u64; 2]; MAX_FRAME_POINTER_RANGES],
}

/// A copy of a user stack, with the registers an unwinder starts from,
/// sent to the runner through the `STACK_COPIES` ring. The record that
/// took it (a CPU sample, an off-CPU interval, an allocation) names it by
/// `tag` in its user-stack field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StackCopy {
    /// [`STACK_COPY_TAG`] set, then the CPU (bits 40..63) and a count per
    /// CPU (bits 0..40): unique within a run.
    pub tag: u64,
    pub tgid: u32,
    pub tid: u32,
    /// The user registers: instruction, stack and frame pointer.
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Bytes of `stack` that hold the stack from `sp` up (0: unreadable).
    pub len: u64,
    pub stack: [u8; STACK_COPY_BYTES],
}

/// The log2 bucket of a latency in nanoseconds, clamped to the last bucket.
/// Written without loops or `leading_zeros` so the BPF verifier accepts it.
#[inline(always)]
pub fn latency_bucket(ns: u64) -> u32 {
    let mut v = ns;
    let mut b: u32 = 0;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= LATENCY_BUCKETS {
        LATENCY_BUCKETS - 1
    } else {
        b
    }
}

/// Whether syscall `nr` (x86_64) returns a byte count that the probes should
/// add to "bytes moved": the read/write/send/recv family, splice and
/// sendfile. recvmmsg/sendmmsg return message counts and are left out.
#[inline(always)]
pub fn moves_bytes(nr: u64) -> bool {
    matches!(
        nr,
        0 | 1           // read, write
        | 17 | 18       // pread64, pwrite64
        | 19 | 20       // readv, writev
        | 40            // sendfile
        | 44 | 45       // sendto, recvfrom
        | 46 | 47       // sendmsg, recvmsg
        | 275 | 276 | 278 // splice, tee, vmsplice
        | 295 | 296     // preadv, pwritev
        | 326           // copy_file_range
        | 327 | 328 // preadv2, pwritev2
    )
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, and have no padding or
    // invalid bit patterns.
    unsafe impl aya::Pod for super::SyscallKey {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::ThreadTotals {}
    unsafe impl aya::Pod for super::SyscallStats {}
    unsafe impl aya::Pod for super::SyscallValue {}
    unsafe impl aya::Pod for super::InFlight {}
    unsafe impl aya::Pod for super::StackKey {}
    unsafe impl aya::Pod for super::SyscallStackKey {}
    unsafe impl aya::Pod for super::OffCpuKey {}
    unsafe impl aya::Pod for super::OffCpuValue {}
    unsafe impl aya::Pod for super::OffCpuStart {}
    unsafe impl aya::Pod for super::AllocKey {}
    unsafe impl aya::Pod for super::AllocStats {}
    unsafe impl aya::Pod for super::AllocHistKey {}
    unsafe impl aya::Pod for super::AllocStackKey {}
    unsafe impl aya::Pod for super::AllocStackValue {}
    unsafe impl aya::Pod for super::AllocPending {}
    unsafe impl aya::Pod for super::LiveAlloc {}
    unsafe impl aya::Pod for super::CryptoKey {}
    unsafe impl aya::Pod for super::CryptoStats {}
    unsafe impl aya::Pod for super::CryptoHistKey {}
    unsafe impl aya::Pod for super::CryptoPending {}
    unsafe impl aya::Pod for super::UserStack {}
    unsafe impl aya::Pod for super::UnwindRanges {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_floor_log2() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 1);
        assert_eq!(latency_bucket(3), 1);
        assert_eq!(latency_bucket(1023), 9);
        assert_eq!(latency_bucket(1024), 10);
        assert_eq!(latency_bucket((1 << 31) - 1), 30);
        assert_eq!(latency_bucket(1 << 31), 31);
        assert_eq!(latency_bucket(u64::MAX), 31);
    }

    #[test]
    fn time_slots_count_from_the_window_start() {
        assert_eq!(time_slot(5, 10), 0);
        assert_eq!(time_slot(10 + TIME_SLOT_NS - 1, 10), 0);
        assert_eq!(time_slot(10 + 3 * TIME_SLOT_NS, 10), 3);
        assert_eq!(time_slot(u64::MAX, 0), 0xfffe);
    }

    #[test]
    fn byte_moving_syscalls() {
        assert!(moves_bytes(0) && moves_bytes(1) && moves_bytes(44) && moves_bytes(275));
        assert!(!moves_bytes(39) && !moves_bytes(307) && !moves_bytes(299));
    }
}
