//! The target address a proxied stream goes to, and its wire encoding.
//!
//! The encoding is the one SOCKS5 uses (RFC 1928, section 5), which Trojan,
//! VLESS and TUIC reuse: one ATYP byte, the address, then the port big-endian.
//!
//! | ATYP | address                               |
//! |------|---------------------------------------|
//! | 1    | IPv4, 4 bytes                         |
//! | 3    | domain name, 1 length byte + name     |
//! | 4    | IPv6, 16 bytes                        |

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use tokio::io::{AsyncRead, AsyncReadExt};

/// ATYP value of an IPv4 address.
pub const ATYP_IPV4: u8 = 0x01;
/// ATYP value of a domain name.
pub const ATYP_DOMAIN: u8 = 0x03;
/// ATYP value of an IPv6 address.
pub const ATYP_IPV6: u8 = 0x04;

/// Where a proxied stream should be connected to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// A literal IP address and port.
    Ip(SocketAddr),
    /// A domain name, resolved by the side that connects, and a port.
    Domain(String, u16),
}

/// Why a target address could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The stream ended in the middle of the address.
    #[error("address truncated: stream ended after {got} of {want} bytes")]
    Truncated {
        /// Bytes of the current field that arrived.
        got: usize,
        /// Bytes the field needs.
        want: usize,
    },
    /// The ATYP byte is none of 1, 3, 4.
    #[error("unknown address type {0:#04x} (expected 1 = IPv4, 3 = domain, 4 = IPv6)")]
    UnknownType(u8),
    /// A domain name of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// The domain name bytes are not UTF-8.
    #[error("domain name is not valid UTF-8")]
    NonUtf8Domain,
    /// A domain name longer than the 255 bytes its length byte can say.
    #[error("domain name is {0} bytes long, the wire format allows at most 255")]
    DomainTooLong(usize),
    /// Reading from the stream failed.
    #[error("reading address: {0}")]
    Io(io::Error),
}

impl TargetAddr {
    /// Reads one encoded address (ATYP, address, port) from `r`.
    pub async fn read_from<R>(r: &mut R) -> Result<TargetAddr, AddrError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let mut atyp = [0u8; 1];
        read_field(r, &mut atyp).await?;
        match atyp[0] {
            ATYP_IPV4 => {
                let mut b = [0u8; 6];
                read_field(r, &mut b).await?;
                let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                let port = u16::from_be_bytes([b[4], b[5]]);
                Ok(TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(ip, port))))
            }
            ATYP_IPV6 => {
                let mut b = [0u8; 18];
                read_field(r, &mut b).await?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&b[..16]);
                let port = u16::from_be_bytes([b[16], b[17]]);
                let sa = SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0);
                Ok(TargetAddr::Ip(SocketAddr::V6(sa)))
            }
            ATYP_DOMAIN => {
                let mut len = [0u8; 1];
                read_field(r, &mut len).await?;
                let len = usize::from(len[0]);
                if len == 0 {
                    return Err(AddrError::EmptyDomain);
                }
                // Name and port in one read: at most 257 bytes, on the stack.
                let mut b = [0u8; 255 + 2];
                let field = &mut b[..len + 2];
                read_field(r, field).await?;
                let name = std::str::from_utf8(&field[..len])
                    .map_err(|_| AddrError::NonUtf8Domain)?
                    .to_owned();
                let port = u16::from_be_bytes([field[len], field[len + 1]]);
                Ok(TargetAddr::Domain(name, port))
            }
            other => Err(AddrError::UnknownType(other)),
        }
    }

    /// Appends the encoded address (ATYP, address, port) to `out`.
    ///
    /// Fails only for a domain name longer than 255 bytes; `out` is left
    /// unchanged then.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AddrError> {
        match self {
            TargetAddr::Ip(sa) => encode_socket_addr(sa, out),
            TargetAddr::Domain(name, port) => {
                let len =
                    u8::try_from(name.len()).map_err(|_| AddrError::DomainTooLong(name.len()))?;
                out.push(ATYP_DOMAIN);
                out.push(len);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
        }
        Ok(())
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(sa) => sa.port(),
            TargetAddr::Domain(_, port) => *port,
        }
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(sa) => write!(f, "{sa}"),
            TargetAddr::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

impl From<SocketAddr> for TargetAddr {
    fn from(sa: SocketAddr) -> Self {
        TargetAddr::Ip(sa)
    }
}

/// Appends an IP address in the wire encoding; unlike a domain name, it
/// cannot fail, which SOCKS5 replies rely on.
pub(crate) fn encode_socket_addr(sa: &SocketAddr, out: &mut Vec<u8>) {
    match sa {
        SocketAddr::V4(sa) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&sa.ip().octets());
        }
        SocketAddr::V6(sa) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&sa.ip().octets());
        }
    }
    out.extend_from_slice(&sa.port().to_be_bytes());
}

/// `read_exact` that reports a short read as [`AddrError::Truncated`] with
/// how far it got, so that a log line says where the peer stopped.
async fn read_field<R>(r: &mut R, buf: &mut [u8]) -> Result<(), AddrError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).await {
            Ok(0) => {
                return Err(AddrError::Truncated {
                    got,
                    want: buf.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(AddrError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(bytes: &[u8]) -> Result<TargetAddr, AddrError> {
        let mut r = bytes;
        TargetAddr::read_from(&mut r).await
    }

    fn encoded(a: &TargetAddr) -> Vec<u8> {
        let mut v = Vec::new();
        a.encode(&mut v).unwrap();
        v
    }

    fn samples() -> Vec<TargetAddr> {
        vec![
            TargetAddr::Ip("192.0.2.7:443".parse().unwrap()),
            TargetAddr::Ip("0.0.0.0:0".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::1]:65535".parse().unwrap()),
            TargetAddr::Ip("[::ffff:10.0.0.1]:80".parse().unwrap()),
            TargetAddr::Domain("example.com".into(), 8080),
            TargetAddr::Domain("a".into(), 1),
            TargetAddr::Domain("é.test".into(), 53),
            TargetAddr::Domain("x".repeat(255), 9),
        ]
    }

    #[tokio::test]
    async fn every_atyp_round_trips() {
        for a in samples() {
            let bytes = encoded(&a);
            assert_eq!(decode(&bytes).await.unwrap(), a, "{bytes:?}");
        }
    }

    #[test]
    fn encoding_is_the_socks5_layout() {
        let v4 = encoded(&TargetAddr::Ip("1.2.3.4:258".parse().unwrap()));
        assert_eq!(v4, [1, 1, 2, 3, 4, 1, 2]);
        let dom = encoded(&TargetAddr::Domain("ab".into(), 80));
        assert_eq!(dom, [3, 2, b'a', b'b', 0, 80]);
        let v6 = encoded(&TargetAddr::Ip("[::1]:443".parse().unwrap()));
        assert_eq!(v6.len(), 1 + 16 + 2);
        assert_eq!((v6[0], v6[16], &v6[17..]), (4, 1, &[1u8, 187][..]));
    }

    #[tokio::test]
    async fn reads_exactly_one_address() {
        let mut bytes = encoded(&TargetAddr::Domain("h".into(), 7));
        bytes.extend_from_slice(b"payload");
        let mut r = &bytes[..];
        TargetAddr::read_from(&mut r).await.unwrap();
        assert_eq!(r, b"payload");
    }

    #[tokio::test]
    async fn every_truncation_is_an_error() {
        for a in samples() {
            let bytes = encoded(&a);
            for cut in 0..bytes.len() {
                match decode(&bytes[..cut]).await {
                    Err(AddrError::Truncated { got, want }) => assert!(got < want),
                    other => panic!("{a} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn unknown_atyp() {
        for atyp in [0u8, 2, 5, 0xff] {
            let err = decode(&[atyp, 1, 2, 3, 4, 0, 80]).await.unwrap_err();
            assert!(
                matches!(err, AddrError::UnknownType(t) if t == atyp),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn bad_domains() {
        let err = decode(&[3, 0, 0, 80]).await.unwrap_err();
        assert!(matches!(err, AddrError::EmptyDomain), "{err}");
        let err = decode(&[3, 2, 0xff, 0xfe, 0, 80]).await.unwrap_err();
        assert!(matches!(err, AddrError::NonUtf8Domain), "{err}");
    }

    #[test]
    fn too_long_domain_is_refused_and_leaves_output_alone() {
        let mut out = vec![9];
        let err = TargetAddr::Domain("x".repeat(256), 1)
            .encode(&mut out)
            .unwrap_err();
        assert!(matches!(err, AddrError::DomainTooLong(256)), "{err}");
        assert_eq!(out, [9]);
    }

    #[test]
    fn display() {
        let v6 = TargetAddr::Ip("[::1]:443".parse().unwrap());
        assert_eq!(v6.to_string(), "[::1]:443");
        assert_eq!(
            TargetAddr::Domain("localhost".into(), 80).to_string(),
            "localhost:80"
        );
    }
}
