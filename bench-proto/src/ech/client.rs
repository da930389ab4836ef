//! The `ech` client side: SOCKS5 in, Trojan over TLS 1.3 with ECH out.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::stream::buffered;
use super::{keys, EchError, EchStream, Settings};
use crate::addr::TargetAddr;
use crate::outbound::{self, Opened, Outbound};
use crate::relay::RelayOptions;
use crate::tls::open_trojan;
use crate::tls::{OpenError, PasswordHash};
use boring::error::ErrorStack;
use boring::ssl::{SslConnector, SslMethod, SslVersion};
use boring::x509::store::X509StoreBuilder;
use boring::x509::X509;
use tokio::net::{TcpListener, TcpStream};

/// What the client puts in its ClientHello's ECH extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchMode {
    /// A real ECHConfigList: the inner ClientHello is sealed to it, and the
    /// handshake fails unless the server accepts ECH.
    Config(Vec<u8>),
    /// GREASE: a random extension no server can decrypt, so the handshake
    /// is an ordinary one with the real server name in the clear.
    Grease,
}

/// Options of the client side.
#[derive(Clone)]
pub struct ClientOptions {
    /// The server endpoint to connect to.
    pub server: SocketAddr,
    /// The inner server name: sent encrypted (with a config) and verified.
    pub server_name: String,
    /// TLS 1.3 only, trusting exactly the `--ca` certificates.
    pub connector: SslConnector,
    pub ech: EchMode,
    /// The password, hashed.
    pub password: PasswordHash,
    /// How to relay once the stream is up.
    pub relay: RelayOptions,
    /// Bytes buffered each way between BoringSSL and the socket
    /// (`ech.io_buffer`).
    pub io_buffer: usize,
}

impl ClientOptions {
    /// Options that trust exactly the certificates in `ca`, and seal the
    /// ClientHello to the list in `ech_config` ("ECH CONFIGS" PEM) unless
    /// `settings.grease`; relay options default.
    pub fn new(
        server: SocketAddr,
        ca: &Path,
        server_name: &str,
        password: &str,
        ech_config: Option<&Path>,
        settings: &Settings,
    ) -> Result<ClientOptions, EchError> {
        let ech = match (ech_config, settings.grease) {
            (Some(path), false) => EchMode::Config(keys::load_config_list(path)?),
            (None, true) => EchMode::Grease,
            (None, false) => {
                return Err(EchError::Usage(
                    "the ech client needs --ech-config PATH (an \"ECH CONFIGS\" PEM file), \
                     or --set ech.grease=true to send GREASE ECH only"
                        .into(),
                ))
            }
            (Some(_), true) => {
                return Err(EchError::Usage(
                    "--ech-config and ech.grease=true exclude each other: GREASE sends no \
                     real config; drop one"
                        .into(),
                ))
            }
        };
        Ok(ClientOptions {
            server,
            server_name: server_name.to_owned(),
            connector: connector(ca)?,
            ech,
            password: PasswordHash::new(password),
            relay: RelayOptions::default(),
            io_buffer: settings.io_buffer,
        })
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("ech", &self.ech)
            .finish_non_exhaustive()
    }
}

/// A TLS 1.3 connector that trusts exactly the certificates in `ca` (the
/// inner name's, and the public name's for a rejected ECH).
pub fn connector(ca: &Path) -> Result<SslConnector, EchError> {
    let pem = std::fs::read(ca).map_err(|e| EchError::load(ca, e))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| EchError::load(ca, e))?;
    if certs.is_empty() {
        return Err(EchError::load(ca, "no certificate in the file"));
    }
    let mut store = X509StoreBuilder::new()?;
    for cert in certs {
        store.add_cert(cert)?;
    }
    let mut builder = SslConnector::builder(SslMethod::tls())?;
    // ECH exists only in TLS 1.3.
    builder.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    // Replaces the system roots that SslConnector::builder loads.
    builder.set_cert_store(store.build());
    Ok(builder.build())
}

/// Why a client handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    #[error("setting up the handshake: {0}")]
    Setup(ErrorStack),
    /// The server could not use our config: it completed the outer
    /// handshake as `public_name` and may have sent retry configs. We do not
    /// retry with them: the run's configs are fixed, so a mismatch is a
    /// setup error to report, not to paper over.
    #[error(
        "ECH rejected: the server answered as the public name {public_name:?} \
         (certificate for {peer_names:?}){}; not retrying",
        match retry_configs { Some(c) => format!(", offering {} bytes of retry configs", c.len()), None => String::new() }
    )]
    Rejected {
        public_name: String,
        retry_configs: Option<Vec<u8>>,
        peer_names: Vec<String>,
    },
    /// BoringSSL fails a handshake whose ECH was rejected, so this would be
    /// a library fault; checked all the same.
    #[error("the handshake completed without ECH although a config was sent")]
    NotAccepted,
    #[error("{0}")]
    Tls(String),
}

/// Connects TLS on `tcp` as `opts` say. With a config, returns only a
/// stream whose ECH the library reports accepted.
pub async fn handshake(
    opts: &ClientOptions,
    tcp: TcpStream,
) -> Result<EchStream, HandshakeFailure> {
    let mut config = opts
        .connector
        .configure()
        .map_err(HandshakeFailure::Setup)?;
    match &opts.ech {
        EchMode::Config(list) => config
            .set_ech_config_list(list)
            .map_err(HandshakeFailure::Setup)?,
        EchMode::Grease => config.set_enable_ech_grease(true),
    }
    match tokio_boring::connect(config, &opts.server_name, buffered(tcp, opts.io_buffer)).await {
        Ok(stream) => {
            if matches!(opts.ech, EchMode::Config(_)) && !stream.ssl().ech_accepted() {
                return Err(HandshakeFailure::NotAccepted);
            }
            Ok(EchStream::new(stream))
        }
        Err(e) => {
            let Some(ssl) = e.ssl() else {
                return Err(HandshakeFailure::Tls(e.to_string()));
            };
            // Set only when the server rejected our ECH config.
            match ssl.get_ech_name_override() {
                Some(name) => Err(HandshakeFailure::Rejected {
                    public_name: String::from_utf8_lossy(name).into_owned(),
                    retry_configs: ssl.get_ech_retry_configs().map(<[u8]>::to_vec),
                    peer_names: ssl
                        .peer_certificate()
                        .and_then(|c| c.subject_alt_names())
                        .map(|names| {
                            names
                                .iter()
                                .filter_map(|n| n.dnsname().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                None => Err(HandshakeFailure::Tls(e.to_string())),
            }
        }
    }
}

/// The client side as an [`Outbound`]: `tls`'s Trojan request over
/// BoringSSL's handshake with ECH; open errors are `tls`'s.
#[derive(Clone, Debug)]
pub struct Client {
    opts: Arc<ClientOptions>,
}

impl Client {
    /// A client with these options.
    pub fn new(opts: ClientOptions) -> Client {
        Client {
            opts: Arc::new(opts),
        }
    }
}

impl Outbound for Client {
    type Stream = EchStream;
    type Error = OpenError;
    const NAME: &'static str = "ech client";

    async fn open(
        &self,
        target: &TargetAddr,
        _origin: SocketAddr,
    ) -> Result<Opened<Self::Stream>, OpenError> {
        let opts = &self.opts;
        open_trojan(opts.server, &opts.password, target, |tcp| async move {
            handshake(opts, tcp)
                .await
                .map_err(|e| OpenError::Handshake(io::Error::other(e)))
        })
        .await
    }

    fn relay_options(&self) -> &RelayOptions {
        &self.opts.relay
    }
}

/// Serves the client side on `listener` forever: SOCKS5 in, Trojan over
/// TLS with ECH out to `opts.server`. Returns only if the listener fails.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> io::Result<()> {
    outbound::run_client(listener, Client::new(opts)).await
}
