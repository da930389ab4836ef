//! crypto probe: uprobes on the crypto symbols the runner matched in the
//! target and its libraries (the attach cookie carries the symbol's index
//! and, where known, which argument is the length). Return probes, where the
//! runner attached them (never on Go binaries), time each call and keep a
//! per-thread depth, so that a probed entry point called inside another
//! (EVP_CipherUpdate tail-calling EVP_EncryptUpdate) is not counted twice:
//! only the outermost call of a thread counts.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use bench_common::{
    latency_bucket, CryptoHistKey, CryptoKey, CryptoPending, CryptoStats, CRYPTO_COUNT_ALWAYS,
    CRYPTO_NESTS, FULL_CRYPTO, FULL_CRYPTO_HIST,
};

use crate::{enabled, is_target, note_full, window};

#[map]
static CRYPTO: PerCpuHashMap<CryptoKey, CryptoStats> = PerCpuHashMap::with_max_entries(4096, 0);

#[map]
static CRYPTO_HIST: PerCpuHashMap<CryptoHistKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// The outermost probed call open on each thread (by tid), with the depth
/// of probed calls inside it.
#[map]
static CRYPTO_PENDING: LruHashMap<u32, CryptoPending> = LruHashMap::with_max_entries(16384, 0);

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
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let tid = pid_tgid as u32;
    let nests = cookie & CRYPTO_NESTS != 0;
    // SAFETY: ctx.regs is the probe's context.
    let sp = unsafe { core::ptr::read_volatile(&(*ctx.regs).rsp) };
    // The depth is kept whether or not a window is open, so that a call
    // begun outside one still hides the calls it makes inside one.
    if let Some(open) = CRYPTO_PENDING.get_ptr_mut(&tid) {
        // SAFETY: this thread's own entry; only this thread writes it.
        let open = unsafe { &mut *open };
        // At entry rsp points at the return address: a call inside the
        // open one (or tail-called from it) has an rsp at most the open
        // one's; a higher one means its return was missed.
        if open.depth > 0 && sp <= open.sp {
            if nests {
                open.depth += 1;
            }
            return 0;
        }
    }
    let always = cookie & CRYPTO_COUNT_ALWAYS != 0;
    let counting = always || enabled();
    let symbol = cookie as u32;
    if nests {
        let open = CryptoPending {
            // Calls counted outside windows are not timed.
            start_ns: if counting && !always {
                // SAFETY: helper without arguments.
                unsafe { bpf_ktime_get_ns() }
            } else {
                0
            },
            sp,
            symbol,
            depth: 1,
        };
        let _ = CRYPTO_PENDING.insert(&tid, &open, 0);
    }
    if !counting {
        return 0;
    }
    let length_arg = ((cookie >> 32) & 0xff) as usize;
    let bytes = length(&ctx, length_arg);
    let key = CryptoKey {
        tgid,
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
            if CRYPTO.insert(&key, &s, 0).is_err() {
                note_full(FULL_CRYPTO);
            }
        }
    }
    0
}

#[uretprobe]
pub fn pp_crypto_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let tid = pid_tgid as u32;
    let Some(open) = CRYPTO_PENDING.get_ptr_mut(&tid) else {
        return 0;
    };
    // SAFETY: this thread's own entry.
    let open = unsafe { &mut *open };
    if open.depth > 1 {
        open.depth -= 1;
        return 0;
    }
    let (start, open_symbol) = (open.start_ns, open.symbol);
    let _ = CRYPTO_PENDING.remove(&tid);
    // SAFETY: the cookie was set at attach time.
    let symbol = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    if start == 0 || symbol != open_symbol || !enabled() {
        return 0;
    }
    // SAFETY: helper without arguments.
    let dt = unsafe { bpf_ktime_get_ns() }.saturating_sub(start);
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
            if CRYPTO_HIST.insert(&hkey, &1u64, 0).is_err() {
                note_full(FULL_CRYPTO_HIST);
            }
        }
    }
    0
}
