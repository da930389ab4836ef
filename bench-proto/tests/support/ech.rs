//! Helpers the `ech_*` tests share: a per-test PKI with ECH keys (the
//! inner name's certificate, the public name's, a CA file trusting both)
//! and our endpoints in process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bench_proto::ech::keys::{self, DEFAULT_PUBLIC_NAME};
use bench_proto::ech::server::ServerFiles;
use bench_proto::ech::{self, ClientOptions, ServerOptions, Settings};
use bench_proto::pki;

use super::{bind, TempDir};

pub const PASSWORD: &str = "correct horse battery staple";
/// The inner server name: the one ECH hides.
pub const INNER_NAME: &str = "localhost";

/// Certificates and ECH keys on disk.
pub struct EchPki {
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub public_cert: PathBuf,
    pub public_key: PathBuf,
    /// Both certificates: what a client trusts.
    pub ca: PathBuf,
    /// "ECH CONFIGS" and "ECH KEYS" PEM files.
    pub ech_config: PathBuf,
    pub ech_keys: PathBuf,
}

pub fn ech_pki() -> EchPki {
    let dir = TempDir::new("ech-pki");
    let inner = pki::self_signed(&[INNER_NAME, "127.0.0.1"]).unwrap();
    let (cert, key) = inner.write(dir.path()).unwrap();
    let public_dir = dir.join("public");
    std::fs::create_dir(&public_dir).unwrap();
    let public = pki::self_signed(&[DEFAULT_PUBLIC_NAME]).unwrap();
    let (public_cert, public_key) = public.write(&public_dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, format!("{}{}", inner.cert_pem, public.cert_pem)).unwrap();
    let (ech_config, ech_keys) = keys::generate(DEFAULT_PUBLIC_NAME)
        .unwrap()
        .write(dir.path())
        .unwrap();
    EchPki {
        dir,
        cert,
        key,
        public_cert,
        public_key,
        ca,
        ech_config,
        ech_keys,
    }
}

impl EchPki {
    pub fn files(&self) -> ServerFiles<'_> {
        ServerFiles {
            cert: &self.cert,
            key: &self.key,
            public_cert: &self.public_cert,
            public_key: &self.public_key,
            ech_keys: &self.ech_keys,
        }
    }

    pub fn server_options(&self, settings: &Settings) -> ServerOptions {
        ServerOptions::new(self.files(), PASSWORD, settings).unwrap()
    }

    /// Client options with our config (or GREASE when `grease`).
    pub fn client_options(
        &self,
        server: SocketAddr,
        password: &str,
        grease: bool,
    ) -> ClientOptions {
        let mut settings = Settings::default();
        let config = if grease {
            settings.set("grease", "true").unwrap();
            None
        } else {
            Some(self.ech_config.as_path())
        };
        ClientOptions::new(server, &self.ca, INNER_NAME, password, config, &settings).unwrap()
    }

    /// Client options holding `config` instead of ours.
    pub fn client_options_with(&self, server: SocketAddr, config: &Path) -> ClientOptions {
        ClientOptions::new(
            server,
            &self.ca,
            INNER_NAME,
            PASSWORD,
            Some(config),
            &Settings::default(),
        )
        .unwrap()
    }

    /// An "ECH CONFIGS" file for another key with the same public name: what
    /// a client with a stale or wrong config holds.
    pub fn wrong_config(&self) -> PathBuf {
        let other = self.dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        keys::generate(DEFAULT_PUBLIC_NAME)
            .unwrap()
            .write(&other)
            .unwrap()
            .0
    }
}

pub async fn start_server(opts: ServerOptions) -> SocketAddr {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(ech::server::run_server(l, opts));
    addr
}

pub async fn start_client(opts: ClientOptions) -> SocketAddr {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(ech::client::run_client(l, opts));
    addr
}
