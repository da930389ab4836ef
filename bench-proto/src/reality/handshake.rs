//! The TLS 1.3 handshake, both sides, as REALITY uses it: full 1-RTT with
//! X25519, no HelloRetryRequest, no resumption, no client certificate; the
//! server authenticates with one ed25519 certificate, and what the client
//! accepts as that certificate is REALITY's decision ([`ServerCheck`]).
//!
//! The ClientHello is built and judged by the caller (REALITY puts its
//! authenticator into it); these functions take it as bytes.

use std::io;

use ring::signature::{self, Ed25519KeyPair, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::tls13::keys::{
    finished_verify_data, handshake_secrets, traffic_secrets, CipherSuite, HandshakeSecrets,
    Transcript,
};
use crate::tls13::record::{invalid, RecordKey, TlsStream};
use crate::tls13::wire::{
    encode_certificate, encode_certificate_verify, encode_encrypted_extensions, handshake_message,
    handshake_message_len, parse_certificate, parse_certificate_verify, parse_encrypted_extensions,
    ClientHello, RecordHeader, ServerHello, CONTENT_ALERT, CONTENT_APPLICATION_DATA,
    CONTENT_CHANGE_CIPHER_SPEC, CONTENT_HANDSHAKE, GROUP_X25519, HELLO_RETRY_RANDOM,
    HS_CERTIFICATE, HS_CERTIFICATE_VERIFY, HS_ENCRYPTED_EXTENSIONS, HS_FINISHED, HS_SERVER_HELLO,
    MAX_CIPHERTEXT, RECORD_HEADER_LEN, SIG_ED25519, VERSION_TLS13,
};

/// The compatibility-mode ChangeCipherSpec record (RFC 8446, D.4).
const CCS_RECORD: [u8; 6] = [CONTENT_CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01];
/// What a server's CertificateVerify signs before the transcript hash.
const SERVER_VERIFY_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify";

/// The client's decision on the server's certificate: the ed25519 public
/// key that must have signed CertificateVerify, or why it is refused.
pub type ServerCheck<'a> = &'a mut (dyn FnMut(&[u8]) -> Result<[u8; 32], String> + Send);

/// Reads records and handshake messages during the handshake.
struct HandshakeReader {
    /// Raw bytes read and not yet taken as records.
    raw: Vec<u8>,
    /// Handshake message bytes of the current encryption level.
    messages: Vec<u8>,
}

impl HandshakeReader {
    fn new(received: Vec<u8>) -> HandshakeReader {
        HandshakeReader {
            raw: received,
            messages: Vec::new(),
        }
    }

    /// The next record: (header, body).
    async fn record<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
    ) -> io::Result<([u8; RECORD_HEADER_LEN], Vec<u8>)> {
        loop {
            if self.raw.len() >= RECORD_HEADER_LEN {
                let mut header = [0u8; RECORD_HEADER_LEN];
                header.copy_from_slice(&self.raw[..RECORD_HEADER_LEN]);
                let parsed = RecordHeader::parse(&header).map_err(|e| invalid(e.to_string()))?;
                if self.raw.len() >= RECORD_HEADER_LEN + parsed.length {
                    let body =
                        self.raw[RECORD_HEADER_LEN..RECORD_HEADER_LEN + parsed.length].to_vec();
                    self.raw.drain(..RECORD_HEADER_LEN + parsed.length);
                    return Ok((header, body));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next handshake message (header included): unprotected when `key`
    /// is `None`, else from protected records. ChangeCipherSpec records are
    /// skipped; an alert ends the handshake with its description.
    async fn message<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        mut key: Option<&mut RecordKey>,
    ) -> io::Result<Vec<u8>> {
        loop {
            if let Some(len) = handshake_message_len(&self.messages) {
                return Ok(self.messages.drain(..len).collect());
            }
            if self.messages.len() > 4 * MAX_CIPHERTEXT {
                return Err(invalid("handshake message too long"));
            }
            let (header, mut body) = self.record(io).await?;
            let (content_type, len) = match (header[0], key.as_deref_mut()) {
                (CONTENT_CHANGE_CIPHER_SPEC, _) => {
                    if body != [1] {
                        return Err(invalid("malformed ChangeCipherSpec"));
                    }
                    continue;
                }
                (CONTENT_APPLICATION_DATA, Some(k)) => k.open(&header, &mut body)?,
                (t, None) => (t, body.len()),
                (t, Some(_)) => {
                    return Err(invalid(format!(
                        "unprotected record of type {t} after ServerHello"
                    )));
                }
            };
            match content_type {
                CONTENT_HANDSHAKE => self.messages.extend_from_slice(&body[..len]),
                CONTENT_ALERT => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("TLS alert during the handshake: {:?}", &body[..len]),
                    ))
                }
                t => return Err(invalid(format!("record of type {t} during the handshake"))),
            }
        }
    }
}

fn expect_type(msg: &[u8], expected: u8, name: &str) -> io::Result<()> {
    if msg.first() == Some(&expected) {
        Ok(())
    } else {
        Err(invalid(format!(
            "expected {name}, got handshake message {:?}",
            msg.first()
        )))
    }
}

/// The content a server's CertificateVerify signs.
fn server_verify_message(transcript_hash: &[u8]) -> Vec<u8> {
    let mut m = vec![0x20u8; 64];
    m.extend_from_slice(SERVER_VERIFY_CONTEXT);
    m.push(0);
    m.extend_from_slice(transcript_hash);
    m
}

/// X25519 with a check that the peer's share is not a low-order point.
pub(crate) fn x25519(secret: &StaticSecret, peer: &[u8]) -> io::Result<[u8; 32]> {
    let peer: [u8; 32] = peer
        .try_into()
        .map_err(|_| invalid("X25519 key share is not 32 bytes"))?;
    let shared = secret.diffie_hellman(&PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(invalid("X25519 key share of low order"));
    }
    Ok(shared.to_bytes())
}

/// A fresh X25519 secret from the system's randomness.
pub(crate) fn x25519_secret() -> io::Result<StaticSecret> {
    Ok(StaticSecret::from(random_bytes::<32>()?))
}

pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| io::Error::other("the system's random source failed"))?;
    Ok(b)
}

/// The state both sides reach after ServerHello: the transcript so far,
/// the handshake secrets and each direction's handshake key.
struct HelloKeys {
    transcript: Transcript,
    hs: HandshakeSecrets,
    server_hs: RecordKey,
    client_hs: RecordKey,
}

impl HelloKeys {
    fn new(
        suite: CipherSuite,
        shared: &[u8],
        client_hello: &[u8],
        server_hello: &[u8],
    ) -> HelloKeys {
        let mut transcript = Transcript::new(suite);
        transcript.add(client_hello);
        transcript.add(server_hello);
        let hs = handshake_secrets(suite, shared, transcript.hash().as_ref());
        HelloKeys {
            server_hs: RecordKey::new(suite, &hs.server),
            client_hs: RecordKey::new(suite, &hs.client),
            transcript,
            hs,
        }
    }
}

/// Runs the client side: sends `client_hello` (a whole handshake message,
/// whose X25519 key share belongs to `secret`), reads the server's flight,
/// lets `check` judge the certificate, verifies CertificateVerify and
/// Finished, and sends the client's Finished.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    client_hello: &[u8],
    secret: &StaticSecret,
    check: ServerCheck<'_>,
) -> io::Result<TlsStream<S>> {
    let hello = ClientHello::parse(client_hello).map_err(|e| invalid(e.to_string()))?;
    // The first ClientHello's record says TLS 1.0, as browsers' do.
    let mut first = Vec::with_capacity(RECORD_HEADER_LEN + client_hello.len());
    first.extend_from_slice(&RecordHeader::encode(CONTENT_HANDSHAKE, client_hello.len()));
    first[2] = 0x01;
    first.extend_from_slice(client_hello);
    io.write_all(&first).await?;

    let mut reader = HandshakeReader::new(Vec::new());
    let sh_msg = reader.message(&mut io, None).await?;
    expect_type(&sh_msg, HS_SERVER_HELLO, "ServerHello")?;
    let sh = ServerHello::parse(&sh_msg).map_err(|e| invalid(e.to_string()))?;
    if sh.random == HELLO_RETRY_RANDOM {
        return Err(invalid(
            "the server asked for a HelloRetryRequest, which this client does not do",
        ));
    }
    if sh.selected_version != Some(VERSION_TLS13) {
        return Err(invalid("the server did not select TLS 1.3"));
    }
    if sh.session_id != hello.session_id {
        return Err(invalid("the server did not echo the session id"));
    }
    let suite = CipherSuite::from_id(sh.cipher_suite)
        .filter(|s| hello.cipher_suites.contains(&s.id()))
        .ok_or_else(|| {
            invalid(format!(
                "the server chose cipher suite {:#06x}, not offered",
                sh.cipher_suite
            ))
        })?;
    let server_share = match sh.key_share {
        Some((GROUP_X25519, key)) => key,
        Some((group, _)) => {
            return Err(invalid(format!(
                "the server chose group {group:#06x}; only X25519 is implemented"
            )))
        }
        None => return Err(invalid("ServerHello without a key share")),
    };
    let shared = x25519(secret, server_share)?;

    let HelloKeys {
        mut transcript,
        hs,
        mut server_hs,
        mut client_hs,
    } = HelloKeys::new(suite, &shared, client_hello, &sh_msg);
    // Later messages must come protected, at the handshake level.
    if !reader.messages.is_empty() {
        return Err(invalid("unprotected handshake bytes after ServerHello"));
    }

    let ee = reader.message(&mut io, Some(&mut server_hs)).await?;
    expect_type(&ee, HS_ENCRYPTED_EXTENSIONS, "EncryptedExtensions")?;
    // Checked for form only: nothing here depends on the ALPN chosen.
    parse_encrypted_extensions(&ee[4..]).map_err(|e| invalid(e.to_string()))?;
    transcript.add(&ee);

    let cert = reader.message(&mut io, Some(&mut server_hs)).await?;
    expect_type(&cert, HS_CERTIFICATE, "Certificate")?;
    let certs = parse_certificate(&cert[4..]).map_err(|e| invalid(e.to_string()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| invalid("the server sent no certificate"))?;
    let public_key =
        check(leaf).map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))?;
    transcript.add(&cert);

    let cv = reader.message(&mut io, Some(&mut server_hs)).await?;
    expect_type(&cv, HS_CERTIFICATE_VERIFY, "CertificateVerify")?;
    let (alg, sig) = parse_certificate_verify(&cv[4..]).map_err(|e| invalid(e.to_string()))?;
    if alg != SIG_ED25519 {
        return Err(invalid(format!(
            "CertificateVerify with algorithm {alg:#06x}, not ed25519"
        )));
    }
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&server_verify_message(transcript.hash().as_ref()), sig)
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "CertificateVerify signature does not verify",
            )
        })?;
    transcript.add(&cv);

    let fin = reader.message(&mut io, Some(&mut server_hs)).await?;
    expect_type(&fin, HS_FINISHED, "Finished")?;
    let expected = finished_verify_data(suite, &hs.server, transcript.hash().as_ref());
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&fin[4..], &expected[..])) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "server Finished does not verify",
        ));
    }
    transcript.add(&fin);
    if !reader.messages.is_empty() {
        return Err(invalid("handshake bytes after the server's Finished"));
    }
    let finished_hash = transcript.hash();
    let ap = traffic_secrets(suite, &hs, finished_hash.as_ref());

    let mut flight = CCS_RECORD.to_vec();
    let client_fin = handshake_message(
        HS_FINISHED,
        &finished_verify_data(suite, &hs.client, finished_hash.as_ref()),
    );
    client_hs.seal(CONTENT_HANDSHAKE, &client_fin, &mut flight)?;
    io.write_all(&flight).await?;

    Ok(TlsStream::with_secrets(
        io,
        suite,
        ap.server,
        ap.client,
        &reader.raw,
    ))
}

/// What the server side needs beyond the ClientHello.
pub struct ServerIdentity<'a> {
    /// The certificate (DER) to send.
    pub certificate: &'a [u8],
    /// Its key, which signs CertificateVerify.
    pub key: &'a Ed25519KeyPair,
    /// The ALPN protocol to select, if the client offered it.
    pub alpn: Option<&'a [u8]>,
}

/// Runs the server side after the ClientHello (`client_hello`, a whole
/// message, already read): answers with our flight and checks the client's
/// Finished. `received` holds bytes read past the ClientHello.
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    client_hello: &[u8],
    received: Vec<u8>,
    identity: ServerIdentity<'_>,
) -> io::Result<TlsStream<S>> {
    let hello = ClientHello::parse(client_hello).map_err(|e| invalid(e.to_string()))?;
    if !hello.supported_versions.contains(&VERSION_TLS13) {
        return Err(invalid("the client does not offer TLS 1.3"));
    }
    // The client's preference, as Go's server does without AES hardware hints.
    let suite = hello
        .cipher_suites
        .iter()
        .find_map(|&id| CipherSuite::from_id(id))
        .ok_or_else(|| invalid("no TLS 1.3 cipher suite in common"))?;
    let client_share = hello
        .key_share(GROUP_X25519)
        .ok_or_else(|| invalid("no X25519 key share"))?;
    let secret = x25519_secret()?;
    let shared = x25519(&secret, client_share)?;
    let public = PublicKey::from(&secret);

    let sh_msg = ServerHello {
        random: random_bytes::<32>()?,
        session_id: hello.session_id,
        cipher_suite: suite.id(),
        selected_version: Some(VERSION_TLS13),
        key_share: Some((GROUP_X25519, public.as_bytes())),
    }
    .encode();
    let HelloKeys {
        mut transcript,
        hs,
        mut server_hs,
        mut client_hs,
    } = HelloKeys::new(suite, &shared, client_hello, &sh_msg);

    let alpn = identity
        .alpn
        .filter(|want| hello.alpn.iter().any(|offered| offered == want));
    let ee = handshake_message(HS_ENCRYPTED_EXTENSIONS, &encode_encrypted_extensions(alpn));
    transcript.add(&ee);
    let cert = handshake_message(HS_CERTIFICATE, &encode_certificate(identity.certificate));
    transcript.add(&cert);
    let sig = identity
        .key
        .sign(&server_verify_message(transcript.hash().as_ref()));
    let cv = handshake_message(
        HS_CERTIFICATE_VERIFY,
        &encode_certificate_verify(SIG_ED25519, sig.as_ref()),
    );
    transcript.add(&cv);
    let fin = handshake_message(
        HS_FINISHED,
        &finished_verify_data(suite, &hs.server, transcript.hash().as_ref()),
    );
    transcript.add(&fin);
    let finished_hash = transcript.hash();
    let ap = traffic_secrets(suite, &hs, finished_hash.as_ref());

    let mut flight = Vec::with_capacity(1024 + identity.certificate.len());
    flight.extend_from_slice(&RecordHeader::encode(CONTENT_HANDSHAKE, sh_msg.len()));
    flight.extend_from_slice(&sh_msg);
    // Compatibility mode: a client that sent a session id expects it.
    if !hello.session_id.is_empty() {
        flight.extend_from_slice(&CCS_RECORD);
    }
    let mut encrypted = ee;
    encrypted.extend_from_slice(&cert);
    encrypted.extend_from_slice(&cv);
    encrypted.extend_from_slice(&fin);
    server_hs.seal(CONTENT_HANDSHAKE, &encrypted, &mut flight)?;
    io.write_all(&flight).await?;

    let mut reader = HandshakeReader::new(received);
    let client_fin = reader.message(&mut io, Some(&mut client_hs)).await?;
    expect_type(&client_fin, HS_FINISHED, "Finished")?;
    let expected = finished_verify_data(suite, &hs.client, finished_hash.as_ref());
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &client_fin[4..],
        &expected[..],
    )) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "client Finished does not verify",
        ));
    }
    if !reader.messages.is_empty() {
        return Err(invalid("handshake bytes after the client's Finished"));
    }
    Ok(TlsStream::with_secrets(
        io,
        suite,
        ap.client,
        ap.server,
        &reader.raw,
    ))
}

/// The ed25519 public key of a key pair, as the certificate carries it.
pub(crate) fn ed25519_public(key: &Ed25519KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key().as_ref());
    out
}

/// Our handshake against rustls, an independent TLS 1.3: the key
/// schedule, record protection, transcript and CertificateVerify must
/// agree byte for byte, or the handshake or the data check fails.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::cert::key_and_signature;
    use super::super::hello::{client_hello, HelloParams};
    use super::*;

    /// An ed25519 certificate for localhost: (DER, PKCS#8 key).
    fn ed25519_identity() -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        (cert.der().to_vec(), key.serialize_der())
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Sends 100 kB each way and checks it arrives intact.
    async fn exchange<A, B>(mut a: A, mut b: B)
    where
        A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let expected = data.clone();
        let side_a = tokio::spawn(async move {
            a.write_all(&data).await.expect("a writes");
            a.shutdown().await.expect("a shuts down");
            let mut back = Vec::new();
            a.read_to_end(&mut back).await.expect("a reads");
            back
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("b reads");
        assert_eq!(got, expected);
        b.write_all(&got).await.expect("b echoes");
        b.shutdown().await.expect("b shuts down");
        assert_eq!(side_a.await.expect("joins"), expected);
    }

    #[tokio::test]
    async fn our_client_completes_a_handshake_with_rustls() {
        let (der, key) = ed25519_identity();
        for suite in [
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            let mut provider = (*provider()).clone();
            provider.cipher_suites = vec![suite];
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
                )
                .expect("config");
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let server =
                tokio::spawn(async move { acceptor.accept(theirs).await.expect("rustls accepts") });
            let secret = x25519_secret().expect("random");
            let hello = client_hello(&HelloParams {
                random: random_bytes::<32>().expect("random"),
                server_name: "localhost",
                x25519_public: *PublicKey::from(&secret).as_bytes(),
                hybrid_share: None,
                grease_seed: [0x1a, 0x2a, 0x3a, 0x4a],
                ech_grease_payload: &[5u8; 144],
            });
            // Chrome's list has no ed25519 (REALITY servers sign with it
            // anyway); rustls needs it offered: it replaces the first entry.
            let mut hello = hello;
            let at = hello
                .windows(4)
                .position(|w| w == [0x04, 0x03, 0x08, 0x04])
                .expect("signature_algorithms");
            hello[at..at + 2].copy_from_slice(&SIG_ED25519.to_be_bytes());
            let mut check = |der: &[u8]| key_and_signature(der).map(|(k, _)| k);
            let ours = client(ours, &hello, &secret, &mut check)
                .await
                .expect("handshake");
            let theirs = server.await.expect("joins");
            assert_eq!(
                theirs
                    .get_ref()
                    .1
                    .negotiated_cipher_suite()
                    .map(|s| s.suite()),
                Some(suite.suite())
            );
            exchange(ours, theirs).await;
        }
    }

    #[tokio::test]
    async fn rustls_completes_a_handshake_with_our_server() {
        let (der, pkcs8) = ed25519_identity();
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("key");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(der.clone())).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let (mut ours, theirs) = tokio::io::duplex(1 << 16);
        let client = tokio::spawn(async move {
            connector
                .connect(ServerName::try_from("localhost").expect("name"), theirs)
                .await
                .expect("rustls connects")
        });
        // Read the ClientHello as the REALITY server does: one record.
        let mut header = [0u8; RECORD_HEADER_LEN];
        ours.read_exact(&mut header).await.expect("record header");
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut hello = vec![0u8; len];
        ours.read_exact(&mut hello).await.expect("ClientHello");
        let identity = ServerIdentity {
            certificate: &der,
            key: &key,
            alpn: None,
        };
        let stream = server(ours, &hello, Vec::new(), identity)
            .await
            .expect("handshake");
        let theirs = client.await.expect("joins");
        exchange(theirs, stream).await;
    }
}
