//! Obfuscation of every UDP packet below quinn, as the Hysteria protocols
//! do it: a random salt, then the packet XORed with a 32-byte mask hashed
//! from the key and that salt, repeated. Hysteria 2's Salamander (BLAKE2b,
//! 8-byte salt) and Hysteria v1's XPlus (SHA-256, 16-byte salt) differ only
//! in the hash and the salt length, so each is a [`SaltedMask`] and both run
//! on one [`ObfsSocket`] (in `socket`, the part that needs quinn).

use std::fmt;

mod socket;
pub use socket::{endpoint, ObfsSocket};

/// Bytes of the mask.
pub const MASK_LEN: usize = 32;
/// Longest salt a [`SaltedMask`] may use.
pub const MAX_SALT_LEN: usize = 32;

/// A packet transform: salt, then the packet XORed with `mask(salt)`.
pub trait SaltedMask: Clone + fmt::Debug + Send + Sync + 'static {
    /// Bytes of salt before each packet (at most [`MAX_SALT_LEN`]).
    const SALT_LEN: usize;

    /// The mask for `salt`, hashed with the key.
    fn mask(&self, salt: &[u8]) -> [u8; MASK_LEN];

    /// Appends `salt` (of [`SALT_LEN`](Self::SALT_LEN) bytes) and the
    /// obfuscated `packet` to `out`.
    fn obfuscate(&self, salt: &[u8], packet: &[u8], out: &mut Vec<u8>) {
        let mask = self.mask(salt);
        out.reserve(salt.len() + packet.len());
        out.extend_from_slice(salt);
        out.extend(packet.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    }

    /// Undoes [`obfuscate`](Self::obfuscate) in place: the packet ends up at
    /// the start of `buf`; returns its length, or `None` for a datagram too
    /// short to carry a salt (which must be discarded).
    fn deobfuscate(&self, buf: &mut [u8]) -> Option<usize> {
        let salt_len = Self::SALT_LEN;
        if buf.len() < salt_len {
            return None;
        }
        let mask = self.mask(&buf[..salt_len]);
        let n = buf.len() - salt_len;
        for i in 0..n {
            buf[i] = buf[i + salt_len] ^ mask[i % MASK_LEN];
        }
        Some(n)
    }
}
