//! Go's function table (`.gopclntab`), read from stripped Go binaries.
#![no_main]

use bench_binfmt::gopclntab;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The text address the reader falls back on: from the input's tail.
    let text = input
        .rchunks_exact(8)
        .next()
        .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    if let Ok(functions) = gopclntab::functions(input, text) {
        // Each function needs an 8-byte table entry: more cannot fit.
        assert!(functions.len() <= input.len() / 8);
    }
});
