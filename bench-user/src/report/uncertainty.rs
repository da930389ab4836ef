//! How sure each figure is: percentiles with their distribution-free
//! bounds (or "too few samples") and CPU shares with their bootstrap
//! intervals, each with the number of samples behind it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One percentile of a distribution and the samples behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Percentile {
    /// "p50", "p90", "p99", "p999".
    pub label: String,
    /// The quantile, 0.5 … 0.999.
    pub quantile: f64,
    /// Samples of the distribution.
    pub samples: u64,
    /// The estimate, or why there is none.
    pub estimate: PercentileEstimate,
}

/// A percentile's value with the order statistics that bound the true
/// percentile, or too few samples for such bounds (serialized as
/// `{"value": {…}}` or `{"too_few_samples": {"needed": n}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PercentileEstimate {
    Value {
        /// The sample percentile.
        value: f64,
        /// One-sided 95 % lower bound (an order statistic); absent when
        /// even the smallest sample is not one.
        lower: Option<f64>,
        /// One-sided 95 % upper bound (an order statistic). With `lower`,
        /// a 90 % interval, whatever the distribution.
        upper: f64,
    },
    /// No order statistic bounds the percentile at 95 % with this many
    /// samples; `needed` would (p99: 299).
    TooFewSamples { needed: u64 },
}

impl Percentile {
    /// The value, when there were samples enough to bound it.
    pub fn value(&self) -> Option<f64> {
        match self.estimate {
            PercentileEstimate::Value { value, .. } => Some(value),
            PercentileEstimate::TooFewSamples { .. } => None,
        }
    }

    /// Why there is no value: "too few samples (n=4; p99 needs 299)".
    pub fn too_few(&self) -> Option<String> {
        match self.estimate {
            PercentileEstimate::Value { .. } => None,
            PercentileEstimate::TooFewSamples { needed } => Some(format!(
                "too few samples (n={}; {} needs {needed})",
                self.samples, self.label
            )),
        }
    }
}

/// The 95 % interval of a CPU share, from a bootstrap that resamples
/// blocks of samples (see `method`), or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShareInterval {
    Interval {
        low: f64,
        high: f64,
        /// Blocks resampled.
        blocks: usize,
        /// What a block is and how they were resampled.
        method: String,
    },
    Unavailable(String),
}
