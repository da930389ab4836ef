//! The VLESS request a `reality` server reads after the handshake, and
//! the response header its client reads.
#![no_main]

use bench_proto::reality::vless::{encode_request, parse_request, response_len, MAX_REQUEST_LEN};
use bench_proto::tuic::wire::Uuid;
use libfuzzer_sys::fuzz_target;

const USER: Uuid = Uuid([0x11; 16]);

fuzz_target!(|input: &[u8]| {
    // Even first byte: a known user id goes first, so that the fuzzer
    // spends its time past the user check.
    let mut data = Vec::with_capacity(17 + input.len());
    if input.first().is_some_and(|b| b & 1 == 0) {
        data.push(0);
        data.extend_from_slice(&USER.0);
        data.extend_from_slice(input.get(1..).unwrap_or_default());
    } else {
        data.extend_from_slice(input);
    }
    let known = |u: &Uuid| *u == USER;
    if let Ok(Some((request, len))) = parse_request(&data, known) {
        assert!(len <= MAX_REQUEST_LEN && len <= data.len());
        // Every shorter prefix is incomplete, not an error and not a
        // different request.
        for n in 0..len {
            assert_eq!(parse_request(&data[..n], known), Ok(None), "{n} of {len}");
        }
        // Without addons, the header is what the encoder writes.
        if data[17] == 0 {
            let mut again = Vec::new();
            encode_request(&request.user, &request.target, &mut again);
            assert_eq!(again, data[..len]);
        }
    }
    if let Ok(Some(n)) = response_len(input) {
        assert!(n <= input.len());
    }
});
