//! Helpers the `tuic_*` test files share: certificates, endpoints, a hashing
//! sink, a SOCKS5 CONNECT, a UDP echo peer and a raw QUIC client that speaks
//! TUIC commands by hand.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bench_proto::pki;
use bench_proto::relay::RelayOptions;
use bench_proto::tuic::{self, Client, ClientOptions, ServerOptions, Settings, Uuid};
use bench_proto::TargetAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

pub const MIB: u64 = 1024 * 1024;
pub const UUID: &str = "6f1c2a4e-0d3b-4c5a-9e8f-1a2b3c4d5e6f";
pub const PASSWORD: &str = "correct horse battery staple";

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pp-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, written to disk.
pub struct Pki {
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki() -> Pki {
    let dir = TempDir::new("tuic");
    let id = pki::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let (cert, key) = id.write(dir.path()).unwrap();
    Pki { dir, cert, key }
}

pub fn uuid() -> Uuid {
    UUID.parse().unwrap()
}

pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    let mut s = Settings::default();
    for (k, v) in pairs {
        s.set(k, v).unwrap();
    }
    s
}

pub fn server_options(pki: &Pki, settings: Settings) -> ServerOptions {
    ServerOptions {
        tls: pki::server_config(&pki.cert, &pki.key, &[]).unwrap(),
        users: vec![(uuid(), PASSWORD.to_owned())],
        settings,
        relay: RelayOptions::default(),
    }
}

/// Starts a tuic server on 127.0.0.1; returns its UDP address.
pub async fn start_server(pki: &Pki, settings: Settings) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let opts = server_options(pki, settings);
    tokio::spawn(async move {
        if let Err(e) = tuic::run_server(socket, opts).await {
            panic!("tuic server: {e}");
        }
    });
    addr
}

pub fn client_options(
    pki: &Pki,
    server: SocketAddr,
    settings: Settings,
    uuid: Uuid,
    password: &str,
) -> ClientOptions {
    ClientOptions {
        server,
        server_name: "localhost".into(),
        uuid,
        password: password.into(),
        tls: pki::client_config(&pki.cert, &[]).unwrap(),
        settings,
        relay: RelayOptions::default(),
    }
}

/// Starts a tuic client with a SOCKS5 listener on 127.0.0.1; returns the
/// SOCKS5 address and a handle on the client.
pub async fn start_client(opts: ClientOptions) -> (SocketAddr, Client) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socks = l.local_addr().unwrap();
    let client = Client::new(opts).unwrap();
    tokio::spawn(client.clone().serve(l));
    (socks, client)
}

/// Bytes and BLAKE3 hash of one direction as one end saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    pub hash: blake3::Hash,
}

/// What one end of a proxied connection sent and received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub sent: Tally,
    pub received: Tally,
}

/// Writes `len` bytes of the BLAKE3 XOF stream of `seed`, then shuts down.
pub async fn send<W: AsyncWrite + Unpin>(mut w: W, seed: &str, len: u64) -> Tally {
    let mut source = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 48 * 1024 + 13];
    let mut left = len;
    while left > 0 {
        let n = buf.len().min(left as usize);
        source.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    w.shutdown().await.unwrap();
    Tally {
        bytes: len,
        hash: hasher.finalize(),
    }
}

/// Reads to EOF, hashing.
pub async fn receive<R: AsyncRead + Unpin>(mut r: R) -> Tally {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Tally {
        bytes,
        hash: hasher.finalize(),
    }
}

/// Sends and receives at the same time, as a real peer does.
pub async fn exchange(stream: TcpStream, seed: &str, len: u64) -> Ends {
    let (r, w) = stream.into_split();
    let (sent, received) = tokio::join!(send(w, seed, len), receive(r));
    Ends { sent, received }
}

/// A sink that, per connection, hashes what it receives while sending
/// `down_len` bytes of the "down" stream, and reports each connection.
pub async fn start_sink(down_len: u64) -> (SocketAddr, mpsc::UnboundedReceiver<Ends>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(exchange(stream, "down", down_len).await);
            });
        }
    });
    (addr, rx)
}

/// A SOCKS5 CONNECT; returns the stream and the reply code.
pub async fn socks_connect(proxy: SocketAddr, target: &TargetAddr) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    s.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut req = vec![5, 1, 0];
    target.encode(&mut req).unwrap();
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 3];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!((head[0], head[2]), (5, 0), "reply header {head:?}");
    TargetAddr::read_from(&mut s).await.unwrap();
    (s, head[1])
}

/// Runs `n` concurrent CONNECTs through `socks` to a fresh sink, each moving
/// `up + i` bytes up and `down` bytes down, and checks every byte both ways.
pub async fn bulk(socks: SocketAddr, n: usize, up: u64, down: u64) {
    let (sink, mut reports) = start_sink(down).await;
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(async move {
            let (stream, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
            assert_eq!(code, 0, "CONNECT {i}");
            exchange(stream, &format!("up-{i}"), up + i as u64).await
        }));
    }
    let mut uploads = Vec::new();
    let mut downloads = Vec::new();
    for t in tasks {
        let ends = t.await.unwrap();
        uploads.push(ends.sent);
        downloads.push(ends.received);
    }
    let mut arrived = Vec::new();
    let mut sent_down = Vec::new();
    for _ in 0..n {
        let at_sink = reports.recv().await.unwrap();
        arrived.push(at_sink.received);
        sent_down.push(at_sink.sent);
    }
    let key = |t: &Tally| (t.bytes, *t.hash.as_bytes());
    uploads.sort_by_key(key);
    arrived.sort_by_key(key);
    assert_eq!(uploads, arrived, "uploads differ");
    // Every connection got the same download; each must be whole.
    for (got, want) in downloads.iter().zip(&sent_down) {
        assert_eq!(got, want, "download differs");
        assert_eq!(got.bytes, down);
    }
}

/// A UDP peer on 127.0.0.1 that answers every packet with the same bytes
/// and reports the source address it saw.
pub async fn start_udp_echo() -> (SocketAddr, mpsc::UnboundedReceiver<SocketAddr>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            let _ = tx.send(from);
            s.send_to(&buf[..n], from).await.unwrap();
        }
    });
    (addr, rx)
}

/// A plain quinn client connection to a tuic server, for sending commands
/// by hand.
pub async fn raw_connection(pki: &Pki, server: SocketAddr) -> quinn::Connection {
    let mut tls = pki::client_config(&pki.cert, &[]).unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(server, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// Sends a valid `Authenticate` on `conn`.
pub async fn authenticate(conn: &quinn::Connection) {
    let token = tuic::auth_token(conn, &uuid(), PASSWORD.as_bytes()).unwrap();
    let cmd = tuic::Command::Authenticate {
        uuid: uuid(),
        token,
    };
    send_uni(conn, &cmd.to_bytes().unwrap()).await;
}

/// Sends `bytes` on a new unidirectional stream and finishes it.
pub async fn send_uni(conn: &quinn::Connection, bytes: &[u8]) -> quinn::SendStream {
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.finish().unwrap();
    s
}

/// Waits at most `secs` seconds for `f`.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// Reads until `expect` bytes or EOF, hashing.
pub async fn receive_exact<R: AsyncRead + Unpin>(mut r: R, expect: u64) -> (Tally, R) {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    while bytes < expect {
        let want = buf.len().min((expect - bytes) as usize);
        let n = r.read(&mut buf[..want]).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let tally = Tally {
        bytes,
        hash: hasher.finalize(),
    };
    (tally, r)
}

/// Like [`exchange`] for peers without half-close (sing-box closes both
/// directions once one has ended): sends `len` bytes while reading exactly
/// `expect`, and shuts down only when both are done.
pub async fn exchange_exact(stream: TcpStream, seed: &str, len: u64, expect: u64) -> Ends {
    let (r, w) = stream.into_split();
    let send_only = async move {
        let mut w = w;
        let mut source = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 48 * 1024 + 13];
        let mut left = len;
        while left > 0 {
            let n = buf.len().min(left as usize);
            source.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            w.write_all(&buf[..n]).await.unwrap();
            left -= n as u64;
        }
        let tally = Tally {
            bytes: len,
            hash: hasher.finalize(),
        };
        (tally, w)
    };
    let ((sent, mut w), (received, _r)) = tokio::join!(send_only, receive_exact(r, expect));
    let _ = w.shutdown().await;
    Ends { sent, received }
}

/// [`start_sink`] for [`exchange_exact`]: expects `up_len` bytes per
/// connection.
pub async fn start_sink_exact(
    down_len: u64,
    up_len: u64,
) -> (SocketAddr, mpsc::UnboundedReceiver<Ends>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(exchange_exact(stream, "down", down_len, up_len).await);
            });
        }
    });
    (addr, rx)
}

/// [`bulk`] with [`exchange_exact`]: `n` connections, `up` bytes up (a
/// different stream each) and `down` bytes down, every byte checked.
pub async fn bulk_exact(socks: SocketAddr, n: usize, up: u64, down: u64) {
    let (sink, mut reports) = start_sink_exact(down, up).await;
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(async move {
            let (stream, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
            assert_eq!(code, 0, "CONNECT {i}");
            exchange_exact(stream, &format!("up-{i}"), up, down).await
        }));
    }
    let mut uploads = Vec::new();
    let mut downloads = Vec::new();
    for t in tasks {
        let ends = t.await.unwrap();
        uploads.push(ends.sent);
        downloads.push(ends.received);
    }
    let mut arrived = Vec::new();
    for _ in 0..n {
        let at_sink = reports.recv().await.unwrap();
        arrived.push(at_sink.received);
        // The sink sends the same stream on every connection.
        for got in &downloads {
            assert_eq!(*got, at_sink.sent, "download differs");
        }
    }
    let key = |t: &Tally| (t.bytes, *t.hash.as_bytes());
    uploads.sort_by_key(key);
    arrived.sort_by_key(key);
    assert_eq!(uploads, arrived, "uploads differ");
}
