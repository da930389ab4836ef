//! The byte formats of ECH keys, as `sing-box generate ech-keypair` writes
//! them (the PEM wrapping is [`keys`](super::keys)'s):
//!
//! - an `ECHConfigList`: `u16`-prefixed `ECHConfig`s, what a client needs;
//! - "ECH KEYS" contents: for each key, `u16` length + the X25519 private
//!   key, then `u16` length + the `ECHConfig` it belongs to, what a server
//!   needs.
//!
//! The `ECHConfig` (draft-ietf-tls-esni, version 0xfe0d): `u16` version,
//! `u16` length, then `u8` config_id, `u16` KEM id, `u16`-prefixed public
//! key, `u16`-prefixed cipher suites (`u16` KDF, `u16` AEAD each), `u8`
//! maximum name length, `u8`-prefixed public name, `u16`-prefixed
//! extensions.
//!
//! No BoringSSL here: the fuzz crate (`fuzz/`) builds this module alone.

/// The ECHConfig version this module reads and writes.
pub const ECH_VERSION: u16 = 0xfe0d;
/// HPKE KEM DHKEM(X25519, HKDF-SHA256), the one sing-box and BoringSSL use.
pub const KEM_X25519_SHA256: u16 = 0x0020;
/// HPKE KDF HKDF-SHA256.
pub const KDF_HKDF_SHA256: u16 = 0x0001;
/// HPKE AEADs offered by generated configs: AES-128-GCM, AES-256-GCM,
/// ChaCha20-Poly1305 (as sing-box offers them).
pub const AEADS: [u16; 3] = [0x0001, 0x0002, 0x0003];

/// Bytes of an X25519 private (and public) key.
pub const X25519_LEN: usize = 32;

/// One server key: the X25519 private key and the ECHConfig it serves.
#[derive(Clone, PartialEq, Eq)]
pub struct EchKey {
    pub private_key: Vec<u8>,
    pub config: Vec<u8>,
}

impl std::fmt::Debug for EchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("EchKey")
            .field("config", &self.config.len())
            .finish_non_exhaustive()
    }
}

/// What an ECHConfig says, as far as the endpoints use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchConfigInfo {
    pub config_id: u8,
    pub kem_id: u16,
    pub public_key: Vec<u8>,
    /// (KDF, AEAD) pairs.
    pub cipher_suites: Vec<(u16, u16)>,
    pub public_name: String,
}
/// An ECHConfig for one X25519 public key.
pub fn encode_config(config_id: u8, public_key: &[u8], public_name: &str) -> Vec<u8> {
    let mut contents = Vec::with_capacity(64 + public_name.len());
    contents.push(config_id);
    contents.extend_from_slice(&KEM_X25519_SHA256.to_be_bytes());
    put_u16_prefixed(&mut contents, public_key);
    let mut suites = Vec::with_capacity(4 * AEADS.len());
    for aead in AEADS {
        suites.extend_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
        suites.extend_from_slice(&aead.to_be_bytes());
    }
    put_u16_prefixed(&mut contents, &suites);
    // maximum_name_length 0: the client pads by its own rule.
    contents.push(0);
    contents.push(public_name.len() as u8);
    contents.extend_from_slice(public_name.as_bytes());
    put_u16_prefixed(&mut contents, &[]);
    let mut config = Vec::with_capacity(4 + contents.len());
    config.extend_from_slice(&ECH_VERSION.to_be_bytes());
    put_u16_prefixed(&mut config, &contents);
    config
}

/// An ECHConfigList of `configs`.
pub fn config_list(configs: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    let body: Vec<u8> = configs.concat();
    put_u16_prefixed(&mut list, &body);
    list
}

fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every caller's field is far below 64 KiB.
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads `u16`-prefixed bytes off the front of `b`.
fn take_u16_prefixed<'a>(b: &mut &'a [u8], what: &str) -> Result<&'a [u8], String> {
    let len = take_u16(b, what)? as usize;
    take(b, len, what)
}

fn take_u16(b: &mut &[u8], what: &str) -> Result<u16, String> {
    let v = take(b, 2, what)?;
    Ok(u16::from_be_bytes([v[0], v[1]]))
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err(format!(
            "truncated {what}: {n} bytes needed, {} left",
            b.len()
        ));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

/// The configs of an ECHConfigList, each with its version and length.
pub fn split_config_list(list: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut b = list;
    let mut body = take_u16_prefixed(&mut b, "ECHConfigList")?;
    if !b.is_empty() {
        return Err(format!("{} bytes after the ECHConfigList", b.len()));
    }
    if body.is_empty() {
        return Err("the ECHConfigList is empty".into());
    }
    let mut configs = Vec::new();
    while !body.is_empty() {
        let start = body;
        let _version = take_u16(&mut body, "ECHConfig version")?;
        let contents = take_u16_prefixed(&mut body, "ECHConfig")?;
        configs.push(&start[..4 + contents.len()]);
    }
    Ok(configs)
}

/// Reads one ECHConfig (version 0xfe0d).
pub fn parse_config(config: &[u8]) -> Result<EchConfigInfo, String> {
    let mut b = config;
    let version = take_u16(&mut b, "ECHConfig version")?;
    if version != ECH_VERSION {
        return Err(format!(
            "ECHConfig version {version:#06x}; only {ECH_VERSION:#06x} is supported"
        ));
    }
    let mut c = take_u16_prefixed(&mut b, "ECHConfig")?;
    if !b.is_empty() {
        return Err(format!("{} bytes after the ECHConfig", b.len()));
    }
    let config_id = take(&mut c, 1, "config_id")?[0];
    let kem_id = take_u16(&mut c, "kem_id")?;
    let public_key = take_u16_prefixed(&mut c, "public_key")?.to_vec();
    let mut suites = take_u16_prefixed(&mut c, "cipher_suites")?;
    if suites.is_empty() || suites.len() % 4 != 0 {
        return Err(format!(
            "cipher_suites of {} bytes; want a non-empty multiple of 4",
            suites.len()
        ));
    }
    let mut cipher_suites = Vec::with_capacity(suites.len() / 4);
    while !suites.is_empty() {
        let kdf = take_u16(&mut suites, "KDF id")?;
        let aead = take_u16(&mut suites, "AEAD id")?;
        cipher_suites.push((kdf, aead));
    }
    let _max_name_len = take(&mut c, 1, "maximum_name_length")?;
    let name_len = take(&mut c, 1, "public_name length")?[0] as usize;
    let name = take(&mut c, name_len, "public_name")?;
    let public_name = std::str::from_utf8(name)
        .ok()
        .filter(|n| !n.is_empty() && n.is_ascii())
        .ok_or("public_name is not a non-empty ASCII name")?
        .to_owned();
    let _extensions = take_u16_prefixed(&mut c, "extensions")?;
    if !c.is_empty() {
        return Err(format!("{} bytes after the extensions", c.len()));
    }
    Ok(EchConfigInfo {
        config_id,
        kem_id,
        public_key,
        cipher_suites,
        public_name,
    })
}

/// The "ECH KEYS" contents for `keys`.
pub fn encode_keys(keys: &[EchKey]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in keys {
        put_u16_prefixed(&mut out, &k.private_key);
        put_u16_prefixed(&mut out, &k.config);
    }
    out
}

/// Reads "ECH KEYS" contents: at least one key, each an X25519 private key
/// with a readable X25519 config.
pub fn decode_keys(bytes: &[u8]) -> Result<Vec<EchKey>, String> {
    let mut b = bytes;
    let mut keys = Vec::new();
    while !b.is_empty() {
        let private_key = take_u16_prefixed(&mut b, "private key")?.to_vec();
        let config = take_u16_prefixed(&mut b, "ECHConfig")?.to_vec();
        if private_key.len() != X25519_LEN {
            return Err(format!(
                "private key of {} bytes; X25519 keys have {X25519_LEN}",
                private_key.len()
            ));
        }
        let info = parse_config(&config)?;
        if info.kem_id != KEM_X25519_SHA256 {
            return Err(format!(
                "KEM {:#06x}; only DHKEM(X25519, HKDF-SHA256) ({KEM_X25519_SHA256:#06x}) is supported",
                info.kem_id
            ));
        }
        keys.push(EchKey {
            private_key,
            config,
        });
    }
    if keys.is_empty() {
        return Err("no key in the \"ECH KEYS\" block".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_inputs_name_the_field() {
        let config = encode_config(7, &[9u8; 32], "p.example");
        assert_eq!(parse_config(&config).unwrap().config_id, 7);
        for cut in 0..config.len() {
            assert!(parse_config(&config[..cut]).is_err(), "cut {cut}");
        }
        let mut v = config.clone();
        v[0] = 0xfe;
        v[1] = 0x0a;
        assert_eq!(
            parse_config(&v).unwrap_err(),
            "ECHConfig version 0xfe0a; only 0xfe0d is supported"
        );
        assert_eq!(
            decode_keys(&encode_keys(&[EchKey {
                private_key: vec![1; 31],
                config: config.clone()
            }]))
            .unwrap_err(),
            "private key of 31 bytes; X25519 keys have 32"
        );
        assert_eq!(
            decode_keys(&[]).unwrap_err(),
            "no key in the \"ECH KEYS\" block"
        );
        assert!(split_config_list(&[0, 0]).is_err());
        let list = config_list(&[&config, &config]);
        assert_eq!(split_config_list(&list).unwrap().len(), 2);
        let mut trailing = list.clone();
        trailing.push(0);
        assert_eq!(
            split_config_list(&trailing).unwrap_err(),
            "1 bytes after the ECHConfigList"
        );
    }
}
