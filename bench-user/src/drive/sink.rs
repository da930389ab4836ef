//! The sink: the TCP server at the far end of the chain. It reads each
//! connection's header, serves the pattern, and records the count and BLAKE3
//! of what it received and sent, for the phase to compare.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::DriveError;
use super::header::{Header, Work, HEADER_LEN};
use super::integrity::{SinkRecord, Tally};
use super::meter::Meter;
use super::options::{Direction, DEFAULT_IO_TIMEOUT};
use super::payload::{seed, PayloadStream};
use super::watchdog::{guarded, Progress};

/// Size of the sink's read buffer.
const READ_BUF: usize = 64 * 1024;
/// The sink's listen backlog (capped by net.core.somaxconn).
const SINK_BACKLOG: u32 = 65_535;
/// Most unattributed errors kept between two phases.
const MAX_ERRORS: usize = 64;

/// The sink server. Start it once and use it for any number of phases, also
/// concurrently: each phase's connections carry its own run nonce.
///
/// Dropping a `Sink` without [`stop`](Sink::stop) also closes it, without
/// waiting for its tasks to end.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    accept: Option<JoinHandle<()>>,
    accepted: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    /// Records by run nonce, then connection id.
    records: HashMap<u64, HashMap<u32, SinkRecord>>,
    /// Nonces of finished phases: records that still arrive are dropped.
    retired: HashSet<u64>,
    /// Errors on connections whose header could not be read.
    errors: Vec<String>,
    /// The window meter of each phase that asked for the sink's count of
    /// received bytes, by run nonce.
    meters: HashMap<u64, Arc<Meter>>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every new record.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_error(&self, e: String) {
        let mut st = self.lock();
        if st.errors.len() < MAX_ERRORS {
            st.errors.push(e);
        }
    }

    fn meter(&self, nonce: u64) -> Option<Arc<Meter>> {
        self.lock().meters.get(&nonce).cloned()
    }

    fn is_retired(&self, nonce: u64) -> bool {
        self.lock().retired.contains(&nonce)
    }

    fn record(&self, nonce: u64, conn_id: u32, rec: SinkRecord) {
        {
            let mut st = self.lock();
            if st.retired.contains(&nonce) {
                return;
            }
            st.records.entry(nonce).or_default().insert(conn_id, rec);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Sink {
    /// Binds `bind` (use `127.0.0.1:0` for a free loopback port) and starts
    /// accepting.
    pub async fn start(bind: SocketAddr) -> io::Result<Sink> {
        // A deep accept queue: a concurrency level opens thousands of
        // connections at once, and the default (1024) would overflow and
        // reset them, a limit of the sink rather than of the chain. The
        // kernel caps it at net.core.somaxconn.
        let socket = if bind.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(bind)?;
        let listener = socket.listen(SINK_BACKLOG)?;
        let addr = listener.local_addr()?;
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed,
        });
        let shutdown = CancellationToken::new();
        let accepted = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            shutdown.clone(),
            accepted.clone(),
        ));
        Ok(Sink {
            addr,
            shared,
            shutdown,
            accept: Some(accept),
            accepted,
        })
    }

    /// Connections accepted so far: each crossed the whole chain. The
    /// leak slopes per connection served read it.
    pub fn accepted(&self) -> Arc<AtomicU64> {
        self.accepted.clone()
    }

    /// The address the sink listens on; the generator CONNECTs to it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every open connection and waits until all of
    /// the sink's tasks have ended.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.accept.take() {
            let _ = task.await;
        }
    }

    /// Reserves `nonce` for one phase; dropping the lease forgets the phase.
    pub(crate) fn lease(&self, nonce: u64) -> Lease {
        Lease {
            shared: self.shared.clone(),
            nonce,
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = &self.accept {
            task.abort();
        }
    }
}

/// One phase's view of the sink.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    nonce: u64,
}

/// What the sink recorded for one phase.
pub(crate) struct Collected {
    pub(crate) records: HashMap<u32, SinkRecord>,
    pub(crate) errors: Vec<String>,
}

impl Lease {
    /// Counts what the sink receives on this phase's connections in
    /// `meter` (its goodput: bytes that crossed the chain). Call before the
    /// phase's connections open.
    pub(crate) fn meter(&self, meter: Arc<Meter>) {
        self.shared.lock().meters.insert(self.nonce, meter);
    }

    /// Waits until the sink has records of `expected` connections of this
    /// phase, or `limit` passes without a new one, then takes them, with the
    /// unattributed errors.
    pub(crate) async fn collect(
        &self,
        expected: usize,
        limit: Duration,
        cancel: &CancellationToken,
    ) -> Result<Collected, DriveError> {
        let mut changes = self.shared.changed.subscribe();
        let mut deadline = Instant::now() + limit;
        let mut seen = 0;
        loop {
            let have = self
                .shared
                .lock()
                .records
                .get(&self.nonce)
                .map_or(0, HashMap::len);
            if have >= expected {
                break;
            }
            if have > seen {
                seen = have;
                deadline = Instant::now() + limit;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DriveError::Cancelled),
                r = tokio::time::timeout_at(deadline, changes.changed()) => match r {
                    Ok(Ok(())) => continue,
                    _ => break,
                },
            }
        }
        let mut st = self.shared.lock();
        let records = st.records.remove(&self.nonce).unwrap_or_default();
        let errors = std::mem::take(&mut st.errors);
        Ok(Collected { records, errors })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.records.remove(&self.nonce);
        st.meters.remove(&self.nonce);
        st.retired.insert(self.nonce);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    accepted: Arc<AtomicU64>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(serve(sock, shared.clone()));
                }
                Err(e) => {
                    shared.note_error(format!("accept: {e}"));
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            },
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve(mut sock: TcpStream, shared: Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let mut raw = [0u8; HEADER_LEN];
    match tokio::time::timeout(DEFAULT_IO_TIMEOUT, sock.read_exact(&mut raw)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return shared.note_error(format!("reading a header: {e}")),
        Err(_) => {
            return shared.note_error(format!(
                "no header within {DEFAULT_IO_TIMEOUT:?} on a new connection"
            ))
        }
    }
    let header = match Header::decode(&raw) {
        Ok(h) => h,
        Err(e) => return shared.note_error(e),
    };
    if shared.is_retired(header.nonce) {
        return;
    }
    let limit = Duration::from_millis(u64::from(header.io_timeout_ms));
    let mut up = Received {
        tally: Tally::default(),
        meter: shared.meter(header.nonce),
    };
    let mut down = Tally::default();
    let result = match header.work {
        Work::Bulk {
            direction,
            chunk_size,
            exact: Some(n),
        } => {
            serve_bulk_exact(
                &mut sock,
                &header,
                direction,
                chunk_size as usize,
                n,
                limit,
                &mut up,
                &mut down,
            )
            .await
        }
        Work::Bulk {
            direction,
            chunk_size,
            exact: None,
        } => {
            serve_bulk(
                &mut sock,
                &header,
                direction,
                chunk_size as usize,
                limit,
                &mut up,
                &mut down,
            )
            .await
        }
        Work::Rr {
            request_size,
            response_size,
        } => {
            serve_rr(
                &mut sock,
                &header,
                request_size as usize,
                response_size as usize,
                limit,
                &mut up,
                &mut down,
            )
            .await
        }
    };
    // Record before closing our side: once the generator sees EOF, the record
    // is there.
    shared.record(
        header.nonce,
        header.conn_id,
        SinkRecord {
            up: up.tally.digest(),
            down: down.digest(),
            error: result.err(),
        },
    );
    let _ = tokio::time::timeout(limit, sock.shutdown()).await;
}

/// What the sink received on one connection: counted and hashed for the
/// integrity check, and counted in the phase's window for its goodput.
struct Received {
    tally: Tally,
    meter: Option<Arc<Meter>>,
}

impl Received {
    fn add(&mut self, data: &[u8]) {
        self.tally.add(data);
        if let Some(m) = &self.meter {
            m.delivered(data.len(), Instant::now());
        }
    }

    fn bytes(&self) -> u64 {
        self.tally.bytes()
    }
}

/// Reads until EOF; meanwhile streams payload if the direction sends down.
async fn serve_bulk(
    sock: &mut TcpStream,
    header: &Header,
    direction: Direction,
    chunk: usize,
    limit: Duration,
    up: &mut Received,
    down: &mut Tally,
) -> Result<(), String> {
    let progress = Progress::new();
    let eof = CancellationToken::new();
    let (mut rd, mut wr) = sock.split();

    let reader = async {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .map_err(|e| format!("receiving payload: {e}"))?;
            if n == 0 {
                eof.cancel();
                return Ok::<(), String>(());
            }
            up.add(&buf[..n]);
            progress.touch();
        }
    };
    let writer = async {
        if !direction.sends_down() {
            return Ok(());
        }
        let mut payload = PayloadStream::new(seed(header.nonce, header.conn_id, true), chunk);
        loop {
            let slice = payload.next_slice();
            tokio::select! {
                biased;
                _ = eof.cancelled() => return Ok(()),
                r = wr.write(slice) => {
                    let n = r.map_err(|e| format!("sending payload: {e}"))?;
                    if n == 0 {
                        return Err("sending payload: the socket accepts no more bytes".to_string());
                    }
                    down.add(&slice[..n]);
                    payload.advance(n);
                    progress.touch();
                }
            }
        }
    };
    guarded(&progress, limit, "bulk", async {
        tokio::try_join!(reader, writer).map(|_| ())
    })
    .await
}

/// Exact-length bulk: reads `exact` bytes if the direction goes up, sends
/// `exact` if it comes down, both at once; returns once both are counted
/// (the caller then records and closes). It never waits for the
/// generator's FIN, so peers that do not relay half-close are fine.
#[allow(clippy::too_many_arguments)]
async fn serve_bulk_exact(
    sock: &mut TcpStream,
    header: &Header,
    direction: Direction,
    chunk: usize,
    exact: u64,
    limit: Duration,
    up: &mut Received,
    down: &mut Tally,
) -> Result<(), String> {
    let progress = Progress::new();
    let (mut rd, mut wr) = sock.split();
    let reader = async {
        let want = if direction.sends_up() { exact } else { 0 };
        let mut buf = vec![0u8; READ_BUF];
        while up.bytes() < want {
            let room = usize::try_from(want - up.bytes()).map_or(buf.len(), |l| l.min(buf.len()));
            let n = rd
                .read(&mut buf[..room])
                .await
                .map_err(|e| format!("receiving payload: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "connection closed after {} of {want} bytes",
                    up.bytes()
                ));
            }
            up.add(&buf[..n]);
            progress.touch();
        }
        Ok::<(), String>(())
    };
    let writer = async {
        if !direction.sends_down() {
            return Ok(());
        }
        let mut payload = PayloadStream::new(seed(header.nonce, header.conn_id, true), chunk);
        let mut left = exact;
        while left > 0 {
            let slice = payload.next_slice();
            let take = usize::try_from(left).map_or(slice.len(), |l| l.min(slice.len()));
            let n = wr
                .write(&slice[..take])
                .await
                .map_err(|e| format!("sending payload: {e}"))?;
            if n == 0 {
                return Err("sending payload: the socket accepts no more bytes".to_string());
            }
            down.add(&slice[..n]);
            payload.advance(n);
            left -= n as u64;
            progress.touch();
        }
        Ok(())
    };
    guarded(&progress, limit, "bulk exact", async {
        tokio::try_join!(reader, writer).map(|_| ())
    })
    .await
}

/// Answers each `request`-byte request with `response` bytes until EOF at a
/// request boundary.
async fn serve_rr(
    sock: &mut TcpStream,
    header: &Header,
    request: usize,
    response: usize,
    limit: Duration,
    up: &mut Received,
    down: &mut Tally,
) -> Result<(), String> {
    let progress = Progress::new();
    let mut payload = PayloadStream::new(seed(header.nonce, header.conn_id, true), response);
    let mut buf = vec![0u8; request.clamp(1, READ_BUF)];
    let work = async {
        loop {
            let mut got = 0;
            while got < request {
                let want = (request - got).min(buf.len());
                let n = sock
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| format!("receiving a request: {e}"))?;
                if n == 0 {
                    if got == 0 {
                        return Ok(());
                    }
                    return Err(format!(
                        "connection closed after {got} of {request} request bytes"
                    ));
                }
                up.add(&buf[..n]);
                got += n;
                progress.touch();
            }
            let mut left = response;
            while left > 0 {
                let slice = payload.next_slice();
                let slice = &slice[..slice.len().min(left)];
                let n = sock
                    .write(slice)
                    .await
                    .map_err(|e| format!("sending a response: {e}"))?;
                if n == 0 {
                    return Err("sending a response: the socket accepts no more bytes".to_string());
                }
                down.add(&slice[..n]);
                payload.advance(n);
                left -= n;
                progress.touch();
            }
        }
    };
    guarded(&progress, limit, "rr", work).await
}
