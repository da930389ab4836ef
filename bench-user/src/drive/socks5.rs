//! The client side of SOCKS5 (RFC 1928): no authentication, CONNECT only.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::DriveError;
use super::watchdog::timed;

const VERSION: u8 = 0x05;
const METHOD_NO_AUTH: u8 = 0x00;
const NO_ACCEPTABLE_METHODS: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// Where a CONNECT goes, or the bound address a server reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// An IPv4 or IPv6 address and port (ATYP 0x01 or 0x04).
    Ip(SocketAddr),
    /// A domain name and port (ATYP 0x03), resolved by the server.
    Domain(String, u16),
}

impl From<SocketAddr> for TargetAddr {
    fn from(a: SocketAddr) -> Self {
        TargetAddr::Ip(a)
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(a) => write!(f, "{a}"),
            TargetAddr::Domain(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// What a SOCKS5 server did wrong or refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// The server answered with another protocol version.
    #[error("server answered with SOCKS version {0:#04x}, expected 0x05")]
    BadVersion(u8),
    /// The server accepts none of the offered methods (only 0x00 is offered).
    #[error("server accepts no offered method (only 0x00, no authentication, was offered)")]
    NoAcceptableMethod,
    /// The server picked a method that was not offered.
    #[error("server chose method {0:#04x}, which was not offered")]
    UnexpectedMethod(u8),
    /// The CONNECT reply carries a non-zero code.
    #[error("CONNECT failed with reply {code:#04x}: {}", reply_meaning(*.code))]
    Reply {
        /// The REP field of the reply.
        code: u8,
    },
    /// The reply's bound address has an unknown ATYP.
    #[error("reply has unknown address type {0:#04x}")]
    BadAddressType(u8),
    /// A domain target that SOCKS5 cannot carry (empty or over 255 bytes).
    #[error("domain name of {0} bytes cannot be sent (SOCKS5 allows 1..=255)")]
    BadDomain(usize),
}

/// The meaning of a SOCKS5 reply code, as RFC 1928 names it.
pub fn reply_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned reply code",
    }
}

fn socks_err(context: &str, source: Socks5Error) -> DriveError {
    DriveError::Socks5 {
        context: context.to_string(),
        source,
    }
}

/// Runs the SOCKS5 handshake on `stream`: greeting offering only method 0x00,
/// then CONNECT to `target`. Returns the bound address from the success reply.
/// Every read and write waits at most `io_timeout`.
pub async fn connect<S>(
    stream: &mut S,
    target: &TargetAddr,
    io_timeout: Duration,
) -> Result<TargetAddr, DriveError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = [VERSION, 1, METHOD_NO_AUTH];
    timed(io_timeout, "SOCKS5 greeting", stream.write_all(&greeting)).await?;
    let mut choice = [0u8; 2];
    timed(
        io_timeout,
        "SOCKS5 method selection",
        stream.read_exact(&mut choice),
    )
    .await?;
    let ctx = "SOCKS5 method selection";
    if choice[0] != VERSION {
        return Err(socks_err(ctx, Socks5Error::BadVersion(choice[0])));
    }
    match choice[1] {
        METHOD_NO_AUTH => {}
        NO_ACCEPTABLE_METHODS => return Err(socks_err(ctx, Socks5Error::NoAcceptableMethod)),
        m => return Err(socks_err(ctx, Socks5Error::UnexpectedMethod(m))),
    }

    let ctx = format!("SOCKS5 CONNECT to {target}");
    let request = encode_request(target).map_err(|e| socks_err(&ctx, e))?;
    timed(io_timeout, ctx.as_str(), stream.write_all(&request)).await?;
    let mut head = [0u8; 4];
    timed(io_timeout, ctx.as_str(), stream.read_exact(&mut head)).await?;
    if head[0] != VERSION {
        return Err(socks_err(&ctx, Socks5Error::BadVersion(head[0])));
    }
    if head[1] != 0 {
        return Err(socks_err(&ctx, Socks5Error::Reply { code: head[1] }));
    }
    read_address(stream, head[3], io_timeout, &ctx).await
}

fn encode_request(target: &TargetAddr) -> Result<Vec<u8>, Socks5Error> {
    let mut req = vec![VERSION, CMD_CONNECT, 0x00];
    let port = match target {
        TargetAddr::Ip(SocketAddr::V4(a)) => {
            req.push(ATYP_IPV4);
            req.extend_from_slice(&a.ip().octets());
            a.port()
        }
        TargetAddr::Ip(SocketAddr::V6(a)) => {
            req.push(ATYP_IPV6);
            req.extend_from_slice(&a.ip().octets());
            a.port()
        }
        TargetAddr::Domain(host, port) => {
            let len = u8::try_from(host.len())
                .ok()
                .filter(|l| *l > 0)
                .ok_or(Socks5Error::BadDomain(host.len()))?;
            req.push(ATYP_DOMAIN);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
            *port
        }
    };
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

async fn read_address<S>(
    stream: &mut S,
    atyp: u8,
    io_timeout: Duration,
    ctx: &str,
) -> Result<TargetAddr, DriveError>
where
    S: AsyncRead + Unpin,
{
    let mut port = [0u8; 2];
    let addr = match atyp {
        ATYP_IPV4 => {
            let mut ip = [0u8; 4];
            timed(io_timeout, ctx, stream.read_exact(&mut ip)).await?;
            timed(io_timeout, ctx, stream.read_exact(&mut port)).await?;
            TargetAddr::Ip(SocketAddr::from((
                Ipv4Addr::from(ip),
                u16::from_be_bytes(port),
            )))
        }
        ATYP_IPV6 => {
            let mut ip = [0u8; 16];
            timed(io_timeout, ctx, stream.read_exact(&mut ip)).await?;
            timed(io_timeout, ctx, stream.read_exact(&mut port)).await?;
            TargetAddr::Ip(SocketAddr::from((
                Ipv6Addr::from(ip),
                u16::from_be_bytes(port),
            )))
        }
        ATYP_DOMAIN => {
            let mut len = [0u8; 1];
            timed(io_timeout, ctx, stream.read_exact(&mut len)).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            timed(io_timeout, ctx, stream.read_exact(&mut name)).await?;
            timed(io_timeout, ctx, stream.read_exact(&mut port)).await?;
            TargetAddr::Domain(
                String::from_utf8_lossy(&name).into_owned(),
                u16::from_be_bytes(port),
            )
        }
        other => return Err(socks_err(ctx, Socks5Error::BadAddressType(other))),
    };
    Ok(addr)
}
