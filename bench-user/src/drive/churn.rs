//! The `churn` pattern: connection after connection, each doing TCP
//! connect, SOCKS5 CONNECT, the header, one request, its response, close.
//!
//! Starts follow an open-loop schedule (one every `interval`, due times
//! fixed from the phase's start) or, without one, keep `concurrency`
//! connections in flight at all times. At most `concurrency` are ever in
//! flight: an open-loop start that finds them all busy waits, and its lag
//! is reported. A failed connection does not end the phase: it is counted
//! by kind. Every completed connection's bytes are checked both ways, as in
//! every pattern. A connection belongs to the measured window when it
//! started inside it; those started in the window finish after it closes
//! if they must (bounded by `io_timeout`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::DriveError;
use super::generator::{due_time, missed_in_window, run_connection, ConnOutcome, ConnPlan};
use super::integrity::{self, GeneratorSide};
use super::meter::{LiveCounters, Meter};
use super::options::{ChurnOptions, PhaseOptions};
use super::phase::{new_nonce, work_of};
use super::result::{ChurnResult, FailureCount, IntegrityStatus, PhaseResult};
use super::sink::Sink;
use super::socks5::TargetAddr;
use super::stats::{fold_samples, new_histogram, record_ns, summarize, throughput};
use super::window::{Window, WindowCalls};

/// What one churn connection task returns.
struct Finished {
    id: u32,
    in_window: bool,
    result: Result<ConnOutcome, DriveError>,
}

/// Failures by kind, with the first message of each.
#[derive(Default)]
struct Failures {
    by_kind: BTreeMap<&'static str, (u64, String)>,
    ids: HashSet<u32>,
}

impl Failures {
    fn add(&mut self, id: u32, e: &DriveError) {
        self.ids.insert(id);
        let entry = self
            .by_kind
            .entry(failure_kind(e))
            .or_insert_with(|| (0, e.to_string()));
        entry.0 += 1;
    }
}

/// The kind of a failed connection, as the report counts it. Port and
/// descriptor exhaustion are named apart: they are limits of the machine,
/// not faults of the chain.
pub(crate) fn failure_kind(e: &DriveError) -> &'static str {
    match e {
        DriveError::Io { source, context } => match source.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => "fd_limit",
            Some(libc::EADDRNOTAVAIL) => "port_exhaustion",
            _ if context.contains("TCP connect") => "connect",
            _ => "io",
        },
        DriveError::Socks5 { .. } => "socks5",
        DriveError::Timeout { .. } => "timeout",
        DriveError::Protocol { .. } => "protocol",
        _ => "other",
    }
}

/// Cancelled: aborts every connection and waits until all are closed.
async fn abandon(tasks: &mut JoinSet<Finished>) -> Result<PhaseResult, DriveError> {
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Err(DriveError::Cancelled)
}

pub(crate) async fn run_churn(
    opts: &PhaseOptions,
    c: &ChurnOptions,
    socks: SocketAddr,
    sink: &Sink,
    window: &dyn Window,
    cancel: &CancellationToken,
) -> Result<PhaseResult, DriveError> {
    let nonce = new_nonce();
    let lease = sink.lease(nonce);
    let meter = Arc::new(Meter::new(opts.duration));
    lease.meter(meter.clone());
    // Connections end after their one round trip, never by this token.
    let stop = CancellationToken::new();
    let work = work_of(&opts.pattern);
    window.counting(&LiveCounters::new(meter.clone()));
    let mut calls = WindowCalls::new(window);
    let start = Instant::now();
    let open_at = start + opts.warmup;
    let mut opened: Option<Instant> = None;
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut sides: Vec<GeneratorSide> = Vec::new();
    let mut failures = Failures::default();
    let mut setup = new_histogram()?;
    let mut first = new_histogram()?;
    let mut lag = c.interval.map(|_| new_histogram()).transpose()?;
    let (mut started, mut completed, mut failed, mut behind) = (0u64, 0u64, 0u64, 0u64);
    let mut k: u64 = 0;

    let mut absorb = |j: Result<Finished, tokio::task::JoinError>| -> Result<(), DriveError> {
        let f = j.map_err(|e| {
            DriveError::Internal(format!("a churn connection task ended early: {e}"))
        })?;
        match f.result {
            Ok(o) => {
                sides.push(o.side);
                if f.in_window {
                    completed += 1;
                    record_ns(&mut setup, o.setup_ns);
                    if let Some(ns) = o.first_response_ns {
                        record_ns(&mut first, ns);
                    }
                }
            }
            Err(e) => {
                failures.add(f.id, &e);
                failed += u64::from(f.in_window);
            }
        }
        Ok(())
    };

    let closed = loop {
        let now = Instant::now();
        if opened.is_none() && now >= open_at {
            calls.open();
            let t = Instant::now();
            meter.open_at(t);
            opened = Some(t);
        }
        if let Some(o) = opened {
            if now >= o + opts.duration {
                meter.close_at(now);
                calls.close();
                if let Some(every) = c.interval {
                    // Due in the window, never started: behind as well.
                    behind += missed_in_window(&meter, start, every, k);
                }
                break now;
            }
        }
        let edge = opened.map_or(open_at, |o| o + opts.duration);
        let due = match c.interval {
            Some(every) => due_time(start, every, k),
            None => now,
        };
        let room = tasks.len() < c.concurrency;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return abandon(&mut tasks).await,
            Some(j) = tasks.join_next(), if !tasks.is_empty() => absorb(j)?,
            _ = tokio::time::sleep_until(edge) => {}
            _ = tokio::time::sleep_until(due), if room => {
                let in_window = opened.is_some();
                if in_window {
                    started += 1;
                    if let (Some(every), Some(lag)) = (c.interval, lag.as_mut()) {
                        let late = Instant::now().saturating_duration_since(due);
                        record_ns(lag, late.as_nanos());
                        if late > every {
                            behind += 1;
                        }
                    }
                }
                let id = u32::try_from(k).map_err(|_| {
                    DriveError::InvalidOptions("churn: more than 2^32 connections in one phase".into())
                })?;
                k += 1;
                let plan = ConnPlan {
                    id,
                    nonce,
                    socks,
                    target: TargetAddr::Ip(sink.addr()),
                    work,
                    io_timeout: opts.io_timeout,
                    round_limit: Some(1),
                    interval: None,
                    go: None,
                    setup_gate: None,
                };
                let (ready, _) = mpsc::channel(1);
                let (meter, stop) = (meter.clone(), stop.clone());
                tasks.spawn(async move {
                    let result = run_connection(plan, meter, stop, ready).await;
                    Finished { id, in_window, result }
                });
            }
        }
    };
    // Connections of the window finish on their own (each bounded by
    // io_timeout).
    while !tasks.is_empty() {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return abandon(&mut tasks).await,
            Some(j) = tasks.join_next() => absorb(j)?,
        }
    }
    let opened = opened.unwrap_or(closed);
    let measured_s = (closed - opened).as_secs_f64();
    if sides.is_empty() {
        let first = failures
            .by_kind
            .values()
            .next()
            .map_or("none started".to_string(), |(_, m)| m.clone());
        return Err(DriveError::protocol(
            "churn",
            format!("no connection completed (first failure: {first})"),
        ));
    }

    let collected = lease.collect(sides.len(), opts.io_timeout, cancel).await?;
    drop(lease);
    // A failed connection is counted by kind; whatever the sink saw of it
    // is not an integrity question.
    let mut records = collected.records;
    records.retain(|id, _| !failures.ids.contains(id));
    sides.sort_by_key(|s| s.conn_id);
    let mut integrity = integrity::check(
        &sides,
        records,
        &collected.errors,
        integrity::Expected {
            up: true,
            down: true,
        },
    );
    // Every connection moves the same bytes: a per-connection list (tens
    // of thousands of entries) and thin-connection warnings say nothing.
    integrity.connections.clear();
    integrity.warnings.clear();

    let buckets = meter.buckets();
    let timeseries = fold_samples(&buckets, measured_s);
    let churn = ChurnResult {
        target_per_s: c.interval.map(|i| 1.0 / i.as_secs_f64()),
        concurrency: c.concurrency,
        all_started: k,
        started,
        completed,
        failed,
        connections_per_s: if measured_s > 0.0 {
            completed as f64 / measured_s
        } else {
            0.0
        },
        setup_us: summarize(&setup),
        first_response_us: summarize(&first),
        start_lag_us: lag.as_ref().map(summarize),
        behind,
        failures: failures
            .by_kind
            .into_iter()
            .map(|(kind, (count, example))| FailureCount {
                kind: kind.to_string(),
                count,
                example,
            })
            .collect(),
    };
    let result = PhaseResult {
        pattern: opts.pattern.name().to_string(),
        connections: c.concurrency,
        direction: None,
        warmup_s: (opened - start).as_secs_f64(),
        measured_s,
        bytes_up: sides.iter().map(|s| s.up.bytes).sum(),
        bytes_down: sides.iter().map(|s| s.down.bytes).sum(),
        window_bytes_up: buckets.up.iter().sum(),
        window_bytes_down: buckets.down.iter().sum(),
        window_bytes_up_received: Some(buckets.delivered_up.iter().sum()),
        throughput: throughput(&timeseries, measured_s),
        timeseries,
        // Churn's times are in `churn`; `latency_us` is the rr patterns'.
        latency_us: None,
        setup_us: churn.setup_us.clone(),
        round_trips: buckets.round_trips.iter().sum(),
        integrity,
        bytes_per_connection: None,
        schedule: None,
        churn: Some(churn),
    };
    if result.integrity.status == IntegrityStatus::Mismatch {
        return Err(DriveError::Integrity(Box::new(result)));
    }
    Ok(result)
}
