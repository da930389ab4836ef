//! TUIC v5 command headers (stream and datagram): Authenticate, Connect,
//! Packet, Dissociate, Heartbeat, with TUIC's address encoding.
#![no_main]

use bench_proto::tuic::wire::{read_addr, Command};
use libfuzzer_sys::fuzz_target;
use protoprof_fuzz::{block_on, Chunked};

fuzz_target!(|input: &[u8]| {
    let mut r = Chunked::from_input(input);
    let all = r.rest();
    if let Ok(cmd) = block_on(Command::read_from(&mut r)) {
        // What decodes re-encodes to exactly the bytes it consumed.
        let consumed = &all[..all.len() - r.rest().len()];
        assert_eq!(cmd.to_bytes().expect("a decoded command encodes"), consumed);
    }
    let mut r = Chunked::from_input(input);
    let _ = block_on(read_addr(&mut r));
});
