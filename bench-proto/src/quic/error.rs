//! The errors every QUIC protocol shares ([`Error`]) and the one way they,
//! and a protocol's own refusal of the authentication, become SOCKS5
//! replies ([`ProtocolError`]).

use std::io;

use crate::addr::TargetAddr;
use crate::outbound::SocksReply;
use crate::socks5::ReplyCode;
use crate::udp_frag::{FragmentError, SplitError};

use super::LinkError;

/// What can go wrong in any QUIC protocol's endpoint, apart from its own
/// authentication and wire format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Setting up the UDP socket or the QUIC endpoint failed.
    #[error("QUIC endpoint: {0}")]
    Endpoint(io::Error),
    /// No QUIC connection to the server (connecting, the handshake, or a
    /// connection that died and could not be replaced).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Writing a QUIC stream failed.
    #[error("writing a QUIC stream: {0}")]
    Write(quinn::WriteError),
    /// The server refused to connect a stream's target.
    #[error("server refused {target}: {message}")]
    TargetRefused {
        /// The target.
        target: TargetAddr,
        /// The server's message.
        message: String,
    },
    /// A malformed fragment header.
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    /// A UDP packet that cannot be split into the peer's datagrams.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The server does not relay UDP, or takes no QUIC datagrams.
    #[error("the server does not relay UDP (or takes no QUIC datagrams)")]
    UdpUnsupported,
    /// Sending a datagram failed.
    #[error("sending a QUIC datagram: {0}")]
    Datagram(quinn::SendDatagramError),
    /// The UDP session is closed.
    #[error("UDP session closed")]
    SessionClosed,
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The SOCKS5 reply for this failure.
    fn socks_reply(&self) -> ReplyCode {
        match self {
            Error::Link(e) => e.reply_code(),
            Error::TargetRefused { .. } => ReplyCode::HostUnreachable,
            _ => ReplyCode::GeneralFailure,
        }
    }
}

impl SocksReply for Error {
    fn reply_code(&self) -> ReplyCode {
        self.socks_reply()
    }
}

/// A QUIC protocol's error: one of the shared [`Error`]s or one of its own.
/// Its SOCKS5 reply follows from that (the one mapping for every QUIC
/// protocol): a refused authentication is `NotAllowed`, a shared error
/// answers as [`Error`] does, anything else of its own is a general
/// failure.
pub trait ProtocolError: From<Error> {
    /// The shared error, if this is one.
    fn shared(&self) -> Option<&Error>;
    /// Whether the server refused the authentication.
    fn auth_refused(&self) -> bool;
}

impl<E: ProtocolError> SocksReply for E {
    fn reply_code(&self) -> ReplyCode {
        if self.auth_refused() {
            return ReplyCode::NotAllowed;
        }
        self.shared()
            .map_or(ReplyCode::GeneralFailure, Error::socks_reply)
    }
}

/// Makes the protocol's error `$e` a [`ProtocolError`], by the names every
/// QUIC protocol uses: its `Quic(Error)` variant holds the shared errors,
/// its `AuthRejected { .. }` variant is the server's refusal. Also lets `?`
/// turn what converts into the shared [`Error`] into `$e`.
macro_rules! protocol_error {
    ($e:ident) => {
        impl $crate::quic::ProtocolError for $e {
            fn shared(&self) -> Option<&$crate::quic::Error> {
                match self {
                    $e::Quic(e) => Some(e),
                    _ => None,
                }
            }

            fn auth_refused(&self) -> bool {
                matches!(self, $e::AuthRejected { .. })
            }
        }
        impl From<std::io::Error> for $e {
            fn from(e: std::io::Error) -> Self {
                Self::Quic($crate::quic::Error::Io(e))
            }
        }
        impl From<$crate::quic::LinkError> for $e {
            fn from(e: $crate::quic::LinkError) -> Self {
                Self::Quic($crate::quic::Error::Link(e))
            }
        }
        impl From<$crate::udp_frag::FragmentError> for $e {
            fn from(e: $crate::udp_frag::FragmentError) -> Self {
                Self::Quic($crate::quic::Error::Fragment(e))
            }
        }
        impl From<$crate::udp_frag::SplitError> for $e {
            fn from(e: $crate::udp_frag::SplitError) -> Self {
                Self::Quic($crate::quic::Error::Split(e))
            }
        }
    };
}
pub(crate) use protocol_error;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hysteria2::Hysteria2Error;

    #[test]
    fn socks_replies() {
        let server = "127.0.0.1:1".parse().unwrap();
        let refused = Error::TargetRefused {
            target: TargetAddr::Ip(server),
            message: "no".into(),
        };
        let timed_out = Error::Link(LinkError::Handshake {
            server,
            source: quinn::ConnectionError::TimedOut,
        });
        let cases = [
            (
                Hysteria2Error::AuthRejected {
                    server,
                    status: 404,
                },
                ReplyCode::NotAllowed,
            ),
            (Hysteria2Error::Quic(refused), ReplyCode::HostUnreachable),
            (Hysteria2Error::Quic(timed_out), ReplyCode::HostUnreachable),
            (
                Hysteria2Error::Quic(Error::SessionClosed),
                ReplyCode::GeneralFailure,
            ),
            (
                Hysteria2Error::Config("x".into()),
                ReplyCode::GeneralFailure,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.reply_code(), want, "{e}");
        }
    }
}
