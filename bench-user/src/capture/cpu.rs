//! Attach and read the cpu sampling probe.

use aya::{
    maps::{HashMap, MapData},
    programs::{
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        PerfEvent,
    },
    Ebpf,
};
use bench_common::StackKey;

use super::{stacks::StackReader, CaptureError, Graph, StackRecord};

const NAME: &str = "pp_cpu_sample";
const FLOOR: &str = "pp_floor_cpu_sample";

/// One software cpu-clock event per online CPU, every process on it; the
/// program itself keeps only the target processes. `floor`: the empty
/// program instead (see `CaptureOptions::floor`).
pub(super) fn attach(ebpf: &mut Ebpf, frequency_hz: u64, floor: bool) -> Result<(), CaptureError> {
    let name = if floor { FLOOR } else { NAME };
    let program: &mut PerfEvent = ebpf
        .program_mut(name)
        .ok_or(CaptureError::Missing(name))?
        .try_into()
        .map_err(|source| CaptureError::Program { name, source })?;
    program
        .load()
        .map_err(|source| CaptureError::Program { name, source })?;
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
            .map_err(|source| CaptureError::Program { name, source })?;
    }
    Ok(())
}

pub(super) fn read(
    ebpf: &Ebpf,
    stacks: &mut StackReader,
) -> Result<Vec<StackRecord>, CaptureError> {
    let samples: HashMap<&MapData, StackKey, u64> = HashMap::try_from(
        ebpf.map("CPU_SAMPLES")
            .ok_or(CaptureError::Missing("CPU_SAMPLES"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "CPU_SAMPLES",
        source,
    })?;
    let mut out = Vec::new();
    for entry in samples.iter() {
        let (key, count) = entry.map_err(|source| CaptureError::Map {
            name: "CPU_SAMPLES",
            source,
        })?;
        out.push(StackRecord {
            graph: Graph::Cpu,
            tgid: key.tgid,
            tid: key.tid,
            user: stacks.user(key.user_stack),
            kernel: stacks.kernel(i64::from(key.kernel_stack_id)),
            leaf: None,
            weight: count,
            window: Some(u32::from(key.window)),
            slot: key.slot,
        });
    }
    Ok(out)
}
