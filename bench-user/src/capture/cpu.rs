//! Attach and read the cpu sampling probe.

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};
use bench_common::StackKey;

use super::{
    program_links::{self, ProgramLink},
    stacks::StackReader,
    CaptureError, Graph, StackRecord,
};

const NAME: &str = "pp_cpu_sample";
const FLOOR: &str = "pp_floor_cpu_sample";

/// One software cpu-clock event per online CPU, every process on it; the
/// program itself keeps only the target processes. `floor`: the empty
/// program instead (see `CaptureOptions::floor`).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    frequency_hz: u64,
    floor: bool,
) -> Result<ProgramLink, CaptureError> {
    let name = if floor { FLOOR } else { NAME };
    program_links::attach_cpu_clock(ebpf, name, frequency_hz)
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
