//! The load generator: one task per connection. Connects to the SOCKS5 port,
//! CONNECTs to the sink, sends the header, then runs the pattern until the
//! phase's stop token fires and the sink has closed its side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::DriveError;
use super::header::{Header, Work};
use super::integrity::{GeneratorSide, Tally};
use super::meter::Meter;
use super::options::Direction;
use super::payload::{seed, PayloadStream};
use super::socks5::{self, TargetAddr};
use super::stats::{new_histogram, record_ns};
use super::watchdog::{guarded, timed, Progress};

/// Size of the generator's read buffer.
const READ_BUF: usize = 64 * 1024;

/// What one connection does.
pub(crate) struct ConnPlan {
    pub(crate) id: u32,
    pub(crate) nonce: u64,
    pub(crate) socks: SocketAddr,
    pub(crate) target: TargetAddr,
    pub(crate) work: Work,
    pub(crate) io_timeout: Duration,
    /// rr: stop after this many round trips instead of at the stop token
    /// (the set-up phase's one request per connection).
    pub(crate) round_limit: Option<u64>,
}

/// What one connection measured.
pub(crate) struct ConnOutcome {
    pub(crate) side: GeneratorSide,
    pub(crate) setup_ns: u128,
    /// rr: connect start to the end of the first response.
    pub(crate) first_response_ns: Option<u128>,
    /// Round trips completed in the window (rr only).
    pub(crate) latency: Option<Histogram<u64>>,
}

/// Runs one connection to its end. `ready` gets one message once the header
/// is sent. Errors name the connection.
pub(crate) async fn run_connection(
    plan: ConnPlan,
    meter: Arc<Meter>,
    stop: CancellationToken,
    ready: mpsc::Sender<()>,
) -> Result<ConnOutcome, DriveError> {
    let ctx = format!("connection {}", plan.id);
    run(&plan, &meter, &stop, ready)
        .await
        .map_err(|e| e.within(&ctx))
}

async fn run(
    plan: &ConnPlan,
    meter: &Meter,
    stop: &CancellationToken,
    ready: mpsc::Sender<()>,
) -> Result<ConnOutcome, DriveError> {
    let limit = plan.io_timeout;
    let started = Instant::now();
    let ctx = format!("TCP connect to the SOCKS5 server {}", plan.socks);
    let mut stream = timed(limit, &ctx, TcpStream::connect(plan.socks)).await?;
    stream
        .set_nodelay(true)
        .map_err(|e| DriveError::io("setting TCP_NODELAY", e))?;
    socks5::connect(&mut stream, &plan.target, limit).await?;
    let setup_ns = started.elapsed().as_nanos();

    let header = Header {
        nonce: plan.nonce,
        conn_id: plan.id,
        work: plan.work,
        io_timeout_ms: u32::try_from(limit.as_millis()).unwrap_or(u32::MAX),
    };
    timed(
        limit,
        "sending the header",
        stream.write_all(&header.encode()),
    )
    .await?;
    // The phase holds the receiver until every connection is ready; a closed
    // channel only means the phase is already over.
    let _ = ready.send(()).await;
    drop(ready);

    let (up, down, latency, first_response_ns) = match plan.work {
        Work::Bulk {
            direction,
            chunk_size,
        } => {
            let (up, down) = bulk(
                &mut stream,
                plan,
                direction,
                chunk_size as usize,
                meter,
                stop,
            )
            .await?;
            (up, down, None, None)
        }
        Work::Rr {
            request_size,
            response_size,
        } => {
            let (up, down, h, first) = rr(
                &mut stream,
                plan,
                request_size as usize,
                response_size as usize,
                meter,
                stop,
            )
            .await?;
            (up, down, Some(h), first.map(|t| (t - started).as_nanos()))
        }
    };
    Ok(ConnOutcome {
        side: GeneratorSide {
            conn_id: plan.id,
            up: up.digest(),
            down: down.digest(),
        },
        setup_ns,
        first_response_ns,
        latency,
    })
}

/// Streams until `stop`, then shuts down the write half and reads until the
/// sink's EOF.
async fn bulk(
    stream: &mut TcpStream,
    plan: &ConnPlan,
    direction: Direction,
    chunk: usize,
    meter: &Meter,
    stop: &CancellationToken,
) -> Result<(Tally, Tally), DriveError> {
    let progress = Progress::new();
    let mut up = Tally::default();
    let mut down = Tally::default();
    let (mut rd, mut wr) = stream.split();

    let writer = async {
        if direction.sends_up() {
            let mut payload = PayloadStream::new(seed(plan.nonce, plan.id, false), chunk);
            loop {
                let slice = payload.next_slice();
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    r = wr.write(slice) => {
                        let n = r.map_err(|e| DriveError::io("sending payload", e))?;
                        if n == 0 {
                            return Err(DriveError::protocol("sending payload", "the socket accepts no more bytes"));
                        }
                        up.add(&slice[..n]);
                        payload.advance(n);
                        progress.touch();
                        meter.sent(n, Instant::now());
                    }
                }
            }
        } else {
            stop.cancelled().await;
        }
        wr.shutdown()
            .await
            .map_err(|e| DriveError::io("shutting down the write half", e))
    };

    let reader = async {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .map_err(|e| DriveError::io("receiving payload", e))?;
            if n == 0 {
                if !stop.is_cancelled() {
                    return Err(DriveError::protocol(
                        "receiving payload",
                        format!(
                            "the far side closed the connection before the end of the phase (after {} bytes received)",
                            down.bytes()
                        ),
                    ));
                }
                return Ok(());
            }
            down.add(&buf[..n]);
            progress.touch();
            meter.received(n, Instant::now());
        }
    };

    let ctx = format!("bulk {direction}");
    guarded(&progress, plan.io_timeout, &ctx, async {
        tokio::try_join!(writer, reader).map(|_| ())
    })
    .await?;
    Ok((up, down))
}

/// Closed-loop request/response until `stop` (or the plan's round limit),
/// then shutdown and read to EOF. Also returns when the first response
/// ended.
async fn rr(
    stream: &mut TcpStream,
    plan: &ConnPlan,
    request: usize,
    response: usize,
    meter: &Meter,
    stop: &CancellationToken,
) -> Result<(Tally, Tally, Histogram<u64>, Option<Instant>), DriveError> {
    let progress = Progress::new();
    let mut first: Option<Instant> = None;
    let mut rounds = 0u64;
    let mut up = Tally::default();
    let mut down = Tally::default();
    let mut hist = new_histogram()?;
    let mut payload = PayloadStream::new(seed(plan.nonce, plan.id, false), request);
    let mut buf = vec![0u8; response.clamp(1, READ_BUF)];

    let work = async {
        while !stop.is_cancelled() && plan.round_limit.is_none_or(|l| rounds < l) {
            let t0 = Instant::now();
            let mut left = request;
            while left > 0 {
                let slice = payload.next_slice();
                let slice = &slice[..slice.len().min(left)];
                let n = stream
                    .write(slice)
                    .await
                    .map_err(|e| DriveError::io("sending a request", e))?;
                if n == 0 {
                    return Err(DriveError::protocol(
                        "sending a request",
                        "the socket accepts no more bytes",
                    ));
                }
                up.add(&slice[..n]);
                payload.advance(n);
                left -= n;
                progress.touch();
                meter.sent(n, Instant::now());
            }
            let mut left = response;
            while left > 0 {
                let want = left.min(buf.len());
                let n = stream
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| DriveError::io("receiving a response", e))?;
                if n == 0 {
                    return Err(DriveError::protocol(
                        "receiving a response",
                        format!(
                            "the far side closed the connection after {} of {response} response bytes",
                            response - left
                        ),
                    ));
                }
                down.add(&buf[..n]);
                left -= n;
                progress.touch();
                meter.received(n, Instant::now());
            }
            let t1 = Instant::now();
            rounds += 1;
            first.get_or_insert(t1);
            let ns = (t1 - t0).as_nanos();
            if meter.round_trip(t1, ns) {
                record_ns(&mut hist, ns);
            }
        }
        stream
            .shutdown()
            .await
            .map_err(|e| DriveError::io("shutting down the write half", e))?;
        // Nothing more is expected; anything that still arrives is counted and
        // hashed, so the integrity check reports it.
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| DriveError::io("waiting for the sink's EOF", e))?;
            if n == 0 {
                return Ok(());
            }
            down.add(&buf[..n]);
            progress.touch();
        }
    };
    guarded(&progress, plan.io_timeout, "rr", work).await?;
    Ok((up, down, hist, first))
}
