//! The Trojan wire format: what the client sends first inside the TLS
//! session, and how the server reads and judges it. Independent of the TLS
//! library, so every Trojan-speaking protocol (tls, ech) shares it.

use std::fmt;
use std::io;
use std::time::Duration;

use sha2::{Digest, Sha224};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::addr::{AddrError, TargetAddr};

/// Length of the password hash on the wire: SHA-224 in hex.
pub const HASH_LEN: usize = 56;
/// Command CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// Command UDP ASSOCIATE (not implemented).
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;
/// The longest request header: hash, CRLF, CMD, the longest address (a
/// 255-byte domain name), CRLF.
pub const MAX_HEADER_LEN: usize = HASH_LEN + 2 + 1 + (1 + 1 + 255 + 2) + 2;

const CRLF: &[u8; 2] = b"\r\n";
/// Bytes up to and including the CRLF after the hash.
const HASH_LINE_LEN: usize = HASH_LEN + 2;
/// Limit on receiving the request after the handshake. Generous: a client
/// may send the header only with its first payload bytes.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer that sent part of a hash line may pause before it is
/// taken to be something else (e.g. a short HTTP request waiting for an
/// answer) and refused.
const PROBE_STALL: Duration = Duration::from_secs(1);

/// The password as the wire carries it: `hex(SHA-224(password))`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordHash([u8; HASH_LEN]);

impl PasswordHash {
    /// Hashes `password`.
    pub fn new(password: &str) -> PasswordHash {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha224::digest(password.as_bytes());
        let mut out = [0u8; HASH_LEN];
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        PasswordHash(out)
    }

    /// The 56 ASCII bytes sent on the wire.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Compares in time independent of where the bytes differ: the hash is
    /// the credential itself, so an early exit would let a prober learn it
    /// a digit at a time.
    fn matches(&self, candidate: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(candidate))
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // It is as good as the password: keep it out of logs.
        f.write_str("PasswordHash(..)")
    }
}
/// Why the server refused a request.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("closed or paused after {0} bytes, before a whole hash line")]
    ShortHashLine(usize),
    #[error("wrong password hash")]
    WrongPassword,
    #[error("no CRLF after the password hash")]
    NoCrlfAfterHash,
    #[error("command {0:#04x} not supported, only CONNECT (0x01)")]
    UnsupportedCommand(u8),
    #[error("bad target address: {0}")]
    Address(AddrError),
    #[error("no CRLF after the target address")]
    NoCrlfAfterRequest,
    #[error("closed in the middle of the request")]
    Truncated,
    #[error("no complete request within {HEADER_TIMEOUT:?}")]
    Timeout,
}

/// Appends the request header for `target`.
pub fn encode_header(password: &PasswordHash, target: &TargetAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(password.as_bytes());
    out.extend_from_slice(CRLF);
    out.push(CMD_CONNECT);
    // Fails only for a domain name over 255 bytes, which SOCKS5 cannot carry;
    // the caller encodes the target once beforehand to find out.
    let _ = target.encode(out);
    out.extend_from_slice(CRLF);
}

/// Sends the request header for `target` and flushes it, so that it goes
/// out before any payload (Trojan has no answer to wait for).
pub async fn send_request<S>(
    s: &mut S,
    password: &PasswordHash,
    target: &TargetAddr,
) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut header = Vec::with_capacity(MAX_HEADER_LEN);
    encode_header(password, target, &mut header);
    s.write_all(&header).await?;
    s.flush().await
}

/// Reads until `buf` holds a whole, valid request or the request is refused.
/// Returns the target and the header length, or why it was refused; `Err`
/// only for an I/O error.
pub async fn read_request<R>(
    r: &mut R,
    buf: &mut Vec<u8>,
    password: &PasswordHash,
) -> io::Result<Result<(TargetAddr, usize), Refusal>>
where
    R: AsyncRead + Unpin,
{
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut hash_checked = false;
    loop {
        if buf.len() >= HASH_LINE_LEN {
            if !hash_checked {
                if !password.matches(&buf[..HASH_LEN]) {
                    return Ok(Err(Refusal::WrongPassword));
                }
                if &buf[HASH_LEN..HASH_LINE_LEN] != CRLF {
                    return Ok(Err(Refusal::NoCrlfAfterHash));
                }
                hash_checked = true;
            }
            match parse_command(&buf[HASH_LINE_LEN..]).await {
                Parsed::Done(target, len) => return Ok(Ok((target, HASH_LINE_LEN + len))),
                Parsed::Refused(refusal) => return Ok(Err(refusal)),
                Parsed::Incomplete => {}
            }
        }

        // A partial hash line that then pauses is not worth the full wait.
        let wait_until = if !buf.is_empty() && buf.len() < HASH_LINE_LEN {
            deadline.min(Instant::now() + PROBE_STALL)
        } else {
            deadline
        };
        // The header is at most MAX_HEADER_LEN bytes and every pass above
        // decides once that many have arrived, so the buffer stays small.
        buf.reserve(4096);
        let n = match timeout_at(wait_until, r.read_buf(buf)).await {
            Ok(read) => read?,
            Err(_) if buf.len() < HASH_LINE_LEN && !buf.is_empty() => {
                return Ok(Err(Refusal::ShortHashLine(buf.len())))
            }
            Err(_) => return Ok(Err(Refusal::Timeout)),
        };
        if n == 0 {
            return Ok(Err(if buf.len() < HASH_LINE_LEN {
                Refusal::ShortHashLine(buf.len())
            } else {
                Refusal::Truncated
            }));
        }
    }
}

/// Outcome of parsing the part of the header after the hash line.
enum Parsed {
    /// The target and the length of the command line, CRLF included.
    Done(TargetAddr, usize),
    /// More bytes are needed.
    Incomplete,
    Refused(Refusal),
}

async fn parse_command(b: &[u8]) -> Parsed {
    let Some((&cmd, rest)) = b.split_first() else {
        return Parsed::Incomplete;
    };
    if cmd != CMD_CONNECT {
        return Parsed::Refused(Refusal::UnsupportedCommand(cmd));
    }
    // Reading from a slice completes at once; it is async only because
    // the address reader is shared with the stream-reading protocols.
    let mut r = rest;
    let target = match TargetAddr::read_from(&mut r).await {
        Ok(t) => t,
        Err(AddrError::Truncated { .. }) => return Parsed::Incomplete,
        Err(e) => return Parsed::Refused(Refusal::Address(e)),
    };
    let addr_len = rest.len() - r.len();
    match r.get(..2) {
        None if r.is_empty() || r == b"\r" => Parsed::Incomplete,
        Some(crlf) if crlf == CRLF => Parsed::Done(target, 1 + addr_len + 2),
        _ => Parsed::Refused(Refusal::NoCrlfAfterRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_is_hex_sha224() {
        // SHA-224("password"), the example most Trojan documentation uses.
        let h = PasswordHash::new("password");
        assert_eq!(
            std::str::from_utf8(h.as_bytes()).unwrap(),
            "d63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01"
        );
        assert!(h.matches(h.as_bytes()));
        assert!(!h.matches(PasswordHash::new("passwore").as_bytes()));
        assert!(!h.matches(&h.as_bytes()[..55]));
        assert_eq!(format!("{h:?}"), "PasswordHash(..)");
    }

    fn header(target: &TargetAddr) -> Vec<u8> {
        let mut v = Vec::new();
        encode_header(&PasswordHash::new("pw"), target, &mut v);
        v
    }

    async fn read(input: &[u8]) -> Result<(TargetAddr, usize), Refusal> {
        let mut r = input;
        let mut buf = Vec::new();
        read_request(&mut r, &mut buf, &PasswordHash::new("pw"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn reads_every_atyp_and_keeps_the_payload() {
        for t in [
            TargetAddr::Ip("10.0.0.1:80".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::1]:443".parse().unwrap()),
            TargetAddr::Domain("x".repeat(255), 8080),
        ] {
            let mut input = header(&t);
            let len = input.len();
            input.extend_from_slice(b"payload");
            assert_eq!(read(&input).await.unwrap(), (t, len));
        }
        let long = header(&TargetAddr::Domain("x".repeat(255), 1));
        assert_eq!(long.len(), MAX_HEADER_LEN);
    }

    #[tokio::test]
    async fn refusals() {
        let good = header(&TargetAddr::Ip("127.0.0.1:80".parse().unwrap()));
        let mut wrong = good.clone();
        wrong[3] ^= 1;
        assert!(matches!(read(&wrong).await, Err(Refusal::WrongPassword)));
        let mut no_crlf = good.clone();
        no_crlf[HASH_LEN] = b'\n';
        assert!(matches!(
            read(&no_crlf).await,
            Err(Refusal::NoCrlfAfterHash)
        ));
        let mut udp = good.clone();
        udp[HASH_LINE_LEN] = CMD_UDP_ASSOCIATE;
        assert!(matches!(
            read(&udp).await,
            Err(Refusal::UnsupportedCommand(3))
        ));
        let mut atyp = good.clone();
        atyp[HASH_LINE_LEN + 1] = 7;
        assert!(matches!(
            read(&atyp).await,
            Err(Refusal::Address(AddrError::UnknownType(7)))
        ));
        let mut tail = good.clone();
        let n = tail.len();
        tail[n - 1] = b'x';
        assert!(matches!(
            read(&tail).await,
            Err(Refusal::NoCrlfAfterRequest)
        ));
        for cut in 0..good.len() {
            let res = read(&good[..cut]).await;
            if cut < HASH_LINE_LEN {
                assert!(matches!(res, Err(Refusal::ShortHashLine(c)) if c == cut));
            } else {
                assert!(matches!(res, Err(Refusal::Truncated)), "cut {cut}");
            }
        }
    }
}
