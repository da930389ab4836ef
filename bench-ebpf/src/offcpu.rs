//! offcpu probe: the sched_switch raw tracepoint. When a profiled thread is
//! switched out, its time and its user and kernel stacks are noted; when it
//! is switched in again, the interval is added to (thread, stacks). Blocked
//! and preempted time both count: both are time the thread did not run.
//! Intervals are split at window edges: a switch-in counts from the later
//! of the interval's start and the window's opening, and the runner counts
//! the part of an interval still open when a window closes
//! (capture/offcpu.rs).
//!
//! The tracepoint runs in the context of the thread being switched out, so
//! that one is `current`. The one being switched in is only known through
//! its `task_struct`, whose `pid`/`tgid` offsets the runner reads from the
//! kernel's BTF and passes in `CONFIG` (Rust eBPF has no CO-RE field
//! relocations).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{map, raw_tracepoint},
    maps::{HashMap, LruHashMap},
    programs::{tracing::StackIdContext, RawTracePointContext},
};
use bench_common::{
    OffCpuKey, OffCpuStart, OffCpuValue, CONFIG_OFFCPU_STACK_INTERVAL_NS, CONFIG_TASK_PID_OFFSET,
    CONFIG_TASK_TGID_OFFSET, CONFIG_WINDOW_START_NS, FULL_OFFCPU, OFFCPU_COPY_INTERVAL_NS,
    STACK_COPY_TAG,
};

use crate::{
    config, enabled, is_target, may_be_target, note_full, note_thread, user_stack, window,
    KERNEL_STACKS,
};

/// Threads switched out, by tid.
#[map]
static OFFCPU_START: LruHashMap<u32, OffCpuStart> = LruHashMap::with_max_entries(16384, 0);

/// Off-CPU time by thread and stacks. Updated only on the CPU that switches
/// the thread in, and a thread is switched in on one CPU at a time.
#[map]
static OFFCPU: HashMap<OffCpuKey, OffCpuValue> = HashMap::with_max_entries(65536, 0);

// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
//          unsigned int prev_state)
const NEXT_ARG: usize = 2;

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn pp_sched_switch(ctx: RawTracePointContext) -> u32 {
    let on = enabled();
    let now = unsafe { bpf_ktime_get_ns() };

    // Switch-out: the current task. Noted between windows too, so that an
    // interval that began before a window opened is counted from its edge
    // rather than dropped.
    let pid_tgid = bpf_get_current_pid_tgid();
    let prev_tgid = (pid_tgid >> 32) as u32;
    let prev_tid = pid_tgid as u32;
    // The pre-filter, then the thread's own entry: its tgid proves it a
    // target without the exact lookup (a thread seen the first time, or a
    // thread id reused by another process, takes the exact check once).
    if prev_tid != 0 && may_be_target(prev_tgid) {
        let interval = config(CONFIG_OFFCPU_STACK_INTERVAL_NS);
        match OFFCPU_START.get_ptr_mut(&prev_tid) {
            // SAFETY: see the switch-in below.
            Some(slot) if unsafe { (*slot).tgid } == prev_tgid => unsafe {
                // The stacks of a recent walk stand for this switch-out
                // too: an event loop blocks in the same place nearly every
                // time, and the walk is most of this program's cost. A
                // copy stands longer (OFFCPU_COPY_INTERVAL_NS).
                let since = now.saturating_sub((*slot).walked_ns);
                let copied = (*slot).user_stack & STACK_COPY_TAG != 0;
                if (interval == 0 || since >= interval)
                    && (!copied || since >= OFFCPU_COPY_INTERVAL_NS)
                {
                    (*slot).user_stack = user_stack::walk_current();
                    (*slot).kernel_stack_id = kernel_stack(&ctx);
                    (*slot).walked_ns = now;
                }
                // Between windows, an interval not yet counted (its
                // switch-in came after the window closed) keeps its start:
                // the runner counts its in-window part when the window
                // closes.
                if on || (*slot).start_ns == 0 {
                    (*slot).start_ns = now;
                }
            },
            _ => {
                if is_target(prev_tgid) {
                    note_thread(prev_tid);
                    let start = OffCpuStart {
                        start_ns: now,
                        user_stack: user_stack::walk_current(),
                        kernel_stack_id: kernel_stack(&ctx),
                        tgid: prev_tgid,
                        _pad: 0,
                        walked_ns: now,
                    };
                    let _ = OFFCPU_START.insert(&prev_tid, &start, 0);
                }
            }
        }
    }
    if !on {
        return 0;
    }

    // Switch-in: the next task, known by its task_struct. Its tgid first:
    // for the other processes on the machine that and the target filter
    // are all the work.
    let pid_offset = config(CONFIG_TASK_PID_OFFSET);
    let tgid_offset = config(CONFIG_TASK_TGID_OFFSET);
    if pid_offset == 0 || tgid_offset == 0 {
        return 0;
    }
    let next: u64 = ctx.arg(NEXT_ARG);
    // SAFETY: bpf_probe_read_kernel checks the address.
    let Ok(next_tgid) = (unsafe { bpf_probe_read_kernel((next + tgid_offset) as *const i32) })
    else {
        return 0;
    };
    // The pre-filter; the thread's entry below is the exact check.
    if !may_be_target(next_tgid as u32) {
        return 0;
    }
    let Ok(next_tid) = (unsafe { bpf_probe_read_kernel((next + pid_offset) as *const i32) }) else {
        return 0;
    };
    let next_tid = next_tid as u32;
    let Some(slot) = OFFCPU_START.get_ptr_mut(&next_tid) else {
        return 0;
    };
    // SAFETY: the entry of a thread is written only when it is switched
    // out and read when it is switched in, never both at once; copied out,
    // then marked used (start 0) instead of deleted.
    let start = unsafe { *slot };
    if start.tgid != next_tgid as u32 {
        // A thread id reused by a process that is not a target.
        return 0;
    }
    unsafe { (*slot).start_ns = 0 };
    if start.start_ns == 0 {
        // Already counted.
        return 0;
    }
    // Clipped at the window's opening edge: the part before it belongs to
    // no window (or was counted by the runner as the last one closed).
    let window_start = config(CONFIG_WINDOW_START_NS);
    let from = if start.start_ns > window_start {
        start.start_ns
    } else {
        window_start
    };
    let key = OffCpuKey {
        tgid: next_tgid as u32,
        tid: next_tid,
        user_stack: start.user_stack,
        kernel_stack_id: start.kernel_stack_id as i32,
        window: window(),
    };
    let dt = now.saturating_sub(from);
    match OFFCPU.get_ptr_mut(&key) {
        Some(v) => {
            // SAFETY: see OFFCPU.
            let v = unsafe { &mut *v };
            v.total_ns += dt;
            v.count += 1;
        }
        None => {
            let value = OffCpuValue {
                total_ns: dt,
                count: 1,
            };
            if OFFCPU.insert(&key, &value, 0).is_err() {
                note_full(FULL_OFFCPU);
            }
        }
    }
    0
}

/// The current kernel stack's id, or the helper's error (negative).
fn kernel_stack(ctx: &RawTracePointContext) -> i64 {
    match ctx.get_stackid(&KERNEL_STACKS, 0) {
        Ok(id) => id,
        Err(e) => e as i64,
    }
}
