//! process tree probe: the sched_process_fork, sched_process_exec and
//! sched_process_exit raw tracepoints. A process that a target forks
//! becomes a target itself, here in the kernel and before the child first
//! runs, so that nothing of its life is missed (a worker per connection, a
//! privilege-separated child). Each fork, exec and exit of a target is also
//! sent to the runner through `PROCESS_EVENTS`, which reads the process's
//! mappings while it lives (to name its frames after it exits) and lists
//! the processes in the report.
//!
//! These run whether or not a window is open: a worker forked between
//! windows is measured in the next one.
//!
//! Every exiting thread of a target (not only a process's main thread)
//! sends its totals (CPU time, context switches, faults, migrations), read
//! from its `task_struct` at offsets the runner took from the kernel's BTF:
//! the runner reads these counters from /proc at window edges, where a
//! thread that ended inside the window is no longer listed.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{map, raw_tracepoint},
    maps::RingBuf,
    programs::RawTracePointContext,
};
use bench_common::{
    target_slot, ProcessEvent, ThreadTotals, CONFIG_TASK_PID_OFFSET, CONFIG_TASK_TGID_OFFSET,
    CONFIG_TASK_TOTALS_OFFSETS, PROCESS_EXEC, PROCESS_EXIT, PROCESS_FORK, PROCESS_THREAD_EXIT,
    TARGET_FOLLOWED,
};

use crate::{config, user_stack::UNWIND, TARGETS, TARGET_FILTER};

/// Fork, exec and exit events of target processes, for the runner.
#[map]
static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

// sched_process_fork: TP_PROTO(struct task_struct *parent,
//                               struct task_struct *child)
const CHILD_ARG: usize = 1;

fn send(kind: u32, pid: u32, parent: u32, role: u32) {
    send_exit(kind, pid, parent, role, 0, ThreadTotals::default());
}

fn send_exit(kind: u32, pid: u32, parent: u32, role: u32, tid: u32, totals: ThreadTotals) {
    let event = ProcessEvent {
        kind,
        pid,
        parent,
        role,
        // SAFETY: plain helper call.
        time_ns: unsafe { bpf_ktime_get_ns() },
        tid,
        _pad: 0,
        totals,
    };
    // A full ring loses the event, not the measurement: the child is a
    // target already; the runner only misses its mappings and its line.
    let _ = PROCESS_EVENTS.output::<ProcessEvent>(&event, 0);
}

/// Mark a new target's pre-filter slot as used. A plain store of a non-zero
/// value, not a count (BPF has no atomic add in this toolchain, and two
/// CPUs may fork children whose tgids share a slot at once): the slot is
/// a cheap "maybe", the `TARGETS` lookup behind it decides. A slot stays
/// marked after its child exits; other processes in it then cost one hash
/// lookup more.
fn mark_slot(tgid: u32) {
    if let Some(n) = TARGET_FILTER.get_ptr_mut(target_slot(tgid)) {
        // SAFETY: a pointer into the array map's value, valid for the
        // program's run.
        unsafe {
            if *n == 0 {
                *n = 1;
            }
        }
    }
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn pp_process_fork(ctx: RawTracePointContext) -> u32 {
    // The parent is the current task.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: presence and copy of a u32 value.
    let Some(role) = (unsafe { TARGETS.get(&parent) }).copied() else {
        return 0;
    };
    let pid_offset = config(CONFIG_TASK_PID_OFFSET);
    let tgid_offset = config(CONFIG_TASK_TGID_OFFSET);
    if pid_offset == 0 || tgid_offset == 0 {
        return 0;
    }
    let child: u64 = ctx.arg(CHILD_ARG);
    // SAFETY: bpf_probe_read_kernel checks the address.
    let Ok(tgid) = (unsafe { bpf_probe_read_kernel((child + tgid_offset) as *const i32) }) else {
        return 0;
    };
    let Ok(pid) = (unsafe { bpf_probe_read_kernel((child + pid_offset) as *const i32) }) else {
        return 0;
    };
    let tgid = tgid as u32;
    // A new thread of the target (same tgid) is already covered.
    if tgid == parent || pid as u32 != tgid {
        return 0;
    }
    let role = role | TARGET_FOLLOWED;
    // Slot first: a slot never reads empty for a listed target.
    mark_slot(tgid);
    let _ = TARGETS.insert(&tgid, &role, 0);
    // The child runs its parent's code until it execs: its stacks are
    // taken the same way.
    // SAFETY: a copy of the value is taken at once.
    if let Some(u) = unsafe { UNWIND.get(&parent) }.copied() {
        let _ = UNWIND.insert(&tgid, &u, 0);
    }
    send(PROCESS_FORK, tgid, parent, role);
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn pp_process_exec(_ctx: RawTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: copy of a u32 value.
    if let Some(role) = (unsafe { TARGETS.get(&tgid) }).copied() {
        // A new program: its parent's frame-pointer ranges no longer hold,
        // and its stacks are walked by frame pointer (docs/probes.md).
        let _ = UNWIND.remove(&tgid);
        send(PROCESS_EXEC, tgid, 0, role);
    }
    0
}

/// One `u64` field of the current task at the offset in `CONFIG` word
/// `CONFIG_TASK_TOTALS_OFFSETS + field` (0 when the offset is unknown).
#[inline(always)]
fn task_field(task: u64, field: u32) -> u64 {
    let offset = config(CONFIG_TASK_TOTALS_OFFSETS + field);
    if offset == 0 {
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel((task + offset) as *const u64) }.unwrap_or(0)
}

/// The exiting (current) thread's totals.
#[inline(always)]
fn current_totals() -> ThreadTotals {
    // SAFETY: plain helper call; the pointer is only read through
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    ThreadTotals {
        runtime_ns: task_field(task, 0),
        context_switches: task_field(task, 1) + task_field(task, 2),
        page_faults: task_field(task, 3) + task_field(task, 4),
        migrations: task_field(task, 5),
    }
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn pp_process_exit(_ctx: RawTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    // SAFETY: copy of a u32 value.
    let Some(role) = (unsafe { TARGETS.get(&tgid) }).copied() else {
        return 0;
    };
    // Threads other than the main one end without ending the process:
    // only their totals matter.
    if tid != tgid {
        send_exit(PROCESS_THREAD_EXIT, tgid, 0, role, tid, current_totals());
        return 0;
    }
    send_exit(PROCESS_EXIT, tgid, 0, role, tid, current_totals());
    // A followed child leaves the filter, so that its pid, reused by an
    // unrelated process, is not measured (and the map does not fill with
    // the dead workers of a long run). The runner's own targets stay: it
    // reports how they ended.
    if role & TARGET_FOLLOWED != 0 {
        let _ = TARGETS.remove(&tgid);
        let _ = UNWIND.remove(&tgid);
    }
    0
}
