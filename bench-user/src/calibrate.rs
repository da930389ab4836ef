//! calibrate: micro-benchmarks of this machine that analysis measures the
//! targets against: how fast the ciphers the proxies use can run here, so
//! that a target's crypto ns/byte is judged against the machine, not a
//! number from elsewhere.

use std::time::{Duration, Instant};

use ring::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};

use crate::report::CipherBench;

/// Bytes sealed per call: a full TLS record.
pub const RECORD_BYTES: usize = 16 * 1024;

/// Time each cipher for about `budget` in total (split over repeats; the
/// median repeat counts, so a burst of other work does not).
pub fn ciphers(budget: Duration) -> Vec<CipherBench> {
    let per_cipher = budget / 3;
    [
        // The crypto families call AES-GCM "aes-gcm" whatever the key size;
        // the slower AES-256 is the conservative yardstick (and what rustls
        // negotiates first).
        ("aes-gcm", "ring AES-256-GCM seal", &AES_256_GCM),
        ("aes-128-gcm", "ring AES-128-GCM seal", &AES_128_GCM),
        (
            "chacha20-poly1305",
            "ring ChaCha20-Poly1305 seal",
            &CHACHA20_POLY1305,
        ),
    ]
    .into_iter()
    .filter_map(|(primitive, implementation, alg)| {
        seal_ns_per_byte(alg, per_cipher).map(|ns| CipherBench {
            primitive: primitive.to_string(),
            implementation: implementation.to_string(),
            record_bytes: RECORD_BYTES as u64,
            ns_per_byte: ns,
        })
    })
    .collect()
}

fn seal_ns_per_byte(alg: &'static ring::aead::Algorithm, budget: Duration) -> Option<f64> {
    const REPEATS: usize = 5;
    let key_bytes = vec![0x42u8; alg.key_len()];
    let key = LessSafeKey::new(UnboundKey::new(alg, &key_bytes).ok()?);
    let mut buf = vec![0u8; RECORD_BYTES];
    let mut counter = 0u64;
    let mut seal = |buf: &mut [u8]| -> Option<()> {
        counter += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), buf)
            .ok()
            .map(|_| ())
    };
    // Warm up (CPU feature detection, caches, frequency).
    for _ in 0..16 {
        seal(&mut buf)?;
    }
    let slice = budget / REPEATS as u32;
    let mut rates = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < slice || calls == 0 {
            for _ in 0..8 {
                seal(&mut buf)?;
            }
            calls += 8;
        }
        let ns = start.elapsed().as_nanos() as f64;
        rates.push(ns / (calls as f64 * RECORD_BYTES as f64));
    }
    rates.sort_by(f64::total_cmp);
    Some(rates[REPEATS / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cipher_is_timed_with_a_plausible_rate() {
        let out = ciphers(Duration::from_millis(150));
        let names: Vec<_> = out.iter().map(|c| c.primitive.as_str()).collect();
        assert_eq!(names, ["aes-gcm", "aes-128-gcm", "chacha20-poly1305"]);
        // Between 10 GB/s and 1 MB/s: anything outside is a broken timer.
        for c in &out {
            assert!(c.ns_per_byte > 0.01 && c.ns_per_byte < 1000.0, "{c:?}");
        }
    }
}
