//! Salamander obfuscation: every QUIC packet becomes an 8-byte random salt
//! followed by the packet XORed with BLAKE2b-256(key + salt), repeated.
//!
//! [`SalamanderSocket`](super::SalamanderSocket) applies it below quinn, so
//! QUIC never sees it.

use std::fmt;

use blake2::{Blake2b256, Digest};

use crate::packet_obfs::{SaltedMask, MASK_LEN};

/// Bytes of salt before each packet.
pub const SALT_LEN: usize = 8;

/// The Salamander transform with one pre-shared key.
#[derive(Clone)]
pub struct Salamander {
    key: Vec<u8>,
}

impl fmt::Debug for Salamander {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret.
        f.write_str("Salamander { .. }")
    }
}

impl Salamander {
    /// A transform keyed with `key`.
    pub fn new(key: &[u8]) -> Salamander {
        Salamander { key: key.to_vec() }
    }
}

impl SaltedMask for Salamander {
    const SALT_LEN: usize = SALT_LEN;

    fn mask(&self, salt: &[u8]) -> [u8; MASK_LEN] {
        let mut h = Blake2b256::new();
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
        let s = Salamander::new(b"cry me a river");
        let packet: Vec<u8> = (0..100u8).collect();
        let mut out = Vec::new();
        s.obfuscate(&[1, 2, 3, 4, 5, 6, 7, 8], &packet, &mut out);
        assert_eq!(&out[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_ne!(&out[8..], &packet[..]);
        // The mask is BLAKE2b-256(key + salt), independently computed.
        let mask = Blake2b256::digest(b"cry me a river\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(out[8], packet[0] ^ mask[0]);
        assert_eq!(out[8 + 33], packet[33] ^ mask[1]);
        let n = s.deobfuscate(&mut out).unwrap();
        assert_eq!(&out[..n], &packet[..]);
        assert_eq!(s.deobfuscate(&mut [0u8; 7]), None);
        assert_eq!(s.deobfuscate(&mut [0u8; 8]), Some(0));
        // Another key does not undo it.
        let mut out = Vec::new();
        s.obfuscate(&[9; 8], &packet, &mut out);
        let n = Salamander::new(b"other").deobfuscate(&mut out).unwrap();
        assert_ne!(&out[..n], &packet[..]);
    }
}
