//! The server sides' one way out: resolving a target and connecting to it.
//! Every protocol's server (and the tls fallback) dials through here, so a
//! failure reads the same everywhere and maps to one SOCKS5 reply code.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::addr::TargetAddr;
use crate::socks5::ReplyCode;

/// Why a target could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The name did not resolve.
    #[error("resolving {target}: {source}")]
    Resolve {
        /// The target.
        target: TargetAddr,
        /// Why.
        source: io::Error,
    },
    /// No address the target resolved to took the connection.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// The target.
        target: TargetAddr,
        /// The last address's failure.
        source: io::Error,
    },
}

impl DialError {
    /// The SOCKS5 reply code that says why (for protocols that carry one).
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            DialError::Resolve { .. } => ReplyCode::HostUnreachable,
            DialError::Connect { source, .. } => ReplyCode::from_connect_error(source),
        }
    }

    /// The I/O error underneath, owned.
    pub fn into_io_error(self) -> io::Error {
        match self {
            DialError::Resolve { source, .. } | DialError::Connect { source, .. } => source,
        }
    }

    /// The I/O error underneath, without the target (for protocols whose
    /// answer carries the reason as text).
    pub fn io_error(&self) -> &io::Error {
        match self {
            DialError::Resolve { source, .. } | DialError::Connect { source, .. } => source,
        }
    }
}

/// The first address `target` resolves to (UDP relays send there).
pub(crate) async fn resolve(target: &TargetAddr) -> io::Result<SocketAddr> {
    match target {
        TargetAddr::Ip(sa) => Ok(*sa),
        TargetAddr::Domain(name, port) => tokio::net::lookup_host((name.as_str(), *port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::HostUnreachable, "no address")),
    }
}

/// Connects to `target`, trying each resolved address in turn, with
/// `TCP_NODELAY` set: small request/response exchanges go through the chain
/// too.
pub(crate) async fn connect(target: &TargetAddr) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = match target {
        TargetAddr::Ip(sa) => vec![*sa],
        TargetAddr::Domain(name, port) => {
            match tokio::net::lookup_host((name.as_str(), *port)).await {
                Ok(addrs) => addrs.collect(),
                Err(source) => {
                    return Err(DialError::Resolve {
                        target: target.clone(),
                        source,
                    })
                }
            }
        }
    };
    let mut last = io::Error::new(
        io::ErrorKind::HostUnreachable,
        "name resolved to no address",
    );
    for sa in addrs {
        match TcpStream::connect(sa).await {
            Ok(s) => match s.set_nodelay(true) {
                Ok(()) => return Ok(s),
                Err(e) => last = e,
            },
            Err(e) => last = e,
        }
    }
    Err(DialError::Connect {
        target: target.clone(),
        source: last,
    })
}
