//! Attach and read the offcpu probe.

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};
use bench_common::{OffCpuKey, OffCpuValue};

use super::{stacks::StackReader, CaptureError, Graph, StackRecord};

/// `floor`: the empty program instead (see `CaptureOptions::floor`).
pub(super) fn attach(ebpf: &mut Ebpf, floor: bool) -> Result<(), CaptureError> {
    let name = if floor {
        "pp_floor_sched_switch"
    } else {
        "pp_sched_switch"
    };
    super::attach_raw_tracepoint(ebpf, name, "sched_switch")
}

/// Off-CPU time by stack, weighted in microseconds.
pub(super) fn read(
    ebpf: &Ebpf,
    stacks: &mut StackReader,
) -> Result<Vec<StackRecord>, CaptureError> {
    let map: HashMap<&MapData, OffCpuKey, OffCpuValue> = HashMap::try_from(
        ebpf.map("OFFCPU").ok_or(CaptureError::Missing("OFFCPU"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "OFFCPU",
        source,
    })?;
    let mut out = Vec::new();
    for entry in map.iter() {
        let (key, value) = entry.map_err(|source| CaptureError::Map {
            name: "OFFCPU",
            source,
        })?;
        out.push(StackRecord {
            graph: Graph::OffCpu,
            tgid: key.tgid,
            tid: key.tid,
            user: stacks.user(key.user_stack),
            kernel: stacks.kernel(i64::from(key.kernel_stack_id)),
            leaf: None,
            weight: value.total_ns / 1000,
        });
    }
    Ok(out)
}
