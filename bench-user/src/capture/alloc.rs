//! Attach and read the alloc probe.
//!
//! The allocator is found, not assumed: every file the target has mapped is
//! searched for the entry points of glibc's malloc family, jemalloc (as
//! Rust's tikv-jemallocator exports it) and mimalloc, and, in Go binaries,
//! `runtime.mallocgc`. Each is probed where it is defined.

use std::collections::BTreeMap;

use aya::{
    maps::{HashMap, MapData, PerCpuHashMap},
    Ebpf,
};
use bench_common::{
    alloc_fn, AllocHistKey, AllocKey, AllocStackKey, AllocStackValue, AllocStats, LiveAlloc,
    LATENCY_BUCKETS,
};
use serde::{Deserialize, Serialize};

use super::{
    elf::ElfFile,
    stacks::StackReader,
    uprobes::{Point, UprobeSet},
    CaptureError, Graph, StackRecord,
};

/// Symbol name → allocator entry point. The argument layouts of the
/// jemalloc and mimalloc entries match the libc function named.
const ENTRY_POINTS: &[(&str, u64)] = &[
    ("malloc", alloc_fn::MALLOC),
    ("calloc", alloc_fn::CALLOC),
    ("realloc", alloc_fn::REALLOC),
    ("posix_memalign", alloc_fn::POSIX_MEMALIGN),
    ("aligned_alloc", alloc_fn::ALIGNED_ALLOC),
    ("free", alloc_fn::FREE),
    // tikv-jemallocator: mallocx(size, flags), rallocx(ptr, size, flags),
    // sdallocx(ptr, size, flags).
    ("_rjem_malloc", alloc_fn::MALLOC),
    ("_rjem_mallocx", alloc_fn::MALLOC),
    ("_rjem_calloc", alloc_fn::CALLOC),
    ("_rjem_realloc", alloc_fn::REALLOC),
    ("_rjem_rallocx", alloc_fn::REALLOC),
    ("_rjem_free", alloc_fn::FREE),
    ("_rjem_sdallocx", alloc_fn::FREE),
    // mimalloc: mi_malloc_aligned(size, align), mi_realloc_aligned(p, size, align).
    ("mi_malloc", alloc_fn::MALLOC),
    ("mi_malloc_aligned", alloc_fn::MALLOC),
    ("mi_zalloc_aligned", alloc_fn::MALLOC),
    ("mi_calloc", alloc_fn::CALLOC),
    ("mi_realloc", alloc_fn::REALLOC),
    ("mi_realloc_aligned", alloc_fn::REALLOC),
    ("mi_free", alloc_fn::FREE),
    ("runtime.mallocgc", alloc_fn::GO_MALLOCGC),
];

/// One allocator entry point the probe attached to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocAttach {
    pub symbol: String,
    pub file: String,
    /// The counting role (malloc, calloc, …, free, runtime.mallocgc).
    pub role: String,
    /// Whether its return was probed too (for live bytes).
    pub return_probe: bool,
}

/// Find the allocator entry points of process `pid` and add them to the
/// uprobe set. Returns what will be attached.
pub(super) fn points(
    set: &mut UprobeSet,
    pid: u32,
    files: &[ElfFile],
    live: bool,
) -> Vec<AllocAttach> {
    let mut attached = Vec::new();
    for file in files {
        for (symbol, func) in ENTRY_POINTS {
            let Some(f) = file.named(symbol).next() else {
                continue;
            };
            let Some(offset) = file.file_offset(f.address) else {
                continue;
            };
            let program = if *func == alloc_fn::FREE {
                "pp_free"
            } else {
                "pp_alloc"
            };
            let point = |program| Point {
                program,
                path: file.path.clone(),
                offset,
                cookie: *func,
                pid,
            };
            set.add(point(program));
            // Never a return probe on Go: its stacks move, and a uretprobe's
            // return trampoline breaks them.
            let return_probe = live && !file.is_go && *func != alloc_fn::FREE;
            if return_probe {
                set.add(point("pp_alloc_ret"));
            }
            attached.push(AllocAttach {
                symbol: symbol.to_string(),
                file: file.path.display().to_string(),
                role: alloc_fn::NAMES[*func as usize].to_string(),
                return_probe,
            });
        }
    }
    attached
}

/// Calls and bytes of one entry point in one thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocRecord {
    pub tgid: u32,
    pub tid: u32,
    /// The measured window (phase).
    pub window: u32,
    pub role: String,
    pub calls: u64,
    pub bytes: u64,
}

/// What the alloc probe saw.
#[derive(Debug, Clone, Default)]
pub struct AllocCapture {
    pub records: Vec<AllocRecord>,
    /// (tgid, role, window) → calls per log2 size bucket.
    pub size_histograms: BTreeMap<(u32, String, u32), Vec<u64>>,
    /// Sampled stacks, weighted by bytes ([`Graph::AllocBytes`]) and by
    /// calls ([`Graph::AllocCalls`]).
    pub stacks: Vec<StackRecord>,
    /// Samples taken, per tgid.
    pub samples: BTreeMap<u32, u64>,
}

pub(super) fn read(ebpf: &Ebpf, stacks: &mut StackReader) -> Result<AllocCapture, CaptureError> {
    let map = |name: &'static str| ebpf.map(name).ok_or(CaptureError::Missing(name));
    let err = |name: &'static str| move |source| CaptureError::Map { name, source };
    let mut out = AllocCapture::default();

    let stats: PerCpuHashMap<&MapData, AllocKey, AllocStats> =
        PerCpuHashMap::try_from(map("ALLOC_STATS")?).map_err(err("ALLOC_STATS"))?;
    for entry in stats.iter() {
        let (k, per_cpu) = entry.map_err(err("ALLOC_STATS"))?;
        out.records.push(AllocRecord {
            tgid: k.tgid,
            tid: k.tid,
            window: k.window,
            role: role_name(k.func),
            calls: per_cpu.iter().map(|s| s.calls).sum(),
            bytes: per_cpu.iter().map(|s| s.bytes).sum(),
        });
    }
    out.records.sort_by(|a, b| {
        (a.tgid, a.tid, a.window, &a.role).cmp(&(b.tgid, b.tid, b.window, &b.role))
    });

    let hist: PerCpuHashMap<&MapData, AllocHistKey, u64> =
        PerCpuHashMap::try_from(map("ALLOC_HIST")?).map_err(err("ALLOC_HIST"))?;
    for entry in hist.iter() {
        let (k, per_cpu) = entry.map_err(err("ALLOC_HIST"))?;
        let h = out
            .size_histograms
            .entry((k.tgid, role_name(k.func), k.window))
            .or_insert_with(|| vec![0; LATENCY_BUCKETS as usize]);
        if let Some(slot) = h.get_mut(k.bucket as usize) {
            *slot += per_cpu.iter().sum::<u64>();
        }
    }

    let sampled: PerCpuHashMap<&MapData, AllocStackKey, AllocStackValue> =
        PerCpuHashMap::try_from(map("ALLOC_STACKS")?).map_err(err("ALLOC_STACKS"))?;
    for entry in sampled.iter() {
        let (k, per_cpu) = entry.map_err(err("ALLOC_STACKS"))?;
        let bytes: u64 = per_cpu.iter().map(|v| v.bytes).sum();
        let calls: u64 = per_cpu.iter().map(|v| v.calls).sum();
        let samples: u64 = per_cpu.iter().map(|v| v.samples).sum();
        *out.samples.entry(k.tgid).or_default() += samples;
        let user = stacks.user(k.user_stack);
        for (graph, weight) in [(Graph::AllocBytes, bytes), (Graph::AllocCalls, calls)] {
            out.stacks.push(StackRecord {
                graph,
                tgid: k.tgid,
                tid: k.tid,
                user: user.clone(),
                kernel: Default::default(),
                leaf: None,
                weight,
                window: Some(k.window),
                slot: 0,
            });
        }
    }

    // Sampled allocations not freed by now, by (process, thread, stack).
    // Empty unless return probes ran (`alloc.live`).
    let live: HashMap<&MapData, u64, LiveAlloc> =
        HashMap::try_from(map("LIVE")?).map_err(err("LIVE"))?;
    let mut unfreed: BTreeMap<(u32, u32, u64), u64> = BTreeMap::new();
    for entry in live.iter() {
        let (_, a) = entry.map_err(err("LIVE"))?;
        *unfreed.entry((a.tgid, a.tid, a.user_stack)).or_default() += a.bytes;
    }
    for ((tgid, tid, stack), bytes) in unfreed {
        out.stacks.push(StackRecord {
            graph: Graph::AllocUnfreed,
            tgid,
            tid,
            user: stacks.user(stack),
            kernel: Default::default(),
            leaf: None,
            weight: bytes,
            window: None,
            slot: 0,
        });
    }
    Ok(out)
}

fn role_name(func: u32) -> String {
    alloc_fn::NAMES
        .get(func as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("fn{func}"))
}

/// Live sampled bytes per tgid right now.
pub(super) fn live_bytes(ebpf: &Ebpf) -> Result<BTreeMap<u32, i64>, CaptureError> {
    let map = ebpf
        .map("LIVE_BYTES")
        .ok_or(CaptureError::Missing("LIVE_BYTES"))?;
    let live: PerCpuHashMap<&MapData, u32, i64> =
        PerCpuHashMap::try_from(map).map_err(|source| CaptureError::Map {
            name: "LIVE_BYTES",
            source,
        })?;
    let mut out = BTreeMap::new();
    for entry in live.iter() {
        let (tgid, per_cpu) = entry.map_err(|source| CaptureError::Map {
            name: "LIVE_BYTES",
            source,
        })?;
        out.insert(tgid, per_cpu.iter().sum());
    }
    Ok(out)
}
