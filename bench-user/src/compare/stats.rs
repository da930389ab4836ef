//! stats: the statistics `compare` uses, as pure functions.
//!
//! Benchmark numbers are rarely normal and repeats are few, so everything
//! here is distribution-free: medians, a percentile bootstrap of the
//! relative difference of medians, and the Mann-Whitney U test.

use rand::{rngs::StdRng, RngExt, SeedableRng};

/// Median of the values; `None` when there are none. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `(b - a) / |a|`: the change from A to B as a fraction of A. `None` when
/// A is 0 (no relative scale).
pub fn relative_difference(a: f64, b: f64) -> Option<f64> {
    (a != 0.0 && a.is_finite() && b.is_finite()).then(|| (b - a) / a.abs())
}

/// Percentile bootstrap confidence interval of the relative difference of
/// medians: each side resampled with replacement `resamples` times. The
/// seed makes the interval reproducible run to run. `None` when a side is
/// empty or A's resampled median is 0 too often to say anything.
pub fn bootstrap_ci(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf_a = vec![0.0; a.len()];
    let mut buf_b = vec![0.0; b.len()];
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in buf_a.iter_mut() {
            *x = a[rng.random_range(0..a.len())];
        }
        for x in buf_b.iter_mut() {
            *x = b[rng.random_range(0..b.len())];
        }
        let (ma, mb) = (median(&buf_a)?, median(&buf_b)?);
        if let Some(d) = relative_difference(ma, mb) {
            diffs.push(d);
        }
    }
    // A's median at 0 in more than a few resamples leaves no usable scale.
    if diffs.len() < resamples * 9 / 10 {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some((percentile(&diffs, tail), percentile(&diffs, 1.0 - tail)))
}

/// Linear-interpolated percentile `q` (0..=1) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// How a Mann-Whitney p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PMethod {
    /// The exact null distribution of U (small samples without ties).
    Exact,
    /// Normal approximation with tie and continuity correction.
    Normal,
}

/// Result of a two-sided Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of sample A: pairs (a, b) with a > b, ties counting one half.
    pub u: f64,
    pub p: f64,
    pub method: PMethod,
}

/// Up to this many values in all, without ties, the exact distribution is
/// cheap and better than the normal approximation.
const EXACT_MAX_N: usize = 40;

/// Two-sided Mann-Whitney U test of A against B. `None` when a side is
/// empty or every value is the same (no ranking to test).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    // Average ranks over ties; Σ(t³ - t) feeds the variance correction.
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += rank * all[i..=j].iter().filter(|x| x.1 == 0).count() as f64;
        i = j + 1;
    }
    let (f1, f2, fnn) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_a - f1 * (f1 + 1.0) / 2.0;
    if tie_term == 0.0 && n <= EXACT_MAX_N {
        return Some(MannWhitney {
            u,
            p: exact_p(u.round() as usize, n1, n2),
            method: PMethod::Exact,
        });
    }
    let variance = f1 * f2 / 12.0 * ((fnn + 1.0) - tie_term / (fnn * (fnn - 1.0)));
    if variance <= 0.0 {
        return None;
    }
    let mean = f1 * f2 / 2.0;
    let dev = ((u - mean).abs() - 0.5).max(0.0);
    let z = dev / variance.sqrt();
    Some(MannWhitney {
        u,
        p: (2.0 * normal_sf(z)).min(1.0),
        method: PMethod::Normal,
    })
}

/// Two-sided exact p-value of U = `u` for sample sizes n1, n2: the number
/// of arrangements with U at least as extreme, over all C(n1+n2, n1).
fn exact_p(u: usize, n1: usize, n2: usize) -> f64 {
    let counts = u_distribution(n1, n2);
    let total: f64 = counts.iter().sum();
    let lower: f64 = counts[..=u.min(counts.len() - 1)].iter().sum();
    let upper: f64 = counts[u.min(counts.len() - 1)..].iter().sum();
    (2.0 * lower.min(upper) / total).min(1.0)
}

/// Number of arrangements giving each U = 0..=n1·n2, by the recurrence
/// f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u) (the largest value is from
/// A, adding n to U, or from B, adding nothing).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    let max = n1 * n2;
    // table[m][n] built row by row in m, as vectors over u.
    let mut prev: Vec<Vec<f64>> = (0..=n2).map(|_| one_at_zero(max)).collect();
    for _ in 1..=n1 {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n2 + 1);
        cur.push(one_at_zero(max));
        for n in 1..=n2 {
            let mut v = vec![0.0; max + 1];
            for (u, slot) in v.iter_mut().enumerate() {
                let from_a = if u >= n { prev[n][u - n] } else { 0.0 };
                *slot = from_a + cur[n - 1][u];
            }
            cur.push(v);
        }
        prev = cur;
    }
    prev.swap_remove(n2)
}

fn one_at_zero(max: usize) -> Vec<f64> {
    let mut v = vec![0.0; max + 1];
    v[0] = 1.0;
    v
}

/// P(Z > z) for a standard normal Z.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, Chebyshev fit with fractional error below
/// 1.2e-7 everywhere: ample for a p-value.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
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
    fn relative_difference_is_against_a() {
        assert_eq!(relative_difference(100.0, 90.0), Some(-0.1));
        assert_eq!(relative_difference(-2.0, -1.0), Some(0.5));
        assert_eq!(relative_difference(0.0, 1.0), None);
    }

    #[test]
    fn normal_tail_matches_tables() {
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(1.959_964), 0.025, 1e-6));
        assert!(close(normal_sf(-1.0), 0.841_344_7, 1e-6));
    }

    #[test]
    fn mann_whitney_exact_on_separated_samples() {
        // Complete separation, 5 and 5: 2 of C(10,5) = 252 arrangements are
        // as extreme, p = 2/252.
        let r =
            mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).expect("test");
        assert_eq!(r.method, PMethod::Exact);
        assert_eq!(r.u, 0.0);
        assert!(close(r.p, 2.0 / 252.0, 1e-12));
        // 3 and 3 can never reach 5 %: 2/20.
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).expect("test");
        assert!(close(r.p, 0.1, 1e-12));
    }

    #[test]
    fn mann_whitney_exact_textbook_value() {
        // U = 2 for n1 = n2 = 4: the tables' P(U <= 2) = 4/70 = 0.0571,
        // two-sided 8/70.
        let r = mann_whitney(&[1.0, 2.0, 5.0, 6.0], &[3.0, 7.0, 8.0, 9.0]).expect("test");
        assert_eq!(r.u, 2.0);
        assert!(close(r.p, 8.0 / 70.0, 1e-12), "p = {}", r.p);
    }

    #[test]
    fn mann_whitney_normal_with_ties() {
        // Worked by hand: ranks of A = {1.5, 3.5, 5.5, 7.5, 9} → R = 27,
        // U = 12; Σ(t³-t) = 24; σ² = 25/12·(11 - 24/90) = 22.3611;
        // z = (12.5 - 12 - 0.5)/σ = 0 → p = 1.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [1.0, 2.0, 3.0, 4.0, 6.0];
        let r = mann_whitney(&a, &b).expect("test");
        assert_eq!(r.method, PMethod::Normal);
        assert_eq!(r.u, 12.0);
        assert!(close(r.p, 1.0, 1e-9));
        // Separated with ties: U = 0, z = (12.5 - 0.5)/σ, σ² = 25/12·(11 - 12/90).
        let r = mann_whitney(&[1.0, 1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0, 8.0]).expect("test");
        let sigma = (25.0f64 / 12.0 * (11.0 - 12.0 / 90.0)).sqrt();
        let expected = 2.0 * normal_sf(12.0 / sigma);
        assert!(close(r.p, expected, 1e-12));
        assert!(close(r.p, 0.011_67, 1e-4), "p = {}", r.p);
    }

    #[test]
    fn mann_whitney_of_identical_values_is_untestable() {
        assert!(mann_whitney(&[1.0, 1.0], &[1.0, 1.0]).is_none());
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }

    #[test]
    fn bootstrap_covers_a_known_shift_and_is_reproducible() {
        // B is A scaled by 0.8: a 20 % drop, with the same spread.
        let a: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let b: Vec<f64> = a.iter().map(|x| x * 0.8).collect();
        let (lo, hi) = bootstrap_ci(&a, &b, 2000, 0.95, 7).expect("ci");
        assert!(lo <= -0.2 && -0.2 <= hi, "[{lo}, {hi}]");
        assert!(hi < 0.0, "excludes 0: [{lo}, {hi}]");
        assert_eq!(bootstrap_ci(&a, &b, 2000, 0.95, 7), Some((lo, hi)));
        // No shift: the interval contains 0.
        let (lo, hi) = bootstrap_ci(&a, &a, 2000, 0.95, 7).expect("ci");
        assert!(lo <= 0.0 && 0.0 <= hi);
        assert!(bootstrap_ci(&[], &a, 2000, 0.95, 7).is_none());
        assert!(bootstrap_ci(&[0.0, 0.0], &a, 2000, 0.95, 7).is_none());
    }
}
