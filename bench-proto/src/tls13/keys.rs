//! The TLS 1.3 key schedule (RFC 8446, 7.1) and the three cipher suites,
//! on ring: HKDF, HMAC and the transcript hash.

use ring::{aead, digest, hkdf, hmac};

/// A TLS 1.3 cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    Aes128GcmSha256,
    Aes256GcmSha384,
    Chacha20Poly1305Sha256,
}

impl CipherSuite {
    /// Every suite, in the order a server of ours prefers them.
    pub const ALL: [CipherSuite; 3] = [
        CipherSuite::Aes128GcmSha256,
        CipherSuite::Aes256GcmSha384,
        CipherSuite::Chacha20Poly1305Sha256,
    ];

    /// The suite's code point.
    pub fn id(self) -> u16 {
        match self {
            CipherSuite::Aes128GcmSha256 => 0x1301,
            CipherSuite::Aes256GcmSha384 => 0x1302,
            CipherSuite::Chacha20Poly1305Sha256 => 0x1303,
        }
    }

    /// The suite with this code point, if we implement it.
    pub fn from_id(id: u16) -> Option<CipherSuite> {
        CipherSuite::ALL.into_iter().find(|s| s.id() == id)
    }

    pub(crate) fn aead(self) -> &'static aead::Algorithm {
        match self {
            CipherSuite::Aes128GcmSha256 => &aead::AES_128_GCM,
            CipherSuite::Aes256GcmSha384 => &aead::AES_256_GCM,
            CipherSuite::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    pub(crate) fn digest(self) -> &'static digest::Algorithm {
        match self {
            CipherSuite::Aes256GcmSha384 => &digest::SHA384,
            _ => &digest::SHA256,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            CipherSuite::Aes256GcmSha384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            CipherSuite::Aes256GcmSha384 => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA256,
        }
    }

    /// Hash output length.
    pub(crate) fn hash_len(self) -> usize {
        self.digest().output_len()
    }
}

/// A secret of the schedule: as long as the suite's hash.
#[derive(Clone)]
pub struct Secret {
    bytes: [u8; 48],
    len: usize,
}

impl Secret {
    fn new(bytes: &[u8]) -> Secret {
        let mut out = [0u8; 48];
        out[..bytes.len()].copy_from_slice(bytes);
        Secret {
            bytes: out,
            len: bytes.len(),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// ring's output-length type for HKDF-Expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, context, len) into `out`.
pub(crate) fn expand_label(
    suite: CipherSuite,
    secret: &Secret,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) {
    let prk = hkdf::Prk::new_less_safe(suite.hkdf(), secret.as_bytes());
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    // HkdfLabel: u16 length, "tls13 " + label, context, each length-prefixed.
    let label_len = [u8::try_from(6 + label.len()).unwrap_or(u8::MAX)];
    let context_len = [u8::try_from(context.len()).unwrap_or(u8::MAX)];
    let info: [&[u8]; 6] = [&len, &label_len, b"tls13 ", label, &context_len, context];
    // Lengths are ours and within HKDF's limit (255 × hash length).
    if let Ok(okm) = prk.expand(&info, Len(out.len())) {
        let _ = okm.fill(out);
    }
}

fn derive_secret(
    suite: CipherSuite,
    secret: &Secret,
    label: &[u8],
    transcript_hash: &[u8],
) -> Secret {
    let mut out = [0u8; 48];
    let n = suite.hash_len();
    expand_label(suite, secret, label, transcript_hash, &mut out[..n]);
    Secret::new(&out[..n])
}

fn extract(suite: CipherSuite, salt: &Secret, ikm: &[u8]) -> Secret {
    // ring hides the PRK; HMAC(salt, ikm) is HKDF-Extract by definition.
    let key = hmac::Key::new(suite.hmac(), salt.as_bytes());
    Secret::new(hmac::sign(&key, ikm).as_ref())
}

/// The hash of no bytes, the context of the "derived" secrets.
fn empty_hash(suite: CipherSuite) -> digest::Digest {
    digest::digest(suite.digest(), b"")
}

/// The handshake traffic secrets and what the schedule needs next.
pub struct HandshakeSecrets {
    pub client: Secret,
    pub server: Secret,
    handshake_secret: Secret,
}

/// The application traffic secrets.
pub struct TrafficSecrets {
    pub client: Secret,
    pub server: Secret,
}

/// From the (EC)DHE shared secret and the hash of ClientHello..ServerHello.
pub fn handshake_secrets(suite: CipherSuite, shared: &[u8], hello_hash: &[u8]) -> HandshakeSecrets {
    let zeros = Secret::new(&[0u8; 48][..suite.hash_len()]);
    let early = extract(suite, &zeros, zeros.as_bytes());
    let derived = derive_secret(suite, &early, b"derived", empty_hash(suite).as_ref());
    let handshake_secret = extract(suite, &derived, shared);
    HandshakeSecrets {
        client: derive_secret(suite, &handshake_secret, b"c hs traffic", hello_hash),
        server: derive_secret(suite, &handshake_secret, b"s hs traffic", hello_hash),
        handshake_secret,
    }
}

/// From the handshake secret and the hash of ClientHello..server Finished.
pub fn traffic_secrets(
    suite: CipherSuite,
    hs: &HandshakeSecrets,
    finished_hash: &[u8],
) -> TrafficSecrets {
    let derived = derive_secret(
        suite,
        &hs.handshake_secret,
        b"derived",
        empty_hash(suite).as_ref(),
    );
    let zeros = [0u8; 48];
    let master = extract(suite, &derived, &zeros[..suite.hash_len()]);
    TrafficSecrets {
        client: derive_secret(suite, &master, b"c ap traffic", finished_hash),
        server: derive_secret(suite, &master, b"s ap traffic", finished_hash),
    }
}

/// The next generation of a traffic secret (KeyUpdate).
pub fn next_traffic_secret(suite: CipherSuite, secret: &Secret) -> Secret {
    let mut out = [0u8; 48];
    let n = suite.hash_len();
    expand_label(suite, secret, b"traffic upd", b"", &mut out[..n]);
    Secret::new(&out[..n])
}

/// Finished.verify_data for a sender's handshake traffic secret.
pub fn finished_verify_data(suite: CipherSuite, base: &Secret, transcript_hash: &[u8]) -> Vec<u8> {
    let mut finished_key = [0u8; 48];
    let n = suite.hash_len();
    expand_label(suite, base, b"finished", b"", &mut finished_key[..n]);
    let key = hmac::Key::new(suite.hmac(), &finished_key[..n]);
    hmac::sign(&key, transcript_hash).as_ref().to_vec()
}

/// The running hash of the handshake messages.
#[derive(Clone)]
pub struct Transcript {
    ctx: digest::Context,
}

impl Transcript {
    pub fn new(suite: CipherSuite) -> Transcript {
        Transcript {
            ctx: digest::Context::new(suite.digest()),
        }
    }

    pub fn add(&mut self, msg: &[u8]) {
        self.ctx.update(msg);
    }

    /// The hash so far (the transcript goes on).
    pub fn hash(&self) -> digest::Digest {
        self.ctx.clone().finish()
    }
}
