//! Protocol `ssh`: SSH `direct-tcpip` channels (RFC 4254, section 7.2), the
//! protocol of `ssh -D` and `ssh -W`, on russh.
//!
//! The client endpoint keeps ONE SSH connection to the server endpoint and
//! carries every SOCKS5 connection on it as its own `direct-tcpip` channel,
//! so that a profile measures SSH's multiplexing and flow control, not a
//! handshake per connection. When that connection dies, the next SOCKS5
//! connection opens a new one.
//!
//! The server endpoint authenticates with a password (`--user` and
//! `--password`) or a public key listed in `--authorized-keys`, and answers
//! each `direct-tcpip` channel request by connecting to the requested host
//! and port: on success it confirms the channel and relays, otherwise it
//! refuses the channel with "connect failed". Session channels (shells,
//! commands) are refused.
//!
//! Keys are OpenSSH files; Ed25519 and ECDSA keys work, RSA keys do not
//! (russh is built without its `rsa` feature). [`generate_key`] writes a new
//! Ed25519 key pair.
//!
//! Settings (`--set ssh.KEY=VALUE`, client side):
//!
//! - `ssh.known_host_key`: path of the server's public host key (the
//!   one-line OpenSSH `.pub` format); the client refuses any other key.
//! - `ssh.accept_any_host_key`: `true` to skip the host key check instead;
//!   one of the two is required.

//!
//! Split along its seams: [`keys`] (OpenSSH key files), [`client`] (an
//! [`Outbound`](crate::outbound::Outbound)), [`server`], and the transport
//! under both (a read-ahead TCP stream).

pub mod client;
pub mod keys;
pub mod server;
mod transport;

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::SettingError;

pub use client::{run_client, Client, ClientAuth, ClientOptions, HostKeyPolicy, OpenError};
pub use keys::{generate_key, load_authorized_keys, load_private_key, load_public_key};
pub use server::{run_server, ServerOptions};

/// Keepalive interval on both sides: an idle connection whose peer is gone
/// is noticed after `KEEPALIVE_MAX` unanswered keepalives.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);
pub(crate) const KEEPALIVE_MAX: usize = 3;
/// Limit on making the client's SSH connection (TCP, key exchange,
/// authentication), so that a server that accepts and then says nothing
/// does not hold every waiting SOCKS5 connection forever.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The server closes a connection that sends nothing for this long.
pub(crate) const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Delay before a failed authentication is answered (russh's default),
/// which slows down password guessing.
pub(crate) const AUTH_REJECTION_TIME: Duration = Duration::from_secs(1);

/// Bytes each direction carries before this side asks for a key
/// re-exchange: OpenSSH's volume for ciphers with 16-byte blocks (2^32
/// blocks), instead of russh's 1 GiB. A re-exchange that this side starts
/// while the peer streams on several channels fails in russh 0.65: until
/// the peer's KEXINIT arrives it accepts at most twice one channel's window
/// of channel data, while every busy channel may have a whole window in
/// flight, and it drops the connection ("Pending buffer limit reached").
/// `profile ssh` (4 channels both ways) hit that at each 1-GiB mark. At
/// 64 GiB a chacha20-poly1305 key still sees under 2^31 packets (each is
/// at least 36 bytes on the wire), so its nonce (the sequence number) does
/// not repeat.
pub(crate) const REKEY_BYTES: usize = 64 << 30;
/// Time between re-exchanges: russh's default, RFC 4253's one hour.
pub(crate) const REKEY_TIME: Duration = Duration::from_secs(3600);

/// Every cipher `ssh.cipher` may name, in the order offered after it.
/// AES-GCM first: ring seals it with AES-NI/VAES and CLMUL, where its
/// chacha20-poly1305@openssh.com path runs a portable Poly1305
/// (docs/case-studies/ssh.md).
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// The cipher offered first unless `ssh.cipher` says otherwise.
pub(crate) const DEFAULT_CIPHER: russh::cipher::Name = CIPHERS[0];

/// The algorithms both sides offer: `cipher` first, then the others of
/// [`CIPHERS`]; everything else russh's defaults.
pub(crate) fn preferred(cipher: russh::cipher::Name) -> russh::Preferred {
    let mut order = vec![cipher];
    order.extend(CIPHERS.iter().copied().filter(|c| *c != cipher));
    russh::Preferred {
        cipher: order.into(),
        ..russh::Preferred::default()
    }
}

/// When this side asks for a key re-exchange ([`REKEY_BYTES`]).
pub(crate) fn limits() -> russh::Limits {
    // Built field by field: `Limits::new` refuses volumes over 1 GiB.
    russh::Limits {
        rekey_write_limit: REKEY_BYTES,
        rekey_read_limit: REKEY_BYTES,
        rekey_time_limit: REKEY_TIME,
    }
}

/// The `ssh.*` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Client: the server's public host key file.
    pub known_host_key: Option<PathBuf>,
    /// Client: accept whatever host key the server shows.
    pub accept_any_host_key: bool,
    /// Both sides: the cipher offered first; `None` is the first of
    /// [`CIPHERS`].
    pub cipher: Option<russh::cipher::Name>,
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `ssh.` prefix.
    pub const KEYS: &'static [&'static str] = &["known_host_key", "accept_any_host_key", "cipher"];

    /// The cipher offered first: `ssh.cipher`, or AES-256-GCM.
    pub fn cipher(&self) -> russh::cipher::Name {
        self.cipher.unwrap_or(DEFAULT_CIPHER)
    }

    /// Sets one option from its key (without the `ssh.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("ssh.{key}");
        let bad = |expected: &str| SettingError::BadValue {
            key: full_key.clone(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        match key {
            "known_host_key" => {
                if value.is_empty() {
                    return Err(bad("a path, e.g. ssh.known_host_key=host_key.pub"));
                }
                self.known_host_key = Some(PathBuf::from(value));
                Ok(())
            }
            "accept_any_host_key" => {
                self.accept_any_host_key = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("true or false")),
                };
                Ok(())
            }
            "cipher" => {
                let Some(cipher) = CIPHERS.iter().find(|c| c.as_ref() == value) else {
                    let names: Vec<&str> = CIPHERS.iter().map(|c| c.as_ref()).collect();
                    return Err(bad(&format!("one of {}", names.join(", "))));
                };
                self.cipher = Some(*cipher);
                Ok(())
            }
            _ => Err(SettingError::UnknownKey {
                key: full_key,
                known: Self::KEYS.iter().map(|k| format!("ssh.{k}")).collect(),
            }),
        }
    }
}
/// Errors of building the client or server options.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A key file could not be read, parsed or written.
    #[error("{path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The options do not make a usable endpoint.
    #[error("{0}")]
    Config(String),
}
#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pp-ssh-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generated_keys_load_back() {
        let dir = temp_dir("keys");
        let path = dir.join("id");
        let public = generate_key(&path).unwrap();
        let private = load_private_key(&path).unwrap();
        assert_eq!(private.public_key().key_data(), public.key_data());
        let pub_path = dir.join("id.pub");
        assert_eq!(
            load_public_key(&pub_path).unwrap().key_data(),
            public.key_data()
        );
        let authorized = load_authorized_keys(&pub_path).unwrap();
        assert_eq!(authorized.len(), 1);
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        // Two keys differ.
        let other = generate_key(&dir.join("id2")).unwrap();
        assert_ne!(other.key_data(), public.key_data());
        assert!(load_private_key(&pub_path).is_err());
        assert!(load_authorized_keys(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn options_need_their_pieces() {
        let dir = temp_dir("opts");
        let key = dir.join("k");
        generate_key(&key).unwrap();
        let server: SocketAddr = "127.0.0.1:22".parse().unwrap();
        let mut s = Settings::default();
        assert!(ClientOptions::new(server, "u", Some("p"), None, &s).is_err());
        s.set("accept_any_host_key", "true").unwrap();
        assert!(ClientOptions::new(server, "u", Some("p"), None, &s).is_ok());
        assert!(ClientOptions::new(server, "u", None, None, &s).is_err());
        assert!(ClientOptions::new(server, "u", Some("p"), Some(&key), &s).is_err());
        assert!(ClientOptions::new(server, "u", None, Some(&key), &s).is_ok());
        s.set(
            "known_host_key",
            key.with_extension("pub").to_str().unwrap(),
        )
        .unwrap();
        // Both policies at once is ambiguous.
        assert!(ClientOptions::new(server, "u", Some("p"), None, &s).is_err());
        s.set("accept_any_host_key", "false").unwrap();
        assert!(ClientOptions::new(server, "u", Some("p"), None, &s).is_ok());

        assert!(ServerOptions::new(&key, Some("u"), None, None).is_err());
        assert!(ServerOptions::new(&key, None, Some("p"), None).is_err());
        let o = ServerOptions::new(&key, Some("u"), Some("secret"), None).unwrap();
        assert!(!format!("{o:?}").contains("secret"));
        let pubs = dir.join("k.pub");
        let o = ServerOptions::new(&key, None, None, Some(&pubs)).unwrap();
        assert_eq!(o.authorized_keys.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings() {
        let mut s = Settings::default();
        for bad in [("accept_any_host_key", "yes"), ("known_host_key", "")] {
            let err = s.set(bad.0, bad.1).unwrap_err().to_string();
            assert!(err.contains(&format!("`ssh.{}`", bad.0)), "{err}");
        }
        assert_eq!(
            s.set("nope", "1").unwrap_err().to_string(),
            "unknown setting `ssh.nope`; use one of: ssh.known_host_key, ssh.accept_any_host_key, \
             ssh.cipher"
        );
        let err = s.set("cipher", "aes128-cbc").unwrap_err().to_string();
        assert!(
            err.contains("`ssh.cipher`") && err.contains("aes256-gcm@openssh.com"),
            "{err}"
        );
        assert_eq!(s.cipher(), russh::cipher::AES_256_GCM);
        s.set("cipher", "chacha20-poly1305@openssh.com").unwrap();
        assert_eq!(s.cipher(), russh::cipher::CHACHA20_POLY1305);
        let order = preferred(s.cipher()).cipher;
        assert_eq!(order.len(), CIPHERS.len());
        assert_eq!(
            order[..2],
            [russh::cipher::CHACHA20_POLY1305, russh::cipher::AES_256_GCM]
        );
    }
}
