//! Attach and read the cpu sampling probe.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{HashMap, MapData, StackTraceMap},
    programs::{
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        PerfEvent,
    },
    Ebpf,
};
use bench_common::{StackKey, UserStack};

use super::{CaptureError, CpuRecord};

const NAME: &str = "pp_cpu_sample";

/// One software cpu-clock event per online CPU, every process on it; the
/// program itself keeps only the target processes.
pub(super) fn attach(ebpf: &mut Ebpf, frequency_hz: u64) -> Result<(), CaptureError> {
    let program: &mut PerfEvent = ebpf
        .program_mut(NAME)
        .ok_or(CaptureError::Missing(NAME))?
        .try_into()
        .map_err(|source| CaptureError::Program { name: NAME, source })?;
    program
        .load()
        .map_err(|source| CaptureError::Program { name: NAME, source })?;
    let cpus =
        aya::util::online_cpus().map_err(|(what, e)| CaptureError::Cpus(format!("{what}: {e}")))?;
    for cpu in cpus {
        program
            .attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(frequency_hz),
                false,
            )
            .map_err(|source| CaptureError::Program { name: NAME, source })?;
    }
    Ok(())
}

pub(super) fn read(ebpf: &mut Ebpf) -> Result<Vec<CpuRecord>, CaptureError> {
    let samples: HashMap<&MapData, StackKey, u64> = HashMap::try_from(
        ebpf.map("CPU_SAMPLES")
            .ok_or(CaptureError::Missing("CPU_SAMPLES"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "CPU_SAMPLES",
        source,
    })?;
    let kernel_stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(
        ebpf.map("KERNEL_STACKS")
            .ok_or(CaptureError::Missing("KERNEL_STACKS"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "KERNEL_STACKS",
        source,
    })?;
    let user_stacks: HashMap<&MapData, u64, UserStack> = HashMap::try_from(
        ebpf.map("USER_STACKS")
            .ok_or(CaptureError::Missing("USER_STACKS"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "USER_STACKS",
        source,
    })?;
    let mut kernel_cache: StdHashMap<i32, Vec<u64>> = StdHashMap::new();
    let mut user_cache: StdHashMap<u64, Vec<u64>> = StdHashMap::new();
    let mut names: StdHashMap<(u32, u32), String> = StdHashMap::new();
    let mut out = Vec::new();
    for entry in samples.iter() {
        let (key, count) = entry.map_err(|source| CaptureError::Map {
            name: "CPU_SAMPLES",
            source,
        })?;
        let thread_name = names
            .entry((key.tgid, key.tid))
            .or_insert_with(|| thread_name(key.tgid, key.tid))
            .clone();
        let kernel = if key.kernel_stack_id < 0 {
            Vec::new()
        } else {
            kernel_cache
                .entry(key.kernel_stack_id)
                .or_insert_with(
                    || match kernel_stacks.get(&(key.kernel_stack_id as u32), 0) {
                        Ok(trace) => trace.frames().iter().map(|f| f.ip).collect(),
                        Err(_) => Vec::new(),
                    },
                )
                .clone()
        };
        let user = if key.user_stack == 0 {
            Vec::new()
        } else {
            user_cache
                .entry(key.user_stack)
                .or_insert_with(|| match user_stacks.get(&key.user_stack, 0) {
                    Ok(s) => s.ips[..(s.len as usize).min(s.ips.len())].to_vec(),
                    Err(_) => Vec::new(),
                })
                .clone()
        };
        out.push(CpuRecord {
            tgid: key.tgid,
            tid: key.tid,
            thread_name,
            user_error: user.is_empty().then_some(-1),
            user,
            kernel,
            count,
        });
    }
    Ok(out)
}

/// The thread's name from /proc, or its tid once it has exited.
fn thread_name(tgid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| format!("tid-{tid}"))
}
