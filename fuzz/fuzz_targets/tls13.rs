//! The TLS 1.3 messages our own TLS code (`tls13`, used by `reality`) decodes: record headers,
//! ClientHello (server side, before any authentication), ServerHello,
//! Certificate, CertificateVerify, EncryptedExtensions.
#![no_main]

use bench_proto::tls13::wire::{
    handshake_message_len, parse_certificate, parse_certificate_verify, parse_encrypted_extensions,
    ClientHello, RecordHeader, ServerHello, GROUP_X25519, MAX_CIPHERTEXT, RECORD_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Some(header) = input.first_chunk::<RECORD_HEADER_LEN>() {
        if let Ok(h) = RecordHeader::parse(header) {
            assert!(h.length <= MAX_CIPHERTEXT);
        }
    }
    if let Some(len) = handshake_message_len(input) {
        assert!(len <= input.len());
    }
    if let Ok(hello) = ClientHello::parse(input) {
        // The session id the authenticator is read from lies where the
        // parser says it does.
        let at = hello.session_id_offset;
        assert_eq!(&input[at..at + hello.session_id.len()], hello.session_id);
        let _ = hello.key_share(GROUP_X25519);
    }
    if let Ok(sh) = ServerHello::parse(input) {
        // What we encode from a parsed ServerHello parses back the same.
        let again = sh.encode();
        assert_eq!(ServerHello::parse(&again).as_ref(), Ok(&sh));
    }
    let body = input.get(4..).unwrap_or_default();
    let _ = parse_certificate(body);
    let _ = parse_certificate_verify(body);
    let _ = parse_encrypted_extensions(body);
});
