//! `hysteria1`: Hysteria v1 (protocol version 3) over QUIC (quinn), ALPN
//! `hysteria`; see `specs/notes.md`, "Hysteria v1".
//!
//! The client side ([`run_client`], [`Client`]) opens one QUIC connection
//! (re-established when it dies, [`Link`](crate::quic::Link)) whose first
//! stream carries the hellos: the client's rates and authentication string,
//! answered by the server's verdict and rates. Each SOCKS5 CONNECT is then
//! one bidirectional stream that starts with a request (host, port) and its
//! response. UDP sessions ([`Client::udp_session`]) are opened by a request
//! on a stream of their own, which stays open as long as the session; their
//! packets go in QUIC datagrams (`UDPMessage`, fragmented to fit). The
//! SOCKS5 side does not offer UDP ASSOCIATE.
//!
//! The server side ([`run_server`]) checks the hello (a wrong version or
//! rate closes the connection with code 1, a wrong authentication string
//! gets a refusing hello and code 2, as sing-box does), then connects each
//! stream's target over TCP and relays.
//!
//! Both sides run Brutal ([`brutal`](crate::brutal)) from the hellos on: the
//! client sends at its `up_mbps` capped by the server's receive rate, the
//! server at its `up_mbps` capped by the client's receive rate.
//!
//! Settings (`--set hysteria1.KEY=VALUE`), see [`Settings`]:
//!
//! | key | values | default |
//! |---|---|---|
//! | `obfs` | XPlus key; empty for none | none |
//! | `up_mbps` | this side's send rate, Mbit/s, 1..=100000 | 1000 |
//! | `down_mbps` | this side's receive rate, Mbit/s, 1..=100000 | 1000 |
//! | `udp` | server: relay UDP, `true`/`false` | `true` |
//! | `idle_timeout_s` | QUIC idle timeout, 1..=3600 | 30 |
//! | `udp_buffer` | UDP socket receive buffer asked for, bytes, 0..=268435456; 0 = the kernel's default | 4194304 |

mod client;
mod server;
pub mod udp;
pub mod wire;
pub mod xplus;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;

use crate::brutal;
use crate::settings::{parse_in_range, SettingError};

pub use crate::quic::QuicStream;
pub use client::{run_client, Client, ClientOptions, Hello, Live, UdpSession};
pub use server::{run_server, ServerOptions};
pub use wire::WireError;
pub use xplus::XPlus;

/// A UDP socket that applies XPlus below quinn.
pub type XPlusSocket = crate::packet_obfs::ObfsSocket<XPlus>;

/// The ALPN protocol.
pub const ALPN: &[u8] = b"hysteria";
/// QUIC close code: no error in particular.
pub const CLOSE_GENERIC: u32 = 0;
/// QUIC close code (and stream reset code): the peer broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u32 = 1;
/// QUIC close code: authentication failed.
pub const CLOSE_AUTH_ERROR: u32 = 2;
/// The message of a refusing server hello (sing-box's words).
pub const WRONG_PASSWORD: &str = "Wrong password";
/// The message of a refused UDP session (sing-box's words).
pub const UDP_DISABLED: &str = "UDP disabled by server";
/// How long the hellos, and a stream's request, may take.
pub const PROTOCOL_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive window per stream (Hysteria's default).
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// Receive window per connection (Hysteria's default).
const CONNECTION_WINDOW: u32 = 20 * 1024 * 1024;

/// Hysteria v1 options, set with `--set hysteria1.KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// The XPlus key; `None` for no obfuscation.
    pub obfs: Option<String>,
    /// This side's send rate in Mbit/s.
    pub up_mbps: u64,
    /// This side's receive rate in Mbit/s.
    pub down_mbps: u64,
    /// Server: whether UDP is relayed.
    pub udp: bool,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Receive buffer asked for the UDP socket, bytes (0: the kernel's
    /// default); see [`crate::quic::DEFAULT_UDP_BUFFER`].
    pub udp_buffer: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            obfs: None,
            up_mbps: 1000,
            down_mbps: 1000,
            udp: true,
            idle_timeout: Duration::from_secs(30),
            udp_buffer: crate::quic::DEFAULT_UDP_BUFFER,
        }
    }
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `hysteria1.` prefix.
    pub const KEYS: &'static [&'static str] = &[
        "obfs",
        "up_mbps",
        "down_mbps",
        "udp",
        "idle_timeout_s",
        "udp_buffer",
    ];

    /// Sets one option from its key (without the `hysteria1.` prefix).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("hysteria1.{key}");
        match key {
            "obfs" => self.obfs = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "up_mbps" => self.up_mbps = parse_in_range(&full_key, value, 1, 100_000, 1000)? as u64,
            "down_mbps" => {
                self.down_mbps = parse_in_range(&full_key, value, 1, 100_000, 1000)? as u64
            }
            "udp" => {
                self.udp = match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(SettingError::BadValue {
                            key: full_key,
                            value: value.to_owned(),
                            expected: "`true` or `false`".to_owned(),
                        })
                    }
                }
            }
            "idle_timeout_s" => {
                let s = parse_in_range(&full_key, value, 1, 3600, 30)?;
                self.idle_timeout = Duration::from_secs(s as u64);
            }
            "udp_buffer" => self.udp_buffer = crate::quic::parse_udp_buffer(&full_key, value)?,
            _ => {
                return Err(SettingError::UnknownKey {
                    key: full_key,
                    known: Self::KEYS
                        .iter()
                        .map(|k| format!("hysteria1.{k}"))
                        .collect(),
                })
            }
        }
        Ok(())
    }

    /// The XPlus transform, if on.
    pub fn xplus(&self) -> Option<XPlus> {
        self.obfs.as_ref().map(|k| XPlus::new(k.as_bytes()))
    }

    /// This side's send rate in bytes per second.
    pub fn send_bps(&self) -> u64 {
        mbps_to_bytes(self.up_mbps)
    }

    /// This side's receive rate in bytes per second.
    pub fn recv_bps(&self) -> u64 {
        mbps_to_bytes(self.down_mbps)
    }

    fn transport(&self) -> Result<quinn::TransportConfig, Hysteria1Error> {
        let cc = Arc::new(brutal::AdaptiveFactory::default());
        let mut t =
            crate::quic::transport(self.idle_timeout, cc).map_err(Hysteria1Error::Config)?;
        t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
        t.receive_window(VarInt::from_u32(CONNECTION_WINDOW));
        Ok(t)
    }
}

/// Mbit/s to bytes per second (1 Mbit/s = 125000 B/s).
fn mbps_to_bytes(mbps: u64) -> u64 {
    mbps * 125_000
}

/// A quinn endpoint on `socket`, obfuscated with XPlus if `obfs` is on.
fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    udp_buffer: usize,
    obfs: Option<XPlus>,
) -> Result<quinn::Endpoint, Hysteria1Error> {
    crate::packet_obfs::endpoint(socket, server, udp_buffer, obfs)
        .map_err(|e| crate::quic::Error::Endpoint(e).into())
}

/// Errors of the hysteria1 endpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Hysteria1Error {
    /// The options do not make a working configuration.
    #[error("hysteria1 configuration: {0}")]
    Config(String),
    /// One of the errors every QUIC protocol shares.
    #[error(transparent)]
    Quic(#[from] crate::quic::Error),
    /// The hello exchange failed (not a refusal).
    #[error("hello with {server}: {reason}")]
    Hello {
        /// The server.
        server: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The server refused the authentication string.
    #[error("server {server} refused the authentication: {message}")]
    AuthRejected {
        /// The server.
        server: SocketAddr,
        /// Its message (or close reason).
        message: String,
    },
    /// A malformed message.
    #[error(transparent)]
    Wire(#[from] WireError),
}

crate::quic::protocol_error!(Hysteria1Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let mut s = Settings::default();
        assert!(s.xplus().is_none());
        assert_eq!((s.send_bps(), s.recv_bps()), (125_000_000, 125_000_000));
        s.set("obfs", "k").unwrap();
        assert!(s.xplus().is_some());
        s.set("obfs", "").unwrap();
        assert!(s.xplus().is_none());
        s.set("up_mbps", "100").unwrap();
        s.set("down_mbps", "8").unwrap();
        s.set("udp", "false").unwrap();
        s.set("idle_timeout_s", "5").unwrap();
        assert_eq!(
            (s.send_bps(), s.recv_bps(), s.udp),
            (12_500_000, 1_000_000, false)
        );
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        for (k, v) in [
            ("up_mbps", "0"),
            ("down_mbps", "100001"),
            ("udp", "yes"),
            ("idle_timeout_s", "0"),
            ("nope", "1"),
        ] {
            let e = s.set(k, v).unwrap_err().to_string();
            assert!(e.contains(&format!("hysteria1.{k}")), "{e}");
        }
    }
}
