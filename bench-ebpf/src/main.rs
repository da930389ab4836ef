//! protoprof's probes. Each file is one probe; they share the target filter
//! and the on/off switch below, so that every probe records only the
//! endpoint processes and only inside the measured window.
#![no_std]
#![no_main]

mod cpu;
mod syscalls;
mod user_stack;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use bench_common::{CONFIG_ENABLED, CONFIG_LEN, MAX_TARGETS};

/// Runner-written settings; `CONFIG_ENABLED` is the measuring switch.
#[map]
static CONFIG: Array<u64> = Array::with_max_entries(CONFIG_LEN, 0);

/// The processes being profiled (tgid → role index).
#[map]
static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Whether the current task belongs to a profiled process while measuring.
/// Returns the pid_tgid word so callers need not ask the kernel twice.
#[inline(always)]
fn recording() -> Option<u64> {
    let on = CONFIG.get(CONFIG_ENABLED).is_some_and(|v| *v != 0);
    if !on {
        return None;
    }
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: the value is only tested for presence, never held.
    if unsafe { TARGETS.get(&tgid) }.is_some() {
        Some(pid_tgid)
    } else {
        None
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// bpf_get_stackid is a GPL-only helper.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
