//! Reassembly of UDP packets fragmented into QUIC datagrams (TUIC's
//! `Packet`, Hysteria 2's `UDPMessage`), fed any sequence of fragments.
#![no_main]

use std::time::{Duration, Instant};

use bench_proto::udp_frag::{Fragment, Reassembler, MAX_PENDING_PACKETS, MAX_UDP_PAYLOAD};
use bench_proto::TargetAddr;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let addr = TargetAddr::Domain("fuzz.test".into(), 53);
    let start = Instant::now();
    let mut now = start;
    let mut r = Reassembler::default();
    let mut rest = input;
    // Each fragment: packet id (1 byte, so ids repeat), fragment id, count,
    // flags (bit 0: carries the address; bits 1-7: seconds to advance the
    // clock), payload length (x 64 bytes, so that packets can outgrow the
    // limit), then one payload byte.
    while let [pkt, id, total, flags, len, fill, tail @ ..] = rest {
        rest = tail;
        now += Duration::from_secs(u64::from(flags >> 1));
        let f = Fragment {
            pkt_id: u16::from(*pkt),
            frag_id: *id,
            frag_total: *total,
            addr: (flags & 1 == 1).then_some(&addr),
        };
        let payload = Bytes::from(vec![*fill; usize::from(*len) * 64]);
        let sent = payload.len();
        match r.feed(&f, payload, now) {
            Ok(Some((a, whole))) => {
                assert_eq!(a, addr);
                assert!(whole.len() <= MAX_UDP_PAYLOAD, "{} bytes", whole.len());
                if *total == 1 {
                    assert_eq!(whole.len(), sent);
                }
            }
            Ok(None) => assert!(*total > 1, "an unfragmented packet came out whole"),
            Err(_) => {}
        }
        assert!(r.pending() <= MAX_PENDING_PACKETS);
    }
});
