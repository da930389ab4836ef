//! The TUIC v5 wire format: commands, their headers and TUIC's own address
//! encoding (see `specs/tuic-v5.md`).
//!
//! Every command starts with `VER` (0x05) and `TYPE`; the rest depends on the
//! type. TUIC's address is *not* the SOCKS5 one of [`crate::addr`]: its type
//! bytes are 0x00 domain, 0x01 IPv4, 0x02 IPv6 and 0xff "none" (used by the
//! fragments of a UDP packet after the first).
//!
//! Headers are read with [`Command::read_from`] from anything that is
//! [`AsyncRead`]: a QUIC stream, or a datagram as a byte slice (`&[u8]` is
//! `AsyncRead` and never pends), so that streams and datagrams share one
//! decoder. Reading takes exactly the header's bytes: whatever follows (the
//! proxied stream after `Connect`, the payload after `Packet`) stays unread.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::addr::TargetAddr;

/// The protocol version byte.
pub const VERSION: u8 = 0x05;

/// Command type `Authenticate`.
pub const CMD_AUTHENTICATE: u8 = 0x00;
/// Command type `Connect`.
pub const CMD_CONNECT: u8 = 0x01;
/// Command type `Packet`.
pub const CMD_PACKET: u8 = 0x02;
/// Command type `Dissociate`.
pub const CMD_DISSOCIATE: u8 = 0x03;
/// Command type `Heartbeat`.
pub const CMD_HEARTBEAT: u8 = 0x04;

/// Address type "none": a fragment after the first one of a UDP packet.
pub const ADDR_NONE: u8 = 0xff;
/// Address type fully-qualified domain name (1 length byte + name).
pub const ADDR_DOMAIN: u8 = 0x00;
/// Address type IPv4.
pub const ADDR_IPV4: u8 = 0x01;
/// Address type IPv6.
pub const ADDR_IPV6: u8 = 0x02;

/// Bytes of a `Packet` header before its address: VER, TYPE, ASSOC_ID,
/// PKT_ID, FRAG_TOTAL, FRAG_ID, SIZE.
pub const PACKET_FIXED_LEN: usize = 2 + 2 + 2 + 1 + 1 + 2;
/// Bytes of a whole `Authenticate` command.
pub const AUTHENTICATE_LEN: usize = 2 + 16 + 32;
/// Bytes of the token in `Authenticate`.
pub const TOKEN_LEN: usize = 32;

/// A TUIC user id: a UUID, 16 bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

/// Why a string is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a UUID; write 32 hex digits, e.g. 0b8bd5c6-5b3f-4f7e-9a2d-6b8f0a1c2d3e")]
pub struct UuidError(String);

impl FromStr for Uuid {
    type Err = UuidError;

    /// Accepts the hyphenated form (8-4-4-4-12) and 32 plain hex digits, in
    /// either case, as sing-box and tuic-server do.
    fn from_str(s: &str) -> Result<Uuid, UuidError> {
        let err = || UuidError(s.to_owned());
        let hex: Vec<u8> = if s.len() == 36 {
            let dashes = [8, 13, 18, 23];
            for (i, b) in s.bytes().enumerate() {
                if dashes.contains(&i) != (b == b'-') {
                    return Err(err());
                }
            }
            s.bytes().filter(|&b| b != b'-').collect()
        } else if s.len() == 32 {
            s.bytes().collect()
        } else {
            return Err(err());
        };
        let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = digit(pair[0]).ok_or_else(err)?;
            let lo = digit(pair[1]).ok_or_else(err)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The header of a `Packet` command; the payload of `size` bytes follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketHeader {
    /// The UDP session (association) the packet belongs to.
    pub assoc_id: u16,
    /// The UDP packet this is (a fragment of).
    pub pkt_id: u16,
    /// How many fragments the UDP packet has (1: not fragmented).
    pub frag_total: u8,
    /// Which fragment this is, from 0.
    pub frag_id: u8,
    /// Payload bytes after the header.
    pub size: u16,
    /// Target (client to server) or source (server to client) address;
    /// `None` in fragments after the first.
    pub addr: Option<TargetAddr>,
}

/// One TUIC command, as far as its header goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Authenticates the QUIC connection.
    Authenticate {
        /// The user.
        uuid: Uuid,
        /// The TLS exporter output for (label = UUID, context = password).
        token: [u8; TOKEN_LEN],
    },
    /// Opens a TCP relay to the address; the stream carries it afterwards.
    Connect {
        /// Where the server should connect to.
        addr: TargetAddr,
    },
    /// (A fragment of) a UDP packet.
    Packet(PacketHeader),
    /// Ends a UDP session.
    Dissociate {
        /// The session to end.
        assoc_id: u16,
    },
    /// Keeps the connection alive.
    Heartbeat,
}

/// Why a command could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream or datagram ended inside the header.
    #[error("command truncated: ended after {got} of {want} bytes of a field")]
    Truncated {
        /// Bytes of the current field that arrived.
        got: usize,
        /// Bytes the field needs.
        want: usize,
    },
    /// `VER` is not 0x05.
    #[error("version byte {0:#04x}, expected 0x05 (TUIC v5)")]
    BadVersion(u8),
    /// `TYPE` is none of 0x00..=0x04.
    #[error("unknown command type {0:#04x}")]
    UnknownCommand(u8),
    /// The address type is none of 0x00, 0x01, 0x02, 0xff.
    #[error(
        "unknown address type {0:#04x} (expected 0 = domain, 1 = IPv4, 2 = IPv6, 0xff = none)"
    )]
    UnknownAddressType(u8),
    /// A `Connect` with address type "none".
    #[error("Connect without an address (type 0xff)")]
    MissingAddress,
    /// A domain name of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// The domain name bytes are not UTF-8.
    #[error("domain name is not valid UTF-8")]
    NonUtf8Domain,
    /// A domain name longer than 255 bytes cannot be encoded.
    #[error("domain name is {0} bytes long, the wire format allows at most 255")]
    DomainTooLong(usize),
    /// Reading the stream failed.
    #[error("reading command: {0}")]
    Io(io::Error),
}

impl Command {
    /// Reads one command header from `r`, leaving what follows unread.
    pub async fn read_from<R>(r: &mut R) -> Result<Command, WireError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let mut head = [0u8; 2];
        read_field(r, &mut head).await?;
        let [version, kind] = head;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        match kind {
            CMD_AUTHENTICATE => {
                let mut b = [0u8; 16 + TOKEN_LEN];
                read_field(r, &mut b).await?;
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&b[..16]);
                let mut token = [0u8; TOKEN_LEN];
                token.copy_from_slice(&b[16..]);
                Ok(Command::Authenticate {
                    uuid: Uuid(uuid),
                    token,
                })
            }
            CMD_CONNECT => match read_addr(r).await? {
                Some(addr) => Ok(Command::Connect { addr }),
                None => Err(WireError::MissingAddress),
            },
            CMD_PACKET => {
                let mut b = [0u8; PACKET_FIXED_LEN - 2];
                read_field(r, &mut b).await?;
                let addr = read_addr(r).await?;
                Ok(Command::Packet(PacketHeader {
                    assoc_id: u16::from_be_bytes([b[0], b[1]]),
                    pkt_id: u16::from_be_bytes([b[2], b[3]]),
                    frag_total: b[4],
                    frag_id: b[5],
                    size: u16::from_be_bytes([b[6], b[7]]),
                    addr,
                }))
            }
            CMD_DISSOCIATE => {
                let mut b = [0u8; 2];
                read_field(r, &mut b).await?;
                Ok(Command::Dissociate {
                    assoc_id: u16::from_be_bytes(b),
                })
            }
            CMD_HEARTBEAT => Ok(Command::Heartbeat),
            other => Err(WireError::UnknownCommand(other)),
        }
    }

    /// Appends the encoded header to `out`. Fails only for a domain name
    /// longer than 255 bytes; `out` may hold part of the header then.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(VERSION);
        match self {
            Command::Authenticate { uuid, token } => {
                out.push(CMD_AUTHENTICATE);
                out.extend_from_slice(&uuid.0);
                out.extend_from_slice(token);
            }
            Command::Connect { addr } => {
                out.push(CMD_CONNECT);
                encode_addr(Some(addr), out)?;
            }
            Command::Packet(h) => {
                out.push(CMD_PACKET);
                out.extend_from_slice(&h.assoc_id.to_be_bytes());
                out.extend_from_slice(&h.pkt_id.to_be_bytes());
                out.push(h.frag_total);
                out.push(h.frag_id);
                out.extend_from_slice(&h.size.to_be_bytes());
                encode_addr(h.addr.as_ref(), out)?;
            }
            Command::Dissociate { assoc_id } => {
                out.push(CMD_DISSOCIATE);
                out.extend_from_slice(&assoc_id.to_be_bytes());
            }
            Command::Heartbeat => out.push(CMD_HEARTBEAT),
        }
        Ok(())
    }

    /// The encoded header as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(PACKET_FIXED_LEN + 1 + 255 + 2);
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Bytes the TUIC encoding of `addr` takes.
pub fn addr_len(addr: Option<&TargetAddr>) -> usize {
    match addr {
        None => 1,
        Some(TargetAddr::Ip(SocketAddr::V4(_))) => 1 + 4 + 2,
        Some(TargetAddr::Ip(SocketAddr::V6(_))) => 1 + 16 + 2,
        Some(TargetAddr::Domain(name, _)) => 1 + 1 + name.len() + 2,
    }
}

/// Appends TUIC's encoding of `addr` (`None`: type 0xff, no address, no port).
pub fn encode_addr(addr: Option<&TargetAddr>, out: &mut Vec<u8>) -> Result<(), WireError> {
    match addr {
        None => out.push(ADDR_NONE),
        Some(TargetAddr::Ip(SocketAddr::V4(sa))) => {
            out.push(ADDR_IPV4);
            out.extend_from_slice(&sa.ip().octets());
            out.extend_from_slice(&sa.port().to_be_bytes());
        }
        Some(TargetAddr::Ip(SocketAddr::V6(sa))) => {
            out.push(ADDR_IPV6);
            out.extend_from_slice(&sa.ip().octets());
            out.extend_from_slice(&sa.port().to_be_bytes());
        }
        Some(TargetAddr::Domain(name, port)) => {
            let len = u8::try_from(name.len()).map_err(|_| WireError::DomainTooLong(name.len()))?;
            out.push(ADDR_DOMAIN);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    Ok(())
}

/// Reads one TUIC address; `None` for type 0xff.
pub async fn read_addr<R>(r: &mut R) -> Result<Option<TargetAddr>, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut kind = [0u8; 1];
    read_field(r, &mut kind).await?;
    match kind[0] {
        ADDR_NONE => Ok(None),
        ADDR_IPV4 => {
            let mut b = [0u8; 6];
            read_field(r, &mut b).await?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let port = u16::from_be_bytes([b[4], b[5]]);
            Ok(Some(TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(
                ip, port,
            )))))
        }
        ADDR_IPV6 => {
            let mut b = [0u8; 18];
            read_field(r, &mut b).await?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            let sa = SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0);
            Ok(Some(TargetAddr::Ip(SocketAddr::V6(sa))))
        }
        ADDR_DOMAIN => {
            let mut len = [0u8; 1];
            read_field(r, &mut len).await?;
            let len = usize::from(len[0]);
            if len == 0 {
                return Err(WireError::EmptyDomain);
            }
            let mut b = [0u8; 255 + 2];
            let field = &mut b[..len + 2];
            read_field(r, field).await?;
            let name = std::str::from_utf8(&field[..len])
                .map_err(|_| WireError::NonUtf8Domain)?
                .to_owned();
            let port = u16::from_be_bytes([field[len], field[len + 1]]);
            Ok(Some(TargetAddr::Domain(name, port)))
        }
        other => Err(WireError::UnknownAddressType(other)),
    }
}

/// `read_exact` that reports a short read as [`WireError::Truncated`].
async fn read_field<R>(r: &mut R, buf: &mut [u8]) -> Result<(), WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).await {
            Ok(0) => {
                return Err(WireError::Truncated {
                    got,
                    want: buf.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(bytes: &[u8]) -> Result<Command, WireError> {
        let mut r = bytes;
        Command::read_from(&mut r).await
    }

    fn samples() -> Vec<Command> {
        let addrs = [
            TargetAddr::Ip("192.0.2.7:443".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::1]:65535".parse().unwrap()),
            TargetAddr::Domain("example.com".into(), 8080),
            TargetAddr::Domain("x".repeat(255), 9),
        ];
        let mut v = vec![
            Command::Authenticate {
                uuid: Uuid([7; 16]),
                token: [9; 32],
            },
            Command::Dissociate { assoc_id: 0xbeef },
            Command::Heartbeat,
            Command::Packet(PacketHeader {
                assoc_id: 1,
                pkt_id: 2,
                frag_total: 3,
                frag_id: 2,
                size: 1000,
                addr: None,
            }),
        ];
        for a in addrs {
            v.push(Command::Connect { addr: a.clone() });
            v.push(Command::Packet(PacketHeader {
                assoc_id: 0xffff,
                pkt_id: 0x1234,
                frag_total: 1,
                frag_id: 0,
                size: 65535,
                addr: Some(a),
            }));
        }
        v
    }

    #[tokio::test]
    async fn every_command_round_trips_and_reads_exactly_its_header() {
        for c in samples() {
            let mut bytes = c.to_bytes().unwrap();
            let header_len = bytes.len();
            if let Command::Packet(h) = &c {
                assert_eq!(header_len, PACKET_FIXED_LEN + addr_len(h.addr.as_ref()));
            }
            bytes.extend_from_slice(b"payload");
            let mut r = &bytes[..];
            assert_eq!(Command::read_from(&mut r).await.unwrap(), c);
            assert_eq!(r, b"payload", "{c:?}");
        }
    }

    #[tokio::test]
    async fn every_truncation_is_an_error() {
        for c in samples() {
            let bytes = c.to_bytes().unwrap();
            for cut in 0..bytes.len() {
                match decode(&bytes[..cut]).await {
                    Err(WireError::Truncated { got, want }) => assert!(got < want),
                    other => panic!("{c:?} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn address_bytes_are_tuic_not_socks5() {
        let enc = |a: &TargetAddr| {
            let mut v = Vec::new();
            encode_addr(Some(a), &mut v).unwrap();
            v
        };
        assert_eq!(
            enc(&TargetAddr::Ip("1.2.3.4:258".parse().unwrap())),
            [1, 1, 2, 3, 4, 1, 2]
        );
        assert_eq!(
            enc(&TargetAddr::Domain("ab".into(), 80)),
            [0, 2, b'a', b'b', 0, 80]
        );
        let v6 = enc(&TargetAddr::Ip("[::1]:443".parse().unwrap()));
        assert_eq!((v6.len(), v6[0], v6[16]), (19, 2, 1));
        let mut none = Vec::new();
        encode_addr(None, &mut none).unwrap();
        assert_eq!(none, [0xff]);
    }

    #[tokio::test]
    async fn bad_headers() {
        assert!(matches!(
            decode(&[4, 1, 1, 1, 2, 3, 4, 0, 80]).await,
            Err(WireError::BadVersion(4))
        ));
        assert!(matches!(
            decode(&[5, 9]).await,
            Err(WireError::UnknownCommand(9))
        ));
        assert!(matches!(
            decode(&[5, 1, 3, 1, 2, 3, 4, 0, 80]).await,
            Err(WireError::UnknownAddressType(3))
        ));
        assert!(matches!(
            decode(&[5, 1, 0xff]).await,
            Err(WireError::MissingAddress)
        ));
        assert!(matches!(
            decode(&[5, 1, 0, 0, 0, 80]).await,
            Err(WireError::EmptyDomain)
        ));
        assert!(matches!(
            decode(&[5, 1, 0, 1, 0xff, 0, 80]).await,
            Err(WireError::NonUtf8Domain)
        ));
        let mut out = Vec::new();
        let long = TargetAddr::Domain("x".repeat(256), 1);
        assert!(matches!(
            encode_addr(Some(&long), &mut out),
            Err(WireError::DomainTooLong(256))
        ));
    }

    #[test]
    fn uuids() {
        let u: Uuid = "0B8BD5C6-5b3f-4f7e-9a2d-6b8f0a1c2d3e".parse().unwrap();
        assert_eq!(u.to_string(), "0b8bd5c6-5b3f-4f7e-9a2d-6b8f0a1c2d3e");
        assert_eq!(u.0[0], 0x0b);
        assert_eq!(u.0[15], 0x3e);
        let plain: Uuid = "0b8bd5c65b3f4f7e9a2d6b8f0a1c2d3e".parse().unwrap();
        assert_eq!(plain, u);
        for bad in [
            "",
            "0b8bd5c6-5b3f-4f7e-9a2d-6b8f0a1c2d3",
            "0b8bd5c6-5b3f-4f7e-9a2d+6b8f0a1c2d3e",
            "0b8bd5c6-5b3f-4f7e-9a2d-6b8f0a1c2d3g",
            "0b8bd5c65b3f4f7e9a2d6b8f0a1c2d3e00",
        ] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
    }
}
