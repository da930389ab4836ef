//! The measured window's clock and its per-second counters, shared by all
//! connections of a phase.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Per-second latency histograms keep 2 significant digits (1 %): enough for
/// a curve, and small (tens of KiB each).
const SECOND_SIGFIG: u8 = 2;
/// Longest round trip a per-second histogram tracks (10 s); longer ones are
/// clamped.
const SECOND_MAX_NS: u64 = 10_000_000_000;

/// Per-second counts of the measured window. An event counts when its time is
/// at or after `open` and before `close`.
pub(crate) struct Meter {
    open: OnceLock<Instant>,
    close: OnceLock<Instant>,
    up: Vec<AtomicU64>,
    down: Vec<AtomicU64>,
    /// Payload bytes the sink received: what crossed the chain, where `up`
    /// is what the generator wrote into its socket.
    delivered_up: Vec<AtomicU64>,
    round_trips: Vec<AtomicU64>,
    /// Round-trip latency (ns) per second; `None` when a histogram could not
    /// be made, which leaves the series without latency rather than wrong.
    latency: Vec<Mutex<Option<Histogram<u64>>>>,
}

/// The counters read out after the window closed.
pub(crate) struct Buckets {
    pub(crate) up: Vec<u64>,
    pub(crate) down: Vec<u64>,
    pub(crate) delivered_up: Vec<u64>,
    pub(crate) round_trips: Vec<u64>,
    pub(crate) latency: Vec<Option<Histogram<u64>>>,
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn read(v: &[AtomicU64]) -> Vec<u64> {
    v.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

impl Meter {
    /// A meter for a window of about `duration`; events past the last bucket
    /// are added to it.
    pub(crate) fn new(duration: Duration) -> Self {
        let n = duration.as_secs_f64().ceil() as usize + 2;
        Meter {
            open: OnceLock::new(),
            close: OnceLock::new(),
            up: zeros(n),
            down: zeros(n),
            delivered_up: zeros(n),
            round_trips: zeros(n),
            latency: (0..n)
                .map(|_| Mutex::new(Histogram::new_with_max(SECOND_MAX_NS, SECOND_SIGFIG).ok()))
                .collect(),
        }
    }

    pub(crate) fn open_at(&self, t: Instant) {
        let _ = self.open.set(t);
    }

    pub(crate) fn close_at(&self, t: Instant) {
        let _ = self.close.set(t);
    }

    fn slot(&self, t: Instant) -> Option<usize> {
        let open = *self.open.get()?;
        if t < open {
            return None;
        }
        if let Some(close) = self.close.get() {
            if t >= *close {
                return None;
            }
        }
        let i = (t - open).as_secs() as usize;
        Some(i.min(self.up.len() - 1))
    }

    /// When the window closed, once it has.
    pub(crate) fn closed_at(&self) -> Option<Instant> {
        self.close.get().copied()
    }

    /// Whether `t` falls in the measured window.
    pub(crate) fn in_window(&self, t: Instant) -> bool {
        self.slot(t).is_some()
    }

    /// Counts `n` bytes sent by the generator at `t`.
    pub(crate) fn sent(&self, n: usize, t: Instant) {
        if let Some(i) = self.slot(t) {
            self.up[i].fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Counts `n` bytes received by the generator at `t`.
    pub(crate) fn received(&self, n: usize, t: Instant) {
        if let Some(i) = self.slot(t) {
            self.down[i].fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Counts `n` bytes received by the sink at `t`.
    pub(crate) fn delivered(&self, n: usize, t: Instant) {
        if let Some(i) = self.slot(t) {
            self.delivered_up[i].fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Counts a round trip of `ns` completed at `t`; true if it fell in the
    /// window.
    pub(crate) fn round_trip(&self, t: Instant, ns: u128) -> bool {
        match self.slot(t) {
            Some(i) => {
                self.round_trips[i].fetch_add(1, Ordering::Relaxed);
                if let Ok(mut h) = self.latency[i].lock() {
                    if let Some(h) = h.as_mut() {
                        h.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
                    }
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn buckets(&self) -> Buckets {
        Buckets {
            up: read(&self.up),
            down: read(&self.down),
            delivered_up: read(&self.delivered_up),
            round_trips: read(&self.round_trips),
            latency: self
                .latency
                .iter()
                .map(|h| h.lock().ok().and_then(|h| h.clone()))
                .collect(),
        }
    }
}

/// A read-only view of a phase's [`Meter`] while it counts, for the live
/// view: the same counters the report's per-second series come from, read
/// with relaxed loads (no new measurement on the traffic's path).
#[derive(Clone)]
pub struct LiveCounters(Arc<Meter>);

/// Where a phase's measured window stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowState {
    /// Connecting or warming up: nothing counted yet.
    NotOpen,
    /// Counting for this many seconds so far.
    Open { elapsed_s: f64 },
    /// Closed after this many seconds; the phase is draining.
    Closed { measured_s: f64 },
}

impl LiveCounters {
    pub(crate) fn new(meter: Arc<Meter>) -> Self {
        LiveCounters(meter)
    }

    pub fn window(&self, now: Instant) -> WindowState {
        let m = &self.0;
        match (m.open.get(), m.close.get()) {
            (None, _) => WindowState::NotOpen,
            (Some(&o), None) => WindowState::Open {
                elapsed_s: now.saturating_duration_since(o).as_secs_f64(),
            },
            (Some(&o), Some(&c)) => WindowState::Closed {
                measured_s: (c - o).as_secs_f64(),
            },
        }
    }

    /// When the window opened, once it has, and whether it has closed:
    /// the edges of its one-second buckets, for the runner's
    /// `probes.alternate`, which switches the probes at them.
    pub fn edges(&self) -> (Option<std::time::Instant>, bool) {
        (
            self.0.open.get().map(|o| o.into_std()),
            self.0.close.get().is_some(),
        )
    }

    /// Bytes up, bytes down and round trips counted in the window so far.
    pub fn totals(&self) -> (u64, u64, u64) {
        let sum = |v: &[AtomicU64]| v.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        (sum(&self.0.up), sum(&self.0.down), sum(&self.0.round_trips))
    }

    /// How many of the window's one-second buckets are complete at `now`
    /// (a closed window's last, partial second counts as complete).
    pub fn complete_seconds(&self, now: Instant) -> usize {
        let n = match self.window(now) {
            WindowState::NotOpen => 0,
            WindowState::Open { elapsed_s } => elapsed_s as usize,
            WindowState::Closed { measured_s } => measured_s.ceil() as usize,
        };
        n.min(self.0.up.len())
    }

    /// Bytes up plus down counted in second `i` of the window.
    pub fn second_bytes(&self, i: usize) -> Option<u64> {
        let m = &self.0;
        Some(m.up.get(i)?.load(Ordering::Relaxed) + m.down.get(i)?.load(Ordering::Relaxed))
    }

    /// Adds second `i`'s round-trip latencies (ns) to `into`; false when
    /// that second has none to add. Locks the second's histogram once.
    pub fn add_second_latency(&self, i: usize, into: &mut Histogram<u64>) -> bool {
        let Some(h) = self.0.latency.get(i) else {
            return false;
        };
        match h.lock() {
            Ok(h) => match h.as_ref() {
                Some(h) if !h.is_empty() => into.add(h).is_ok(),
                _ => false,
            },
            Err(_) => false,
        }
    }
}
