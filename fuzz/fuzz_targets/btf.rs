//! The kernel BTF reader that finds struct field offsets, fed any blob.
#![no_main]

use bench_binfmt::btf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // What the runner asks for, and names that short strings sections hold.
    if let Ok(offsets) = btf::field_offsets(input, "task_struct", &["pid", "tgid"]) {
        assert_eq!(offsets.len(), 2);
    }
    let _ = btf::field_offsets(input, "", &[""]);
    let _ = btf::field_offsets(input, "a", &["a", "b"]);
});
