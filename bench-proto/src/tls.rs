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

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sha2::{Digest, Sha224};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::addr::{AddrError, TargetAddr};
use crate::pki::{self, PkiError};
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;
use crate::settings::SettingError;
use crate::socks5::{self, Reply, ReplyCode, Socks5Error};

/// Length of the password hash on the wire: SHA-224 in hex.
pub const HASH_LEN: usize = 56;
/// Command CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// Command UDP ASSOCIATE (not implemented).
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;
/// The longest request header: hash, CRLF, CMD, the longest address (a
/// 255-byte domain name), CRLF.
pub const MAX_HEADER_LEN: usize = HASH_LEN + 2 + 1 + (1 + 1 + 255 + 2) + 2;

const CRLF: &[u8; 2] = b"\r\n";
/// Bytes up to and including the CRLF after the hash.
const HASH_LINE_LEN: usize = HASH_LEN + 2;
/// Limit on the TLS handshake, so that a silent peer does not hold a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit on receiving the request after the handshake. Generous: a client
/// may send the header only with its first payload bytes.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer that sent part of a hash line may pause before it is
/// taken to be something else (e.g. a short HTTP request waiting for an
/// answer) and refused.
const PROBE_STALL: Duration = Duration::from_secs(1);

/// The password as the wire carries it: `hex(SHA-224(password))`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordHash([u8; HASH_LEN]);

impl PasswordHash {
    /// Hashes `password`.
    pub fn new(password: &str) -> PasswordHash {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha224::digest(password.as_bytes());
        let mut out = [0u8; HASH_LEN];
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        PasswordHash(out)
    }

    /// The 56 ASCII bytes sent on the wire.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Compares in time independent of where the bytes differ: the hash is
    /// the credential itself, so an early exit would let a prober learn it
    /// a digit at a time.
    fn matches(&self, candidate: &[u8]) -> bool {
        candidate.len() == HASH_LEN
            && self
                .0
                .iter()
                .zip(candidate)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // It is as good as the password: keep it out of logs.
        f.write_str("PasswordHash(..)")
    }
}

/// The `tls.*` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// ALPN protocols to offer (client) or accept (server); empty for none.
    pub alpn: Vec<Vec<u8>>,
    /// Where the server hands refused connections; `None` closes them.
    pub fallback: Option<TargetAddr>,
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `tls.` prefix.
    pub const KEYS: &'static [&'static str] = &["alpn", "fallback"];

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
        let tls = pki::client_config(ca, &settings.alpn_refs())?;
        Ok(ClientOptions {
            server,
            server_name,
            tls: Arc::new(tls),
            password: PasswordHash::new(password),
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
        let tls = pki::server_config(cert, key, &settings.alpn_refs())?;
        Ok(ServerOptions {
            tls: Arc::new(tls),
            password: PasswordHash::new(password),
            fallback: settings.fallback.clone(),
            relay: RelayOptions::default(),
        })
    }
}

/// Why the server refused a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("closed or paused after {0} bytes, before a whole hash line")]
    ShortHashLine(usize),
    #[error("wrong password hash")]
    WrongPassword,
    #[error("no CRLF after the password hash")]
    NoCrlfAfterHash,
    #[error("command {0:#04x} not supported, only CONNECT (0x01)")]
    UnsupportedCommand(u8),
    #[error("bad target address: {0}")]
    Address(AddrError),
    #[error("no CRLF after the target address")]
    NoCrlfAfterRequest,
    #[error("closed in the middle of the request")]
    Truncated,
    #[error("no complete request within {HEADER_TIMEOUT:?}")]
    Timeout,
}

/// Why one proxied connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error(transparent)]
    Socks5(#[from] Socks5Error),
    #[error("encoding target address: {0}")]
    Addr(#[from] AddrError),
    #[error("connecting to server {server}: {source}")]
    ConnectServer {
        server: SocketAddr,
        source: io::Error,
    },
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    #[error("TLS handshake: no answer within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("sending the request for {target}: {source}")]
    SendRequest {
        target: TargetAddr,
        source: io::Error,
    },
    #[error("reading the request: {0}")]
    ReadRequest(io::Error),
    #[error("refused ({0}); no fallback set, closed")]
    Refused(Refusal),
    #[error("refused ({refusal}); fallback {fallback}: {source}")]
    Fallback {
        refusal: Refusal,
        fallback: TargetAddr,
        source: io::Error,
    },
    #[error("connecting to {target}: {source}")]
    ConnectTarget {
        target: TargetAddr,
        source: io::Error,
    },
    #[error("relaying for {target}: {source}")]
    Relay {
        target: TargetAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serves the client side on `listener` forever: SOCKS5 in, Trojan over TLS
/// out to `opts.server`. Returns only if the listener fails for good.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    serve(listener, "tls client", move |stream| {
        client_conn(stream, Arc::clone(&opts))
    })
    .await
}

/// Serves the server side on `listener` forever: Trojan over TLS in, TCP out
/// to each connection's target. Returns only if the listener fails for good.
pub async fn run_server(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    serve(listener, "tls server", move |stream| {
        server_conn(stream, Arc::clone(&opts))
    })
    .await
}

/// Appends the request header for `target`.
fn encode_header(password: &PasswordHash, target: &TargetAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(password.as_bytes());
    out.extend_from_slice(CRLF);
    out.push(CMD_CONNECT);
    // Fails only for a domain name over 255 bytes, which SOCKS5 cannot carry;
    // the caller encodes the target once beforehand to find out.
    let _ = target.encode(out);
    out.extend_from_slice(CRLF);
}

async fn client_conn(inbound: TcpStream, opts: Arc<ClientOptions>) -> Result<(), ConnError> {
    let connector = TlsConnector::from(Arc::clone(&opts.tls));
    let name = opts.server_name.clone();
    trojan_client_conn(inbound, opts.server, &opts.password, &opts.relay, |tcp| {
        connector.connect(name, tcp)
    })
    .await
}

/// The client side of one proxied connection, for any TLS library:
/// SOCKS5 in, TCP to `server`, `handshake` on it, the Trojan request, then
/// the relay. `ech` runs it with BoringSSL's handshake.
pub(crate) async fn trojan_client_conn<H, Fut, S>(
    mut inbound: TcpStream,
    server: SocketAddr,
    password: &PasswordHash,
    relay_opts: &RelayOptions,
    handshake: H,
) -> Result<(), ConnError>
where
    H: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let target = socks5::accept(&mut inbound).await?;
    if let Err(e) = target.encode(&mut Vec::new()) {
        socks5::reply(&mut inbound, Reply::Failed(ReplyCode::GeneralFailure)).await?;
        return Err(e.into());
    }

    let tcp = match TcpStream::connect(server).await {
        Ok(s) => s,
        Err(source) => {
            let code = ReplyCode::from_connect_error(&source);
            socks5::reply(&mut inbound, Reply::Failed(code)).await?;
            return Err(ConnError::ConnectServer { server, source });
        }
    };
    tcp.set_nodelay(true)?;
    let bound = tcp.local_addr()?;

    let mut upstream = match timeout(HANDSHAKE_TIMEOUT, handshake(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            socks5::reply(&mut inbound, Reply::Failed(ReplyCode::GeneralFailure)).await?;
            return Err(ConnError::Handshake(e));
        }
        Err(_) => {
            socks5::reply(&mut inbound, Reply::Failed(ReplyCode::GeneralFailure)).await?;
            return Err(ConnError::HandshakeTimeout);
        }
    };

    let mut header = Vec::with_capacity(MAX_HEADER_LEN);
    encode_header(password, &target, &mut header);
    let sent = async {
        upstream.write_all(&header).await?;
        upstream.flush().await
    };
    if let Err(source) = sent.await {
        socks5::reply(&mut inbound, Reply::Failed(ReplyCode::GeneralFailure)).await?;
        return Err(ConnError::SendRequest { target, source });
    }

    socks5::reply(&mut inbound, Reply::Succeeded(bound)).await?;
    relay(inbound, upstream, relay_opts)
        .await
        .map_err(|source| ConnError::Relay { target, source })?;
    Ok(())
}

async fn server_conn(tcp: TcpStream, opts: Arc<ServerOptions>) -> Result<(), ConnError> {
    let acceptor = TlsAcceptor::from(Arc::clone(&opts.tls));
    trojan_server_conn(
        tcp,
        |tcp| acceptor.accept(tcp),
        &opts.password,
        opts.fallback.as_ref(),
        &opts.relay,
    )
    .await
}

/// The server side of one proxied connection, for any TLS library:
/// `handshake` on the accepted TCP stream, the Trojan request, then the
/// relay to its target (or to `fallback` when refused). `ech` runs it with
/// BoringSSL's handshake.
pub(crate) async fn trojan_server_conn<H, Fut, S>(
    tcp: TcpStream,
    handshake: H,
    password: &PasswordHash,
    fallback: Option<&TargetAddr>,
    relay_opts: &RelayOptions,
) -> Result<(), ConnError>
where
    H: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut inbound = timeout(HANDSHAKE_TIMEOUT, handshake(tcp))
        .await
        .map_err(|_| ConnError::HandshakeTimeout)?
        .map_err(ConnError::Handshake)?;

    // Everything read so far: a refused connection's fallback gets all of it,
    // an accepted one's target gets what follows the header.
    let mut buf = Vec::with_capacity(4096);
    let request = read_request(&mut inbound, &mut buf, password)
        .await
        .map_err(ConnError::ReadRequest)?;
    let (target, header_len) = match request {
        Ok(accepted) => accepted,
        Err(refusal) => {
            let Some(fallback) = fallback else {
                // Best effort close_notify: the peer may be gone already.
                let _ = inbound.shutdown().await;
                return Err(ConnError::Refused(refusal));
            };
            let fallback_err = |source| ConnError::Fallback {
                refusal,
                fallback: fallback.clone(),
                source,
            };
            let mut upstream = match connect(fallback).await {
                Ok(s) => s,
                Err(e) => return Err(fallback_err(e)),
            };
            if let Err(e) = upstream.write_all(&buf).await {
                return Err(fallback_err(e));
            }
            drop(buf);
            return match relay(inbound, upstream, relay_opts).await {
                Ok(_) => Ok(()),
                Err(e) => Err(fallback_err(e)),
            };
        }
    };

    let mut upstream = match connect(&target).await {
        Ok(s) => s,
        Err(source) => {
            // Trojan has no way to say why; the client sees the stream end.
            let _ = inbound.shutdown().await;
            return Err(ConnError::ConnectTarget { target, source });
        }
    };
    if header_len < buf.len() {
        let early = &buf[header_len..];
        if let Err(source) = upstream.write_all(early).await {
            return Err(ConnError::Relay { target, source });
        }
    }
    drop(buf);
    relay(inbound, upstream, relay_opts)
        .await
        .map_err(|source| ConnError::Relay { target, source })?;
    Ok(())
}

/// Reads until `buf` holds a whole, valid request or the request is refused.
/// Returns the target and the header length, or why it was refused; `Err`
/// only for an I/O error.
async fn read_request<R>(
    r: &mut R,
    buf: &mut Vec<u8>,
    password: &PasswordHash,
) -> io::Result<Result<(TargetAddr, usize), Refusal>>
where
    R: AsyncRead + Unpin,
{
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut hash_checked = false;
    loop {
        if buf.len() >= HASH_LINE_LEN {
            if !hash_checked {
                if !password.matches(&buf[..HASH_LEN]) {
                    return Ok(Err(Refusal::WrongPassword));
                }
                if &buf[HASH_LEN..HASH_LINE_LEN] != CRLF {
                    return Ok(Err(Refusal::NoCrlfAfterHash));
                }
                hash_checked = true;
            }
            match parse_command(&buf[HASH_LINE_LEN..]).await {
                Parsed::Done(target, len) => return Ok(Ok((target, HASH_LINE_LEN + len))),
                Parsed::Refused(refusal) => return Ok(Err(refusal)),
                Parsed::Incomplete => {}
            }
        }

        // A partial hash line that then pauses is not worth the full wait.
        let wait_until = if !buf.is_empty() && buf.len() < HASH_LINE_LEN {
            deadline.min(Instant::now() + PROBE_STALL)
        } else {
            deadline
        };
        // The header is at most MAX_HEADER_LEN bytes and every pass above
        // decides once that many have arrived, so the buffer stays small.
        buf.reserve(4096);
        let n = match timeout_at(wait_until, r.read_buf(buf)).await {
            Ok(read) => read?,
            Err(_) if buf.len() < HASH_LINE_LEN && !buf.is_empty() => {
                return Ok(Err(Refusal::ShortHashLine(buf.len())))
            }
            Err(_) => return Ok(Err(Refusal::Timeout)),
        };
        if n == 0 {
            return Ok(Err(if buf.len() < HASH_LINE_LEN {
                Refusal::ShortHashLine(buf.len())
            } else {
                Refusal::Truncated
            }));
        }
    }
}

/// Outcome of parsing the part of the header after the hash line.
enum Parsed {
    /// The target and the length of the command line, CRLF included.
    Done(TargetAddr, usize),
    /// More bytes are needed.
    Incomplete,
    Refused(Refusal),
}

async fn parse_command(b: &[u8]) -> Parsed {
    let Some((&cmd, rest)) = b.split_first() else {
        return Parsed::Incomplete;
    };
    if cmd != CMD_CONNECT {
        return Parsed::Refused(Refusal::UnsupportedCommand(cmd));
    }
    // Reading from a slice completes at once; it is async only because
    // the address reader is shared with the stream-reading protocols.
    let mut r = rest;
    let target = match TargetAddr::read_from(&mut r).await {
        Ok(t) => t,
        Err(AddrError::Truncated { .. }) => return Parsed::Incomplete,
        Err(e) => return Parsed::Refused(Refusal::Address(e)),
    };
    let addr_len = rest.len() - r.len();
    match r.get(..2) {
        None if r.is_empty() || r == b"\r" => Parsed::Incomplete,
        Some(crlf) if crlf == CRLF => Parsed::Done(target, 1 + addr_len + 2),
        _ => Parsed::Refused(Refusal::NoCrlfAfterRequest),
    }
}

/// Connects to `target` (trying each address a name resolves to).
async fn connect(target: &TargetAddr) -> io::Result<TcpStream> {
    let s = match target {
        TargetAddr::Ip(sa) => TcpStream::connect(sa).await?,
        TargetAddr::Domain(name, port) => TcpStream::connect((name.as_str(), *port)).await?,
    };
    s.set_nodelay(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_is_hex_sha224() {
        // SHA-224("password"), the example most Trojan documentation uses.
        let h = PasswordHash::new("password");
        assert_eq!(
            std::str::from_utf8(h.as_bytes()).unwrap(),
            "d63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01"
        );
        assert!(h.matches(h.as_bytes()));
        assert!(!h.matches(PasswordHash::new("passwore").as_bytes()));
        assert!(!h.matches(&h.as_bytes()[..55]));
        assert_eq!(format!("{h:?}"), "PasswordHash(..)");
    }

    fn header(target: &TargetAddr) -> Vec<u8> {
        let mut v = Vec::new();
        encode_header(&PasswordHash::new("pw"), target, &mut v);
        v
    }

    async fn read(input: &[u8]) -> Result<(TargetAddr, usize), Refusal> {
        let mut r = input;
        let mut buf = Vec::new();
        read_request(&mut r, &mut buf, &PasswordHash::new("pw"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn reads_every_atyp_and_keeps_the_payload() {
        for t in [
            TargetAddr::Ip("10.0.0.1:80".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::1]:443".parse().unwrap()),
            TargetAddr::Domain("x".repeat(255), 8080),
        ] {
            let mut input = header(&t);
            let len = input.len();
            input.extend_from_slice(b"payload");
            assert_eq!(read(&input).await.unwrap(), (t, len));
        }
        let long = header(&TargetAddr::Domain("x".repeat(255), 1));
        assert_eq!(long.len(), MAX_HEADER_LEN);
    }

    #[tokio::test]
    async fn refusals() {
        let good = header(&TargetAddr::Ip("127.0.0.1:80".parse().unwrap()));
        let mut wrong = good.clone();
        wrong[3] ^= 1;
        assert!(matches!(read(&wrong).await, Err(Refusal::WrongPassword)));
        let mut no_crlf = good.clone();
        no_crlf[HASH_LEN] = b'\n';
        assert!(matches!(
            read(&no_crlf).await,
            Err(Refusal::NoCrlfAfterHash)
        ));
        let mut udp = good.clone();
        udp[HASH_LINE_LEN] = CMD_UDP_ASSOCIATE;
        assert!(matches!(
            read(&udp).await,
            Err(Refusal::UnsupportedCommand(3))
        ));
        let mut atyp = good.clone();
        atyp[HASH_LINE_LEN + 1] = 7;
        assert!(matches!(
            read(&atyp).await,
            Err(Refusal::Address(AddrError::UnknownType(7)))
        ));
        let mut tail = good.clone();
        let n = tail.len();
        tail[n - 1] = b'x';
        assert!(matches!(
            read(&tail).await,
            Err(Refusal::NoCrlfAfterRequest)
        ));
        for cut in 0..good.len() {
            let res = read(&good[..cut]).await;
            if cut < HASH_LINE_LEN {
                assert!(matches!(res, Err(Refusal::ShortHashLine(c)) if c == cut));
            } else {
                assert!(matches!(res, Err(Refusal::Truncated)), "cut {cut}");
            }
        }
    }

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
        ] {
            let err = s.set(key, bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`tls.{key}`")), "{err}");
        }
        assert_eq!(
            s.set("nope", "1").unwrap_err().to_string(),
            "unknown setting `tls.nope`; use one of: tls.alpn, tls.fallback"
        );
    }
}
