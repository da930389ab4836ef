//! Attach and read the offcpu probe.
//!
//! The probe counts an off-CPU interval when the thread is switched in
//! inside a window, from the window's opening at the earliest. The part of
//! an interval still open when a window closes (a thread blocked across the
//! edge) is counted here, by [`count_open_intervals`], as the window closes:
//! intervals are split at window edges, not dropped or lumped into the next
//! window.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};
use bench_common::{OffCpuKey, OffCpuStart, OffCpuValue};

use super::{
    program_links::{self, ProgramLink},
    stacks::StackReader,
    CaptureError, Graph, StackRecord,
};

/// `floor`: the empty program instead (see `CaptureOptions::floor`).
pub(super) fn attach(ebpf: &mut Ebpf, floor: bool) -> Result<ProgramLink, CaptureError> {
    let name = if floor {
        "pp_floor_sched_switch"
    } else {
        "pp_sched_switch"
    };
    program_links::attach_tracepoint(ebpf, name, "sched_switch")
}

/// The window `[start_ns, end_ns)` that just closed, as CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClosedWindow {
    pub index: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The in-window part of an interval that began at `start_ns` and was still
/// open when window `w` closed; 0 when it began after the window closed.
pub(super) fn open_part(start_ns: u64, w: ClosedWindow) -> u64 {
    if start_ns == 0 || start_ns >= w.end_ns {
        return 0;
    }
    w.end_ns - start_ns.max(w.start_ns)
}

/// Add to `tails` the in-window part of every interval still open as
/// window `w` closed (threads off CPU at its closing edge). Threads that
/// have exited are left out: their last interval never ended.
pub(super) fn count_open_intervals(
    ebpf: &Ebpf,
    w: ClosedWindow,
    tails: &mut StdHashMap<OffCpuKey, u64>,
) -> Result<(), CaptureError> {
    let map: HashMap<&MapData, u32, OffCpuStart> = HashMap::try_from(
        ebpf.map("OFFCPU_START")
            .ok_or(CaptureError::Missing("OFFCPU_START"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "OFFCPU_START",
        source,
    })?;
    for entry in map.iter() {
        let (tid, start) = entry.map_err(|source| CaptureError::Map {
            name: "OFFCPU_START",
            source,
        })?;
        let ns = open_part(start.start_ns, w);
        if ns == 0 {
            continue;
        }
        let alive = std::path::Path::new(&format!("/proc/{}/task/{tid}", start.tgid)).exists();
        if !alive {
            continue;
        }
        let key = OffCpuKey {
            tgid: start.tgid,
            tid,
            user_stack: start.user_stack,
            kernel_stack_id: start.kernel_stack_id as i32,
            window: w.index,
        };
        *tails.entry(key).or_default() += ns;
    }
    Ok(())
}

/// Off-CPU time by stack and window, weighted in microseconds, with the
/// open intervals counted at the windows' closing edges.
pub(super) fn read(
    ebpf: &Ebpf,
    stacks: &mut StackReader,
    tails: &StdHashMap<OffCpuKey, u64>,
) -> Result<Vec<StackRecord>, CaptureError> {
    let map: HashMap<&MapData, OffCpuKey, OffCpuValue> = HashMap::try_from(
        ebpf.map("OFFCPU").ok_or(CaptureError::Missing("OFFCPU"))?,
    )
    .map_err(|source| CaptureError::Map {
        name: "OFFCPU",
        source,
    })?;
    let mut by_key: StdHashMap<OffCpuKey, u64> = tails.clone();
    for entry in map.iter() {
        let (key, value) = entry.map_err(|source| CaptureError::Map {
            name: "OFFCPU",
            source,
        })?;
        *by_key.entry(key).or_default() += value.total_ns;
    }
    let mut out = Vec::new();
    for (key, ns) in by_key {
        out.push(StackRecord {
            graph: Graph::OffCpu,
            tgid: key.tgid,
            tid: key.tid,
            user: stacks.user(key.user_stack),
            kernel: stacks.kernel(i64::from(key.kernel_stack_id)),
            leaf: None,
            weight: ns / 1000,
            window: Some(key.window),
            slot: 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_intervals_count_their_in_window_part_only() {
        let w = ClosedWindow {
            index: 1,
            start_ns: 1_000,
            end_ns: 5_000,
        };
        // Blocked since before the window opened: the whole window.
        assert_eq!(open_part(400, w), 4_000);
        // Blocked inside it: from its start to the closing edge.
        assert_eq!(open_part(3_500, w), 1_500);
        // Switched out after the window closed, or already counted.
        assert_eq!(open_part(5_000, w), 0);
        assert_eq!(open_part(0, w), 0);
    }
}
