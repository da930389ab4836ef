//! analyze: turn what was captured into the per-target figures of the
//! report: syscall tables, CPU by function, off-CPU time, allocations,
//! crypto, the thread split, and warnings about the numbers' quality.
//! `attribution` splits CPU by cost category, `metrics` derives the
//! checklist's numbers from the figures, `checklist` judges them;
//! `alternation` sets seconds with the probes against seconds without.

pub mod alternation;
pub mod attribution;
pub mod binomial;
pub mod block_bootstrap;
pub mod checklist;
pub mod leak;
pub mod metrics;
pub mod network;
pub mod slope;

use std::collections::{BTreeMap, HashMap, HashSet};

use bench_common::LATENCY_BUCKETS;

use crate::{
    capture::{Capture, CaptureOptions, Graph, SyscallRecord, TargetProbes},
    report::{
        AllocFunction, AllocSummary, BinaryInfo, CpuSummary, CryptoSummary, CryptoSymbolRow,
        FunctionCost, LatencyBucket, LiveSample, OffCpuSummary, Role, SizeBucket, SyscallRow,
        Target, ThreadSummary, UnfreedSummary, WeightedName,
    },
    resolve::ResolvedSample,
};

/// How many functions `top_functions` keeps.
pub const TOP_FUNCTIONS: usize = 25;
/// How many entries the other top lists keep.
pub const TOP_OTHER: usize = 15;

/// Below this median user-stack depth the stacks are too shallow to trust:
/// the target most likely lacks frame pointers.
pub const SHALLOW_STACK_DEPTH: u64 = 4;

/// What the chain knows about one endpoint process.
#[derive(Debug, Clone)]
pub struct TargetFacts {
    pub role: Role,
    pub pid: u32,
    pub exe: String,
    pub command: Vec<String>,
    pub peak_rss_bytes: Option<u64>,
    pub exited: Option<String>,
}

/// Everything `targets` reads.
pub struct Inputs<'a> {
    pub facts: &'a [TargetFacts],
    pub capture: &'a Capture,
    pub samples: &'a [ResolvedSample],
    pub attached: &'a BTreeMap<u32, TargetProbes>,
    pub options: &'a CaptureOptions,
    /// (seconds since start, live bytes per tgid).
    pub live: &'a [(f64, BTreeMap<u32, i64>)],
    /// Cost categories for the CPU samples.
    pub categories: &'a attribution::Categories,
    /// The main pass's phases, in order: pattern and payload bytes through
    /// the chain in the phase's window.
    pub phases: &'a [PhaseInput],
    /// Socket options per target, when they could be read.
    pub sockets: &'a BTreeMap<u32, crate::report::SocketSummary>,
    /// Running totals at the close of each window, one per phase in order.
    pub snapshots: &'a [crate::capture::WindowSnapshot],
}

/// What analysis needs to know of one phase of the main pass.
#[derive(Debug, Clone)]
pub struct PhaseInput {
    /// "bulk", "rr", …
    pub pattern: String,
    /// Payload bytes, both directions, in the phase's measured window.
    pub window_bytes: u64,
}

/// The phases the data-path metrics and the target's `costs` cover: the
/// bulk phases when there are any and the target has figures for each of
/// them, else every phase.
pub fn metric_phases<'p>(patterns: impl Iterator<Item = &'p str>, have: &[usize]) -> Vec<usize> {
    let patterns: Vec<&str> = patterns.collect();
    let bulk: Vec<usize> = patterns
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == "bulk")
        .map(|(i, _)| i)
        .collect();
    if !bulk.is_empty() && bulk.iter().all(|i| have.contains(i)) {
        bulk
    } else {
        (0..patterns.len()).collect()
    }
}

/// Fill every target's metrics and judge them by the checklist.
pub fn judge(report: &mut crate::report::Report, checklist: &checklist::Checklist) {
    let streams = report
        .workload
        .phases
        .iter()
        .map(|p| p.connections as u64)
        .sum();
    let inputs = metrics::MetricInputs {
        workload: &report.workload,
        probes: &report.probes,
        calibration: &report.calibration,
        streams,
    };
    for t in report.targets.iter_mut() {
        if t.leak.is_none() {
            t.leak = report
                .resources
                .as_ref()
                .and_then(|r| {
                    r.targets
                        .iter()
                        .find(|r| r.pid == t.pid && r.role == t.role)
                })
                .and_then(leak::summarize);
        }
        // Chosen by `targets` at run time; reports read back without one
        // get the same rule.
        if t.metrics_phases.is_empty() {
            let have: Vec<usize> = t.phases.iter().map(|p| p.phase).collect();
            let patterns = report.workload.phases.iter().map(|p| p.pattern.as_str());
            t.metrics_phases = metric_phases(patterns, &have);
        }
    }
    let all: Vec<_> = report
        .targets
        .iter()
        .map(|t| metrics::target_metrics(t, &inputs))
        .collect();
    for (t, (m, scopes)) in report.targets.iter_mut().zip(all) {
        t.metrics = m;
        t.metric_scopes = scopes;
    }
    report.checklist = checklist.evaluate(&report.targets, &report.run.protocol);
    let network = network::evaluate(report);
    report.checklist.extend(network);
}

/// One report target per endpoint.
pub fn targets(inp: &Inputs) -> Vec<Target> {
    inp.facts.iter().map(|f| target(inp, f)).collect()
}

fn target(inp: &Inputs, f: &TargetFacts) -> Target {
    let cap = inp.capture;
    let own = |g: Graph| -> Vec<&ResolvedSample> {
        inp.samples
            .iter()
            .filter(|s| s.tgid == f.pid && s.graph == g)
            .collect()
    };
    let cpu_samples = own(Graph::Cpu);
    let missed = cpu_samples
        .iter()
        .filter(|s| s.user_depth == 0)
        .map(|s| s.weight)
        .sum();
    let mut counters: BTreeMap<String, crate::report::Reading> = cap
        .counters
        .get(&f.pid)
        .map(|c| c.iter().map(|(n, r)| (n.to_string(), r.into())).collect())
        .unwrap_or_default();
    // UDP drops are read at window edges, not by a perf counter: the last
    // window's running total covers every window.
    if let Some((name, r)) = inp
        .snapshots
        .last()
        .and_then(|s| s.counters.get(&f.pid))
        .and_then(|c| {
            c.iter()
                .find(|(n, _)| *n == crate::capture::sockets::UDP_DROPS)
        })
    {
        counters.insert(name.to_string(), r.into());
    }
    let attached = inp.attached.get(&f.pid).cloned().unwrap_or_default();
    let syscalls = syscall_rows(
        cap.syscalls.iter().filter(|r| r.tgid == f.pid),
        &cap.syscall_histograms,
    );
    let offcpu = inp
        .options
        .offcpu
        .then(|| offcpu_summary(&own(Graph::OffCpu)));
    let alloc = inp.options.alloc.as_ref().map(|a| {
        alloc_summary(
            inp,
            f.pid,
            &attached,
            a.sample_bytes,
            &own(Graph::AllocBytes),
            // Frees are followed only where returns were probed (never
            // in Go, whose collector frees without a call).
            (a.live && attached.alloc.iter().any(|p| p.return_probe))
                .then(|| own(Graph::AllocUnfreed))
                .as_deref(),
        )
    });
    let mut phases = phase_figures(inp.snapshots, f.pid);
    let have: Vec<usize> = phases.iter().map(|p| p.phase).collect();
    let metrics_phases = metric_phases(inp.phases.iter().map(|p| p.pattern.as_str()), &have);
    for p in phases.iter_mut() {
        p.costs = phase_costs(inp, &cpu_samples, &[p.phase], std::slice::from_ref(p));
        p.offcpu_us = inp.options.offcpu.then(|| {
            own(Graph::OffCpu)
                .iter()
                .filter(|s| s.window == Some(p.phase as u32))
                .map(|s| s.weight)
                .sum()
        });
        p.alloc = inp
            .options
            .alloc
            .as_ref()
            .map(|_| phase_alloc(cap, f.pid, p.phase));
        p.crypto = inp
            .options
            .crypto
            .as_ref()
            .map(|_| phase_crypto(&inp.capture.crypto, f.pid, &attached.crypto, p.phase));
    }
    let scoped: Vec<crate::report::PhaseFigures> = phases
        .iter()
        .filter(|p| metrics_phases.contains(&p.phase))
        .cloned()
        .collect();
    let costs = phase_costs(inp, &cpu_samples, &metrics_phases, &scoped);
    let crypto = inp.options.crypto.as_ref().map(|_| {
        let mut c = crypto_summary(inp, f.pid, &attached);
        c.cpu_share = costs.as_ref().map(|k| {
            let crypto = k.categories.iter().find(|c| c.category == "crypto");
            crate::report::CryptoCpuShare {
                share: crypto.map_or(0.0, |c| c.share),
                crypto_samples: crypto.map_or(0, |c| c.samples),
                samples: k.samples,
                interval: crypto.map_or_else(
                    || {
                        crate::report::ShareInterval::Unavailable(
                            "no crypto category in the attribution".into(),
                        )
                    },
                    |c| c.interval.clone(),
                ),
            }
        });
        c
    });
    Target {
        role: f.role,
        pid: f.pid,
        exe: f.exe.clone(),
        command: f.command.clone(),
        peak_rss_bytes: f.peak_rss_bytes,
        exited: f.exited.clone(),
        counters,
        syscalls,
        cpu: cpu_summary(&cpu_samples, missed),
        offcpu,
        alloc,
        crypto,
        threads: thread_summaries(inp, f.pid),
        binary: BinaryInfo {
            is_go: attached.is_go,
            has_symbols: attached.has_symbols,
            notes: attached.notes.clone(),
        },
        costs,
        metrics: BTreeMap::new(),
        sockets: inp.sockets.get(&f.pid).cloned(),
        phases,
        metrics_phases,
        metric_scopes: BTreeMap::new(),
        processes: crate::report::processes::of_target(inp.capture, f.pid),
        leak: None,
    }
}

/// The cost attribution of the windows of `phases`: their samples, their
/// CPU time (the task-clock counter of exactly those windows when it ran
/// in each, else samples × period) and their bytes. `None` when the cpu
/// probe was off.
fn phase_costs(
    inp: &Inputs,
    cpu_samples: &[&ResolvedSample],
    phases: &[usize],
    figures: &[crate::report::PhaseFigures],
) -> Option<crate::report::CostAttribution> {
    let hz = inp.options.cpu_frequency_hz?;
    let samples: Vec<&ResolvedSample> = cpu_samples
        .iter()
        .filter(|s| s.window.is_some_and(|w| phases.contains(&(w as usize))))
        .copied()
        .collect();
    let task_clock: Option<u64> = if figures.len() == phases.len() {
        figures
            .iter()
            .map(|p| match p.counters.get("task_clock_ns") {
                Some(crate::report::Reading::Value(ns)) => Some(*ns),
                _ => None,
            })
            .sum()
    } else {
        None
    };
    let cpu_time = match task_clock {
        Some(ns) => attribution::CpuTime::TaskClock(ns),
        None => attribution::CpuTime::Period {
            ns_per_sample: 1e9 / hz.max(1) as f64,
        },
    };
    let bytes = phases
        .iter()
        .filter_map(|&i| inp.phases.get(i))
        .map(|p| p.window_bytes)
        .sum();
    Some(attribution::attribute(
        inp.categories,
        &samples,
        cpu_time,
        bytes,
        phases.to_vec(),
    ))
}

/// One target's allocations in window `phase`.
fn phase_alloc(cap: &Capture, pid: u32, phase: usize) -> crate::report::PhaseAlloc {
    let mut out = crate::report::PhaseAlloc::default();
    let window = phase as u32;
    for r in cap
        .alloc
        .records
        .iter()
        .filter(|r| r.tgid == pid && r.window == window)
    {
        if r.role == "free" {
            out.frees += r.calls;
        } else {
            out.calls += r.calls;
            out.bytes += r.bytes;
        }
    }
    for ((tgid, role, w), h) in &cap.alloc.size_histograms {
        if *tgid == pid && *w == window && role != "free" {
            out.buffer_calls += size_buckets(h)
                .iter()
                .filter(|b| b.ge_bytes >= BUFFER_BYTES)
                .map(|b| b.count)
                .sum::<u64>();
        }
    }
    out
}

/// One target's cipher calls in window `phase` (handshake markers left out).
fn phase_crypto(
    records: &[crate::capture::crypto::CryptoRecord],
    pid: u32,
    attached: &[crate::capture::crypto::CryptoSymbol],
    phase: usize,
) -> crate::report::PhaseCrypto {
    let mut out = crate::report::PhaseCrypto::default();
    for sym in attached.iter().filter(|s| s.primitive != "handshake") {
        for r in records
            .iter()
            .filter(|r| r.tgid == pid && r.symbol == sym.id && r.window == phase as u32)
        {
            out.calls += r.calls;
            if sym.accel == "software" {
                out.software_calls += r.calls;
            }
            // Capture marks connection set-up calls (ECH's HPKE sealing a
            // ClientHello) as no record, though their length is known.
            if sym.length_scale > 0 && sym.record {
                out.length_calls += r.calls;
                out.length_bytes += r.length_sum * sym.length_scale;
            }
        }
    }
    out
}

/// Allocations of at least this many bytes count as buffers.
pub const BUFFER_BYTES: u64 = 4096;

/// One target's syscalls and counters per window: each snapshot minus the
/// one before.
pub fn phase_figures(
    snapshots: &[crate::capture::WindowSnapshot],
    pid: u32,
) -> Vec<crate::report::PhaseFigures> {
    use crate::report::Reading;
    let totals = |snap: &crate::capture::WindowSnapshot| {
        let mut by_name: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for r in snap.syscalls.iter().filter(|r| r.tgid == pid) {
            let e = by_name.entry(r.name.clone()).or_default();
            e.0 += r.stats.count;
            e.1 += r.stats.errors;
            e.2 += r.stats.bytes;
        }
        let counters: BTreeMap<String, Reading> = snap
            .counters
            .get(&pid)
            .map(|c| c.iter().map(|(n, r)| (n.to_string(), r.into())).collect())
            .unwrap_or_default();
        (by_name, counters)
    };
    let mut out = Vec::new();
    let mut before = (BTreeMap::new(), BTreeMap::new());
    for (phase, snap) in snapshots.iter().enumerate() {
        let now = totals(snap);
        let syscalls = now
            .0
            .iter()
            .map(|(name, &(count, errors, bytes))| {
                let (c0, e0, b0) = before.0.get(name).copied().unwrap_or((0, 0, 0));
                crate::report::SyscallCount {
                    name: name.clone(),
                    count: count.saturating_sub(c0),
                    errors: errors.saturating_sub(e0),
                    bytes: bytes.saturating_sub(b0),
                }
            })
            .filter(|c| c.count > 0)
            .collect();
        let counters = now
            .1
            .iter()
            .map(|(name, r)| {
                let delta = match (r, before.1.get(name)) {
                    (Reading::Value(v), Some(Reading::Value(b))) => {
                        Reading::Value(v.saturating_sub(*b))
                    }
                    (Reading::Value(v), None) => Reading::Value(*v),
                    (other, _) => other.clone(),
                };
                (name.clone(), delta)
            })
            .collect();
        out.push(crate::report::PhaseFigures {
            phase,
            syscalls,
            counters,
            costs: None,
            offcpu_us: None,
            alloc: None,
            crypto: None,
        });
        before = now;
    }
    out
}

/// Syscall rows of one process (threads summed), largest total time first
/// (most calls first when they were counted, not timed).
pub fn syscall_rows<'a>(
    records: impl Iterator<Item = &'a SyscallRecord>,
    histograms: &HashMap<(u32, u32), Vec<u64>>,
) -> Vec<SyscallRow> {
    let mut by_nr: BTreeMap<u32, SyscallRow> = BTreeMap::new();
    let mut tgid = None;
    for r in records {
        tgid = Some(r.tgid);
        let row = by_nr.entry(r.nr).or_insert_with(|| SyscallRow {
            name: r.name.clone(),
            nr: r.nr,
            count: 0,
            errors: 0,
            total_ns: 0,
            mean_ns: 0.0,
            max_ns: 0,
            bytes: 0,
            latency: Vec::new(),
        });
        row.count += r.stats.count;
        row.errors += r.stats.errors;
        row.total_ns += r.stats.total_ns;
        row.max_ns = row.max_ns.max(r.stats.max_ns);
        row.bytes += r.stats.bytes;
    }
    let mut rows: Vec<SyscallRow> = by_nr
        .into_values()
        .map(|mut row| {
            row.mean_ns = if row.count == 0 {
                0.0
            } else {
                row.total_ns as f64 / row.count as f64
            };
            if let Some(h) = tgid.and_then(|t| histograms.get(&(t, row.nr))) {
                row.latency = buckets(h);
            }
            row
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.total_ns, b.count)
            .cmp(&(a.total_ns, a.count))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// Non-empty log2 buckets as (lower bound, upper bound, count); the last
/// bucket is open-ended.
fn log2_buckets(h: &[u64]) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
    h.iter().enumerate().filter(|(_, &n)| n > 0).map(|(b, &n)| {
        let ge = if b == 0 { 0 } else { 1u64 << b };
        let lt = if b as u32 + 1 >= LATENCY_BUCKETS {
            u64::MAX
        } else {
            1u64 << (b + 1)
        };
        (ge, lt, n)
    })
}

/// Non-empty log2 latency buckets, in nanoseconds.
pub fn buckets(h: &[u64]) -> Vec<LatencyBucket> {
    log2_buckets(h)
        .map(|(ge_ns, lt_ns, count)| LatencyBucket {
            ge_ns,
            lt_ns,
            count,
        })
        .collect()
}

/// Non-empty log2 allocation size buckets, in bytes.
pub fn size_buckets(h: &[u64]) -> Vec<SizeBucket> {
    log2_buckets(h)
        .map(|(ge_bytes, lt_bytes, count)| SizeBucket {
            ge_bytes,
            lt_bytes,
            count,
        })
        .collect()
}

/// Samples, top functions by self time, per-thread split, stack depth.
pub fn cpu_summary(samples: &[&ResolvedSample], missed_user_stacks: u64) -> CpuSummary {
    let total: u64 = samples.iter().map(|s| s.weight).sum();
    let mut self_counts: HashMap<&str, u64> = HashMap::new();
    let mut total_counts: HashMap<&str, u64> = HashMap::new();
    let mut threads: BTreeMap<&str, u64> = BTreeMap::new();
    let mut depths: Vec<(usize, u64)> = Vec::new();
    for s in samples {
        if let Some(leaf) = s.frames.last() {
            *self_counts.entry(&*leaf.name).or_default() += s.weight;
        }
        // A recursive function counts once per sample.
        let mut seen = HashSet::new();
        for f in s.frames.iter() {
            if seen.insert(&*f.name) {
                *total_counts.entry(&*f.name).or_default() += s.weight;
            }
        }
        *threads.entry(&*s.thread_name).or_default() += s.weight;
        if s.user_depth > 0 {
            depths.push((s.user_depth, s.weight));
        }
    }
    let mut top: Vec<FunctionCost> = self_counts
        .into_iter()
        .map(|(name, n)| FunctionCost {
            name: name.to_string(),
            self_samples: n,
            self_share: share(n, total),
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
        threads: threads
            .into_iter()
            .map(|(name, n)| (name.to_string(), n))
            .collect(),
    }
}

fn share(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 / total as f64
    }
}

/// The heaviest names of a weighted population, with shares.
fn top_names(weights: HashMap<String, u64>, n: usize) -> Vec<WeightedName> {
    let total: u64 = weights.values().sum();
    let mut v: Vec<WeightedName> = weights
        .into_iter()
        .map(|(name, weight)| WeightedName {
            share: share(weight, total),
            name,
            weight,
        })
        .collect();
    v.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

/// Innermost user frame of each off-CPU stack, by time.
fn offcpu_summary(samples: &[&ResolvedSample]) -> OffCpuSummary {
    let mut by_site: HashMap<String, u64> = HashMap::new();
    for s in samples {
        let user: Vec<&crate::resolve::Frame> =
            s.frames.iter().rev().filter(|f| !f.kernel).collect();
        // The innermost Rust or Go function (a path with `::` or a package
        // dot), not the libc wrapper that made the blocking call.
        let site = user
            .iter()
            .find(|f| f.name.contains("::") || f.name.contains('.'))
            .or(user.first())
            .map(|f| f.name.to_string())
            .unwrap_or_else(|| "[kernel only]".into());
        *by_site.entry(site).or_default() += s.weight;
    }
    OffCpuSummary {
        total_us: samples.iter().map(|s| s.weight).sum(),
        top_blocking: top_names(by_site, TOP_OTHER),
    }
}

/// Frames that belong to the allocator or Rust's allocation plumbing, so
/// that the allocation *site* is the first frame below them.
fn is_allocator_frame(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "malloc",
        "calloc",
        "realloc",
        "free",
        "posix_memalign",
        "aligned_alloc",
        "__libc_",
        "_int_",
        "__rust_",
        "__rdl_",
        "__rg_",
        "alloc::",
        "<alloc::",
        "core::alloc",
        "std::alloc",
        "<std::alloc",
        "_rjem_",
        "mi_",
        "runtime.mallocgc",
        "runtime.newobject",
        "runtime.makeslice",
        "runtime.growslice",
        "do_alloc",
        "inner",
        "allocate_in",
        "try_allocate_in",
        "with_capacity",
        "exchange_malloc",
        // glibc's internal aliases (__GI___libc_malloc).
        "__GI_",
    ];
    // The binary's global-allocator shims, named after its own crate
    // (`bench_proto::alloc`).
    const SUFFIXES: &[&str] = &["::alloc", "::alloc_zeroed", "::realloc"];
    PREFIXES.iter().any(|p| name.starts_with(p)) || SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn alloc_summary(
    inp: &Inputs,
    pid: u32,
    attached: &TargetProbes,
    sample_bytes: u64,
    stacks: &[&ResolvedSample],
    unfreed: Option<&[&ResolvedSample]>,
) -> AllocSummary {
    let cap = inp.capture;
    let mut by_fn: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in cap.alloc.records.iter().filter(|r| r.tgid == pid) {
        let e = by_fn.entry(r.role.clone()).or_default();
        e.0 += r.calls;
        e.1 += r.bytes;
    }
    let frees = by_fn.get("free").map_or(0, |e| e.0);
    let calls = by_fn
        .iter()
        .filter(|(k, _)| *k != "free")
        .map(|(_, v)| v.0)
        .sum();
    let bytes = by_fn
        .iter()
        .filter(|(k, _)| *k != "free")
        .map(|(_, v)| v.1)
        .sum();
    let mut hist = vec![0u64; LATENCY_BUCKETS as usize];
    for ((tgid, role, _), h) in &cap.alloc.size_histograms {
        if *tgid == pid && role != "free" {
            for (slot, n) in hist.iter_mut().zip(h) {
                *slot += n;
            }
        }
    }
    let sites = allocation_sites(stacks);
    let unfreed = unfreed.map(|stacks| UnfreedSummary {
        bytes: stacks.iter().map(|s| s.weight).sum(),
        sites: top_names(allocation_sites(stacks), TOP_OTHER),
    });
    AllocSummary {
        attached: attached.alloc.iter().map(Into::into).collect(),
        by_function: by_fn
            .into_iter()
            .map(|(function, (calls, bytes))| AllocFunction {
                function,
                calls,
                bytes,
            })
            .collect(),
        calls,
        bytes,
        frees,
        size_histogram: size_buckets(&hist),
        sample_bytes,
        samples: cap.alloc.samples.get(&pid).copied().unwrap_or(0),
        top_sites: top_names(sites, TOP_OTHER),
        unfreed,
        live_bytes: inp
            .live
            .iter()
            .filter_map(|(t, m)| m.get(&pid).map(|b| LiveSample { t_s: *t, bytes: *b }))
            .collect(),
    }
}

/// Weight by allocation site: the innermost frame outside the allocator.
fn allocation_sites(stacks: &[&ResolvedSample]) -> HashMap<String, u64> {
    let mut sites: HashMap<String, u64> = HashMap::new();
    for s in stacks {
        let site = s
            .frames
            .iter()
            .rev()
            .find(|f| !f.kernel && !is_allocator_frame(&f.name))
            .map(|f| f.name.to_string())
            .unwrap_or_else(|| "[allocator only]".into());
        *sites.entry(site).or_default() += s.weight;
    }
    sites
}

/// Every probed symbol's calls over all windows (handshake markers also
/// between them); `cpu_share` is filled by the caller from the costs.
fn crypto_summary(inp: &Inputs, pid: u32, attached: &TargetProbes) -> CryptoSummary {
    let symbols = attached
        .crypto
        .iter()
        .map(|sym| {
            let mut merged: Option<crate::capture::CryptoRecord> = None;
            for r in inp
                .capture
                .crypto
                .iter()
                .filter(|r| r.tgid == pid && r.symbol == sym.id)
            {
                let m = merged.get_or_insert_with(|| crate::capture::CryptoRecord {
                    tgid: r.tgid,
                    symbol: r.symbol,
                    window: r.window,
                    histogram: vec![0; LATENCY_BUCKETS as usize],
                    ..Default::default()
                });
                m.calls += r.calls;
                m.timed += r.timed;
                m.total_ns += r.total_ns;
                m.length_sum += r.length_sum;
                for (a, b) in m.histogram.iter_mut().zip(&r.histogram) {
                    *a += b;
                }
            }
            let rec = merged.as_ref();
            let calls = rec.map_or(0, |r| r.calls);
            CryptoSymbolRow {
                symbol: sym.symbol.clone(),
                file: sym.file.clone(),
                family: sym.family.clone(),
                primitive: sym.primitive.clone(),
                accel: sym.accel.clone(),
                connection_setup: sym.connection_setup,
                record: sym.record,
                calls,
                bytes: (sym.length_scale > 0)
                    .then(|| rec.map_or(0, |r| r.length_sum) * sym.length_scale),
                mean_ns: rec
                    .filter(|r| sym.return_probe && r.timed > 0)
                    .map(|r| r.total_ns as f64 / r.timed as f64),
                latency: rec.map(|r| buckets(&r.histogram)).unwrap_or_default(),
            }
        })
        .collect();
    CryptoSummary {
        symbols,
        cpu_share: None,
    }
}

fn thread_summaries(inp: &Inputs, pid: u32) -> Vec<ThreadSummary> {
    let cap = inp.capture;
    let mut by_name: BTreeMap<String, (HashSet<u32>, ThreadSummary)> = BTreeMap::new();
    let mut add = |tid: u32, f: &dyn Fn(&mut ThreadSummary)| {
        let n = cap
            .thread_names
            .get(&tid)
            .cloned()
            .unwrap_or_else(|| format!("tid-{tid}"));
        let e = by_name.entry(n.clone()).or_insert_with(|| {
            (
                HashSet::new(),
                ThreadSummary {
                    name: n,
                    threads: 0,
                    cpu_samples: 0,
                    offcpu_us: 0,
                    syscalls: 0,
                    syscall_bytes: 0,
                    alloc_calls: 0,
                    alloc_bytes: 0,
                    task_clock_ns: None,
                    context_switches: None,
                },
            )
        });
        e.0.insert(tid);
        e.1.threads = e.0.len();
        f(&mut e.1);
    };
    for s in inp.samples.iter().filter(|s| s.tgid == pid) {
        match s.graph {
            Graph::Cpu => add(s.tid, &|t| t.cpu_samples += s.weight),
            Graph::OffCpu => add(s.tid, &|t| t.offcpu_us += s.weight),
            _ => {}
        }
    }
    for r in cap.syscalls.iter().filter(|r| r.tgid == pid) {
        add(r.tid, &|t| {
            t.syscalls += r.stats.count;
            t.syscall_bytes += r.stats.bytes;
        });
    }
    for r in cap
        .alloc
        .records
        .iter()
        .filter(|r| r.tgid == pid && r.role != "free")
    {
        add(r.tid, &|t| {
            t.alloc_calls += r.calls;
            t.alloc_bytes += r.bytes;
        });
    }
    let mut out: Vec<ThreadSummary> = by_name.into_values().map(|(_, t)| t).collect();
    out.sort_by(|a, b| {
        b.cpu_samples
            .cmp(&a.cpu_samples)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
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

/// The warning for a probe map that was full: what its lost records
/// leave out, and what to change.
pub fn full_map_warning(f: &crate::report::FullMap) -> String {
    let (unit, missing, fix) = match f.map.as_str() {
        "CPU_SAMPLES" => (
            "CPU samples",
            "the CPU flame graph, shares and costs",
            "shorten the phases or lower probes.cpu.frequency_hz",
        ),
        "OFFCPU" => (
            "off-CPU intervals",
            "the off-CPU graph",
            "shorten the phases",
        ),
        "USER_STACKS" => (
            "user stacks",
            "the user frames of the samples that needed them",
            "shorten the phases",
        ),
        _ => ("records", "the figures drawn from it", "shorten the phases"),
    };
    let capacity = if f.capacity > 0 {
        format!("{} entries", f.capacity)
    } else {
        "size unknown".to_string()
    };
    format!(
        "probe map {} ({capacity}) was full in the {} pass: {} {unit} were not kept, and {missing} leave them out; {fix}",
        f.map,
        f.pass.replace('_', "-"),
        f.lost
    )
}

/// Warnings about the quality of the numbers, one sentence each.
pub fn warnings(targets: &[Target], options: &CaptureOptions) -> Vec<String> {
    let mut out = Vec::new();
    if options.alternate {
        out.push(
            "probes.alternate: the syscalls, cpu and offcpu programs were detached for half of \
             every measured window, so this run measures what they cost (probes.alternating); \
             its syscall counts, CPU samples and off-CPU time cover only the attached seconds"
                .to_string(),
        );
    }
    for t in targets {
        if let Some(how) = &t.exited {
            out.push(format!(
                "the {} endpoint (pid {}) exited during the run ({how}); its figures stop there",
                t.role, t.pid
            ));
        }
        if options.cpu_frequency_hz.is_some() && t.cpu.samples == 0 {
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
        if !t.binary.has_symbols && (options.alloc.is_some() || options.crypto.is_some()) {
            out.push(format!(
                "the {} endpoint's binary has no symbols: its frames show as addresses and no allocator or \
                 crypto function could be found in it",
                t.role
            ));
        }
        for note in &t.binary.notes {
            out.push(format!("{} endpoint: {note}", t.role));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Frame;
    use std::sync::Arc;

    /// A phase's record size counts the functions that carry a record, not
    /// ring's one-block helper beside them; its calls still count as
    /// cipher calls. Figures of a tls profile's server (bulk phase).
    #[test]
    fn a_phase_s_record_size_leaves_out_one_block_helpers() {
        use crate::capture::crypto::{CryptoRecord, CryptoSymbol};
        let sym = |id: u32, symbol: &str, length_scale: u64, record: bool| CryptoSymbol {
            id,
            pid: 7,
            symbol: symbol.into(),
            file: "endpoint".into(),
            family: "ring AES-GCM".into(),
            library: "ring".into(),
            primitive: "aes-gcm".into(),
            accel: "hardware".into(),
            connection_setup: false,
            return_probe: true,
            length_scale,
            record,
        };
        let rec = |tgid: u32, symbol: u32, window: u32, calls: u64, length_sum: u64| CryptoRecord {
            tgid,
            symbol,
            window,
            calls,
            length_sum,
            ..Default::default()
        };
        let records = [
            rec(7, 1, 0, 224_464, 3_068_621_056),
            // One block (16 bytes) per call.
            rec(7, 2, 0, 545_161, 545_161),
            // Another window and another process: not this phase's.
            rec(7, 1, 1, 1_000, 1_000),
            rec(8, 1, 0, 1_000, 1_000),
        ];
        let attached = |helper_is_record: bool| {
            vec![
                sym(1, "aes_gcm_dec_update_vaes_avx2", 1, true),
                sym(2, "aes_hw_ctr32_encrypt_blocks", 16, helper_is_record),
            ]
        };
        let c = phase_crypto(&records, 7, &attached(false), 0);
        assert_eq!(c.calls, 224_464 + 545_161);
        assert_eq!(c.software_calls, 0);
        assert_eq!((c.length_calls, c.length_bytes), (224_464, 3_068_621_056));
        // Counted as records, the helper pulls the mean to under a third.
        let c = phase_crypto(&records, 7, &attached(true), 0);
        assert_eq!(c.length_calls, 224_464 + 545_161);
        assert_eq!(c.length_bytes, 3_068_621_056 + 16 * 545_161);

        // ECH: BoringSSL's record AEAD has no length argument in registers,
        // HPKE's open has one but seals a ClientHello, not a record (an ech
        // server's rr window: 8 opens of 112 bytes beside 38,021 records).
        // Capture marks a set-up family's symbols as no record.
        let mut hpke = sym(3, "EVP_HPKE_CTX_open", 1, false);
        hpke.connection_setup = true;
        let aead = sym(4, "EVP_AEAD_CTX_open", 0, true);
        let records = [rec(7, 3, 1, 8, 896), rec(7, 4, 1, 38_021, 0)];
        let c = phase_crypto(&records, 7, &[hpke, aead], 1);
        assert_eq!(c.calls, 8 + 38_021);
        assert_eq!((c.length_calls, c.length_bytes), (0, 0));
    }

    #[test]
    fn a_full_map_warning_names_the_loss_and_the_fix() {
        let w = full_map_warning(&crate::report::FullMap {
            pass: "per_call".into(),
            map: "CPU_SAMPLES".into(),
            capacity: 65536,
            lost: 12,
        });
        assert_eq!(
            w,
            "probe map CPU_SAMPLES (65536 entries) was full in the per-call pass: 12 CPU samples \
             were not kept, and the CPU flame graph, shares and costs leave them out; shorten the \
             phases or lower probes.cpu.frequency_hz"
        );
    }

    fn s(frames: &[&str], n: u64) -> ResolvedSample {
        ResolvedSample {
            graph: Graph::Cpu,
            tgid: 1,
            tid: 1,
            thread_name: "w".into(),
            frames: frames
                .iter()
                .map(|f| Frame {
                    name: Arc::from(*f),
                    kernel: false,
                })
                .collect(),
            user_depth: frames.len(),
            weight: n,
            window: Some(0),
            slot: 0,
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
    fn syscall_rows_sum_threads_and_carry_the_histogram() {
        let mut hist = vec![0; LATENCY_BUCKETS as usize];
        hist[0] = 1;
        hist[10] = 4;
        let rec = |tid, count, total_ns, max_ns| SyscallRecord {
            tgid: 1,
            tid,
            nr: 0,
            name: "read".into(),
            stats: bench_common::SyscallStats {
                count,
                total_ns,
                max_ns,
                bytes: 5,
                errors: 0,
            },
        };
        let records = [rec(1, 2, 3000, 1500), rec(2, 3, 2000, 900)];
        let hists = HashMap::from([((1, 0), hist)]);
        let rows = syscall_rows(records.iter(), &hists);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].count,
                rows[0].total_ns,
                rows[0].max_ns,
                rows[0].bytes
            ),
            (5, 5000, 1500, 10)
        );
        assert_eq!(rows[0].mean_ns, 1000.0);
        assert_eq!(rows[0].latency.len(), 2);
        let b = &rows[0].latency[1];
        assert_eq!((b.ge_ns, b.lt_ns, b.count), (1024, 2048, 4));
    }

    #[test]
    fn allocation_sites_skip_the_allocator() {
        assert!(is_allocator_frame("malloc"));
        assert!(is_allocator_frame("alloc::raw_vec::RawVec<T>::allocate_in"));
        assert!(is_allocator_frame("runtime.mallocgc"));
        assert!(is_allocator_frame("__GI___libc_malloc"));
        assert!(is_allocator_frame("bench_proto::alloc"));
        assert!(!is_allocator_frame("keep_for_connection"));
        assert!(!is_allocator_frame("bench_proto::relay::Pump::pump"));
    }
}
