//! Empty programs on the attach points of the main pass's probes. With
//! `probes.floor = true` the runner attaches these instead of the real
//! ones: what they cost is what any program on those points costs (the
//! tracepoints' slow paths and the BPF dispatch), the floor that no change
//! to the probes' own code can go below.

use aya_ebpf::{
    macros::{perf_event, raw_tracepoint},
    programs::{PerfEventContext, RawTracePointContext},
};

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn pp_floor_sys_enter(_ctx: RawTracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn pp_floor_sys_exit(_ctx: RawTracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn pp_floor_sched_switch(_ctx: RawTracePointContext) -> u32 {
    0
}

#[perf_event]
pub fn pp_floor_cpu_sample(_ctx: PerfEventContext) -> u32 {
    0
}
