//! syscalls probe: the raw_syscalls sys_enter and sys_exit tracepoints, taken
//! as raw tracepoints (attached by name: no tracefs mount needed, and the
//! arguments arrive without the trace record being built). Per (thread,
//! syscall): count, total and max time, bytes moved (from the return value
//! of the read/write family); per (process, syscall) a log2 latency
//! histogram; optionally one user stack in N syscalls.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::{LruHashMap, PerCpuHashMap},
    programs::RawTracePointContext,
};
use bench_common::{
    latency_bucket, moves_bytes, InFlight, SyscallHistKey, SyscallKey, SyscallStackKey,
    SyscallStats, CONFIG_SYSCALL_STACK_EVERY,
};

use crate::{config, note_thread, recording, user_stack};

/// Syscalls in progress, by thread id. LRU so that calls which never return
/// (exit, exit_group, execve) cannot fill it.
#[map]
static INFLIGHT: LruHashMap<u32, InFlight> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU so that two threads of one process never lose an update.
#[map]
static SYSCALLS: PerCpuHashMap<SyscallKey, SyscallStats> =
    PerCpuHashMap::with_max_entries(16384, 0);

#[map]
static SYSCALL_HIST: PerCpuHashMap<SyscallHistKey, u64> = PerCpuHashMap::with_max_entries(65536, 0);

/// Sampled syscall stacks → syscalls represented (samples × N).
#[map]
static SYSCALL_STACKS: PerCpuHashMap<SyscallStackKey, u64> =
    PerCpuHashMap::with_max_entries(32768, 0);

// TP_PROTO of both tracepoints: (struct pt_regs *regs, long id_or_ret).
const REGS_ARG: usize = 0;
const ID_ARG: usize = 1;
const RET_ARG: usize = 1;

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn pp_sys_enter(ctx: RawTracePointContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    let nr: i64 = ctx.arg(ID_ARG);
    if nr < 0 {
        return 0;
    }
    let tid = pid_tgid as u32;
    let call = InFlight {
        start_ns: unsafe { bpf_ktime_get_ns() },
        nr: nr as u64,
    };
    let _ = INFLIGHT.insert(&tid, &call, 0);

    let every = config(CONFIG_SYSCALL_STACK_EVERY);
    // Random, not every Nth: a fixed stride would alias with loops that
    // make the same N syscalls over and over.
    if every != 0 && (unsafe { bpf_get_prandom_u32() } as u64).is_multiple_of(every) {
        let regs: *const pt_regs = ctx.arg(REGS_ARG);
        let key = SyscallStackKey {
            tgid: (pid_tgid >> 32) as u32,
            tid,
            nr: nr as u32,
            _pad: 0,
            user_stack: user_stack::walk_from(regs, false),
        };
        match SYSCALL_STACKS.get_ptr_mut(&key) {
            // SAFETY: per-CPU slot.
            Some(n) => unsafe { *n += every },
            None => {
                let _ = SYSCALL_STACKS.insert(&key, &every, 0);
            }
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn pp_sys_exit(ctx: RawTracePointContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    let tid = pid_tgid as u32;
    // SAFETY: copied out before the entry is removed.
    let Some(call) = (unsafe { INFLIGHT.get(&tid) }).copied() else {
        return 0;
    };
    let _ = INFLIGHT.remove(&tid);
    let now = unsafe { bpf_ktime_get_ns() };
    let dt = now.saturating_sub(call.start_ns);
    let ret: i64 = ctx.arg(RET_ARG);
    let bytes = if ret > 0 && moves_bytes(call.nr) {
        ret as u64
    } else {
        0
    };
    let errors = u64::from(ret < 0);
    let tgid = (pid_tgid >> 32) as u32;
    let nr = call.nr as u32;

    let key = SyscallKey {
        tgid,
        tid,
        nr,
        _pad: 0,
    };
    match SYSCALLS.get_ptr_mut(&key) {
        Some(stats) => {
            // SAFETY: per-CPU slot, so no other program writes it now.
            let stats = unsafe { &mut *stats };
            stats.count += 1;
            stats.total_ns += dt;
            if dt > stats.max_ns {
                stats.max_ns = dt;
            }
            stats.bytes += bytes;
            stats.errors += errors;
        }
        None => {
            note_thread(tid);
            let stats = SyscallStats {
                count: 1,
                total_ns: dt,
                max_ns: dt,
                bytes,
                errors,
            };
            let _ = SYSCALLS.insert(&key, &stats, 0);
        }
    }

    let hkey = SyscallHistKey {
        tgid,
        nr,
        bucket: latency_bucket(dt),
        _pad: 0,
    };
    match SYSCALL_HIST.get_ptr_mut(&hkey) {
        // SAFETY: per-CPU slot.
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = SYSCALL_HIST.insert(&hkey, &1u64, 0);
        }
    }
    0
}
