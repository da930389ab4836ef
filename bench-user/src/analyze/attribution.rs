//! attribution: every on-CPU sample into one cost category (crypto, copy,
//! alloc, kernel I/O, runtime, protocol, other) by the frame patterns of
//! `profiles/attribution.toml`, and the category's CPU ns per byte moved.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde::Deserialize;

use crate::{
    report::{CategoryCost, CostAttribution, ShareInterval, WeightedName},
    resolve::ResolvedSample,
};

/// The shipped patterns, used when a profiles directory has none.
pub const DEFAULT_ATTRIBUTION: &str = include_str!("../../../profiles/attribution.toml");

/// Why an attribution file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: category `{category}`: pattern {pattern:?}: {message}; write a valid regular expression")]
    Pattern {
        path: String,
        category: String,
        pattern: String,
        message: String,
    },
    #[error("{path}: the last category must be a catch-all with no patterns (e.g. `other`)")]
    NoCatchAll { path: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    category: Vec<CategorySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategorySpec {
    name: String,
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    user: Vec<String>,
    #[serde(default)]
    kernel: Vec<String>,
    /// The profiler's own cost, shown apart from the target's.
    #[serde(default)]
    measuring: bool,
}

#[derive(Debug)]
struct Category {
    name: String,
    measuring: bool,
    user: Vec<Regex>,
    kernel: Vec<Regex>,
}

/// The categories, compiled.
#[derive(Debug)]
pub struct Categories {
    list: Vec<Category>,
}

impl Categories {
    /// Parse an attribution file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Categories, AttributionError> {
        let file: File = toml::from_str(text).map_err(|e| AttributionError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let compile = |cat: &str, pats: &[String]| -> Result<Vec<Regex>, AttributionError> {
            pats.iter()
                .map(|p| {
                    Regex::new(p).map_err(|e| AttributionError::Pattern {
                        path: path.to_string(),
                        category: cat.to_string(),
                        pattern: p.clone(),
                        message: e.to_string(),
                    })
                })
                .collect()
        };
        let mut list = Vec::new();
        for c in &file.category {
            list.push(Category {
                name: c.name.clone(),
                measuring: c.measuring,
                user: compile(&c.name, &c.user)?,
                kernel: compile(&c.name, &c.kernel)?,
            });
        }
        match list.last() {
            Some(last) if last.user.is_empty() && last.kernel.is_empty() => {}
            _ => {
                return Err(AttributionError::NoCatchAll {
                    path: path.to_string(),
                })
            }
        }
        Ok(Categories { list })
    }

    /// `DIR/attribution.toml` when it exists, else the shipped file.
    pub fn load(profiles_dir: &std::path::Path) -> Result<Categories, AttributionError> {
        let path = profiles_dir.join("attribution.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Categories::parse(&text, &path.display().to_string()),
            Err(_) => Categories::parse(DEFAULT_ATTRIBUTION, "profiles/attribution.toml"),
        }
    }

    /// Category names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|c| c.name.as_str())
    }

    /// Index of the category of a stack (frames outermost first): the
    /// innermost frame that any category matches decides.
    pub fn classify(&self, frames: &[crate::resolve::Frame]) -> usize {
        for f in frames.iter().rev() {
            for (i, c) in self.list.iter().enumerate() {
                let pats = if f.kernel { &c.kernel } else { &c.user };
                if pats.iter().any(|re| re.is_match(&f.name)) {
                    return i;
                }
            }
        }
        self.list.len() - 1
    }
}

/// How the CPU time of a target is known.
#[derive(Debug, Clone, Copy)]
pub enum CpuTime {
    /// The task-clock counter over the measured windows, ns.
    TaskClock(u64),
    /// Only the samples: each stands for one sampling period.
    Period { ns_per_sample: f64 },
}

/// Whether a window's task-clock CPU time and its CPU `samples` taken at
/// `hz` agree within sampling error. The samples are ~Poisson arrivals over
/// the CPU time, so n of them stand for n/hz s ± √n/hz s: the bound is 4
/// standard deviations (an agreeing pair fails about once in 10^4) plus 5 %
/// of the task clock for the kernel's adjusting of the period in frequency
/// mode. `Err` says by how much they differ.
pub fn task_clock_agrees(task_ns: f64, samples: u64, hz: f64) -> Result<(), String> {
    let n = samples as f64;
    let sampled = n / hz * 1e9;
    let bound = 4.0 * n.sqrt() / hz * 1e9 + 0.05 * task_ns;
    if (sampled - task_ns).abs() <= bound {
        Ok(())
    } else {
        Err(format!(
            "{samples} samples × period = {sampled:.0} ns vs task clock {task_ns:.0} ns (bound ±{bound:.0} ns)"
        ))
    }
}

/// Time slots with samples at least, for a block bootstrap over time to
/// mean anything (1 s of 100 ms slots).
const MIN_SLOTS: usize = 10;

/// The bootstrap's block length in time slots for `n` slots with samples:
/// about n^(1/3), the usual order for a block bootstrap of a variance-like
/// quantity, so that blocks grow with the run but stay many.
fn block_len(n: usize) -> usize {
    ((n as f64).cbrt().round() as usize).max(1)
}

/// What the share intervals resample.
fn method(slots: usize, block: usize) -> String {
    format!(
        "block bootstrap over time: {slots} slots of {} ms (all the target's threads' samples in a window's slot), resampled in runs of {block} consecutive slots, so that correlation between consecutive samples is kept",
        bench_common::TIME_SLOT_NS / 1_000_000
    )
}

/// Share intervals per category, with the slots with samples and the block
/// length (in slots) they were resampled by.
struct SlotIntervals {
    intervals: Vec<(f64, f64)>,
    slots: usize,
    block: usize,
}

/// The share intervals from per-time-slot category counts (in time order),
/// or why there are none.
fn share_intervals(slots: &[Vec<u64>]) -> Result<SlotIntervals, String> {
    let with_samples = slots.iter().filter(|t| t.iter().sum::<u64>() > 0).count();
    if with_samples < MIN_SLOTS {
        return Err(format!(
            "{with_samples} time slot(s) of {} ms with samples: the interval resamples blocks of time and needs at least {MIN_SLOTS}",
            bench_common::TIME_SLOT_NS / 1_000_000
        ));
    }
    let block = block_len(with_samples);
    super::block_bootstrap::share_intervals(slots, block)
        .map(|intervals| SlotIntervals {
            intervals,
            slots: with_samples,
            block,
        })
        .ok_or_else(|| "too few time slots with samples to resample".to_string())
}

/// The cost attribution of one target's CPU samples in the windows of
/// `phases`: `samples`, `cpu_time` and `bytes` must all be those windows'.
pub fn attribute(
    categories: &Categories,
    samples: &[&ResolvedSample],
    cpu_time: CpuTime,
    bytes: u64,
    phases: Vec<usize>,
) -> CostAttribution {
    let mut counts = vec![0u64; categories.list.len()];
    let mut by_slot: BTreeMap<(Option<u32>, u16), Vec<u64>> = BTreeMap::new();
    let mut unclassified: HashMap<String, u64> = HashMap::new();
    let other = categories.list.len() - 1;
    for s in samples {
        let i = categories.classify(&s.frames);
        counts[i] += s.weight;
        by_slot
            .entry((s.window, s.slot))
            .or_insert_with(|| vec![0; counts.len()])[i] += s.weight;
        if i == other {
            let leaf = s
                .frames
                .last()
                .map_or(crate::resolve::UNKNOWN.to_string(), |f| f.name.to_string());
            *unclassified.entry(leaf).or_default() += s.weight;
        }
    }
    let total: u64 = counts.iter().sum();
    let (cpu_ns, source) = match cpu_time {
        CpuTime::TaskClock(ns) => (ns as f64, "task-clock counter"),
        CpuTime::Period { ns_per_sample } => {
            (total as f64 * ns_per_sample, "samples × sampling period")
        }
    };
    let intervals = share_intervals(&by_slot.into_values().collect::<Vec<_>>());
    let categories = categories
        .list
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(k, (c, &n))| {
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let ns = cpu_ns * share;
            CategoryCost {
                category: c.name.clone(),
                samples: n,
                share,
                cpu_ns: ns,
                ns_per_byte: (bytes > 0).then(|| ns / bytes as f64),
                interval: match &intervals {
                    Ok(s) => ShareInterval::Interval {
                        low: s.intervals[k].0,
                        high: s.intervals[k].1,
                        blocks: s.slots.div_ceil(s.block),
                        method: method(s.slots, s.block),
                    },
                    Err(why) => ShareInterval::Unavailable(why.clone()),
                },
                measuring: c.measuring,
            }
        })
        .collect();
    let mut unclassified: Vec<WeightedName> = unclassified
        .into_iter()
        .map(|(name, weight)| WeightedName {
            share: if total > 0 {
                weight as f64 / total as f64
            } else {
                0.0
            },
            name,
            weight,
        })
        .collect();
    unclassified.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.name.cmp(&b.name)));
    unclassified.truncate(super::TOP_OTHER);
    CostAttribution {
        phases,
        samples: total,
        cpu_ns,
        cpu_ns_source: source.to_string(),
        bytes,
        categories,
        unclassified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capture::Graph, resolve::Frame};
    use std::sync::Arc;

    fn stack(user: &[&str], kernel: &[&str], weight: u64) -> ResolvedSample {
        let mut frames: Vec<Frame> = user
            .iter()
            .map(|n| Frame {
                name: Arc::from(*n),
                kernel: false,
            })
            .collect();
        frames.extend(kernel.iter().map(|n| Frame {
            name: Arc::from(*n),
            kernel: true,
        }));
        ResolvedSample {
            graph: Graph::Cpu,
            tgid: 1,
            tid: 1,
            thread_name: "w".into(),
            frames: frames.into(),
            user_depth: user.len(),
            weight,
            window: Some(0),
            slot: 0,
        }
    }

    fn category_of(c: &Categories, user: &[&str], kernel: &[&str]) -> String {
        let s = stack(user, kernel, 1);
        c.names()
            .nth(c.classify(&s.frames))
            .unwrap_or("?")
            .to_string()
    }

    #[test]
    fn shipped_categories_cover_the_issue_list() {
        let c = Categories::parse(DEFAULT_ATTRIBUTION, "attribution.toml").expect("parses");
        let names: Vec<_> = c.names().collect();
        assert_eq!(names, crate::analyze::metrics::CATEGORIES);
    }

    #[test]
    fn innermost_matching_frame_decides() {
        let c =
            Categories::parse(DEFAULT_ATTRIBUTION, "attribution.toml").expect("shipped patterns");
        let relay = "bench_proto::relay::Pump::pump";
        // A send through the relay: kernel I/O, not protocol.
        assert_eq!(
            category_of(
                &c,
                &["main", relay, "__libc_write"],
                &[
                    "entry_SYSCALL_64",
                    "__x64_sys_write",
                    "tcp_sendmsg",
                    "_raw_spin_unlock_irqrestore"
                ]
            ),
            "kernel_io"
        );
        // A wake-up inside the send is scheduling.
        assert_eq!(
            category_of(
                &c,
                &[relay],
                &[
                    "entry_SYSCALL_64",
                    "tcp_sendmsg",
                    "try_to_wake_up",
                    "_raw_spin_unlock_irqrestore"
                ]
            ),
            "runtime"
        );
        assert_eq!(
            category_of(&c, &[relay, "__memmove_avx_unaligned_erms"], &[]),
            "copy"
        );
        assert_eq!(
            category_of(&c, &[relay, "malloc", "_int_malloc"], &[]),
            "alloc"
        );
        assert_eq!(
            category_of(
                &c,
                &[
                    "rustls::conn::ConnectionCommon::write",
                    "ring_core_0_17_14_aes_gcm_enc_update_vaes_avx2"
                ],
                &[]
            ),
            "crypto"
        );
        assert_eq!(
            category_of(
                &c,
                &["tokio::runtime::scheduler::multi_thread::worker::run"],
                &[]
            ),
            "runtime"
        );
        assert_eq!(
            category_of(
                &c,
                &[
                    "github.com/sagernet/sing-box/outbound.(*Direct).DialContext",
                    "runtime.mallocgc"
                ],
                &[]
            ),
            "alloc"
        );
        assert_eq!(
            category_of(
                &c,
                &[
                    "crypto/tls.(*Conn).Write",
                    "crypto/internal/fips140/aes/gcm.gcmAesEnc"
                ],
                &[]
            ),
            "crypto"
        );
        assert_eq!(
            category_of(&c, &["crypto/tls.(*Conn).Write"], &[]),
            "protocol"
        );
        assert_eq!(category_of(&c, &[relay], &[]), "protocol");
        assert_eq!(category_of(&c, &["main", "[unknown]"], &[]), "other");
        // A stripped crypto library's internal code, named by resolve.
        assert_eq!(
            category_of(&c, &["main", "libcrypto.so.3+0x1a2b3c"], &[]),
            "crypto"
        );
        assert_eq!(
            category_of(&c, &["main", "libssl.so.3+0x4a0"], &[]),
            "other"
        );
    }

    #[test]
    fn shares_and_ns_per_byte() {
        let c =
            Categories::parse(DEFAULT_ATTRIBUTION, "attribution.toml").expect("shipped patterns");
        let a = stack(&["bench_proto::relay::Pump::pump"], &[], 3);
        let b = stack(&["memcpy"], &[], 1);
        let d = stack(&["mystery"], &[], 4);
        let out = attribute(&c, &[&a, &b, &d], CpuTime::TaskClock(8_000), 1000, vec![0]);
        let get = |n: &str| {
            out.categories
                .iter()
                .find(|k| k.category == n)
                .expect("cat")
        };
        assert_eq!(out.samples, 8);
        assert_eq!(get("protocol").samples, 3);
        assert!((get("copy").cpu_ns - 1000.0).abs() < 1e-9);
        assert_eq!(get("copy").ns_per_byte, Some(1.0));
        assert_eq!(out.unclassified[0].name, "mystery");
        let p = attribute(
            &c,
            &[&a],
            CpuTime::Period { ns_per_sample: 1e7 },
            0,
            vec![0],
        );
        assert_eq!(p.cpu_ns, 3e7);
        assert_eq!(get("crypto").samples, 0);
        assert!(p.categories.iter().all(|k| k.ns_per_byte.is_none()));
        // Three time slots with samples are too few to resample.
        match &get("copy").interval {
            ShareInterval::Unavailable(why) => assert!(why.contains("1 time slot"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// Samples of two categories over `slots` slots of window 0 (and the
    /// same again in window 1), three quarters protocol.
    fn timed(slots: u16) -> Vec<ResolvedSample> {
        let mut out = Vec::new();
        for window in 0..2 {
            for slot in 0..slots {
                for (frames, n) in [
                    (&["bench_proto::relay::Pump::pump"][..], 3),
                    (&["memcpy"][..], 1),
                ] {
                    let mut s = stack(frames, &[], n);
                    s.window = Some(window);
                    s.slot = slot;
                    out.push(s);
                }
            }
        }
        out
    }

    #[test]
    fn task_clock_and_samples_agree_within_sampling_error() {
        // 100 samples at 100 Hz: 1 s ± 0.1 s; bound 0.4 s + 5 % of the
        // task clock.
        assert!(task_clock_agrees(1e9, 100, 100.0).is_ok());
        assert!(task_clock_agrees(1.44e9, 100, 100.0).is_ok());
        assert!(task_clock_agrees(1.5e9, 100, 100.0).is_err());
        assert!(task_clock_agrees(0.6e9, 100, 100.0).is_ok());
        assert!(task_clock_agrees(0.55e9, 100, 100.0).is_err());
    }

    #[test]
    fn intervals_resample_blocks_of_time() {
        let c =
            Categories::parse(DEFAULT_ATTRIBUTION, "attribution.toml").expect("shipped patterns");
        let samples = timed(32);
        let refs: Vec<&ResolvedSample> = samples.iter().collect();
        let out = attribute(&c, &refs, CpuTime::TaskClock(1_000_000), 2_000, vec![0, 1]);
        assert_eq!(out.phases, vec![0, 1]);
        let copy = out
            .categories
            .iter()
            .find(|k| k.category == "copy")
            .expect("copy");
        assert_eq!((copy.samples, copy.share), (64, 0.25));
        match &copy.interval {
            ShareInterval::Interval {
                low,
                high,
                blocks,
                method,
            } => {
                // Every slot holds the same mix: no resample can move it.
                assert_eq!((*low, *high), (0.25, 0.25));
                // 64 slots in runs of round(64^(1/3)) = 4.
                assert_eq!(*blocks, 16);
                assert!(method.contains("64 slots of 100 ms"), "{method}");
            }
            other => panic!("{other:?}"),
        }
        // The categories' ns/B add up to the whole target's.
        let sum: f64 = out.categories.iter().filter_map(|k| k.ns_per_byte).sum();
        let total = out.cpu_ns / out.bytes as f64;
        assert!((sum - total).abs() <= 0.01 * total, "{sum} vs {total}");
        let few = timed(4);
        let refs: Vec<&ResolvedSample> = few.iter().collect();
        let out = attribute(&c, &refs, CpuTime::TaskClock(1), 1, vec![0, 1]);
        match &out.categories[0].interval {
            ShareInterval::Unavailable(why) => assert!(why.contains("8 time slot"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = Categories::parse(
            "[[category]]\nname='x'\ndescription=''\nuser=['(']\n",
            "a.toml",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("category `x`") && e.contains("pattern"), "{e}");
        let e = Categories::parse(
            "[[category]]\nname='x'\ndescription=''\nuser=['a']\n",
            "a.toml",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("catch-all"), "{e}");
    }
}
