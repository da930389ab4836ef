//! REALITY's authenticator: what the client seals into the ClientHello's
//! session id, how the server opens and judges it, and the HMAC that the
//! server's temporary certificate carries as its signature.
//!
//! Session id plaintext (16 bytes): client version x, y, z, a zero byte,
//! the Unix time in seconds as a big-endian u32, then the 8-byte short id
//! (shorter ids padded with zeros). AuthKey = HKDF-SHA256(ikm = X25519
//! shared secret of the client's key share and the server's static key,
//! salt = ClientHello.random[..20], info = "REALITY"); the session id is
//! AES-256-GCM(AuthKey, nonce = random[20..]) of the plaintext, with the
//! whole ClientHello message (session id zeroed) as associated data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::{aead, hkdf, hmac};

use crate::tls13::wire::ClientHello;

/// The session id's length: 16 bytes sealed plus the 16-byte tag.
pub const SESSION_ID_LEN: usize = 32;
/// The longest short id, in bytes (16 hex digits).
pub const SHORT_ID_LEN: usize = 8;
/// The version this client claims (x, y, z), as Xray's clients send theirs.
pub const CLIENT_VERSION: [u8; 3] = [25, 1, 1];

/// A short id: up to 8 bytes, written as up to 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortId(pub [u8; SHORT_ID_LEN]);

impl ShortId {
    /// Parses 0 to 16 hex digits (an even number); shorter ids are padded
    /// with zero bytes, as Xray and shoes do.
    pub fn parse(hex: &str) -> Result<ShortId, String> {
        if hex.len() > 2 * SHORT_ID_LEN || !hex.len().is_multiple_of(2) {
            return Err(format!(
                "short id {hex:?}: an even number of hex digits, at most {}",
                2 * SHORT_ID_LEN
            ));
        }
        let mut out = [0u8; SHORT_ID_LEN];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| format!("short id {hex:?}: not hex"))?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| format!("short id {hex:?}: not hex"))?;
        }
        Ok(ShortId(out))
    }
}

/// The key both sides derive from the X25519 shared secret.
#[derive(Clone)]
pub struct AuthKey([u8; 32]);

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl AuthKey {
    /// HKDF-SHA256(shared, salt = random[..20], info "REALITY").
    pub fn derive(shared: &[u8; 32], random: &[u8; 32]) -> AuthKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &random[..20]).extract(shared);
        let mut key = [0u8; 32];
        // 32 bytes is within HKDF-SHA256's limit, so neither step fails.
        if let Ok(okm) = prk.expand(&[b"REALITY"], Len32) {
            let _ = okm.fill(&mut key);
        }
        AuthKey(key)
    }

    fn aead(&self) -> aead::LessSafeKey {
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &self.0)
            .unwrap_or_else(|_| unreachable!("32 bytes is AES-256's key length"));
        aead::LessSafeKey::new(unbound)
    }

    /// HMAC-SHA512(AuthKey, ed25519 public key): the signature field of the
    /// server's temporary certificate.
    pub fn certificate_mac(&self, ed25519_public: &[u8]) -> [u8; 64] {
        let key = hmac::Key::new(hmac::HMAC_SHA512, &self.0);
        let mut out = [0u8; 64];
        out.copy_from_slice(hmac::sign(&key, ed25519_public).as_ref());
        out
    }
}

/// The whole ClientHello message with its session id zeroed: the
/// associated data of the seal.
fn aad(hello_msg: &[u8], session_id_offset: usize) -> Vec<u8> {
    let mut aad = hello_msg.to_vec();
    if let Some(id) = aad.get_mut(session_id_offset..session_id_offset + SESSION_ID_LEN) {
        id.fill(0);
    }
    aad
}

fn nonce(random: &[u8; 32]) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n.copy_from_slice(&random[20..]);
    aead::Nonce::assume_unique_for_key(n)
}

/// Seals the authenticator into `hello_msg` (a whole ClientHello message
/// whose 32-byte session id, at `session_id_offset`, is zero).
pub fn seal(
    key: &AuthKey,
    hello_msg: &mut [u8],
    session_id_offset: usize,
    random: &[u8; 32],
    short_id: &ShortId,
    now: SystemTime,
) -> Result<(), String> {
    let mut plain = [0u8; 16];
    plain[..3].copy_from_slice(&CLIENT_VERSION);
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "clock before 1970")?
        .as_secs();
    plain[4..8].copy_from_slice(&(secs as u32).to_be_bytes());
    plain[8..].copy_from_slice(&short_id.0);
    let aad = aad(hello_msg, session_id_offset);
    let tag = key
        .aead()
        .seal_in_place_separate_tag(nonce(random), aead::Aad::from(&aad[..]), &mut plain)
        .map_err(|_| "sealing the session id")?;
    let id = hello_msg
        .get_mut(session_id_offset..session_id_offset + SESSION_ID_LEN)
        .ok_or("ClientHello shorter than its session id")?;
    id[..16].copy_from_slice(&plain);
    id[16..].copy_from_slice(tag.as_ref());
    Ok(())
}

/// What an opened session id says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticator {
    pub version: [u8; 3],
    /// The client's clock, Unix seconds.
    pub time: u32,
    pub short_id: ShortId,
}

/// Why a ClientHello is not an authenticated REALITY client's (each of
/// these falls back to the destination).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no 32-byte session id")]
    NoSessionId,
    #[error("no X25519 key share")]
    NoKeyShare,
    #[error("session id does not open (not a REALITY client, or another key)")]
    DoesNotOpen,
    #[error("client clock {skew_s} s away from ours, beyond the window")]
    OutsideWindow { skew_s: i64 },
    #[error("unknown short id")]
    UnknownShortId,
    #[error("session id seen before (a replay)")]
    Replay,
    #[error("server name {0:?} not served")]
    ServerName(String),
}

/// Opens the session id of `hello` (parsed from `hello_msg`) with `key`.
pub fn open(
    key: &AuthKey,
    hello_msg: &[u8],
    hello: &ClientHello<'_>,
) -> Result<Authenticator, Refusal> {
    if hello.session_id.len() != SESSION_ID_LEN {
        return Err(Refusal::NoSessionId);
    }
    let mut sealed = [0u8; SESSION_ID_LEN];
    sealed.copy_from_slice(hello.session_id);
    let aad = aad(hello_msg, hello.session_id_offset);
    let plain = key
        .aead()
        .open_in_place(nonce(&hello.random), aead::Aad::from(&aad[..]), &mut sealed)
        .map_err(|_| Refusal::DoesNotOpen)?;
    let mut version = [0u8; 3];
    version.copy_from_slice(&plain[..3]);
    let time = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
    let mut short_id = [0u8; SHORT_ID_LEN];
    short_id.copy_from_slice(&plain[8..16]);
    Ok(Authenticator {
        version,
        time,
        short_id: ShortId(short_id),
    })
}

/// Whether the client's clock lies within `window` of `now`.
pub fn check_time(auth: &Authenticator, now: SystemTime, window: Duration) -> Result<(), Refusal> {
    let ours = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let skew_s = i64::from(auth.time) - ours;
    if skew_s.unsigned_abs() > window.as_secs() {
        return Err(Refusal::OutsideWindow { skew_s });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_parse_and_pad() {
        assert_eq!(ShortId::parse("").expect("empty is valid").0, [0u8; 8]);
        assert_eq!(
            ShortId::parse("0a1b").expect("valid").0,
            [0x0a, 0x1b, 0, 0, 0, 0, 0, 0]
        );
        assert!(ShortId::parse("abc").is_err());
        assert!(ShortId::parse("00112233445566778899").is_err());
        assert!(ShortId::parse("zz").is_err());
    }
}
