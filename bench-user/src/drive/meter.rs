//! The measured window's clock and its per-second counters, shared by all
//! connections of a phase.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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
