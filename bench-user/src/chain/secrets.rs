//! The run's credentials: a certificate and key for the TLS-based
//! protocols, a password and a UUID, in a private directory (mode 0700)
//! outside the run directory, removed when the run ends. Reports never
//! carry them: [`Secrets::redact`] replaces them in anything written.

use std::{
    fmt::Write as _,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use ring::rand::{SecureRandom, SystemRandom};

/// Errors of making the run's credentials.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("creating the credentials directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("generating credentials: {0}")]
    Generate(String),
}

/// Per-run credentials.
#[derive(Debug)]
pub struct Secrets {
    dir: PathBuf,
    /// Certificate for `localhost` and 127.0.0.1 (PEM); also the client's CA.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub password: String,
    pub uuid: String,
    /// SSH host key (OpenSSH private key) and its `.pub`.
    pub ssh_host_key: PathBuf,
    pub ssh_host_pub: PathBuf,
    /// ECH: the keys and configs, the public name's certificate and key,
    /// and a CA file trusting both certificates.
    pub ech: EchSecrets,
    /// REALITY: the server's X25519 key pair (base64url, as Xray and shoes
    /// write it) and a short id (16 hex digits).
    pub reality: RealitySecrets,
}

/// The REALITY part of the run's credentials.
#[derive(Debug)]
pub struct RealitySecrets {
    pub private_key: String,
    pub public_key: String,
    pub short_id: String,
}

impl RealitySecrets {
    fn create() -> Result<RealitySecrets, SecretsError> {
        let (private_key, public_key) = bench_proto::reality::generate_key_pair()
            .map_err(|e| SecretsError::Generate(e.to_string()))?;
        Ok(RealitySecrets {
            private_key,
            public_key,
            short_id: hex(&random_bytes::<8>()?),
        })
    }
}

/// The ECH part of the run's credentials (protocol `ech`, and sing-box's
/// `tls.ech`), in the files `sing-box generate ech-keypair` writes.
#[derive(Debug)]
pub struct EchSecrets {
    /// "ECH CONFIGS" PEM, for clients.
    pub config: PathBuf,
    /// "ECH KEYS" PEM, for servers.
    pub keys: PathBuf,
    /// Certificate and key for the ECH public name.
    pub public_cert: PathBuf,
    pub public_key: PathBuf,
    /// The inner and the public name's certificates.
    pub ca: PathBuf,
}

impl EchSecrets {
    fn create(dir: &Path, inner_cert_pem: &str) -> Result<EchSecrets, SecretsError> {
        use bench_proto::ech::keys;
        let generate = |e: &dyn std::fmt::Display| SecretsError::Generate(e.to_string());
        let public_dir = dir.join("ech-public");
        std::fs::create_dir(&public_dir).map_err(|e| generate(&e))?;
        let public = bench_proto::pki::self_signed(&[keys::DEFAULT_PUBLIC_NAME])
            .map_err(|e| generate(&e))?;
        let (public_cert, public_key) = public.write(&public_dir).map_err(|e| generate(&e))?;
        let ca = dir.join("ech-ca.pem");
        std::fs::write(&ca, format!("{inner_cert_pem}{}", public.cert_pem))
            .map_err(|e| generate(&e))?;
        let (config, keys) = keys::generate(keys::DEFAULT_PUBLIC_NAME)
            .and_then(|pair| pair.write(dir))
            .map_err(|e| generate(&e))?;
        Ok(EchSecrets {
            config,
            keys,
            public_cert,
            public_key,
            ca,
        })
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretsError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| SecretsError::Generate("the system random source failed".into()))?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Secrets {
    /// Make fresh credentials in a new private directory.
    pub fn create() -> Result<Secrets, SecretsError> {
        let tag = hex(&random_bytes::<6>()?);
        let dir =
            std::env::temp_dir().join(format!("protoprof-secrets-{}-{tag}", std::process::id()));
        let dir_err = |source| SecretsError::Dir {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir(&dir).map_err(dir_err)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        let identity = bench_proto::pki::self_signed(&["localhost", "127.0.0.1"])
            .map_err(|e| SecretsError::Generate(e.to_string()))?;
        let (cert, key) = identity
            .write(&dir)
            .map_err(|e| SecretsError::Generate(e.to_string()))?;
        let password = hex(&random_bytes::<16>()?);
        let mut u = random_bytes::<16>()?;
        // RFC 9562 version 4, variant 10.
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let h = hex(&u);
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        );
        let ssh_host_key = dir.join("ssh_host_ed25519_key");
        bench_proto::ssh::generate_key(&ssh_host_key)
            .map_err(|e| SecretsError::Generate(e.to_string()))?;
        let ssh_host_pub = dir.join("ssh_host_ed25519_key.pub");
        let ech = EchSecrets::create(&dir, &identity.cert_pem)?;
        let reality = RealitySecrets::create()?;
        Ok(Secrets {
            dir,
            cert,
            key,
            password,
            uuid,
            ssh_host_key,
            ssh_host_pub,
            ech,
            reality,
        })
    }

    /// The private directory (rendered configuration files go here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `text` with the password, the UUID, and REALITY's private key and
    /// short id replaced by `<secret>`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.password, "<secret>")
            .replace(&self.uuid, "<secret>")
            .replace(&self.reality.private_key, "<secret>")
            .replace(&self.reality.short_id, "<secret>")
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_private_and_removed() {
        let s = Secrets::create().expect("secrets");
        let dir = s.dir().to_path_buf();
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(s.cert.is_file() && s.key.is_file());
        assert!(s.ssh_host_key.is_file() && s.ssh_host_pub.is_file());
        for f in [
            &s.ech.config,
            &s.ech.keys,
            &s.ech.public_cert,
            &s.ech.public_key,
        ] {
            assert!(f.starts_with(&dir), "{}", f.display());
        }
        assert_eq!(
            bench_proto::ech::keys::load_keys(&s.ech.keys)
                .expect("keys")
                .len(),
            1
        );
        bench_proto::ech::keys::load_config_list(&s.ech.config).expect("configs");
        let ca = std::fs::read_to_string(&s.ech.ca).expect("ca");
        assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(s.password.len(), 32);
        assert_eq!(s.uuid.len(), 36);
        assert_eq!(&s.uuid[14..15], "4");
        assert_ne!(Secrets::create().expect("again").password, s.password);
        assert_eq!(
            s.redact(&format!("--password {} --user {}", s.password, s.uuid)),
            "--password <secret> --user <secret>"
        );
        assert_eq!(
            s.redact(&format!(
                "--reality-key {} --set reality.short_ids={}",
                s.reality.private_key, s.reality.short_id
            )),
            "--reality-key <secret> --set reality.short_ids=<secret>"
        );
        assert_eq!(
            bench_proto::reality::parse_x25519_key(&s.reality.public_key)
                .expect("public key")
                .len(),
            32
        );
        drop(s);
        assert!(!dir.exists());
    }
}
