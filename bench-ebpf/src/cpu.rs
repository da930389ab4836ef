//! cpu probe: a perf_event program on the software cpu-clock of every CPU.
//! Each sample of a profiled thread counts one (thread, user stack, kernel
//! stack, window, time slot); the runner reads the stacks back out of their
//! maps.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::{
    macros::{map, perf_event},
    maps::HashMap,
    programs::{tracing::StackIdContext, PerfEventContext},
};
use bench_common::{time_slot, StackKey, CONFIG_WINDOW_START_NS, FULL_CPU_SAMPLES};

use crate::{config, note_full, note_thread, recording, user_stack, window, KERNEL_STACKS};

/// Sample counts. A thread is on one CPU at a time and the key holds its
/// tid, so two CPUs never update one key at once: a plain hash is enough.
#[map]
static CPU_SAMPLES: HashMap<StackKey, u64> = HashMap::with_max_entries(65536, 0);

#[perf_event]
pub fn pp_cpu_sample(ctx: PerfEventContext) -> u32 {
    let Some(pid_tgid) = recording() else {
        return 0;
    };
    let tid = pid_tgid as u32;
    note_thread(tid);
    // Kernel stack from the kernel's unwinder (ORC or frame pointers);
    // -EFAULT when the sample hit user mode.
    let kernel_stack_id = match ctx.get_stackid(&KERNEL_STACKS, 0) {
        Ok(id) => id as i32,
        Err(e) => e,
    };
    let key = StackKey {
        tgid: (pid_tgid >> 32) as u32,
        tid,
        user_stack: user_stack::walk_current(),
        kernel_stack_id,
        window: window() as u16,
        // SAFETY: plain helper call.
        slot: time_slot(
            unsafe { bpf_ktime_get_ns() },
            config(CONFIG_WINDOW_START_NS),
        ),
    };
    match CPU_SAMPLES.get_ptr_mut(&key) {
        // SAFETY: see CPU_SAMPLES.
        Some(n) => unsafe { *n += 1 },
        None => {
            if CPU_SAMPLES.insert(&key, &1u64, 0).is_err() {
                note_full(FULL_CPU_SAMPLES);
            }
        }
    }
    0
}
