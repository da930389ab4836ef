//! A SOCKS5 relay stub standing in for the proxy chain in tests: it serves
//! the server side of SOCKS5 (no auth, CONNECT) and relays bytes, optionally
//! misbehaving.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How the stub behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// A faithful relay that passes half-closes on.
    Relay,
    /// Flips one bit of the byte at offset `at` of the upstream
    /// (client → target) stream, header included.
    CorruptUp { at: u64 },
    /// Flips one bit of the byte at offset `at` of the downstream stream.
    CorruptDown { at: u64 },
    /// Drops `len` bytes starting at offset `at` of the downstream stream.
    DropDown { at: u64, len: u64 },
    /// Drops `len` bytes starting at offset `at` of the upstream stream.
    DropUp { at: u64, len: u64 },
    /// Answers CONNECT with this reply code.
    Refuse(u8),
    /// Accepts the TCP connection and never says anything.
    StallHandshake,
    /// Completes the handshake, then never relays a byte.
    StallAfterConnect,
    /// Relays faithfully until either side's EOF, then closes both ways at
    /// once, dropping whatever the other direction still carried (as
    /// sing-box does).
    NoHalfClose,
}

pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    /// Bytes read from clients (after the SOCKS5 handshake).
    pub(crate) up: Arc<AtomicU64>,
    /// Bytes read from targets.
    pub(crate) down: Arc<AtomicU64>,
    /// Relayed connections still open.
    pub(crate) open: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub(crate) async fn start(mode: Mode) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let (u, d, o) = (up.clone(), down.clone(), open.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                let (u, d, o) = (u.clone(), d.clone(), o.clone());
                conns.spawn(async move {
                    o.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(sock, mode, u, d).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Relay {
            addr,
            up,
            down,
            open,
            task,
        }
    }
}

async fn serve(
    mut client: TcpStream,
    mode: Mode,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
) -> std::io::Result<()> {
    if let Mode::StallHandshake = mode {
        return std::future::pending().await;
    }
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    assert_eq!(head[0], 5);
    assert!(methods.contains(&0));
    client.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    assert_eq!(req[..3], [5, 1, 0]);
    let target: SocketAddr = match req[3] {
        1 => {
            let mut b = [0u8; 6];
            client.read_exact(&mut b).await?;
            SocketAddr::from(([b[0], b[1], b[2], b[3]], u16::from_be_bytes([b[4], b[5]])))
        }
        4 => {
            let mut b = [0u8; 18];
            client.read_exact(&mut b).await?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            SocketAddr::from((ip, u16::from_be_bytes([b[16], b[17]])))
        }
        other => panic!("stub: unexpected ATYP {other}"),
    };
    if let Mode::Refuse(code) = mode {
        client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    }
    let upstream = TcpStream::connect(target).await?;
    let bound = upstream.local_addr()?;
    let mut reply = vec![5, 0, 0];
    match bound {
        SocketAddr::V4(a) => {
            reply.push(1);
            reply.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            reply.push(4);
            reply.extend_from_slice(&a.ip().octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await?;
    if let Mode::StallAfterConnect = mode {
        let _keep = upstream;
        return std::future::pending().await;
    }
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let (up_fault, down_fault) = match mode {
        Mode::CorruptUp { at } => (Fault::Flip(at), Fault::None),
        Mode::CorruptDown { at } => (Fault::None, Fault::Flip(at)),
        Mode::DropUp { at, len } => (Fault::Drop(at, len), Fault::None),
        Mode::DropDown { at, len } => (Fault::None, Fault::Drop(at, len)),
        _ => (Fault::None, Fault::None),
    };
    if let Mode::NoHalfClose = mode {
        // The first direction to end ends both: the other's future (and
        // with it its socket halves) is dropped mid-flight.
        return tokio::select! {
            r = pump(cr, uw, up_fault, up) => r,
            r = pump(ur, cw, down_fault, down) => r,
        };
    }
    let (a, b) = tokio::join!(pump(cr, uw, up_fault, up), pump(ur, cw, down_fault, down));
    a.and(b)
}

#[derive(Clone, Copy)]
enum Fault {
    None,
    Flip(u64),
    Drop(u64, u64),
}

/// Copies `r` to `w` until EOF, applying `fault`, then shuts `w` down.
async fn pump(
    mut r: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    fault: Fault,
    count: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut off = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
        let end = off + n as u64;
        match fault {
            Fault::None => w.write_all(&buf[..n]).await?,
            Fault::Flip(at) => {
                if (off..end).contains(&at) {
                    buf[(at - off) as usize] ^= 0x01;
                }
                w.write_all(&buf[..n]).await?;
            }
            Fault::Drop(at, len) => {
                // Keep the parts of [off, end) outside [at, at + len).
                let cut_start = at.clamp(off, end);
                let cut_end = (at + len).clamp(off, end);
                w.write_all(&buf[..(cut_start - off) as usize]).await?;
                w.write_all(&buf[(cut_end - off) as usize..n]).await?;
            }
        }
        off = end;
    }
    w.shutdown().await
}
