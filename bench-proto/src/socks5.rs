//! The server side of SOCKS5 (RFC 1928): what a client endpoint speaks to the
//! load generator. CONNECT only, method "no authentication" only, because that
//! is all a load generator needs and every SOCKS5 client can do it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::addr::{encode_socket_addr, AddrError, TargetAddr};

/// The protocol version byte.
pub const VERSION: u8 = 0x05;
/// Method "no authentication required".
pub const METHOD_NO_AUTH: u8 = 0x00;
/// Method reply "no acceptable methods".
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
/// Command CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// Reply field value "succeeded".
pub const REPLY_SUCCEEDED: u8 = 0x00;

/// The failure codes of a SOCKS5 reply (RFC 1928, section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReplyCode {
    /// 0x01 general SOCKS server failure.
    GeneralFailure = 0x01,
    /// 0x02 connection not allowed by ruleset.
    NotAllowed = 0x02,
    /// 0x03 network unreachable.
    NetworkUnreachable = 0x03,
    /// 0x04 host unreachable.
    HostUnreachable = 0x04,
    /// 0x05 connection refused.
    ConnectionRefused = 0x05,
    /// 0x06 TTL expired.
    TtlExpired = 0x06,
    /// 0x07 command not supported.
    CommandNotSupported = 0x07,
    /// 0x08 address type not supported.
    AddressTypeNotSupported = 0x08,
}

impl ReplyCode {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The failure code for a byte, `None` for "succeeded" (0) and for bytes
    /// RFC 1928 does not assign.
    pub fn from_u8(b: u8) -> Option<ReplyCode> {
        Some(match b {
            0x01 => ReplyCode::GeneralFailure,
            0x02 => ReplyCode::NotAllowed,
            0x03 => ReplyCode::NetworkUnreachable,
            0x04 => ReplyCode::HostUnreachable,
            0x05 => ReplyCode::ConnectionRefused,
            0x06 => ReplyCode::TtlExpired,
            0x07 => ReplyCode::CommandNotSupported,
            0x08 => ReplyCode::AddressTypeNotSupported,
            _ => return None,
        })
    }

    /// The code that tells a SOCKS5 client why connecting upstream failed.
    pub fn from_connect_error(e: &io::Error) -> ReplyCode {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => ReplyCode::ConnectionRefused,
            K::HostUnreachable => ReplyCode::HostUnreachable,
            K::NetworkUnreachable | K::NetworkDown => ReplyCode::NetworkUnreachable,
            // RFC 1928 has no "timed out": the host did not answer, which
            // clients present as "host unreachable".
            K::TimedOut => ReplyCode::HostUnreachable,
            // EACCES/EPERM from connect() come from a local firewall rule.
            K::PermissionDenied => ReplyCode::NotAllowed,
            _ if e.raw_os_error() == Some(libc::EHOSTDOWN) => ReplyCode::HostUnreachable,
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// The final reply to a CONNECT request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The upstream connection is up; the address is the one it is bound to.
    Succeeded(SocketAddr),
    /// The request failed for this reason.
    Failed(ReplyCode),
}

impl Reply {
    /// Appends the reply as it goes on the wire.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // A failure carries no meaningful bound address; 0.0.0.0:0 is what
        // clients expect there.
        let (code, bound) = match *self {
            Reply::Succeeded(bound) => (REPLY_SUCCEEDED, bound),
            Reply::Failed(code) => (
                code.as_u8(),
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            ),
        };
        out.extend_from_slice(&[VERSION, code, 0x00]);
        encode_socket_addr(&bound, out);
    }
}

/// Why a SOCKS5 handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum Socks5Error {
    /// The client closed the stream in the middle of the handshake.
    #[error("socks5: client closed the stream mid-handshake")]
    Truncated,
    /// Reading or writing the stream failed.
    #[error("socks5: {0}")]
    Io(#[from] io::Error),
    /// The version byte is not 5 (also what a client speaking SOCKS4 or HTTP
    /// to a SOCKS5 port looks like).
    #[error("socks5: version byte {0:#04x}, expected 0x05")]
    BadVersion(u8),
    /// The client did not offer "no authentication"; answered with 0xFF.
    #[error("socks5: client offers no acceptable method (offered {0:02x?}, need 0x00)")]
    NoAcceptableMethod(Vec<u8>),
    /// A command other than CONNECT; answered with reply 0x07.
    #[error("socks5: command {0:#04x} not supported, only CONNECT (0x01)")]
    UnsupportedCommand(u8),
    /// The request's address could not be read; answered with reply 0x08 for
    /// an unknown address type, 0x01 for a malformed domain name.
    #[error("socks5: {0}")]
    Address(#[from] AddrError),
}

/// Runs the server side of a SOCKS5 handshake up to the request and returns
/// the CONNECT target. The caller connects upstream, then answers with
/// [`reply`].
///
/// On a request it refuses (no acceptable method, a command other than
/// CONNECT, an unknown address type) it sends the matching answer first and
/// then returns the error; the caller only has to drop the stream.
pub async fn accept<S>(s: &mut S) -> Result<TargetAddr, Socks5Error>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut head = [0u8; 2];
    read_exact(s, &mut head).await?;
    let [version, nmethods] = head;
    if version != VERSION {
        return Err(Socks5Error::BadVersion(version));
    }
    let mut methods = [0u8; 255];
    let methods = &mut methods[..usize::from(nmethods)];
    read_exact(s, methods).await?;
    if !methods.contains(&METHOD_NO_AUTH) {
        send(s, &[VERSION, METHOD_NONE_ACCEPTABLE]).await?;
        return Err(Socks5Error::NoAcceptableMethod(methods.to_vec()));
    }
    send(s, &[VERSION, METHOD_NO_AUTH]).await?;

    let mut req = [0u8; 3];
    read_exact(s, &mut req).await?;
    let [version, command, _reserved] = req;
    if version != VERSION {
        return Err(Socks5Error::BadVersion(version));
    }
    // The address is read before the command is judged so that the whole
    // request is consumed: closing with unread bytes would send an RST that
    // can destroy the reply before the client reads it.
    let target = match TargetAddr::read_from(s).await {
        Ok(t) => t,
        Err(e) => {
            let code = match e {
                AddrError::UnknownType(_) => ReplyCode::AddressTypeNotSupported,
                AddrError::EmptyDomain | AddrError::NonUtf8Domain => ReplyCode::GeneralFailure,
                AddrError::Truncated { .. } => return Err(Socks5Error::Truncated),
                _ => return Err(e.into()),
            };
            refuse(s, code).await;
            return Err(e.into());
        }
    };
    if command != CMD_CONNECT {
        refuse(s, ReplyCode::CommandNotSupported).await;
        return Err(Socks5Error::UnsupportedCommand(command));
    }
    Ok(target)
}

/// Sends the final reply to the CONNECT request.
pub async fn reply<S>(s: &mut S, reply: Reply) -> io::Result<()>
where
    S: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = Vec::with_capacity(3 + 1 + 16 + 2);
    reply.encode(&mut buf);
    send(s, &buf).await
}

/// Sends a failure reply on the way to returning an error: if the client is
/// already gone the write fails, and the error being returned says more than
/// that write error would.
async fn refuse<S>(s: &mut S, code: ReplyCode)
where
    S: AsyncWrite + Unpin + ?Sized,
{
    let _ = reply(s, Reply::Failed(code)).await;
}

async fn send<S>(s: &mut S, bytes: &[u8]) -> io::Result<()>
where
    S: AsyncWrite + Unpin + ?Sized,
{
    s.write_all(bytes).await?;
    s.flush().await
}

async fn read_exact<S>(s: &mut S, buf: &mut [u8]) -> Result<(), Socks5Error>
where
    S: AsyncRead + Unpin + ?Sized,
{
    match s.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Socks5Error::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    /// Feeds `input` to `accept` as if from a client that then half-closes,
    /// and returns what `accept` returned and every byte it answered.
    async fn run(input: &[u8]) -> (Result<TargetAddr, Socks5Error>, Vec<u8>) {
        let (mut client, mut server): (DuplexStream, DuplexStream) = duplex(4096);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let res = accept(&mut server).await;
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        (res, answer)
    }

    fn request(cmd: u8, addr: &[u8]) -> Vec<u8> {
        let mut v = vec![5, 1, 0, 5, cmd, 0];
        v.extend_from_slice(addr);
        v
    }

    const OK_METHOD: [u8; 2] = [5, 0];

    fn failure(code: u8) -> Vec<u8> {
        let mut v = OK_METHOD.to_vec();
        v.extend_from_slice(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[tokio::test]
    async fn connect_with_every_atyp() {
        let targets = [
            TargetAddr::Ip("10.1.2.3:80".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::5]:443".parse().unwrap()),
            TargetAddr::Domain("localhost".into(), 9000),
        ];
        for t in targets {
            let mut addr = Vec::new();
            t.encode(&mut addr).unwrap();
            let (res, answer) = run(&request(CMD_CONNECT, &addr)).await;
            assert_eq!(res.unwrap(), t);
            // Only the method answer: the final reply is the caller's.
            assert_eq!(answer, OK_METHOD);
        }
    }

    #[tokio::test]
    async fn picks_no_auth_among_several_methods() {
        let mut input = vec![5, 3, 0x02, 0x80, 0x00, 5, 1, 0];
        input.extend_from_slice(&[1, 127, 0, 0, 1, 0, 22]);
        let (res, answer) = run(&input).await;
        assert_eq!(res.unwrap().to_string(), "127.0.0.1:22");
        assert_eq!(answer, OK_METHOD);
    }

    #[tokio::test]
    async fn no_acceptable_method() {
        let (res, answer) = run(&[5, 2, 0x02, 0x01]).await;
        assert!(
            matches!(res, Err(Socks5Error::NoAcceptableMethod(ref m)) if m == &[2, 1]),
            "{res:?}"
        );
        assert_eq!(answer, [5, 0xff]);
        // Zero methods offered is the same refusal.
        let (res, answer) = run(&[5, 0]).await;
        assert!(matches!(res, Err(Socks5Error::NoAcceptableMethod(_))));
        assert_eq!(answer, [5, 0xff]);
    }

    #[tokio::test]
    async fn unknown_command_gets_0x07() {
        for cmd in [0x02, 0x03, 0x00, 0x09] {
            let (res, answer) = run(&request(cmd, &[1, 1, 2, 3, 4, 0, 80])).await;
            assert!(
                matches!(res, Err(Socks5Error::UnsupportedCommand(c)) if c == cmd),
                "{res:?}"
            );
            assert_eq!(answer, failure(0x07));
        }
    }

    #[tokio::test]
    async fn unknown_atyp_gets_0x08() {
        let (res, answer) = run(&request(CMD_CONNECT, &[0x02, 1, 2, 3, 4, 0, 80])).await;
        assert!(
            matches!(res, Err(Socks5Error::Address(AddrError::UnknownType(2)))),
            "{res:?}"
        );
        assert_eq!(answer, failure(0x08));
    }

    #[tokio::test]
    async fn malformed_domain_gets_general_failure() {
        let (res, answer) = run(&request(CMD_CONNECT, &[3, 0, 0, 80])).await;
        assert!(matches!(
            res,
            Err(Socks5Error::Address(AddrError::EmptyDomain))
        ));
        assert_eq!(answer, failure(0x01));
    }

    #[tokio::test]
    async fn bad_version() {
        let (res, answer) = run(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).await;
        assert!(matches!(res, Err(Socks5Error::BadVersion(4))), "{res:?}");
        assert!(answer.is_empty());
        let (res, _) = run(&[5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80]).await;
        assert!(matches!(res, Err(Socks5Error::BadVersion(4))), "{res:?}");
    }

    #[tokio::test]
    async fn every_truncation_is_an_error_without_a_reply() {
        let full = request(CMD_CONNECT, &[3, 4, b'h', b'o', b's', b't', 1, 187]);
        for cut in 0..full.len() {
            let (res, answer) = run(&full[..cut]).await;
            assert!(
                matches!(res, Err(Socks5Error::Truncated)),
                "cut {cut}: {res:?}"
            );
            // Nothing but the method answer, once the greeting was complete.
            let want: &[u8] = if cut >= 3 { &OK_METHOD } else { &[] };
            assert_eq!(answer, want, "cut {cut}");
        }
    }

    #[tokio::test]
    async fn reply_bytes() {
        let cases = [
            (
                Reply::Succeeded("192.0.2.1:1080".parse().unwrap()),
                vec![5, 0, 0, 1, 192, 0, 2, 1, 0x04, 0x38],
            ),
            (
                Reply::Failed(ReplyCode::ConnectionRefused),
                vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
            ),
            (
                Reply::Failed(ReplyCode::HostUnreachable),
                vec![5, 4, 0, 1, 0, 0, 0, 0, 0, 0],
            ),
        ];
        for (r, want) in cases {
            let (mut a, mut b) = duplex(64);
            reply(&mut a, r).await.unwrap();
            drop(a);
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, want, "{r:?}");
        }
        let mut v6 = Vec::new();
        Reply::Succeeded("[::1]:1".parse().unwrap()).encode(&mut v6);
        assert_eq!(v6.len(), 3 + 1 + 16 + 2);
        assert_eq!(v6[3], 4);
    }

    #[test]
    fn reply_code_bytes_round_trip() {
        assert_eq!(ReplyCode::from_u8(0), None);
        assert_eq!(ReplyCode::from_u8(9), None);
        for b in 1..=8u8 {
            assert_eq!(ReplyCode::from_u8(b).map(ReplyCode::as_u8), Some(b));
        }
    }

    #[test]
    fn connect_errors_map_to_reply_codes() {
        use io::ErrorKind as K;
        let cases = [
            (K::ConnectionRefused, ReplyCode::ConnectionRefused),
            (K::HostUnreachable, ReplyCode::HostUnreachable),
            (K::NetworkUnreachable, ReplyCode::NetworkUnreachable),
            (K::TimedOut, ReplyCode::HostUnreachable),
            (K::PermissionDenied, ReplyCode::NotAllowed),
            (K::Other, ReplyCode::GeneralFailure),
        ];
        for (kind, want) in cases {
            assert_eq!(
                ReplyCode::from_connect_error(&kind.into()),
                want,
                "{kind:?}"
            );
        }
        // What connect() actually returns, errno by errno.
        let errnos = [
            (libc::ECONNREFUSED, ReplyCode::ConnectionRefused),
            (libc::EHOSTUNREACH, ReplyCode::HostUnreachable),
            (libc::EHOSTDOWN, ReplyCode::HostUnreachable),
            (libc::ENETUNREACH, ReplyCode::NetworkUnreachable),
            (libc::ETIMEDOUT, ReplyCode::HostUnreachable),
        ];
        for (errno, want) in errnos {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(ReplyCode::from_connect_error(&e), want, "{e}");
        }
    }
}
