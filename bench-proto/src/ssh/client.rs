//! The client side: SOCKS5 in, one SSH connection out, a `direct-tcpip`
//! channel per proxied connection.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{client, Channel, ChannelOpenFailure, ChannelStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::keys::{load_private_key, load_public_key};
use super::transport::ReadAhead;
use super::{Settings, SshError, CONNECT_TIMEOUT, KEEPALIVE, KEEPALIVE_MAX};
use crate::addr::TargetAddr;
use crate::outbound::{self, Opened, Outbound, SocksReply};
use crate::relay::RelayOptions;
use crate::socks5::ReplyCode;

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
    /// The cipher offered first (`ssh.cipher`).
    pub cipher: russh::cipher::Name,
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
            cipher: settings.cipher(),
            relay: RelayOptions::default(),
        })
    }
}

/// Why the client could not open a channel through the server.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
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
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SocksReply for OpenError {
    fn reply_code(&self) -> ReplyCode {
        match self {
            OpenError::ConnectServer { source, .. } => ReplyCode::from_connect_error(source),
            // The server says only "connect failed", not why; refused is
            // what it most often means.
            OpenError::ChannelRefused {
                reason: ChannelOpenFailure::ConnectFailed,
                ..
            } => ReplyCode::ConnectionRefused,
            OpenError::ChannelRefused {
                reason: ChannelOpenFailure::AdministrativelyProhibited,
                ..
            } => ReplyCode::NotAllowed,
            _ => ReplyCode::GeneralFailure,
        }
    }
}
type SshSession = client::Handle<ClientHandler>;

/// The client side as an [`Outbound`]: one SSH connection to the server,
/// made on first use and again when it died, a `direct-tcpip` channel per
/// proxied connection. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<SshLink>,
}

impl Client {
    /// A client with these options; connects lazily.
    pub fn new(opts: ClientOptions) -> Client {
        let config = client::Config {
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            preferred: super::preferred(opts.cipher),
            limits: super::limits(),
            ..client::Config::default()
        };
        Client {
            inner: Arc::new(SshLink {
                opts,
                config: Arc::new(config),
                session: Mutex::new(None),
            }),
        }
    }
}

/// The options and the one SSH connection.
struct SshLink {
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
    outbound::run_client(listener, Client::new(opts)).await
}

impl SshLink {
    /// The live SSH connection, made anew if there is none.
    async fn session(&self) -> Result<Arc<SshSession>, OpenError> {
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
                return Err(OpenError::ConnectTimeout {
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

    async fn connect(&self) -> Result<SshSession, OpenError> {
        let server = self.opts.server;
        let tcp = TcpStream::connect(server)
            .await
            .map_err(|source| OpenError::ConnectServer { server, source })?;
        tcp.set_nodelay(true)?;
        let handler = ClientHandler {
            host_key: self.opts.host_key.clone(),
        };
        let session_err = |source| OpenError::Session { server, source };
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
            return Err(OpenError::AuthRefused {
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
    ) -> Result<Channel<client::Msg>, OpenError> {
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
                    return Err(OpenError::ChannelRefused {
                        target: target.clone(),
                        reason,
                    })
                }
                // The connection died under us (it may not have been
                // noticed yet when it was handed out).
                Err(source) => {
                    self.forget(&session).await;
                    if retried {
                        return Err(OpenError::Channel {
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

impl Outbound for Client {
    type Stream = ChannelStream<client::Msg>;
    type Error = OpenError;
    const NAME: &'static str = "ssh client";

    async fn open(
        &self,
        target: &TargetAddr,
        origin: SocketAddr,
    ) -> Result<Opened<Self::Stream>, OpenError> {
        let channel = self.inner.open(target, origin).await?;
        // The channel has no local address of its own to report.
        let bound = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        Ok(Opened {
            stream: channel.into_stream(),
            bound,
        })
    }

    fn relay_options(&self) -> &RelayOptions {
        &self.inner.opts.relay
    }
}
