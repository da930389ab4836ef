//! The Trojan request by hand, and the bad requests every Trojan server
//! (`tls`, `ech`: one server part) must close without reaching a target.

use bench_proto::tls::PasswordHash;
use bench_proto::TargetAddr;

/// The request header for `target` with `cmd`, built from the spec rather
/// than by the code under test.
pub fn header(password: &str, cmd: u8, target: &TargetAddr) -> Vec<u8> {
    let mut v = PasswordHash::new(password).as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v.push(cmd);
    target.encode(&mut v).unwrap();
    v.extend_from_slice(b"\r\n");
    v
}

/// Requests the server must refuse (and close, without a fallback), each
/// with what it is, for a right `password` and a reachable `target`.
pub fn bad_requests(password: &str, target: &TargetAddr) -> Vec<(&'static str, Vec<u8>)> {
    let good_header = header(password, 1, target);
    let mut oversized = header(password, 1, &TargetAddr::Domain("a".into(), 80));
    // Domain length byte (after the 58-byte hash line, CMD and ATYP)
    // 200 for a name of 1 byte: the rest of the request and payload
    // are read as the name, and no CRLF follows where it must.
    oversized[60] = 200;
    let mut unknown_atyp = good_header.clone();
    unknown_atyp[59] = 9;
    vec![
        ("empty", vec![]),
        ("truncated hash", good_header[..30].to_vec()),
        (
            "truncated request",
            good_header[..good_header.len() - 3].to_vec(),
        ),
        ("unknown CMD", header(password, 0x7f, target)),
        ("UDP ASSOCIATE", header(password, 3, target)),
        ("unknown ATYP", unknown_atyp),
        (
            "oversized domain length",
            [oversized, vec![b'x'; 300]].concat(),
        ),
        ("garbage", (0..=255u8).cycle().take(1000).collect()),
    ]
}
