//! CPU metrics: CPU per byte and the cost categories' shares and ns/B.

use std::collections::BTreeMap;

use super::{ratio, un, Evidence, NO_BYTES};
use crate::report::{Metric, MetricEvidence, Target};

/// `cpu_ns_per_byte`, `cost.<category>.{share,ns_per_byte}`, and the
/// copy, runtime and kernel-I/O shares: all from the target's `costs`, so
/// CPU time, samples and bytes are those of the same windows and the
/// categories' ns/B add up to the total.
pub(super) fn insert(t: &Target, m: &mut BTreeMap<String, Metric>, ev: &mut Evidence) {
    match &t.costs {
        Some(c) if c.samples > 0 => {
            let bytes = c.bytes as f64;
            m.insert("cpu_ns_per_byte".into(), ratio(c.cpu_ns, bytes, NO_BYTES));
            // A share of samples: their count and the category's interval.
            let evidence = |cat: &crate::report::CategoryCost| MetricEvidence {
                samples: c.samples,
                interval: Some(cat.interval.clone()),
            };
            for cat in &c.categories {
                m.insert(
                    format!("cost.{}.share", cat.category),
                    Metric::Value(cat.share),
                );
                ev.insert(format!("cost.{}.share", cat.category), evidence(cat));
                m.insert(
                    format!("cost.{}.ns_per_byte", cat.category),
                    ratio(cat.cpu_ns, bytes, NO_BYTES),
                );
            }
            let share = |name: &str| {
                c.categories
                    .iter()
                    .find(|k| k.category == name)
                    .map(|k| Metric::Value(k.share))
                    .unwrap_or_else(|| un("category missing from profiles/attribution.toml"))
            };
            for (name, category) in [
                ("copy_share", "copy"),
                ("runtime_share", "runtime"),
                ("kernel_io_share", "kernel_io"),
            ] {
                m.insert(name.into(), share(category));
                if let Some(cat) = c.categories.iter().find(|k| k.category == category) {
                    ev.insert(name.into(), evidence(cat));
                }
            }
        }
        Some(_) => {
            let why = "the cpu probe took no samples of this target";
            for name in [
                "cpu_ns_per_byte",
                "copy_share",
                "runtime_share",
                "kernel_io_share",
            ] {
                m.insert(name.into(), un(why));
            }
        }
        None => {
            let why = "the cpu probe was off (probes.cpu.enabled)";
            for name in [
                "cpu_ns_per_byte",
                "copy_share",
                "runtime_share",
                "kernel_io_share",
            ] {
                m.insert(name.into(), un(why));
            }
        }
    }
}
