//! Protocol `ech`: Trojan over TLS 1.3 with Encrypted Client Hello, on
//! BoringSSL (the `boring` crate) at both ends.
//!
//! The Trojan request and relay are `tls`'s own ([`crate::tls`]); only the
//! handshake differs: the client is an [`Outbound`](crate::outbound::Outbound)
//! ([`client::Client`]) that sends `tls`'s request after BoringSSL's
//! handshake, and the server hands the stream to `tls`'s
//! [`serve_trojan`](crate::tls::server::serve_trojan). The client sends an outer ClientHello whose SNI is
//! the ECH config's public name and whose `encrypted_client_hello`
//! extension carries, sealed with HPKE to the server's ECH key, the inner
//! ClientHello naming the real server. A server holding the key decrypts
//! it and completes TLS 1.3 for the inner name ([`server`]); one that
//! cannot (a wrong or stale config) completes the outer handshake as the
//! public name, with a certificate for that name, and sends its current
//! configs as retry configs. BoringSSL then fails the client's handshake
//! (ECH_REJECTED); our client aborts that connection and logs the retry
//! configs' size: it does not retry with them ([`client`]).
//!
//! Keys are made per run in the files `sing-box generate ech-keypair`
//! writes ([`keys`]), so our endpoints and sing-box take each other's.
//!
//! Why BoringSSL on both sides: rustls has no server-side ECH, and its
//! client-side ECH needs the aws-lc-rs provider. boring on both ends keeps
//! one C crypto library (and one set of AEAD and HPKE symbols for the
//! crypto probe) in the endpoint instead of BoringSSL plus AWS-LC.
//!
//! Settings (`--set ech.KEY=VALUE`):
//!
//! - `ech.grease` (client): `true` sends a GREASE ECH extension (random,
//!   undecryptable) instead of a real config, as a client without keys
//!   does; then `--ech-config` is not needed. Default `false`.
//! - `ech.fallback` (server): `HOST:PORT` to hand refused Trojan requests
//!   to, as `tls.fallback`; default none.
//! - `ech.io_buffer` (both): bytes of the user-space buffer each way
//!   between BoringSSL and the TCP socket ([`EchStream`]); default 65536,
//!   `0` for none, else at least 64 ([`MIN_IO_BUFFER`]). BoringSSL reads
//!   a record's 5-byte header and then its body, and writes each sealed
//!   record on its own: unbuffered, that is
//!   two `read`s and one `write` per 16-KiB record
//!   (docs/case-studies/ech.md). Buffered, what is written goes out when
//!   the stream is flushed (the relay flushes whenever its source has
//!   nothing more to read) or the buffer fills.

pub mod client;
pub mod keys;
pub mod server;
pub mod stream;
pub mod wire;

pub use client::{Client, ClientOptions, EchMode, HandshakeFailure};
pub use server::ServerOptions;
pub use stream::{EchSocket, EchStream, MIN_IO_BUFFER};

use crate::addr::TargetAddr;
use crate::settings::{parse_in_range, SettingError};

/// Default of `ech.io_buffer`: four full TLS records.
pub const DEFAULT_IO_BUFFER: usize = 64 * 1024;
/// Largest `ech.io_buffer` accepted.
pub const MAX_IO_BUFFER: usize = 16 * 1024 * 1024;

/// The `ech.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Client: send GREASE ECH instead of a real config.
    pub grease: bool,
    /// Server: where refused requests go; `None` closes them.
    pub fallback: Option<TargetAddr>,
    /// Both: bytes buffered each way between BoringSSL and the socket.
    pub io_buffer: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            grease: false,
            fallback: None,
            io_buffer: DEFAULT_IO_BUFFER,
        }
    }
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `ech.` prefix.
    pub const KEYS: &'static [&'static str] = &["grease", "fallback", "io_buffer"];

    /// Sets one option from its key (without the `ech.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let bad = |expected: &str| SettingError::BadValue {
            key: format!("ech.{key}"),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        match key {
            "grease" => {
                self.grease = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("true or false")),
                };
                Ok(())
            }
            "fallback" => {
                // Same syntax as tls.fallback; parse it through that setting.
                let mut tls = crate::tls::Settings::default();
                tls.set("fallback", value).map_err(|_| {
                    bad("HOST:PORT, e.g. ech.fallback=127.0.0.1:8080 (empty for none)")
                })?;
                self.fallback = tls.fallback;
                Ok(())
            }
            "io_buffer" => {
                let n =
                    parse_in_range("ech.io_buffer", value, 0, MAX_IO_BUFFER, DEFAULT_IO_BUFFER)?;
                if (1..MIN_IO_BUFFER).contains(&n) {
                    return Err(bad(&format!(
                        "0 (no buffer) or from {MIN_IO_BUFFER} to {MAX_IO_BUFFER}, \
                         e.g. ech.io_buffer={DEFAULT_IO_BUFFER}"
                    )));
                }
                self.io_buffer = n;
                Ok(())
            }
            _ => Err(SettingError::UnknownKey {
                key: format!("ech.{key}"),
                known: Self::KEYS.iter().map(|k| format!("ech.{k}")).collect(),
            }),
        }
    }
}

/// Errors of building the client or server options.
#[derive(Debug, thiserror::Error)]
pub enum EchError {
    #[error(transparent)]
    Keys(#[from] keys::EchKeyError),
    #[error("{path}: {message}")]
    Load { path: String, message: String },
    #[error("BoringSSL configuration: {0}")]
    Tls(#[from] boring::error::ErrorStack),
    #[error("{0}")]
    Usage(String),
}

impl EchError {
    fn load(path: &std::path::Path, e: impl std::fmt::Display) -> EchError {
        EchError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let mut s = Settings::default();
        s.set("grease", "true").unwrap();
        assert!(s.grease);
        s.set("fallback", "127.0.0.1:8080").unwrap();
        assert_eq!(
            s.fallback,
            Some(TargetAddr::Ip("127.0.0.1:8080".parse().unwrap()))
        );
        s.set("fallback", "").unwrap();
        assert_eq!(s.fallback, None);
        assert_eq!(
            s.set("grease", "yes").unwrap_err().to_string(),
            SettingError::BadValue {
                key: "ech.grease".into(),
                value: "yes".into(),
                expected: "true or false".into()
            }
            .to_string()
        );
        assert!(s
            .set("fallback", "nope")
            .unwrap_err()
            .to_string()
            .contains("`ech.fallback`"));
        assert_eq!(
            s.set("nope", "1").unwrap_err().to_string(),
            "unknown setting `ech.nope`; use one of: ech.grease, ech.fallback, ech.io_buffer"
        );
        assert_eq!(Settings::default().io_buffer, DEFAULT_IO_BUFFER);
        s.set("io_buffer", "0").unwrap();
        assert_eq!(s.io_buffer, 0);
        s.set("io_buffer", "32768").unwrap();
        assert_eq!(s.io_buffer, 32768);
        assert_eq!(
            s.set("io_buffer", "63").unwrap_err().to_string(),
            SettingError::BadValue {
                key: "ech.io_buffer".into(),
                value: "63".into(),
                expected: "0 (no buffer) or from 64 to 16777216, e.g. ech.io_buffer=65536".into()
            }
            .to_string()
        );
        s.set("io_buffer", "64").unwrap();
        assert_eq!(s.io_buffer, 64);
        assert!(s
            .set("io_buffer", "-1")
            .unwrap_err()
            .to_string()
            .contains("ech.io_buffer=65536"));
    }
}
