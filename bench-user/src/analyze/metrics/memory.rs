//! Memory metrics: allocations per MiB (all, and of buffer size), bytes
//! allocated per byte relayed, live-heap growth, peak RSS.

use std::collections::BTreeMap;

use super::{ratio, un, MetricInputs, PerCallScope, MIB, NO_BYTES};
use crate::report::{Metric, Target};

/// The memory family; allocations are per byte of the same phases' windows
/// of the pass the per-call probes counted in.
pub(super) fn insert(
    t: &Target,
    _inp: &MetricInputs,
    scope: &PerCallScope,
    m: &mut BTreeMap<String, Metric>,
) {
    let per_call_mib = scope.bytes / MIB;
    match &t.alloc {
        Some(a) if a.attached.is_empty() => {
            let why = "no allocator entry point was found to probe";
            for name in [
                "allocs_per_mib",
                "buffer_allocs_per_mib",
                "alloc_bytes_per_byte",
            ] {
                m.insert(name.into(), un(why));
            }
        }
        Some(a) => {
            // Split by phase where the report has it; whole-pass totals in
            // older reports (and then `scope` covers every phase).
            let (calls, bytes, big) = match &scope.alloc {
                Some(p) => (p.calls, p.bytes, p.buffer_calls),
                None => (
                    a.calls,
                    a.bytes,
                    a.size_histogram
                        .iter()
                        .filter(|b| b.ge_bytes >= crate::analyze::BUFFER_BYTES)
                        .map(|b| b.count)
                        .sum(),
                ),
            };
            m.insert(
                "allocs_per_mib".into(),
                ratio(calls as f64, per_call_mib, NO_BYTES),
            );
            m.insert(
                "buffer_allocs_per_mib".into(),
                ratio(big as f64, per_call_mib, NO_BYTES),
            );
            m.insert(
                "alloc_bytes_per_byte".into(),
                ratio(bytes as f64, per_call_mib * MIB, NO_BYTES),
            );
        }
        None => {
            let why = "the alloc probe was off (probes.alloc.enabled)";
            for name in [
                "allocs_per_mib",
                "buffer_allocs_per_mib",
                "alloc_bytes_per_byte",
            ] {
                m.insert(name.into(), un(why));
            }
        }
    }
    m.insert(
        "live_heap_growth_mib_per_s".into(),
        match &t.alloc {
            Some(a) if a.live_bytes.len() >= 3 => Metric::Value(slope(&a.live_bytes) / MIB),
            Some(_) => un("live heap not followed (probes.alloc.live) or too few samples"),
            None => un("the alloc probe was off (probes.alloc.enabled)"),
        },
    );
    m.insert(
        "peak_rss_mib".into(),
        match t.peak_rss_bytes {
            Some(b) => Metric::Value(b as f64 / MIB),
            None => un("VmHWM could not be read from /proc"),
        },
    );
}

/// Least-squares slope of live bytes over time, bytes per second.
fn slope(points: &[crate::report::LiveSample]) -> f64 {
    let n = points.len() as f64;
    let mt = points.iter().map(|p| p.t_s).sum::<f64>() / n;
    let mb = points.iter().map(|p| p.bytes as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in points {
        num += (p.t_s - mt) * (p.bytes as f64 - mb);
        den += (p.t_s - mt) * (p.t_s - mt);
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LiveSample;

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<LiveSample> = (0..5)
            .map(|i| LiveSample {
                t_s: i as f64,
                bytes: 1000 + 250 * i,
            })
            .collect();
        assert!((slope(&pts) - 250.0).abs() < 1e-9);
    }
}
