//! Salamander (Hysteria 2's obfuscation): deobfuscating any datagram, and
//! the round trip.
#![no_main]

use bench_proto::hysteria2::obfs::{Salamander, SALT_LEN};
use bench_proto::packet_obfs::SaltedMask;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // First byte: key length; then the key; the rest is a datagram.
    let Some((&key_len, rest)) = input.split_first() else {
        return;
    };
    let (key, datagram) = rest.split_at(usize::from(key_len).min(rest.len()));
    let s = Salamander::new(key);

    let mut buf = datagram.to_vec();
    match s.deobfuscate(&mut buf) {
        Some(n) => assert_eq!(n, datagram.len() - SALT_LEN),
        None => assert!(datagram.len() < SALT_LEN),
    }

    let mut salt = [0u8; SALT_LEN];
    let take = datagram.len().min(SALT_LEN);
    salt[..take].copy_from_slice(&datagram[..take]);
    let mut sealed = Vec::new();
    s.obfuscate(&salt, datagram, &mut sealed);
    assert_eq!(sealed.len(), SALT_LEN + datagram.len());
    let n = s
        .deobfuscate(&mut sealed)
        .expect("an obfuscated packet has a salt");
    assert_eq!(&sealed[..n], datagram);
});
