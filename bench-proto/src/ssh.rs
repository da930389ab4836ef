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

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use russh::keys::ssh_key::{private::Ed25519Keypair, AuthorizedKeys, LineEnding};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{client, server, Channel, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::addr::TargetAddr;
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;
use crate::settings::SettingError;
use crate::socks5::{self, Reply, ReplyCode, Socks5Error};

/// Keepalive interval on both sides: an idle connection whose peer is gone
/// is noticed after `KEEPALIVE_MAX` unanswered keepalives.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;
/// Limit on making the client's SSH connection (TCP, key exchange,
/// authentication), so that a server that accepts and then says nothing
/// does not hold every waiting SOCKS5 connection forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The server closes a connection that sends nothing for this long.
const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Delay before a failed authentication is answered (russh's default),
/// which slows down password guessing.
const AUTH_REJECTION_TIME: Duration = Duration::from_secs(1);

/// The `ssh.*` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Client: the server's public host key file.
    pub known_host_key: Option<PathBuf>,
    /// Client: accept whatever host key the server shows.
    pub accept_any_host_key: bool,
}

impl Settings {
    /// The keys [`Settings::set`] accepts, without the `ssh.` prefix.
    pub const KEYS: &'static [&'static str] = &["known_host_key", "accept_any_host_key"];

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

fn key_error(path: &Path, e: impl fmt::Display) -> SshError {
    SshError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads an OpenSSH private key file (unencrypted).
pub fn load_private_key(path: &Path) -> Result<PrivateKey, SshError> {
    russh::keys::load_secret_key(path, None).map_err(|e| key_error(path, e))
}

/// Reads a one-line OpenSSH public key file (`ssh-ed25519 AAAA… comment`).
pub fn load_public_key(path: &Path) -> Result<PublicKey, SshError> {
    russh::keys::load_public_key(path).map_err(|e| key_error(path, e))
}

/// Reads an `authorized_keys` file. Key options (`from=`, `command=`, …)
/// are ignored: every key listed may open `direct-tcpip` channels.
pub fn load_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, SshError> {
    let entries = AuthorizedKeys::read_file(path).map_err(|e| key_error(path, e))?;
    if entries.is_empty() {
        return Err(key_error(path, "no key in the file"));
    }
    Ok(entries
        .into_iter()
        .map(|e| e.public_key().clone())
        .collect())
}

/// Generates an Ed25519 key pair and writes the private key to `path` (mode
/// 0600, OpenSSH format) and the public key to `path` + `.pub`; returns the
/// public key.
pub fn generate_key(path: &Path) -> Result<PublicKey, SshError> {
    let mut seed = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut seed)
        .map_err(|e| SshError::Config(format!("generating a key: {e:?}")))?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.write_openssh_file(path, LineEnding::LF)
        .map_err(|e| key_error(path, e))?;
    let public = key.public_key().clone();
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    let line = public.to_openssh().map_err(|e| key_error(&pub_path, e))?;
    std::fs::write(&pub_path, line + "\n").map_err(|e| key_error(&pub_path, e))?;
    Ok(public)
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum ClientAuth {
    /// Password authentication.
    Password(String),
    /// Public-key authentication with this private key.
    Key(Arc<PrivateKey>),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs.
        match self {
            ClientAuth::Password(_) => f.write_str("Password(..)"),
            ClientAuth::Key(k) => write!(f, "Key({})", k.algorithm()),
        }
    }
}

/// Which server host keys the client accepts.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Exactly this key.
    Known(PublicKey),
    /// Any key (no protection against a man in the middle).
    AcceptAny,
}

/// Options of the client side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server endpoint to connect to.
    pub server: SocketAddr,
    /// The login name.
    pub user: String,
    /// How to authenticate.
    pub auth: ClientAuth,
    /// Which host keys to accept.
    pub host_key: HostKeyPolicy,
    /// How to relay once a channel is open.
    pub relay: RelayOptions,
}

impl ClientOptions {
    /// Options from the command line's pieces: exactly one of `password`
    /// and `identity`, and a host key policy from `settings`; relay options
    /// default.
    pub fn new(
        server: SocketAddr,
        user: &str,
        password: Option<&str>,
        identity: Option<&Path>,
        settings: &Settings,
    ) -> Result<ClientOptions, SshError> {
        let auth = match (password, identity) {
            (Some(p), None) => ClientAuth::Password(p.to_owned()),
            (None, Some(path)) => ClientAuth::Key(Arc::new(load_private_key(path)?)),
            _ => {
                return Err(SshError::Config(
                    "the ssh client needs exactly one of --password and --identity".into(),
                ))
            }
        };
        let host_key = match (&settings.known_host_key, settings.accept_any_host_key) {
            (Some(path), false) => HostKeyPolicy::Known(load_public_key(path)?),
            (None, true) => HostKeyPolicy::AcceptAny,
            _ => {
                return Err(SshError::Config(
                    "the ssh client needs exactly one of --set ssh.known_host_key=PATH and \
                     --set ssh.accept_any_host_key=true"
                        .into(),
                ))
            }
        };
        Ok(ClientOptions {
            server,
            user: user.to_owned(),
            auth,
            host_key,
            relay: RelayOptions::default(),
        })
    }
}

/// Options of the server side.
#[derive(Clone)]
pub struct ServerOptions {
    /// The host key.
    pub host_key: PrivateKey,
    /// The login name every client must use; `None` accepts any name for
    /// public-key authentication.
    pub user: Option<String>,
    /// The password, if password authentication is on (it needs `user`).
    pub password: Option<String>,
    /// Keys allowed to log in; empty turns public-key authentication off.
    pub authorized_keys: Vec<PublicKey>,
    /// How to relay once a channel is open.
    pub relay: RelayOptions,
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("host_key", &self.host_key.algorithm())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("authorized_keys", &self.authorized_keys.len())
            .field("relay", &self.relay)
            .finish()
    }
}

impl ServerOptions {
    /// Options from the command line's pieces; at least one of `password`
    /// (with `user`) and `authorized_keys` is needed. Relay options default.
    pub fn new(
        host_key: &Path,
        user: Option<&str>,
        password: Option<&str>,
        authorized_keys: Option<&Path>,
    ) -> Result<ServerOptions, SshError> {
        if password.is_some() && user.is_none() {
            return Err(SshError::Config(
                "password authentication needs --user too".into(),
            ));
        }
        if password.is_none() && authorized_keys.is_none() {
            return Err(SshError::Config(
                "the ssh server needs --password (with --user) or --authorized-keys".into(),
            ));
        }
        Ok(ServerOptions {
            host_key: load_private_key(host_key)?,
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
            authorized_keys: match authorized_keys {
                Some(path) => load_authorized_keys(path)?,
                None => Vec::new(),
            },
            relay: RelayOptions::default(),
        })
    }

    fn russh_config(&self) -> server::Config {
        let mut methods = MethodSet::empty();
        if self.password.is_some() {
            methods.push(MethodKind::Password);
        }
        if !self.authorized_keys.is_empty() {
            methods.push(MethodKind::PublicKey);
        }
        server::Config {
            methods,
            keys: vec![self.host_key.clone()],
            auth_rejection_time: AUTH_REJECTION_TIME,
            // OpenSSH clients ask with "none" first to learn the methods;
            // that is no guess to slow down.
            auth_rejection_time_initial: Some(Duration::ZERO),
            // Also bounds the wait for the client's banner. A live client
            // answers the keepalives, which counts as activity.
            inactivity_timeout: Some(SERVER_IDLE_TIMEOUT),
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            ..server::Config::default()
        }
    }
}

/// Why one proxied connection (or SSH connection) failed.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Socks5(#[from] Socks5Error),
    #[error("connecting to server {server}: {source}")]
    ConnectServer {
        server: SocketAddr,
        source: io::Error,
    },
    #[error("SSH with server {server}: {source}")]
    Session {
        server: SocketAddr,
        source: russh::Error,
    },
    #[error(
        "SSH with server {server}: not connected and authenticated within {CONNECT_TIMEOUT:?}"
    )]
    ConnectTimeout { server: SocketAddr },
    #[error("server {server} refused authentication as `{user}`")]
    AuthRefused { server: SocketAddr, user: String },
    #[error("server refused a channel to {target}: {reason:?}")]
    ChannelRefused {
        target: TargetAddr,
        reason: ChannelOpenFailure,
    },
    #[error("opening a channel to {target}: {source}")]
    Channel {
        target: TargetAddr,
        source: russh::Error,
    },
    #[error("relaying for {target}: {source}")]
    Relay {
        target: TargetAddr,
        source: io::Error,
    },
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ConnError {
    /// The SOCKS5 reply for a failure before the channel was open.
    fn reply_code(&self) -> ReplyCode {
        match self {
            ConnError::ConnectServer { source, .. } => ReplyCode::from_connect_error(source),
            // The server says only "connect failed", not why; refused is
            // what it most often means.
            ConnError::ChannelRefused {
                reason: ChannelOpenFailure::ConnectFailed,
                ..
            } => ReplyCode::ConnectionRefused,
            ConnError::ChannelRefused {
                reason: ChannelOpenFailure::AdministrativelyProhibited,
                ..
            } => ReplyCode::NotAllowed,
            _ => ReplyCode::GeneralFailure,
        }
    }
}

// ---------------------------------------------------------------- client

type SshSession = client::Handle<ClientHandler>;

/// The client side's state: the options and the one SSH connection.
struct Client {
    opts: ClientOptions,
    config: Arc<client::Config>,
    /// The current SSH connection; replaced when it has closed.
    session: Mutex<Option<Arc<SshSession>>>,
}

struct ClientHandler {
    host_key: HostKeyPolicy,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match (&self.host_key, server_key) {
            (HostKeyPolicy::AcceptAny, _) => true,
            // Compare the key material only: the comment is not part of it.
            (HostKeyPolicy::Known(known), PublicKeyOrCertificate::PublicKey { key, .. }) => {
                key.key_data() == known.key_data()
            }
            (HostKeyPolicy::Known(_), PublicKeyOrCertificate::Certificate(_)) => false,
        })
    }
}

/// Serves the client side on `listener` forever: SOCKS5 in, one SSH
/// connection to `opts.server` out, a `direct-tcpip` channel per SOCKS5
/// connection. Returns only if the listener fails for good.
///
/// The SSH connection is made when the first SOCKS5 connection arrives, so
/// that a server that is not up yet is not an error.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> io::Result<()> {
    let config = client::Config {
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..client::Config::default()
    };
    let client = Arc::new(Client {
        opts,
        config: Arc::new(config),
        session: Mutex::new(None),
    });
    serve(listener, "ssh client", move |stream| {
        client_conn(stream, Arc::clone(&client))
    })
    .await
}

impl Client {
    /// The live SSH connection, made anew if there is none.
    async fn session(&self) -> Result<Arc<SshSession>, ConnError> {
        // Held while connecting: concurrent SOCKS5 connections wait for the
        // one new SSH connection rather than each making their own.
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref() {
            if !s.is_closed() {
                return Ok(Arc::clone(s));
            }
        }
        *current = None;
        let s = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(connected) => Arc::new(connected?),
            Err(_) => {
                return Err(ConnError::ConnectTimeout {
                    server: self.opts.server,
                })
            }
        };
        *current = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Forgets `dead` unless it has been replaced already.
    async fn forget(&self, dead: &Arc<SshSession>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, dead)) {
            *current = None;
        }
    }

    async fn connect(&self) -> Result<SshSession, ConnError> {
        let server = self.opts.server;
        let tcp = TcpStream::connect(server)
            .await
            .map_err(|source| ConnError::ConnectServer { server, source })?;
        tcp.set_nodelay(true)?;
        let handler = ClientHandler {
            host_key: self.opts.host_key.clone(),
        };
        let session_err = |source| ConnError::Session { server, source };
        let mut session =
            client::connect_stream(Arc::clone(&self.config), ReadAhead::new(tcp), handler)
                .await
                .map_err(session_err)?;
        let user = self.opts.user.clone();
        let result = match &self.opts.auth {
            ClientAuth::Password(p) => session.authenticate_password(user, p).await,
            ClientAuth::Key(k) => {
                // No RSA support, so no RSA hash algorithm to choose.
                let key = PrivateKeyWithHashAlg::new(Arc::clone(k), None);
                session.authenticate_publickey(user, key).await
            }
        }
        .map_err(session_err)?;
        if !result.success() {
            return Err(ConnError::AuthRefused {
                server,
                user: self.opts.user.clone(),
            });
        }
        Ok(session)
    }

    /// Opens a `direct-tcpip` channel to `target`, reconnecting once if the
    /// SSH connection turns out to be dead.
    async fn open(
        &self,
        target: &TargetAddr,
        origin: SocketAddr,
    ) -> Result<Channel<client::Msg>, ConnError> {
        let (host, port) = match target {
            TargetAddr::Ip(sa) => (sa.ip().to_string(), sa.port()),
            TargetAddr::Domain(name, port) => (name.clone(), *port),
        };
        let mut retried = false;
        loop {
            let session = self.session().await?;
            let opened = session
                .channel_open_direct_tcpip(
                    host.as_str(),
                    u32::from(port),
                    origin.ip().to_string(),
                    u32::from(origin.port()),
                )
                .await;
            match opened {
                Ok(channel) => return Ok(channel),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    return Err(ConnError::ChannelRefused {
                        target: target.clone(),
                        reason,
                    })
                }
                // The connection died under us (it may not have been
                // noticed yet when it was handed out).
                Err(source) => {
                    self.forget(&session).await;
                    if retried {
                        return Err(ConnError::Channel {
                            target: target.clone(),
                            source,
                        });
                    }
                    retried = true;
                }
            }
        }
    }
}

async fn client_conn(mut inbound: TcpStream, client: Arc<Client>) -> Result<(), ConnError> {
    let target = socks5::accept(&mut inbound).await?;
    let origin = inbound.peer_addr()?;
    let channel = match client.open(&target, origin).await {
        Ok(c) => c,
        Err(e) => {
            socks5::reply(&mut inbound, Reply::Failed(e.reply_code())).await?;
            return Err(e);
        }
    };
    // The channel has no local address of its own to report.
    let unspecified = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    socks5::reply(&mut inbound, Reply::Succeeded(unspecified)).await?;
    relay(inbound, channel.into_stream(), &client.opts.relay)
        .await
        .map_err(|source| ConnError::Relay { target, source })?;
    Ok(())
}

// ---------------------------------------------------------------- server

/// Serves the server side on `listener` forever: SSH in, a TCP connection
/// out for each `direct-tcpip` channel. Returns only if the listener fails
/// for good.
pub async fn run_server(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let config = Arc::new(opts.russh_config());
    let opts = Arc::new(opts);
    serve(listener, "ssh server", move |stream| {
        server_conn(stream, Arc::clone(&config), Arc::clone(&opts))
    })
    .await
}

async fn server_conn(
    stream: TcpStream,
    config: Arc<server::Config>,
    opts: Arc<ServerOptions>,
) -> Result<(), ConnError> {
    let peer = stream.peer_addr()?;
    let handler = ServerHandler { opts, peer };
    let session = server::run_stream(config, ReadAhead::new(stream), handler).await?;
    session.await?;
    Ok(())
}

/// One SSH connection's server state.
struct ServerHandler {
    opts: Arc<ServerOptions>,
    peer: SocketAddr,
}

impl ServerHandler {
    fn user_ok(&self, user: &str) -> bool {
        self.opts.user.as_deref().is_none_or(|u| u == user)
    }
}

/// Equality in time independent of where the strings differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl server::Handler for ServerHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ok = match (&self.opts.user, &self.opts.password) {
            (Some(u), Some(p)) => u == user && ct_eq(p.as_bytes(), password.as_bytes()),
            _ => false,
        };
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Answering early spares the client a signature with a key that
        // would be refused anyway.
        Ok(if self.user_ok(user) && self.authorized(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.user_ok(user) && self.authorized(key.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let opts = Arc::clone(&self.opts);
        let peer = self.peer;
        let host = host_to_connect.to_owned();
        // Connecting takes a round trip or more; the session keeps serving
        // its other channels meanwhile.
        tokio::spawn(async move {
            let Ok(port) = u16::try_from(port_to_connect) else {
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                eprintln!("ssh server: connection from {peer}: channel to port {port_to_connect}: not a port");
                return;
            };
            let target = match host.parse::<IpAddr>() {
                Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
                Err(_) => TargetAddr::Domain(host, port),
            };
            let upstream = match connect(&target).await {
                Ok(s) => s,
                Err(e) => {
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    eprintln!("ssh server: connection from {peer}: connecting to {target}: {e}");
                    return;
                }
            };
            reply.accept().await;
            if let Err(e) = relay(channel.into_stream(), upstream, &opts.relay).await {
                eprintln!("ssh server: connection from {peer}: relaying for {target}: {e}");
            }
        });
        Ok(())
    }
}

impl ServerHandler {
    fn authorized(&self, key: &PublicKey) -> bool {
        self.opts
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }
}

// ------------------------------------------------------------ transport

/// Bytes the read-ahead task asks the kernel for per read.
const READ_AHEAD_CHUNK: usize = 64 * 1024;

/// The TCP stream under an SSH connection, read by its own task as fast as
/// data arrives.
///
/// russh's session loop stops reading while it writes out what it has
/// queued (and while a channel's queue is full). When both ends of a
/// connection do that at once with their socket buffers full, each waits
/// for the other to read: with a few dozen busy channels both ways this
/// deadlocks on loopback within seconds. Reading ahead breaks the cycle.
/// What is read ahead is bounded by SSH flow control: the peer may send no
/// more channel data than the windows this side granted.
struct ReadAhead {
    chunks: mpsc::UnboundedReceiver<io::Result<Bytes>>,
    current: Bytes,
    eof: bool,
    write: OwnedWriteHalf,
    reader: JoinHandle<()>,
}

impl ReadAhead {
    fn new(stream: TcpStream) -> ReadAhead {
        let (mut read, write) = stream.into_split();
        let (tx, chunks) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_AHEAD_CHUNK);
            loop {
                // Reuses the allocation once the chunks split off it have
                // been consumed.
                buf.reserve(READ_AHEAD_CHUNK);
                match read.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.send(Ok(buf.split().freeze())).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        ReadAhead {
            chunks,
            current: Bytes::new(),
            eof: false,
            write,
            reader,
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // The task holds the read half: end it so that the socket closes.
        self.reader.abort();
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.eof = true;
                    return Poll::Ready(Err(e));
                }
                // The task ended: EOF.
                None => self.eof = true,
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.write.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
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
            "unknown setting `ssh.nope`; use one of: ssh.known_host_key, ssh.accept_any_host_key"
        );
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
