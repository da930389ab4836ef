//! The server's temporary certificate: an ed25519 X.509 certificate whose
//! signature field is not a signature but HMAC-SHA512(AuthKey, its public
//! key), so only a client that derived the same AuthKey accepts it.
//!
//! The server makes one certificate and key when it starts and, per
//! connection, copies the DER and writes that connection's HMAC over the
//! signature bytes, the last 64 of the DER. The client reads the public
//! key and the signature out of the DER ([`check`]) and compares.

use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use subtle::ConstantTimeEq;

use super::auth::AuthKey;
use super::handshake::ed25519_public;

/// The ed25519 OID, 1.3.101.112, as DER content bytes.
const OID_ED25519: [u8; 3] = [0x2b, 0x65, 0x70];
/// DER: BIT STRING of 65 bytes (no unused bits, then the 64-byte signature).
const SIGNATURE_TAIL: [u8; 3] = [0x03, 0x41, 0x00];

/// The server's key and certificate template.
pub struct TemporaryCertificate {
    der: Vec<u8>,
    key: Ed25519KeyPair,
}

impl TemporaryCertificate {
    /// A fresh ed25519 key and a self-signed certificate for `name`.
    pub fn generate(name: &str) -> Result<TemporaryCertificate, String> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| "generating an ed25519 key".to_string())?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| format!("loading the ed25519 key: {e}"))?;
        let rc_key = rcgen::KeyPair::try_from(pkcs8.as_ref())
            .map_err(|e| format!("ed25519 key for rcgen: {e}"))?;
        let params = rcgen::CertificateParams::new(vec![name.to_owned()])
            .map_err(|e| format!("certificate for {name:?}: {e}"))?;
        let cert = params
            .self_signed(&rc_key)
            .map_err(|e| format!("certificate for {name:?}: {e}"))?;
        let der = cert.der().to_vec();
        let tail = der.len().checked_sub(64 + SIGNATURE_TAIL.len());
        if tail
            .map(|t| der[t..t + 3] != SIGNATURE_TAIL)
            .unwrap_or(true)
        {
            return Err("the certificate does not end in a 64-byte signature".into());
        }
        Ok(TemporaryCertificate { der, key })
    }

    /// The key that signs CertificateVerify.
    pub fn key(&self) -> &Ed25519KeyPair {
        &self.key
    }

    /// The certificate for one connection: its signature replaced by the
    /// HMAC under that connection's AuthKey.
    // Never inlined: the crypto probe counts server handshakes here
    // (profiles/crypto.toml).
    #[inline(never)]
    pub fn for_connection(&self, auth: &AuthKey) -> Vec<u8> {
        let mut der = self.der.clone();
        let mac = auth.certificate_mac(&ed25519_public(&self.key));
        let at = der.len() - 64;
        der[at..].copy_from_slice(&mac);
        der
    }
}

/// One DER element: (tag, content, rest).
fn element(der: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let tag = *der.first().ok_or("DER: truncated")?;
    let first = *der.get(1).ok_or("DER: truncated")?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return Err("DER: unsupported length".into());
        }
        let bytes = der.get(2..2 + n).ok_or("DER: truncated")?;
        (
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
            2 + n,
        )
    };
    let content = der.get(header..header + len).ok_or("DER: truncated")?;
    Ok((tag, content, &der[header + len..]))
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// The ed25519 public key of a SubjectPublicKeyInfo, if it is one.
fn ed25519_spki(content: &[u8]) -> Option<[u8; 32]> {
    let (tag, alg, rest) = element(content).ok()?;
    if tag != SEQUENCE {
        return None;
    }
    let (oid_tag, oid, _) = element(alg).ok()?;
    if oid_tag != OID || oid != OID_ED25519 {
        return None;
    }
    let (bits_tag, bits, _) = element(rest).ok()?;
    if bits_tag != BIT_STRING || bits.len() != 33 || bits[0] != 0 {
        return None;
    }
    bits[1..].try_into().ok()
}

/// The ed25519 public key and the signature field of a certificate.
pub fn key_and_signature(der: &[u8]) -> Result<([u8; 32], &[u8]), String> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return Err("certificate: not a DER SEQUENCE".into());
    }
    let (tbs_tag, tbs, rest) = element(cert)?;
    let (_, _alg, rest) = element(rest)?;
    let (sig_tag, sig, _) = element(rest)?;
    if tbs_tag != SEQUENCE || sig_tag != BIT_STRING || sig.first() != Some(&0) {
        return Err("certificate: not an X.509 certificate".into());
    }
    let mut fields = tbs;
    while !fields.is_empty() {
        let (tag, content, rest) = element(fields)?;
        if tag == SEQUENCE {
            if let Some(k) = ed25519_spki(content) {
                return Ok((k, &sig[1..]));
            }
        }
        fields = rest;
    }
    Err("certificate without an ed25519 public key (not a REALITY server)".into())
}

/// The client's check of the server's certificate: it must carry an
/// ed25519 key and, as its signature, the HMAC of that key under `auth`.
/// Returns the key, which must then sign CertificateVerify.
// Never inlined: the crypto probe counts client handshakes here.
#[inline(never)]
pub fn check(der: &[u8], auth: &AuthKey) -> Result<[u8; 32], String> {
    let (public, sig) = key_and_signature(der)?;
    let expected = auth.certificate_mac(&public);
    if sig.len() != expected.len() || !bool::from(sig.ct_eq(&expected[..])) {
        return Err(
            "certificate HMAC does not match: not our REALITY server, or another key".into(),
        );
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_passes_only_under_its_own_auth_key() {
        let cert = TemporaryCertificate::generate("www.example.com").expect("generates");
        let auth = AuthKey::derive(&[1u8; 32], &[2u8; 32]);
        let other = AuthKey::derive(&[1u8; 32], &[3u8; 32]);
        let der = cert.for_connection(&auth);
        assert_eq!(check(&der, &auth), Ok(ed25519_public(cert.key())));
        assert!(check(&der, &other).is_err());
        for n in [0, 10, der.len() / 2, der.len() - 1] {
            assert!(check(&der[..n], &auth).is_err(), "{n} bytes passed");
        }
    }
}
