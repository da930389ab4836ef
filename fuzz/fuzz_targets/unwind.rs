//! The unwind-table reader (bench-binfmt `unwind`) and the unwinding of a
//! stack copy from those tables, fed any file: its `.eh_frame`,
//! `.eh_frame_hdr` and `.debug_frame`, malformed ones included, drive
//! framehop over a stack made of the input's last bytes, from addresses
//! the input picks, as the runner unwinds the probes' copies.
#![no_main]

use std::path::Path;

use bench_binfmt::unwind::{unwind_copy, CacheX86_64, UnwindTables, Unwinder, UnwinderX86_64};
use libfuzzer_sys::fuzz_target;

/// Where the file is "mapped", and how much address space it covers.
const BIAS: u64 = 0x5555_0000_0000;
const SPAN: u64 = 1 << 32;
/// Most frames the runner keeps (bench_common::MAX_USER_FRAMES).
const MAX_FRAMES: usize = 96;

fuzz_target!(|input: &[u8]| {
    let Ok(tables) = UnwindTables::parse(Path::new("fuzz.elf"), input) else {
        return;
    };
    let _ = tables.needs_copy();
    let _ = tables.address_of_offset(0);
    let _ = tables.address_of_mapping(0x1000);
    let mut unwinder = UnwinderX86_64::new();
    unwinder.add_module(tables.module("fuzz.elf".into(), BIAS..BIAS + SPAN, BIAS));
    let mut cache = CacheX86_64::new();
    let stack = &input[input.len().saturating_sub(1024)..];
    let sp = 0x7ffd_0000_0000u64;
    // Instruction pointers from the input's first words, inside the module.
    for chunk in input.chunks_exact(8).take(8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let ip = BIAS + word % SPAN;
        let unwound = unwind_copy(&unwinder, &mut cache, (ip, sp, sp + 16), stack, MAX_FRAMES);
        assert!(unwound.frames.len() <= MAX_FRAMES);
        assert_eq!(unwound.frames.first(), Some(&ip));
    }
});
