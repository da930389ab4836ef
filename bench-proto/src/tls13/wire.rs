//! The TLS 1.3 wire format REALITY needs (RFC 8446): record headers, the
//! handshake message framing, and the ClientHello and ServerHello codecs.
//! Pure parsing and encoding, no crypto, so the fuzz targets link it alone.
//!
//! Only what a TLS 1.3 handshake with X25519 and the three TLS 1.3 cipher
//! suites uses is decoded; every other extension is skipped by its length.

/// Record content types.
pub const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CONTENT_ALERT: u8 = 21;
pub const CONTENT_HANDSHAKE: u8 = 22;
pub const CONTENT_APPLICATION_DATA: u8 = 23;

/// Record header: type, legacy version, length.
pub const RECORD_HEADER_LEN: usize = 5;
/// The largest plaintext fragment (2^14).
pub const MAX_PLAINTEXT: usize = 16_384;
/// The largest encrypted record body: plaintext, content type, padding and
/// tag may exceed the plaintext by at most 256 bytes.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;

/// Handshake message types.
pub const HS_CLIENT_HELLO: u8 = 1;
pub const HS_SERVER_HELLO: u8 = 2;
pub const HS_NEW_SESSION_TICKET: u8 = 4;
pub const HS_ENCRYPTED_EXTENSIONS: u8 = 8;
pub const HS_CERTIFICATE: u8 = 11;
pub const HS_CERTIFICATE_VERIFY: u8 = 15;
pub const HS_FINISHED: u8 = 20;
pub const HS_KEY_UPDATE: u8 = 24;
/// Handshake message header: type, u24 length.
pub const HANDSHAKE_HEADER_LEN: usize = 4;

/// Extension types.
pub const EXT_SERVER_NAME: u16 = 0;
pub const EXT_SUPPORTED_GROUPS: u16 = 10;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
pub const EXT_ALPN: u16 = 16;
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
pub const EXT_KEY_SHARE: u16 = 51;

/// Named groups.
pub const GROUP_X25519: u16 = 0x001d;
/// The hybrid post-quantum group Chrome and Firefox offer first.
pub const GROUP_X25519_MLKEM768: u16 = 0x11ec;
/// TLS 1.3 in supported_versions.
pub const VERSION_TLS13: u16 = 0x0304;
/// ed25519 in signature_algorithms and CertificateVerify.
pub const SIG_ED25519: u16 = 0x0807;

/// ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3).
pub const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Why bytes are not the TLS message expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("record of {0} bytes, more than TLS allows ({MAX_CIPHERTEXT})")]
    RecordTooLong(usize),
    #[error("{what}: truncated")]
    Truncated { what: &'static str },
    #[error("{what}: {len} bytes left over")]
    Trailing { what: &'static str, len: usize },
    #[error("expected handshake message {expected}, got {got}")]
    UnexpectedMessage { expected: u8, got: u8 },
    #[error("{0}")]
    Invalid(&'static str),
}

/// A record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    pub length: usize,
}

impl RecordHeader {
    /// Parses the 5-byte header; refuses bodies longer than TLS allows.
    pub fn parse(b: &[u8; RECORD_HEADER_LEN]) -> Result<RecordHeader, WireError> {
        let length = usize::from(u16::from_be_bytes([b[3], b[4]]));
        if length > MAX_CIPHERTEXT {
            return Err(WireError::RecordTooLong(length));
        }
        Ok(RecordHeader {
            content_type: b[0],
            length,
        })
    }

    /// The header of a record of `length` body bytes (legacy version
    /// 0x0303, as TLS 1.3 records carry after the first ClientHello).
    pub fn encode(content_type: u8, length: usize) -> [u8; RECORD_HEADER_LEN] {
        let len = u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes();
        [content_type, 0x03, 0x03, len[0], len[1]]
    }
}

/// The length of the first complete handshake message at the start of
/// `buf` (header included), or `None` if it is not all there yet.
pub fn handshake_message_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HANDSHAKE_HEADER_LEN {
        return None;
    }
    let body = (usize::from(buf[1]) << 16) | (usize::from(buf[2]) << 8) | usize::from(buf[3]);
    let total = HANDSHAKE_HEADER_LEN + body;
    (buf.len() >= total).then_some(total)
}

/// Prefixes `body` with a handshake header of type `msg_type`.
pub fn handshake_message(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDSHAKE_HEADER_LEN + body.len());
    out.push(msg_type);
    push_u24(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A cursor over bytes that fails with the name of what it was reading.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated { what: self.what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Result<usize, WireError> {
        let b = self.take(3)?;
        Ok((usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }

    /// A vector with a u8 length prefix.
    pub(crate) fn vec8(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a u16 length prefix.
    pub(crate) fn vec16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A vector with a u24 length prefix.
    pub(crate) fn vec24(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u24()?;
        self.take(n)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes consumed so far, given the slice the reader started on.
    fn offset_in(&self, start: &[u8]) -> usize {
        start.len() - self.buf.len()
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing {
                what: self.what,
                len: self.buf.len(),
            })
        }
    }
}

pub(crate) fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn push_u24(out: &mut Vec<u8>, v: usize) {
    let v = u32::try_from(v).unwrap_or(u32::MAX).min(0xff_ffff);
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

/// Appends `body` with a u8 length prefix (bodies are ours and short).
pub(crate) fn push_vec8(out: &mut Vec<u8>, body: &[u8]) {
    out.push(u8::try_from(body.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(body);
}

/// Appends `body` with a u16 length prefix.
pub(crate) fn push_vec16(out: &mut Vec<u8>, body: &[u8]) {
    push_u16(out, u16::try_from(body.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(body);
}

/// Appends `body` with a u24 length prefix.
pub(crate) fn push_vec24(out: &mut Vec<u8>, body: &[u8]) {
    push_u24(out, body.len());
    out.extend_from_slice(body);
}

/// Appends one extension.
pub fn push_extension(out: &mut Vec<u8>, ext_type: u16, body: &[u8]) {
    push_u16(out, ext_type);
    push_vec16(out, body);
}

/// What the server needs of a ClientHello, borrowed from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello<'a> {
    pub random: [u8; 32],
    pub session_id: &'a [u8],
    /// Where the session id starts in the message (4-byte header
    /// included): REALITY's AAD is the message with these bytes zeroed.
    pub session_id_offset: usize,
    pub cipher_suites: Vec<u16>,
    /// The host_name of server_name, if any.
    pub server_name: Option<&'a [u8]>,
    /// (group, key exchange bytes) in the client's order.
    pub key_shares: Vec<(u16, &'a [u8])>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
    /// ALPN protocol names in the client's order.
    pub alpn: Vec<&'a [u8]>,
}

impl<'a> ClientHello<'a> {
    /// Parses a whole ClientHello handshake message (header included).
    pub fn parse(msg: &'a [u8]) -> Result<ClientHello<'a>, WireError> {
        let mut r = Reader::new(msg, "ClientHello");
        let msg_type = r.u8()?;
        if msg_type != HS_CLIENT_HELLO {
            return Err(WireError::UnexpectedMessage {
                expected: HS_CLIENT_HELLO,
                got: msg_type,
            });
        }
        let body = r.vec24()?;
        r.finish()?;
        let mut r = Reader::new(body, "ClientHello");
        let _legacy_version = r.u16()?;
        let random: [u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| WireError::Invalid("random"))?;
        let session_id_len = usize::from(r.u8()?);
        if session_id_len > 32 {
            return Err(WireError::Invalid("ClientHello session id longer than 32"));
        }
        let session_id_offset = HANDSHAKE_HEADER_LEN + r.offset_in(body);
        let session_id = r.take(session_id_len)?;
        let suites = r.vec16()?;
        if !suites.len().is_multiple_of(2) {
            return Err(WireError::Invalid("odd cipher_suites length"));
        }
        let cipher_suites = suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let _compression = r.vec8()?;
        let mut hello = ClientHello {
            random,
            session_id,
            session_id_offset,
            cipher_suites,
            server_name: None,
            key_shares: Vec::new(),
            supported_versions: Vec::new(),
            signature_algorithms: Vec::new(),
            alpn: Vec::new(),
        };
        if r.is_empty() {
            return Ok(hello);
        }
        let extensions = r.vec16()?;
        r.finish()?;
        let mut exts = Reader::new(extensions, "ClientHello extensions");
        while !exts.is_empty() {
            let ext_type = exts.u16()?;
            let data = exts.vec16()?;
            match ext_type {
                EXT_SERVER_NAME => hello.server_name = parse_server_name(data)?,
                EXT_KEY_SHARE => {
                    let mut r = Reader::new(data, "key_share");
                    let mut list = Reader::new(r.vec16()?, "key_share");
                    r.finish()?;
                    while !list.is_empty() {
                        let group = list.u16()?;
                        hello.key_shares.push((group, list.vec16()?));
                    }
                }
                EXT_SUPPORTED_VERSIONS => {
                    let mut r = Reader::new(data, "supported_versions");
                    hello.supported_versions = u16_list(r.vec8()?)?;
                    r.finish()?;
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    let mut r = Reader::new(data, "signature_algorithms");
                    hello.signature_algorithms = u16_list(r.vec16()?)?;
                    r.finish()?;
                }
                EXT_ALPN => {
                    let mut r = Reader::new(data, "alpn");
                    let mut list = Reader::new(r.vec16()?, "alpn");
                    r.finish()?;
                    while !list.is_empty() {
                        hello.alpn.push(list.vec8()?);
                    }
                }
                _ => {}
            }
        }
        Ok(hello)
    }

    /// The key exchange bytes offered for `group`, if any.
    pub fn key_share(&self, group: u16) -> Option<&'a [u8]> {
        self.key_shares
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, k)| *k)
    }
}

fn parse_server_name(data: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let mut r = Reader::new(data, "server_name");
    let mut list = Reader::new(r.vec16()?, "server_name");
    r.finish()?;
    while !list.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == 0 {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn u16_list(data: &[u8]) -> Result<Vec<u16>, WireError> {
    if !data.len().is_multiple_of(2) {
        return Err(WireError::Invalid("odd length of a u16 list"));
    }
    Ok(data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// A ServerHello, as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello<'a> {
    pub random: [u8; 32],
    pub session_id: &'a [u8],
    pub cipher_suite: u16,
    /// The selected version from supported_versions (TLS 1.3 servers send it).
    pub selected_version: Option<u16>,
    /// The server's key share: (group, key exchange bytes).
    pub key_share: Option<(u16, &'a [u8])>,
}

impl<'a> ServerHello<'a> {
    /// Parses a whole ServerHello handshake message (header included).
    pub fn parse(msg: &'a [u8]) -> Result<ServerHello<'a>, WireError> {
        let mut r = Reader::new(msg, "ServerHello");
        let msg_type = r.u8()?;
        if msg_type != HS_SERVER_HELLO {
            return Err(WireError::UnexpectedMessage {
                expected: HS_SERVER_HELLO,
                got: msg_type,
            });
        }
        let body = r.vec24()?;
        r.finish()?;
        let mut r = Reader::new(body, "ServerHello");
        let _legacy_version = r.u16()?;
        let random: [u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| WireError::Invalid("random"))?;
        let session_id = r.vec8()?;
        let cipher_suite = r.u16()?;
        let _compression = r.u8()?;
        let mut hello = ServerHello {
            random,
            session_id,
            cipher_suite,
            selected_version: None,
            key_share: None,
        };
        if r.is_empty() {
            return Ok(hello);
        }
        let extensions = r.vec16()?;
        r.finish()?;
        let mut exts = Reader::new(extensions, "ServerHello extensions");
        while !exts.is_empty() {
            let ext_type = exts.u16()?;
            let data = exts.vec16()?;
            let mut r = Reader::new(data, "ServerHello extension");
            match ext_type {
                EXT_SUPPORTED_VERSIONS => {
                    hello.selected_version = Some(r.u16()?);
                    r.finish()?;
                }
                EXT_KEY_SHARE => {
                    let group = r.u16()?;
                    // A HelloRetryRequest carries the group alone.
                    let key = if r.is_empty() { &[][..] } else { r.vec16()? };
                    r.finish()?;
                    hello.key_share = Some((group, key));
                }
                _ => {}
            }
        }
        Ok(hello)
    }

    /// Encodes a TLS 1.3 ServerHello message (header included): version,
    /// our key share, the echoed session id.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(128);
        push_u16(&mut body, 0x0303);
        body.extend_from_slice(&self.random);
        push_vec8(&mut body, self.session_id);
        push_u16(&mut body, self.cipher_suite);
        body.push(0);
        let mut exts = Vec::with_capacity(64);
        if let Some(v) = self.selected_version {
            push_extension(&mut exts, EXT_SUPPORTED_VERSIONS, &v.to_be_bytes());
        }
        if let Some((group, key)) = self.key_share {
            let mut ks = Vec::with_capacity(4 + key.len());
            push_u16(&mut ks, group);
            push_vec16(&mut ks, key);
            push_extension(&mut exts, EXT_KEY_SHARE, &ks);
        }
        push_vec16(&mut body, &exts);
        handshake_message(HS_SERVER_HELLO, &body)
    }
}

/// The certificate_list of a Certificate message: the DER of each entry,
/// the end-entity first (entry extensions skipped).
pub fn parse_certificate(msg_body: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let mut r = Reader::new(msg_body, "Certificate");
    let _context = r.vec8()?;
    let mut list = Reader::new(r.vec24()?, "Certificate");
    r.finish()?;
    let mut certs = Vec::new();
    while !list.is_empty() {
        certs.push(list.vec24()?);
        let _extensions = list.vec16()?;
    }
    Ok(certs)
}

/// A Certificate message body holding one certificate.
pub fn encode_certificate(der: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(der.len() + 5);
    push_vec24(&mut entry, der);
    push_u16(&mut entry, 0);
    let mut body = Vec::with_capacity(entry.len() + 4);
    body.push(0);
    push_vec24(&mut body, &entry);
    body
}

/// A CertificateVerify message body: (algorithm, signature).
pub fn parse_certificate_verify(msg_body: &[u8]) -> Result<(u16, &[u8]), WireError> {
    let mut r = Reader::new(msg_body, "CertificateVerify");
    let alg = r.u16()?;
    let sig = r.vec16()?;
    r.finish()?;
    Ok((alg, sig))
}

/// A CertificateVerify message body.
pub fn encode_certificate_verify(alg: u16, sig: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(sig.len() + 4);
    push_u16(&mut body, alg);
    push_vec16(&mut body, sig);
    body
}

/// The ALPN protocol an EncryptedExtensions body selects, if any.
pub fn parse_encrypted_extensions(msg_body: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let mut r = Reader::new(msg_body, "EncryptedExtensions");
    let mut exts = Reader::new(r.vec16()?, "EncryptedExtensions");
    r.finish()?;
    let mut alpn = None;
    while !exts.is_empty() {
        let ext_type = exts.u16()?;
        let data = exts.vec16()?;
        if ext_type == EXT_ALPN {
            let mut r = Reader::new(data, "alpn");
            let mut list = Reader::new(r.vec16()?, "alpn");
            r.finish()?;
            alpn = Some(list.vec8()?);
            list.finish()?;
        }
    }
    Ok(alpn)
}

/// An EncryptedExtensions body selecting `alpn` (or nothing).
pub fn encode_encrypted_extensions(alpn: Option<&[u8]>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(proto) = alpn {
        let mut list = Vec::new();
        push_vec8(&mut list, proto);
        let mut data = Vec::new();
        push_vec16(&mut data, &list);
        push_extension(&mut exts, EXT_ALPN, &data);
    }
    let mut body = Vec::new();
    push_vec16(&mut body, &exts);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with a session id, two suites and the
    /// extensions the parser reads.
    fn sample_hello() -> Vec<u8> {
        let mut body = Vec::new();
        push_u16(&mut body, 0x0303);
        body.extend_from_slice(&[7u8; 32]);
        push_vec8(&mut body, &[9u8; 32]);
        push_vec16(&mut body, &[0x13, 0x01, 0x13, 0x02]);
        push_vec8(&mut body, &[0]);
        let mut exts = Vec::new();
        let mut sni = Vec::new();
        let mut entry = vec![0u8];
        push_vec16(&mut entry, b"example.com");
        push_vec16(&mut sni, &entry);
        push_extension(&mut exts, EXT_SERVER_NAME, &sni);
        let mut ks = Vec::new();
        push_u16(&mut ks, GROUP_X25519);
        push_vec16(&mut ks, &[1u8; 32]);
        let mut ks_ext = Vec::new();
        push_vec16(&mut ks_ext, &ks);
        push_extension(&mut exts, EXT_KEY_SHARE, &ks_ext);
        let mut sv = Vec::new();
        push_vec8(&mut sv, &[0x03, 0x04]);
        push_extension(&mut exts, EXT_SUPPORTED_VERSIONS, &sv);
        push_extension(&mut exts, 0xfe0d, b"ignored");
        push_vec16(&mut body, &exts);
        handshake_message(HS_CLIENT_HELLO, &body)
    }

    #[test]
    fn client_hello_fields_and_session_id_offset() {
        let msg = sample_hello();
        let hello = ClientHello::parse(&msg).expect("parses");
        assert_eq!(hello.random, [7u8; 32]);
        assert_eq!(hello.session_id, &[9u8; 32]);
        // header 4, version 2, random 32, length 1.
        assert_eq!(hello.session_id_offset, 39);
        assert_eq!(&msg[39..71], &[9u8; 32]);
        assert_eq!(hello.cipher_suites, vec![0x1301, 0x1302]);
        assert_eq!(hello.server_name, Some(&b"example.com"[..]));
        assert_eq!(hello.key_share(GROUP_X25519), Some(&[1u8; 32][..]));
        assert_eq!(hello.supported_versions, vec![VERSION_TLS13]);
    }

    #[test]
    fn every_truncation_of_a_client_hello_is_an_error() {
        let msg = sample_hello();
        for n in 0..msg.len() {
            assert!(ClientHello::parse(&msg[..n]).is_err(), "{n} bytes parsed");
        }
    }

    #[test]
    fn server_hello_round_trips() {
        let hello = ServerHello {
            random: [3u8; 32],
            session_id: &[5u8; 32],
            cipher_suite: 0x1303,
            selected_version: Some(VERSION_TLS13),
            key_share: Some((GROUP_X25519, &[6u8; 32])),
        };
        let msg = hello.encode();
        assert_eq!(handshake_message_len(&msg), Some(msg.len()));
        assert_eq!(ServerHello::parse(&msg).expect("parses"), hello);
    }

    #[test]
    fn certificate_and_verify_round_trip() {
        let body = encode_certificate(b"der bytes");
        assert_eq!(
            parse_certificate(&body).expect("parses"),
            vec![&b"der bytes"[..]]
        );
        let body = encode_certificate_verify(SIG_ED25519, &[4u8; 64]);
        assert_eq!(
            parse_certificate_verify(&body).expect("parses"),
            (SIG_ED25519, &[4u8; 64][..])
        );
        let body = encode_encrypted_extensions(Some(b"h2"));
        assert_eq!(
            parse_encrypted_extensions(&body).expect("parses"),
            Some(&b"h2"[..])
        );
        let body = encode_encrypted_extensions(None);
        assert_eq!(parse_encrypted_extensions(&body).expect("parses"), None);
    }

    #[test]
    fn oversized_record_is_refused() {
        let h = RecordHeader::encode(CONTENT_APPLICATION_DATA, MAX_CIPHERTEXT + 1);
        assert_eq!(
            RecordHeader::parse(&h),
            Err(WireError::RecordTooLong(MAX_CIPHERTEXT + 1))
        );
        let h = RecordHeader::encode(CONTENT_APPLICATION_DATA, MAX_CIPHERTEXT);
        assert!(RecordHeader::parse(&h).is_ok());
    }
}
