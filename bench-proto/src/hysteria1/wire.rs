//! Hysteria v1 (protocol version 3) messages on the wire: the client and
//! server hellos on the first stream, the request and response that start
//! every other stream, and the `UDPMessage` of a datagram. All integers are
//! big-endian; strings carry a u16 length.
//!
//! Every decoder is a plain function over a byte slice, so a fuzz target is
//! one call. A decoder given too few bytes says how many it needs in
//! [`WireError::Truncated`]; [`read_message`] reads a stream up to exactly
//! that, never past the message (the payload may follow at once).

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::addr::TargetAddr;

/// The protocol version spoken.
pub const VERSION: u8 = 3;
/// Smallest rate (bytes per second) a client may announce (sing-box's
/// limit).
pub const MIN_RATE: u64 = 16384;
/// Longest host accepted: a DNS name has at most 253 characters, an IPv6
/// literal fewer.
pub const MAX_HOST_LEN: usize = 255;
/// Longest authentication string accepted.
pub const MAX_AUTH_LEN: usize = 4096;
/// Longest message (server hello, response) accepted.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// Bytes of a `UDPMessage` header besides the host.
pub const UDP_FIXED_LEN: usize = 14;

/// A message that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes end inside a message; `need` bytes would get further.
    #[error("message truncated ({need} bytes needed)")]
    Truncated {
        /// Bytes needed from the start of the message.
        need: usize,
    },
    /// A client hello of another protocol version.
    #[error("protocol version {0}, only {VERSION} is spoken")]
    BadVersion(u8),
    /// A rate of 0 in a hello (Brutal needs both).
    #[error("a rate of 0 bytes/s in the hello; both rates must be set")]
    ZeroRate,
    /// A length field above its limit.
    #[error("{what} of {len} bytes, at most {max} accepted")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A flag byte that is neither 0 nor 1 (request type, ok).
    #[error("{what} byte {value:#04x}, expected 0 or 1")]
    BadFlag {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u8,
    },
    /// A host that is empty, not UTF-8, or holds a `:` without being an
    /// IPv6 address.
    #[error("bad host {0:?}")]
    BadHost(String),
    /// A `UDPMessage` whose data length does not match what follows.
    #[error("UDP message declares {declared} data bytes, {actual} follow")]
    DataLength {
        /// The length field.
        declared: usize,
        /// The bytes after the header.
        actual: usize,
    },
    /// Reading failed.
    #[error("reading: {0}")]
    Io(std::io::Error),
}

/// The client hello: the rates the client wants and its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// What the client sends at, bytes per second.
    pub send_bps: u64,
    /// What the client can receive, bytes per second.
    pub recv_bps: u64,
    /// The authentication string.
    pub auth: Vec<u8>,
}

/// The server hello: accepted or not, the server's rates, a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Whether the client is accepted.
    pub ok: bool,
    /// What the server sends at, bytes per second.
    pub send_bps: u64,
    /// What the server can receive, bytes per second.
    pub recv_bps: u64,
    /// Why not, if not.
    pub message: String,
}

/// The request that starts a stream: a TCP connection or a UDP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// A UDP session instead of a TCP connection.
    pub udp: bool,
    /// The target.
    pub target: TargetAddr,
}

/// The server's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Whether the target is connected (the session opened).
    pub ok: bool,
    /// The UDP session id (0 for TCP).
    pub session_id: u32,
    /// Why not, if not.
    pub message: String,
}

/// The header of a `UDPMessage` datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// The session, as the server numbered it.
    pub session_id: u32,
    /// Where the packet goes (client to server) or came from.
    pub addr: TargetAddr,
    /// Same for every fragment of one packet.
    pub msg_id: u16,
    /// Index of this fragment.
    pub frag_id: u8,
    /// Fragments of the packet (1: not fragmented).
    pub frag_count: u8,
}

/// Reads fields off the front of a slice; running short is
/// [`WireError::Truncated`] with the bytes needed so far.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at + n;
        let b = self
            .buf
            .get(self.at..end)
            .ok_or(WireError::Truncated { need: end })?;
        self.at = end;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(WireError::BadFlag { what, value }),
        }
    }

    /// A u16 length (at most `max`) and that many bytes.
    fn field(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(WireError::TooLong { what, len, max });
        }
        self.take(len)
    }

    /// Invalid UTF-8 becomes U+FFFD, three bytes for one, so the text is
    /// clipped to `max` again: a decoded message always encodes as itself.
    fn string(&mut self, what: &'static str, max: usize) -> Result<String, WireError> {
        let text = String::from_utf8_lossy(self.field(what, max)?);
        Ok(clip_to(&text, max).to_owned())
    }

    /// A host and a port.
    fn target(&mut self) -> Result<TargetAddr, WireError> {
        let host = self.field("host", MAX_HOST_LEN)?;
        let port = self.u16()?;
        parse_target(host, port)
    }
}

/// A host (IP literal or name) and a port as a target.
pub fn parse_target(host: &[u8], port: u16) -> Result<TargetAddr, WireError> {
    let bad = || WireError::BadHost(String::from_utf8_lossy(host).into_owned());
    let host = std::str::from_utf8(host).map_err(|_| bad())?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(TargetAddr::Ip(SocketAddr::new(ip, port)));
    }
    // sing-box sends IPv6 without brackets; accept them anyway.
    if let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
    {
        return Ok(TargetAddr::Ip(SocketAddr::new(ip, port)));
    }
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    Ok(TargetAddr::Domain(host.to_owned(), port))
}

/// The host of a target as Hysteria sends it (IPv6 without brackets).
fn host_of(target: &TargetAddr) -> String {
    match target {
        TargetAddr::Ip(sa) => sa.ip().to_canonical().to_string(),
        TargetAddr::Domain(name, _) => name.clone(),
    }
}

/// Appends a u16 length and `bytes`, refusing more than `max`.
fn put_field(
    out: &mut Vec<u8>,
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<(), WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLong {
            what,
            len: bytes.len(),
            max,
        });
    }
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes()); // max < 65536
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends a host and port.
fn put_target(out: &mut Vec<u8>, target: &TargetAddr) -> Result<(), WireError> {
    put_field(out, "host", host_of(target).as_bytes(), MAX_HOST_LEN)?;
    out.extend_from_slice(&target.port().to_be_bytes());
    Ok(())
}

/// A message cut to [`MAX_MESSAGE_LEN`] bytes (at a character boundary).
fn clip(message: &str) -> &str {
    clip_to(message, MAX_MESSAGE_LEN)
}

/// `text` cut to `max` bytes at a character boundary.
fn clip_to(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl ClientHello {
    /// Encodes the hello.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(19 + self.auth.len());
        out.push(VERSION);
        out.extend_from_slice(&self.send_bps.to_be_bytes());
        out.extend_from_slice(&self.recv_bps.to_be_bytes());
        put_field(&mut out, "auth", &self.auth, MAX_AUTH_LEN)?;
        Ok(out)
    }

    /// Decodes a hello from the front of `buf`; returns it and its length.
    pub fn decode(buf: &[u8]) -> Result<(ClientHello, usize), WireError> {
        let mut f = Fields::new(buf);
        let version = f.u8()?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let send_bps = f.u64()?;
        let recv_bps = f.u64()?;
        if send_bps == 0 || recv_bps == 0 {
            return Err(WireError::ZeroRate);
        }
        let auth = f.field("auth", MAX_AUTH_LEN)?.to_vec();
        let hello = ClientHello {
            send_bps,
            recv_bps,
            auth,
        };
        Ok((hello, f.at))
    }
}

impl ServerHello {
    /// Encodes the hello (the message cut to [`MAX_MESSAGE_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        let message = clip(&self.message);
        let mut out = Vec::with_capacity(19 + message.len());
        out.push(u8::from(self.ok));
        out.extend_from_slice(&self.send_bps.to_be_bytes());
        out.extend_from_slice(&self.recv_bps.to_be_bytes());
        out.extend_from_slice(&(message.len() as u16).to_be_bytes()); // clipped
        out.extend_from_slice(message.as_bytes());
        out
    }

    /// Decodes a hello from the front of `buf`; returns it and its length.
    pub fn decode(buf: &[u8]) -> Result<(ServerHello, usize), WireError> {
        let mut f = Fields::new(buf);
        let ok = f.flag("server hello ok")?;
        let send_bps = f.u64()?;
        let recv_bps = f.u64()?;
        let message = f.string("message", MAX_MESSAGE_LEN)?;
        let hello = ServerHello {
            ok,
            send_bps,
            recv_bps,
            message,
        };
        Ok((hello, f.at))
    }
}

impl Request {
    /// Encodes the request.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(5 + MAX_HOST_LEN);
        out.push(u8::from(self.udp));
        put_target(&mut out, &self.target)?;
        Ok(out)
    }

    /// Decodes a request from the front of `buf`; returns it and its length.
    pub fn decode(buf: &[u8]) -> Result<(Request, usize), WireError> {
        let mut f = Fields::new(buf);
        let udp = f.flag("request type")?;
        let target = f.target()?;
        Ok((Request { udp, target }, f.at))
    }
}

impl Response {
    /// Encodes the response (the message cut to [`MAX_MESSAGE_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        let message = clip(&self.message);
        let mut out = Vec::with_capacity(7 + message.len());
        out.push(u8::from(self.ok));
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&(message.len() as u16).to_be_bytes()); // clipped
        out.extend_from_slice(message.as_bytes());
        out
    }

    /// Decodes a response from the front of `buf`; returns it and its
    /// length.
    pub fn decode(buf: &[u8]) -> Result<(Response, usize), WireError> {
        let mut f = Fields::new(buf);
        let ok = f.flag("response ok")?;
        let session_id = f.u32()?;
        let message = f.string("message", MAX_MESSAGE_LEN)?;
        let response = Response {
            ok,
            session_id,
            message,
        };
        Ok((response, f.at))
    }
}

impl UdpHeader {
    /// Encoded length of the header.
    pub fn encoded_len(&self) -> usize {
        UDP_FIXED_LEN + host_of(&self.addr).len()
    }

    /// Appends the header for `data_len` bytes of data.
    pub fn encode(&self, data_len: u16, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.extend_from_slice(&self.session_id.to_be_bytes());
        put_target(out, &self.addr)?;
        out.extend_from_slice(&self.msg_id.to_be_bytes());
        out.push(self.frag_id);
        out.push(self.frag_count);
        out.extend_from_slice(&data_len.to_be_bytes());
        Ok(())
    }

    /// Splits a whole datagram into its header and data (which must be
    /// exactly as long as the header says).
    pub fn decode(d: &[u8]) -> Result<(UdpHeader, &[u8]), WireError> {
        let mut f = Fields::new(d);
        let session_id = f.u32()?;
        let addr = f.target()?;
        let msg_id = f.u16()?;
        let frag_id = f.u8()?;
        let frag_count = f.u8()?;
        let declared = usize::from(f.u16()?);
        let data = &d[f.at..];
        if data.len() != declared {
            return Err(WireError::DataLength {
                declared,
                actual: data.len(),
            });
        }
        let h = UdpHeader {
            session_id,
            addr,
            msg_id,
            frag_id,
            frag_count,
        };
        Ok((h, data))
    }
}

/// Reads one message decoded by `decode` from a stream, never reading past
/// its end: the decoder says how many bytes it needs, and exactly those are
/// read. At most `max` bytes are read for the message.
pub async fn read_message<R, T>(
    r: &mut R,
    decode: impl Fn(&[u8]) -> Result<(T, usize), WireError>,
    max: usize,
) -> Result<T, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut buf = Vec::with_capacity(64);
    loop {
        match decode(&buf) {
            Ok((message, _)) => return Ok(message),
            Err(WireError::Truncated { need }) if need <= max => {
                let have = buf.len();
                buf.resize(need, 0);
                match r.read_exact(&mut buf[have..]).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(WireError::Truncated { need })
                    }
                    Err(e) => return Err(WireError::Io(e)),
                }
            }
            Err(WireError::Truncated { need }) => {
                return Err(WireError::TooLong {
                    what: "message",
                    len: need,
                    max,
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// Most bytes of a client hello.
pub const MAX_CLIENT_HELLO: usize = 19 + MAX_AUTH_LEN;
/// Most bytes of a server hello.
pub const MAX_SERVER_HELLO: usize = 19 + MAX_MESSAGE_LEN;
/// Most bytes of a request.
pub const MAX_REQUEST: usize = 5 + MAX_HOST_LEN;
/// Most bytes of a response.
pub const MAX_RESPONSE: usize = 7 + MAX_MESSAGE_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn truncations_need_more<T: std::fmt::Debug>(
        bytes: &[u8],
        decode: impl Fn(&[u8]) -> Result<(T, usize), WireError>,
    ) {
        for n in 0..bytes.len() {
            match decode(&bytes[..n]) {
                Err(WireError::Truncated { need }) => assert!(need > n && need <= bytes.len()),
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    /// Found by the fuzzer: 2048 bytes of invalid UTF-8 decode to 6144
    /// bytes of U+FFFD, which the encoder clipped, so the decoded hello did
    /// not encode as itself.
    #[test]
    fn a_message_of_invalid_utf8_decodes_to_one_that_encodes_as_itself() {
        let mut wire = vec![0u8];
        wire.extend_from_slice(&[0; 16]);
        wire.extend_from_slice(&(MAX_MESSAGE_LEN as u16).to_be_bytes());
        wire.extend(std::iter::repeat_n(0xff, MAX_MESSAGE_LEN));
        let (hello, used) = ServerHello::decode(&wire).unwrap();
        assert_eq!(used, wire.len());
        assert!(hello.message.len() <= MAX_MESSAGE_LEN);
        assert!(hello
            .message
            .chars()
            .all(|c| c == char::REPLACEMENT_CHARACTER));
        let again = hello.encode();
        assert_eq!(ServerHello::decode(&again).unwrap(), (hello, again.len()));
    }

    #[test]
    fn hellos_round_trip_with_known_bytes() {
        let h = ClientHello {
            send_bps: 125_000,
            recv_bps: 250_000,
            auth: b"pw".to_vec(),
        };
        let b = h.encode().unwrap();
        assert_eq!(
            b,
            [
                &[3u8][..],
                &125_000u64.to_be_bytes(),
                &250_000u64.to_be_bytes(),
                &[0, 2, b'p', b'w']
            ]
            .concat()
        );
        assert_eq!(ClientHello::decode(&b).unwrap(), (h, 21));
        truncations_need_more(&b, ClientHello::decode);
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(matches!(
            ClientHello::decode(&v2),
            Err(WireError::BadVersion(2))
        ));
        let mut zero = b.clone();
        zero[1..9].fill(0);
        assert!(matches!(
            ClientHello::decode(&zero),
            Err(WireError::ZeroRate)
        ));

        let s = ServerHello {
            ok: false,
            send_bps: 1,
            recv_bps: 2,
            message: "Wrong password".into(),
        };
        let b = s.encode();
        assert_eq!(b.len(), 19 + 14);
        assert_eq!(ServerHello::decode(&b).unwrap(), (s, 33));
        truncations_need_more(&b, ServerHello::decode);
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for (udp, target) in [
            (false, TargetAddr::Domain("example.com".into(), 443)),
            (true, TargetAddr::Ip("[::1]:53".parse().unwrap())),
            (false, TargetAddr::Ip("127.0.0.1:80".parse().unwrap())),
        ] {
            let r = Request { udp, target };
            let b = r.encode().unwrap();
            let len = b.len();
            assert_eq!(Request::decode(&b).unwrap(), (r, len));
            truncations_need_more(&b, Request::decode);
        }
        // IPv6 goes without brackets, as sing-box sends it.
        let b = Request {
            udp: false,
            target: TargetAddr::Ip("[::1]:53".parse().unwrap()),
        }
        .encode()
        .unwrap();
        assert_eq!(b, [0, 0, 3, b':', b':', b'1', 0, 53]);
        assert!(matches!(
            Request::decode(&[2, 0, 1, b'a', 0, 1]),
            Err(WireError::BadFlag { value: 2, .. })
        ));
        assert!(matches!(
            Request::decode(&[0, 0xff, 0xff]),
            Err(WireError::TooLong { len: 65535, .. })
        ));
        for host in [&b""[..], b"a:b", b"\xff"] {
            let mut b = vec![0, 0, host.len() as u8];
            b.extend_from_slice(host);
            b.extend_from_slice(&[0, 1]);
            assert!(
                matches!(Request::decode(&b), Err(WireError::BadHost(_))),
                "{host:?}"
            );
        }
        let r = Response {
            ok: true,
            session_id: 7,
            message: String::new(),
        };
        let b = r.encode();
        assert_eq!(b, [1, 0, 0, 0, 7, 0, 0]);
        assert_eq!(Response::decode(&b).unwrap(), (r, 7));
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let (r, _) = Response::decode(
            &Response {
                ok: false,
                session_id: 0,
                message: long,
            }
            .encode(),
        )
        .unwrap();
        assert_eq!(r.message.len(), MAX_MESSAGE_LEN);
    }

    #[test]
    fn udp_messages_round_trip_and_check_their_length() {
        let h = UdpHeader {
            session_id: 9,
            addr: TargetAddr::Domain("echo.test".into(), 7),
            msg_id: 300,
            frag_id: 1,
            frag_count: 2,
        };
        let mut d = Vec::new();
        h.encode(4, &mut d).unwrap();
        assert_eq!(d.len(), h.encoded_len());
        assert_eq!(d.len(), 14 + 9);
        d.extend_from_slice(b"data");
        let (got, data) = UdpHeader::decode(&d).unwrap();
        assert_eq!((got, data), (h, &b"data"[..]));
        for n in 0..d.len() - 4 {
            assert!(
                matches!(UdpHeader::decode(&d[..n]), Err(WireError::Truncated { .. })),
                "{n}"
            );
        }
        assert!(matches!(
            UdpHeader::decode(&d[..d.len() - 1]),
            Err(WireError::DataLength {
                declared: 4,
                actual: 3
            })
        ));
        d.push(0);
        assert!(matches!(
            UdpHeader::decode(&d),
            Err(WireError::DataLength {
                declared: 4,
                actual: 5
            })
        ));
    }

    #[tokio::test]
    async fn read_message_stops_at_the_message_end() {
        let r = Request {
            udp: false,
            target: TargetAddr::Domain("example.com".into(), 443),
        };
        let mut bytes = r.encode().unwrap();
        bytes.extend_from_slice(b"payload");
        let mut s = bytes.as_slice();
        let got = read_message(&mut s, Request::decode, MAX_REQUEST)
            .await
            .unwrap();
        assert_eq!(got, r);
        assert_eq!(s, b"payload");
        let mut short = &bytes[..5];
        assert!(matches!(
            read_message(&mut short, Request::decode, MAX_REQUEST).await,
            Err(WireError::Truncated { .. })
        ));
        let hello = ClientHello {
            send_bps: 1,
            recv_bps: 1,
            auth: vec![b'x'; 100],
        }
        .encode()
        .unwrap();
        assert!(matches!(
            read_message(&mut hello.as_slice(), ClientHello::decode, 50).await,
            Err(WireError::TooLong { max: 50, .. })
        ));
    }
}
