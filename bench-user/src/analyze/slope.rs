//! slope: how fast a resource grows over time or over connections served,
//! with a 95 % interval that holds for series that move in steps and whose
//! readings are correlated.
//!
//! Readings are grouped into runs of consecutive samples, each run stood
//! for by its medians (x and y): a lone reading taken while a burst of
//! connections was in flight moves no point. The slope is Theil–Sen over
//! those points (the median of the slopes of every pair with different x),
//! which a few steps cannot drag the way they drag a least-squares line.
//! Its interval is a moving-block bootstrap: blocks of consecutive points
//! drawn with replacement (so that the correlation inside a block is kept),
//! Theil–Sen of each replicate, the 2.5 and 97.5 percentiles.
//!
//! No crate of the workspace's ecosystem offers Theil–Sen or a moving-block
//! bootstrap of a regression, so both are written here (a page of code).

use rand::{rngs::StdRng, RngExt, SeedableRng};

/// Bootstrap replicates per interval.
pub const REPLICATES: usize = 1000;

/// Fixed, so that a report renders the same interval every time.
const SEED: u64 = 0x51_0be5;

/// At most this many points go into Theil–Sen (O(n²) pairs per
/// replicate): longer series get longer runs per point.
pub const MAX_POINTS: usize = 120;

/// Fewest points a slope is estimated from.
pub const MIN_POINTS: usize = 6;

/// A slope with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slope {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Points (medians of runs) it was estimated from.
    pub points: usize,
}

/// Samples per point: at least `min_run`, more when the series would give
/// more than [`MAX_POINTS`] points.
pub fn run_length(samples: usize, min_run: usize) -> usize {
    min_run.max(1).max(samples.div_ceil(MAX_POINTS))
}

/// The medians of x and of y of each run of `run` consecutive samples (the
/// last run only when it is at least half full).
pub fn run_medians(xy: &[(f64, f64)], run: usize) -> Vec<(f64, f64)> {
    let run = run.max(1);
    xy.chunks(run)
        .filter(|c| 2 * c.len() >= run)
        .map(|c| {
            let x = median(c.iter().map(|p| p.0).collect());
            let y = median(c.iter().map(|p| p.1).collect());
            (x, y)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Theil–Sen: the median slope over every pair of points with different
/// x; `None` when no pair has.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dx = b.0 - a.0;
            if dx != 0.0 {
                slopes.push((b.1 - a.1) / dx);
            }
        }
    }
    (!slopes.is_empty()).then(|| median(slopes))
}

/// Theil–Sen of `points` (in x order) with its 95 % moving-block bootstrap
/// interval, blocks of `block_len` consecutive points. `None` below
/// [`MIN_POINTS`] points, or when x never changes.
pub fn slope_with_interval(points: &[(f64, f64)], block_len: usize) -> Option<Slope> {
    let n = points.len();
    if n < MIN_POINTS {
        return None;
    }
    let estimate = theil_sen(points)?;
    let block_len = block_len.clamp(1, n / 2);
    let blocks = n.div_ceil(block_len);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut replicates = Vec::with_capacity(REPLICATES);
    let mut sample = Vec::with_capacity(blocks * block_len);
    for _ in 0..REPLICATES {
        sample.clear();
        for _ in 0..blocks {
            // Blocks do not wrap: joining the end to the start would make
            // a pair across the seam look like a fall (or rise) of the
            // whole trend.
            let start = rng.random_range(0..=n - block_len);
            sample.extend_from_slice(&points[start..start + block_len]);
        }
        if let Some(s) = theil_sen(&sample) {
            replicates.push(s);
        }
    }
    if replicates.len() < REPLICATES / 2 {
        return None;
    }
    replicates.sort_by(f64::total_cmp);
    let at = |p: f64| replicates[(p * (replicates.len() - 1) as f64).round() as usize];
    Some(Slope {
        estimate,
        // The point estimate inside its own interval, however the
        // replicates fell.
        low: at(0.025).min(estimate),
        high: at(0.975).max(estimate),
        points: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noise in [-1, 1].
    fn noise(i: usize, seed: u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + i as u64);
        rng.random_range(-1.0..=1.0)
    }

    #[test]
    fn theil_sen_of_a_line_is_its_slope_and_ignores_outliers() {
        let mut pts: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 3.0 + 2.5 * i as f64)).collect();
        assert_eq!(theil_sen(&pts), Some(2.5));
        // Three wild readings out of twenty do not move the median slope
        // off the line's.
        pts[4].1 += 1e6;
        pts[11].1 -= 1e6;
        pts[17].1 += 5e5;
        let s = theil_sen(&pts).expect("pairs");
        assert!((s - 2.5).abs() < 0.2, "{s}");
        assert_eq!(theil_sen(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn run_medians_take_each_runs_middle() {
        let xy: Vec<(f64, f64)> = (0..11).map(|i| (i as f64, (i * i) as f64)).collect();
        // Runs of 4: [0..4), [4..8), and [8..11) at least half full.
        assert_eq!(
            run_medians(&xy, 4),
            vec![(1.5, 2.5), (5.5, 30.5), (9.0, 81.0)]
        );
        assert_eq!(run_medians(&xy[..9], 4).len(), 2);
        assert_eq!(run_length(60, 5), 5);
        assert_eq!(run_length(86_400, 5), 720);
    }

    #[test]
    fn a_real_slope_under_noise_is_inside_a_bounded_interval() {
        // 600 readings: 64 KiB per connection, 10 connections a reading,
        // with ±2 MiB of noise on each reading.
        let xy: Vec<(f64, f64)> = (0..600)
            .map(|i| {
                let conns = 10.0 * i as f64;
                (conns, 50e6 + 65536.0 * conns + 2e6 * noise(i, 1))
            })
            .collect();
        let pts = run_medians(&xy, run_length(xy.len(), 5));
        let s = slope_with_interval(&pts, 4).expect("slope");
        assert!(s.low <= 65536.0 && 65536.0 <= s.high, "{s:?}");
        assert!(s.low > 60_000.0 && s.high < 71_000.0, "{s:?}");
        assert!((s.estimate - 65536.0).abs() < 2000.0, "{s:?}");
    }

    #[test]
    fn a_flat_series_with_noise_has_an_interval_around_zero() {
        let xy: Vec<(f64, f64)> = (0..300)
            .map(|i| (i as f64, 1000.0 + 40.0 * noise(i, 2)))
            .collect();
        let pts = run_medians(&xy, 5);
        let s = slope_with_interval(&pts, 4).expect("slope");
        assert!(s.low <= 0.0 && 0.0 <= s.high, "{s:?}");
        // ±40 over 300 readings: the interval stays within ±0.5 a reading.
        assert!(s.low > -0.5 && s.high < 0.5, "{s:?}");
    }

    #[test]
    fn one_step_is_not_a_trend() {
        // Flat, one step of +100 a third of the way in (an arena the
        // allocator added), flat again: the lower bound stays at zero.
        let xy: Vec<(f64, f64)> = (0..300)
            .map(|i| (i as f64, if i < 100 { 500.0 } else { 600.0 }))
            .collect();
        let pts = run_medians(&xy, 5);
        let s = slope_with_interval(&pts, 6).expect("slope");
        assert_eq!(s.low, 0.0, "{s:?}");
        assert_eq!(s.estimate, 0.0, "{s:?}");
    }

    #[test]
    fn a_staircase_that_keeps_climbing_is_a_trend() {
        // +1 every 10 readings (descriptors leaked in bursts): 0.1 a
        // reading, whatever the steps.
        let xy: Vec<(f64, f64)> = (0..300).map(|i| (i as f64, (i / 10) as f64)).collect();
        let pts = run_medians(&xy, 5);
        let s = slope_with_interval(&pts, 4).expect("slope");
        assert!(s.low > 0.08 && s.high < 0.12, "{s:?}");
    }

    #[test]
    fn correlated_noise_widens_the_interval_with_the_blocks() {
        // A random walk around a flat line: neighbours are alike, so short
        // blocks understate the spread that long blocks keep.
        let mut level = 0.0;
        let xy: Vec<(f64, f64)> = (0..600)
            .map(|i| {
                level += noise(i, 3);
                (i as f64, level)
            })
            .collect();
        let pts = run_medians(&xy, 5);
        let short = slope_with_interval(&pts, 1).expect("slope");
        let long = slope_with_interval(&pts, 12).expect("slope");
        assert!(
            long.high - long.low > 1.5 * (short.high - short.low),
            "{short:?} {long:?}"
        );
    }

    #[test]
    fn too_few_points_give_no_slope() {
        let pts: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(slope_with_interval(&pts, 1), None);
        let same_x: Vec<(f64, f64)> = (0..10).map(|i| (1.0, i as f64)).collect();
        assert_eq!(slope_with_interval(&same_x, 2), None);
    }
}
