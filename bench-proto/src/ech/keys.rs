//! ECH keys in the files `sing-box generate ech-keypair` writes, so that
//! the same per-run keys serve our endpoints and sing-box alike:
//!
//! - "ECH CONFIGS" (PEM): an `ECHConfigList`, what a client needs;
//! - "ECH KEYS" (PEM): for each key, `u16` length + the X25519 private key,
//!   then `u16` length + the `ECHConfig` it belongs to, what a server needs
//!   (the pieces BoringSSL's `SSL_ECH_KEYS_add` takes).
//!
//! The byte formats themselves (`ECHConfig`, the "ECH KEYS" contents) are
//! read and written in [`super::wire`], which builds without BoringSSL (and
//! is fuzzed: `fuzz/`).

use std::io;
use std::path::{Path, PathBuf};

use boring::pkey::{Id, PKey};

pub use super::wire::{
    config_list, decode_keys, encode_config, encode_keys, parse_config, split_config_list,
    EchConfigInfo, EchKey, AEADS, ECH_VERSION, KDF_HKDF_SHA256, KEM_X25519_SHA256, X25519_LEN,
};

/// The public name per-run keys are made for: never resolved, only sent as
/// the outer ClientHello's SNI, and the name of the certificate a server
/// shows when it rejects ECH.
pub const DEFAULT_PUBLIC_NAME: &str = "ech-public.protoprof.test";

const CONFIGS_TAG: &str = "ECH CONFIGS";
const KEYS_TAG: &str = "ECH KEYS";

/// Errors of making, reading or writing ECH keys.
#[derive(Debug, thiserror::Error)]
pub enum EchKeyError {
    #[error("{path}: {message}")]
    Load { path: String, message: String },
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("ECH public name {0:?}: use a DNS name of 1 to 255 bytes")]
    PublicName(String),
    #[error("generating an X25519 key: {0}")]
    Generate(String),
    #[error("{0}")]
    Malformed(String),
}

/// A generated key pair as the two PEM files hold it.
pub struct EchKeyPair {
    /// "ECH CONFIGS": for clients.
    pub configs_pem: String,
    /// "ECH KEYS": for servers (secret).
    pub keys_pem: String,
}

/// A fresh X25519 key and a one-config list for `public_name`, with a
/// random config id.
pub fn generate(public_name: &str) -> Result<EchKeyPair, EchKeyError> {
    if public_name.is_empty() || public_name.len() > 255 {
        return Err(EchKeyError::PublicName(public_name.to_owned()));
    }
    let gen_err = |e: boring::error::ErrorStack| EchKeyError::Generate(e.to_string());
    let key = PKey::generate(Id::X25519).map_err(gen_err)?;
    let mut private = [0u8; X25519_LEN];
    let mut public = [0u8; X25519_LEN];
    let private = key.raw_private_key(&mut private).map_err(gen_err)?.to_vec();
    let public = key.raw_public_key(&mut public).map_err(gen_err)?.to_vec();
    let mut id = [0u8; 1];
    boring::rand::rand_bytes(&mut id).map_err(gen_err)?;
    let config = encode_config(id[0], &public, public_name);
    let keys = encode_keys(&[EchKey {
        private_key: private,
        config: config.clone(),
    }]);
    Ok(EchKeyPair {
        configs_pem: pem_encode(CONFIGS_TAG, &config_list(&[&config])),
        keys_pem: pem_encode(KEYS_TAG, &keys),
    })
}

impl EchKeyPair {
    /// Writes `ech-configs.pem` and `ech-keys.pem` (mode 0600) into `dir`;
    /// returns their paths in that order.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), EchKeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let configs = dir.join("ech-configs.pem");
        let keys = dir.join("ech-keys.pem");
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| EchKeyError::Write { path, source }
        };
        std::fs::write(&configs, &self.configs_pem).map_err(err(&configs))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&keys)
            .map_err(err(&keys))?;
        io::Write::write_all(&mut f, self.keys_pem.as_bytes()).map_err(err(&keys))?;
        Ok((configs, keys))
    }
}

/// The ECHConfigList in an "ECH CONFIGS" PEM file, checked to hold at least
/// one config this module can read.
pub fn load_config_list(path: &Path) -> Result<Vec<u8>, EchKeyError> {
    let list = load_pem(path, CONFIGS_TAG)?;
    let load_err = |message: String| EchKeyError::Load {
        path: path.display().to_string(),
        message,
    };
    let configs = split_config_list(&list).map_err(load_err)?;
    let readable = configs.iter().filter(|c| parse_config(c).is_ok()).count();
    if readable == 0 {
        return Err(load_err(format!(
            "no ECHConfig of version {ECH_VERSION:#06x} in the list"
        )));
    }
    Ok(list)
}

/// The keys in an "ECH KEYS" PEM file, each with a readable config.
pub fn load_keys(path: &Path) -> Result<Vec<EchKey>, EchKeyError> {
    let bytes = load_pem(path, KEYS_TAG)?;
    decode_keys(&bytes).map_err(|message| EchKeyError::Load {
        path: path.display().to_string(),
        message,
    })
}

fn load_pem(path: &Path, tag: &str) -> Result<Vec<u8>, EchKeyError> {
    let load_err = |message: String| EchKeyError::Load {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
    let blocks = pem::parse_many(&text).map_err(|e| load_err(e.to_string()))?;
    blocks
        .into_iter()
        .find(|b| b.tag() == tag)
        .map(|b| b.into_contents())
        .ok_or_else(|| {
            load_err(format!(
                "no \"{tag}\" PEM block (write one with `sing-box generate ech-keypair NAME`)"
            ))
        })
}

fn pem_encode(tag: &str, contents: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, contents.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::hpke::HpkeKey as BoringHpke;

    #[test]
    fn generated_pair_round_trips() {
        let pair = generate("public.example").unwrap();
        assert!(pair.configs_pem.starts_with("-----BEGIN ECH CONFIGS-----"));
        assert!(pair.keys_pem.starts_with("-----BEGIN ECH KEYS-----"));
        let list = pem::parse(&pair.configs_pem).unwrap().into_contents();
        let configs = split_config_list(&list).unwrap();
        assert_eq!(configs.len(), 1);
        let info = parse_config(configs[0]).unwrap();
        assert_eq!(info.public_name, "public.example");
        assert_eq!(info.kem_id, KEM_X25519_SHA256);
        assert_eq!(info.public_key.len(), 32);
        assert_eq!(
            info.cipher_suites,
            vec![(1, 1), (1, 2), (1, 3)],
            "HKDF-SHA256 with the three AEADs"
        );
        let keys = decode_keys(&pem::parse(&pair.keys_pem).unwrap().into_contents()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].config, configs[0]);
        assert_eq!(keys[0].private_key.len(), 32);
        // That the private key belongs to the config's public key is shown
        // by the handshakes in tests/ech_handshake.rs.
        assert!(BoringHpke::dhkem_p256_sha256(&keys[0].private_key).is_ok());
        assert_eq!(format!("{:?}", keys[0]), "EchKey { config: 73, .. }");
    }
}
