//! VLESS, the protocol inside REALITY's TLS: the client's request header
//! and the server's response header; after them, raw bytes both ways.
//!
//! Request: version 0, 16-byte UUID, addons (u8 length, protobuf whose
//! field 1 is the flow), command (1 TCP), port (u16), address type (1 IPv4,
//! 2 domain with a u8 length, 3 IPv6), address. Response: version 0,
//! addons (u8 length). Only TCP without a flow is served:
//! `xtls-rprx-vision` is refused by name.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::TargetAddr;
use crate::tuic::wire::Uuid;

pub const VERSION: u8 = 0;
pub const CMD_TCP: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 2;
const ATYP_IPV6: u8 = 3;
/// The response header we send: version, no addons.
pub const RESPONSE: [u8; 2] = [VERSION, 0];
/// The longest request header: version, UUID, 255 bytes of addons,
/// command, port, a 255-byte domain.
pub const MAX_REQUEST_LEN: usize = 1 + 16 + 1 + 255 + 1 + 2 + 1 + 1 + 255;

/// Why a VLESS header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VlessError {
    #[error("VLESS version {0}, expected 0")]
    Version(u8),
    #[error("unknown user id")]
    UnknownUser,
    #[error("VLESS command {0} not supported (only 1, TCP)")]
    Command(u8),
    #[error("VLESS flow {0:?} not supported (only none)")]
    Flow(String),
    #[error("VLESS address type {0} unknown")]
    AddressType(u8),
    #[error("VLESS addons malformed")]
    Addons,
    #[error("VLESS domain is not UTF-8")]
    Domain,
}

/// A parsed request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub user: Uuid,
    pub target: TargetAddr,
}

/// Encodes the request header for a TCP connection to `target`.
pub fn encode_request(user: &Uuid, target: &TargetAddr, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.extend_from_slice(&user.0);
    out.push(0);
    out.push(CMD_TCP);
    out.extend_from_slice(&target.port().to_be_bytes());
    match target {
        TargetAddr::Ip(SocketAddr::V4(a)) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&a.ip().octets());
        }
        TargetAddr::Ip(SocketAddr::V6(a)) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&a.ip().octets());
        }
        TargetAddr::Domain(name, _) => {
            out.push(ATYP_DOMAIN);
            let bytes = &name.as_bytes()[..name.len().min(255)];
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
    }
}

/// The flow named in the addons (field 1, a string), if any.
fn addons_flow(addons: &[u8]) -> Result<Option<String>, VlessError> {
    let mut rest = addons;
    while let Some((&tag, tail)) = rest.split_first() {
        // Length-delimited fields only (wire type 2), lengths under 128.
        if tag & 0x07 != 2 {
            return Err(VlessError::Addons);
        }
        let (&len, tail) = tail.split_first().ok_or(VlessError::Addons)?;
        if len >= 0x80 || tail.len() < usize::from(len) {
            return Err(VlessError::Addons);
        }
        let (value, tail) = tail.split_at(usize::from(len));
        if tag >> 3 == 1 && !value.is_empty() {
            return Ok(Some(String::from_utf8_lossy(value).into_owned()));
        }
        rest = tail;
    }
    Ok(None)
}

/// Parses a request header at the start of `buf`: `Ok(None)` while it is
/// incomplete, else the request and the header's length. `known` judges
/// the user id (in constant time: it is the credential).
pub fn parse_request(
    buf: &[u8],
    known: impl Fn(&Uuid) -> bool,
) -> Result<Option<(Request, usize)>, VlessError> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(VlessError::Version(version));
    }
    if buf.len() < 18 {
        return Ok(None);
    }
    let mut user = [0u8; 16];
    user.copy_from_slice(&buf[1..17]);
    let user = Uuid(user);
    if !known(&user) {
        return Err(VlessError::UnknownUser);
    }
    let addons_len = usize::from(buf[17]);
    let mut at = 18 + addons_len;
    // command, port, address type
    if buf.len() < at + 4 {
        return Ok(None);
    }
    if let Some(flow) = addons_flow(&buf[18..at])? {
        return Err(VlessError::Flow(flow));
    }
    let command = buf[at];
    if command != CMD_TCP {
        return Err(VlessError::Command(command));
    }
    let port = u16::from_be_bytes([buf[at + 1], buf[at + 2]]);
    let atyp = buf[at + 3];
    at += 4;
    let target = match atyp {
        ATYP_IPV4 => {
            let Some(b) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            TargetAddr::Ip(SocketAddr::new(
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).into(),
                port,
            ))
        }
        ATYP_IPV6 => {
            let Some(b) = buf.get(at..at + 16) else {
                return Ok(None);
            };
            at += 16;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            TargetAddr::Ip(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        ATYP_DOMAIN => {
            let Some(&len) = buf.get(at) else {
                return Ok(None);
            };
            let Some(name) = buf.get(at + 1..at + 1 + usize::from(len)) else {
                return Ok(None);
            };
            at += 1 + usize::from(len);
            let name = std::str::from_utf8(name).map_err(|_| VlessError::Domain)?;
            TargetAddr::Domain(name.to_owned(), port)
        }
        other => return Err(VlessError::AddressType(other)),
    };
    Ok(Some((Request { user, target }, at)))
}

/// The length of a response header at the start of `buf`, once complete.
pub fn response_len(buf: &[u8]) -> Result<Option<usize>, VlessError> {
    match buf {
        [] | [_] => Ok(None),
        [v, ..] if *v != VERSION => Err(VlessError::Version(*v)),
        [_, n, ..] => {
            let len = 2 + usize::from(*n);
            Ok((buf.len() >= len).then_some(len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Uuid = Uuid([7u8; 16]);

    fn is_user(u: &Uuid) -> bool {
        *u == USER
    }

    #[test]
    fn requests_round_trip_for_every_address_type() {
        for target in [
            TargetAddr::Ip("127.0.0.1:8080".parse().expect("addr")),
            TargetAddr::Ip("[::1]:443".parse().expect("addr")),
            TargetAddr::Domain("example.com".into(), 80),
        ] {
            let mut buf = Vec::new();
            encode_request(&USER, &target, &mut buf);
            buf.extend_from_slice(b"payload");
            let (req, len) = parse_request(&buf, is_user)
                .expect("valid")
                .expect("complete");
            assert_eq!(req.target, target);
            assert_eq!(&buf[len..], b"payload");
            for n in 0..len {
                assert_eq!(parse_request(&buf[..n], is_user), Ok(None), "{n} bytes");
            }
        }
    }

    #[test]
    fn bad_requests_are_refused_by_name() {
        let target = TargetAddr::Ip("127.0.0.1:80".parse().expect("addr"));
        let mut buf = Vec::new();
        encode_request(&Uuid([8u8; 16]), &target, &mut buf);
        assert_eq!(parse_request(&buf, is_user), Err(VlessError::UnknownUser));
        let mut buf = Vec::new();
        encode_request(&USER, &target, &mut buf);
        buf[18] = 2;
        assert_eq!(parse_request(&buf, is_user), Err(VlessError::Command(2)));
        buf[0] = 1;
        assert_eq!(parse_request(&buf, is_user), Err(VlessError::Version(1)));
        // A vision flow in the addons.
        let mut buf = vec![0u8];
        buf.extend_from_slice(&USER.0);
        let flow = b"xtls-rprx-vision";
        buf.push(2 + flow.len() as u8);
        buf.push(0x0a);
        buf.push(flow.len() as u8);
        buf.extend_from_slice(flow);
        buf.extend_from_slice(&[1, 0, 80, 1, 127, 0, 0, 1]);
        assert_eq!(
            parse_request(&buf, is_user),
            Err(VlessError::Flow("xtls-rprx-vision".into()))
        );
    }

    #[test]
    fn response_header_length() {
        assert_eq!(response_len(&[0]), Ok(None));
        assert_eq!(response_len(&[0, 0, 9]), Ok(Some(2)));
        assert_eq!(response_len(&[0, 2, 1]), Ok(None));
        assert_eq!(response_len(&[1, 0]), Err(VlessError::Version(1)));
    }
}
