//! The TLS 1.3 record layer: one [`RecordKey`] per direction (AEAD with the
//! per-record nonce), and [`TlsStream`], the protected byte stream handed
//! to the relay once the handshake is done.
//!
//! Reads decrypt in place in one buffer and copy the plaintext out once;
//! writes seal up to [`WRITE_BATCH`] bytes of records per call so that a
//! large write costs one syscall per batch, not one per 16 KiB record.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ring::aead;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::keys::{expand_label, next_traffic_secret, CipherSuite, Secret};
use super::wire::{
    handshake_message_len, RecordHeader, CONTENT_ALERT, CONTENT_APPLICATION_DATA,
    CONTENT_HANDSHAKE, HS_KEY_UPDATE, HS_NEW_SESSION_TICKET, MAX_CIPHERTEXT, MAX_PLAINTEXT,
    RECORD_HEADER_LEN,
};

/// Plaintext bytes sealed per write call at most (four full records).
pub const WRITE_BATCH: usize = 4 * MAX_PLAINTEXT;
/// The alert description of close_notify.
const CLOSE_NOTIFY: u8 = 0;

/// One direction's traffic key: AEAD key, IV and record sequence number.
pub struct RecordKey {
    suite: CipherSuite,
    secret: Secret,
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl RecordKey {
    /// The key and IV of a traffic secret, sequence number 0.
    pub fn new(suite: CipherSuite, secret: Secret) -> RecordKey {
        let alg = suite.aead();
        let mut key = [0u8; 32];
        expand_label(suite, &secret, b"key", b"", &mut key[..alg.key_len()]);
        let mut iv = [0u8; aead::NONCE_LEN];
        expand_label(suite, &secret, b"iv", b"", &mut iv);
        // The length matches the algorithm, so this cannot fail.
        let unbound = aead::UnboundKey::new(alg, &key[..alg.key_len()])
            .unwrap_or_else(|_| unreachable!("key length is the algorithm's"));
        RecordKey {
            suite,
            secret,
            key: aead::LessSafeKey::new(unbound),
            iv,
            seq: 0,
        }
    }

    /// The next generation of this key (KeyUpdate).
    fn updated(&self) -> RecordKey {
        RecordKey::new(self.suite, next_traffic_secret(self.suite, &self.secret))
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
        let tag_len = self.suite.aead().tag_len();
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

/// A TLS 1.3 connection after its handshake: application data both ways.
///
/// Reading ends at the peer's close_notify (or its TCP FIN); shutting down
/// sends close_notify and then the TCP FIN, so half-close passes through.
/// NewSessionTicket is read and dropped (no resumption); KeyUpdate is
/// honoured both ways.
pub struct TlsStream<S> {
    io: S,
    read_key: RecordKey,
    write_key: RecordKey,
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
    /// Sealed bytes not yet written: `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// The peer asked us to update our sending key.
    key_update_due: bool,
    close_sent: bool,
}

impl<S> TlsStream<S> {
    /// The stream over `io` with these keys; `received` holds bytes already
    /// read from `io` past the handshake.
    pub fn new(io: S, read_key: RecordKey, write_key: RecordKey, received: &[u8]) -> TlsStream<S> {
        let cap = (2 * (RECORD_HEADER_LEN + MAX_CIPHERTEXT)).max(received.len());
        let mut rbuf = vec![0u8; cap];
        rbuf[..received.len()].copy_from_slice(received);
        TlsStream {
            io,
            read_key,
            write_key,
            rbuf,
            rstart: 0,
            rend: received.len(),
            pstart: 0,
            pend: 0,
            read_eof: false,
            post_handshake: Vec::new(),
            wbuf: Vec::with_capacity(WRITE_BATCH + 4 * (RECORD_HEADER_LEN + 17)),
            wpos: 0,
            key_update_due: false,
            close_sent: false,
        }
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
                // No resumption: tickets are dropped.
                HS_NEW_SESSION_TICKET => {}
                HS_KEY_UPDATE => {
                    if msg.len() != 5 || msg[4] > 1 {
                        return Err(invalid("malformed KeyUpdate"));
                    }
                    self.read_key = self.read_key.updated();
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

    /// Seals a KeyUpdate the peer asked for and switches the write key.
    fn send_key_update(&mut self) -> io::Result<()> {
        if self.key_update_due {
            self.key_update_due = false;
            let msg = [HS_KEY_UPDATE, 0, 0, 1, 0];
            self.write_key
                .seal(CONTENT_HANDSHAKE, &msg, &mut self.wbuf)?;
            self.write_key = self.write_key.updated();
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> TlsStream<S> {
    /// Writes out what is sealed; Ready once all of it is written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
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
        loop {
            if this.pstart < this.pend {
                let n = (this.pend - this.pstart).min(buf.remaining());
                buf.put_slice(&this.rbuf[this.pstart..this.pstart + n]);
                this.pstart += n;
                return Poll::Ready(Ok(()));
            }
            if this.read_eof {
                return Poll::Ready(Ok(()));
            }
            if this.process_record()? {
                continue;
            }
            // Need more bytes: move the partial record to the front first.
            if this.rstart > 0 {
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
                if this.rend > 0 {
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
        ready!(this.poll_drain(cx))?;
        this.send_key_update()?;
        let take = buf.len().min(WRITE_BATCH);
        for chunk in buf[..take].chunks(MAX_PLAINTEXT) {
            this.write_key
                .seal(CONTENT_APPLICATION_DATA, chunk, &mut this.wbuf)?;
        }
        // Start writing now; what does not fit stays for the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.send_key_update()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(this.poll_drain(cx))?;
            this.write_key
                .seal(CONTENT_ALERT, &[1, CLOSE_NOTIFY], &mut this.wbuf)?;
            this.close_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn key_pair(suite: CipherSuite) -> (RecordKey, RecordKey) {
        let secret = super::super::keys::handshake_secrets(suite, &[1u8; 32], &[2u8; 32]).client;
        (
            RecordKey::new(suite, secret.clone()),
            RecordKey::new(suite, secret),
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
        let (atx, brx) = key_pair(suite);
        let (btx, arx) = key_pair(suite);
        let mut a = TlsStream::new(a, arx, atx, &[]);
        let mut b = TlsStream::new(b, brx, btx, &[]);
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
}
