//! `tuic`: TUIC v5 over QUIC (quinn), see `specs/tuic-v5.md`.
//!
//! The client side ([`run_client`], [`Client`]) takes SOCKS5 CONNECTs and
//! carries each as a bidirectional QUIC stream that starts with a `Connect`
//! command; all of them share one QUIC connection, which is re-established
//! when it dies. The server side ([`run_server`]) authenticates each QUIC
//! connection, connects to each stream's target over TCP and relays with
//! [`relay`](crate::relay::relay). UDP is relayed in both modes (QUIC
//! datagrams with fragmentation, or one unidirectional stream per packet)
//! through [`Client::udp_session`]; the SOCKS5 side does not offer UDP
//! ASSOCIATE.
//!
//! Authentication: the client sends `Authenticate` on a unidirectional stream
//! with its UUID and a token, the TLS exporter output for label = the UUID's
//! 16 bytes and context = the password (32 bytes). The server closes the
//! connection with [`CLOSE_AUTH_FAILED`] on an unknown UUID or a wrong token,
//! and with [`CLOSE_AUTH_TIMEOUT`] when no valid `Authenticate` came within
//! `tuic.auth_timeout_s`. Commands that arrive before it wait for it.
//!
//! TUIC has no answer to `Authenticate`, so a client cannot tell a refusal
//! from success except by the connection closing. Our server therefore sends
//! a `Heartbeat` datagram as soon as a client is authenticated (sing-box's
//! server sends heartbeats too, so clients ignore them), and our client waits
//! for it, or for a short grace period with servers that do not send it,
//! before it answers the first SOCKS5 CONNECT on a new connection: a refused
//! client's CONNECT then fails instead of succeeding and breaking at once.
//!
//! Settings (`--set tuic.KEY=VALUE`), see [`Settings`]:
//!
//! | key | values | default |
//! |---|---|---|
//! | `udp_relay_mode` | `native`, `quic` | `native` |
//! | `heartbeat_s` | seconds between client heartbeats, 1..=3600 | 10 |
//! | `congestion_control` | `bbr`, `cubic`, `new_reno` | `bbr` |
//! | `alpn` | comma-separated protocols, empty for none | `h3` |
//! | `auth_timeout_s` | server: seconds to wait for `Authenticate`, 1..=600 | 3 |
//! | `idle_timeout_s` | QUIC idle timeout, 1..=3600 | 30 |
//! | `udp_buffer` | UDP socket receive buffer asked for, bytes, 0..=268435456; 0 = the kernel's default | 4194304 |

mod client;
mod server;
pub mod udp;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;

use crate::quic;
use crate::settings::{parse_in_range, SettingError};

pub use crate::quic::QuicStream;

pub use client::{run_client, ActiveGuard, Authenticate, Client, ClientOptions, UdpSession};
pub use server::{run_server, ServerOptions};
pub use udp::FragmentError;
pub use wire::{Command, PacketHeader, Uuid, UuidError, WireError};

/// QUIC application close code: unknown UUID or wrong token.
pub const CLOSE_AUTH_FAILED: u32 = 0x101;
/// QUIC application close code: no valid `Authenticate` in time.
pub const CLOSE_AUTH_TIMEOUT: u32 = 0x102;
/// QUIC application close code: a datagram or command that breaks the
/// protocol on the connection level (e.g. a bad `Packet` datagram).
pub const CLOSE_PROTOCOL_ERROR: u32 = 0x103;
/// QUIC application close code: the endpoint closes normally.
pub const CLOSE_NORMAL: u32 = 0;
/// Stream error code (reset / stop sending): the command header was bad.
pub const STREAM_BAD_COMMAND: u32 = 0x110;
/// Stream error code: the server could not connect to the target.
pub const STREAM_CONNECT_FAILED: u32 = 0x111;
/// Stream error code: relaying failed on the other side.
pub const STREAM_RELAY_FAILED: u32 = 0x112;

/// How UDP packets travel between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpRelayMode {
    /// QUIC datagrams, fragmented when larger than a datagram can be.
    Native,
    /// One unidirectional QUIC stream per packet (lossless, more overhead).
    Quic,
}

/// QUIC congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CongestionControl {
    /// quinn's BBR (experimental in quinn, TUIC's customary choice).
    Bbr,
    /// CUBIC.
    Cubic,
    /// NewReno.
    NewReno,
}

/// TUIC options shared by both sides, set with `--set tuic.KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// UDP relay mode (client; the server answers in the mode it was spoken to).
    pub udp_relay_mode: UdpRelayMode,
    /// Interval of client heartbeats while anything is relayed.
    pub heartbeat: Duration,
    /// Congestion controller of this side.
    pub congestion_control: CongestionControl,
    /// ALPN protocols offered (client) or accepted (server).
    pub alpn: Vec<Vec<u8>>,
    /// Server: how long a connection may stay unauthenticated.
    pub auth_timeout: Duration,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Receive buffer asked for the UDP socket, bytes (0: the kernel's
    /// default); see [`crate::quic::DEFAULT_UDP_BUFFER`].
    pub udp_buffer: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            udp_relay_mode: UdpRelayMode::Native,
            heartbeat: Duration::from_secs(10),
            congestion_control: CongestionControl::Bbr,
            alpn: vec![b"h3".to_vec()],
            auth_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(30),
            udp_buffer: crate::quic::DEFAULT_UDP_BUFFER,
        }
    }
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `tuic.` prefix.
    pub const KEYS: &'static [&'static str] = &[
        "udp_relay_mode",
        "heartbeat_s",
        "congestion_control",
        "alpn",
        "auth_timeout_s",
        "idle_timeout_s",
        "udp_buffer",
    ];

    /// Sets one option from its key (without the `tuic.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("tuic.{key}");
        let bad = |expected: &str| SettingError::BadValue {
            key: full_key.clone(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        let secs = |max: usize, example: usize| {
            parse_in_range(&full_key, value, 1, max, example).map(|s| Duration::from_secs(s as u64))
        };
        match key {
            "udp_relay_mode" => {
                self.udp_relay_mode = match value {
                    "native" => UdpRelayMode::Native,
                    "quic" => UdpRelayMode::Quic,
                    _ => return Err(bad("`native` or `quic`")),
                }
            }
            "heartbeat_s" => self.heartbeat = secs(3600, 10)?,
            "congestion_control" => {
                self.congestion_control = match value {
                    "bbr" => CongestionControl::Bbr,
                    "cubic" => CongestionControl::Cubic,
                    "new_reno" => CongestionControl::NewReno,
                    _ => return Err(bad("`bbr`, `cubic` or `new_reno`")),
                }
            }
            "alpn" => {
                let protos: Vec<Vec<u8>> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| p.as_bytes().to_vec())
                    .collect();
                if protos.iter().any(|p| p.len() > 255) {
                    return Err(bad("comma-separated protocol names of at most 255 bytes"));
                }
                self.alpn = protos;
            }
            "auth_timeout_s" => self.auth_timeout = secs(600, 3)?,
            "idle_timeout_s" => self.idle_timeout = secs(3600, 30)?,
            "udp_buffer" => self.udp_buffer = crate::quic::parse_udp_buffer(&full_key, value)?,
            _ => {
                return Err(SettingError::UnknownKey {
                    key: full_key,
                    known: Self::KEYS.iter().map(|k| format!("tuic.{k}")).collect(),
                })
            }
        }
        Ok(())
    }

    /// quinn's transport parameters for these settings.
    fn transport(&self) -> Result<quinn::TransportConfig, TuicError> {
        use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
        let cc: Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> =
            match self.congestion_control {
                CongestionControl::Bbr => Arc::new(BbrConfig::default()),
                CongestionControl::Cubic => Arc::new(CubicConfig::default()),
                CongestionControl::NewReno => Arc::new(NewRenoConfig::default()),
            };
        let mut t = quic::transport(self.idle_timeout, cc).map_err(TuicError::Config)?;
        // In quic mode every UDP packet is a unidirectional stream.
        t.max_concurrent_uni_streams(VarInt::from_u32(quic::MAX_STREAMS));
        Ok(t)
    }
}

/// Errors of the tuic endpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuicError {
    /// The options do not make a working configuration.
    #[error("tuic configuration: {0}")]
    Config(String),
    /// One of the errors every QUIC protocol shares.
    #[error(transparent)]
    Quic(#[from] crate::quic::Error),
    /// The server closed the connection after `Authenticate`.
    #[error("server {server} refused the authentication: {source}")]
    AuthRejected {
        /// The server.
        server: SocketAddr,
        /// The close as the client saw it.
        source: quinn::ConnectionError,
    },
    /// The TLS exporter failed (it cannot on a TLS 1.3 connection).
    #[error("exporting the authentication token from TLS failed")]
    Exporter,
    /// A malformed command.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A `Packet` datagram whose `SIZE` is not what follows the header.
    #[error("Packet datagram says SIZE {header} but carries {actual} bytes")]
    SizeMismatch {
        /// `SIZE`.
        header: u16,
        /// Bytes after the header.
        actual: usize,
    },
    /// A command on a stream or datagram where it does not belong.
    #[error("unexpected command {0} here")]
    UnexpectedCommand(&'static str),
    /// The peer does not take QUIC datagrams (native UDP relay impossible).
    #[error("the peer does not accept QUIC datagrams; use tuic.udp_relay_mode=quic")]
    DatagramsUnsupported,
}

crate::quic::protocol_error!(TuicError);

/// The authentication token: the TLS exporter output for label = the UUID's
/// bytes and context = the password, 32 bytes.
pub fn auth_token(
    conn: &quinn::Connection,
    uuid: &Uuid,
    password: &[u8],
) -> Result<[u8; wire::TOKEN_LEN], TuicError> {
    let mut token = [0u8; wire::TOKEN_LEN];
    conn.export_keying_material(&mut token, &uuid.0, password)
        .map_err(|_| TuicError::Exporter)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let mut s = Settings::default();
        assert_eq!(s.alpn, vec![b"h3".to_vec()]);
        assert_eq!(s.congestion_control, CongestionControl::Bbr);
        s.set("udp_relay_mode", "quic").unwrap();
        s.set("congestion_control", "new_reno").unwrap();
        s.set("heartbeat_s", "3").unwrap();
        s.set("alpn", "h3, tuic").unwrap();
        s.set("auth_timeout_s", "1").unwrap();
        s.set("idle_timeout_s", "5").unwrap();
        assert_eq!(s.udp_relay_mode, UdpRelayMode::Quic);
        assert_eq!(s.congestion_control, CongestionControl::NewReno);
        assert_eq!(s.heartbeat, Duration::from_secs(3));
        assert_eq!(s.alpn, vec![b"h3".to_vec(), b"tuic".to_vec()]);
        assert_eq!(s.auth_timeout, Duration::from_secs(1));
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        s.set("alpn", "").unwrap();
        assert!(s.alpn.is_empty());
        for (k, v) in [
            ("udp_relay_mode", "tcp"),
            ("congestion_control", "reno"),
            ("heartbeat_s", "0"),
            ("heartbeat_s", "x"),
            ("auth_timeout_s", "601"),
            ("idle_timeout_s", "-1"),
        ] {
            let err = s.set(k, v).unwrap_err().to_string();
            assert!(err.contains(&format!("tuic.{k}")), "{err}");
        }
        let err = s.set("nope", "1").unwrap_err().to_string();
        assert!(
            err.contains("tuic.nope") && err.contains("tuic.udp_relay_mode"),
            "{err}"
        );
        for cc in ["bbr", "cubic", "new_reno"] {
            s.set("congestion_control", cc).unwrap();
            s.transport().unwrap();
        }
    }
}
