//! stats: the statistics of `compare`'s verdicts, as pure functions.
//!
//! Benchmark numbers are rarely normal and repeats are few, so everything
//! here is distribution-free and exact at small run counts: the
//! Hodges-Lehmann estimate of the shift between two samples and the
//! confidence interval obtained by inverting the Mann-Whitney (Wilcoxon
//! rank-sum) test, whose null distribution is computed exactly.

/// Median of the values; `None` when there are none. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(median_of_sorted(&v))
}

fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// How many of the C(n1+n2, n1) equally likely arrangements of two samples
/// without ties give the Mann-Whitney statistic U = 0, 1, …, n1·n2.
///
/// These are the coefficients of the Gaussian binomial coefficient
/// [n1+n2 choose n1] in q, built as ∏ᵢ (1 − q^(n+i)) / (1 − q^i) for
/// i = 1..=m (m, n the smaller and larger size). Each step's division is
/// exact; a coefficient depends only on lower ones, by additions of
/// integers, so the lower tail (all the intervals use) is exact in f64
/// while the counts stay below 2^53, far beyond any run count.
pub fn u_counts(n1: usize, n2: usize) -> Vec<f64> {
    let (m, n) = (n1.min(n2), n1.max(n2));
    let mut c = vec![0.0; m * n + m + 1];
    c[0] = 1.0;
    for i in 1..=m {
        // Degree before this step (i−1)·n; multiplying adds n+i.
        let deg = (i - 1) * n + n + i;
        for k in (n + i..=deg).rev() {
            c[k] -= c[k - n - i];
        }
        for k in i..=deg {
            c[k] += c[k - i];
        }
        // The quotient has degree i·n; what the series left above it is
        // rounding of an exact zero.
        for x in &mut c[i * n + 1..=deg] {
            *x = 0.0;
        }
    }
    c.truncate(m * n + 1);
    c
}

/// C(n1 + n2, n1) as a float.
fn arrangements(n1: usize, n2: usize) -> f64 {
    let (m, n) = (n1.min(n2), n1.max(n2));
    (1..=m).fold(1.0, |acc, i| acc * (n + i) as f64 / i as f64)
}

/// Tolerance for comparing tail probabilities with levels written as
/// decimals (1 − 0.8 is 0.19999999999999996 in f64).
const ROUNDING: f64 = 1e-12;

/// The order statistic the interval at `level` is read at: the largest k ≥ 1
/// with P(U ≤ k − 1) ≤ (1 − level) / 2, and the interval's exact coverage
/// 1 − 2·P(U ≤ k − 1) (≥ `level`). `None` when even the widest interval,
/// from the smallest to the largest difference, falls short of `level`:
/// these run counts are too few.
pub fn interval_rank(n1: usize, n2: usize, level: f64) -> Option<(usize, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let tail = (1.0 - level) / 2.0;
    let total = arrangements(n1, n2);
    let counts = u_counts(n1, n2);
    let mut below = 0.0; // P(U ≤ k − 1) for the k being tried
    let mut best = None;
    // U is symmetric about n1·n2/2, so k never passes the middle.
    for (k, count) in counts.iter().enumerate().take(n1 * n2 / 2 + 1) {
        let next = below + count / total;
        if k >= 1 && below <= tail + ROUNDING {
            best = Some((k, 1.0 - 2.0 * below));
        }
        if next > tail + ROUNDING {
            break;
        }
        below = next;
    }
    best
}

/// The fewest runs per side (equal sides) for which an interval at `level`
/// exists: the smallest n with 2 / C(2n, n) ≤ 1 − level.
pub fn min_runs(level: f64) -> usize {
    (1..)
        .find(|&n| 2.0 / arrangements(n, n) <= 1.0 - level + ROUNDING)
        .unwrap_or(usize::MAX)
}

/// The level of each interval of a family of `members` so that the chance
/// that any of them misses is at most `alpha` (Bonferroni).
pub fn family_level(alpha: f64, members: usize) -> f64 {
    1.0 - alpha / members.max(1) as f64
}

/// The shift of B against A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Hodges-Lehmann estimate: the median of the n1·n2 differences b − a.
    pub estimate: f64,
    /// The distribution-free interval `[D(k), D(N+1−k)]` of the sorted
    /// differences (Moses); `None` when the run counts are too few for
    /// `level`.
    pub interval: Option<(f64, f64)>,
    /// The interval's exact coverage without ties (ties only widen it).
    pub coverage: Option<f64>,
}

/// Hodges-Lehmann shift of B against A with its interval at `level`,
/// inverting the Mann-Whitney test: the shifts Δ that the test at 1 − level
/// would not reject for A against B − Δ. `None` when a side is empty or a
/// value is not finite.
pub fn shift(a: &[f64], b: &[f64], level: f64) -> Option<Shift> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|x| !x.is_finite()) {
        return None;
    }
    let mut d: Vec<f64> = b
        .iter()
        .flat_map(|y| a.iter().map(move |x| y - x))
        .collect();
    d.sort_by(f64::total_cmp);
    let rank = interval_rank(a.len(), b.len(), level);
    Some(Shift {
        estimate: median_of_sorted(&d),
        interval: rank.map(|(k, _)| (d[k - 1], d[d.len() - k])),
        coverage: rank.map(|(_, c)| c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn u_distribution_matches_the_tables() {
        // n1 = n2 = 4 (Mann & Whitney 1947, table I): 70 arrangements.
        assert_eq!(
            u_counts(4, 4),
            [1, 1, 2, 3, 5, 5, 7, 7, 8, 7, 7, 5, 5, 3, 2, 1, 1].map(f64::from)
        );
        // 3 and 5, either way round: 56 arrangements, symmetric.
        let c = u_counts(3, 5);
        assert_eq!(c, u_counts(5, 3));
        assert_eq!(c.len(), 16);
        assert_eq!(c.iter().sum::<f64>(), 56.0);
        assert!(c.iter().eq(c.iter().rev()));
        assert_eq!(&c[..5], &[1.0, 1.0, 2.0, 3.0, 4.0]);
        // 6 and 6: P(U ≤ 5) = 19/924, P(U ≤ 6) = 30/924.
        let c = u_counts(6, 6);
        assert_eq!(c[..=6].iter().sum::<f64>(), 30.0);
        assert_eq!(c.iter().sum::<f64>(), 924.0);
        // Large sides: exact totals and symmetry still hold.
        let c = u_counts(20, 25);
        assert!(close(c.iter().sum::<f64>(), arrangements(20, 25), 1.0));
        assert!(close(arrangements(20, 25), 3_169_870_830_126.0, 0.5));
        assert_eq!(c[3], 3.0);
        assert_eq!(u_counts(1, 1), [1.0, 1.0]);
    }

    #[test]
    fn interval_rank_reaches_the_level_exactly() {
        // 6 and 6 at 95 %: P(U ≤ 5) = 19/924 ≤ 0.025 < 30/924, so k = 6
        // and the coverage is 1 − 38/924.
        let (k, cov) = interval_rank(6, 6, 0.95).expect("6 a side reach 95 %");
        assert_eq!(k, 6);
        assert!(close(cov, 1.0 - 38.0 / 924.0, 1e-12));
        // 3 and 3: the widest interval covers 1 − 2/20 = 90 % only.
        assert_eq!(interval_rank(3, 3, 0.95), None);
        assert_eq!(interval_rank(3, 3, 0.90).map(|r| r.0), Some(1));
        // 4 and 4: full separation is 2/70 = 2.9 %.
        assert_eq!(interval_rank(4, 4, 0.95).map(|r| r.0), Some(1));
        assert_eq!(interval_rank(1, 30, 0.95), None);
        assert_eq!(interval_rank(0, 5, 0.5), None);
    }

    #[test]
    fn runs_needed_for_a_gated_family() {
        // 2/C(2n, n) ≤ 0.05: 4 a side (2/70), not 3 (2/20).
        assert_eq!(min_runs(0.95), 4);
        // 15 gated metrics at 5 % family-wise: 0.05/15 = 0.0033; 2/924 is
        // below it, 2/252 is not.
        let level = family_level(0.05, 15);
        assert!(close(level, 1.0 - 0.05 / 15.0, 1e-15));
        assert_eq!(min_runs(level), 6);
        // Up to 23 metrics stay at 6; 24 need 7 (2/3432).
        assert_eq!(min_runs(family_level(0.05, 23)), 6);
        assert_eq!(min_runs(family_level(0.05, 24)), 7);
        assert_eq!(min_runs(family_level(0.05, 1)), 4);
        assert_eq!(family_level(0.05, 0), 0.95);
    }

    #[test]
    fn hodges_lehmann_and_its_interval() {
        // Differences b − a of {1,2,3} and {11,13}: 10,9,8,12,11,10 →
        // median 10. 3 and 2 reach 80 % at most (2/10 = 0.2).
        let s = shift(&[1.0, 2.0, 3.0], &[11.0, 13.0], 0.8).expect("shift");
        assert_eq!(s.estimate, 10.0);
        assert_eq!(s.interval, Some((8.0, 12.0)));
        assert!(close(s.coverage.expect("coverage"), 0.8, 1e-12));
        assert_eq!(
            shift(&[1.0, 2.0, 3.0], &[11.0, 13.0], 0.95).map(|s| s.interval),
            Some(None)
        );
        // A known shift of +5 with the same spread: 36 differences, k = 6.
        let a = [10.0, 11.0, 12.5, 13.0, 14.2, 15.1];
        let b = a.map(|x| x + 5.0);
        let s = shift(&a, &b, 0.95).expect("shift");
        assert_eq!(s.estimate, 5.0);
        let (lo, hi) = s.interval.expect("interval");
        assert!(lo < 5.0 && 5.0 < hi && lo > 0.0, "[{lo}, {hi}]");
        // The sorted differences' 6th and 31st: computed by hand.
        let mut d: Vec<f64> = b
            .iter()
            .flat_map(|y| a.iter().map(move |x| y - x))
            .collect();
        d.sort_by(f64::total_cmp);
        assert_eq!((lo, hi), (d[5], d[30]));
        // Identical values on both sides: a zero shift, a zero interval.
        let s = shift(&[4.0; 6], &[4.0; 6], 0.95).expect("shift");
        assert_eq!((s.estimate, s.interval), (0.0, Some((0.0, 0.0))));
        assert!(shift(&[], &[1.0], 0.95).is_none());
        assert!(shift(&[f64::NAN], &[1.0], 0.95).is_none());
    }

    /// The interval's coverage, checked by brute force: every split of 8
    /// distinct values into 4 and 4 is equally likely under no shift, and
    /// the interval at 95 % (k = 1: full separation) must miss 0 in exactly
    /// 2 of the 70.
    #[test]
    fn interval_misses_a_zero_shift_as_often_as_it_says() {
        let values: Vec<f64> = (0..8).map(|i| (i * i) as f64 + 0.5 * i as f64).collect();
        let mut misses = 0;
        let mut splits = 0;
        for mask in 0u32..256 {
            if mask.count_ones() != 4 {
                continue;
            }
            splits += 1;
            let side = |in_a: bool| -> Vec<f64> {
                (0..values.len())
                    .filter(|i| (mask & (1 << i) != 0) == in_a)
                    .map(|i| values[i])
                    .collect()
            };
            let (a, b) = (side(true), side(false));
            let (lo, hi) = shift(&a, &b, 0.95)
                .and_then(|s| s.interval)
                .expect("interval");
            if lo > 0.0 || hi < 0.0 {
                misses += 1;
            }
        }
        assert_eq!((splits, misses), (70, 2));
    }
}
