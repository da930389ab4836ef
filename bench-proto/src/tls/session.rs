//! A TLS session of protocol `tls` with our record layer: rustls runs the
//! handshake (its unbuffered API, so that we see exactly which received
//! bytes it used), then hands the traffic keys over through its
//! kernel-connection API and [`crate::tls13::record::TlsStream`] carries the
//! data. rustls keeps what it is good at after that: the next keys on a
//! KeyUpdate, and the tickets a server sends for resumption.
//!
//! Why: rustls's buffered API (tokio-rustls) copies every received record
//! into a fresh `Vec` and every sent record into another, one allocation
//! per 16-KiB record each way (docs/case-studies/tls.md). The record layer
//! opens records in place and seals into one reused buffer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ring::aead;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::tls13::record::{Handover, KeySchedule, RecordKey, TlsStream};

/// A client session over either record layer (`tls.records`).
// Both variants are over 1 KiB (AEAD key schedules); one per connection.
#[allow(clippy::large_enum_variant)]
pub enum ClientStream<S> {
    Own(TlsStream<S>),
    Rustls(tokio_rustls::client::TlsStream<S>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Own(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Rustls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Own(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Rustls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Own(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Rustls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Own(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Rustls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Runs the client handshake on `io` and returns the session.
pub async fn connect<S>(
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    mut io: S,
) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    let rest = handshake(&mut io, &mut conn).await?;
    let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(tls_error)?;
    into_stream(io, secrets, Box::new(ClientSchedule(kernel)), &rest)
}

/// Runs the server handshake on `io` and returns the session.
pub async fn accept<S>(config: Arc<rustls::ServerConfig>, mut io: S) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let rest = handshake(&mut io, &mut conn).await?;
    let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(tls_error)?;
    into_stream(io, secrets, Box::new(ServerSchedule(kernel)), &rest)
}

/// What the handshake read past its end.
#[derive(Default)]
struct Rest {
    records: Vec<u8>,
    plaintext: Vec<u8>,
    /// The peer's close_notify came with the handshake.
    peer_closed: bool,
}

/// A client or server connection of rustls's unbuffered API.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn handshaking(&self) -> bool;
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
}

/// Drives a handshake to its end: writes what rustls encodes, reads when it
/// is blocked. Returns the received bytes it did not use.
async fn handshake<S, C>(io: &mut S, conn: &mut C) -> io::Result<Rest>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Unbuffered,
{
    let mut incoming = vec![0u8; 16 * 1024];
    let mut used = 0;
    let mut outgoing = vec![0u8; 16 * 1024];
    let mut queued = 0;
    let mut plaintext = Vec::new();
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process(&mut incoming[..used]);
        let mut need_input = false;
        let mut can_write = false;
        let mut peer_closed = false;
        match state.map_err(tls_error)? {
            ConnectionState::EncodeTlsData(mut data) => loop {
                match data.encode(&mut outgoing[queued..]) {
                    Ok(n) => {
                        queued += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(e)) => {
                        outgoing.resize(queued + e.required_size, 0);
                    }
                    Err(EncodeError::AlreadyEncoded) => break,
                }
            },
            ConnectionState::TransmitTlsData(data) => {
                io.write_all(&outgoing[..queued]).await?;
                io.flush().await?;
                queued = 0;
                data.done();
            }
            ConnectionState::BlockedHandshake => need_input = true,
            // A server may be able to send (0.5-RTT) before the client's
            // Finished: the handshake is over only when rustls says so.
            ConnectionState::WriteTraffic(_) => can_write = true,
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    plaintext.extend_from_slice(record.payload);
                }
            }
            // The peer may finish, send and close at once (close_notify
            // right behind its Finished): the session is up, and its
            // read side already over.
            ConnectionState::PeerClosed | ConnectionState::Closed => peer_closed = true,
            _ => {
                return Err(io::Error::other(
                    "TLS handshake reached a state we do not handle (early data?)",
                ))
            }
        }
        incoming.copy_within(discard..used, 0);
        used -= discard;
        if peer_closed && conn.handshaking() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "TLS peer closed during the handshake",
            ));
        }
        if can_write && conn.handshaking() {
            need_input = true;
        } else if can_write || peer_closed {
            if queued > 0 {
                io.write_all(&outgoing[..queued]).await?;
                io.flush().await?;
            }
            incoming.truncate(used);
            return Ok(Rest {
                records: incoming,
                plaintext,
                peer_closed,
            });
        }
        if need_input {
            if used == incoming.len() {
                incoming.resize(incoming.len() * 2, 0);
            }
            let n = io.read(&mut incoming[used..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS peer closed during the handshake",
                ));
            }
            used += n;
        }
    }
}

fn into_stream<S>(
    io: S,
    secrets: ExtractedSecrets,
    schedule: Box<dyn KeySchedule>,
    rest: &Rest,
) -> io::Result<TlsStream<S>> {
    let (read_seq, read) = secrets.rx;
    let (write_seq, write) = secrets.tx;
    Ok(TlsStream::new(
        io,
        record_key(read_seq, read)?,
        record_key(write_seq, write)?,
        schedule,
        Handover {
            records: &rest.records,
            plaintext: &rest.plaintext,
            peer_closed: rest.peer_closed,
        },
    ))
}

/// Our record key for rustls's traffic secrets.
fn record_key(seq: u64, secrets: ConnectionTrafficSecrets) -> io::Result<RecordKey> {
    let (alg, key, iv) = match &secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (&aead::CHACHA20_POLY1305, key, iv)
        }
        _ => {
            return Err(io::Error::other(
                "TLS cipher suite without a record layer here",
            ))
        }
    };
    let iv: [u8; aead::NONCE_LEN] = iv
        .as_ref()
        .try_into()
        .map_err(|_| io::Error::other("TLS IV of the wrong length"))?;
    RecordKey::from_parts(alg, key.as_ref(), iv, seq)
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The client's next keys come from rustls, and its tickets go to rustls's
/// session store, so the next connection can resume.
struct ClientSchedule(KernelConnection<ClientConnectionData>);

impl KeySchedule for ClientSchedule {
    fn next_read_key(&mut self) -> io::Result<RecordKey> {
        let (seq, secrets) = self.0.update_rx_secret().map_err(tls_error)?;
        record_key(seq, secrets)
    }

    fn next_write_key(&mut self) -> io::Result<RecordKey> {
        let (seq, secrets) = self.0.update_tx_secret().map_err(tls_error)?;
        record_key(seq, secrets)
    }

    fn new_session_ticket(&mut self, body: &[u8]) -> io::Result<()> {
        self.0.handle_new_session_ticket(body).map_err(tls_error)
    }
}

/// The server's next keys come from rustls; a client sends no tickets.
struct ServerSchedule(KernelConnection<ServerConnectionData>);

impl KeySchedule for ServerSchedule {
    fn next_read_key(&mut self) -> io::Result<RecordKey> {
        let (seq, secrets) = self.0.update_rx_secret().map_err(tls_error)?;
        record_key(seq, secrets)
    }

    fn next_write_key(&mut self) -> io::Result<RecordKey> {
        let (seq, secrets) = self.0.update_tx_secret().map_err(tls_error)?;
        record_key(seq, secrets)
    }

    fn new_session_ticket(&mut self, _body: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "NewSessionTicket from a TLS client",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::HandshakeKind;
    use tokio::io::duplex;

    struct Configs {
        client: Arc<rustls::ClientConfig>,
        server: Arc<rustls::ServerConfig>,
        dir: std::path::PathBuf,
    }

    impl Drop for Configs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn configs(tag: &str) -> Configs {
        let dir = std::env::temp_dir().join(format!("pp-session-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = crate::pki::self_signed(&["localhost"])
            .expect("generate")
            .write(&dir)
            .expect("write");
        let mut client = crate::pki::client_config(&cert, &[]).expect("client config");
        client.enable_secret_extraction = true;
        let mut server = crate::pki::server_config(&cert, &key, &[]).expect("server config");
        server.enable_secret_extraction = true;
        Configs {
            client: Arc::new(client),
            server: Arc::new(server),
            dir,
        }
    }

    fn name() -> ServerName<'static> {
        ServerName::try_from("localhost").expect("name")
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// Our client and our server, each side's handshake done by rustls:
    /// bytes arrive intact both ways, half-close passes through.
    #[tokio::test]
    async fn our_sessions_carry_bytes_both_ways() {
        let c = configs("own");
        let (a, b) = duplex(1 << 16);
        let server = tokio::spawn(accept(Arc::clone(&c.server), b));
        let mut client = connect(Arc::clone(&c.client), name(), a)
            .await
            .expect("client handshake");
        let mut server = server.await.expect("joins").expect("server handshake");
        let up = payload(1 << 20);
        let sent = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.expect("writes");
            client.shutdown().await.expect("shuts down");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("reads");
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("reads");
        assert_eq!(blake3::hash(&got), blake3::hash(&up));
        server.write_all(&payload(300_000)).await.expect("answers");
        server.shutdown().await.expect("shuts down");
        assert_eq!(writer.await.expect("joins"), payload(300_000));
    }

    /// Against rustls's own buffered server: a KeyUpdate it sends is
    /// followed (the bytes after it open), and the tickets it sends reach
    /// rustls's session store, so the next connection resumes. Fails if
    /// tickets are dropped (the second handshake is full) or the read key
    /// is not updated (bad_record_mac).
    #[tokio::test]
    async fn a_rustls_server_s_key_updates_and_tickets_are_honoured() {
        let c = configs("rustls");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&c.server));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (a, b) = duplex(1 << 16);
            let acceptor = acceptor.clone();
            let server = tokio::spawn(async move {
                let mut s = acceptor.accept(b).await.expect("server handshake");
                let kind = s.get_ref().1.handshake_kind();
                s.write_all(b"before").await.expect("writes");
                s.get_mut().1.refresh_traffic_keys().expect("key update");
                s.write_all(b" after").await.expect("writes");
                s.shutdown().await.expect("shuts down");
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("reads");
                (kind, got)
            });
            let mut client = connect(Arc::clone(&c.client), name(), a)
                .await
                .expect("client handshake");
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("reads");
            assert_eq!(got, b"before after");
            client.write_all(b"thanks").await.expect("writes");
            client.shutdown().await.expect("shuts down");
            let (kind, back) = server.await.expect("joins");
            assert_eq!(back, b"thanks");
            kinds.push(kind);
        }
        assert_eq!(
            kinds,
            [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
        );
    }

    /// Against rustls's own buffered client, which speaks first right after
    /// its Finished, and may close at once: what arrives with the
    /// handshake's last flight is kept, its close_notify included. Fails
    /// if the handshake treats a close behind the Finished as a failed
    /// handshake, or drops what rustls already opened.
    #[tokio::test]
    async fn a_rustls_client_s_first_bytes_and_close_are_not_lost() {
        let c = configs("client");
        for len in [100_000, 5] {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&c.client));
            let (a, b) = duplex(1 << 18);
            let client = tokio::spawn(async move {
                let mut s = connector.connect(name(), a).await.expect("handshake");
                s.write_all(&payload(len)).await.expect("writes");
                s.shutdown().await.expect("shuts down");
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("reads");
                got
            });
            // Let the client finish, write and close before we read on.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let mut server = accept(Arc::clone(&c.server), b).await.expect("handshake");
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.expect("reads");
            assert_eq!(got, payload(len));
            server.write_all(b"ok").await.expect("writes");
            server.shutdown().await.expect("shuts down");
            assert_eq!(client.await.expect("joins"), b"ok");
        }
    }
}
