//! UDP relaying, shared by both sides: sending a packet in either relay mode
//! (fragmented into QUIC datagrams, or one unidirectional stream per packet)
//! and reassembling fragments on the way in.

use bytes::Bytes;
use quinn::Connection;

use super::wire::{addr_len, Command, PacketHeader, PACKET_FIXED_LEN};
use super::{TuicError, UdpRelayMode};
use crate::addr::TargetAddr;

use crate::udp_frag::{datagrams, Fragment, FragmentHeader, SplitError};
pub use crate::udp_frag::{
    FragmentError, Reassembler, MAX_FRAGMENTS, MAX_PENDING_PACKETS, MAX_UDP_PAYLOAD,
    REASSEMBLY_TIMEOUT,
};

impl FragmentHeader for PacketHeader {
    fn fragment(&self) -> Fragment<'_> {
        Fragment {
            pkt_id: self.pkt_id,
            frag_id: self.frag_id,
            frag_total: self.frag_total,
            addr: self.addr.as_ref(),
        }
    }
}

/// Checks the fragment fields of a `Packet` header.
pub fn check_header(h: &PacketHeader) -> Result<(), FragmentError> {
    crate::udp_frag::check(h.frag_id, h.frag_total)
}

/// Splits a UDP packet into `Packet` datagrams of at most `max_datagram`
/// bytes each. The first fragment carries the address, the others address
/// type "none".
pub fn fragment(
    assoc_id: u16,
    pkt_id: u16,
    addr: &TargetAddr,
    payload: &[u8],
    max_datagram: usize,
) -> Result<Vec<Bytes>, TuicError> {
    // Every fragment gets room for the first one's header, which is the
    // largest, so that one chunk size fits all.
    let head = PACKET_FIXED_LEN + addr_len(Some(addr));
    datagrams(
        payload,
        head,
        max_datagram,
        |frag_id, frag_total, part, d| {
            Command::Packet(PacketHeader {
                assoc_id,
                pkt_id,
                frag_total,
                frag_id,
                size: part.len() as u16, // at most MAX_UDP_PAYLOAD, checked by split
                addr: (frag_id == 0).then(|| addr.clone()),
            })
            .encode(d)
            .map_err(TuicError::from)
        },
    )
}

/// Sends one UDP packet on `conn` in `mode`.
pub async fn send_packet(
    conn: &Connection,
    mode: UdpRelayMode,
    assoc_id: u16,
    pkt_id: u16,
    addr: &TargetAddr,
    payload: &[u8],
) -> Result<(), TuicError> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(SplitError::PacketTooLarge(payload.len()).into());
    }
    match mode {
        UdpRelayMode::Native => {
            let max = conn
                .max_datagram_size()
                .ok_or(TuicError::DatagramsUnsupported)?;
            for d in fragment(assoc_id, pkt_id, addr, payload, max)? {
                // Waits for room in the send buffer instead of dropping the
                // oldest datagram, so that a burst is paced, not truncated.
                conn.send_datagram_wait(d)
                    .await
                    .map_err(crate::quic::Error::Datagram)?;
            }
        }
        UdpRelayMode::Quic => {
            let header = Command::Packet(PacketHeader {
                assoc_id,
                pkt_id,
                frag_total: 1,
                frag_id: 0,
                size: payload.len() as u16, // checked above
                addr: Some(addr.clone()),
            });
            let mut buf = Vec::with_capacity(PACKET_FIXED_LEN + 1 + 255 + 2 + payload.len());
            header.encode(&mut buf)?;
            buf.extend_from_slice(payload);
            let mut s = conn
                .open_uni()
                .await
                .map_err(crate::quic::LinkError::Lost)?;
            s.write_all(&buf).await.map_err(crate::quic::Error::Write)?;
            // Finishing fails only if the peer stopped the stream already;
            // the packet is as lost as a UDP packet can be then.
            let _ = s.finish();
        }
    }
    Ok(())
}

/// Splits a received datagram into its command and the bytes after the
/// header; a `Packet` must carry exactly `SIZE` bytes.
pub async fn parse_datagram(d: &Bytes) -> Result<(Command, Bytes), TuicError> {
    let mut r: &[u8] = d;
    let cmd = Command::read_from(&mut r).await?;
    let payload = d.slice(d.len() - r.len()..);
    if let Command::Packet(h) = &cmd {
        if payload.len() != usize::from(h.size) {
            return Err(TuicError::SizeMismatch {
                header: h.size,
                actual: payload.len(),
            });
        }
    }
    Ok((cmd, payload))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use std::time::Duration;

    fn header(pkt_id: u16, total: u8, id: u8, addr: Option<TargetAddr>) -> PacketHeader {
        PacketHeader {
            assoc_id: 1,
            pkt_id,
            frag_total: total,
            frag_id: id,
            size: 0,
            addr,
        }
    }

    async fn reassemble(datagrams: &[Bytes], r: &mut Reassembler) -> Option<(TargetAddr, Bytes)> {
        let mut out = None;
        for d in datagrams {
            let (cmd, payload) = parse_datagram(d).await.unwrap();
            let Command::Packet(h) = cmd else {
                panic!("not a packet")
            };
            if let Some(done) = r.feed(&h, payload, Instant::now()).unwrap() {
                assert!(out.is_none(), "completed twice");
                out = Some(done);
            }
        }
        out
    }

    #[tokio::test]
    async fn fragments_fit_and_reassemble_in_any_order() {
        let addr = TargetAddr::Domain("echo.test".into(), 7);
        let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for max in [600, 1200, 1452, 70_000] {
            let mut ds = fragment(3, 9, &addr, &payload, max).unwrap();
            assert!(ds.iter().all(|d| d.len() <= max), "max {max}");
            if max < 60_000 {
                assert!(ds.len() > 1);
            }
            let mut r = Reassembler::default();
            ds.reverse();
            let (a, p) = reassemble(&ds, &mut r).await.unwrap();
            assert_eq!(a, addr);
            assert_eq!(p, payload);
            assert_eq!(r.pending(), 0);
        }
        // Too small to carry anything, or too many fragments.
        assert!(matches!(
            fragment(3, 9, &addr, &payload, 20),
            Err(TuicError::Quic(crate::quic::Error::Split(
                SplitError::DatagramTooSmall(20)
            )))
        ));
        assert!(matches!(
            fragment(3, 9, &addr, &payload, 40),
            Err(TuicError::Quic(crate::quic::Error::Split(
                SplitError::TooManyFragments(_)
            )))
        ));
        assert!(matches!(
            fragment(3, 9, &addr, &vec![0; 65536], 1200),
            Err(TuicError::Quic(crate::quic::Error::Split(
                SplitError::PacketTooLarge(65536)
            )))
        ));
        // An empty packet is one datagram.
        let ds = fragment(3, 9, &addr, &[], 1200).unwrap();
        assert_eq!(ds.len(), 1);
    }

    #[test]
    fn bad_fragment_headers_are_errors() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let a = Some(TargetAddr::Ip("127.0.0.1:1".parse().unwrap()));
        let cases = [
            (header(1, 0, 0, a.clone()), FragmentError::ZeroFragments),
            (
                header(1, 129, 0, a.clone()),
                FragmentError::TooManyFragments(129),
            ),
            (
                header(1, 2, 2, a.clone()),
                FragmentError::IdOutOfRange { id: 2, total: 2 },
            ),
            (header(1, 1, 0, None), FragmentError::MissingAddress),
        ];
        for (h, want) in cases {
            assert_eq!(r.feed(&h, Bytes::new(), now), Err(want));
        }
        // Fragments that complete without an address anywhere.
        assert_eq!(r.feed(&header(2, 2, 0, None), Bytes::new(), now), Ok(None));
        assert_eq!(
            r.feed(&header(2, 2, 1, None), Bytes::new(), now),
            Err(FragmentError::MissingAddress)
        );
    }

    #[test]
    fn limits_drop_like_udp() {
        let a = Some(TargetAddr::Ip("127.0.0.1:1".parse().unwrap()));
        let t0 = Instant::now();
        let mut r = Reassembler::default();
        // Duplicates are ignored.
        let part = Bytes::from_static(b"abc");
        assert_eq!(
            r.feed(&header(1, 2, 0, a.clone()), part.clone(), t0),
            Ok(None)
        );
        assert_eq!(
            r.feed(&header(1, 2, 0, a.clone()), part.clone(), t0),
            Ok(None)
        );
        let done = r.feed(&header(1, 2, 1, None), part.clone(), t0).unwrap();
        assert_eq!(done.unwrap().1, Bytes::from_static(b"abcabc"));
        // At most MAX_PENDING_PACKETS incomplete packets: the oldest goes.
        for id in 0..(MAX_PENDING_PACKETS as u16 + 10) {
            let t = t0 + Duration::from_millis(u64::from(id));
            r.feed(&header(id, 3, 0, a.clone()), part.clone(), t)
                .unwrap();
        }
        assert_eq!(r.pending(), MAX_PENDING_PACKETS);
        let t = t0 + Duration::from_secs(1);
        assert_eq!(r.feed(&header(0, 3, 1, None), part.clone(), t), Ok(None));
        // Old ones time out.
        let later = t0 + REASSEMBLY_TIMEOUT + Duration::from_secs(2);
        r.feed(&header(9999, 2, 0, a.clone()), part.clone(), later)
            .unwrap();
        assert_eq!(r.pending(), 1);
        // More than 65535 bytes in total is dropped.
        let big = Bytes::from(vec![0u8; 40_000]);
        assert_eq!(
            r.feed(&header(7, 2, 0, a.clone()), big.clone(), later),
            Ok(None)
        );
        assert_eq!(r.feed(&header(7, 2, 1, None), big, later), Ok(None));
        assert_eq!(r.pending(), 1);
    }
}
