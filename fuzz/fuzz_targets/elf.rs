//! The ELF reader that finds the functions a target can be probed at and
//! maps addresses to file offsets, fed any file.
#![no_main]

use std::path::Path;

use bench_binfmt::elf::ElfFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(elf) = ElfFile::parse(Path::new("fuzz.elf"), input) else {
        return;
    };
    assert!(elf
        .functions
        .windows(2)
        .all(|w| w[0].address <= w[1].address));
    // Every lookup the runner makes, at addresses the file names and at
    // the edges of the address space.
    let mut probes: Vec<u64> = vec![0, 1, u64::MAX, u64::MAX - 1];
    for f in elf.functions.iter().take(64) {
        probes.extend([f.address, f.address.wrapping_add(f.size), f.size]);
    }
    for a in probes {
        if let Some(f) = elf.function_at(a) {
            assert!(f.address <= a);
        }
        if let Some(off) = elf.file_offset(a) {
            let _ = elf.address_of_offset(off);
        }
        let _ = elf.address_of_offset(a);
    }
    if let Some(f) = elf.functions.first() {
        assert!(elf.named(&f.name).count() >= 1);
    }
});
