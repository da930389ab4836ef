//! The exact (Clopper–Pearson) interval of a binomial share.

use statrs::distribution::{Beta, ContinuousCDF};

/// The `confidence` interval (e.g. 0.95) of `k` successes in `n` trials;
/// `None` for `n == 0`.
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> Option<(f64, f64)> {
    if n == 0 || k > n {
        return None;
    }
    interval(k as f64, n as f64, confidence)
}

/// The interval of a share whose trials come in runs: successive trials of
/// a stationary two-state chain with lag-1 correlation `rho` (bursty loss)
/// vary like n·(1−ρ)/(1+ρ) independent ones, so the exact interval of
/// those effective counts. `rho = 0` gives [`clopper_pearson`].
pub fn clopper_pearson_correlated(k: u64, n: u64, rho: f64, confidence: f64) -> Option<(f64, f64)> {
    if n == 0 || k > n || !(0.0..1.0).contains(&rho) {
        return None;
    }
    let scale = (1.0 - rho) / (1.0 + rho);
    interval(k as f64 * scale, n as f64 * scale, confidence)
}

fn interval(k: f64, n: f64, confidence: f64) -> Option<(f64, f64)> {
    let alpha = 1.0 - confidence;
    let low = if k == 0.0 {
        0.0
    } else {
        Beta::new(k, n - k + 1.0).ok()?.inverse_cdf(alpha / 2.0)
    };
    let high = if k == n {
        1.0
    } else {
        Beta::new(k + 1.0, n - k)
            .ok()?
            .inverse_cdf(1.0 - alpha / 2.0)
    };
    Some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_intervals() {
        // 10 of 100 at 95 %: 0.0490 to 0.1762 (published tables).
        let (lo, hi) = clopper_pearson(10, 100, 0.95).expect("interval");
        assert!((lo - 0.0490).abs() < 5e-4, "{lo}");
        assert!((hi - 0.1762).abs() < 5e-4, "{hi}");
        // 0 of 100: upper bound 1 - 0.025^(1/100) = 0.0362.
        let (lo, hi) = clopper_pearson(0, 100, 0.95).expect("interval");
        assert_eq!(lo, 0.0);
        assert!((hi - 0.0362).abs() < 5e-4, "{hi}");
        assert_eq!(clopper_pearson(0, 0, 0.95), None);
    }

    #[test]
    fn correlated_trials_widen_the_interval_by_their_effective_count() {
        assert_eq!(
            clopper_pearson_correlated(10, 100, 0.0, 0.95),
            clopper_pearson(10, 100, 0.95)
        );
        // rho = 0.6: 400 trials count as 100, 40 successes as 10.
        let (lo, hi) = clopper_pearson_correlated(40, 400, 0.6, 0.95).expect("interval");
        assert!((lo - 0.0490).abs() < 5e-4, "{lo}");
        assert!((hi - 0.1762).abs() < 5e-4, "{hi}");
        assert_eq!(clopper_pearson_correlated(1, 10, 1.0, 0.95), None);
    }
}
