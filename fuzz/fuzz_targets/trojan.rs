//! The Trojan request a `tls`/`ech` server reads: password hash line,
//! command, target address, CRLF.
#![no_main]

use bench_proto::tls::wire::{self, PasswordHash, HASH_LEN};
use libfuzzer_sys::fuzz_target;
use protoprof_fuzz::{block_on, Chunked};

fuzz_target!(|input: &[u8]| {
    let password = PasswordHash::new("fuzz");
    // Even first byte: the right hash line goes first, so that the fuzzer
    // spends its time past the password check.
    let mut data = Vec::with_capacity(HASH_LEN + 2 + input.len());
    if input.first().is_some_and(|b| b & 1 == 0) {
        data.extend_from_slice(input.get(..1).unwrap_or_default());
        data.extend_from_slice(password.as_bytes());
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(input.get(1..).unwrap_or_default());
    } else {
        data.extend_from_slice(input);
    }
    let mut r = Chunked::from_input(&data);
    let mut buf = Vec::new();
    let got = block_on(wire::read_request(&mut r, &mut buf, &password));
    if let Ok(Ok((target, header_len))) = got {
        // The header is what an encoder writes for that target.
        assert!(header_len <= wire::MAX_HEADER_LEN);
        let mut again = Vec::new();
        wire::encode_header(&password, &target, &mut again);
        assert_eq!(again, buf[..header_len]);
    }
});
