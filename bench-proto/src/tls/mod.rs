//! Protocol `tls`: Trojan over TLS 1.3.
//!
//! Wire, client endpoint to server endpoint, per connection, inside its own
//! TLS 1.3 session (one TLS connection per proxied connection):
//!
//! 1. client → server: `hex(SHA-224(password))` (56 lowercase hex digits), CRLF,
//! 2. client → server: CMD (1 byte, [`CMD_CONNECT`]), the target address
//!    ([`TargetAddr::encode`]), CRLF,
//! 3. then both directions carry the proxied bytes unchanged until each side
//!    has closed.
//!
//! Trojan has no server reply: the client endpoint answers the SOCKS5 CONNECT
//! with success once the TLS session is up and the request is sent, and a
//! server that cannot reach the target just closes the stream.
//! UDP ASSOCIATE (CMD 3) is not implemented; the server treats it like any
//! other malformed request.
//!
//! A connection with a wrong password hash or a malformed request is handed,
//! together with the bytes already read from it, to the fallback
//! (`tls.fallback`, typically a web server), so that to a prober the server
//! looks like that server; without a fallback it is closed.
//!
//! Settings (`--set tls.KEY=VALUE`, both sides):
//!
//! - `tls.alpn`: comma-separated ALPN protocols to offer (client) or accept
//!   (server), e.g. `h2,http/1.1`; default none.
//! - `tls.fallback` (server): `HOST:PORT` to hand refused connections to;
//!   default none, refused connections are closed.
//! - `tls.records`: who carries the data after the handshake. `own`
//!   (default): rustls runs the handshake and hands the keys to our record
//!   layer ([`session`], [`crate::tls13::record`]), which opens records in
//!   place and seals into one reused buffer; `rustls`: rustls's buffered
//!   API (tokio-rustls) throughout, one copy and one allocation more per
//!   record each way (docs/case-studies/tls.md).
//!
//! The Trojan request is [`wire`]; the client is an
//! [`Outbound`](crate::outbound::Outbound) ([`Client`]); the server's part
//! after the TLS handshake ([`server::serve_trojan`]) takes any stream, so a
//! protocol with another TLS stack (ech) reuses both.

mod client;
pub mod server;
pub mod session;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpListener;

use crate::addr::TargetAddr;
use crate::outbound;
use crate::pki::{self, PkiError};
use crate::relay::RelayOptions;
use crate::settings::SettingError;

pub(crate) use client::open_trojan;
pub use client::{Client, OpenError};
pub use server::run_server;
pub use wire::{PasswordHash, Refusal, CMD_CONNECT, CMD_UDP_ASSOCIATE, HASH_LEN, MAX_HEADER_LEN};

/// Limit on the TLS handshake, so that a silent peer does not hold a task.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `tls.*` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// ALPN protocols to offer (client) or accept (server); empty for none.
    pub alpn: Vec<Vec<u8>>,
    /// Where the server hands refused connections; `None` closes them.
    pub fallback: Option<TargetAddr>,
    /// Who carries the data after the handshake.
    pub records: RecordLayer,
}

/// Who carries a session's data after the handshake (`tls.records`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordLayer {
    /// Our record layer, with rustls's keys ([`session`]).
    #[default]
    Own,
    /// rustls's buffered API (tokio-rustls).
    Rustls,
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `tls.` prefix.
    pub const KEYS: &'static [&'static str] = &["alpn", "fallback", "records"];

    /// Sets one option from its key (without the `tls.` prefix) and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let full_key = format!("tls.{key}");
        let bad = |expected: &str| SettingError::BadValue {
            key: full_key.clone(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        match key {
            "alpn" => {
                let mut alpn = Vec::new();
                if !value.is_empty() {
                    for p in value.split(',').map(str::trim) {
                        if p.is_empty() || p.len() > 255 {
                            return Err(bad("comma-separated protocol names of 1 to 255 bytes, \
                                 e.g. tls.alpn=h2,http/1.1 (empty for none)"));
                        }
                        alpn.push(p.as_bytes().to_vec());
                    }
                }
                self.alpn = alpn;
                Ok(())
            }
            "fallback" => {
                self.fallback = if value.is_empty() {
                    None
                } else {
                    Some(parse_host_port(value).ok_or_else(|| {
                        bad("HOST:PORT, e.g. tls.fallback=127.0.0.1:8080 (empty for none)")
                    })?)
                };
                Ok(())
            }
            "records" => {
                self.records = match value {
                    "own" => RecordLayer::Own,
                    "rustls" => RecordLayer::Rustls,
                    _ => return Err(bad("own or rustls, e.g. tls.records=rustls")),
                };
                Ok(())
            }
            _ => Err(SettingError::UnknownKey {
                key: full_key,
                known: Self::KEYS.iter().map(|k| format!("tls.{k}")).collect(),
            }),
        }
    }

    fn alpn_refs(&self) -> Vec<&[u8]> {
        self.alpn.iter().map(Vec::as_slice).collect()
    }
}

/// `HOST:PORT` with an IP address (IPv6 in brackets) or a domain name, and a
/// port other than 0.
fn parse_host_port(s: &str) -> Option<TargetAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return (sa.port() != 0).then_some(TargetAddr::Ip(sa));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let valid_host = !host.is_empty() && host.len() <= 255 && !host.contains([':', '[', ']']);
    valid_host.then(|| TargetAddr::Domain(host.to_owned(), port))
}

/// Errors of building the client or server options.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key could not be loaded or used.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The server name is neither a DNS name nor an IP address.
    #[error("server name `{0}` is not a valid DNS name or IP address")]
    ServerName(String),
}

/// Options of the client side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server endpoint to connect to.
    pub server: SocketAddr,
    /// The name sent (SNI) and verified.
    pub server_name: ServerName<'static>,
    /// TLS configuration: the trusted certificates, ALPN.
    pub tls: Arc<rustls::ClientConfig>,
    /// The password, hashed.
    pub password: PasswordHash,
    /// Who carries the data after the handshake.
    pub records: RecordLayer,
    /// How to relay once the stream is up.
    pub relay: RelayOptions,
}

impl ClientOptions {
    /// Options that trust exactly the certificates in `ca` and verify
    /// `server_name`; relay options default.
    pub fn new(
        server: SocketAddr,
        ca: &Path,
        server_name: &str,
        password: &str,
        settings: &Settings,
    ) -> Result<ClientOptions, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
        let mut tls = pki::client_config(ca, &settings.alpn_refs())?;
        // Our record layer takes the traffic keys from rustls.
        tls.enable_secret_extraction = settings.records == RecordLayer::Own;
        Ok(ClientOptions {
            server,
            server_name,
            tls: Arc::new(tls),
            password: PasswordHash::new(password),
            records: settings.records,
            relay: RelayOptions::default(),
        })
    }
}

/// Options of the server side.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TLS configuration: certificate, key, ALPN.
    pub tls: Arc<rustls::ServerConfig>,
    /// The password, hashed.
    pub password: PasswordHash,
    /// Where refused connections go; `None` closes them.
    pub fallback: Option<TargetAddr>,
    /// Who carries the data after the handshake.
    pub records: RecordLayer,
    /// How to relay once the stream is up.
    pub relay: RelayOptions,
}

impl ServerOptions {
    /// Options serving the certificate chain `cert` with `key`; relay
    /// options default.
    pub fn new(
        cert: &Path,
        key: &Path,
        password: &str,
        settings: &Settings,
    ) -> Result<ServerOptions, TlsError> {
        let mut tls = pki::server_config(cert, key, &settings.alpn_refs())?;
        tls.enable_secret_extraction = settings.records == RecordLayer::Own;
        Ok(ServerOptions {
            tls: Arc::new(tls),
            password: PasswordHash::new(password),
            fallback: settings.fallback.clone(),
            records: settings.records,
            relay: RelayOptions::default(),
        })
    }
}

/// Serves the client side on `listener` forever: SOCKS5 in, Trojan over TLS
/// out to `opts.server`. Returns only if the listener fails for good.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> std::io::Result<()> {
    outbound::run_client(listener, Client::new(opts)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn settings() {
        let mut s = Settings::default();
        s.set("alpn", "h2, http/1.1").unwrap();
        assert_eq!(s.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        s.set("alpn", "").unwrap();
        assert!(s.alpn.is_empty());
        s.set("fallback", "127.0.0.1:8080").unwrap();
        assert_eq!(
            s.fallback,
            Some(TargetAddr::Ip("127.0.0.1:8080".parse().unwrap()))
        );
        s.set("fallback", "localhost:80").unwrap();
        assert_eq!(s.fallback, Some(TargetAddr::Domain("localhost".into(), 80)));
        s.set("fallback", "[::1]:80").unwrap();
        s.set("fallback", "").unwrap();
        assert_eq!(s.fallback, None);
        for (key, bad) in [
            ("fallback", "nope"),
            ("fallback", "host:0"),
            ("fallback", "::1:80"),
            ("fallback", ":80"),
            ("alpn", "h2,,x"),
            ("records", "ktls"),
        ] {
            let err = s.set(key, bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`tls.{key}`")), "{err}");
        }
        assert_eq!(
            s.set("nope", "1").unwrap_err().to_string(),
            "unknown setting `tls.nope`; use one of: tls.alpn, tls.fallback, tls.records"
        );
        s.set("records", "rustls").unwrap();
        assert_eq!(s.records, RecordLayer::Rustls);
        assert!(s.set("records", "kernel").is_err());
    }
}
