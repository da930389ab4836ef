//! pki: per-run certificates, and the rustls configurations every TLS-based
//! protocol (tls, tuic, hysteria2) builds from them.
//!
//! Certificates are generated for each run (never committed) and trusted by
//! the client explicitly through `--ca`; there is no "skip verification"
//! mode, so a profile measures the same handshake a real deployment does.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// A certificate and its private key, PEM-encoded.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Errors of generating, loading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Generate(String),
    #[error("{path}: {message}")]
    Load { path: String, message: String },
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A self-signed certificate for `names` (DNS names or IP addresses),
/// whose subject is the first name: distinct subjects let one CA file
/// trust several of them (OpenSSL-style verifiers find issuers by subject).
pub fn self_signed(names: &[&str]) -> Result<Identity, PkiError> {
    let generate = |e: rcgen::Error| PkiError::Generate(e.to_string());
    let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(owned).map_err(generate)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, *first);
    }
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Identity {
    /// Write `cert.pem` and `key.pem` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        use std::os::unix::fs::OpenOptionsExt;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| PkiError::Write { path, source }
        };
        std::fs::write(&cert, &self.cert_pem).map_err(err(&cert))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .map_err(err(&key))?;
        io::Write::write_all(&mut f, self.key_pem.as_bytes()).map_err(err(&key))?;
        Ok((cert, key))
    }
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let load_err = |message: String| PkiError::Load {
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| load_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| load_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(load_err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PkiError::Load {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 server configuration with the given ALPN protocols.
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, PkiError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A TLS 1.3 client configuration that trusts exactly the certificates in
/// `ca`, with the given ALPN protocols.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_loads_into_both_configs() {
        let dir = std::env::temp_dir().join(format!("pp-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let id = self_signed(&["localhost", "127.0.0.1"]).expect("generate");
        let (cert, key) = id.write(&dir).expect("write");
        let server = server_config(&cert, &key, &[b"h3"]).expect("server config");
        assert_eq!(server.alpn_protocols, vec![b"h3".to_vec()]);
        client_config(&cert, &[]).expect("client config");
        let mode = std::fs::metadata(&key).expect("meta");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        assert!(load_certs(&key).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
