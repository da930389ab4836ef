//! The set-up phase: many short connections, one at a time, to measure
//! connection set-up over enough samples for its percentiles.
//!
//! A traffic phase opens a handful of long connections (4 in the shipped
//! profiles), too few for any distribution-free bound on a set-up
//! percentile. Here each connection does TCP connect, SOCKS5 CONNECT, the
//! header, one request of `request_size` and its response of
//! `response_size`, then closes; one after another, so each time is the
//! chain's own, not a queue's. It stops after `connections` connections or
//! once `max_duration` has passed, whichever comes first; the percentiles
//! then say "too few samples" where the count falls short.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::DriveError;
use super::generator::{run_connection, ConnPlan};
use super::header::Work;
use super::integrity;
use super::meter::Meter;
use super::result::SetupResult;
use super::sink::Sink;
use super::socks5::TargetAddr;
use super::stats::{new_histogram, record_ns, summarize};

/// Largest accepted number of set-up connections.
pub const MAX_SETUP_CONNECTIONS: usize = 100_000;

/// What the set-up phase does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOptions {
    /// Connections to open, one after another (at least 1).
    pub connections: usize,
    /// Bytes of the one request per connection.
    pub request_size: usize,
    /// Bytes of its response.
    pub response_size: usize,
    /// No connection is started after this much time has passed.
    pub max_duration: Duration,
    /// How long any network wait may go without progress.
    pub io_timeout: Duration,
}

impl SetupOptions {
    fn validate(&self) -> Result<(), DriveError> {
        let bad = |m: String| Err(DriveError::InvalidOptions(m));
        if self.connections == 0 || self.connections > MAX_SETUP_CONNECTIONS {
            return bad(format!(
                "setup connections must be 1..={MAX_SETUP_CONNECTIONS}, got {}",
                self.connections
            ));
        }
        for (name, v) in [
            ("request_size", self.request_size),
            ("response_size", self.response_size),
        ] {
            if v == 0 || v > super::MAX_MESSAGE_SIZE {
                return bad(format!(
                    "setup {name} must be 1..={} bytes, got {v}",
                    super::MAX_MESSAGE_SIZE
                ));
            }
        }
        if self.max_duration.is_zero() || self.max_duration > super::MAX_DURATION {
            return bad(format!(
                "setup max_duration must be more than 0 and at most {:?}, got {:?}",
                super::MAX_DURATION,
                self.max_duration
            ));
        }
        super::options::check_io_timeout("setup io_timeout", self.io_timeout)
    }
}

/// Runs the set-up phase through the SOCKS5 server at `socks` to `sink`.
///
/// Errors as [`run_phase`](super::run_phase): a failing connection fails
/// the phase at once; [`DriveError::Integrity`] is not used here, a
/// mismatch is in the result's integrity for the caller to act on.
pub async fn run_setup(
    opts: &SetupOptions,
    socks: SocketAddr,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<SetupResult, DriveError> {
    opts.validate()?;
    let nonce = super::phase::new_nonce();
    let lease = sink.lease(nonce);
    // Never opened: the set-up phase has no measured window, its
    // connections are only timed.
    let meter = Arc::new(Meter::new(Duration::ZERO));
    let stop = CancellationToken::new();
    let work = Work::Rr {
        // validate() bounds both by MAX_MESSAGE_SIZE (1 GiB).
        request_size: opts.request_size as u32,
        response_size: opts.response_size as u32,
    };
    let started = Instant::now();
    let deadline = started + opts.max_duration;
    let mut outcomes = Vec::with_capacity(opts.connections);
    for id in 0..opts.connections {
        if Instant::now() >= deadline {
            break;
        }
        let (ready, _) = mpsc::channel(1);
        let plan = ConnPlan {
            id: id as u32,
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
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(DriveError::Cancelled),
            o = run_connection(plan, meter.clone(), stop.clone(), ready) => o?,
        };
        outcomes.push(outcome);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let collected = lease
        .collect(outcomes.len(), opts.io_timeout, cancel)
        .await?;
    drop(lease);
    let sides: Vec<_> = outcomes.iter().map(|o| o.side).collect();
    let integrity = integrity::check(
        &sides,
        collected.records,
        &collected.errors,
        integrity::Expected {
            up: true,
            down: true,
        },
    );
    let mut setup = new_histogram()?;
    let mut first = new_histogram()?;
    for o in &outcomes {
        record_ns(&mut setup, o.setup_ns);
        if let Some(ns) = o.first_response_ns {
            record_ns(&mut first, ns);
        }
    }
    Ok(SetupResult {
        planned: opts.connections,
        connections: outcomes.len(),
        request_size: opts.request_size,
        response_size: opts.response_size,
        elapsed_s,
        setup_us: summarize(&setup),
        first_response_us: summarize(&first),
        integrity,
    })
}
