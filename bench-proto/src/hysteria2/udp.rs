//! UDP over QUIC datagrams: splitting a packet into `UDPMessage` fragments
//! that fit the connection's datagram size, and reassembling them.

use bytes::Bytes;

use super::wire::{UdpHeader, WireError};
use super::Hysteria2Error;
use crate::addr::TargetAddr;

use crate::udp_frag::{datagrams, Fragment, FragmentHeader};
pub use crate::udp_frag::{
    FragmentError, Reassembler, MAX_FRAGMENTS, MAX_PENDING_PACKETS, MAX_UDP_PAYLOAD,
    REASSEMBLY_TIMEOUT,
};

/// Splits `payload` into `UDPMessage` datagrams of at most `max_datagram`
/// bytes, all with the same packet id.
pub fn fragment(
    session_id: u32,
    packet_id: u16,
    addr: &TargetAddr,
    payload: &[u8],
    max_datagram: usize,
) -> Result<Vec<Bytes>, Hysteria2Error> {
    let mut h = UdpHeader {
        session_id,
        packet_id,
        frag_id: 0,
        frag_count: 1,
        addr: addr.clone(),
    };
    let head = h.encoded_len();
    datagrams(payload, head, max_datagram, |frag_id, frag_count, _, d| {
        h.frag_id = frag_id;
        h.frag_count = frag_count;
        h.encode(d).map_err(Hysteria2Error::from)
    })
}

/// Splits a received datagram into header and payload.
pub fn parse(d: &Bytes) -> Result<(UdpHeader, Bytes), WireError> {
    crate::udp_frag::parse(d, UdpHeader::decode)
}

impl FragmentHeader for UdpHeader {
    fn fragment(&self) -> Fragment<'_> {
        // Each fragment carries the address.
        Fragment {
            pkt_id: self.packet_id,
            frag_id: self.frag_id,
            frag_total: self.frag_count,
            addr: Some(&self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::udp_frag::SplitError;
    use std::time::Duration;

    fn header(packet_id: u16, count: u8, id: u8) -> UdpHeader {
        UdpHeader {
            session_id: 1,
            packet_id,
            frag_id: id,
            frag_count: count,
            addr: TargetAddr::Ip("127.0.0.1:7".parse().unwrap()),
        }
    }

    #[test]
    fn fragments_fit_and_reassemble_in_any_order() {
        let addr = TargetAddr::Domain("echo.test".into(), 7);
        let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for max in [600, 1200, 1452, 70_000] {
            let mut ds = fragment(3, 9, &addr, &payload, max).unwrap();
            assert!(ds.iter().all(|d| d.len() <= max), "max {max}");
            assert_eq!(ds.len() > 1, max < 60_000);
            ds.reverse();
            let mut r = Reassembler::default();
            let mut done = None;
            for d in &ds {
                let (h, p) = parse(d).unwrap();
                assert_eq!(h.session_id, 3);
                if let Some(whole) = r.feed(&h, p, Instant::now()).unwrap() {
                    assert!(done.is_none(), "completed twice");
                    done = Some(whole);
                }
            }
            let (a, p) = done.unwrap();
            assert_eq!(a, addr);
            assert_eq!(p, payload);
            assert_eq!(r.pending(), 0);
        }
        assert!(matches!(
            fragment(3, 9, &addr, &payload, 20),
            Err(Hysteria2Error::Quic(crate::quic::Error::Split(
                SplitError::DatagramTooSmall(20)
            )))
        ));
        assert!(matches!(
            fragment(3, 9, &addr, &payload, 40),
            Err(Hysteria2Error::Quic(crate::quic::Error::Split(
                SplitError::TooManyFragments(_)
            )))
        ));
        assert!(matches!(
            fragment(3, 9, &addr, &vec![0; 65536], 1200),
            Err(Hysteria2Error::Quic(crate::quic::Error::Split(
                SplitError::PacketTooLarge(65536)
            )))
        ));
        assert_eq!(fragment(3, 9, &addr, &[], 1200).unwrap().len(), 1);
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let cases = [
            (header(1, 0, 0), FragmentError::ZeroFragments),
            (header(1, 129, 0), FragmentError::TooManyFragments(129)),
            (
                header(1, 2, 2),
                FragmentError::IdOutOfRange { id: 2, total: 2 },
            ),
        ];
        for (h, want) in cases {
            assert_eq!(r.feed(&h, Bytes::new(), now), Err(want));
        }
    }

    #[test]
    fn limits_drop_like_udp() {
        let t0 = Instant::now();
        let mut r = Reassembler::default();
        let part = Bytes::from_static(b"abc");
        assert_eq!(r.feed(&header(1, 2, 0), part.clone(), t0), Ok(None));
        assert_eq!(r.feed(&header(1, 2, 0), part.clone(), t0), Ok(None));
        let done = r.feed(&header(1, 2, 1), part.clone(), t0).unwrap();
        assert_eq!(done.unwrap().1, Bytes::from_static(b"abcabc"));
        for id in 0..(MAX_PENDING_PACKETS as u16 + 10) {
            let t = t0 + Duration::from_millis(u64::from(id));
            r.feed(&header(id, 3, 0), part.clone(), t).unwrap();
        }
        assert_eq!(r.pending(), MAX_PENDING_PACKETS);
        let later = t0 + REASSEMBLY_TIMEOUT + Duration::from_secs(2);
        r.feed(&header(9999, 2, 0), part.clone(), later).unwrap();
        assert_eq!(r.pending(), 1);
        let big = Bytes::from(vec![0u8; 40_000]);
        assert_eq!(r.feed(&header(7, 2, 0), big.clone(), later), Ok(None));
        assert_eq!(r.feed(&header(7, 2, 1), big, later), Ok(None));
        assert_eq!(r.pending(), 1);
    }
}
