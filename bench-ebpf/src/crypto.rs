//! crypto probe: uprobes on the crypto symbols the runner matched in the
//! target and its libraries (the attach cookie carries the symbol's index
//! and, where known, which argument is the length). Return probes, where the
//! runner attached them (never on Go binaries), time each call.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use bench_common::{latency_bucket, CryptoHistKey, CryptoKey, CryptoStats, CRYPTO_COUNT_ALWAYS};

use crate::{is_target, recording, window};

#[map]
static CRYPTO: PerCpuHashMap<CryptoKey, CryptoStats> = PerCpuHashMap::with_max_entries(4096, 0);

#[map]
static CRYPTO_HIST: PerCpuHashMap<CryptoHistKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// Calls in progress, by (tid << 32 | symbol), so nested calls of different
/// symbols are timed separately.
#[map]
static CRYPTO_PENDING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// The `n`th (1-based) integer argument, 0 for none. The six registers are
/// read at fixed offsets first: the verifier rejects a context read at an
/// offset computed at run time.
#[inline(always)]
fn length(ctx: &ProbeContext, n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    // SAFETY: ctx.regs is the probe's context; volatile keeps each read a
    // load at its own constant offset.
    let args = unsafe {
        let r = ctx.regs;
        [
            core::ptr::read_volatile(&(*r).rdi),
            core::ptr::read_volatile(&(*r).rsi),
            core::ptr::read_volatile(&(*r).rdx),
            core::ptr::read_volatile(&(*r).rcx),
            core::ptr::read_volatile(&(*r).r8),
            core::ptr::read_volatile(&(*r).r9),
        ]
    };
    let mut out = 0;
    let mut i = 0;
    while i < args.len() {
        if i + 1 == n {
            out = args[i];
        }
        i += 1;
    }
    out
}

#[uprobe]
pub fn pp_crypto(ctx: ProbeContext) -> u32 {
    // SAFETY: the cookie was set at attach time.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let always = cookie & CRYPTO_COUNT_ALWAYS != 0;
    let pid_tgid = if always {
        let p = aya_ebpf::helpers::bpf_get_current_pid_tgid();
        if !is_target((p >> 32) as u32) {
            return 0;
        }
        p
    } else {
        let Some(p) = recording() else {
            return 0;
        };
        p
    };
    let symbol = cookie as u32;
    let length_arg = ((cookie >> 32) & 0xff) as usize;
    let bytes = length(&ctx, length_arg);
    let key = CryptoKey {
        tgid: (pid_tgid >> 32) as u32,
        symbol,
        window: window(),
        _pad: 0,
    };
    match CRYPTO.get_ptr_mut(&key) {
        Some(s) => {
            // SAFETY: per-CPU slot.
            let s = unsafe { &mut *s };
            s.calls += 1;
            s.bytes += bytes;
        }
        None => {
            let s = CryptoStats {
                calls: 1,
                timed: 0,
                total_ns: 0,
                bytes,
            };
            let _ = CRYPTO.insert(&key, &s, 0);
        }
    }
    if !always {
        let pending = ((pid_tgid as u32 as u64) << 32) | symbol as u64;
        let _ = CRYPTO_PENDING.insert(&pending, &unsafe { bpf_ktime_get_ns() }, 0);
    }
    0
}

#[uretprobe]
pub fn pp_crypto_ret(ctx: RetProbeContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    // SAFETY: the cookie was set at attach time.
    let symbol = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let pending = ((pid_tgid as u32 as u64) << 32) | symbol as u64;
    // SAFETY: copied out before removal.
    let Some(start) = (unsafe { CRYPTO_PENDING.get(&pending) }).copied() else {
        return 0;
    };
    let _ = CRYPTO_PENDING.remove(&pending);
    let dt = unsafe { bpf_ktime_get_ns() }.saturating_sub(start);
    let tgid = (pid_tgid >> 32) as u32;
    let window = window();
    let key = CryptoKey {
        tgid,
        symbol,
        window,
        _pad: 0,
    };
    if let Some(s) = CRYPTO.get_ptr_mut(&key) {
        // SAFETY: per-CPU slot.
        let s = unsafe { &mut *s };
        s.timed += 1;
        s.total_ns += dt;
    }
    let hkey = CryptoHistKey {
        tgid,
        symbol,
        bucket: latency_bucket(dt),
        window,
    };
    match CRYPTO_HIST.get_ptr_mut(&hkey) {
        // SAFETY: per-CPU slot.
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = CRYPTO_HIST.insert(&hkey, &1u64, 0);
        }
    }
    0
}
