//! The probes' cost measured side by side (`probes.alternate`): the main
//! pass's programs are detached and attached again in turn, one whole second
//! of the measured window each, and each phase's throughput in a second
//! with them is set against the adjacent second without.
//!
//! The seconds go in pairs, and the pairs alternate which comes first
//! (attached, detached, detached, attached, …), so that a rate drifting
//! over the window favours neither side. Each pair gives one ratio; the
//! phase's figure is their median with its distribution-free interval.

use crate::drive::SecondSample;
use crate::order_statistics;
use crate::report::Alternation;

/// Whether the programs are attached in second `k` of a measured window
/// (counted from 0 at the window's opening).
pub fn attached_in_second(k: u64) -> bool {
    k.is_multiple_of(2) == (k / 2).is_multiple_of(2)
}

/// A whole second of the per-second series (the last sample may be longer
/// or shorter).
fn whole_second(span_s: f64) -> bool {
    (span_s - 1.0).abs() < 1e-6
}

/// Phase `phase`'s ratios, attached / detached, one per pair of whole
/// adjacent seconds of its per-second `series`: round trips for rr,
/// payload bytes (both ways) otherwise. `switch_ms_max`: the longest
/// detach or attach of the pass.
pub fn alternation(
    phase: usize,
    pattern: &str,
    series: &[SecondSample],
    switch_ms_max: f64,
) -> Alternation {
    let rr = pattern == "rr";
    let count = |i: usize| -> Option<f64> {
        let s = series.get(i)?;
        if !whole_second(s.span_s) || (s.t_s - i as f64).abs() > 1e-6 {
            return None;
        }
        Some(if rr {
            s.round_trips as f64
        } else {
            (s.bytes_up + s.bytes_down) as f64
        })
    };
    let mut ratios = Vec::new();
    for j in 0..series.len() / 2 {
        let (a, b) = (2 * j, 2 * j + 1);
        let (Some(x), Some(y)) = (count(a), count(b)) else {
            continue;
        };
        let (on, off) = if attached_in_second(a as u64) {
            (x, y)
        } else {
            (y, x)
        };
        if off > 0.0 {
            ratios.push(on / off);
        }
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as u64;
    let median =
        (n > 0).then(|| order_statistics::estimate(0.5, n, |rank| sorted[(rank - 1) as usize]));
    let bounds = median.as_ref().and_then(|m| m.bounds);
    Alternation {
        phase,
        pattern: pattern.to_string(),
        unit: if rr { "round trips" } else { "bytes" }.to_string(),
        pair_ratios: ratios,
        median_ratio: (n > 0).then(|| {
            let mid = sorted.len() / 2;
            if sorted.len() % 2 == 1 {
                sorted[mid]
            } else {
                (sorted[mid - 1] + sorted[mid]) / 2.0
            }
        }),
        median_lower: bounds.and_then(|b| b.lower),
        median_upper: bounds.map(|b| b.upper),
        switch_ms_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t: usize, span_s: f64, round_trips: u64) -> SecondSample {
        SecondSample {
            t_s: t as f64,
            span_s,
            bytes_up: round_trips * 10,
            bytes_down: round_trips * 10,
            round_trips,
            latency_p50_us: None,
            latency_p99_us: None,
        }
    }

    #[test]
    fn the_schedule_alternates_which_side_of_a_pair_comes_first() {
        let s: Vec<bool> = (0..8).map(attached_in_second).collect();
        assert_eq!(s, [true, false, false, true, true, false, false, true]);
    }

    #[test]
    fn each_pair_sets_its_attached_second_against_its_detached_one() {
        // Attached seconds run 90 round trips, detached 100, whichever
        // comes first in the pair; the last sample (1.4 s) is no pair's.
        let rt = |k: usize| {
            if attached_in_second(k as u64) {
                90
            } else {
                100
            }
        };
        let mut seconds: Vec<SecondSample> = (0..6).map(|k| second(k, 1.0, rt(k))).collect();
        seconds.push(second(6, 1.4, 140));
        let a = alternation(1, "rr", &seconds, 3.5);
        assert_eq!(a.pair_ratios, vec![0.9, 0.9, 0.9]);
        assert_eq!(a.median_ratio, Some(0.9));
        assert_eq!(a.unit, "round trips");
        assert_eq!(a.phase, 1);
        assert_eq!(a.switch_ms_max, 3.5);
    }

    #[test]
    fn a_drifting_rate_cancels_over_the_pairs() {
        // The rate climbs 10 per second and the probes cost nothing: the
        // pairs' ratios straddle 1 in turn rather than all leaning one way.
        let seconds: Vec<SecondSample> = (0..8)
            .map(|k| second(k, 1.0, 100 + 10 * k as u64))
            .collect();
        let a = alternation(0, "rr", &seconds, 0.0);
        let below = a.pair_ratios.iter().filter(|&&r| r < 1.0).count();
        let above = a.pair_ratios.iter().filter(|&&r| r > 1.0).count();
        assert_eq!((below, above), (2, 2), "{:?}", a.pair_ratios);
    }

    #[test]
    fn bulk_counts_bytes_and_a_detached_second_that_moved_nothing_is_no_ratio() {
        let seconds = vec![
            second(0, 1.0, 5),
            second(1, 1.0, 0),
            second(2, 1.0, 4),
            second(3, 1.0, 8),
        ];
        let a = alternation(0, "bulk", &seconds, 0.0);
        assert_eq!(a.unit, "bytes");
        // Pair 0's detached second moved nothing: left out. Pair 1:
        // second 3 attached (160 bytes), second 2 detached (80).
        assert_eq!(a.pair_ratios, vec![2.0]);
    }

    #[test]
    fn the_median_gets_an_interval_only_from_enough_pairs() {
        let few: Vec<SecondSample> = (0..4).map(|k| second(k, 1.0, 100)).collect();
        let a = alternation(0, "rr", &few, 0.0);
        assert_eq!(a.pair_ratios.len(), 2);
        assert_eq!(a.median_upper, None);
        let many: Vec<SecondSample> = (0..40).map(|k| second(k, 1.0, 100 + k as u64)).collect();
        let a = alternation(0, "rr", &many, 0.0);
        assert_eq!(a.pair_ratios.len(), 20);
        let (lo, mid, hi) = (
            a.median_lower.unwrap(),
            a.median_ratio.unwrap(),
            a.median_upper.unwrap(),
        );
        assert!(lo <= mid && mid <= hi, "{lo} {mid} {hi}");
    }
}
