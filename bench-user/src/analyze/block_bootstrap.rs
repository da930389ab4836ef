//! The 95 % interval of category shares by a block bootstrap.
//!
//! Consecutive CPU samples are not independent (a thread stays in one
//! function for many sampling periods), so a binomial interval over the
//! sample count is too narrow. Resampling whole blocks of samples (runs of
//! consecutive time units, or whole threads) keeps the correlation inside a
//! block and lets the interval widen by as much as the data is correlated.

use rand::{rngs::StdRng, RngExt, SeedableRng};

/// Bootstrap replicates per interval.
pub const REPLICATES: usize = 2000;

/// Fixed, so that a report renders the same interval every time.
const SEED: u64 = 0x5eed_b10c;

/// The 95 % percentile intervals of each category's share.
///
/// `units[i][c]` is the samples of category `c` in unit `i` (units in time
/// order when they have one); a bootstrap replicate draws
/// ⌈units / block_len⌉ runs of `block_len` consecutive units (wrapping
/// around the end) with replacement. `None` when there are fewer than two
/// runs' worth of units with samples.
pub fn share_intervals(units: &[Vec<u64>], block_len: usize) -> Option<Vec<(f64, f64)>> {
    let units: Vec<&Vec<u64>> = units.iter().filter(|u| u.iter().sum::<u64>() > 0).collect();
    let block_len = block_len.max(1);
    let categories = units.first()?.len();
    if units.len() < 2 * block_len || units.iter().any(|u| u.len() != categories) {
        return None;
    }
    let n = units.len();
    let runs = n.div_ceil(block_len);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut shares: Vec<Vec<f64>> = vec![Vec::with_capacity(REPLICATES); categories];
    let mut counts = vec![0u64; categories];
    for _ in 0..REPLICATES {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..runs {
            let start = rng.random_range(0..n);
            for k in 0..block_len {
                for (c, v) in counts.iter_mut().zip(units[(start + k) % n]) {
                    *c += v;
                }
            }
        }
        let total: u64 = counts.iter().sum();
        for (s, &c) in shares.iter_mut().zip(&counts) {
            s.push(c as f64 / total as f64);
        }
    }
    Some(
        shares
            .into_iter()
            .map(|mut s| {
                s.sort_by(f64::total_cmp);
                let at = |p: f64| s[((p * (s.len() - 1) as f64).round()) as usize];
                (at(0.025), at(0.975))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 50 seconds of 100 samples each, two categories, from a chain that
    /// stays in its category with probability `stay` at each sample.
    fn seconds(stay: f64, seed: u64) -> Vec<Vec<u64>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = 0usize;
        (0..50)
            .map(|_| {
                let mut c = vec![0u64; 2];
                for _ in 0..100 {
                    if rng.random_range(0.0..1.0) >= stay {
                        // A fresh draw: category 0 with probability 0.3.
                        state = usize::from(rng.random_range(0.0..1.0) >= 0.3);
                    }
                    c[state] += 1;
                }
                c
            })
            .collect()
    }

    /// Width of the 95 % binomial (normal) interval of the share, as if
    /// the samples were independent.
    fn binomial_width(units: &[Vec<u64>]) -> f64 {
        let k: u64 = units.iter().map(|u| u[0]).sum();
        let n: u64 = units.iter().map(|u| u[0] + u[1]).sum();
        let p = k as f64 / n as f64;
        2.0 * 1.96 * (p * (1.0 - p) / n as f64).sqrt()
    }

    #[test]
    fn correlated_samples_widen_the_interval() {
        let data = seconds(0.98, 7);
        let (lo, hi) = share_intervals(&data, 1).expect("50 seconds")[0];
        let share = data.iter().map(|u| u[0]).sum::<u64>() as f64 / 5000.0;
        assert!(lo <= share && share <= hi, "{lo} {share} {hi}");
        let ratio = (hi - lo) / binomial_width(&data);
        // With a 2 % switch rate a run lasts ~50 samples: the effective
        // sample count is ~1/30 of 5000, the interval ~5× the binomial one.
        assert!((3.0..10.0).contains(&ratio), "ratio {ratio}");
        // Runs of 5 seconds keep the correlation across second boundaries
        // too: no narrower than by single seconds, within resampling noise.
        let (lo5, hi5) = share_intervals(&data, 5).expect("10 runs")[0];
        assert!((hi5 - lo5) >= 0.9 * (hi - lo), "{lo5} {hi5} vs {lo} {hi}");
    }

    #[test]
    fn independent_samples_match_the_binomial_width() {
        let data = seconds(0.0, 11);
        let (lo, hi) = share_intervals(&data, 1).expect("50 seconds")[0];
        let ratio = (hi - lo) / binomial_width(&data);
        // The spread is estimated from 50 blocks: its standard deviation
        // is off by ~10 % (1/√98) by chance, so allow three of those.
        assert!((0.7..1.3).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn too_few_blocks_give_no_interval() {
        assert_eq!(share_intervals(&[vec![3, 4]], 1), None);
        assert_eq!(share_intervals(&[vec![3, 4], vec![0, 0]], 1), None);
        assert_eq!(share_intervals(&[vec![3, 4], vec![1, 1]], 2), None);
        assert!(share_intervals(&[vec![3, 4], vec![1, 1]], 1).is_some());
    }
}
