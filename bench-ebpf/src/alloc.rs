//! alloc probe: uprobes on the allocator's entry points (the attach cookie
//! says which one), counting calls, bytes and sizes per thread, and taking a
//! user stack about once per `CONFIG_ALLOC_SAMPLE_BYTES` allocated.
//!
//! Sampling is by bytes: each thread counts down a random distance (uniform
//! in [1, 2·mean], so its mean is `mean`) and every time an allocation
//! crosses zero, one sample worth `mean` bytes goes to its stack. The long-
//! run rate is one sample per `mean` bytes whatever the distance's
//! distribution; the randomness keeps periodic allocation patterns from
//! aliasing with the sampling. Small allocations are sampled in proportion
//! to the bytes they account for.
//!
//! With return probes attached (never on Go binaries), sampled allocations
//! are followed to their `free` so the runner can track live bytes.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_probe_read_user, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use bench_common::{
    alloc_fn, latency_bucket, AllocHistKey, AllocKey, AllocPending, AllocStackKey, AllocStackValue,
    AllocStats, LiveAlloc, CONFIG_ALLOC_LIVE, CONFIG_ALLOC_SAMPLE_BYTES, FULL_ALLOC_HIST,
    FULL_ALLOC_STACKS, FULL_ALLOC_STATS,
};

use crate::{config, note_full, recording, user_stack, window};

#[map]
static ALLOC_STATS: PerCpuHashMap<AllocKey, AllocStats> = PerCpuHashMap::with_max_entries(8192, 0);

/// Requested sizes, log2 buckets (same bucketing as latencies).
#[map]
static ALLOC_HIST: PerCpuHashMap<AllocHistKey, u64> = PerCpuHashMap::with_max_entries(8192, 0);

#[map]
static ALLOC_STACKS: PerCpuHashMap<AllocStackKey, AllocStackValue> =
    PerCpuHashMap::with_max_entries(32768, 0);

/// Bytes left until each thread's next sample.
#[map]
static ALLOC_COUNTDOWN: LruHashMap<u32, i64> = LruHashMap::with_max_entries(16384, 0);

/// Sampled allocations waiting for their return value, by tid.
#[map]
static ALLOC_PENDING: LruHashMap<u32, AllocPending> = LruHashMap::with_max_entries(16384, 0);

/// Sampled allocations not yet freed, by pointer.
#[map]
static LIVE: LruHashMap<u64, LiveAlloc> = LruHashMap::with_max_entries(262144, 0);

/// Live sampled bytes per process (per CPU; the sum over CPUs is the
/// figure, single CPUs may go negative).
#[map]
static LIVE_BYTES: PerCpuHashMap<u32, i64> = PerCpuHashMap::with_max_entries(64, 0);

/// Crossings counted one by one before the rest is divided out.
const MAX_CROSSINGS: u32 = 8;

#[inline(always)]
fn distance(mean: u64) -> i64 {
    let r = unsafe { bpf_get_prandom_u32() } as u64;
    // checked_*: a panicking division would not pass the verifier.
    (r.checked_rem(2 * mean).unwrap_or(0) + 1) as i64
}

#[inline(always)]
fn add_live(tgid: u32, delta: i64) {
    match LIVE_BYTES.get_ptr_mut(&tgid) {
        // SAFETY: per-CPU slot.
        Some(v) => unsafe { *v += delta },
        None => {
            let _ = LIVE_BYTES.insert(&tgid, &delta, 0);
        }
    }
}

#[inline(always)]
fn forget(ptr: u64) {
    if ptr == 0 {
        return;
    }
    // SAFETY: copied out before removal.
    if let Some(live) = unsafe { LIVE.get(&ptr) }.copied() {
        let _ = LIVE.remove(&ptr);
        add_live(live.tgid, -(live.bytes as i64));
    }
}

#[uprobe]
pub fn pp_alloc(ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    // SAFETY: the cookie was set at attach time.
    let func = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let arg = |n: usize| ctx.arg::<u64>(n).unwrap_or(0);
    let size = match func {
        alloc_fn::MALLOC => arg(0),
        // An overflowing calloc fails anyway; wrapping avoids a 128-bit multiply.
        alloc_fn::CALLOC => arg(0).wrapping_mul(arg(1)),
        alloc_fn::REALLOC | alloc_fn::ALIGNED_ALLOC => arg(1),
        alloc_fn::POSIX_MEMALIGN => arg(2),
        // Go's register ABI: the first integer argument is in RAX.
        alloc_fn::GO_MALLOCGC => unsafe { (*ctx.regs).rax },
        _ => 0,
    };

    let key = AllocKey {
        tgid,
        tid,
        func: func as u32,
        window: window(),
    };
    match ALLOC_STATS.get_ptr_mut(&key) {
        Some(s) => {
            // SAFETY: per-CPU slot.
            let s = unsafe { &mut *s };
            s.calls += 1;
            s.bytes += size;
        }
        None => {
            let stats = AllocStats {
                calls: 1,
                bytes: size,
            };
            if ALLOC_STATS.insert(&key, &stats, 0).is_err() {
                note_full(FULL_ALLOC_STATS);
            }
        }
    }
    let hkey = AllocHistKey {
        tgid,
        func: func as u32,
        bucket: latency_bucket(size),
        window: window(),
    };
    match ALLOC_HIST.get_ptr_mut(&hkey) {
        // SAFETY: per-CPU slot.
        Some(n) => unsafe { *n += 1 },
        None => {
            if ALLOC_HIST.insert(&hkey, &1u64, 0).is_err() {
                note_full(FULL_ALLOC_HIST);
            }
        }
    }

    let live = config(CONFIG_ALLOC_LIVE) != 0 && func != alloc_fn::GO_MALLOCGC;
    if live && func == alloc_fn::REALLOC {
        forget(arg(0));
    }

    let mean = config(CONFIG_ALLOC_SAMPLE_BYTES);
    if mean == 0 || size == 0 {
        return 0;
    }
    // SAFETY: copied out; this thread's entry is written only by itself.
    let mut left = match unsafe { ALLOC_COUNTDOWN.get(&tid) } {
        Some(v) => *v,
        None => distance(mean),
    };
    left -= size as i64;
    let mut crossings: u64 = 0;
    let mut i = 0;
    while i < MAX_CROSSINGS && left <= 0 {
        crossings += 1;
        left += distance(mean);
        i += 1;
    }
    if left <= 0 {
        // A huge allocation: the remaining crossings at the mean rate.
        let rest = ((-left) as u64).checked_div(mean).unwrap_or(0) + 1;
        crossings += rest;
        left += (rest * mean) as i64;
    }
    let _ = ALLOC_COUNTDOWN.insert(&tid, &left, 0);
    if crossings == 0 {
        return 0;
    }

    let bytes = crossings * mean;
    let stack = user_stack::walk_at_entry();
    let skey = AllocStackKey {
        tgid,
        tid,
        user_stack: stack,
        window: window(),
        _pad: 0,
    };
    let calls = bytes.checked_div(size).unwrap_or(0).max(1);
    match ALLOC_STACKS.get_ptr_mut(&skey) {
        Some(v) => {
            // SAFETY: per-CPU slot.
            let v = unsafe { &mut *v };
            v.bytes += bytes;
            v.calls += calls;
            v.samples += 1;
        }
        None => {
            let v = AllocStackValue {
                bytes,
                calls,
                samples: 1,
            };
            if ALLOC_STACKS.insert(&skey, &v, 0).is_err() {
                note_full(FULL_ALLOC_STACKS);
            }
        }
    }
    if live {
        let pending = AllocPending {
            bytes,
            user_stack: stack,
            // posix_memalign returns the pointer through its first argument.
            old_ptr: if func == alloc_fn::POSIX_MEMALIGN {
                arg(0)
            } else {
                0
            },
        };
        let _ = ALLOC_PENDING.insert(&tid, &pending, 0);
    }
    0
}

#[uretprobe]
pub fn pp_alloc_ret(ctx: RetProbeContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    let tid = pid_tgid as u32;
    // SAFETY: copied out before removal.
    let Some(pending) = (unsafe { ALLOC_PENDING.get(&tid) }).copied() else {
        return 0;
    };
    let _ = ALLOC_PENDING.remove(&tid);
    let ptr = if pending.old_ptr != 0 {
        // posix_memalign: the result lives at *memptr.
        unsafe { bpf_probe_read_user(pending.old_ptr as *const u64) }.unwrap_or_default()
    } else {
        ctx.ret::<u64>()
    };
    if ptr == 0 {
        return 0;
    }
    let tgid = (pid_tgid >> 32) as u32;
    let live = LiveAlloc {
        tgid,
        tid,
        bytes: pending.bytes,
        user_stack: pending.user_stack,
    };
    let _ = LIVE.insert(&ptr, &live, 0);
    add_live(tgid, pending.bytes as i64);
    0
}

#[uprobe]
pub fn pp_free(ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    let key = AllocKey {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        func: alloc_fn::FREE as u32,
        window: window(),
    };
    match ALLOC_STATS.get_ptr_mut(&key) {
        // SAFETY: per-CPU slot.
        Some(s) => unsafe { (*s).calls += 1 },
        None => {
            let _ = ALLOC_STATS.insert(&key, &AllocStats { calls: 1, bytes: 0 }, 0);
        }
    }
    if config(CONFIG_ALLOC_LIVE) != 0 {
        forget(ctx.arg::<u64>(0).unwrap_or(0));
    }
    0
}
