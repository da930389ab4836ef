//! Hysteria 2 messages on the wire: QUIC varints, `TCPRequest`,
//! `TCPResponse` and `UDPMessage` (see `specs/hysteria2.md`).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::addr::TargetAddr;

/// The varint that starts a `TCPRequest` stream.
pub const TCP_REQUEST_ID: u64 = 0x401;
/// Longest address string accepted (the reference implementation's limit).
pub const MAX_ADDRESS_LEN: usize = 2048;
/// Longest `TCPResponse` message accepted.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// Longest padding accepted.
pub const MAX_PADDING_LEN: usize = 4096;
/// `TCPResponse` status: the target is connected.
pub const STATUS_OK: u8 = 0x00;
/// `TCPResponse` status: it is not.
pub const STATUS_ERROR: u8 = 0x01;
/// Bytes of a `UDPMessage` before the address length.
pub const UDP_FIXED_LEN: usize = 4 + 2 + 1 + 1;

/// A message that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The stream or datagram ended inside a message.
    #[error("message truncated")]
    Truncated,
    /// A stream that does not start with the `TCPRequest` id.
    #[error("request id {0:#x}, expected {TCP_REQUEST_ID:#x} (TCPRequest)")]
    BadRequestId(u64),
    /// A length field above its limit.
    #[error("{what} of {len} bytes, at most {max} accepted")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An address that is not `host:port`.
    #[error("bad address {0:?}: expected host:port")]
    BadAddress(String),
    /// A value too large for a QUIC varint (2^62 and above).
    #[error("{0} does not fit a QUIC varint")]
    VarintRange(u64),
    /// A `TCPResponse` status other than 0 and 1.
    #[error("unknown TCPResponse status {0:#04x}")]
    BadStatus(u8),
    /// Reading failed.
    #[error("reading: {0}")]
    Io(std::io::Error),
}

/// Largest value a QUIC varint holds.
const VARINT_MAX: u64 = (1 << 62) - 1;

/// Appends `v` as a QUIC varint (RFC 9000, section 16), shortest form.
pub fn put_varint(out: &mut Vec<u8>, v: u64) -> Result<(), WireError> {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        0x4000_0000..=VARINT_MAX => {
            out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes())
        }
        _ => return Err(WireError::VarintRange(v)),
    }
    Ok(())
}

/// Bytes `v` takes as a varint (values are below 2^62 wherever it is used).
pub fn varint_len(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Reads one QUIC varint from a stream.
pub async fn read_varint<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<u64, WireError> {
    let mut first = [0u8; 1];
    read_exact(r, &mut first).await?;
    let len = 1usize << (first[0] >> 6);
    let mut b = [0u8; 8];
    b[8 - len] = first[0] & 0x3f;
    read_exact(r, &mut b[9 - len..]).await?;
    Ok(u64::from_be_bytes(b))
}

/// Takes one QUIC varint off the front of `buf`.
pub fn take_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let first = *buf.first().ok_or(WireError::Truncated)?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return Err(WireError::Truncated);
    }
    let mut b = [0u8; 8];
    b[8 - len..].copy_from_slice(&buf[..len]);
    b[8 - len] &= 0x3f;
    *buf = &buf[len..];
    Ok(u64::from_be_bytes(b))
}

async fn read_exact<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
) -> Result<(), WireError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Truncated),
        Err(e) => Err(WireError::Io(e)),
    }
}

/// Reads a varint length (checked against `max`) and that many bytes.
async fn read_field<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    what: &'static str,
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let len = read_varint(r).await?;
    if len > max as u64 {
        return Err(WireError::TooLong { what, len, max });
    }
    let mut b = vec![0u8; len as usize]; // at most `max`
    read_exact(r, &mut b).await?;
    Ok(b)
}

/// Appends a varint length and `bytes`.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), WireError> {
    put_varint(out, bytes.len() as u64)?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Parses `host:port` (IPv6 hosts in brackets) into a target.
pub fn parse_address(s: &str) -> Result<TargetAddr, WireError> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(TargetAddr::Ip(sa));
    }
    let bad = || WireError::BadAddress(s.chars().take(100).collect());
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // A name has no colons or brackets: "[[]]:0" would otherwise decode to
    // the name "[]", which encodes as "[]:0" and no longer decodes (found
    // by the fuzz target, seed fuzz/seeds/hysteria2/bracketed-brackets).
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(bad());
    }
    match host.parse() {
        Ok(ip) => Ok(TargetAddr::Ip(SocketAddr::new(ip, port))),
        Err(_) => Ok(TargetAddr::Domain(host.to_owned(), port)),
    }
}

/// Random padding of a length in `range` (ASCII, so that it also fits an
/// HTTP header value).
pub fn padding(range: std::ops::Range<usize>) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut seed = [0u8; 8];
    // Padding only hides lengths; a failed system RNG leaves fixed bytes.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
    let mut x = u64::from_le_bytes(seed) | 1;
    let span = range.end.saturating_sub(range.start).max(1) as u64;
    let len = range.start + (x % span) as usize;
    (0..len)
        .map(|_| {
            // xorshift64: plenty for padding.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize]
        })
        .collect()
}

/// Encodes a `TCPRequest` for `target` with `pad` as padding.
pub fn encode_tcp_request(target: &TargetAddr, pad: &[u8]) -> Result<Vec<u8>, WireError> {
    let addr = target.to_string();
    if addr.len() > MAX_ADDRESS_LEN {
        return Err(WireError::TooLong {
            what: "address",
            len: addr.len() as u64,
            max: MAX_ADDRESS_LEN,
        });
    }
    let mut out = Vec::with_capacity(2 + 2 + addr.len() + 2 + pad.len());
    put_varint(&mut out, TCP_REQUEST_ID)?;
    put_field(&mut out, addr.as_bytes())?;
    put_field(&mut out, pad)?;
    Ok(out)
}

/// Reads a `TCPRequest`, request id included.
pub async fn read_tcp_request<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<TargetAddr, WireError> {
    let id = read_varint(r).await?;
    if id != TCP_REQUEST_ID {
        return Err(WireError::BadRequestId(id));
    }
    let addr = read_field(r, "address", MAX_ADDRESS_LEN).await?;
    read_field(r, "padding", MAX_PADDING_LEN).await?;
    let addr = String::from_utf8(addr)
        .map_err(|e| WireError::BadAddress(String::from_utf8_lossy(e.as_bytes()).into()))?;
    parse_address(&addr)
}

/// Encodes a `TCPResponse`.
pub fn encode_tcp_response(ok: bool, message: &str, pad: &[u8]) -> Result<Vec<u8>, WireError> {
    let message = &message.as_bytes()[..message.len().min(MAX_MESSAGE_LEN)];
    let mut out = Vec::with_capacity(1 + 2 + message.len() + 2 + pad.len());
    out.push(if ok { STATUS_OK } else { STATUS_ERROR });
    put_field(&mut out, message)?;
    put_field(&mut out, pad)?;
    Ok(out)
}

/// Reads a `TCPResponse`: `Ok(Ok(()))` for OK, `Ok(Err(message))` for Error.
pub async fn read_tcp_response<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<Result<(), String>, WireError> {
    let mut status = [0u8; 1];
    read_exact(r, &mut status).await?;
    let message = read_field(r, "message", MAX_MESSAGE_LEN).await?;
    read_field(r, "padding", MAX_PADDING_LEN).await?;
    match status[0] {
        STATUS_OK => Ok(Ok(())),
        STATUS_ERROR => Ok(Err(String::from_utf8_lossy(&message).into_owned())),
        other => Err(WireError::BadStatus(other)),
    }
}

/// The header of a `UDPMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// The client's session.
    pub session_id: u32,
    /// Same for every fragment of one packet.
    pub packet_id: u16,
    /// Index of this fragment.
    pub frag_id: u8,
    /// Fragments of the packet (1: not fragmented).
    pub frag_count: u8,
    /// Where the packet goes (client to server) or came from.
    pub addr: TargetAddr,
}

impl UdpHeader {
    /// Encoded length of the header.
    pub fn encoded_len(&self) -> usize {
        let a = self.addr.to_string().len();
        UDP_FIXED_LEN + varint_len(a as u64) + a
    }

    /// Appends the encoded header.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let addr = self.addr.to_string();
        if addr.len() > MAX_ADDRESS_LEN {
            return Err(WireError::TooLong {
                what: "address",
                len: addr.len() as u64,
                max: MAX_ADDRESS_LEN,
            });
        }
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&self.packet_id.to_be_bytes());
        out.push(self.frag_id);
        out.push(self.frag_count);
        put_field(out, addr.as_bytes())
    }

    /// Splits a datagram into its header and payload.
    pub fn decode(d: &[u8]) -> Result<(UdpHeader, &[u8]), WireError> {
        if d.len() < UDP_FIXED_LEN {
            return Err(WireError::Truncated);
        }
        let session_id = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let packet_id = u16::from_be_bytes([d[4], d[5]]);
        let (frag_id, frag_count) = (d[6], d[7]);
        let mut rest = &d[UDP_FIXED_LEN..];
        let len = take_varint(&mut rest)?;
        if len > MAX_ADDRESS_LEN as u64 {
            return Err(WireError::TooLong {
                what: "address",
                len,
                max: MAX_ADDRESS_LEN,
            });
        }
        let len = len as usize;
        if rest.len() < len {
            return Err(WireError::Truncated);
        }
        let addr = std::str::from_utf8(&rest[..len])
            .map_err(|_| WireError::BadAddress(String::from_utf8_lossy(&rest[..len]).into()))?;
        let addr = parse_address(addr)?;
        Ok((
            UdpHeader {
                session_id,
                packet_id,
                frag_id,
                frag_count,
                addr,
            },
            &rest[len..],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn varints_round_trip() {
        for v in [
            0,
            1,
            63,
            64,
            0x3fff,
            0x4000,
            0x401,
            0x3fff_ffff,
            0x4000_0000,
            VARINT_MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v).unwrap();
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(take_varint(&mut b.as_slice()).unwrap(), v);
            assert_eq!(read_varint(&mut b.as_slice()).await.unwrap(), v);
        }
        assert!(put_varint(&mut Vec::new(), VARINT_MAX + 1).is_err());
        // 0x401 is two bytes, as every Hysteria implementation writes it.
        let mut b = Vec::new();
        put_varint(&mut b, TCP_REQUEST_ID).unwrap();
        assert_eq!(b, [0x44, 0x01]);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:80").unwrap(),
            TargetAddr::Ip("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_address("[::1]:443").unwrap(),
            TargetAddr::Ip("[::1]:443".parse().unwrap())
        );
        assert_eq!(
            parse_address("example.com:8080").unwrap(),
            TargetAddr::Domain("example.com".into(), 8080)
        );
        for bad in [
            "",
            "x",
            ":80",
            "host:",
            "host:99999",
            "a:b:80",
            "[x]",
            "[[]]:0000",
            "[]:0",
            "a]b:80",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn tcp_messages() {
        let t = TargetAddr::Domain("sink.test".into(), 9);
        let req = encode_tcp_request(&t, b"pad").unwrap();
        assert_eq!(read_tcp_request(&mut req.as_slice()).await.unwrap(), t);
        // Every truncation is an error.
        for n in 0..req.len() {
            assert!(read_tcp_request(&mut &req[..n]).await.is_err(), "{n}");
        }
        let resp = encode_tcp_response(false, "no route", &padding(0..64)).unwrap();
        assert_eq!(
            read_tcp_response(&mut resp.as_slice()).await.unwrap(),
            Err("no route".into())
        );
        let resp = encode_tcp_response(true, "", &[]).unwrap();
        assert_eq!(
            read_tcp_response(&mut resp.as_slice()).await.unwrap(),
            Ok(())
        );
    }

    #[test]
    fn udp_header() {
        let h = UdpHeader {
            session_id: 7,
            packet_id: 9,
            frag_id: 1,
            frag_count: 3,
            addr: TargetAddr::Ip("[::1]:53".parse().unwrap()),
        };
        let mut d = Vec::new();
        h.encode(&mut d).unwrap();
        assert_eq!(d.len(), h.encoded_len());
        d.extend_from_slice(b"data");
        let (got, payload) = UdpHeader::decode(&d).unwrap();
        assert_eq!(got, h);
        assert_eq!(payload, b"data");
        for n in 0..h.encoded_len() {
            assert!(UdpHeader::decode(&d[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn padding_is_ascii_in_range() {
        for _ in 0..20 {
            let p = padding(64..512);
            assert!((64..512).contains(&p.len()));
            assert!(p.iter().all(u8::is_ascii_alphanumeric));
        }
    }
}
