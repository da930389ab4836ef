//! The server side: TLS in, the Trojan request judged, TCP out to its target
//! or the refused connection handed to the fallback.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::session;
use super::wire::{read_request, PasswordHash, Refusal};
use super::{RecordLayer, ServerOptions, HANDSHAKE_TIMEOUT};
use crate::addr::TargetAddr;
use crate::dial::{connect, DialError};
use crate::relay::{relay, RelayOptions};
use crate::serve::serve;

/// Why one proxied connection failed on the server side.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake: no answer within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    /// Reading the request failed.
    #[error("reading the request: {0}")]
    ReadRequest(io::Error),
    /// The request was refused and there is no fallback.
    #[error("refused ({0}); no fallback set, closed")]
    Refused(Refusal),
    /// The request was refused and the fallback failed.
    #[error("refused ({refusal}); fallback {fallback}: {source}")]
    Fallback {
        /// Why it was refused.
        refusal: Refusal,
        /// The fallback.
        fallback: TargetAddr,
        /// What failed with the fallback.
        source: io::Error,
    },
    /// The target could not be reached.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Relaying failed.
    #[error("relaying for {target}: {source}")]
    Relay {
        /// The target.
        target: TargetAddr,
        /// Why.
        source: io::Error,
    },
}

/// What the Trojan part of a server needs to know.
#[derive(Debug, Clone)]
pub struct Trojan {
    /// The password, hashed.
    pub password: PasswordHash,
    /// Where refused connections go; `None` closes them.
    pub fallback: Option<TargetAddr>,
    /// How to relay once the stream is up.
    pub relay: RelayOptions,
}

/// Serves the server side on `listener` forever: Trojan over TLS in, TCP out
/// to each connection's target. Returns only if the listener fails for good.
pub async fn run_server(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::clone(&opts.tls));
    let trojan = Arc::new(Trojan {
        password: opts.password,
        fallback: opts.fallback,
        relay: opts.relay,
    });
    let records = opts.records;
    serve(listener, "tls server", move |tcp| {
        server_conn(tcp, acceptor.clone(), records, Arc::clone(&trojan))
    })
    .await
}

async fn server_conn(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    records: RecordLayer,
    trojan: Arc<Trojan>,
) -> Result<(), ServerError> {
    match records {
        RecordLayer::Own => {
            let config = Arc::clone(acceptor.config());
            let inbound = timeout(HANDSHAKE_TIMEOUT, session::accept(config, tcp))
                .await
                .map_err(|_| ServerError::HandshakeTimeout)?
                .map_err(ServerError::Handshake)?;
            serve_trojan(inbound, &trojan).await
        }
        RecordLayer::Rustls => {
            let inbound = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .map_err(|_| ServerError::HandshakeTimeout)?
                .map_err(ServerError::Handshake)?;
            serve_trojan(inbound, &trojan).await
        }
    }
}

/// Serves one Trojan connection whose (TLS) handshake is done: reads the
/// request, connects to its target and relays; a refused request goes to
/// the fallback with every byte read so far, so that to a prober the server
/// looks like that server.
pub async fn serve_trojan<S>(mut inbound: S, trojan: &Trojan) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Everything read so far: a refused connection's fallback gets all of it,
    // an accepted one's target gets what follows the header.
    let mut buf = Vec::with_capacity(4096);
    let request = read_request(&mut inbound, &mut buf, &trojan.password)
        .await
        .map_err(ServerError::ReadRequest)?;
    let (target, header_len) = match request {
        Ok(accepted) => accepted,
        Err(refusal) => {
            let Some(fallback) = &trojan.fallback else {
                // Best effort close_notify: the peer may be gone already.
                let _ = inbound.shutdown().await;
                return Err(ServerError::Refused(refusal));
            };
            let fallback_err = |source| ServerError::Fallback {
                refusal,
                fallback: fallback.clone(),
                source,
            };
            let mut upstream = match connect(fallback).await {
                Ok(s) => s,
                Err(e) => return Err(fallback_err(e.into_io_error())),
            };
            if let Err(e) = upstream.write_all(&buf).await {
                return Err(fallback_err(e));
            }
            drop(buf);
            return match relay(inbound, upstream, &trojan.relay).await {
                Ok(_) => Ok(()),
                Err(e) => Err(fallback_err(e)),
            };
        }
    };

    let mut upstream = match connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            // Trojan has no way to say why; the client sees the stream end.
            let _ = inbound.shutdown().await;
            return Err(e.into());
        }
    };
    if header_len < buf.len() {
        let early = &buf[header_len..];
        if let Err(source) = upstream.write_all(early).await {
            return Err(ServerError::Relay { target, source });
        }
    }
    drop(buf);
    relay(inbound, upstream, &trojan.relay)
        .await
        .map_err(|source| ServerError::Relay { target, source })?;
    Ok(())
}
