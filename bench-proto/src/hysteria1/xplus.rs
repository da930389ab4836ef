//! XPlus obfuscation (Hysteria v1's `obfs`): every QUIC packet becomes a
//! 16-byte random salt followed by the packet XORed with SHA-256(key +
//! salt), repeated. It runs below quinn on the shared
//! [`ObfsSocket`](crate::packet_obfs::ObfsSocket) ([`XPlusSocket`](super::XPlusSocket)); undoing it is
//! [`SaltedMask::deobfuscate`], a plain function over a byte slice.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::packet_obfs::{SaltedMask, MASK_LEN};

/// Bytes of salt before each packet.
pub const SALT_LEN: usize = 16;

/// The XPlus transform with one pre-shared key.
#[derive(Clone)]
pub struct XPlus {
    key: Vec<u8>,
}

impl fmt::Debug for XPlus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret.
        f.write_str("XPlus { .. }")
    }
}

impl XPlus {
    /// A transform keyed with `key`.
    pub fn new(key: &[u8]) -> XPlus {
        XPlus { key: key.to_vec() }
    }
}

impl SaltedMask for XPlus {
    const SALT_LEN: usize = SALT_LEN;

    fn mask(&self, salt: &[u8]) -> [u8; MASK_LEN] {
        let mut h = Sha256::new();
        h.update(&self.key);
        h.update(salt);
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_answer() {
        let x = XPlus::new(b"obfs key");
        let salt: Vec<u8> = (1..=16).collect();
        let packet: Vec<u8> = (0..100u8).collect();
        let mut out = Vec::new();
        x.obfuscate(&salt, &packet, &mut out);
        assert_eq!(out.len(), 116);
        assert_eq!(&out[..16], &salt[..]);
        // The mask is SHA-256(key + salt), computed independently.
        let mask = Sha256::digest([&b"obfs key"[..], &salt].concat());
        for i in [0, 31, 32, 99] {
            assert_eq!(out[16 + i], packet[i] ^ mask[i % 32], "{i}");
        }
        let n = x.deobfuscate(&mut out).unwrap();
        assert_eq!(&out[..n], &packet[..]);
        assert_eq!(x.deobfuscate(&mut [0u8; 15]), None);
        assert_eq!(x.deobfuscate(&mut [0u8; 16]), Some(0));
        let mut out = Vec::new();
        x.obfuscate(&salt, &packet, &mut out);
        let n = XPlus::new(b"other").deobfuscate(&mut out).unwrap();
        assert_ne!(&out[..n], &packet[..]);
    }
}
