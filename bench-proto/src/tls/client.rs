//! The client side: SOCKS5 in, one TLS session per proxied connection, the
//! Trojan request first.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::session::{self, ClientStream};
use super::wire::send_request;
use super::{ClientOptions, PasswordHash, RecordLayer, HANDSHAKE_TIMEOUT};
use crate::addr::{AddrError, TargetAddr};
use crate::outbound::{Opened, Outbound, SocksReply};
use crate::relay::RelayOptions;
use crate::socks5::ReplyCode;

/// Why the client could not open a stream through the server.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The target cannot be encoded (a domain name over 255 bytes).
    #[error("encoding target address: {0}")]
    Addr(#[from] AddrError),
    /// The server endpoint did not take the TCP connection.
    #[error("connecting to server {server}: {source}")]
    ConnectServer {
        /// The server.
        server: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake: no answer within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    /// The request could not be sent.
    #[error("sending the request for {target}: {source}")]
    SendRequest {
        /// The target.
        target: TargetAddr,
        /// Why.
        source: io::Error,
    },
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SocksReply for OpenError {
    fn reply_code(&self) -> ReplyCode {
        match self {
            OpenError::ConnectServer { source, .. } => ReplyCode::from_connect_error(source),
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// Opens one Trojan stream: a TCP connection to `server`, the TLS
/// handshake that `handshake` runs on it (rustls here, BoringSSL with ECH in
/// `ech`), then the request for `target`. Trojan has no server reply, so the
/// stream counts as open once the request is sent.
pub(crate) async fn open_trojan<S, F, H>(
    server: SocketAddr,
    password: &PasswordHash,
    target: &TargetAddr,
    handshake: F,
) -> Result<Opened<S>, OpenError>
where
    S: AsyncWrite + Unpin,
    F: FnOnce(TcpStream) -> H,
    H: Future<Output = Result<S, OpenError>>,
{
    // Refuse what the header cannot carry before connecting at all.
    target.encode(&mut Vec::new())?;
    let tcp = TcpStream::connect(server)
        .await
        .map_err(|source| OpenError::ConnectServer { server, source })?;
    tcp.set_nodelay(true)?;
    let bound = tcp.local_addr()?;
    let mut stream = timeout(HANDSHAKE_TIMEOUT, handshake(tcp))
        .await
        .map_err(|_| OpenError::HandshakeTimeout)??;
    send_request(&mut stream, password, target)
        .await
        .map_err(|source| OpenError::SendRequest {
            target: target.clone(),
            source,
        })?;
    Ok(Opened { stream, bound })
}

/// The client side as an [`Outbound`]: Trojan has no server reply, so a
/// stream counts as open once the TLS session is up and the request sent.
#[derive(Clone)]
pub struct Client {
    opts: Arc<ClientOptions>,
    connector: TlsConnector,
}

impl Client {
    /// A client with these options.
    pub fn new(opts: ClientOptions) -> Client {
        let connector = TlsConnector::from(Arc::clone(&opts.tls));
        Client {
            opts: Arc::new(opts),
            connector,
        }
    }
}

impl Outbound for Client {
    type Stream = ClientStream<TcpStream>;
    type Error = OpenError;
    const NAME: &'static str = "tls client";

    async fn open(
        &self,
        target: &TargetAddr,
        _origin: SocketAddr,
    ) -> Result<Opened<Self::Stream>, OpenError> {
        let opts = &self.opts;
        open_trojan(opts.server, &opts.password, target, |tcp| async move {
            let name = opts.server_name.clone();
            match opts.records {
                RecordLayer::Own => session::connect(Arc::clone(&opts.tls), name, tcp)
                    .await
                    .map(ClientStream::Own),
                RecordLayer::Rustls => self
                    .connector
                    .connect(name, tcp)
                    .await
                    .map(ClientStream::Rustls),
            }
            .map_err(OpenError::Handshake)
        })
        .await
    }

    fn relay_options(&self) -> &RelayOptions {
        &self.opts.relay
    }
}
