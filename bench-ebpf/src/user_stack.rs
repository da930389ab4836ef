//! Frame-pointer walk of the current thread's user stack, with one repair
//! the kernel's own walker (`bpf_get_stackid(BPF_F_USER_STACK)`) lacks.
//!
//! Proxies spend most samples inside syscalls, entered through libc
//! wrappers. glibc is built without frame pointers, and its cancellable
//! wrappers (recv, send, epoll_wait, … on any multi-threaded process) push
//! rbp and reuse it as a scratch register before the syscall. The kernel's
//! walk starts from that clobbered rbp and ends after one frame, so every
//! kernel-mode sample lost its Rust callers. Here, when rbp does not point
//! into the stack, the words just above the stack pointer are scanned for
//! the pushed rbp (a word pointing further up the stack whose own first word
//! continues the chain); the word above it is the return address into the
//! wrapper's caller, and the walk goes on from there.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use bench_common::{UserStack, MAX_USER_FRAMES};

/// How far above a frame pointer the next one may be.
const STACK_SPAN: u64 = 8 << 20;
/// How many words above the stack pointer to search for a pushed rbp.
const SCAN_WORDS: u64 = 24;

#[map]
static SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);

/// Walked stacks by hash; the runner reads them back by the hash in the key.
#[map]
pub(crate) static USER_STACKS: HashMap<u64, UserStack> = HashMap::with_max_entries(16384, 0);

#[inline(always)]
fn read(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// A frame record: the saved frame pointer and the return address above
/// it, in one helper call.
#[inline(always)]
fn read_frame(addr: u64) -> Option<[u64; 2]> {
    // SAFETY: as in `read`.
    unsafe { bpf_probe_read_user(addr as *const [u64; 2]) }.ok()
}

#[inline(always)]
fn in_span(lower: u64, p: u64) -> bool {
    p > lower && p - lower < STACK_SPAN && p & 7 == 0
}

/// Walk the current thread's user stack from the user registers saved at
/// its last entry into the kernel; returns the stack's hash (0 = none).
#[inline(always)]
pub(crate) fn walk_current() -> u64 {
    // SAFETY: BTF helpers on the current task.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    walk_from(regs, false)
}

/// Like [`walk_current`], for a uprobe on a function's first instruction:
/// the function has not pushed its frame yet, so its caller is found
/// through the return address at the stack pointer, not through rbp.
#[inline(always)]
pub(crate) fn walk_at_entry() -> u64 {
    // SAFETY: BTF helpers on the current task.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    walk_from(regs, true)
}

/// Walk the user stack whose registers `regs` points to (kernel memory,
/// copied out with bpf_probe_read_kernel); returns its hash (0 = none).
#[inline(always)]
pub(crate) fn walk_from(regs: *const pt_regs, at_entry: bool) -> u64 {
    if regs.is_null() {
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel checks the address.
    let Ok(regs) = (unsafe { bpf_probe_read_kernel(regs) }) else {
        return 0;
    };
    walk_regs(&regs, at_entry)
}

/// Walk from a copy of the user registers; returns the stack's hash.
#[inline(always)]
fn walk_regs(regs: &pt_regs, at_entry: bool) -> u64 {
    let Some(stack) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, this program's alone while it runs.
    let stack = unsafe { &mut *stack };
    let (ip, sp) = (regs.rip, regs.rsp);
    let mut bp = regs.rbp;
    if ip == 0 {
        return 0;
    }
    stack.ips[0] = ip;
    let mut n: usize = 1;
    // At a function's entry the return address is on top of the stack.
    let mut scan_from = sp;
    if at_entry {
        if let Some(ret) = read(sp) {
            stack.ips[1] = ret;
            n = 2;
        }
        scan_from = sp + 8;
    }

    if !(bp >= sp && bp - sp < STACK_SPAN) {
        bp = 0;
        let mut i: u64 = 0;
        while i < SCAN_WORDS {
            let slot = scan_from + 8 * i;
            if let Some(w) = read(slot) {
                if in_span(slot, w) {
                    if let Some(next) = read(w) {
                        if next == 0 || in_span(w, next) {
                            if let Some(ret) = read(slot + 8) {
                                if n < MAX_USER_FRAMES {
                                    stack.ips[n] = ret;
                                    n += 1;
                                }
                                bp = w;
                            }
                            break;
                        }
                    }
                }
            }
            i += 1;
        }
    }

    let mut depth = 0;
    while depth < MAX_USER_FRAMES {
        depth += 1;
        if bp == 0 || n >= MAX_USER_FRAMES {
            break;
        }
        let Some([next, ret]) = read_frame(bp) else {
            break;
        };
        if ret == 0 {
            break;
        }
        stack.ips[n] = ret;
        n += 1;
        if !in_span(bp, next) {
            break;
        }
        bp = next;
    }
    stack.len = n as u64;

    // FNV-1a over the frames; 0 is reserved for "no stack".
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < MAX_USER_FRAMES {
        if i >= n {
            break;
        }
        hash = (hash ^ stack.ips[i]).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    if hash == 0 {
        hash = 1;
    }
    // A lookup takes no lock; most stacks have been seen before.
    if USER_STACKS.get_ptr(&hash).is_none() {
        // BPF_NOEXIST: an entry a racing insert made is the same stack.
        // -EEXIST is that racing insert; anything else is a full map.
        if let Err(e) = USER_STACKS.insert(&hash, stack, 1) {
            if e != -EEXIST {
                crate::note_full(bench_common::FULL_USER_STACKS);
            }
        }
    }
    hash
}

/// errno EEXIST (Linux, every architecture).
const EEXIST: i32 = 17;
