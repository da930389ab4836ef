//! Hysteria 2 framing: the TCPRequest a server reads, the TCPResponse a
//! client reads, UDPMessage datagram headers and QUIC varints.
#![no_main]

use bench_proto::hysteria2::wire::{
    self, encode_tcp_request, read_tcp_request, read_tcp_response, take_varint, UdpHeader,
};
use libfuzzer_sys::fuzz_target;
use protoprof_fuzz::{block_on, Chunked};

fuzz_target!(|input: &[u8]| {
    let mut r = Chunked::from_input(input);
    if let Ok(target) = block_on(read_tcp_request(&mut r)) {
        // The target survives its own encoding.
        let again = encode_tcp_request(&target, b"").expect("a decoded target encodes");
        let mut r2: &[u8] = &again;
        assert_eq!(block_on(read_tcp_request(&mut r2)).ok(), Some(target));
    }
    let mut r = Chunked::from_input(input);
    let _ = block_on(read_tcp_response(&mut r));

    if let Ok((h, payload)) = UdpHeader::decode(input) {
        assert!(payload.len() < input.len());
        let mut again = Vec::new();
        h.encode(&mut again).expect("a decoded header encodes");
        assert_eq!(again.len(), h.encoded_len());
        let (h2, rest) = UdpHeader::decode(&again).expect("re-encoded header decodes");
        assert_eq!((h2, rest.len()), (h, 0));
    }

    let mut b = input;
    if let Ok(v) = take_varint(&mut b) {
        let mut again = Vec::new();
        wire::put_varint(&mut again, v).expect("a decoded varint encodes");
        assert_eq!(again.len(), wire::varint_len(v));
        assert!(again.len() <= input.len() - b.len());
    }
});
