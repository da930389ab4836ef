//! analyze: turn what was captured into the per-target figures of the report:
//! syscall tables, CPU cost by function and thread, warnings about the
//! numbers' quality. Later: cost attribution, checklist rules, comparisons.

use std::collections::{BTreeMap, HashMap, HashSet};

use bench_common::LATENCY_BUCKETS;

use crate::{
    capture::{Capture, SyscallRecord},
    report::{CpuSummary, FunctionCost, LatencyBucket, SyscallRow, Target},
    resolve::ResolvedSample,
};

/// How many functions `top_functions` keeps.
pub const TOP_FUNCTIONS: usize = 25;

/// Below this median user-stack depth the stacks are too shallow to trust:
/// the target most likely lacks frame pointers.
pub const SHALLOW_STACK_DEPTH: u64 = 4;

/// What the chain knows about one endpoint process.
#[derive(Debug, Clone)]
pub struct TargetFacts {
    pub role: String,
    pub pid: u32,
    pub exe: String,
    pub command: Vec<String>,
    pub peak_rss_bytes: Option<u64>,
    pub exited: Option<String>,
}

/// One report target per endpoint, from the capture and resolved samples.
pub fn targets(
    facts: &[TargetFacts],
    capture: &Capture,
    samples: &[ResolvedSample],
) -> Vec<Target> {
    facts
        .iter()
        .map(|f| {
            let syscalls = syscall_rows(capture.syscalls.iter().filter(|r| r.tgid == f.pid));
            let own: Vec<&ResolvedSample> = samples.iter().filter(|s| s.tgid == f.pid).collect();
            let missed = capture
                .cpu
                .iter()
                .filter(|r| r.tgid == f.pid && r.user_error.is_some())
                .map(|r| r.count)
                .sum();
            let counters = capture
                .counters
                .get(&f.pid)
                .map(|c| c.iter().map(|(n, r)| (n.to_string(), r.clone())).collect())
                .unwrap_or_default();
            Target {
                role: f.role.clone(),
                pid: f.pid,
                exe: f.exe.clone(),
                command: f.command.clone(),
                peak_rss_bytes: f.peak_rss_bytes,
                exited: f.exited.clone(),
                counters,
                syscalls,
                cpu: cpu_summary(&own, missed),
            }
        })
        .collect()
}

/// Syscall rows, largest total time first.
pub fn syscall_rows<'a>(records: impl Iterator<Item = &'a SyscallRecord>) -> Vec<SyscallRow> {
    let mut rows: Vec<SyscallRow> = records
        .map(|r| SyscallRow {
            name: r.name.clone(),
            nr: r.nr,
            count: r.stats.count,
            errors: r.stats.errors,
            total_ns: r.stats.total_ns,
            mean_ns: if r.stats.count == 0 {
                0.0
            } else {
                r.stats.total_ns as f64 / r.stats.count as f64
            },
            max_ns: r.stats.max_ns,
            bytes: r.stats.bytes,
            latency: r
                .histogram
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(b, &n)| LatencyBucket {
                    ge_ns: if b == 0 { 0 } else { 1u64 << b },
                    lt_ns: if b as u32 + 1 >= LATENCY_BUCKETS {
                        u64::MAX
                    } else {
                        1u64 << (b + 1)
                    },
                    count: n,
                })
                .collect(),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.total_ns
            .cmp(&a.total_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// Samples, top functions by self time, per-thread split, stack depth.
pub fn cpu_summary(samples: &[&ResolvedSample], missed_user_stacks: u64) -> CpuSummary {
    let total: u64 = samples.iter().map(|s| s.count).sum();
    let mut self_counts: HashMap<&str, u64> = HashMap::new();
    let mut total_counts: HashMap<&str, u64> = HashMap::new();
    let mut threads: BTreeMap<String, u64> = BTreeMap::new();
    let mut depths: Vec<(usize, u64)> = Vec::new();
    for s in samples {
        if let Some(leaf) = s.frames.last() {
            *self_counts.entry(leaf.name.as_str()).or_default() += s.count;
        }
        // A recursive function counts once per sample.
        let mut seen = HashSet::new();
        for f in &s.frames {
            if seen.insert(f.name.as_str()) {
                *total_counts.entry(f.name.as_str()).or_default() += s.count;
            }
        }
        *threads.entry(s.thread_name.clone()).or_default() += s.count;
        if s.user_depth > 0 {
            depths.push((s.user_depth, s.count));
        }
    }
    let mut top: Vec<FunctionCost> = self_counts
        .into_iter()
        .map(|(name, n)| FunctionCost {
            name: name.to_string(),
            self_samples: n,
            self_share: if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            },
            total_samples: total_counts.get(name).copied().unwrap_or(n),
        })
        .collect();
    top.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then_with(|| a.name.cmp(&b.name))
    });
    top.truncate(TOP_FUNCTIONS);
    CpuSummary {
        samples: total,
        missed_user_stacks,
        median_user_depth: weighted_median(&mut depths),
        top_functions: top,
        threads,
    }
}

fn weighted_median(values: &mut [(usize, u64)]) -> Option<u64> {
    let total: u64 = values.iter().map(|v| v.1).sum();
    if total == 0 {
        return None;
    }
    values.sort_unstable();
    let mut seen = 0;
    for &(v, n) in values.iter() {
        seen += n;
        if seen * 2 >= total {
            return Some(v as u64);
        }
    }
    None
}

/// Warnings about the quality of the numbers, one sentence each.
pub fn warnings(targets: &[Target], cpu_enabled: bool) -> Vec<String> {
    let mut out = Vec::new();
    for t in targets {
        if let Some(how) = &t.exited {
            out.push(format!(
                "the {} endpoint (pid {}) exited during the run ({how}); its figures stop there",
                t.role, t.pid
            ));
        }
        if cpu_enabled && t.cpu.samples == 0 {
            out.push(format!(
                "the {} endpoint got no CPU samples: the measured window was too short or the process idle",
                t.role
            ));
        }
        if let Some(d) = t.cpu.median_user_depth {
            if d < SHALLOW_STACK_DEPTH {
                out.push(format!(
                    "the {} endpoint's stacks are shallow (median {d} frames): it likely lacks frame pointers; \
                     rebuild it with RUSTFLAGS=\"-C force-frame-pointers=yes\" (Go and C: -fno-omit-frame-pointer)",
                    t.role
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Frame;

    fn s(frames: &[&str], n: u64) -> ResolvedSample {
        ResolvedSample {
            tgid: 1,
            tid: 1,
            thread_name: "w".into(),
            frames: frames
                .iter()
                .map(|f| Frame {
                    name: f.to_string(),
                    kernel: false,
                })
                .collect(),
            user_depth: frames.len(),
            count: n,
        }
    }

    #[test]
    fn top_functions_by_self_samples() {
        let a = s(&["main", "relay", "memcpy"], 6);
        let b = s(&["main", "relay"], 3);
        let c = s(&["main", "encrypt"], 1);
        let sum = cpu_summary(&[&a, &b, &c], 2);
        assert_eq!(sum.samples, 10);
        assert_eq!(sum.missed_user_stacks, 2);
        assert_eq!(sum.top_functions[0].name, "memcpy");
        assert_eq!(sum.top_functions[0].self_samples, 6);
        assert!((sum.top_functions[0].self_share - 0.6).abs() < 1e-9);
        let relay = sum
            .top_functions
            .iter()
            .find(|f| f.name == "relay")
            .expect("relay");
        assert_eq!((relay.self_samples, relay.total_samples), (3, 9));
        assert_eq!(sum.median_user_depth, Some(3));
        assert_eq!(sum.threads.get("w"), Some(&10));
    }

    #[test]
    fn histogram_buckets_have_bounds() {
        let mut hist = vec![0; LATENCY_BUCKETS as usize];
        hist[0] = 1;
        hist[10] = 4;
        let rec = SyscallRecord {
            tgid: 1,
            nr: 0,
            name: "read".into(),
            stats: bench_common::SyscallStats {
                count: 5,
                total_ns: 5000,
                max_ns: 1500,
                bytes: 10,
                errors: 0,
            },
            histogram: hist,
        };
        let rows = syscall_rows([rec].iter());
        assert_eq!(rows[0].mean_ns, 1000.0);
        assert_eq!(rows[0].latency.len(), 2);
        assert_eq!(
            (
                rows[0].latency[1].ge_ns,
                rows[0].latency[1].lt_ns,
                rows[0].latency[1].count
            ),
            (1024, 2048, 4)
        );
    }
}
