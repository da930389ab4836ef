//! The `ech` server side: Trojan over TLS 1.3 with ECH in, TCP out.
//!
//! Two certificates: the inner server name's (`--cert`), served when ECH
//! is accepted or a client sends no ECH, and the public name's
//! (`--public-cert`), served when the ClientHello's SNI is a public name of
//! our ECH configs, which is what a client whose ECH we could not decrypt
//! sends. BoringSSL then sends our configs as retry configs (every key is
//! added as a retry config).

use std::io;
use std::path::Path;
use std::sync::Arc;

use boring::hpke::HpkeKey;
use boring::ssl::{
    NameType, SniError, SslAcceptor, SslContext, SslContextBuilder, SslEchKeys, SslFiletype,
    SslMethod, SslVersion,
};

use super::stream::buffered;
use super::{keys, EchError, EchStream, Settings};
use crate::relay::RelayOptions;
use crate::serve::serve;
use crate::tls::server::{serve_trojan, ServerError, Trojan};
use crate::tls::{PasswordHash, HANDSHAKE_TIMEOUT};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Paths of the server's certificates and keys.
#[derive(Debug, Clone, Copy)]
pub struct ServerFiles<'a> {
    /// Certificate chain and key for the inner server name.
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Certificate chain and key for the ECH configs' public name.
    pub public_cert: &'a Path,
    pub public_key: &'a Path,
    /// "ECH KEYS" PEM (as `sing-box generate ech-keypair` writes it).
    pub ech_keys: &'a Path,
}

/// Options of the server side.
#[derive(Clone)]
pub struct ServerOptions {
    /// TLS 1.3 with the ECH keys and both certificates.
    pub acceptor: SslAcceptor,
    /// The public names of the ECH configs served.
    pub public_names: Vec<String>,
    /// The Trojan part: password, fallback, relay (`tls`'s).
    pub trojan: Trojan,
    /// Bytes buffered each way between BoringSSL and the socket
    /// (`ech.io_buffer`).
    pub io_buffer: usize,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("public_names", &self.public_names)
            .field("fallback", &self.trojan.fallback)
            .finish_non_exhaustive()
    }
}

/// Sets `ctx` to TLS 1.3 only, serving the chain in `cert` with `key`.
fn set_identity(ctx: &mut SslContextBuilder, cert: &Path, key: &Path) -> Result<(), EchError> {
    ctx.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    ctx.set_certificate_chain_file(cert)
        .map_err(|e| EchError::load(cert, e))?;
    ctx.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| EchError::load(key, e))?;
    ctx.check_private_key()
        .map_err(|e| EchError::load(key, format!("does not match the certificate: {e}")))?;
    Ok(())
}

impl ServerOptions {
    /// Options serving `files`; relay options default.
    pub fn new(
        files: ServerFiles<'_>,
        password: &str,
        settings: &Settings,
    ) -> Result<ServerOptions, EchError> {
        let loaded = keys::load_keys(files.ech_keys)?;
        let mut ech_keys = SslEchKeys::builder()?;
        let mut public_names = Vec::new();
        for k in &loaded {
            let info =
                keys::parse_config(&k.config).map_err(|m| EchError::load(files.ech_keys, m))?;
            // Named for P-256 in boring, but it sets up DHKEM(X25519, HKDF-SHA256).
            let hpke = HpkeKey::dhkem_p256_sha256(&k.private_key)
                .map_err(|e| EchError::load(files.ech_keys, e))?;
            ech_keys.add_key(true, &k.config, hpke).map_err(|e| {
                EchError::load(files.ech_keys, format!("key for {}: {e}", info.public_name))
            })?;
            if !public_names.contains(&info.public_name) {
                public_names.push(info.public_name);
            }
        }
        let ech_keys = ech_keys.build();

        let mut public = SslContext::builder(SslMethod::tls())?;
        set_identity(&mut public, files.public_cert, files.public_key)?;
        // Whichever context ends up serving a handshake holds the keys, so
        // a rejection always carries retry configs.
        public.set_ech_keys(&ech_keys)?;
        let public = public.build();
        let mut inner = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
        set_identity(&mut inner, files.cert, files.key)?;
        inner.set_ech_keys(&ech_keys)?;
        let names = public_names.clone();
        // Runs after ECH decryption: the name is the inner one when ECH was
        // accepted, the outer (public) one when it was not.
        inner.set_servername_callback(move |ssl, _alert| {
            let outer = ssl
                .servername(NameType::HOST_NAME)
                .is_some_and(|n| names.iter().any(|p| p.eq_ignore_ascii_case(n)));
            if outer && !ssl.ech_accepted() {
                ssl.set_ssl_context(&public)
                    .map_err(|_| SniError::ALERT_FATAL)?;
            }
            Ok(())
        });
        let acceptor = inner.build();
        Ok(ServerOptions {
            acceptor,
            public_names,
            trojan: Trojan {
                password: PasswordHash::new(password),
                fallback: settings.fallback.clone(),
                relay: RelayOptions::default(),
            },
            io_buffer: settings.io_buffer,
        })
    }
}

/// Accepts TLS on `tcp`: the handshake alone, as the server side runs it.
pub async fn accept(opts: &ServerOptions, tcp: TcpStream) -> io::Result<EchStream> {
    tokio_boring::accept(&opts.acceptor, buffered(tcp, opts.io_buffer))
        .await
        .map(EchStream::new)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Serves the server side on `listener` forever: Trojan over TLS with ECH
/// in, TCP out to each connection's target. Returns only if the listener
/// fails for good.
pub async fn run_server(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    serve(listener, "ech server", move |tcp| {
        server_conn(tcp, Arc::clone(&opts))
    })
    .await
}

/// BoringSSL's handshake, then `tls`'s Trojan server part.
async fn server_conn(tcp: TcpStream, opts: Arc<ServerOptions>) -> Result<(), ServerError> {
    let inbound = timeout(HANDSHAKE_TIMEOUT, accept(&opts, tcp))
        .await
        .map_err(|_| ServerError::HandshakeTimeout)?
        .map_err(ServerError::Handshake)?;
    serve_trojan(inbound, &opts.trojan).await
}
