//! verdict: what a comparison concludes about one metric, from its values on
//! both sides, its catalogue definition (direction, smallest meaningful
//! change) and, for a gated metric, its gate.
//!
//! A metric is better or worse only when the whole distribution-free
//! interval of its change lies beyond its smallest meaningful change; a gate
//! fails only when the interval lies wholly beyond the gate's allowed
//! regression. Gated metrics form the primary family: a gate asks a
//! one-sided question (did it regress beyond?), so each gated interval is
//! two-sided at 1 − 2·0.05/m, leaving 0.05/m in the tail a gate reads, and
//! an unchanged build fails any of the m gates in at most 5 % of
//! comparisons (Bonferroni). Every other metric is exploratory, at 95 % on
//! its own.

use serde::{Deserialize, Serialize};

use super::{stats, Gate};
use crate::analyze::metrics::{Better, Effect, MetricDef};

/// The error rate of every judgement: per exploratory metric, and for the
/// gated family as a whole.
pub const ALPHA: f64 = 0.05;

/// The level of an exploratory metric's interval.
pub const EXPLORATORY_LEVEL: f64 = 1.0 - ALPHA;

/// Whether a metric's verdict is a decision (gated) or a lead (exploratory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Has a gate: its interval is at the family's adjusted level.
    Gated,
    /// No gate: a 95 % interval of its own, never gated; among many such
    /// metrics some are called by chance.
    Exploratory,
}

/// On which scale a change is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// B / A − 1, from the Hodges-Lehmann shift of the logarithms: for a
    /// metric whose smallest change is relative and whose values are all
    /// positive. A ratio is what a relative threshold speaks of, and run to
    /// run noise of such metrics scales with their size.
    Ratio,
    /// B − A in the metric's unit: absolute thresholds, and relative ones
    /// when a value is zero (no logarithm; the threshold is then taken
    /// relative to A's median).
    Difference,
}

/// What a comparison concluded about one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The whole interval lies beyond the smallest meaningful change, the
    /// good way.
    Better,
    /// The whole interval lies beyond the smallest meaningful change, the
    /// bad way.
    Worse,
    /// The whole interval lies within the smallest meaningful change.
    NoMeaningfulChange,
    /// The interval reaches past the smallest meaningful change but not
    /// wholly: more runs would tell.
    Inconclusive,
    /// No interval at the metric's level exists at these run counts.
    TooFewRuns {
        /// Runs per side that would give one.
        needed: usize,
    },
    /// Why it could not be judged.
    NotTested(String),
}

impl Change {
    pub fn label(&self) -> String {
        match self {
            Change::Better => "better".into(),
            Change::Worse => "worse".into(),
            Change::NoMeaningfulChange => "no meaningful change".into(),
            Change::Inconclusive => "inconclusive".into(),
            Change::TooFewRuns { needed } => format!("too few runs ({needed} a side needed)"),
            Change::NotTested(why) => format!("not tested ({why})"),
        }
    }

    /// Better or worse.
    pub fn is_called(&self) -> bool {
        matches!(self, Change::Better | Change::Worse)
    }
}

/// One metric's change, estimated and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub scale: Scale,
    /// Hodges-Lehmann estimate, on `scale`.
    pub estimate: Option<f64>,
    /// Distribution-free interval at the level asked, on `scale`.
    pub interval: Option<(f64, f64)>,
    /// Its exact coverage.
    pub coverage: Option<f64>,
    /// The smallest meaningful change on `scale` (0 for a CPU share, which
    /// is judged through its per-byte cost).
    pub min_effect: f64,
    pub change: Change,
}

/// Estimate B's change against A and judge it at `level`. `median_a` is
/// A's median (the yardstick of a relative threshold on the difference
/// scale).
pub fn judge(def: &MetricDef, a: &[f64], b: &[f64], median_a: f64, level: f64) -> Judgement {
    let positive = a.iter().chain(b).all(|&x| x > 0.0 && x.is_finite());
    let (scale, min_effect) = match def.min_effect {
        Effect::Relative(e) if positive => (Scale::Ratio, e),
        Effect::Relative(e) => (Scale::Difference, e * median_a.abs()),
        Effect::Absolute(e) => (Scale::Difference, e),
        Effect::CpuShare => (Scale::Difference, 0.0),
    };
    let shift = match scale {
        Scale::Ratio => {
            let ln = |v: &[f64]| v.iter().map(|x| x.ln()).collect::<Vec<f64>>();
            stats::shift(&ln(a), &ln(b), level).map(|s| stats::Shift {
                estimate: s.estimate.exp_m1(),
                interval: s.interval.map(|(lo, hi)| (lo.exp_m1(), hi.exp_m1())),
                coverage: s.coverage,
            })
        }
        Scale::Difference => stats::shift(a, b, level),
    };
    let interval = shift.and_then(|s| s.interval);
    let change = match (shift, interval) {
        (None, _) => Change::NotTested("a value is not finite".into()),
        (Some(_), None) => Change::TooFewRuns {
            needed: stats::min_runs(level),
        },
        (Some(_), Some((lo, hi))) => {
            if lo > min_effect || hi < -min_effect {
                let up = lo > min_effect;
                if up == (def.better == Better::Higher) {
                    Change::Better
                } else {
                    Change::Worse
                }
            } else if lo >= -min_effect && hi <= min_effect {
                Change::NoMeaningfulChange
            } else {
                Change::Inconclusive
            }
        }
    };
    Judgement {
        scale,
        estimate: shift.map(|s| s.estimate),
        interval,
        coverage: shift.and_then(|s| s.coverage),
        min_effect,
        change,
    }
}

/// Whether the gate fails: the whole interval lies beyond the allowed
/// regression, in the direction the catalogue calls worse. On the
/// difference scale the allowed regression is a fraction of A's median, so
/// any growth from zero is beyond every gate.
pub fn gate_fails(def: &MetricDef, j: &Judgement, gate: &Gate, median_a: f64) -> bool {
    let Some((lo, hi)) = j.interval else {
        return false;
    };
    let limit = match j.scale {
        Scale::Ratio => gate.max_regression,
        Scale::Difference => gate.max_regression * median_a.abs(),
    };
    match def.better {
        Better::Lower => lo > limit,
        Better::Higher => hi < -limit,
    }
}

/// The level of each gated metric's two-sided interval, for a family of
/// `gated`: each tail holds ALPHA/gated, and a gate reads only one tail.
pub fn gated_level(gated: usize) -> f64 {
    stats::family_level(2.0 * ALPHA, gated)
}

/// Runs per side for which every interval of a comparison with `gated`
/// gated metrics exists (at least the exploratory ones').
pub fn runs_needed(gated: usize) -> usize {
    stats::min_runs(gated_level(gated)).max(stats::min_runs(EXPLORATORY_LEVEL))
}

/// The category whose `cost.<category>.ns_per_byte` judges a CPU share:
/// `copy_share` → `copy`, `cost.alloc.share` → `alloc`.
pub fn share_category(name: &str) -> Option<&str> {
    name.strip_prefix("cost.")
        .and_then(|r| r.strip_suffix(".share"))
        .or_else(|| name.strip_suffix("_share"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::metrics;

    fn def(name: &str) -> MetricDef {
        metrics::lookup(name)
            .or_else(|| metrics::workload_def(&format!("p0.{name}")))
            .expect("in the catalogue")
    }

    const A: [f64; 6] = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2];

    fn judge6(name: &str, a: &[f64], b: &[f64]) -> Judgement {
        let m = stats::median(a).expect("values");
        judge(&def(name), a, b, m, EXPLORATORY_LEVEL)
    }

    #[test]
    fn a_tiny_consistent_shift_is_no_meaningful_change() {
        // The A/A finding: bytes_per_read −0.0 % with an interval of
        // [−0.1 %, −0.0 %] was called worse. A consistent 0.05 % drop is far
        // inside the 5 % that matters.
        let a = [65_000.0, 65_010.0, 65_020.0, 65_030.0, 65_040.0, 65_050.0];
        let b = a.map(|x| x * 0.9995);
        let j = judge6("bytes_per_read", &a, &b);
        assert_eq!(j.scale, Scale::Ratio);
        let (lo, hi) = j.interval.expect("interval");
        assert!(hi < 0.0 && lo > -0.002, "[{lo}, {hi}]");
        assert_eq!(j.change, Change::NoMeaningfulChange);
        // With 3 runs a side (the finding's) there is no 95 % interval at
        // all: too few runs, not a verdict.
        let j = judge6("bytes_per_read", &a[..3], &b[..3]);
        assert_eq!(j.change, Change::TooFewRuns { needed: 4 });
        assert_eq!(j.interval, None);
    }

    #[test]
    fn beyond_the_smallest_change_is_called_across_it_inconclusive() {
        let a = A;
        // Throughput 20 % down: worse; 20 % up: better.
        assert_eq!(
            judge6("throughput_bps", &a, &a.map(|x| x * 0.8)).change,
            Change::Worse
        );
        assert_eq!(
            judge6("throughput_bps", &a, &a.map(|x| x * 1.2)).change,
            Change::Better
        );
        // Lower is better for CPU per byte: 20 % up is worse.
        assert_eq!(
            judge6("cpu_ns_per_byte", &a, &a.map(|x| x * 1.2)).change,
            Change::Worse
        );
        // 2 % up with 1 % noise: the interval straddles the 2 % threshold.
        let j = judge6("throughput_bps", &a, &a.map(|x| x * 1.02));
        let (lo, hi) = j.interval.expect("interval");
        assert!(lo < 0.02 && hi > 0.02, "[{lo}, {hi}]");
        assert_eq!(j.change, Change::Inconclusive);
        // Estimate on the ratio scale: exactly the 1.2 factor.
        let j = judge6("throughput_bps", &a, &a.map(|x| x * 1.2));
        assert!((j.estimate.expect("estimate") - 0.2).abs() < 1e-12);
    }

    #[test]
    fn absolute_thresholds_and_growth_from_zero() {
        // upstream_connections: a count, resolution 1. 4 → 4 is no change;
        // 4 → 8 is worse.
        let four = [4.0; 6];
        let j = judge6("upstream_connections", &four, &four);
        assert_eq!((j.scale, j.min_effect), (Scale::Difference, 1.0));
        assert_eq!(j.change, Change::NoMeaningfulChange);
        assert_eq!(
            judge6("upstream_connections", &four, &[8.0; 6]).change,
            Change::Worse
        );
        // Allocations from zero: no logarithm, any growth is beyond 5 % of 0.
        let zero = [0.0; 6];
        let grown = [28.0, 29.5, 30.0, 31.0, 29.0, 30.5];
        let j = judge6("allocs_per_mib", &zero, &grown);
        assert_eq!((j.scale, j.min_effect), (Scale::Difference, 0.0));
        assert_eq!(j.change, Change::Worse);
        let gate = Gate {
            metric: "*.allocs_per_mib".into(),
            max_regression: 0.10,
        };
        assert!(gate_fails(&def("allocs_per_mib"), &j, &gate, 0.0));
        let j = judge6("allocs_per_mib", &grown, &zero);
        assert_eq!(j.change, Change::Better);
        assert!(!gate_fails(&def("allocs_per_mib"), &j, &gate, 30.0));
        assert_eq!(
            judge6("allocs_per_mib", &zero, &zero).change,
            Change::NoMeaningfulChange
        );
    }

    #[test]
    fn a_gate_fails_only_wholly_beyond_its_regression() {
        let gate = Gate {
            metric: "throughput_bps".into(),
            max_regression: 0.05,
        };
        let d = def("throughput_bps");
        // Six runs a side, judged at tcp's gated level (15 gates).
        let gated = |b: &[f64]| judge(&d, &A, b, 100.0, gated_level(15));
        let j = gated(&A.map(|x| x * 0.8));
        assert_eq!(j.change, Change::Worse);
        assert!(gate_fails(&d, &j, &gate, 100.0));
        // 5 % down with 1 % noise: worse, but the interval (the second
        // smallest and largest of the 36 differences) reaches above −5 %,
        // so the gate holds.
        let j = gated(&A.map(|x| x * 0.95));
        assert_eq!(j.change, Change::Worse);
        let (lo, hi) = j.interval.expect("interval");
        assert!(lo < -0.06 && hi > -0.04 && hi < -0.03, "[{lo}, {hi}]");
        assert!(!gate_fails(&d, &j, &gate, 100.0));
        // Better never fails a gate.
        let j = gated(&A.map(|x| x * 1.5));
        assert_eq!(j.change, Change::Better);
        assert!(!gate_fails(&d, &j, &gate, 100.0));
    }

    #[test]
    fn family_runs() {
        assert_eq!(runs_needed(0), 4);
        // 15 gates: tails of 0.05/15 = 0.0033; 2/924 fits, 2/252 not.
        assert_eq!(runs_needed(15), 6);
        assert!((gated_level(15) - (1.0 - 0.1 / 15.0)).abs() < 1e-15);
        // 6 a side serve up to 46 gates, 47 need 7 (2/3432).
        assert_eq!(runs_needed(46), 6);
        assert_eq!(runs_needed(47), 7);
    }

    #[test]
    fn share_categories() {
        assert_eq!(share_category("copy_share"), Some("copy"));
        assert_eq!(share_category("kernel_io_share"), Some("kernel_io"));
        assert_eq!(share_category("cost.alloc.share"), Some("alloc"));
        assert_eq!(share_category("cpu_ns_per_byte"), None);
    }
}
