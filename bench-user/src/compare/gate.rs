//! gate: which metrics may not regress, and by how much (profiles/gates.toml).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CompareError;
use crate::analyze::metrics::{self, Effect, MetricDef};

/// One gated metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// A metric name: `throughput_bps` matches every `p<i>.throughput_bps`,
    /// `cpu_ns_per_byte` (or `*.cpu_ns_per_byte`) every target's; a full key
    /// (`p0.throughput_bps`, `client.cpu_ns_per_byte`) only itself.
    pub metric: String,
    /// Largest tolerated change for the worse, as a fraction (0.05 = 5 %).
    pub max_regression: f64,
}

/// The gates file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    #[serde(default, rename = "gate")]
    pub gates: Vec<Gate>,
}

impl Gates {
    /// Read and check a gates file.
    pub fn load(path: &Path) -> Result<Gates, CompareError> {
        let bad = |message: String| CompareError::BadInput {
            argument: format!("--gates {}", path.display()),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let gates: Gates = toml::from_str(&text)
            .map_err(|e: toml::de::Error| bad(e.message().replace('\n', " ")))?;
        for g in &gates.gates {
            if !(g.max_regression >= 0.0 && g.max_regression.is_finite()) {
                return Err(bad(format!(
                    "gate {:?}: max_regression must be a fraction ≥ 0 (0.05 = 5 %)",
                    g.metric
                )));
            }
            match gated_def(&g.metric) {
                None => {
                    return Err(bad(format!(
                        "gate {:?}: no such metric; name one of the catalogue (docs/compare.md), e.g. throughput_bps or *.cpu_ns_per_byte",
                        g.metric
                    )))
                }
                Some(d) if d.min_effect == Effect::CpuShare => {
                    return Err(bad(format!(
                        "gate {:?}: a CPU share rises whenever another category falls; gate the category's cost.<category>.ns_per_byte instead",
                        g.metric
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(gates)
    }

    /// The gate of a metric key, the most specific one when several match
    /// (a full key before a bare name).
    pub fn for_metric(&self, key: &str) -> Option<&Gate> {
        self.gates
            .iter()
            .find(|g| g.metric == key)
            .or_else(|| self.gates.iter().find(|g| matches(&g.metric, key)))
    }
}

/// The catalogue definition a gate pattern names: a bare name or `*.name`
/// of a workload or target metric, or a full key.
fn gated_def(pattern: &str) -> Option<MetricDef> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let bare = |n: &str| {
        metrics::lookup(n).or_else(|| metrics::WORKLOAD.iter().find(|d| d.name == n).copied())
    };
    bare(name)
        .or_else(|| metrics::workload_def(name))
        .or_else(|| bare(name.split_once('.')?.1))
}

/// Whether a gate's metric pattern names the key `<scope>.<metric>`.
pub fn matches(pattern: &str, key: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    key == pattern || key.split_once('.').is_some_and(|(_, rest)| rest == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_every_scope() {
        assert!(matches("throughput_bps", "p0.throughput_bps"));
        assert!(matches("throughput_bps", "p3.throughput_bps"));
        assert!(matches("*.cpu_ns_per_byte", "client.cpu_ns_per_byte"));
        assert!(matches("cost.copy.share", "server.cost.copy.share"));
        assert!(matches("p1.latency_p99_us", "p1.latency_p99_us"));
        assert!(!matches("p1.latency_p99_us", "p0.latency_p99_us"));
        assert!(!matches("throughput", "p0.throughput_bps"));
    }

    #[test]
    fn full_key_wins_over_a_bare_name() {
        let g: Gates = toml::from_str(
            "[[gate]]\nmetric = \"throughput_bps\"\nmax_regression = 0.05\n\
             [[gate]]\nmetric = \"p1.throughput_bps\"\nmax_regression = 0.2\n",
        )
        .expect("toml");
        assert_eq!(
            g.for_metric("p1.throughput_bps").map(|g| g.max_regression),
            Some(0.2)
        );
        assert_eq!(
            g.for_metric("p0.throughput_bps").map(|g| g.max_regression),
            Some(0.05)
        );
        assert!(g.for_metric("client.peak_rss_mib").is_none());
    }

    #[test]
    fn gates_name_catalogue_metrics_and_no_cpu_share() {
        for ok in [
            "throughput_bps",
            "p1.latency_p99_us",
            "*.cpu_ns_per_byte",
            "client.allocs_per_mib",
            "cost.crypto.ns_per_byte",
        ] {
            assert!(gated_def(ok).is_some(), "{ok}");
        }
        assert!(gated_def("througput_bps").is_none());
        assert!(gated_def("client.nonsense").is_none());
        let dir = std::env::temp_dir().join(format!("protoprof-gates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("gates.toml");
        for (text, needle) in [
            (
                "[[gate]]\nmetric = \"*.copy_share\"\nmax_regression = 0.1\n",
                "cost.<category>.ns_per_byte",
            ),
            (
                "[[gate]]\nmetric = \"throughput\"\nmax_regression = 0.1\n",
                "no such metric",
            ),
        ] {
            std::fs::write(&file, text).expect("write");
            let e = Gates::load(&file).expect_err(text).to_string();
            assert!(e.contains(needle) && e.contains("--gates"), "{e}");
        }
        std::fs::write(
            &file,
            "[[gate]]\nmetric = \"throughput_bps\"\nmax_regression = 0.05\n",
        )
        .expect("write");
        assert_eq!(Gates::load(&file).map(|g| g.gates.len()).ok(), Some(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
