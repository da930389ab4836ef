//! OpenSSH key files: loading host, client and authorized keys, and making
//! a new Ed25519 key pair per run.

use std::fmt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{private::Ed25519Keypair, AuthorizedKeys, LineEnding};
use russh::keys::{PrivateKey, PublicKey};

use super::SshError;

fn key_error(path: &Path, e: impl fmt::Display) -> SshError {
    SshError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads an OpenSSH private key file (unencrypted).
pub fn load_private_key(path: &Path) -> Result<PrivateKey, SshError> {
    russh::keys::load_secret_key(path, None).map_err(|e| key_error(path, e))
}

/// Reads a one-line OpenSSH public key file (`ssh-ed25519 AAAA… comment`).
pub fn load_public_key(path: &Path) -> Result<PublicKey, SshError> {
    russh::keys::load_public_key(path).map_err(|e| key_error(path, e))
}

/// Reads an `authorized_keys` file. Key options (`from=`, `command=`, …)
/// are ignored: every key listed may open `direct-tcpip` channels.
pub fn load_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, SshError> {
    let entries = AuthorizedKeys::read_file(path).map_err(|e| key_error(path, e))?;
    if entries.is_empty() {
        return Err(key_error(path, "no key in the file"));
    }
    Ok(entries
        .into_iter()
        .map(|e| e.public_key().clone())
        .collect())
}

/// Generates an Ed25519 key pair and writes the private key to `path` (mode
/// 0600, OpenSSH format) and the public key to `path` + `.pub`; returns the
/// public key.
pub fn generate_key(path: &Path) -> Result<PublicKey, SshError> {
    let mut seed = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut seed)
        .map_err(|e| SshError::Config(format!("generating a key: {e:?}")))?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.write_openssh_file(path, LineEnding::LF)
        .map_err(|e| key_error(path, e))?;
    let public = key.public_key().clone();
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    let line = public.to_openssh().map_err(|e| key_error(&pub_path, e))?;
    std::fs::write(&pub_path, line + "\n").map_err(|e| key_error(&pub_path, e))?;
    Ok(public)
}
