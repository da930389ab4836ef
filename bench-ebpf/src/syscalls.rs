//! syscalls probe: the raw_syscalls sys_enter and sys_exit tracepoints, taken
//! as raw tracepoints (attached by name: no tracefs mount needed, and the
//! arguments arrive without the trace record being built). Per (thread,
//! syscall): count, total and max time, bytes moved (from the return value
//! of the read/write family) and a log2 latency histogram; optionally one
//! user stack in N syscalls.
//!
//! Two ways to attach (`probes.syscall_time`): timed, a program at entry
//! and one at exit (`pp_sys_enter`, `pp_sys_exit`: count, bytes, errors,
//! time and the latency histogram); or counted, one program at exit alone
//! (`pp_sys_exit_count`: count, bytes, errors), which takes the syscall's
//! number from the saved registers. Counted is the default: with no
//! program on `sys_enter` the kernel skips that tracepoint altogether, and
//! a closed-loop round trip crosses a few dozen syscalls (docs/probes.md,
//! "Main pass: the floor").
//!
//! These programs run for every syscall on the machine, so their hot
//! path is kept to what it must do: for other processes, the array
//! pre-filter; timed, for a target's thread, its in-flight entry at entry
//! (an array slot, which also proves it a target) and at exit the same
//! slot and one hash lookup (the statistics with the histogram in them);
//! counted, that one hash lookup alone.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{map, raw_tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::RawTracePointContext,
};
use bench_common::{
    latency_bucket, moves_bytes, InFlight, SyscallKey, SyscallStackKey, SyscallValue,
    CONFIG_INFLIGHT_SLOTS, CONFIG_SYSCALL_STACK_EVERY, FULL_SYSCALLS, FULL_SYSCALL_STACKS,
    INFLIGHT_SLOTS, LATENCY_BUCKETS, NO_SYSCALL,
};

use crate::{config, enabled, is_target, may_be_target, note_full, note_thread, user_stack};

/// Syscalls in progress, one slot per thread id (`tid % slots`, the
/// slots being as many as the runner sized the array to: `slot_of`),
/// claimed by a target's thread at its first syscall and reused in place
/// (`nr` = `NO_SYSCALL` between calls). An array, not a hash: the verifier
/// turns its lookup into an address computation, where a hash lookup is a
/// call, a jhash and a bucket walk, twice per syscall of a target. A slot
/// keeps its thread id after the thread exits; it is taken again by the
/// next thread of that id in a target.
#[map]
static INFLIGHT: Array<InFlight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// The threads whose slot another thread holds (ids beyond the slots, on
/// a machine whose `pid_max` exceeds `INFLIGHT_SLOTS_MAX`). LRU so that
/// threads that exit cannot fill it.
#[map]
static INFLIGHT_SPILL: LruHashMap<u32, InFlight> = LruHashMap::with_max_entries(16384, 0);

/// The index of thread `tid`'s slot in `INFLIGHT`.
#[inline(always)]
fn slot_of(tid: u32) -> u32 {
    match config(CONFIG_INFLIGHT_SLOTS) {
        0 => tid % INFLIGHT_SLOTS,
        slots => (u64::from(tid) % slots) as u32,
    }
}

/// The in-flight entry of thread `tid` of process `tgid` at its syscall's
/// entry: its slot, claimed now if the thread is a target's and the slot
/// is free (or its id's last holder was another process), else its entry
/// in the spill map. `None`: not a target's thread.
#[inline(always)]
fn entry_for_enter(tid: u32, tgid: u32) -> Option<*mut InFlight> {
    let slot = INFLIGHT.get_ptr_mut(slot_of(tid))?;
    // SAFETY: a slot is written by its own thread's syscalls, one at a
    // time; a claim by two colliding threads at once (ids beyond the
    // slots only) can lose that one call's record, never more.
    let (owner, owner_tgid) = unsafe { ((*slot).tid, (*slot).tgid) };
    if owner == tid && owner_tgid == tgid {
        return Some(slot);
    }
    if owner == 0 || owner == tid {
        // First syscall of this thread (or its id reused by another
        // process): the exact target check, once.
        if !is_target(tgid) {
            return None;
        }
        unsafe {
            (*slot).tid = tid;
            (*slot).tgid = tgid;
        }
        return Some(slot);
    }
    match INFLIGHT_SPILL.get_ptr_mut(&tid) {
        // SAFETY: as for the slots.
        Some(call) if unsafe { (*call).tgid } == tgid => Some(call),
        _ => {
            if !is_target(tgid) {
                return None;
            }
            let call = InFlight {
                start_ns: 0,
                nr: NO_SYSCALL,
                tgid,
                tid,
                _pad: 0,
            };
            let _ = INFLIGHT_SPILL.insert(&tid, &call, 0);
            INFLIGHT_SPILL.get_ptr_mut(&tid)
        }
    }
}

/// The in-flight entry of thread `tid` at its syscall's exit, if its entry
/// made one.
#[inline(always)]
fn entry_for_exit(tid: u32) -> Option<*mut InFlight> {
    let slot = INFLIGHT.get_ptr_mut(slot_of(tid))?;
    // SAFETY: see entry_for_enter.
    match unsafe { (*slot).tid } {
        owner if owner == tid => Some(slot),
        0 => None,
        _ => INFLIGHT_SPILL.get_ptr_mut(&tid),
    }
}

/// Per-CPU so that two threads of one process never lose an update.
#[map]
static SYSCALLS: PerCpuHashMap<SyscallKey, SyscallValue> =
    PerCpuHashMap::with_max_entries(16384, 0);

/// A zeroed value to insert from: `SyscallValue` is too large for the
/// 512-byte BPF stack beside the rest.
#[map]
static SYSCALL_ZERO: PerCpuArray<SyscallValue> = PerCpuArray::with_max_entries(1, 0);

/// Sampled syscall stacks → syscalls represented (samples × N).
#[map]
static SYSCALL_STACKS: PerCpuHashMap<SyscallStackKey, u64> =
    PerCpuHashMap::with_max_entries(32768, 0);

// TP_PROTO of both tracepoints: (struct pt_regs *regs, long id_or_ret).
const REGS_ARG: usize = 0;
const ID_ARG: usize = 1;
const RET_ARG: usize = 1;

/// One user stack in `CONFIG_SYSCALL_STACK_EVERY` syscalls, chosen at
/// random, weighted by that N. The user registers are the same at a
/// syscall's entry and exit, so either program may take it.
#[inline(always)]
fn sample_stack(ctx: &RawTracePointContext, tgid: u32, tid: u32, nr: u32) {
    let every = config(CONFIG_SYSCALL_STACK_EVERY);
    // Random, not every Nth: a fixed stride would alias with loops that
    // make the same N syscalls over and over.
    if every == 0 || !(unsafe { bpf_get_prandom_u32() } as u64).is_multiple_of(every) {
        return;
    }
    let regs: *const pt_regs = ctx.arg(REGS_ARG);
    let key = SyscallStackKey {
        tgid,
        tid,
        nr,
        _pad: 0,
        user_stack: user_stack::walk_from(regs, false),
    };
    match SYSCALL_STACKS.get_ptr_mut(&key) {
        // SAFETY: per-CPU slot.
        Some(n) => unsafe { *n += every },
        None => {
            if SYSCALL_STACKS.insert(&key, &every, 0).is_err() {
                note_full(FULL_SYSCALL_STACKS);
            }
        }
    }
}

/// The (thread, syscall) statistics of `key`, made (zeroed) on its first
/// call. `None` when the map is full (noted) or the entry could not be
/// made.
#[inline(always)]
fn statistics(key: &SyscallKey) -> Option<&'static mut SyscallValue> {
    if let Some(value) = SYSCALLS.get_ptr_mut(key) {
        // SAFETY: per-CPU slot, so no other program writes it now.
        return Some(unsafe { &mut *value });
    }
    note_thread(key.tid);
    let zero = SYSCALL_ZERO.get_ptr(0)?;
    // SAFETY: the per-CPU zero template is never written.
    if SYSCALLS.insert(key, unsafe { &*zero }, 0).is_err() {
        note_full(FULL_SYSCALLS);
        return None;
    }
    // SAFETY: as above.
    SYSCALLS
        .get_ptr_mut(key)
        .map(|value| unsafe { &mut *value })
}

/// Bytes a syscall of number `nr` returning `ret` moved.
#[inline(always)]
fn bytes_moved(nr: u32, ret: i64) -> u64 {
    if ret > 0 && moves_bytes(u64::from(nr)) {
        ret as u64
    } else {
        0
    }
}

/// The calling thread's (process, thread) ids while a window is open and
/// the process passes the pre-filter: the only work every other syscall on
/// the machine pays.
#[inline(always)]
fn candidate() -> Option<(u32, u32)> {
    if !enabled() {
        return None;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    may_be_target(tgid).then_some((tgid, pid_tgid as u32))
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn pp_sys_enter(ctx: RawTracePointContext) -> u32 {
    let Some((tgid, tid)) = candidate() else {
        return 0;
    };
    let nr: i64 = ctx.arg(ID_ARG);
    if nr < 0 {
        return 0;
    }
    let Some(call) = entry_for_enter(tid, tgid) else {
        return 0;
    };
    // SAFETY: only this thread's own syscalls write its entry, and a
    // thread runs one syscall at a time.
    unsafe {
        (*call).start_ns = bpf_ktime_get_ns();
        (*call).nr = nr as u32;
    }

    sample_stack(&ctx, tgid, tid, nr as u32);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn pp_sys_exit(ctx: RawTracePointContext) -> u32 {
    let Some((tgid, tid)) = candidate() else {
        return 0;
    };
    // The in-flight entry is the target check: pp_sys_enter made it only
    // for a target's thread.
    let Some(slot) = entry_for_exit(tid) else {
        return 0;
    };
    // SAFETY: see pp_sys_enter; copied out, then marked free.
    let call = unsafe { *slot };
    if call.nr == NO_SYSCALL || call.tgid != tgid {
        // Entered before the window opened, or a reused thread id.
        return 0;
    }
    unsafe { (*slot).nr = NO_SYSCALL };
    let now = unsafe { bpf_ktime_get_ns() };
    let dt = now.saturating_sub(call.start_ns);
    let ret: i64 = ctx.arg(RET_ARG);
    let bucket = latency_bucket(dt) as usize;
    let key = SyscallKey {
        tgid,
        tid,
        nr: call.nr,
        _pad: 0,
    };
    let Some(value) = statistics(&key) else {
        return 0;
    };
    let stats = &mut value.stats;
    stats.count += 1;
    stats.total_ns += dt;
    if dt > stats.max_ns {
        stats.max_ns = dt;
    }
    stats.bytes += bytes_moved(call.nr, ret);
    stats.errors += u64::from(ret < 0);
    if bucket < LATENCY_BUCKETS as usize {
        if let Some(n) = value.latency.get_mut(bucket) {
            *n += 1;
        }
    }
    0
}

/// Counted, not timed: the one program on the syscall path. The syscall's
/// number is the saved `orig_ax` (the return value has overwritten `ax`).
/// A thread's first call takes the exact target check; after that its
/// (thread, syscall) entry exists, which only a target's thread makes.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn pp_sys_exit_count(ctx: RawTracePointContext) -> u32 {
    let Some((tgid, tid)) = candidate() else {
        return 0;
    };
    let regs: *const pt_regs = ctx.arg(REGS_ARG);
    // SAFETY: bpf_probe_read_kernel checks the address.
    let Ok(nr) = (unsafe { bpf_probe_read_kernel(core::ptr::addr_of!((*regs).orig_rax)) }) else {
        return 0;
    };
    let nr = nr as i64;
    if !(0..i64::from(NO_SYSCALL)).contains(&nr) {
        return 0;
    }
    let nr = nr as u32;
    let key = SyscallKey {
        tgid,
        tid,
        nr,
        _pad: 0,
    };
    let value = match SYSCALLS.get_ptr_mut(&key) {
        // SAFETY: per-CPU slot, so no other program writes it now.
        Some(value) => unsafe { &mut *value },
        None => {
            if !is_target(tgid) {
                return 0;
            }
            let Some(value) = statistics(&key) else {
                return 0;
            };
            value
        }
    };
    let ret: i64 = ctx.arg(RET_ARG);
    let stats = &mut value.stats;
    stats.count += 1;
    stats.bytes += bytes_moved(nr, ret);
    stats.errors += u64::from(ret < 0);
    sample_stack(&ctx, tgid, tid, nr);
    0
}
