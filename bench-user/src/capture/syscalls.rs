//! Attach and read the syscalls probe.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{MapData, PerCpuHashMap},
    Ebpf,
};
use bench_common::{SyscallKey, SyscallStackKey, SyscallStats, SyscallValue, LATENCY_BUCKETS};

use super::{
    program_links::{self, ProgramLink},
    stacks::StackReader,
    CaptureError, Graph, StackRecord, SyscallRecord,
};

/// `timed`: a program at entry and one at exit; otherwise the counting
/// program at exit alone (`CaptureOptions::syscall_time`). `floor`: the
/// empty programs on the same points instead (`CaptureOptions::floor`).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    floor: bool,
    timed: bool,
) -> Result<Vec<ProgramLink>, CaptureError> {
    let programs: &[(&str, &str)] = match (floor, timed) {
        (false, true) => &[("pp_sys_enter", "sys_enter"), ("pp_sys_exit", "sys_exit")],
        (false, false) => &[("pp_sys_exit_count", "sys_exit")],
        (true, true) => &[
            ("pp_floor_sys_enter", "sys_enter"),
            ("pp_floor_sys_exit", "sys_exit"),
        ],
        (true, false) => &[("pp_floor_sys_exit", "sys_exit")],
    };
    programs
        .iter()
        .map(|&(name, event)| program_links::attach_tracepoint(ebpf, name, event))
        .collect()
}

/// The per-CPU (thread, syscall) entries, summed over CPUs.
fn read_values(ebpf: &Ebpf) -> Result<Vec<(SyscallKey, SyscallValue)>, CaptureError> {
    let map_err = |source| CaptureError::Map {
        name: "SYSCALLS",
        source,
    };
    let values: PerCpuHashMap<&MapData, SyscallKey, SyscallValue> = PerCpuHashMap::try_from(
        ebpf.map("SYSCALLS")
            .ok_or(CaptureError::Missing("SYSCALLS"))?,
    )
    .map_err(map_err)?;
    let mut out = Vec::new();
    for entry in values.iter() {
        let (key, per_cpu) = entry.map_err(map_err)?;
        let mut sum = SyscallValue {
            stats: SyscallStats::default(),
            latency: [0; LATENCY_BUCKETS as usize],
        };
        for v in per_cpu.iter() {
            let s = &v.stats;
            sum.stats.count += s.count;
            sum.stats.total_ns += s.total_ns;
            sum.stats.max_ns = sum.stats.max_ns.max(s.max_ns);
            sum.stats.bytes += s.bytes;
            sum.stats.errors += s.errors;
            for (total, n) in sum.latency.iter_mut().zip(v.latency) {
                *total += n;
            }
        }
        out.push((key, sum));
    }
    Ok(out)
}

/// Per (thread, syscall) records.
pub(super) fn read(ebpf: &Ebpf) -> Result<Vec<SyscallRecord>, CaptureError> {
    let mut out: Vec<SyscallRecord> = read_values(ebpf)?
        .into_iter()
        .map(|(key, value)| SyscallRecord {
            tgid: key.tgid,
            tid: key.tid,
            nr: key.nr,
            name: syscall_name(key.nr),
            stats: value.stats,
        })
        .collect();
    out.sort_by(|a, b| {
        (a.tgid, a.tid, std::cmp::Reverse(a.stats.count)).cmp(&(
            b.tgid,
            b.tid,
            std::cmp::Reverse(b.stats.count),
        ))
    });
    Ok(out)
}

/// Process-wide latency histograms: (tgid, nr) → calls per log2 bucket,
/// summed over the process's threads.
pub(super) fn read_histograms(
    ebpf: &Ebpf,
) -> Result<StdHashMap<(u32, u32), Vec<u64>>, CaptureError> {
    let mut out: StdHashMap<(u32, u32), Vec<u64>> = StdHashMap::new();
    for (key, value) in read_values(ebpf)? {
        let h = out
            .entry((key.tgid, key.nr))
            .or_insert_with(|| vec![0; LATENCY_BUCKETS as usize]);
        for (total, n) in h.iter_mut().zip(value.latency) {
            *total += n;
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
            kernel: Default::default(),
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
