//! UDP over QUIC datagrams: splitting a packet into `UDPMessage` fragments
//! that fit the connection's datagram size (the shared
//! [`split`](crate::udp_frag::split)), and reading them back for the shared
//! [`Reassembler`](crate::udp_frag::Reassembler).

use bytes::Bytes;

use super::wire::{UdpHeader, WireError};
use super::Hysteria1Error;
use crate::addr::TargetAddr;
use crate::udp_frag::{datagrams, Fragment, FragmentHeader};

/// Splits `payload` into `UDPMessage` datagrams of at most `max_datagram`
/// bytes, all with the same message id.
pub fn fragment(
    session_id: u32,
    msg_id: u16,
    addr: &TargetAddr,
    payload: &[u8],
    max_datagram: usize,
) -> Result<Vec<Bytes>, Hysteria1Error> {
    let mut h = UdpHeader {
        session_id,
        addr: addr.clone(),
        msg_id,
        frag_id: 0,
        frag_count: 1,
    };
    let head = h.encoded_len();
    datagrams(
        payload,
        head,
        max_datagram,
        |frag_id, frag_count, part, d| {
            h.frag_id = frag_id;
            h.frag_count = frag_count;
            // split keeps parts below 65536
            h.encode(part.len() as u16, d).map_err(Hysteria1Error::from)
        },
    )
}

/// Splits a received datagram into header and data.
pub fn parse(d: &Bytes) -> Result<(UdpHeader, Bytes), WireError> {
    crate::udp_frag::parse(d, UdpHeader::decode)
}

impl FragmentHeader for UdpHeader {
    fn fragment(&self) -> Fragment<'_> {
        // Each fragment carries the address.
        Fragment {
            pkt_id: self.msg_id,
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
    use crate::udp_frag::{Reassembler, SplitError};

    #[test]
    fn fragments_fit_and_reassemble_in_any_order() {
        let addr = TargetAddr::Domain("echo.test".into(), 7);
        let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for max in [600, 1200, 1452, 70_000] {
            let mut ds = fragment(3, 9, &addr, &payload, max).unwrap();
            assert!(ds.iter().all(|d| d.len() <= max), "max {max}");
            assert_eq!(
                ds.len(),
                if max < 60_000 {
                    60_000usize.div_ceil(max - 23)
                } else {
                    1
                }
            );
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
        }
        assert!(matches!(
            fragment(3, 9, &addr, &payload, 23),
            Err(Hysteria1Error::Quic(crate::quic::Error::Split(
                SplitError::DatagramTooSmall(23)
            )))
        ));
        assert!(matches!(
            fragment(3, 9, &addr, &vec![0; 65536], 1200),
            Err(Hysteria1Error::Quic(crate::quic::Error::Split(
                SplitError::PacketTooLarge(65536)
            )))
        ));
        assert_eq!(fragment(3, 9, &addr, &[], 1200).unwrap().len(), 1);
    }
}
