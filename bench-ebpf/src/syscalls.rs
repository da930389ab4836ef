//! syscalls probe: the raw_syscalls sys_enter and sys_exit tracepoints, taken
//! as raw tracepoints (attached by name: no tracefs mount needed, and the
//! arguments arrive without the trace record being built). Per (process,
//! syscall): count, total and max time, a log2 latency histogram and bytes
//! moved (from the return value of the read/write family).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, raw_tracepoint},
    maps::{LruHashMap, PerCpuHashMap},
    programs::RawTracePointContext,
};
use bench_common::{
    latency_bucket, moves_bytes, InFlight, SyscallHistKey, SyscallKey, SyscallStats,
};

use crate::recording;

/// Syscalls in progress, by thread id. LRU so that calls which never return
/// (exit, exit_group, execve) cannot fill it.
#[map]
static INFLIGHT: LruHashMap<u32, InFlight> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU so that two threads of one process never lose an update.
#[map]
static SYSCALLS: PerCpuHashMap<SyscallKey, SyscallStats> = PerCpuHashMap::with_max_entries(8192, 0);

#[map]
static SYSCALL_HIST: PerCpuHashMap<SyscallHistKey, u64> = PerCpuHashMap::with_max_entries(65536, 0);

// TP_PROTO of both tracepoints: (struct pt_regs *regs, long id_or_ret).
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

    let key = SyscallKey { tgid, nr };
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
