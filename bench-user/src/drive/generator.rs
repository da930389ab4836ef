//! The load generator: one task per connection. Connects to the SOCKS5 port,
//! CONNECTs to the sink, sends the header, then runs the pattern until the
//! phase's stop token fires and the sink has closed its side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
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
    /// rr open loop: the k-th request is due at the first one's time plus k
    /// intervals.
    pub(crate) interval: Option<Duration>,
    /// Exact-length bulk: payload starts only once this fires (when the
    /// measured window opens), so that every byte is in the window.
    pub(crate) go: Option<CancellationToken>,
    /// Bounds the connections being set up at once (connect, SOCKS5,
    /// header): a level of thousands would otherwise overflow the
    /// listeners' accept queues, a limit of the load's shape, not of the
    /// chain's capacity to hold connections.
    pub(crate) setup_gate: Option<Arc<Semaphore>>,
}

/// How an open-loop connection kept to its schedule.
pub(crate) struct ScheduleTally {
    /// Requests due inside the window (sent, or missed when it closed).
    pub(crate) due: u64,
    /// Of those, sent after the next one was already due (lag above one
    /// interval) or not sent before the window closed: the generator, not
    /// the chain, fell behind.
    pub(crate) behind: u64,
    /// Send time minus due time of each request due in the window, ns.
    pub(crate) lag: Histogram<u64>,
}

/// What one connection measured.
pub(crate) struct ConnOutcome {
    pub(crate) side: GeneratorSide,
    pub(crate) setup_ns: u128,
    /// rr: connect start to the end of the first response.
    pub(crate) first_response_ns: Option<u128>,
    /// Round trips completed in the window (rr with no round limit).
    pub(crate) latency: Option<Histogram<u64>>,
    /// rr open loop.
    pub(crate) schedule: Option<ScheduleTally>,
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
    // The semaphore is never closed; a closed one would only mean no gate.
    let permit = match &plan.setup_gate {
        Some(g) => g.clone().acquire_owned().await.ok(),
        None => None,
    };
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
    drop(permit);

    let (up, down, latency, first_response_ns, schedule) = match plan.work {
        Work::Bulk {
            direction,
            chunk_size,
            exact,
        } => {
            let (up, down) = bulk(
                &mut stream,
                plan,
                direction,
                chunk_size as usize,
                exact,
                meter,
                stop,
            )
            .await?;
            (up, down, None, None, None)
        }
        Work::Rr {
            request_size,
            response_size,
        } => {
            let (up, down, h, first, schedule) = rr(
                &mut stream,
                plan,
                request_size as usize,
                response_size as usize,
                meter,
                stop,
            )
            .await?;
            (
                up,
                down,
                h,
                first.map(|t| (t - started).as_nanos()),
                schedule,
            )
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
        schedule,
    })
}

/// Streams until `stop`, then shuts down the write half and reads until
/// the sink's EOF. Exact-length (`exact`): once `go` fires, sends `exact`
/// bytes if the direction goes up and reads `exact` if it comes down, then
/// waits for the sink to close, which it does only once it has counted its
/// side. The generator never half-closes first there, so a peer that
/// closes both ways at the first FIN loses nothing.
#[allow(clippy::too_many_arguments)]
async fn bulk(
    stream: &mut TcpStream,
    plan: &ConnPlan,
    direction: Direction,
    chunk: usize,
    exact: Option<u64>,
    meter: &Meter,
    stop: &CancellationToken,
) -> Result<(Tally, Tally), DriveError> {
    if let (Some(_), Some(go)) = (exact, &plan.go) {
        tokio::select! {
            _ = go.cancelled() => {}
            // The phase failed before its window opened.
            _ = stop.cancelled() => {}
        }
    }
    let progress = Progress::new();
    let mut up = Tally::default();
    let mut down = Tally::default();
    let (mut rd, mut wr) = stream.split();

    let writer = async {
        if direction.sends_up() {
            let mut payload = PayloadStream::new(seed(plan.nonce, plan.id, false), chunk);
            let mut left = exact.unwrap_or(u64::MAX);
            while left > 0 {
                let slice = payload.next_slice();
                let slice =
                    &slice[..usize::try_from(left).map_or(slice.len(), |l| l.min(slice.len()))];
                let until_stop = exact.is_none();
                tokio::select! {
                    biased;
                    _ = stop.cancelled(), if until_stop => break,
                    r = wr.write(slice) => {
                        let n = r.map_err(|e| DriveError::io("sending payload", e))?;
                        if n == 0 {
                            return Err(DriveError::protocol("sending payload", "the socket accepts no more bytes"));
                        }
                        up.add(&slice[..n]);
                        payload.advance(n);
                        if exact.is_some() {
                            left -= n as u64;
                        }
                        progress.touch();
                        meter.sent(n, Instant::now());
                    }
                }
            }
        } else if exact.is_none() {
            stop.cancelled().await;
        }
        if exact.is_some() {
            return Ok(());
        }
        wr.shutdown()
            .await
            .map_err(|e| DriveError::io("shutting down the write half", e))
    };

    let reader = async {
        let mut buf = vec![0u8; READ_BUF];
        // Exact-length: the expected bytes, then on to EOF (the sink's close
        // says it has counted everything; anything extra is hashed and
        // reported).
        let want = match exact {
            Some(n) if direction.sends_down() => n,
            _ => 0,
        };
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .map_err(|e| DriveError::io("receiving payload", e))?;
            if n == 0 {
                let got = down.bytes();
                let early = match exact {
                    Some(_) if got < want => Some(format!("after {got} of {want} bytes")),
                    None if !stop.is_cancelled() => Some(format!(
                        "before the end of the phase (after {got} bytes received)"
                    )),
                    _ => None,
                };
                return match early {
                    Some(when) => Err(DriveError::protocol(
                        "receiving payload",
                        format!("the far side closed the connection {when}"),
                    )),
                    None => Ok(()),
                };
            }
            down.add(&buf[..n]);
            progress.touch();
            meter.received(n, Instant::now());
        }
    };

    let ctx = match exact {
        Some(n) => format!("bulk {direction}, {n} bytes"),
        None => format!("bulk {direction}"),
    };
    guarded(&progress, plan.io_timeout, &ctx, async {
        tokio::try_join!(writer, reader).map(|_| ())
    })
    .await?;
    Ok((up, down))
}

/// Request/response until `stop` (or the plan's round limit), then
/// shutdown and read to EOF. Closed loop, or open loop with the plan's
/// interval: each request is due at a fixed time and its latency counts
/// from then, so a slow response delays the count, not the schedule (no
/// coordinated omission). Also returns when the first response ended.
async fn rr(
    stream: &mut TcpStream,
    plan: &ConnPlan,
    request: usize,
    response: usize,
    meter: &Meter,
    stop: &CancellationToken,
) -> Result<RrOutcome, DriveError> {
    let progress = Progress::new();
    let mut first: Option<Instant> = None;
    let mut rounds = 0u64;
    let mut up = Tally::default();
    let mut down = Tally::default();
    // Short connections (a round limit) keep no histogram of their own.
    let mut hist = match plan.round_limit {
        None => Some(new_histogram()?),
        Some(_) => None,
    };
    let mut schedule = match plan.interval {
        Some(_) => Some(ScheduleTally {
            due: 0,
            behind: 0,
            lag: new_histogram()?,
        }),
        None => None,
    };
    let mut payload = PayloadStream::new(seed(plan.nonce, plan.id, false), request);
    let mut buf = vec![0u8; response.clamp(1, READ_BUF)];
    let origin = Instant::now();

    let work = async {
        while !stop.is_cancelled() && plan.round_limit.is_none_or(|l| rounds < l) {
            let t0 = match (plan.interval, schedule.as_mut()) {
                (Some(every), Some(sched)) => {
                    let due = due_time(origin, every, rounds);
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep_until(due) => {}
                    }
                    // The wait above may end before the stop token is seen.
                    if stop.is_cancelled() {
                        break;
                    }
                    if meter.in_window(due) {
                        let lag = Instant::now().saturating_duration_since(due);
                        sched.due += 1;
                        if lag > every {
                            sched.behind += 1;
                        }
                        record_ns(&mut sched.lag, lag.as_nanos());
                    }
                    // A watchdog counts idle waits for the schedule as
                    // progress: the connection is healthy, just early.
                    progress.touch();
                    due
                }
                _ => Instant::now(),
            };
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
                if let Some(h) = hist.as_mut() {
                    record_ns(h, ns);
                }
            }
        }
        if let (Some(every), Some(sched)) = (plan.interval, schedule.as_mut()) {
            // Due in the window, never sent: the generator was still busy
            // with an earlier one when the window closed.
            let missed = missed_in_window(meter, origin, every, rounds);
            sched.due += missed;
            sched.behind += missed;
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
    // An open-loop wait for the next due time is not a stall: allow one
    // interval on top of the I/O timeout.
    let limit = plan.io_timeout + plan.interval.unwrap_or_default();
    guarded(&progress, limit, "rr", work).await?;
    Ok((up, down, hist, first, schedule))
}

/// Due times of a schedule, from the `k`-th on, that fell inside the
/// window although it closed before they were acted on.
pub(crate) fn missed_in_window(meter: &Meter, origin: Instant, every: Duration, k: u64) -> u64 {
    let Some(close) = meter.closed_at() else {
        return 0;
    };
    let mut missed = 0;
    for j in k.. {
        let due = due_time(origin, every, j);
        if due >= close {
            break;
        }
        missed += u64::from(meter.in_window(due));
    }
    missed
}

type RrOutcome = (
    Tally,
    Tally,
    Option<Histogram<u64>>,
    Option<Instant>,
    Option<ScheduleTally>,
);

/// When the `k`-th request of an open-loop schedule is due: `origin` plus
/// `k` intervals, computed from the origin each time so that rounding
/// never accumulates.
pub(crate) fn due_time(origin: Instant, every: Duration, k: u64) -> Instant {
    let ns = every.as_nanos().saturating_mul(u128::from(k));
    origin + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}
