//! One phase: set up the connections, warm up, measure, drain, check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::DriveError;
use super::generator::{run_connection, ConnOutcome, ConnPlan};
use super::header::Work;
use super::integrity;
use super::meter::{LiveCounters, Meter};
use super::options::{BulkOptions, Pattern, PhaseOptions};
use super::result::{IntegrityStatus, PhaseResult, ScheduleResult};
use super::sink::Sink;
use super::socks5::TargetAddr;
use super::stats::{fold_samples, new_histogram, record_ns, summarize, throughput};
use super::window::{Window, WindowCalls};

/// Runs one phase of `opts.pattern` through the SOCKS5 server at `socks` to
/// `sink`, and returns what it measured.
///
/// Sequence: open every connection (TCP connect, SOCKS5 CONNECT to
/// `sink.addr()`, header); once all are set up, run `opts.warmup`; call
/// `window.open()` and count for `opts.duration`; call `window.close()`; tell
/// every connection to stop and drain it to EOF; compare every connection's
/// counts and hashes with the sink's.
///
/// Errors: [`DriveError::Integrity`] carries the full result when bytes were
/// lost or corrupted; any other error means no result. The first failing
/// connection fails the phase at once. On every return, all connection tasks
/// have ended and their sockets are closed.
pub async fn run_phase(
    opts: &PhaseOptions,
    socks: SocketAddr,
    sink: &Sink,
    window: &dyn Window,
    cancel: &CancellationToken,
) -> Result<PhaseResult, DriveError> {
    opts.validate()?;
    if cancel.is_cancelled() {
        return Err(DriveError::Cancelled);
    }
    if let Pattern::Churn(c) = &opts.pattern {
        return super::churn::run_churn(opts, c, socks, sink, window, cancel).await;
    }
    let n = opts.pattern.connections();
    let nonce = new_nonce();
    let lease = sink.lease(nonce);
    let meter = Arc::new(Meter::new(opts.duration));
    lease.meter(meter.clone());
    let stop = CancellationToken::new();
    let (ready_tx, mut ready_rx) = mpsc::channel(n);
    let work = work_of(&opts.pattern);
    let exact = matches!(
        &opts.pattern,
        Pattern::Bulk(BulkOptions {
            bytes_per_connection: Some(_),
            ..
        })
    );
    let interval = match &opts.pattern {
        Pattern::Rr(r) => r.interval,
        _ => None,
    };
    let go = exact.then(CancellationToken::new);
    let gate = Arc::new(Semaphore::new(SETUP_AT_ONCE));
    let mut fleet = Fleet {
        tasks: JoinSet::new(),
        done: Vec::with_capacity(n),
    };
    for id in 0..n {
        let plan = ConnPlan {
            id: id as u32,
            nonce,
            socks,
            target: TargetAddr::Ip(sink.addr()),
            work,
            io_timeout: opts.io_timeout,
            round_limit: None,
            interval,
            go: go.clone(),
            setup_gate: Some(gate.clone()),
        };
        fleet.tasks.spawn(run_connection(
            plan,
            meter.clone(),
            stop.clone(),
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);

    window.counting(&LiveCounters::new(meter.clone()));
    let mut calls = WindowCalls::new(window);
    let traffic = fleet
        .run(
            opts,
            n,
            &mut ready_rx,
            &meter,
            &stop,
            go.as_ref(),
            &mut calls,
            cancel,
        )
        .await;
    calls.close();
    let timing = match traffic {
        Ok(t) => t,
        Err(e) => {
            fleet.abort().await;
            return Err(e);
        }
    };

    let collected = lease.collect(n, opts.io_timeout, cancel).await?;
    drop(lease);

    let mut outcomes = fleet.done;
    outcomes.sort_by_key(|o| o.side.conn_id);
    let sides: Vec<_> = outcomes.iter().map(|o| o.side).collect();
    let expected = match &opts.pattern {
        Pattern::Bulk(b) => integrity::Expected {
            up: b.direction.sends_up(),
            down: b.direction.sends_down(),
        },
        Pattern::Rr(_) | Pattern::Churn(_) => integrity::Expected {
            up: true,
            down: true,
        },
    };
    let integrity = integrity::check(&sides, collected.records, &collected.errors, expected);

    let mut setup = new_histogram()?;
    let mut latency = match opts.pattern {
        Pattern::Rr(_) => Some(new_histogram()?),
        Pattern::Bulk(_) | Pattern::Churn(_) => None,
    };
    let mut lag = interval.map(|_| new_histogram()).transpose()?;
    let (mut sent, mut behind) = (0u64, 0u64);
    for o in &outcomes {
        record_ns(&mut setup, o.setup_ns);
        if let (Some(all), Some(h)) = (latency.as_mut(), o.latency.as_ref()) {
            merge(all, h)?;
        }
        if let (Some(all), Some(s)) = (lag.as_mut(), o.schedule.as_ref()) {
            merge(all, &s.lag)?;
            sent += s.due;
            behind += s.behind;
        }
    }
    let buckets = meter.buckets();
    let timeseries = fold_samples(&buckets, timing.measured_s);
    let schedule = match (interval, lag) {
        (Some(every), Some(lag)) => Some(ScheduleResult {
            rate_per_connection: 1.0 / every.as_secs_f64(),
            due: sent,
            behind,
            lag_us: summarize(&lag),
        }),
        _ => None,
    };
    let result = PhaseResult {
        pattern: opts.pattern.name().to_string(),
        connections: n,
        direction: match &opts.pattern {
            Pattern::Bulk(b) => Some(b.direction.as_str().to_string()),
            Pattern::Rr(_) | Pattern::Churn(_) => None,
        },
        warmup_s: timing.warmup_s,
        measured_s: timing.measured_s,
        bytes_up: sides.iter().map(|s| s.up.bytes).sum(),
        bytes_down: sides.iter().map(|s| s.down.bytes).sum(),
        window_bytes_up: buckets.up.iter().sum(),
        window_bytes_down: buckets.down.iter().sum(),
        window_bytes_up_received: Some(buckets.delivered_up.iter().sum()),
        throughput: throughput(&timeseries, timing.measured_s),
        timeseries,
        latency_us: latency.as_ref().map(summarize),
        setup_us: summarize(&setup),
        round_trips: buckets.round_trips.iter().sum(),
        integrity,
        bytes_per_connection: match &opts.pattern {
            Pattern::Bulk(b) => b.bytes_per_connection,
            _ => None,
        },
        schedule,
        churn: None,
    };
    if result.integrity.status == IntegrityStatus::Mismatch {
        return Err(DriveError::Integrity(Box::new(result)));
    }
    Ok(result)
}

/// Connections of a phase being set up at once (see `ConnPlan::setup_gate`).
const SETUP_AT_ONCE: usize = 256;

/// What the sink does on each connection of `pattern`.
pub(crate) fn work_of(pattern: &Pattern) -> Work {
    // validate() bounds sizes by MAX_CHUNK_SIZE / MAX_MESSAGE_SIZE (< 4 GiB).
    match pattern {
        Pattern::Bulk(b) => Work::Bulk {
            direction: b.direction,
            chunk_size: b.chunk_size as u32,
            exact: b.bytes_per_connection,
        },
        Pattern::Rr(r) => Work::Rr {
            request_size: r.request_size as u32,
            response_size: r.response_size as u32,
        },
        Pattern::Churn(c) => Work::Rr {
            request_size: c.request_size as u32,
            response_size: c.response_size as u32,
        },
    }
}

pub(crate) fn merge(all: &mut Histogram<u64>, h: &Histogram<u64>) -> Result<(), DriveError> {
    all.add(h)
        .map_err(|e| DriveError::Internal(format!("merging histograms: {e:?}")))
}

/// A run nonce unique to this phase: BLAKE3 of the time, the process id and
/// a counter.
pub(crate) fn new_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

struct Timing {
    warmup_s: f64,
    measured_s: f64,
}

/// The connection tasks of a phase and the outcomes of those that finished.
struct Fleet {
    tasks: JoinSet<Result<ConnOutcome, DriveError>>,
    done: Vec<ConnOutcome>,
}

impl Fleet {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        opts: &PhaseOptions,
        n: usize,
        ready: &mut mpsc::Receiver<()>,
        meter: &Meter,
        stop: &CancellationToken,
        go: Option<&CancellationToken>,
        calls: &mut WindowCalls<'_>,
        cancel: &CancellationToken,
    ) -> Result<Timing, DriveError> {
        self.until_ready(n, ready, cancel).await?;
        let warm_start = Instant::now();
        // Exact-length transfers start at the window: no warm-up.
        if go.is_none() {
            self.until(warm_start + opts.warmup, cancel).await?;
        }

        calls.open();
        let open = Instant::now();
        meter.open_at(open);
        if let Some(go) = go {
            go.cancel();
            // The window lasts as long as the transfers, bounded by the
            // phase's duration.
            self.until_done(open + opts.duration, cancel).await?;
        } else {
            self.until(open + opts.duration, cancel).await?;
        }
        let close = Instant::now();
        meter.close_at(close);
        calls.close();

        stop.cancel();
        self.drain(cancel).await?;
        Ok(Timing {
            warmup_s: (open - warm_start).as_secs_f64(),
            measured_s: (close - open).as_secs_f64(),
        })
    }

    fn absorb(
        &mut self,
        joined: Result<Result<ConnOutcome, DriveError>, JoinError>,
    ) -> Result<(), DriveError> {
        match joined {
            Ok(Ok(outcome)) => {
                self.done.push(outcome);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) if e.is_panic() => Err(DriveError::Internal(format!(
                "a connection task panicked: {e}"
            ))),
            Err(e) => Err(DriveError::Internal(format!(
                "a connection task ended early: {e}"
            ))),
        }
    }

    /// Waits for `n` ready messages.
    async fn until_ready(
        &mut self,
        n: usize,
        ready: &mut mpsc::Receiver<()>,
        cancel: &CancellationToken,
    ) -> Result<(), DriveError> {
        let mut count = 0;
        let mut open = true;
        while count < n {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DriveError::Cancelled),
                Some(j) = self.tasks.join_next(), if !self.tasks.is_empty() => self.absorb(j)?,
                r = ready.recv(), if open => match r {
                    Some(()) => count += 1,
                    None => open = false,
                },
                else => {
                    return Err(DriveError::Internal(
                        "connections ended before all were set up".to_string(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Lets the traffic run until `deadline`, failing on the first error.
    async fn until(
        &mut self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<(), DriveError> {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DriveError::Cancelled),
                Some(j) = self.tasks.join_next(), if !self.tasks.is_empty() => self.absorb(j)?,
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }

    /// Lets every connection run to its end, failing on the first error or
    /// when `deadline` passes first.
    async fn until_done(
        &mut self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<(), DriveError> {
        while !self.tasks.is_empty() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DriveError::Cancelled),
                Some(j) = self.tasks.join_next() => self.absorb(j)?,
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(DriveError::protocol(
                        "exact-length bulk",
                        format!(
                            "{} connections still transferring when duration_s ran out; raise duration_s",
                            self.tasks.len()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Waits for every connection to finish.
    async fn drain(&mut self, cancel: &CancellationToken) -> Result<(), DriveError> {
        while !self.tasks.is_empty() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DriveError::Cancelled),
                j = self.tasks.join_next() => match j {
                    Some(j) => self.absorb(j)?,
                    None => break,
                },
            }
        }
        Ok(())
    }

    /// Aborts every task and waits until all have ended (closing their sockets).
    async fn abort(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
