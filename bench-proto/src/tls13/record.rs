//! The TLS 1.3 record layer after a handshake: one [`RecordKey`] per
//! direction (AEAD with the per-record nonce), and [`TlsStream`], the
//! protected byte stream handed to the relay.
//!
//! Two handshakes end here: REALITY's own ([`crate::reality::handshake`],
//! keys from [`super::keys`]) and rustls's for protocol `tls` (keys handed
//! over through rustls's kernel-connection API, see [`crate::tls`]). Where
//! the next keys come from after a KeyUpdate is a [`KeySchedule`].
//!
//! Reads take up to [`READ_RECORDS`] records per syscall, decrypt them in
//! place and copy the plaintext of as many as the caller has room for out
//! once; writes seal up to [`WRITE_BATCH`] bytes of records per call into reused
//! buffers, so that a large write costs about one syscall per batch and no
//! allocation.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ring::aead;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::keys::{expand_label, next_traffic_secret, CipherSuite, Secret};
use super::wire::{
    handshake_message_len, RecordHeader, CONTENT_ALERT, CONTENT_APPLICATION_DATA,
    CONTENT_HANDSHAKE, HANDSHAKE_HEADER_LEN, HS_KEY_UPDATE, HS_NEW_SESSION_TICKET, MAX_CIPHERTEXT,
    MAX_PLAINTEXT, RECORD_HEADER_LEN,
};

/// Plaintext bytes sealed per write call at most (four full records).
pub const WRITE_BATCH: usize = 4 * MAX_PLAINTEXT;
/// Full records one read can take: as many as a [`WRITE_BATCH`] seals, so a
/// peer's batch arrives in one read and its plaintext leaves in one write.
pub const READ_RECORDS: usize = 4;
/// The alert description of close_notify.
const CLOSE_NOTIFY: u8 = 0;
/// Records sealed under one write key before we move to the next one with
/// a KeyUpdate: 2^23 (128 GiB of full records), under AES-GCM's limit of
/// 2^24.5 records (RFC 8446, 5.5) with room to spare.
pub const RECORDS_PER_KEY: u64 = 1 << 23;

/// One direction's traffic key: AEAD key, IV and record sequence number.
pub struct RecordKey {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl RecordKey {
    /// The key and IV of a traffic secret (RFC 8446, 7.3), sequence number 0.
    pub fn new(suite: CipherSuite, secret: &Secret) -> RecordKey {
        let alg = suite.aead();
        let mut key = [0u8; 32];
        expand_label(suite, secret, b"key", b"", &mut key[..alg.key_len()]);
        let mut iv = [0u8; aead::NONCE_LEN];
        expand_label(suite, secret, b"iv", b"", &mut iv);
        // The length matches the algorithm, so this cannot fail.
        RecordKey::from_parts(alg, &key[..alg.key_len()], iv, 0)
            .unwrap_or_else(|_| unreachable!("key length is the algorithm's"))
    }

    /// A key and IV derived elsewhere, at record sequence number `seq`.
    pub fn from_parts(
        alg: &'static aead::Algorithm,
        key: &[u8],
        iv: [u8; aead::NONCE_LEN],
        seq: u64,
    ) -> io::Result<RecordKey> {
        let unbound = aead::UnboundKey::new(alg, key)
            .map_err(|_| io::Error::other("traffic key of the wrong length"))?;
        Ok(RecordKey {
            key: aead::LessSafeKey::new(unbound),
            iv,
            seq,
        })
    }

    fn next_nonce(&mut self) -> io::Result<aead::Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| io::Error::other("TLS record sequence number exhausted"))?;
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }

    /// Appends one protected record carrying `plaintext` of `content_type`.
    pub fn seal(
        &mut self,
        content_type: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let tag_len = self.key.algorithm().tag_len();
        let body_len = plaintext.len() + 1 + tag_len;
        let header = RecordHeader::encode(CONTENT_APPLICATION_DATA, body_len);
        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        out.push(content_type);
        let nonce = self.next_nonce()?;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce,
                aead::Aad::from(header),
                &mut out[start + RECORD_HEADER_LEN..],
            )
            .map_err(|_| io::Error::other("sealing a TLS record"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a protected record in place: returns its inner content type
    /// and the length of its plaintext at the start of `body`.
    pub fn open(
        &mut self,
        header: &[u8; RECORD_HEADER_LEN],
        body: &mut [u8],
    ) -> io::Result<(u8, usize)> {
        let nonce = self.next_nonce()?;
        let plain = self
            .key
            .open_in_place(nonce, aead::Aad::from(*header), body)
            .map_err(|_| invalid("TLS record failed authentication (bad_record_mac)"))?;
        // The content type is the last non-zero byte; zeros after it are padding.
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or_else(|| invalid("TLS record without a content type"))?;
        Ok((plain[end], end))
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Where a connection's next traffic keys come from after a KeyUpdate, and
/// what becomes of the tickets the server sends after the handshake.
pub trait KeySchedule: Send {
    /// The read key after the peer's KeyUpdate.
    fn next_read_key(&mut self) -> io::Result<RecordKey>;
    /// The write key after the KeyUpdate we send.
    fn next_write_key(&mut self) -> io::Result<RecordKey>;
    /// A NewSessionTicket's body (without its 4-byte header); dropped
    /// unless the schedule keeps tickets for resumption.
    fn new_session_ticket(&mut self, _body: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// The schedule of a handshake that kept its traffic secrets (REALITY's):
/// each KeyUpdate derives the next secret (RFC 8446, 7.2).
pub struct SecretSchedule {
    suite: CipherSuite,
    read: Secret,
    write: Secret,
}

impl SecretSchedule {
    pub fn new(suite: CipherSuite, read: Secret, write: Secret) -> SecretSchedule {
        SecretSchedule { suite, read, write }
    }

    /// The current read and write keys of these secrets.
    pub fn keys(&self) -> (RecordKey, RecordKey) {
        (
            RecordKey::new(self.suite, &self.read),
            RecordKey::new(self.suite, &self.write),
        )
    }
}

impl KeySchedule for SecretSchedule {
    fn next_read_key(&mut self) -> io::Result<RecordKey> {
        self.read = next_traffic_secret(self.suite, &self.read);
        Ok(RecordKey::new(self.suite, &self.read))
    }

    fn next_write_key(&mut self) -> io::Result<RecordKey> {
        self.write = next_traffic_secret(self.suite, &self.write);
        Ok(RecordKey::new(self.suite, &self.write))
    }
}

/// What the handshake had already read past its end: records not yet
/// opened, plaintext already opened, and whether the peer's close_notify
/// was among them.
#[derive(Debug, Default)]
pub struct Handover<'a> {
    pub records: &'a [u8],
    pub plaintext: &'a [u8],
    pub peer_closed: bool,
}

/// A TLS 1.3 connection after its handshake: application data both ways.
///
/// Reading ends at the peer's close_notify (or its TCP FIN); shutting down
/// sends close_notify and then the TCP FIN, so half-close passes through.
/// NewSessionTicket goes to the [`KeySchedule`]; KeyUpdate is honoured both
/// ways, and we send one ourselves every [`RECORDS_PER_KEY`] records.
pub struct TlsStream<S> {
    io: S,
    read_key: RecordKey,
    write_key: RecordKey,
    schedule: Box<dyn KeySchedule>,
    /// Received bytes: `rbuf[rstart..rend]` not yet processed, the
    /// decrypted plaintext at `rbuf[pstart..pend]` not yet read.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    pstart: usize,
    pend: usize,
    read_eof: bool,
    /// Post-handshake handshake messages, reassembled.
    post_handshake: Vec<u8>,
    /// Sealed bytes not yet written.
    out: Outgoing,
    /// A KeyUpdate is to be sent before the next record: the peer asked
    /// for one, or the write key has sealed its share of records.
    key_update_due: bool,
    close_sent: bool,
}

impl<S> TlsStream<S> {
    /// The stream over `io` with these keys; `handover` holds what the
    /// handshake read from `io` past its end.
    pub fn new(
        io: S,
        read_key: RecordKey,
        write_key: RecordKey,
        schedule: Box<dyn KeySchedule>,
        handover: Handover<'_>,
    ) -> TlsStream<S> {
        let (plain, records) = (handover.plaintext.len(), handover.records.len());
        let cap = (READ_RECORDS * (RECORD_HEADER_LEN + MAX_CIPHERTEXT)).max(plain + records);
        let mut rbuf = vec![0u8; cap];
        rbuf[..plain].copy_from_slice(handover.plaintext);
        rbuf[plain..plain + records].copy_from_slice(handover.records);
        TlsStream {
            io,
            read_key,
            write_key,
            schedule,
            rbuf,
            rstart: plain,
            rend: plain + records,
            pstart: 0,
            pend: plain,
            read_eof: handover.peer_closed,
            post_handshake: Vec::new(),
            out: Outgoing::new(),
            key_update_due: false,
            close_sent: false,
        }
    }

    /// The stream of a handshake that kept its secrets (REALITY's);
    /// `received` holds records read from `io` past the handshake.
    pub fn with_secrets(
        io: S,
        suite: CipherSuite,
        read: Secret,
        write: Secret,
        received: &[u8],
    ) -> TlsStream<S> {
        let schedule = SecretSchedule::new(suite, read, write);
        let (read_key, write_key) = schedule.keys();
        TlsStream::new(
            io,
            read_key,
            write_key,
            Box::new(schedule),
            Handover {
                records: received,
                plaintext: &[],
                peer_closed: false,
            },
        )
    }

    /// The underlying transport, giving up the TLS session (tests write
    /// raw bytes after a handshake with it).
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Decrypts the next complete record in `rbuf`, if there is one; returns
    /// whether it did.
    fn process_record(&mut self) -> io::Result<bool> {
        let avail = self.rend - self.rstart;
        if avail < RECORD_HEADER_LEN {
            return Ok(false);
        }
        let mut header = [0u8; RECORD_HEADER_LEN];
        header.copy_from_slice(&self.rbuf[self.rstart..self.rstart + RECORD_HEADER_LEN]);
        let parsed = RecordHeader::parse(&header).map_err(|e| invalid(e.to_string()))?;
        if avail < RECORD_HEADER_LEN + parsed.length {
            return Ok(false);
        }
        if parsed.content_type != CONTENT_APPLICATION_DATA {
            return Err(invalid(format!(
                "unprotected TLS record of type {} after the handshake",
                parsed.content_type
            )));
        }
        let body_start = self.rstart + RECORD_HEADER_LEN;
        let body_end = body_start + parsed.length;
        self.rstart = body_end;
        let (content_type, len) = self
            .read_key
            .open(&header, &mut self.rbuf[body_start..body_end])?;
        match content_type {
            CONTENT_APPLICATION_DATA => {
                self.pstart = body_start;
                self.pend = body_start + len;
            }
            CONTENT_ALERT => {
                let alert = &self.rbuf[body_start..body_start + len];
                if alert.len() == 2 && alert[1] == CLOSE_NOTIFY {
                    self.read_eof = true;
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("TLS alert from the peer: {alert:?}"),
                    ));
                }
            }
            CONTENT_HANDSHAKE => {
                let msg = self.rbuf[body_start..body_start + len].to_vec();
                self.post_handshake_message(&msg)?;
            }
            other => {
                return Err(invalid(format!(
                    "TLS record of inner type {other} after the handshake"
                )));
            }
        }
        Ok(true)
    }

    fn post_handshake_message(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.post_handshake.extend_from_slice(bytes);
        while let Some(len) = handshake_message_len(&self.post_handshake) {
            let msg: Vec<u8> = self.post_handshake.drain(..len).collect();
            match msg[0] {
                HS_NEW_SESSION_TICKET => self
                    .schedule
                    .new_session_ticket(&msg[HANDSHAKE_HEADER_LEN..])?,
                HS_KEY_UPDATE => {
                    if msg.len() != 5 || msg[4] > 1 {
                        return Err(invalid("malformed KeyUpdate"));
                    }
                    self.read_key = self.schedule.next_read_key()?;
                    if msg[4] == 1 {
                        self.key_update_due = true;
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "handshake message {other} after the handshake"
                    )));
                }
            }
        }
        if self.post_handshake.len() > MAX_CIPHERTEXT {
            return Err(invalid("post-handshake message too long"));
        }
        Ok(())
    }

    /// Seals a KeyUpdate that is due (the peer asked for it, or the write
    /// key has sealed [`RECORDS_PER_KEY`] records) and switches the write key.
    fn send_key_update(&mut self) -> io::Result<()> {
        if self.write_key.seq >= RECORDS_PER_KEY {
            self.key_update_due = true;
        }
        if self.key_update_due {
            self.key_update_due = false;
            let msg = [HS_KEY_UPDATE, 0, 0, 1, 0];
            self.write_key
                .seal(CONTENT_HANDSHAKE, &msg, self.out.tail())?;
            self.write_key = self.schedule.next_write_key()?;
        }
        Ok(())
    }
}

/// Sealed bytes on their way out. `front[fpos..]` is being written;
/// `back` holds the batch sealed while the socket was still taking the
/// front, and both go out in one writev. Two buffers, so that a partial
/// write neither leaves a tail to be written on its own (one more syscall)
/// nor has to be moved to the start of its buffer (one more copy).
struct Outgoing {
    front: Vec<u8>,
    fpos: usize,
    back: Vec<u8>,
}

impl Outgoing {
    fn new() -> Outgoing {
        let cap = WRITE_BATCH + 8 * (RECORD_HEADER_LEN + 17);
        Outgoing {
            front: Vec::with_capacity(cap),
            fpos: 0,
            back: Vec::with_capacity(cap),
        }
    }

    fn is_empty(&self) -> bool {
        self.fpos == self.front.len() && self.back.is_empty()
    }

    /// A batch is already waiting behind the one being written.
    fn is_backed_up(&self) -> bool {
        !self.back.is_empty()
    }

    /// Where the next records go: the front when nothing is pending, else
    /// behind it.
    fn tail(&mut self) -> &mut Vec<u8> {
        if self.fpos == self.front.len() {
            self.front.clear();
            self.fpos = 0;
        }
        if self.front.is_empty() {
            &mut self.front
        } else {
            &mut self.back
        }
    }

    /// One write (a writev when a batch waits); Ready once it wrote.
    fn poll_write_once<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let n = if self.back.is_empty() {
            ready!(Pin::new(io).poll_write(cx, &self.front[self.fpos..]))?
        } else {
            let bufs = [
                IoSlice::new(&self.front[self.fpos..]),
                IoSlice::new(&self.back),
            ];
            ready!(Pin::new(io).poll_write_vectored(cx, &bufs))?
        };
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let left = self.front.len() - self.fpos;
        if n < left {
            self.fpos += n;
        } else {
            self.front.clear();
            std::mem::swap(&mut self.front, &mut self.back);
            self.fpos = n - left;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out everything; Ready once all of it is written.
    fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            ready!(self.poll_write_once(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Plaintext handed over in this call: once there is some, no more
        // waiting for the socket, only records already here are opened.
        let mut gave = false;
        loop {
            if this.pstart < this.pend {
                let n = (this.pend - this.pstart).min(buf.remaining());
                buf.put_slice(&this.rbuf[this.pstart..this.pstart + n]);
                this.pstart += n;
                gave = true;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.read_eof {
                return Poll::Ready(Ok(()));
            }
            if this.process_record()? {
                continue;
            }
            if gave {
                return Poll::Ready(Ok(()));
            }
            // Need more bytes. Start over at the front when nothing is
            // left (free), or move the partial record there when a full
            // one would not fit behind it: moving only then keeps the copy
            // rare, since a peer's batches mostly end on a record boundary.
            let room = this.rbuf.len() - this.rend;
            if this.rstart > 0
                && (this.rstart == this.rend || room < RECORD_HEADER_LEN + MAX_CIPHERTEXT)
            {
                this.rbuf.copy_within(this.rstart..this.rend, 0);
                this.rend -= this.rstart;
                this.rstart = 0;
                this.pstart = 0;
                this.pend = 0;
            }
            let mut rb = ReadBuf::new(&mut this.rbuf[this.rend..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                if this.rend > this.rstart {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS connection closed inside a record",
                    )));
                }
                // A FIN without close_notify: taken as the end, as most
                // stacks do (the payload check above us catches truncation).
                this.read_eof = true;
                return Poll::Ready(Ok(()));
            }
            this.rend += n;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // At most one batch waits behind the one being written.
        while this.out.is_backed_up() {
            ready!(this.out.poll_write_once(&mut this.io, cx))?;
        }
        this.send_key_update()?;
        let take = buf.len().min(WRITE_BATCH);
        let out = this.out.tail();
        for chunk in buf[..take].chunks(MAX_PLAINTEXT) {
            this.write_key.seal(CONTENT_APPLICATION_DATA, chunk, out)?;
        }
        // Start writing now; what does not fit stays for the next call.
        if let Poll::Ready(Err(e)) = this.out.poll_drain(&mut this.io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.send_key_update()?;
        ready!(this.out.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.write_key
                .seal(CONTENT_ALERT, &[1, CLOSE_NOTIFY], this.out.tail())?;
            this.close_sent = true;
        }
        ready!(this.out.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Two different secrets of `suite`.
    fn secrets(suite: CipherSuite) -> (Secret, Secret) {
        let hs = super::super::keys::handshake_secrets(suite, &[1u8; 32], &[2u8; 32]);
        (hs.client, hs.server)
    }

    fn key_pair(suite: CipherSuite) -> (RecordKey, RecordKey) {
        let secret = secrets(suite).0;
        (
            RecordKey::new(suite, &secret),
            RecordKey::new(suite, &secret),
        )
    }

    #[test]
    fn a_record_opens_with_the_same_key_and_not_twice() {
        for suite in CipherSuite::ALL {
            let (mut tx, mut rx) = key_pair(suite);
            let mut out = Vec::new();
            tx.seal(CONTENT_APPLICATION_DATA, b"hello", &mut out)
                .expect("seals");
            let mut header = [0u8; RECORD_HEADER_LEN];
            header.copy_from_slice(&out[..RECORD_HEADER_LEN]);
            let mut body = out[RECORD_HEADER_LEN..].to_vec();
            let (t, n) = rx.open(&header, &mut body).expect("opens");
            assert_eq!((t, &body[..n]), (CONTENT_APPLICATION_DATA, &b"hello"[..]));
            // The receiver's sequence number moved on: a replay fails.
            let mut body = out[RECORD_HEADER_LEN..].to_vec();
            assert!(rx.open(&header, &mut body).is_err(), "{suite:?}");
        }
    }

    #[tokio::test]
    async fn a_stream_carries_large_writes_and_half_close() {
        let suite = CipherSuite::Aes128GcmSha256;
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ab, ba) = secrets(suite);
        let mut a = TlsStream::with_secrets(a, suite, ba.clone(), ab.clone(), &[]);
        let mut b = TlsStream::with_secrets(b, suite, ab, ba, &[]);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.expect("writes");
            a.shutdown().await.expect("shuts down");
            let mut back = Vec::new();
            a.read_to_end(&mut back).await.expect("reads the answer");
            back
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got)
            .await
            .expect("reads to close_notify");
        assert_eq!(got, data);
        b.write_all(b"done")
            .await
            .expect("answers after the peer's close");
        b.shutdown().await.expect("shuts down");
        assert_eq!(writer.await.expect("joins"), b"done");
    }

    /// A write key that has sealed its share of records is replaced, with
    /// a KeyUpdate the peer follows: the bytes arrive intact under the new
    /// key. Fails if the write side never updates (the sequence number
    /// stays above the limit) or if the reader does not follow.
    #[tokio::test]
    async fn a_worn_write_key_is_replaced_with_a_key_update() {
        let suite = CipherSuite::Aes256GcmSha384;
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ab, ba) = secrets(suite);
        let mut a = TlsStream::with_secrets(a, suite, ba.clone(), ab.clone(), &[]);
        let mut b = TlsStream::with_secrets(b, suite, ab, ba, &[]);
        a.write_key.seq = RECORDS_PER_KEY;
        b.read_key.seq = RECORDS_PER_KEY;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.expect("writes");
            a.shutdown().await.expect("shuts down");
            a.write_key.seq
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("reads");
        assert_eq!(got, data);
        // 100 000 bytes and close_notify: 8 records under the new key.
        assert_eq!(writer.await.expect("joins"), 8);
    }

    /// Plaintext and records the handshake read past its end are delivered
    /// first, in order.
    #[tokio::test]
    async fn what_the_handshake_read_ahead_comes_first() {
        let suite = CipherSuite::Chacha20Poly1305Sha256;
        let (ab, ba) = secrets(suite);
        let mut sealer = RecordKey::new(suite, &ab);
        let mut records = Vec::new();
        sealer
            .seal(CONTENT_APPLICATION_DATA, b" world", &mut records)
            .expect("seals");
        let (_a, b) = tokio::io::duplex(1 << 10);
        let schedule = SecretSchedule::new(suite, ab, ba);
        let (read_key, write_key) = schedule.keys();
        let mut b = TlsStream::new(
            b,
            read_key,
            write_key,
            Box::new(schedule),
            Handover {
                records: &records,
                plaintext: b"hello",
                peer_closed: false,
            },
        );
        let mut got = [0u8; 11];
        b.read_exact(&mut got).await.expect("reads");
        assert_eq!(&got, b"hello world");
    }

    /// A batch of four full records arrives in one socket read and leaves
    /// as one read of 64 KiB: fails if a read stops at one record (the
    /// relay would then write 16 KiB at a time).
    #[tokio::test]
    async fn one_read_hands_over_a_whole_batch() {
        let suite = CipherSuite::Aes128GcmSha256;
        let (a, b) = tokio::io::duplex(1 << 17);
        let (ab, ba) = secrets(suite);
        let mut a = TlsStream::with_secrets(a, suite, ba.clone(), ab.clone(), &[]);
        let mut b = TlsStream::with_secrets(b, suite, ab, ba, &[]);
        let data: Vec<u8> = (0..WRITE_BATCH as u32).map(|i| (i % 239) as u8).collect();
        a.write_all(&data).await.expect("writes");
        a.flush().await.expect("flushes");
        let mut got = vec![0u8; 1 << 17];
        let n = b.read(&mut got).await.expect("reads");
        assert_eq!(n, WRITE_BATCH);
        assert_eq!(&got[..n], &data[..]);
    }

    /// A socket that hands out records in odd pieces: one byte, a header
    /// and a half, several records and a piece of the next.
    struct Trickle {
        bytes: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            const SIZES: [usize; 6] = [1, 7, 5_000, 16_000, 40_001, 70_000];
            let size = SIZES[this.step % SIZES.len()];
            this.step += 1;
            let n = size.min(buf.remaining()).min(this.bytes.len() - this.pos);
            buf.put_slice(&this.bytes[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Records cut anywhere by the socket, read through buffers of every
    /// size, come out as the plaintext in order: the partial record kept
    /// at the end of the read buffer is moved, never lost or doubled.
    #[tokio::test]
    async fn records_cut_anywhere_come_out_whole_and_in_order() {
        let suite = CipherSuite::Aes256GcmSha384;
        let (ab, ba) = secrets(suite);
        let mut sealer = RecordKey::new(suite, &ab);
        let data: Vec<u8> = (0..400_000u32).map(|i| (i % 233) as u8).collect();
        let mut records = Vec::new();
        // Records of mixed sizes, as a peer's small and large writes make.
        let mut at = 0;
        for len in [1usize, 300, 16_384, 9_000, 16_384, 16_384, 5]
            .iter()
            .cycle()
        {
            if at == data.len() {
                break;
            }
            let end = (at + len).min(data.len());
            sealer
                .seal(CONTENT_APPLICATION_DATA, &data[at..end], &mut records)
                .expect("seals");
            at = end;
        }
        sealer
            .seal(CONTENT_ALERT, &[1, CLOSE_NOTIFY], &mut records)
            .expect("seals");
        let schedule = SecretSchedule::new(suite, ab, ba);
        let (read_key, write_key) = schedule.keys();
        let io = Trickle {
            bytes: records,
            pos: 0,
            step: 0,
        };
        let mut b = TlsStream::new(
            io,
            read_key,
            write_key,
            Box::new(schedule),
            Handover {
                records: &[],
                plaintext: &[],
                peer_closed: false,
            },
        );
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 70_000];
        for size in [1usize, 100, 16_384, 70_000, 3].iter().cycle() {
            let n = b.read(&mut chunk[..*size]).await.expect("reads");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the plaintext came out changed");
    }

    /// A socket that takes what it likes: vectored writes cut anywhere
    /// across both buffers, one byte at a time or 70 000, with a
    /// `Pending` every third call.
    struct Choosy {
        taken: Vec<u8>,
        calls: usize,
        vectored_calls: usize,
    }

    impl AsyncWrite for Choosy {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.calls.is_multiple_of(3) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if bufs.iter().filter(|b| !b.is_empty()).count() > 1 {
                this.vectored_calls += 1;
            }
            let mut limit = [5_000, 70_000, 1, 40_000][this.calls % 4];
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(limit);
                this.taken.extend_from_slice(&b[..take]);
                n += take;
                limit -= take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Partial writes of every size, across the two write buffers: every
    /// byte arrives once and in order. Fails if a tail is dropped, written
    /// twice or reordered (the records stop opening or the hash differs).
    #[tokio::test]
    async fn partial_and_vectored_writes_keep_every_byte_in_order() {
        let suite = CipherSuite::Aes128GcmSha256;
        let (ab, ba) = secrets(suite);
        let sock = Choosy {
            taken: Vec::new(),
            calls: 0,
            vectored_calls: 0,
        };
        let mut a = TlsStream::with_secrets(sock, suite, ba.clone(), ab.clone(), &[]);
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 239) as u8).collect();
        for piece in data.chunks(65_536) {
            a.write_all(piece).await.expect("writes");
        }
        a.shutdown().await.expect("shuts down");
        let sock = a.into_inner();
        assert!(
            sock.vectored_calls > 0,
            "both buffers never went out together"
        );
        let mut b = TlsStream::with_secrets(&sock.taken[..], suite, ab, ba, &[]);
        let mut got = Vec::new();
        b.read_to_end(&mut got)
            .await
            .expect("reads to close_notify");
        assert_eq!(blake3::hash(&got), blake3::hash(&data));
    }
}
