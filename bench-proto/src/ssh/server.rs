//! The server side: SSH in, a TCP connection out for each `direct-tcpip`
//! channel; session channels (shells, commands) are refused.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{server, Channel, ChannelOpenFailure, MethodKind, MethodSet};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};

use super::keys::{load_authorized_keys, load_private_key};
use super::transport::ReadAhead;
use super::{SshError, AUTH_REJECTION_TIME, KEEPALIVE, KEEPALIVE_MAX, SERVER_IDLE_TIMEOUT};
use crate::addr::TargetAddr;
use crate::dial::connect;
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;

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
    /// The cipher offered first (`ssh.cipher`).
    pub cipher: russh::cipher::Name,
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
            .field("cipher", &self.cipher)
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
            cipher: super::DEFAULT_CIPHER,
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
            preferred: super::preferred(self.cipher),
            limits: super::limits(),
            ..server::Config::default()
        }
    }
}
/// Why one SSH connection failed on the server side.
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

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
) -> Result<(), ServerError> {
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

impl server::Handler for ServerHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ok = match (&self.opts.user, &self.opts.password) {
            (Some(u), Some(p)) => u == user && bool::from(p.as_bytes().ct_eq(password.as_bytes())),
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
                    eprintln!("ssh server: connection from {peer}: {e}");
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
