//! Hysteria v1 (protocol version 3): the client and server hellos, the
//! request and response that start a stream, and `UDPMessage` headers.
#![no_main]

use bench_proto::hysteria1::wire::{
    read_message, ClientHello, Request, Response, ServerHello, UdpHeader, WireError,
    MAX_CLIENT_HELLO, MAX_REQUEST,
};
use libfuzzer_sys::fuzz_target;
use protoprof_fuzz::{block_on, Chunked};

/// A decoded message re-encodes to bytes that decode to it again, using
/// all of them.
fn round_trips<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    decode: impl Fn(&[u8]) -> Result<(T, usize), WireError>,
    encode: impl Fn(&T) -> Vec<u8>,
) {
    if let Ok((m, used)) = decode(input) {
        assert!(used <= input.len());
        let again = encode(&m);
        let (m2, used2) = decode(&again).expect("a re-encoded message decodes");
        assert_eq!((m2, used2), (m, again.len()));
    }
}

fuzz_target!(|input: &[u8]| {
    round_trips(input, ClientHello::decode, |h| {
        h.encode().expect("a decoded hello encodes")
    });
    round_trips(input, ServerHello::decode, ServerHello::encode);
    round_trips(input, Request::decode, |r| {
        r.encode().expect("a decoded request encodes")
    });
    round_trips(input, Response::decode, Response::encode);

    if let Ok((h, data)) = UdpHeader::decode(input) {
        // A host may be written in a longer form than ours ("::0" for
        // "::"), so the re-encoding may be shorter than the input, never
        // longer.
        let mut again = Vec::new();
        let len = u16::try_from(data.len()).expect("the length field is a u16");
        h.encode(len, &mut again).expect("a decoded header encodes");
        assert_eq!(again.len(), h.encoded_len());
        again.extend_from_slice(data);
        let (h2, data2) = UdpHeader::decode(&again).expect("re-encoded header decodes");
        assert_eq!((h2, data2), (h, data));
    }

    // The stream reader stops at the message's end, whatever the reads.
    let mut r = Chunked::from_input(input);
    let _ = block_on(read_message(&mut r, ClientHello::decode, MAX_CLIENT_HELLO));
    let mut r = Chunked::from_input(input);
    let _ = block_on(read_message(&mut r, Request::decode, MAX_REQUEST));
});
