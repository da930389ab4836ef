//! Turning raw counts into the numbers of a [`PhaseResult`](super::PhaseResult):
//! latency summaries, per-second samples, throughput.

use hdrhistogram::Histogram;

use crate::order_statistics;

use super::error::DriveError;
use super::meter::Buckets;
use super::result::{LatencySummary, SecondSample, Throughput};

/// Highest latency a histogram tracks (1 h in ns); longer ones are clamped.
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

/// A histogram of nanoseconds, 3 significant digits.
pub(crate) fn new_histogram() -> Result<Histogram<u64>, DriveError> {
    Histogram::new_with_max(MAX_TRACKED_NS, 3)
        .map_err(|e| DriveError::Internal(format!("creating a histogram: {e:?}")))
}

/// Records one duration in nanoseconds (at least 1, at most 1 h).
pub(crate) fn record_ns(h: &mut Histogram<u64>, ns: u128) {
    h.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
}

/// Summary in microseconds of a nanosecond histogram (all zero when empty).
/// The order statistics are read back from the histogram, so they carry its
/// 3-significant-digit resolution.
pub(crate) fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let n = h.len();
    let us = |ns: u64| ns as f64 / 1000.0;
    let at_rank = |r: u64| us(h.value_at_quantile(r as f64 / n as f64));
    LatencySummary {
        count: n,
        mean: h.mean() / 1000.0,
        percentiles: order_statistics::REPORTED
            .iter()
            .map(|&q| order_statistics::estimate(q, n, at_rank))
            .collect(),
        max: us(h.max()),
    }
}

/// Splits a window of `measured_s` seconds into samples (see
/// [`SecondSample`]); counts in buckets past the last sample go to the last.
pub(crate) fn fold_samples(b: &Buckets, measured_s: f64) -> Vec<SecondSample> {
    let full = measured_s.max(0.0).floor() as usize;
    let rest = measured_s.max(0.0) - full as f64;
    let (count, last_span) = if full == 0 {
        (1, measured_s.max(0.0))
    } else if rest >= 0.5 {
        (full + 1, rest)
    } else {
        (full, 1.0 + rest)
    };
    let mut samples: Vec<SecondSample> = (0..count)
        .map(|i| SecondSample {
            t_s: i as f64,
            span_s: if i + 1 == count { last_span } else { 1.0 },
            bytes_up: 0,
            bytes_down: 0,
            round_trips: 0,
            latency_p50_us: None,
            latency_p99_us: None,
        })
        .collect();
    let mut latency: Vec<Option<Histogram<u64>>> = vec![None; count];
    let n = b.up.len().max(b.down.len()).max(b.round_trips.len());
    for i in 0..n {
        let k = i.min(count - 1);
        let s = &mut samples[k];
        s.bytes_up += b.up.get(i).copied().unwrap_or(0);
        s.bytes_down += b.down.get(i).copied().unwrap_or(0);
        s.round_trips += b.round_trips.get(i).copied().unwrap_or(0);
        if let Some(Some(h)) = b.latency.get(i) {
            match &mut latency[k] {
                Some(all) => {
                    // Same bounds and precision: adding cannot fail.
                    let _ = all.add(h);
                }
                slot @ None => *slot = Some(h.clone()),
            }
        }
    }
    for (s, h) in samples.iter_mut().zip(latency) {
        // Only where an order statistic bounds the percentile (p99: 299
        // round trips in the second); `round_trips` is the sample count.
        if let Some(h) = h {
            let at = |q: f64| {
                (h.len() >= order_statistics::samples_needed(q))
                    .then(|| h.value_at_quantile(q) as f64 / 1000.0)
            };
            s.latency_p50_us = at(0.50);
            s.latency_p99_us = at(0.99);
        }
    }
    samples
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Throughput of the window from its samples.
pub(crate) fn throughput(samples: &[SecondSample], measured_s: f64) -> Throughput {
    let rate = |bytes: u64, span: f64| if span > 0.0 { bytes as f64 / span } else { 0.0 };
    let up: u64 = samples.iter().map(|s| s.bytes_up).sum();
    let down: u64 = samples.iter().map(|s| s.bytes_down).sum();
    Throughput {
        up_bps_median: median(samples.iter().map(|s| rate(s.bytes_up, s.span_s)).collect()),
        up_bps_mean: rate(up, measured_s),
        down_bps_median: median(
            samples
                .iter()
                .map(|s| rate(s.bytes_down, s.span_s))
                .collect(),
        ),
        down_bps_mean: rate(down, measured_s),
    }
}
