//! XPlus (Hysteria v1's obfuscation): deobfuscating any datagram, and the
//! round trip.
#![no_main]

use bench_proto::hysteria1::xplus::XPlus;
use libfuzzer_sys::fuzz_target;
use protoprof_fuzz::salted_mask_holds;

fuzz_target!(|input: &[u8]| salted_mask_holds(input, XPlus::new));
