//! The SOCKS5 handshake (greeting and CONNECT request) a client endpoint
//! accepts, and the target address encoding it shares with Trojan.
#![no_main]

use bench_proto::socks5;
use bench_proto::TargetAddr;
use libfuzzer_sys::fuzz_target;
use protoprof_fuzz::{block_on, Chunked};

fuzz_target!(|input: &[u8]| {
    let mut answer = Vec::new();
    let result = {
        let mut stream = tokio::io::join(Chunked::from_input(input), &mut answer);
        block_on(socks5::accept(&mut stream))
    };
    if result.is_ok() {
        // Accepted: only the method choice was answered.
        assert_eq!(answer, [socks5::VERSION, socks5::METHOD_NO_AUTH]);
    }
    // Whatever was answered is at most the method choice and one reply.
    assert!(answer.len() <= 2 + 3 + 1 + 16 + 2, "{answer:?}");

    // The address alone: what decodes re-encodes to the bytes it consumed.
    let mut r = Chunked::from_input(input);
    let all = r.rest();
    if let Ok(addr) = block_on(TargetAddr::read_from(&mut r)) {
        let consumed = &all[..all.len() - r.rest().len()];
        let mut again = Vec::new();
        addr.encode(&mut again).expect("a decoded address encodes");
        assert_eq!(again, consumed);
    }
});
