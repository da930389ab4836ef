//! Protocol `reality`: VLESS over REALITY, a TLS 1.3 handshake of our own.
//!
//! The client sends a browser-like ClientHello ([`hello`]) whose session id
//! carries an authenticator sealed under a key only the server can derive
//! ([`auth`]): X25519 of the client's key share with the server's static
//! key. The server opens it; a client that authenticates (key, time
//! window, short id, not a replay) gets a TLS 1.3 handshake from us with a
//! temporary ed25519 certificate whose signature is an HMAC the client
//! checks ([`cert`]); anything else is relayed byte for byte to the
//! destination (`reality.dest`), so a prober meets that server. Inside the
//! TLS runs VLESS ([`vless`]).
//!
//! Why our own TLS 1.3 ([`crate::tls13`] and [`handshake`]):
//! REALITY needs the ClientHello's bytes before they are sent (to seal the
//! session id over them) and a certificate check no X.509 verifier does;
//! rustls has hooks for neither. It is built on ring, whose AEAD, HKDF and
//! HMAC functions keep named symbols for the crypto probe, and on
//! x25519-dalek, because REALITY uses the client's X25519 key twice (for
//! the authenticator and the handshake) and ring's ephemeral keys can be
//! used once only. Limits, on purpose: X25519 only (no HelloRetryRequest),
//! no resumption or 0-RTT, no client certificates, the three TLS 1.3
//! cipher suites; post-handshake NewSessionTicket is dropped and KeyUpdate
//! honoured. The `xtls-rprx-vision` flow is not supported (refused by
//! name). The server does not mirror the destination's record sizes as
//! Xray does.
//!
//! Settings (`--set reality.KEY=VALUE`):
//!
//! - `reality.short_id` (client): the short id to send, up to 16 hex
//!   digits; default empty.
//! - `reality.hybrid_share` (client): `false` offers X25519 alone instead
//!   of Chrome's X25519MLKEM768 and X25519 key shares (see [`hello`]);
//!   default `true`.
//! - `reality.short_ids` (server): the short ids accepted, comma-separated;
//!   default: only the empty one.
//! - `reality.dest` (server): `HOST:PORT` to relay unauthenticated
//!   connections to; default none (they are closed).
//! - `reality.server_names` (server): the SNI names accepted,
//!   comma-separated; default: any.
//! - `reality.max_time_diff_s` (server): how far the client's clock may
//!   be from ours, seconds; default 120.

pub mod auth;
pub mod cert;
pub mod client;
pub mod handshake;
pub mod hello;
pub mod server;
pub mod vless;

use std::time::Duration;

use crate::addr::TargetAddr;
use crate::settings::SettingError;
use auth::ShortId;

/// How long a handshake (ClientHello to Finished, and the VLESS header)
/// may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `reality.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    pub short_id: ShortId,
    pub hybrid_share: bool,
    pub short_ids: Vec<ShortId>,
    pub dest: Option<TargetAddr>,
    pub server_names: Vec<String>,
    pub max_time_diff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            short_id: ShortId([0; auth::SHORT_ID_LEN]),
            hybrid_share: true,
            short_ids: vec![ShortId([0; auth::SHORT_ID_LEN])],
            dest: None,
            server_names: Vec::new(),
            max_time_diff: Duration::from_secs(120),
        }
    }
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `reality.` prefix.
    pub const KEYS: &'static [&'static str] = &[
        "short_id",
        "short_ids",
        "dest",
        "server_names",
        "max_time_diff_s",
    ];

    /// Sets one option from its key (without the `reality.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let bad = |expected: &str| SettingError::BadValue {
            key: format!("reality.{key}"),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        let hex_hint = "up to 16 hex digits (an even number), e.g. 0123abcd";
        match key {
            "short_id" => self.short_id = ShortId::parse(value).map_err(|_| bad(hex_hint))?,
            "hybrid_share" => {
                self.hybrid_share = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            "short_ids" => {
                self.short_ids = value
                    .split(',')
                    .map(|s| ShortId::parse(s.trim()))
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("comma-separated short ids, each up to 16 hex digits"))?
            }
            "dest" => {
                // Same syntax as tls.fallback; parse it through that setting.
                let mut tls = crate::tls::Settings::default();
                tls.set("fallback", value).map_err(|_| {
                    bad("HOST:PORT, e.g. reality.dest=127.0.0.1:8443 (empty for none)")
                })?;
                self.dest = tls.fallback;
            }
            "server_names" => {
                self.server_names = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "max_time_diff_s" => {
                self.max_time_diff =
                    Duration::from_secs(value.parse().map_err(|_| bad("whole seconds, e.g. 120"))?)
            }
            _ => {
                return Err(SettingError::UnknownKey {
                    key: format!("reality.{key}"),
                    known: Self::KEYS.iter().map(|k| format!("reality.{k}")).collect(),
                })
            }
        }
        Ok(())
    }
}

/// An X25519 key as Xray and shoes write it: 32 bytes, base64url without
/// padding (43 characters).
pub fn parse_x25519_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|e| format!("not base64url: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, an X25519 key has 32", b.len()))
}

/// The base64url (no padding) text of an X25519 key.
pub fn format_x25519_key(key: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// A fresh key pair: (private, public), each as [`format_x25519_key`] writes.
pub fn generate_key_pair() -> std::io::Result<(String, String)> {
    let secret = handshake::x25519_secret()?;
    let public = x25519_dalek::PublicKey::from(&secret);
    Ok((
        format_x25519_key(&secret.to_bytes()),
        format_x25519_key(public.as_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let mut s = Settings::default();
        s.set("short_ids", "00aa, 0123456789abcdef").expect("valid");
        assert_eq!(s.short_ids.len(), 2);
        s.set("dest", "127.0.0.1:8443").expect("valid");
        assert!(s.dest.is_some());
        s.set("max_time_diff_s", "30").expect("valid");
        assert_eq!(s.max_time_diff, Duration::from_secs(30));
        assert!(s.set("short_id", "xyz").is_err());
        assert!(s.set("flow", "xtls-rprx-vision").is_err());
    }

    #[test]
    fn keys_round_trip_as_text() {
        let (private, public) = generate_key_pair().expect("random");
        let p = parse_x25519_key(&private).expect("parses");
        assert_eq!(format_x25519_key(&p), private);
        assert_eq!(public.len(), 43);
        assert!(parse_x25519_key("short").is_err());
    }
}
