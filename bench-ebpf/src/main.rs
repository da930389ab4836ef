//! protoprof's probes. Each file is one probe; they share the target filter,
//! the on/off switch and the stack maps below, so that every probe records
//! only the endpoint processes and only inside the measured window.
#![no_std]
#![no_main]
// aya-ebpf's map methods take `impl Borrow<K>`: the probes pass keys and
// values by reference throughout, which compiles to the same code as by
// value; allowed rather than rewriting every map call.
#![allow(clippy::needless_borrows_for_generic_args)]

mod alloc;
mod cpu;
mod crypto;
mod floor;
mod offcpu;
mod process_tree;
mod syscalls;
mod user_stack;

use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, StackTrace},
};
use bench_common::{
    target_slot, CONFIG_ENABLED, CONFIG_LEN, CONFIG_WINDOW_INDEX, FULL_LEN, MAX_TARGETS,
    TARGET_FILTER_SLOTS,
};

/// Runner-written settings (see the `CONFIG_*` indices in bench-common);
/// `CONFIG_ENABLED` is the measuring switch.
#[map]
static CONFIG: Array<u64> = Array::with_max_entries(CONFIG_LEN, 0);

/// The processes being profiled (tgid → role index).
#[map]
static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// How many targets' tgids fall in each slot (`target_slot`): a cheap "no"
/// for the other processes on the machine, before the `TARGETS` lookup.
#[map]
static TARGET_FILTER: Array<u32> = Array::with_max_entries(TARGET_FILTER_SLOTS, 0);

/// Kernel stacks, by id, for every probe that records them.
#[map]
static KERNEL_STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// Thread names (comm) of the threads the probes saw, by tid, taken the
/// first time a thread is seen, so names survive threads that exit.
#[map]
static THREAD_NAMES: HashMap<u32, [u8; 16]> = HashMap::with_max_entries(8192, 0);

/// Records that found their map full, per map (`FULL_*` indices in
/// bench-common). Per CPU: counted without a lock on every path.
#[map]
static FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(FULL_LEN, 0);

/// Count one record lost because `map` (a `FULL_*` index) was full.
#[inline(always)]
fn note_full(map: u32) {
    if let Some(n) = FULL.get_ptr_mut(map) {
        // SAFETY: this CPU's own slot.
        unsafe { *n += 1 };
    }
}

/// A `CONFIG` word.
#[inline(always)]
fn config(index: u32) -> u64 {
    CONFIG.get(index).copied().unwrap_or(0)
}

/// The current measured window's index (see `CONFIG_WINDOW_INDEX`).
#[inline(always)]
fn window() -> u32 {
    config(CONFIG_WINDOW_INDEX) as u32
}

#[inline(always)]
fn enabled() -> bool {
    config(CONFIG_ENABLED) != 0
}

/// The cheap "no" for the other processes on the machine: an array lookup,
/// which the verifier inlines into a bounds check and a load (a hash
/// lookup is a call and a jhash). `true` means "maybe": a tgid sharing a
/// slot with a target passes too.
#[inline(always)]
pub(crate) fn may_be_target(tgid: u32) -> bool {
    matches!(TARGET_FILTER.get(target_slot(tgid)), Some(&n) if n != 0)
}

/// Whether `tgid` is a profiled process: the pre-filter, then the exact
/// lookup. The hot paths (a target thread's syscalls and switches) skip the
/// exact lookup once the thread has an entry of its own that names its
/// tgid; they call this only for a thread seen the first time.
#[inline(always)]
pub(crate) fn is_target(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence, never held.
    may_be_target(tgid) && unsafe { TARGETS.get(&tgid) }.is_some()
}

/// Whether the current task belongs to a profiled process while measuring.
/// Returns the pid_tgid word so callers need not ask the kernel twice.
#[inline(always)]
fn recording() -> Option<u64> {
    if !enabled() {
        return None;
    }
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if is_target((pid_tgid >> 32) as u32) {
        Some(pid_tgid)
    } else {
        None
    }
}

/// Remember the current thread's name, once.
#[inline(always)]
fn note_thread(tid: u32) {
    // SAFETY: presence test only.
    if unsafe { THREAD_NAMES.get(&tid) }.is_some() {
        return;
    }
    if let Ok(comm) = bpf_get_current_comm() {
        // BPF_NOEXIST: a racing insert of the same thread is the same name.
        let _ = THREAD_NAMES.insert(&tid, &comm, 1);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// bpf_get_stackid and bpf_probe_read_* are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
