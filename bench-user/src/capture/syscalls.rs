//! Attach and read the syscalls probe.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{MapData, PerCpuHashMap},
    Ebpf,
};
use bench_common::{SyscallHistKey, SyscallKey, SyscallStackKey, SyscallStats, LATENCY_BUCKETS};

use super::{stacks::StackReader, CaptureError, Graph, StackRecord, SyscallRecord};

/// `floor`: the empty programs instead (see `CaptureOptions::floor`).
pub(super) fn attach(ebpf: &mut Ebpf, floor: bool) -> Result<(), CaptureError> {
    let programs = if floor {
        [
            ("pp_floor_sys_enter", "sys_enter"),
            ("pp_floor_sys_exit", "sys_exit"),
        ]
    } else {
        [("pp_sys_enter", "sys_enter"), ("pp_sys_exit", "sys_exit")]
    };
    for (name, event) in programs {
        super::attach_raw_tracepoint(ebpf, name, event)?;
    }
    Ok(())
}

/// Per (thread, syscall) records.
pub(super) fn read(ebpf: &Ebpf) -> Result<Vec<SyscallRecord>, CaptureError> {
    let map_err = |name| move |source| CaptureError::Map { name, source };
    let stats: PerCpuHashMap<&MapData, SyscallKey, SyscallStats> = PerCpuHashMap::try_from(
        ebpf.map("SYSCALLS")
            .ok_or(CaptureError::Missing("SYSCALLS"))?,
    )
    .map_err(map_err("SYSCALLS"))?;
    let mut out = Vec::new();
    for entry in stats.iter() {
        let (key, per_cpu) = entry.map_err(map_err("SYSCALLS"))?;
        let mut sum = SyscallStats::default();
        for s in per_cpu.iter() {
            sum.count += s.count;
            sum.total_ns += s.total_ns;
            sum.max_ns = sum.max_ns.max(s.max_ns);
            sum.bytes += s.bytes;
            sum.errors += s.errors;
        }
        out.push(SyscallRecord {
            tgid: key.tgid,
            tid: key.tid,
            nr: key.nr,
            name: syscall_name(key.nr),
            stats: sum,
        });
    }
    out.sort_by(|a, b| {
        (a.tgid, a.tid, std::cmp::Reverse(a.stats.count)).cmp(&(
            b.tgid,
            b.tid,
            std::cmp::Reverse(b.stats.count),
        ))
    });
    Ok(out)
}

/// Process-wide latency histograms: (tgid, nr) → calls per log2 bucket.
pub(super) fn read_histograms(
    ebpf: &Ebpf,
) -> Result<StdHashMap<(u32, u32), Vec<u64>>, CaptureError> {
    let hist: PerCpuHashMap<&MapData, SyscallHistKey, u64> = PerCpuHashMap::try_from(
        ebpf.map("SYSCALL_HIST")
            .ok_or(CaptureError::Missing("SYSCALL_HIST"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "SYSCALL_HIST",
        source,
    })?;
    let mut out: StdHashMap<(u32, u32), Vec<u64>> = StdHashMap::new();
    for entry in hist.iter() {
        let (key, per_cpu) = entry.map_err(|source| CaptureError::Map {
            name: "SYSCALL_HIST",
            source,
        })?;
        let h = out
            .entry((key.tgid, key.nr))
            .or_insert_with(|| vec![0; LATENCY_BUCKETS as usize]);
        if let Some(slot) = h.get_mut(key.bucket as usize) {
            *slot += per_cpu.iter().sum::<u64>();
        }
    }
    Ok(out)
}

/// Sampled syscall stacks, the syscall's name on top.
pub(super) fn read_stacks(
    ebpf: &Ebpf,
    stacks: &mut StackReader,
) -> Result<Vec<StackRecord>, CaptureError> {
    let map: PerCpuHashMap<&MapData, SyscallStackKey, u64> = PerCpuHashMap::try_from(
        ebpf.map("SYSCALL_STACKS")
            .ok_or(CaptureError::Missing("SYSCALL_STACKS"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "SYSCALL_STACKS",
        source,
    })?;
    let mut out = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.map_err(|source| CaptureError::Map {
            name: "SYSCALL_STACKS",
            source,
        })?;
        out.push(StackRecord {
            graph: Graph::Syscalls,
            tgid: key.tgid,
            tid: key.tid,
            user: stacks.user(key.user_stack),
            kernel: Vec::new(),
            leaf: Some(syscall_name(key.nr)),
            weight: per_cpu.iter().sum(),
            window: None,
            slot: 0,
        });
    }
    Ok(out)
}

/// x86_64 syscall name, or `syscall_<nr>` for numbers the table lacks.
pub fn syscall_name(nr: u32) -> String {
    syscalls::x86_64::Sysno::new(nr as usize)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}
