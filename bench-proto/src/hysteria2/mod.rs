//! `hysteria2`: Hysteria 2 over QUIC (quinn) with HTTP/3 authentication
//! (h3), see `specs/hysteria2.md`.
//!
//! The client side ([`run_client`], [`Client`]) takes SOCKS5 CONNECTs and
//! carries each as a bidirectional QUIC stream that starts with a
//! `TCPRequest`; all of them share one QUIC connection, which is
//! re-established when it dies. Before any of that the client sends the
//! HTTP/3 `POST /auth` and needs status 233. The server side
//! ([`run_server`]) answers `/auth` (233 for the right password, 404 like a
//! web server otherwise, for that request and any other), then connects each
//! stream's target over TCP and relays with [`relay`](crate::relay::relay).
//! UDP goes in QUIC datagrams (`UDPMessage`, fragmented to fit) through
//! [`Client::udp_session`]; the SOCKS5 side does not offer UDP ASSOCIATE.
//!
//! The server lets h3 own the connection's bidirectional streams only until
//! the client has authenticated: from then on it accepts them itself as
//! proxy streams (Hysteria clients send `/auth` first and wait for the
//! answer, so no request is in flight then).
//!
//! Settings (`--set hysteria2.KEY=VALUE`), see [`Settings`]:
//!
//! | key | values | default |
//! |---|---|---|
//! | `obfs` | `none`, `salamander` | `none` |
//! | `obfs_password` | Salamander key (needed with `salamander`) | none |
//! | `up_mbps` | this side's send rate, Mbit/s, 0..=100000; 0 = unknown | 0 |
//! | `down_mbps` | this side's receive rate, Mbit/s, 0..=100000; 0 = unknown | 0 |
//! | `udp` | server: relay UDP, `true`/`false` | `true` |
//! | `idle_timeout_s` | QUIC idle timeout, 1..=3600 | 30 |
//! | `udp_buffer` | UDP socket receive buffer asked for, bytes, 0..=268435456; 0 = the kernel's default | 4194304 |
//!
//! Congestion: Brutal at the agreed rate when the rates give one (the
//! server sends at the client's `Hysteria-CC-RX`, capped by its `up_mbps`;
//! the client at its `up_mbps`, capped by the server's `Hysteria-CC-RX`),
//! quinn's BBR otherwise.

mod client;
pub mod obfs;
mod server;
pub mod udp;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::{parse_in_range, SettingError};

pub use crate::brutal as congestion;
pub use crate::quic::QuicStream;
pub use client::{run_client, Authenticate, Client, ClientOptions, Live, UdpSession};
pub use obfs::Salamander;

/// A UDP socket that applies Salamander below quinn.
pub type SalamanderSocket = crate::packet_obfs::ObfsSocket<Salamander>;
pub use server::{run_server, ServerOptions};
pub use udp::FragmentError;
pub use wire::WireError;

/// HTTP status of a successful authentication.
pub const STATUS_AUTH_OK: u16 = 233;
/// Path of the authentication request.
pub const AUTH_PATH: &str = "/auth";
/// QUIC application close code: normal close (HTTP/3's H3_NO_ERROR, as a
/// web server would close).
pub const CLOSE_NORMAL: u32 = 0x100;
/// Stream error code: the stream did not start with a valid `TCPRequest`
/// (HTTP/3's H3_REQUEST_REJECTED, what a web server says to a bad stream).
pub const STREAM_BAD_REQUEST: u32 = 0x10b;
/// Stream error code: relaying failed (HTTP/3's H3_INTERNAL_ERROR).
pub const STREAM_RELAY_FAILED: u32 = 0x102;

/// Hysteria 2 options, set with `--set hysteria2.KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Salamander obfuscation on.
    pub salamander: bool,
    /// Its key.
    pub obfs_password: Option<String>,
    /// This side's send rate in Mbit/s (0: unknown).
    pub up_mbps: u64,
    /// This side's receive rate in Mbit/s (0: unknown).
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
            salamander: false,
            obfs_password: None,
            up_mbps: 0,
            down_mbps: 0,
            udp: true,
            idle_timeout: Duration::from_secs(30),
            udp_buffer: crate::quic::DEFAULT_UDP_BUFFER,
        }
    }
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `hysteria2.` prefix.
    pub const KEYS: &'static [&'static str] = &[
        "obfs",
        "obfs_password",
        "up_mbps",
        "down_mbps",
        "udp",
        "idle_timeout_s",
        "udp_buffer",
    ];

    /// Sets one option from its key (without the `hysteria2.` prefix).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("hysteria2.{key}");
        let bad = |expected: &str| SettingError::BadValue {
            key: full_key.clone(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        match key {
            "obfs" => {
                self.salamander = match value {
                    "none" | "" => false,
                    "salamander" => true,
                    _ => return Err(bad("`none` or `salamander`")),
                }
            }
            "obfs_password" => {
                if value.is_empty() {
                    return Err(bad("a non-empty key"));
                }
                self.obfs_password = Some(value.to_owned());
            }
            "up_mbps" => self.up_mbps = mbps(&full_key, value)?,
            "down_mbps" => self.down_mbps = mbps(&full_key, value)?,
            "udp" => {
                self.udp = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("`true` or `false`")),
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
                        .map(|k| format!("hysteria2.{k}"))
                        .collect(),
                })
            }
        }
        Ok(())
    }

    /// The Salamander transform, if on; an error if it lacks its key.
    pub fn obfs(&self) -> Result<Option<Salamander>, Hysteria2Error> {
        match (self.salamander, &self.obfs_password) {
            (false, _) => Ok(None),
            (true, Some(p)) => Ok(Some(Salamander::new(p.as_bytes()))),
            (true, None) => Err(Hysteria2Error::Config(
                "hysteria2.obfs=salamander needs hysteria2.obfs_password=KEY".into(),
            )),
        }
    }

    fn transport(&self) -> Result<quinn::TransportConfig, Hysteria2Error> {
        let cc = Arc::new(congestion::AdaptiveFactory::default());
        crate::quic::transport(self.idle_timeout, cc).map_err(Hysteria2Error::Config)
    }
}

fn mbps(key: &str, value: &str) -> Result<u64, SettingError> {
    if value == "0" {
        return Ok(0);
    }
    parse_in_range(key, value, 1, 100_000, 100).map(|n| n as u64)
}

/// Mbit/s to bytes per second.
fn mbps_to_bytes(mbps: u64) -> u64 {
    mbps * 1_000_000 / 8
}

/// A quinn endpoint on `socket`, obfuscated with Salamander if `obfs` is on.
fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    udp_buffer: usize,
    obfs: Option<Salamander>,
) -> Result<quinn::Endpoint, Hysteria2Error> {
    crate::packet_obfs::endpoint(socket, server, udp_buffer, obfs)
        .map_err(|e| crate::quic::Error::Endpoint(e).into())
}

/// Errors of the hysteria2 endpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Hysteria2Error {
    /// The options do not make a working configuration.
    #[error("hysteria2 configuration: {0}")]
    Config(String),
    /// One of the errors every QUIC protocol shares.
    #[error(transparent)]
    Quic(#[from] crate::quic::Error),
    /// HTTP/3 failed during authentication.
    #[error("HTTP/3 authentication with {server}: {reason}")]
    Http3 {
        /// The server.
        server: SocketAddr,
        /// What h3 said.
        reason: String,
    },
    /// The server answered `/auth` with another status than 233.
    #[error("server {server} refused the authentication (HTTP status {status})")]
    AuthRejected {
        /// The server.
        server: SocketAddr,
        /// The status it sent.
        status: u16,
    },
    /// A malformed message.
    #[error(transparent)]
    Wire(#[from] WireError),
}

crate::quic::protocol_error!(Hysteria2Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let mut s = Settings::default();
        assert!(s.obfs().unwrap().is_none());
        s.set("obfs", "salamander").unwrap();
        assert!(s.obfs().is_err());
        s.set("obfs_password", "k").unwrap();
        assert!(s.obfs().unwrap().is_some());
        s.set("up_mbps", "100").unwrap();
        s.set("down_mbps", "0").unwrap();
        s.set("udp", "false").unwrap();
        s.set("idle_timeout_s", "5").unwrap();
        assert_eq!((s.up_mbps, s.down_mbps, s.udp), (100, 0, false));
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        for (k, v) in [
            ("obfs", "xor"),
            ("obfs_password", ""),
            ("up_mbps", "-1"),
            ("down_mbps", "100001"),
            ("udp", "yes"),
            ("idle_timeout_s", "0"),
            ("nope", "1"),
        ] {
            let e = s.set(k, v).unwrap_err().to_string();
            assert!(e.contains("hysteria2."), "{e}");
        }
        assert_eq!(mbps_to_bytes(8), 1_000_000);
    }
}
