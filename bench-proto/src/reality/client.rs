//! The `reality` client side: SOCKS5 in, VLESS over REALITY out.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use x25519_dalek::StaticSecret;

use super::auth::{self, AuthKey, ShortId};
use super::handshake::{self, random_bytes, x25519, x25519_secret};
use super::hello::{client_hello, hybrid_share, HelloParams, HYBRID_RANDOM_LEN, SESSION_ID_OFFSET};
use super::{cert, vless, HANDSHAKE_TIMEOUT};
use crate::addr::TargetAddr;
use crate::outbound::{self, Opened, Outbound, SocksReply};
use crate::relay::RelayOptions;
use crate::socks5::ReplyCode;
use crate::tls13::record::TlsStream;
use crate::tuic::wire::Uuid;

/// Options of the client side.
#[derive(Clone)]
pub struct ClientOptions {
    /// The server endpoint to connect to.
    pub server: SocketAddr,
    /// The name in the ClientHello (the destination the client poses as).
    pub server_name: String,
    /// The server's static X25519 public key.
    pub server_key: [u8; 32],
    pub short_id: ShortId,
    /// The VLESS user id.
    pub user: Uuid,
    /// Offer an X25519MLKEM768 key share beside X25519, as Chrome does
    /// (`reality.hybrid_share`, default true).
    pub hybrid_share: bool,
    pub relay: RelayOptions,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("connecting to the server: {0}")]
    Connect(io::Error),
    #[error("REALITY handshake: {0}")]
    Handshake(io::Error),
    #[error("REALITY handshake: no answer within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("sending the VLESS request: {0}")]
    Request(io::Error),
}

impl SocksReply for OpenError {
    fn reply_code(&self) -> ReplyCode {
        match self {
            OpenError::Connect(e) => ReplyCode::from_connect_error(e),
            OpenError::Timeout => ReplyCode::TtlExpired,
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// Runs the REALITY handshake on `tcp`: a ClientHello with the sealed
/// authenticator, the server's certificate checked against our AuthKey.
pub async fn handshake(opts: &ClientOptions, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    let secret: StaticSecret = x25519_secret()?;
    let public = x25519_dalek::PublicKey::from(&secret);
    let random = random_bytes::<32>()?;
    let grease_seed = random_bytes::<4>()?;
    // Chrome's GREASE ECH payload is 144 to 240 bytes; vary it likewise.
    let payload = random_bytes::<240>()?;
    let payload_len = 144 + 32 * usize::from(grease_seed[2] % 4);
    let hybrid = if opts.hybrid_share {
        Some(
            hybrid_share(&random_bytes::<HYBRID_RANDOM_LEN>()?, public.as_bytes())
                .ok_or_else(|| io::Error::other("ML-KEM coefficients: randomness ran out"))?,
        )
    } else {
        None
    };
    let mut hello = client_hello(&HelloParams {
        random,
        server_name: &opts.server_name,
        x25519_public: *public.as_bytes(),
        hybrid_share: hybrid.as_deref(),
        grease_seed,
        ech_grease_payload: &payload[..payload_len],
    });
    let shared = x25519(&secret, &opts.server_key)?;
    let auth_key = AuthKey::derive(&shared, &random);
    auth::seal(
        &auth_key,
        &mut hello,
        SESSION_ID_OFFSET,
        &random,
        &opts.short_id,
        SystemTime::now(),
    )
    .map_err(io::Error::other)?;
    let mut check = |der: &[u8]| cert::check(der, &auth_key);
    handshake::client(tcp, &hello, &secret, &mut check).await
}

/// The tunnel after the VLESS request: reads skip the server's response
/// header, which may arrive with (or long after) the first bytes.
pub struct VlessStream<S> {
    inner: S,
    /// The response header read so far, until it is complete.
    head: Option<Vec<u8>>,
    /// Payload that arrived with the header.
    early: Vec<u8>,
    early_pos: usize,
}

impl<S> VlessStream<S> {
    fn new(inner: S) -> VlessStream<S> {
        VlessStream {
            inner,
            head: Some(Vec::with_capacity(2)),
            early: Vec::new(),
            early_pos: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for VlessStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while let Some(head) = this.head.as_mut() {
            let mut chunk = [0u8; 512];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed before its VLESS response",
                )));
            }
            head.extend_from_slice(rb.filled());
            match vless::response_len(head) {
                Ok(Some(n)) => {
                    this.early = head.split_off(n);
                    this.head = None;
                }
                Ok(None) if head.len() > 2 + 255 => {
                    return Poll::Ready(Err(io::Error::other("VLESS response too long")))
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            }
        }
        if this.early_pos < this.early.len() {
            let n = (this.early.len() - this.early_pos).min(buf.remaining());
            buf.put_slice(&this.early[this.early_pos..this.early_pos + n]);
            this.early_pos += n;
            if this.early_pos == this.early.len() {
                this.early = Vec::new();
                this.early_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for VlessStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The client side as an [`Outbound`].
#[derive(Clone, Debug)]
pub struct Client {
    opts: Arc<ClientOptions>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        Client {
            opts: Arc::new(opts),
        }
    }
}

impl Outbound for Client {
    type Stream = VlessStream<TlsStream<TcpStream>>;
    type Error = OpenError;
    const NAME: &'static str = "reality client";

    async fn open(
        &self,
        target: &TargetAddr,
        _origin: SocketAddr,
    ) -> Result<Opened<Self::Stream>, OpenError> {
        let opts = &self.opts;
        let tcp = TcpStream::connect(opts.server)
            .await
            .map_err(OpenError::Connect)?;
        tcp.set_nodelay(true).map_err(OpenError::Connect)?;
        let bound = tcp.local_addr().map_err(OpenError::Connect)?;
        let mut tls = timeout(HANDSHAKE_TIMEOUT, handshake(opts, tcp))
            .await
            .map_err(|_| OpenError::Timeout)?
            .map_err(OpenError::Handshake)?;
        let mut request = Vec::with_capacity(64);
        vless::encode_request(&opts.user, target, &mut request);
        tls.write_all(&request).await.map_err(OpenError::Request)?;
        tls.flush().await.map_err(OpenError::Request)?;
        Ok(Opened {
            stream: VlessStream::new(tls),
            bound,
        })
    }

    fn relay_options(&self) -> &RelayOptions {
        &self.opts.relay
    }
}

/// Serves the client side on `listener` forever.
pub async fn run_client(listener: TcpListener, opts: ClientOptions) -> io::Result<()> {
    outbound::run_client(listener, Client::new(opts)).await
}
