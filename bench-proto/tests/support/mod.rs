//! Helpers shared by the integration tests: hashed traffic, sinks, a SOCKS5
//! client, temporary directories, certificates and child processes that die
//! with the test. Protocol-specific helpers live in the submodules.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod cases;
pub mod ech;
pub mod endpoint;
pub mod harness;
pub mod hysteria1;
pub mod hysteria2;
pub mod peer_process;
pub mod peers;
pub mod quic;
pub mod shoes;
pub mod sing_box;
pub mod trojan;
pub mod tuic;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bench_proto::pki;
use bench_proto::TargetAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

pub const MIB: u64 = 1024 * 1024;
/// Odd sizes, different per direction, so that a lost, duplicated or
/// swapped chunk cannot go unnoticed.
pub const BULK_UP: u64 = 64 * MIB + 4099;
pub const BULK_DOWN: u64 = 64 * MIB + 777;

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

pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A port with nothing listening on it, for the whole test process.
///
/// The socket stays bound (without SO_REUSEADDR, never listening) so the
/// kernel refuses connections to it and cannot hand the port to another
/// test's listener: a port that was merely bound and dropped was, in CI, taken
/// by a parallel test, which then answered the "refused" connection.
pub async fn closed_port() -> SocketAddr {
    static RESERVED: std::sync::OnceLock<(tokio::net::TcpSocket, SocketAddr)> =
        std::sync::OnceLock::new();
    RESERVED
        .get_or_init(|| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = socket.local_addr().unwrap();
            (socket, addr)
        })
        .1
}

/// A free port for a process that binds it itself.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Writes `len` bytes of the BLAKE3 XOF stream of `seed`, then shuts the
/// write half down.
pub async fn send<W: AsyncWrite + Unpin>(mut w: W, seed: &str, len: u64) -> Tally {
    let tally = write_stream(&mut w, seed, len).await;
    w.shutdown().await.unwrap();
    tally
}

/// Writes `len` bytes of the BLAKE3 XOF stream of `seed`, without shutting
/// down.
pub async fn write_stream<W: AsyncWrite + Unpin>(w: &mut W, seed: &str, len: u64) -> Tally {
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

/// A sink that, for every connection, hashes what it receives while sending
/// `down_len` bytes of the "down" stream, and reports each connection.
pub async fn start_sink(down_len: u64) -> (SocketAddr, mpsc::UnboundedReceiver<Ends>) {
    let l = bind().await;
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

/// A server that records everything each connection sends until EOF, then
/// answers `answer` and closes.
pub async fn start_recorder(
    answer: &'static [u8],
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = bind().await;
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got).await;
                let _ = tx.send(got);
                let _ = stream.write_all(answer).await;
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
    // The bound address has the same encoding as a target address.
    TargetAddr::read_from(&mut s).await.unwrap();
    (s, head[1])
}

/// One bulk exchange through a SOCKS5 proxy to a fresh sink, BLAKE3 checked
/// at both ends.
pub async fn bulk_through(socks: SocketAddr, up: u64, down: u64) {
    let (sink, mut reports) = start_sink(down).await;
    let (stream, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
    assert_eq!(code, 0, "CONNECT {sink} failed");
    let generator = exchange(stream, "up", up).await;
    let at_sink = reports.recv().await.unwrap();
    assert_eq!(generator.sent.bytes, up);
    assert_eq!(at_sink.sent.bytes, down);
    assert_eq!(at_sink.received, generator.sent, "upload differs");
    assert_eq!(generator.received, at_sink.sent, "download differs");
}

/// Many connections at once through `socks`, each with its own upload;
/// checks that every upload arrived intact and apart.
pub async fn concurrent_through(socks: SocketAddr, conns: usize, len: u64) {
    let (sink, mut reports) = start_sink(len).await;
    let target = TargetAddr::Ip(sink);
    let mut tasks = Vec::new();
    for i in 0..conns {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let (stream, code) = socks_connect(socks, &target).await;
            assert_eq!(code, 0, "connection {i}");
            exchange(stream, &format!("up-{i}"), len + i as u64).await
        }));
    }
    let mut uploads = Vec::new();
    for t in tasks {
        let ends = t.await.unwrap();
        assert_eq!(ends.received.bytes, len);
        uploads.push(ends.sent);
    }
    let mut arrived = Vec::new();
    for _ in 0..conns {
        arrived.push(reports.recv().await.unwrap().received);
    }
    let key = |t: &Tally| (t.bytes, *t.hash.as_bytes());
    uploads.sort_by_key(key);
    arrived.sort_by_key(key);
    assert_eq!(uploads, arrived);
}

/// Reads until the peer closes; a reset counts as closed. Fails if the peer
/// keeps the connection open for `within`.
pub async fn expect_closed<R: AsyncRead + Unpin>(r: &mut R, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .expect("the connection was not closed");
    got
}

/// Runs `f` for at most `limit`. A test that runs out fails with its
/// TCP sockets as they were then ([`sockets_of_this_test`]): where a hung
/// transfer's bytes sit says which end stopped.
pub async fn with_timeout<F: Future<Output = ()>>(limit: Duration, f: F) {
    if tokio::time::timeout(limit, f).await.is_err() {
        panic!(
            "test timed out after {limit:?}; its TCP sockets then:\n{}",
            sockets_of_this_test()
        );
    }
}

/// `ss -tnpi`'s entries (a socket line and its TCP info line) for the
/// sockets of this process and of its children (peers such as sing-box):
/// state, queues, bytes sent and received.
pub fn sockets_of_this_test() -> String {
    let mut pids = vec![std::process::id()];
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    let out = match Command::new("ss").arg("-tnpi").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => return format!("(ss -tnpi failed: {})", String::from_utf8_lossy(&o.stderr)),
        Err(e) => return format!("(ss -tnpi could not run: {e})"),
    };
    let ours = |line: &str| pids.iter().any(|p| line.contains(&format!("pid={p},")));
    let mut kept = String::new();
    let mut keep = false;
    for line in out.lines() {
        // Info lines are indented and go with the socket line above.
        if !line.starts_with(char::is_whitespace) {
            keep = ours(line);
        }
        if keep {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept.is_empty() {
        kept.push_str("(none)\n");
    }
    kept
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pp-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed when dropped, so that a failing test
/// leaves nothing running; its stderr lines arrive on a channel.
pub struct Proc {
    pub name: String,
    child: Child,
    stderr: std_mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std_mpsc::channel();
        let echo = name.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Shown by the test harness when the test fails.
                eprintln!("[{echo}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            stderr: rx,
        }
    }

    /// Waits for a stderr line for which `pick` returns something.
    pub fn wait_line<T>(&self, within: Duration, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    if let Some(t) = pick(&line) {
                        return t;
                    }
                }
                Err(_) => panic!("{}: no expected stderr line within {within:?}", self.name),
            }
        }
    }

    /// Like [`Proc::listening_on`], but the `listening on ADDR` line must be
    /// the first one on stderr.
    pub fn first_line_listening_on(&self, within: Duration) -> SocketAddr {
        let line = self
            .stderr
            .recv_timeout(within)
            .expect("no 'listening on' line");
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap()
    }

    /// The address from protoprof-endpoint's `listening on ADDR` line.
    pub fn listening_on(&self) -> SocketAddr {
        self.wait_line(Duration::from_secs(20), |l| {
            l.strip_prefix("listening on ").map(|a| a.parse().unwrap())
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything else it writes to stderr until it exits.
    pub fn rest_of_stderr(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path of a program from an environment variable or `PATH`, or a test
/// failure that says how to install it.
pub fn require_program(env: &str, candidates: &[&str], install: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env}={} is not a file; {install}",
            p.display()
        );
        return p;
    }
    for c in candidates {
        let c = Path::new(c);
        if c.is_absolute() && c.is_file() {
            return c.to_path_buf();
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let p = dir.join(c);
                if p.is_file() {
                    return p;
                }
            }
        }
    }
    panic!(
        "{} not found (nor ${env} set); install it: {install}",
        candidates.join(" or ")
    );
}

/// A self-signed certificate for localhost and 127.0.0.1, written to disk.
pub struct Pki {
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki() -> Pki {
    let dir = TempDir::new("pki");
    let id = pki::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let (cert, key) = id.write(dir.path()).unwrap();
    Pki { dir, cert, key }
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
        let tally = write_stream(&mut w, seed, len).await;
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

/// A connection through a proxy that has sent half of its upload and waits,
/// so that a test can check it survives what happens meanwhile.
pub struct Midway {
    /// The sink it is connected to (which accepts further connections).
    pub sink: SocketAddr,
    w: tokio::net::tcp::OwnedWriteHalf,
    down: tokio::task::JoinHandle<Tally>,
    /// Reports from the sink, this connection's last (after `finish`).
    pub reports: mpsc::UnboundedReceiver<Ends>,
}

impl Midway {
    /// Connects through `socks` to a fresh sink that sends 1 MiB down, and
    /// sends "first half ".
    pub async fn start(socks: SocketAddr) -> Midway {
        let (sink, reports) = start_sink(MIB).await;
        let (good, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0);
        let (good_r, mut w) = good.into_split();
        let down = tokio::spawn(receive(good_r));
        w.write_all(b"first half ").await.unwrap();
        Midway {
            sink,
            w,
            down,
            reports,
        }
    }

    /// Sends "second half", closes, and checks both directions whole.
    pub async fn finish(mut self) {
        self.w.write_all(b"second half").await.unwrap();
        self.w.shutdown().await.unwrap();
        let received = self.down.await.unwrap();
        let at_sink = self.reports.recv().await.unwrap();
        assert_eq!(received, at_sink.sent);
        assert_eq!(
            at_sink.received.hash,
            blake3::hash(b"first half second half")
        );
    }
}
