//! Reassembly of UDP packets that a QUIC-based protocol split into datagram
//! fragments (TUIC's `Packet`, Hysteria 2's `UDPMessage`): both number the
//! packets of a session (16 bits) and their fragments (8 bits each for id
//! and count), and both relay at most what a UDP length field allows. Each
//! protocol encodes its own headers and hands the fields here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::addr::TargetAddr;

/// Largest UDP payload relayed, what an IPv4/IPv6 UDP length field allows.
pub const MAX_UDP_PAYLOAD: usize = 65535;
/// Largest fragment count accepted. A 65535-byte packet split into fragments
/// of QUIC's minimum datagram size needs fewer than 80, so anything above
/// this is a broken or hostile peer (and would let it pin memory per packet).
pub const MAX_FRAGMENTS: u8 = 128;
/// Packets of one session whose fragments may be incomplete at the same time;
/// the oldest is dropped to make room, as a lost UDP packet would be.
pub const MAX_PENDING_PACKETS: usize = 64;
/// How long the fragments of an incomplete packet are kept.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A fragment whose header cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The fragment count is 0.
    #[error("packet with 0 fragments")]
    ZeroFragments,
    /// The fragment count is above [`MAX_FRAGMENTS`].
    #[error("packet in {0} fragments, at most {MAX_FRAGMENTS} accepted")]
    TooManyFragments(u8),
    /// The fragment id is not below the count.
    #[error("fragment {id} of a packet in {total} fragments")]
    IdOutOfRange {
        /// The fragment id.
        id: u8,
        /// The fragment count.
        total: u8,
    },
    /// A whole packet without any address.
    #[error("packet without an address")]
    MissingAddress,
}

/// Checks a fragment's id and count.
pub fn check(frag_id: u8, frag_total: u8) -> Result<(), FragmentError> {
    if frag_total == 0 {
        return Err(FragmentError::ZeroFragments);
    }
    if frag_total > MAX_FRAGMENTS {
        return Err(FragmentError::TooManyFragments(frag_total));
    }
    if frag_id >= frag_total {
        return Err(FragmentError::IdOutOfRange {
            id: frag_id,
            total: frag_total,
        });
    }
    Ok(())
}

/// Why a packet cannot be split into datagrams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A payload over [`MAX_UDP_PAYLOAD`] bytes.
    #[error("UDP packet of {0} bytes, at most 65535 can be relayed")]
    PacketTooLarge(usize),
    /// Datagrams too small for a header and data.
    #[error("QUIC datagrams of {0} bytes cannot carry a fragment")]
    DatagramTooSmall(usize),
    /// A packet that would need more than [`MAX_FRAGMENTS`] fragments.
    #[error("UDP packet would need {0} fragments, at most {MAX_FRAGMENTS} are allowed")]
    TooManyFragments(usize),
}

/// Splits `payload` into the parts that fit datagrams of `max_datagram`
/// bytes after a header of `head` bytes: at least one part (an empty
/// payload is one empty part), at most [`MAX_FRAGMENTS`].
pub fn split(payload: &[u8], head: usize, max_datagram: usize) -> Result<Vec<&[u8]>, SplitError> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(SplitError::PacketTooLarge(payload.len()));
    }
    let chunk = max_datagram.saturating_sub(head);
    if chunk == 0 {
        return Err(SplitError::DatagramTooSmall(max_datagram));
    }
    let count = payload.len().div_ceil(chunk).max(1);
    if count > usize::from(MAX_FRAGMENTS) {
        return Err(SplitError::TooManyFragments(count));
    }
    let mut parts: Vec<&[u8]> = payload.chunks(chunk).collect();
    if parts.is_empty() {
        parts.push(&[]);
    }
    Ok(parts)
}

/// Splits `payload` as [`split`] does into datagrams of at most
/// `max_datagram` bytes: each is its fragment's header, at most `head`
/// bytes written by `header(frag_id, frag_count, part, datagram)` (each
/// protocol frames its own), then the part.
pub fn datagrams<E: From<SplitError>>(
    payload: &[u8],
    head: usize,
    max_datagram: usize,
    mut header: impl FnMut(u8, u8, &[u8], &mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<Bytes>, E> {
    let parts = split(payload, head, max_datagram)?;
    let count = parts.len() as u8; // at most MAX_FRAGMENTS
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let mut d = Vec::with_capacity(head + part.len());
        header(i as u8, count, part, &mut d)?; // i below count
        d.extend_from_slice(part);
        out.push(Bytes::from(d));
    }
    Ok(out)
}

/// Splits a received datagram into its header, read by `decode` (which
/// returns the header and the data after it), and its data as a slice of
/// the datagram (no copy).
pub fn parse<H, E>(
    d: &Bytes,
    decode: impl FnOnce(&[u8]) -> Result<(H, &[u8]), E>,
) -> Result<(H, Bytes), E> {
    let (h, data) = decode(d)?;
    let at = d.len() - data.len();
    Ok((h, d.slice(at..)))
}

/// One fragment as the reassembler needs it.
#[derive(Debug, Clone)]
pub struct Fragment<'a> {
    /// The packet it belongs to.
    pub pkt_id: u16,
    /// Its index.
    pub frag_id: u8,
    /// The packet's fragment count.
    pub frag_total: u8,
    /// The address, on the fragments that carry one.
    pub addr: Option<&'a TargetAddr>,
}

/// A protocol's fragment header, as the reassembler reads it.
pub trait FragmentHeader {
    /// The fields of the header that reassembly needs.
    fn fragment(&self) -> Fragment<'_>;
}

impl FragmentHeader for Fragment<'_> {
    fn fragment(&self) -> Fragment<'_> {
        self.clone()
    }
}

/// Reassembles the fragments of one UDP session's packets.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<u16, Partial>,
}

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<Bytes>>,
    have: usize,
    bytes: usize,
    addr: Option<TargetAddr>,
    started: Instant,
}

impl Reassembler {
    /// Takes one fragment; returns the whole packet with its address once
    /// every fragment has arrived. Packets that grow past
    /// [`MAX_UDP_PAYLOAD`] or time out are dropped silently, as UDP would;
    /// headers that cannot be right are errors.
    pub fn feed(
        &mut self,
        h: &impl FragmentHeader,
        payload: Bytes,
        now: Instant,
    ) -> Result<Option<(TargetAddr, Bytes)>, FragmentError> {
        let f = h.fragment();
        check(f.frag_id, f.frag_total)?;
        if f.frag_total == 1 {
            let addr = f.addr.cloned().ok_or(FragmentError::MissingAddress)?;
            return Ok(Some((addr, payload)));
        }
        self.pending
            .retain(|_, p| now.duration_since(p.started) < REASSEMBLY_TIMEOUT);
        let total = usize::from(f.frag_total);
        let restart = match self.pending.get(&f.pkt_id) {
            Some(p) => p.parts.len() != total,
            None => {
                if self.pending.len() >= MAX_PENDING_PACKETS {
                    let oldest = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.started)
                        .map(|(id, _)| *id);
                    if let Some(id) = oldest {
                        self.pending.remove(&id);
                    }
                }
                true
            }
        };
        if restart {
            // A packet id reused with another fragment count is a new packet:
            // the old one's fragments can never complete.
            self.pending.insert(
                f.pkt_id,
                Partial {
                    parts: vec![None; total],
                    have: 0,
                    bytes: 0,
                    addr: None,
                    started: now,
                },
            );
        }
        let Some(p) = self.pending.get_mut(&f.pkt_id) else {
            return Ok(None);
        };
        let slot = &mut p.parts[usize::from(f.frag_id)];
        if slot.is_some() {
            return Ok(None); // a duplicate
        }
        p.bytes += payload.len();
        if p.bytes > MAX_UDP_PAYLOAD {
            self.pending.remove(&f.pkt_id);
            return Ok(None);
        }
        *slot = Some(payload);
        p.have += 1;
        if let Some(a) = f.addr {
            p.addr = Some(a.clone());
        }
        if p.have < total {
            return Ok(None);
        }
        let Some(p) = self.pending.remove(&f.pkt_id) else {
            return Ok(None);
        };
        let addr = p.addr.ok_or(FragmentError::MissingAddress)?;
        let mut whole = Vec::with_capacity(p.bytes);
        for part in p.parts.into_iter().flatten() {
            whole.extend_from_slice(&part);
        }
        Ok(Some((addr, Bytes::from(whole))))
    }

    /// Packets waiting for fragments.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// A packet that came back to a client's UDP session: its source and data.
pub type Received = (TargetAddr, Bytes);

/// A client's UDP sessions over one QUIC client, by session id: each
/// session's reassembly and the queue its whole packets wait in for the
/// session's owner. The same for every QUIC protocol; only the id type
/// (TUIC's 16 bits, Hysteria's 32) differs.
#[derive(Debug)]
pub struct Inboxes<K> {
    sessions: Mutex<HashMap<K, Inbox>>,
}

#[derive(Debug)]
struct Inbox {
    tx: mpsc::Sender<Received>,
    reassembler: Reassembler,
}

impl<K> Default for Inboxes<K> {
    fn default() -> Self {
        Inboxes {
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Copy> Inboxes<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Inbox>> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session under the first id from `next` (at most `tries`
    /// asked) that is not in use, with a queue of `queue` packets; `None`
    /// if every id tried is taken.
    pub fn open(
        &self,
        mut next: impl FnMut() -> K,
        tries: usize,
        queue: usize,
    ) -> Option<(K, mpsc::Receiver<Received>)> {
        let mut sessions = self.lock();
        let id = (0..tries)
            .map(|_| next())
            .find(|id| !sessions.contains_key(id))?;
        let (tx, rx) = mpsc::channel(queue);
        sessions.insert(
            id,
            Inbox {
                tx,
                reassembler: Reassembler::default(),
            },
        );
        Some((id, rx))
    }

    /// Forgets a session; its later packets are dropped.
    pub fn close(&self, id: K) {
        self.lock().remove(&id);
    }

    /// Takes (a fragment of) a packet for session `id`; queues it once
    /// whole. A packet for a session that is gone, or that finds its queue
    /// full, is dropped as a full socket buffer would drop it.
    pub fn deliver(
        &self,
        id: K,
        h: &impl FragmentHeader,
        payload: Bytes,
    ) -> Result<(), FragmentError> {
        let mut sessions = self.lock();
        let Some(inbox) = sessions.get_mut(&id) else {
            return Ok(());
        };
        if let Some(packet) = inbox.reassembler.feed(h, payload, Instant::now())? {
            let _ = inbox.tx.try_send(packet);
        }
        Ok(())
    }
}
