//! Attach and read the syscalls probe.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{MapData, PerCpuHashMap},
    programs::RawTracePoint,
    Ebpf,
};
use bench_common::{SyscallHistKey, SyscallKey, SyscallStats, LATENCY_BUCKETS};

use super::{CaptureError, SyscallRecord};

pub(super) fn attach(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    for (name, event) in [("pp_sys_enter", "sys_enter"), ("pp_sys_exit", "sys_exit")] {
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or(CaptureError::Missing(name))?
            .try_into()
            .map_err(|source| CaptureError::Program { name, source })?;
        program
            .load()
            .map_err(|source| CaptureError::Program { name, source })?;
        program
            .attach(event)
            .map_err(|source| CaptureError::Program { name, source })?;
    }
    Ok(())
}

pub(super) fn read(ebpf: &mut Ebpf) -> Result<Vec<SyscallRecord>, CaptureError> {
    let map_err = |name| move |source| CaptureError::Map { name, source };
    let stats: PerCpuHashMap<&MapData, SyscallKey, SyscallStats> = PerCpuHashMap::try_from(
        ebpf.map("SYSCALLS")
            .ok_or(CaptureError::Missing("SYSCALLS"))?,
    )
    .map_err(map_err("SYSCALLS"))?;
    let mut records: StdHashMap<SyscallKey, SyscallRecord> = StdHashMap::new();
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
        records.insert(
            key,
            SyscallRecord {
                tgid: key.tgid,
                nr: key.nr,
                name: syscall_name(key.nr),
                stats: sum,
                histogram: vec![0; LATENCY_BUCKETS as usize],
            },
        );
    }
    let hist: PerCpuHashMap<&MapData, SyscallHistKey, u64> = PerCpuHashMap::try_from(
        ebpf.map("SYSCALL_HIST")
            .ok_or(CaptureError::Missing("SYSCALL_HIST"))?,
    )
    .map_err(map_err("SYSCALL_HIST"))?;
    for entry in hist.iter() {
        let (key, per_cpu) = entry.map_err(map_err("SYSCALL_HIST"))?;
        let k = SyscallKey {
            tgid: key.tgid,
            nr: key.nr,
        };
        if let Some(r) = records.get_mut(&k) {
            if let Some(slot) = r.histogram.get_mut(key.bucket as usize) {
                *slot += per_cpu.iter().sum::<u64>();
            }
        }
    }
    let mut out: Vec<SyscallRecord> = records.into_values().collect();
    out.sort_by(|a, b| {
        (a.tgid, std::cmp::Reverse(a.stats.count)).cmp(&(b.tgid, std::cmp::Reverse(b.stats.count)))
    });
    Ok(out)
}

/// x86_64 syscall name, or `syscall_<nr>` for numbers the table lacks.
pub fn syscall_name(nr: u32) -> String {
    syscalls::x86_64::Sysno::new(nr as usize)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}
