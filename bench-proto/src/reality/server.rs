//! The `reality` server side: REALITY in (or the destination's own TLS for
//! anyone else), VLESS read, TCP out.
//!
//! Each connection's first bytes are read up to the end of the
//! ClientHello and kept. A ClientHello that authenticates gets our TLS 1.3
//! handshake; anything else (not TLS, another key, a stale clock, an
//! unknown short id, a replayed session id, an SNI not served, or a
//! ClientHello that does not arrive in time) goes to `reality.dest` with
//! every byte read so far, and the two are relayed untouched.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use x25519_dalek::StaticSecret;

use super::auth::{self, AuthKey, Refusal, ShortId};
use super::cert::TemporaryCertificate;
use super::handshake::{self, x25519, ServerIdentity};
use super::vless::{self, VlessError};
use super::{Settings, HANDSHAKE_TIMEOUT};
use crate::addr::TargetAddr;
use crate::dial::{connect, DialError};
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;
use crate::tls13::wire::{
    handshake_message_len, ClientHello, RecordHeader, CONTENT_HANDSHAKE, GROUP_X25519,
    MAX_CIPHERTEXT, RECORD_HEADER_LEN,
};
use crate::tuic::wire::Uuid;

/// How long the ClientHello may take to arrive before the connection is
/// handed to the destination as it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes read while looking for the end of a ClientHello.
const MAX_HELLO_BYTES: usize = 4 * (RECORD_HEADER_LEN + MAX_CIPHERTEXT);
/// The ALPN protocol selected when the client offers it, as a web server would.
const ALPN: &[u8] = b"h2";

/// Options of the server side.
pub struct ServerOptions {
    /// The static X25519 private key.
    pub private_key: [u8; 32],
    pub short_ids: Vec<ShortId>,
    pub users: Vec<Uuid>,
    pub dest: Option<TargetAddr>,
    pub server_names: Vec<String>,
    pub max_time_diff: Duration,
    pub relay: RelayOptions,
}

impl ServerOptions {
    /// Options from the settings, one user.
    pub fn new(private_key: [u8; 32], user: Uuid, settings: &Settings) -> ServerOptions {
        ServerOptions {
            private_key,
            short_ids: settings.short_ids.clone(),
            users: vec![user],
            dest: settings.dest.clone(),
            server_names: settings.server_names.clone(),
            max_time_diff: settings.max_time_diff,
            relay: RelayOptions::default(),
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("dest", &self.dest)
            .field("server_names", &self.server_names)
            .finish_non_exhaustive()
    }
}

/// Why one connection failed on the server side.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading the ClientHello: {0}")]
    Hello(io::Error),
    #[error("not authenticated ({0}); no reality.dest set, closed")]
    Refused(Refusal),
    #[error("not a TLS ClientHello; no reality.dest set, closed")]
    NotTls,
    #[error("fallback to {dest} ({why}): {source}")]
    Fallback {
        why: String,
        dest: TargetAddr,
        source: io::Error,
    },
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    #[error("TLS handshake: no answer within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("reading the VLESS request: {0}")]
    ReadRequest(io::Error),
    #[error("VLESS request refused: {0}")]
    Request(VlessError),
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("relaying for {target}: {source}")]
    Relay {
        target: TargetAddr,
        source: io::Error,
    },
}

/// Session ids seen within the time window: a second ClientHello with the
/// same sealed session id is a replay.
struct ReplayCache {
    seen: Mutex<HashMap<[u8; auth::SESSION_ID_LEN], Instant>>,
    keep: Duration,
}

impl ReplayCache {
    /// Records `id`; false if it was seen within the window.
    fn first_time(&self, id: &[u8]) -> bool {
        let Ok(key) = <[u8; auth::SESSION_ID_LEN]>::try_from(id) else {
            return false;
        };
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Entries older than the window can no longer pass the time check.
        if seen.len() >= 1024 {
            seen.retain(|_, t| now.duration_since(*t) <= self.keep);
        }
        seen.insert(key, now).is_none()
    }
}

struct Shared {
    opts: ServerOptions,
    secret: StaticSecret,
    certificate: TemporaryCertificate,
    replays: ReplayCache,
}

/// Serves the server side on `listener` forever.
pub async fn run_server(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let name = opts
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let certificate = TemporaryCertificate::generate(&name).map_err(io::Error::other)?;
    let shared = Arc::new(Shared {
        secret: StaticSecret::from(opts.private_key),
        replays: ReplayCache {
            seen: Mutex::new(HashMap::new()),
            // Twice the window: a hello from the window's far edge stays
            // remembered until it is stale.
            keep: 2 * opts.max_time_diff + Duration::from_secs(1),
        },
        certificate,
        opts,
    });
    serve(listener, "reality server", move |tcp| {
        server_conn(tcp, Arc::clone(&shared))
    })
    .await
}

/// What the first bytes of a connection turned out to be.
enum First {
    /// A whole ClientHello message; `raw` holds every byte read.
    Hello {
        message: Vec<u8>,
        raw: Vec<u8>,
        consumed: usize,
    },
    /// Anything else, with every byte read.
    Other { raw: Vec<u8> },
}

/// Reads up to the end of the first ClientHello, keeping every byte.
async fn read_first<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<First> {
    let mut raw = Vec::with_capacity(2048);
    let mut message = Vec::new();
    let mut at = 0;
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        // Take every complete handshake record read so far.
        while raw.len() >= at + RECORD_HEADER_LEN {
            let mut header = [0u8; RECORD_HEADER_LEN];
            header.copy_from_slice(&raw[at..at + RECORD_HEADER_LEN]);
            let parsed = match RecordHeader::parse(&header) {
                Ok(h) if h.content_type == CONTENT_HANDSHAKE && header[1] == 3 => h,
                _ => return Ok(First::Other { raw }),
            };
            if raw.len() < at + RECORD_HEADER_LEN + parsed.length {
                break;
            }
            message.extend_from_slice(
                &raw[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + parsed.length],
            );
            at += RECORD_HEADER_LEN + parsed.length;
            if let Some(len) = handshake_message_len(&message) {
                if len != message.len() {
                    // More than the ClientHello in its records: not a client
                    // we serve; the destination may judge it.
                    return Ok(First::Other { raw });
                }
                return Ok(First::Hello {
                    message,
                    raw,
                    consumed: at,
                });
            }
        }
        if raw.len() >= MAX_HELLO_BYTES {
            return Ok(First::Other { raw });
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(read) => read?,
            Err(_) => return Ok(First::Other { raw }),
        };
        if n == 0 {
            return Ok(First::Other { raw });
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// Judges a ClientHello: the AuthKey if it is an authenticated client's.
fn authenticate(shared: &Shared, message: &[u8]) -> Result<AuthKey, Refusal> {
    let hello = ClientHello::parse(message).map_err(|_| Refusal::DoesNotOpen)?;
    let opts = &shared.opts;
    if !opts.server_names.is_empty() {
        let name = hello
            .server_name
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if !opts.server_names.iter().any(|n| *n == name) {
            return Err(Refusal::ServerName(name.into_owned()));
        }
    }
    if hello.session_id.len() != auth::SESSION_ID_LEN {
        return Err(Refusal::NoSessionId);
    }
    let share = hello.key_share(GROUP_X25519).ok_or(Refusal::NoKeyShare)?;
    let shared_secret = x25519(&shared.secret, share).map_err(|_| Refusal::NoKeyShare)?;
    let key = AuthKey::derive(&shared_secret, &hello.random);
    let opened = auth::open(&key, message, &hello)?;
    auth::check_time(&opened, SystemTime::now(), opts.max_time_diff)?;
    // Constant time over every id: which id matched must not show.
    let known = opts
        .short_ids
        .iter()
        .fold(subtle::Choice::from(0), |acc, id| {
            acc | id.0.ct_eq(&opened.short_id.0)
        });
    if !bool::from(known) {
        return Err(Refusal::UnknownShortId);
    }
    if !shared.replays.first_time(hello.session_id) {
        return Err(Refusal::Replay);
    }
    Ok(key)
}

async fn server_conn(mut tcp: TcpStream, shared: Arc<Shared>) -> Result<(), ServerError> {
    let first = read_first(&mut tcp).await.map_err(ServerError::Hello)?;
    let (message, raw, consumed) = match first {
        First::Hello {
            message,
            raw,
            consumed,
        } => (message, raw, consumed),
        First::Other { raw } => return fallback(tcp, raw, &shared.opts, None).await,
    };
    let auth_key = match authenticate(&shared, &message) {
        Ok(k) => k,
        Err(refusal) => return fallback(tcp, raw, &shared.opts, Some(refusal)).await,
    };
    let certificate = shared.certificate.for_connection(&auth_key);
    let identity = ServerIdentity {
        certificate: &certificate,
        key: shared.certificate.key(),
        alpn: Some(ALPN),
    };
    let received = raw[consumed..].to_vec();
    drop(raw);
    let mut tls = timeout(
        HANDSHAKE_TIMEOUT,
        handshake::server(tcp, &message, received, identity),
    )
    .await
    .map_err(|_| ServerError::HandshakeTimeout)?
    .map_err(ServerError::Handshake)?;
    drop(message);

    // The VLESS request, and any payload that came with it.
    let mut buf = Vec::with_capacity(512);
    let users = &shared.opts.users;
    let is_user = |u: &Uuid| {
        users
            .iter()
            .fold(subtle::Choice::from(0), |acc, known| {
                acc | known.0.ct_eq(&u.0)
            })
            .into()
    };
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let (request, header_len) = loop {
        match vless::parse_request(&buf, is_user) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(e) => {
                let _ = tls.shutdown().await;
                return Err(ServerError::Request(e));
            }
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline, tls.read(&mut chunk))
            .await
            .map_err(|_| ServerError::ReadRequest(io::ErrorKind::TimedOut.into()))?
            .map_err(ServerError::ReadRequest)?;
        if n == 0 {
            return Err(ServerError::ReadRequest(
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let target = request.target;
    let mut upstream = match connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tls.shutdown().await;
            return Err(e.into());
        }
    };
    let relay_err = |target: &TargetAddr, source| ServerError::Relay {
        target: target.clone(),
        source,
    };
    tls.write_all(&vless::RESPONSE)
        .await
        .map_err(|e| relay_err(&target, e))?;
    if header_len < buf.len() {
        upstream
            .write_all(&buf[header_len..])
            .await
            .map_err(|e| relay_err(&target, e))?;
    }
    drop(buf);
    relay(tls, upstream, &shared.opts.relay)
        .await
        .map_err(|e| relay_err(&target, e))?;
    Ok(())
}

/// Hands the connection to the destination with every byte read so far,
/// then relays both ways untouched.
async fn fallback(
    tcp: TcpStream,
    raw: Vec<u8>,
    opts: &ServerOptions,
    refusal: Option<Refusal>,
) -> Result<(), ServerError> {
    let why = refusal
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "not a TLS ClientHello".into());
    let Some(dest) = &opts.dest else {
        return Err(match refusal {
            Some(r) => ServerError::Refused(r),
            None => ServerError::NotTls,
        });
    };
    let fail = |source| ServerError::Fallback {
        why: why.clone(),
        dest: dest.clone(),
        source,
    };
    let mut upstream = connect(dest).await.map_err(|e| fail(e.into_io_error()))?;
    upstream.write_all(&raw).await.map_err(fail)?;
    drop(raw);
    relay(tcp, upstream, &opts.relay).await.map_err(fail)?;
    Ok(())
}
