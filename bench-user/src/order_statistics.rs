//! Distribution-free bounds of a quantile from order statistics.
//!
//! Of n independent samples, the number B that fall below the true
//! q-quantile is Binomial(n, q). The s-th smallest sample X(s) lies at or
//! above the quantile whenever B < s, so X(s) is a one-sided 95 % upper
//! bound when P(B ≤ s − 1) ≥ 0.95, whatever the distribution; likewise X(r)
//! is a lower bound when P(B ≥ r) ≥ 0.95. A percentile is reported only
//! when its upper bound exists at the sample count (p99 needs 299
//! samples): below that, the largest sample is not yet a bound on it.

/// Confidence of each one-sided bound.
pub const LEVEL: f64 = 0.95;

/// The quantiles a latency summary reports.
pub const REPORTED: [f64; 4] = [0.50, 0.90, 0.99, 0.999];

/// 1-based ranks of the order statistics that bound a quantile: each a
/// one-sided [`LEVEL`] bound, together a 90 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantileRanks {
    /// Absent when even the smallest sample is not a lower bound at this
    /// sample count.
    pub lower: Option<u64>,
    pub upper: u64,
}

/// The ranks bounding the q-quantile of `n` samples, or `None` when no
/// order statistic is a [`LEVEL`] upper bound (too few samples).
pub fn quantile_ranks(n: u64, q: f64) -> Option<QuantileRanks> {
    if n == 0 || !(0.0..1.0).contains(&q) || q == 0.0 {
        return None;
    }
    let cdf = binomial_cdf(n, q);
    // cdf[k] = P(B ≤ k); X(s) is an upper bound when P(B ≤ s-1) ≥ LEVEL.
    let upper = (1..=n).find(|&s| cdf[(s - 1) as usize] >= LEVEL)?;
    let lower = (1..=n)
        .take_while(|&r| cdf[(r - 1) as usize] <= 1.0 - LEVEL)
        .last();
    Some(QuantileRanks { lower, upper })
}

/// The smallest sample count at which the q-quantile has an upper bound:
/// the largest sample bounds it with probability 1 − qⁿ.
pub fn samples_needed(q: f64) -> u64 {
    if !(0.0..1.0).contains(&q) {
        return u64::MAX;
    }
    // Small q: a single sample already bounds it.
    let n = ((1.0 - LEVEL).ln() / q.ln()).ceil().max(1.0) as u64;
    // Guard the rounding of the closed form against the exact condition.
    if 1.0 - q.powf(n as f64) < LEVEL {
        n + 1
    } else {
        n
    }
}

/// P(B ≤ k) for k = 0..=n, B ~ Binomial(n, q), summed from the exact
/// probabilities computed in logs (no approximation, no underflow trouble
/// for the n of a run).
fn binomial_cdf(n: u64, q: f64) -> Vec<f64> {
    let (lq, lp) = (q.ln(), (1.0 - q).ln());
    let mut ln_choose = 0.0_f64;
    let mut acc = 0.0_f64;
    let mut out = Vec::with_capacity(n as usize + 1);
    for k in 0..=n {
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        acc += (ln_choose + k as f64 * lq + (n - k) as f64 * lp).exp();
        out.push(acc.min(1.0));
    }
    out
}

/// A quantile of a sample with its bounds, or none when there are too few
/// samples for them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantileEstimate {
    pub q: f64,
    pub samples: u64,
    /// Absent below [`samples_needed`].
    pub bounds: Option<Bounds>,
}

/// The sample quantile and the order statistics bounding the true one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    pub value: f64,
    pub lower: Option<f64>,
    pub upper: f64,
}

/// The q-quantile of `n` samples, whose r-th smallest (1-based) is
/// `at_rank(r)`.
pub fn estimate(q: f64, n: u64, at_rank: impl Fn(u64) -> f64) -> QuantileEstimate {
    let bounds = quantile_ranks(n, q).map(|r| Bounds {
        // The sample quantile: the ⌈qn⌉-th smallest.
        value: at_rank(((q * n as f64).ceil() as u64).clamp(1, n)),
        lower: r.lower.map(&at_rank),
        upper: at_rank(r.upper),
    });
    QuantileEstimate {
        q,
        samples: n,
        bounds,
    }
}

/// The label of a quantile in tables and metric names: 0.5 → "p50",
/// 0.999 → "p999".
pub fn label(q: f64) -> String {
    let digits = format!("{}", q).trim_start_matches("0.").to_string();
    if digits.len() == 1 {
        format!("p{digits}0")
    } else {
        format!("p{digits}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected ranks computed independently with exact rational arithmetic
    // (sum of C(n,k) qᵏ (1−q)ⁿ⁻ᵏ as fractions).
    #[test]
    fn ranks_at_100_300_1000_samples() {
        let r = |lower, upper| Some(QuantileRanks { lower, upper });
        assert_eq!(quantile_ranks(100, 0.5), r(Some(42), 59));
        assert_eq!(quantile_ranks(100, 0.9), r(Some(85), 96));
        assert_eq!(quantile_ranks(100, 0.99), None);
        assert_eq!(quantile_ranks(300, 0.5), r(Some(136), 165));
        assert_eq!(quantile_ranks(300, 0.9), r(Some(261), 279));
        assert_eq!(quantile_ranks(300, 0.99), r(Some(294), 300));
        assert_eq!(quantile_ranks(1000, 0.5), r(Some(474), 527));
        assert_eq!(quantile_ranks(1000, 0.9), r(Some(884), 916));
        assert_eq!(quantile_ranks(1000, 0.99), r(Some(985), 996));
    }

    #[test]
    fn too_few_samples_below_the_bound() {
        assert_eq!(samples_needed(0.5), 5);
        assert_eq!(samples_needed(0.9), 29);
        assert_eq!(samples_needed(0.99), 299);
        assert_eq!(samples_needed(0.999), 2995);
        for q in REPORTED {
            let n = samples_needed(q);
            assert_eq!(quantile_ranks(n - 1, q), None, "q {q} n {}", n - 1);
            assert_eq!(quantile_ranks(n, q).map(|r| r.upper), Some(n), "q {q}");
        }
        // Four connections: not even a median.
        assert_eq!(quantile_ranks(4, 0.5), None);
        assert_eq!(quantile_ranks(0, 0.5), None);
    }

    #[test]
    fn estimates_read_the_ranked_samples() {
        let e = estimate(0.9, 100, |r| r as f64);
        assert_eq!(
            e.bounds,
            Some(Bounds {
                value: 90.0,
                lower: Some(85.0),
                upper: 96.0
            })
        );
        assert_eq!(estimate(0.99, 100, |r| r as f64).bounds, None);
    }

    #[test]
    fn labels() {
        let l: Vec<_> = REPORTED.iter().map(|&q| label(q)).collect();
        assert_eq!(l, ["p50", "p90", "p99", "p999"]);
    }
}
