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
//!
//! Code built without frame pointers cannot be walked this way at all. For
//! a process whose modules include such code (the runner decides per
//! module and writes `UNWIND`), a stack whose instruction pointer lies
//! outside its frame-pointer code is instead copied, up to 32 KiB from the stack
//! pointer up with the registers, into the `STACK_COPIES` ring; the runner
//! unwinds the copy from the modules' `.eh_frame` (framehop), as `perf
//! --call-graph dwarf` does, and the record names the copy by its tag.

use aya_ebpf::{
    bindings::pt_regs,
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_probe_read_kernel,
        bpf_probe_read_user,
        generated::{self, bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use bench_common::{
    StackCopy, UnwindRanges, UserStack, FULL_STACK_COPIES, MAX_FRAME_POINTER_RANGES, MAX_TARGETS,
    MAX_USER_FRAMES, STACK_COPY_BYTES, STACK_COPY_TAG,
};

/// How far above a frame pointer the next one may be.
const STACK_SPAN: u64 = 8 << 20;
/// The page size: stack mappings end on a page boundary.
const PAGE: u64 = 4096;
/// How many words above the stack pointer to search for a pushed rbp.
const SCAN_WORDS: u64 = 24;

#[map]
static SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);

/// Walked stacks by hash; the runner reads them back by the hash in the key.
#[map]
pub(crate) static USER_STACKS: HashMap<u64, UserStack> = HashMap::with_max_entries(16384, 0);

/// Per process (tgid): which stacks to copy rather than walk. No entry:
/// walk them all. A forked child inherits its parent's (process_tree.rs).
#[map]
pub(crate) static UNWIND: HashMap<u32, UnwindRanges> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Stack copies for the runner to unwind. 4 MiB hold 127 copies of 32 KiB:
/// at the cpu probe's 99 Hz per CPU, seconds of them; the runner drains the
/// ring every few milliseconds.
#[map]
static STACK_COPIES: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Copies made per CPU, for the tags.
#[map]
static COPIES_MADE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

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
    if regs.rip == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if copies_stack((pid_tgid >> 32) as u32, regs.rip) {
        if let Some(tag) = copy_stack(pid_tgid, regs) {
            return tag;
        }
    }
    let Some(stack) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, this program's alone while it runs.
    let stack = unsafe { &mut *stack };
    let (ip, sp) = (regs.rip, regs.rsp);
    let mut bp = regs.rbp;
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
    // The top bit marks stack copies' tags.
    hash &= !STACK_COPY_TAG;
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

/// Whether process `tgid`'s stack at `ip` is copied rather than walked:
/// it has an `UNWIND` entry, and `ip` lies in none of its frame-pointer
/// ranges.
#[inline(always)]
fn copies_stack(tgid: u32, ip: u64) -> bool {
    // SAFETY: a copy of the value is read at once.
    let Some(u) = (unsafe { UNWIND.get(&tgid) }) else {
        return false;
    };
    let mut i = 0;
    while i < MAX_FRAME_POINTER_RANGES {
        if (i as u32) < u.n && ip >= u.fp[i][0] && ip < u.fp[i][1] {
            return false;
        }
        i += 1;
    }
    true
}

/// Copy the stack above `regs.rsp` with the registers into the ring;
/// returns the copy's tag, or `None` when the ring is full (the caller
/// walks instead). At a uprobe on a function's first instruction the
/// unwind tables place the return address at the stack pointer: nothing
/// to do here for it.
#[inline(always)]
fn copy_stack(pid_tgid: u64, regs: &pt_regs) -> Option<u64> {
    let Some(mut entry) = STACK_COPIES.reserve::<StackCopy>(0) else {
        crate::note_full(FULL_STACK_COPIES);
        return None;
    };
    let count = match COPIES_MADE.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot.
        Some(n) => unsafe {
            *n += 1;
            *n
        },
        None => 0,
    };
    // SAFETY: plain helper call.
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() });
    let tag = STACK_COPY_TAG | (cpu & 0x7f_ffff) << 40 | (count & ((1 << 40) - 1));
    let rec = entry.as_mut_ptr();
    let sp = regs.rsp;
    // SAFETY: `rec` points to the reserved record, ours until submitted;
    // every field is written before it is.
    unsafe {
        (*rec).tag = tag;
        (*rec).tgid = (pid_tgid >> 32) as u32;
        (*rec).tid = pid_tgid as u32;
        (*rec).ip = regs.rip;
        (*rec).sp = sp;
        (*rec).bp = regs.rbp;
        // Page by page, so that the copy ends exactly where the stack's
        // mapping does: one read of the whole size fails whole when the
        // mapping ends sooner (a thread's stack usually ends a few KiB above
        // its stack pointer), and halving it lost up to half the stack,
        // with the outermost frames. First up to sp's page end, then whole
        // pages; the verifier bounds every offset by the loop count.
        let base = core::ptr::addr_of_mut!((*rec).stack) as *mut u8;
        let first = PAGE - (sp & (PAGE - 1));
        let mut len: u64 = 0;
        if generated::bpf_probe_read_user(base as *mut c_void, first as u32, sp as *const c_void)
            == 0
        {
            len = first;
            let mut k = 0;
            while k < STACK_COPY_BYTES as u64 / PAGE - 1 {
                let dst = base.add(len as usize) as *mut c_void;
                if generated::bpf_probe_read_user(dst, PAGE as u32, (sp + len) as *const c_void)
                    != 0
                {
                    break;
                }
                len += PAGE;
                k += 1;
            }
        }
        (*rec).len = len;
    }
    entry.submit(0);
    Some(tag)
}

/// errno EEXIST (Linux, every architecture).
const EEXIST: i32 = 17;
