//! The client's ClientHello: laid out as a current Chrome sends it (GREASE
//! values, cipher suites, extensions and their contents, an X25519MLKEM768
//! and an X25519 key share), because a REALITY client must look like a
//! browser visiting the destination, and the destination (which the
//! server may forward the ClientHello to, as shoes does) must answer it
//! as it answers browsers: a modern server that prefers the hybrid group
//! would ask a client that lists it without a share to retry
//! (HelloRetryRequest).
//!
//! The hybrid share is an ML-KEM-768 encapsulation key of the form FIPS
//! 203 checks (768 coefficients below q, then a 32-byte seed) followed by
//! our X25519 key, but the client holds no decapsulation key for it (ring
//! has no ML-KEM): REALITY servers answer with X25519, and a server that
//! picks the hybrid group is not one this client can authenticate anyway
//! (the handshake then fails, naming the group). `reality.hybrid_share =
//! false` leaves the hybrid group out altogether, as pre-2024 Chrome and
//! shoes's client do: shoes's server cannot read a destination's
//! ServerHello that picked the hybrid group and falls back, so behind
//! shoes with a destination that prefers it (OpenSSL 3.5, Go 1.24, rustls
//! on aws-lc-rs) only that setting gets through. The extension order is
//! fixed instead of shuffled per connection.

use crate::tls13::wire::{
    handshake_message, push_extension, push_u16, push_vec16, push_vec8, EXT_ALPN, EXT_KEY_SHARE,
    EXT_SERVER_NAME, EXT_SIGNATURE_ALGORITHMS, EXT_SUPPORTED_GROUPS, EXT_SUPPORTED_VERSIONS,
    GROUP_X25519, GROUP_X25519_MLKEM768, HS_CLIENT_HELLO, VERSION_TLS13,
};

/// Where the session id sits in the message: header 4, version 2, random
/// 32, length 1.
pub const SESSION_ID_OFFSET: usize = 39;

/// The cipher suites Chrome offers (after a GREASE value), TLS 1.3 first.
const CHROME_SUITES: [u16; 15] = [
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
    0x009d, 0x002f, 0x0035,
];
const CHROME_SIGNATURE_ALGORITHMS: [u16; 8] = [
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
];

/// A GREASE value (RFC 8701): 0x?a?a with both bytes equal.
fn grease(seed: u8) -> u16 {
    let b = (seed & 0xf0) | 0x0a;
    u16::from_be_bytes([b, b])
}

/// What varies per connection.
pub struct HelloParams<'a> {
    pub random: [u8; 32],
    pub server_name: &'a str,
    pub x25519_public: [u8; 32],
    /// The X25519MLKEM768 key share ([`hybrid_share`]), or `None` to
    /// offer X25519 alone (the group is then not listed either, so that no
    /// server asks for it with a HelloRetryRequest).
    pub hybrid_share: Option<&'a [u8]>,
    /// Random bytes for the GREASE values and the GREASE ECH payload.
    pub grease_seed: [u8; 4],
    pub ech_grease_payload: &'a [u8],
}

/// The ClientHello message (header included) with a zero 32-byte session
/// id at [`SESSION_ID_OFFSET`], for the authenticator to fill.
pub fn client_hello(p: &HelloParams<'_>) -> Vec<u8> {
    let g = |i: usize| grease(p.grease_seed[i]);
    // Two GREASE extensions must differ.
    let (ext_g1, mut ext_g2) = (g(1), g(3));
    if ext_g2 == ext_g1 {
        ext_g2 ^= 0x1010;
    }

    let mut body = Vec::with_capacity(640);
    push_u16(&mut body, 0x0303);
    body.extend_from_slice(&p.random);
    push_vec8(&mut body, &[0u8; 32]);
    let mut suites = Vec::with_capacity(32);
    push_u16(&mut suites, g(0));
    for s in CHROME_SUITES {
        push_u16(&mut suites, s);
    }
    push_vec16(&mut body, &suites);
    push_vec8(&mut body, &[0]);

    let mut exts = Vec::with_capacity(512);
    push_extension(&mut exts, ext_g1, &[]);
    // server_name
    let mut entry = vec![0u8];
    push_vec16(&mut entry, p.server_name.as_bytes());
    let mut sni = Vec::new();
    push_vec16(&mut sni, &entry);
    push_extension(&mut exts, EXT_SERVER_NAME, &sni);
    // extended_master_secret, renegotiation_info
    push_extension(&mut exts, 23, &[]);
    push_extension(&mut exts, 0xff01, &[0]);
    // supported_groups
    let mut groups = Vec::new();
    push_u16(&mut groups, g(2));
    if p.hybrid_share.is_some() {
        push_u16(&mut groups, GROUP_X25519_MLKEM768);
    }
    for grp in [GROUP_X25519, 0x0017, 0x0018] {
        push_u16(&mut groups, grp);
    }
    let mut data = Vec::new();
    push_vec16(&mut data, &groups);
    push_extension(&mut exts, EXT_SUPPORTED_GROUPS, &data);
    // ec_point_formats: uncompressed
    push_extension(&mut exts, 11, &[1, 0]);
    // session_ticket
    push_extension(&mut exts, 35, &[]);
    // ALPN: h2, http/1.1
    let mut list = Vec::new();
    push_vec8(&mut list, b"h2");
    push_vec8(&mut list, b"http/1.1");
    let mut data = Vec::new();
    push_vec16(&mut data, &list);
    push_extension(&mut exts, EXT_ALPN, &data);
    // status_request: OCSP, no responder ids, no extensions
    push_extension(&mut exts, 5, &[1, 0, 0, 0, 0]);
    // signature_algorithms
    let mut algs = Vec::new();
    for a in CHROME_SIGNATURE_ALGORITHMS {
        push_u16(&mut algs, a);
    }
    let mut data = Vec::new();
    push_vec16(&mut data, &algs);
    push_extension(&mut exts, EXT_SIGNATURE_ALGORITHMS, &data);
    // signed_certificate_timestamp
    push_extension(&mut exts, 18, &[]);
    // key_share: GREASE (one zero byte), X25519MLKEM768, X25519
    let mut shares = Vec::with_capacity(1300);
    push_u16(&mut shares, g(2));
    push_vec16(&mut shares, &[0]);
    if let Some(hybrid) = p.hybrid_share {
        push_u16(&mut shares, GROUP_X25519_MLKEM768);
        push_vec16(&mut shares, hybrid);
    }
    push_u16(&mut shares, GROUP_X25519);
    push_vec16(&mut shares, &p.x25519_public);
    let mut data = Vec::new();
    push_vec16(&mut data, &shares);
    push_extension(&mut exts, EXT_KEY_SHARE, &data);
    // psk_key_exchange_modes: psk_dhe_ke
    push_extension(&mut exts, 45, &[1, 1]);
    // supported_versions: GREASE, TLS 1.3, TLS 1.2
    let mut versions = Vec::new();
    for v in [g(0), VERSION_TLS13, 0x0303] {
        push_u16(&mut versions, v);
    }
    let mut data = Vec::new();
    push_vec8(&mut data, &versions);
    push_extension(&mut exts, EXT_SUPPORTED_VERSIONS, &data);
    // compress_certificate: brotli
    push_extension(&mut exts, 27, &[2, 0, 2]);
    // application_settings (new code point): h2
    let mut alps = Vec::new();
    let mut protos = Vec::new();
    push_vec8(&mut protos, b"h2");
    push_vec16(&mut alps, &protos);
    push_extension(&mut exts, 17613, &alps);
    // encrypted_client_hello, GREASE: outer type, KDF/AEAD, config id,
    // 32-byte encapsulated key, random payload (as Chrome without ECH keys)
    let mut ech = vec![0u8];
    push_u16(&mut ech, 0x0001);
    push_u16(&mut ech, 0x0001);
    ech.push(p.grease_seed[0]);
    push_vec16(&mut ech, &p.random);
    push_vec16(&mut ech, p.ech_grease_payload);
    push_extension(&mut exts, 0xfe0d, &ech);
    push_extension(&mut exts, ext_g2, &[0]);
    push_vec16(&mut body, &exts);
    handshake_message(HS_CLIENT_HELLO, &body)
}

/// ML-KEM's modulus.
const Q: u16 = 3329;
/// An ML-KEM-768 encapsulation key: 3 × 256 coefficients of 12 bits, then
/// the 32-byte seed of the public matrix.
pub const MLKEM768_EK_LEN: usize = 3 * 384 + 32;
/// The X25519MLKEM768 client share: encapsulation key, then X25519.
pub const HYBRID_SHARE_LEN: usize = MLKEM768_EK_LEN + 32;

/// An X25519MLKEM768 key share: an encapsulation key whose coefficients
/// are uniform below q (as a real key's look) from `random`, then
/// `x25519_public`. `random` must hold at least [`HYBRID_RANDOM_LEN`]
/// bytes; coefficients drawn at or above q are replaced from the spare.
pub fn hybrid_share(random: &[u8], x25519_public: &[u8; 32]) -> Option<Vec<u8>> {
    let mut candidates = random
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) & 0x0fff)
        .filter(|&c| c < Q);
    let mut out = Vec::with_capacity(HYBRID_SHARE_LEN);
    for _ in 0..384 {
        // Two 12-bit coefficients in three bytes, little-endian (ByteEncode12).
        let (a, b) = (candidates.next()?, candidates.next()?);
        out.push((a & 0xff) as u8);
        out.push(((a >> 8) | ((b & 0x0f) << 4)) as u8);
        out.push((b >> 4) as u8);
    }
    let seed = random.get(random.len() - 32..)?;
    out.extend_from_slice(seed);
    out.extend_from_slice(x25519_public);
    Some(out)
}

/// Random bytes [`hybrid_share`] takes: 768 coefficients with room for
/// rejections (each 12-bit draw is below q with probability 0.81; 1,200
/// draws fall short of 768 with probability far below 2^-100), and the seed.
pub const HYBRID_RANDOM_LEN: usize = 2 * 1200 + 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls13::wire::ClientHello;

    /// Every coefficient decodes below q, as FIPS 203's check on an
    /// encapsulation key demands, and the X25519 key ends the share.
    #[test]
    fn the_hybrid_share_has_the_form_of_an_encapsulation_key() {
        let mut random = vec![0u8; HYBRID_RANDOM_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .expect("random");
        let share = hybrid_share(&random, &[7u8; 32]).expect("enough randomness");
        assert_eq!(share.len(), HYBRID_SHARE_LEN);
        for t in share[..3 * 384].chunks_exact(3) {
            let a = u16::from(t[0]) | (u16::from(t[1] & 0x0f) << 8);
            let b = u16::from(t[1] >> 4) | (u16::from(t[2]) << 4);
            assert!(a < Q && b < Q, "{a} {b}");
        }
        assert_eq!(&share[HYBRID_SHARE_LEN - 32..], &[7u8; 32]);
        // All draws at or above q: not enough coefficients.
        assert!(hybrid_share(&[0xff; HYBRID_RANDOM_LEN], &[7u8; 32]).is_none());
    }

    #[test]
    fn the_hello_parses_with_its_session_id_where_the_authenticator_goes() {
        let msg = client_hello(&HelloParams {
            random: [1u8; 32],
            server_name: "www.example.com",
            x25519_public: [2u8; 32],
            hybrid_share: Some(
                &hybrid_share(&[0x11; HYBRID_RANDOM_LEN], &[2u8; 32]).expect("share"),
            ),
            grease_seed: [0x3a, 0x3a, 0x5a, 0x3a],
            ech_grease_payload: &[7u8; 144],
        });
        let hello = ClientHello::parse(&msg).expect("parses");
        assert_eq!(hello.session_id_offset, SESSION_ID_OFFSET);
        assert_eq!(hello.session_id, &[0u8; 32]);
        assert_eq!(hello.server_name, Some(&b"www.example.com"[..]));
        assert_eq!(hello.key_share(GROUP_X25519), Some(&[2u8; 32][..]));
        let hybrid = hello
            .key_share(GROUP_X25519_MLKEM768)
            .expect("hybrid share");
        assert_eq!(hybrid.len(), HYBRID_SHARE_LEN);
        assert!(hello.supported_versions.contains(&VERSION_TLS13));
        assert_eq!(&hello.cipher_suites[1..4], &[0x1301, 0x1302, 0x1303]);
        assert_eq!(hello.alpn, vec![&b"h2"[..], &b"http/1.1"[..]]);
    }
}
