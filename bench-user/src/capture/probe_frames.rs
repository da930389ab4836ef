//! Our probes' own frames in the stacks they record.
//!
//! A kernel stack taken inside a probe (off-CPU stacks come from
//! `sched_switch`) ends in the probe's program and the tracing code that
//! called it; a CPU sample that lands while a probe runs holds the same
//! frames. None of that is the target's work. [`probe_cut`] finds where
//! those frames begin so that resolve can drop them (off-CPU stacks then end
//! where the thread blocked, in `__schedule`) or, for CPU samples, fold them
//! into one `[profiler] <program>` frame that `profiles/attribution.toml`
//! puts in the `profiler` category, apart from the target's costs.

use std::sync::OnceLock;

use super::PROGRAM_NAMES;

/// The frame a CPU sample inside one of our probes ends in.
pub const PROFILER_FRAME_PREFIX: &str = "[profiler] ";

/// Where the probe's frames begin in a kernel stack (outermost first), and
/// which of our functions it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCut {
    /// Index of the first (outermost) frame that is the probe's.
    pub start: usize,
    pub program: String,
}

/// Names of every function in our probe object: the programs and the
/// subprograms they call (e.g. `memset`), each of which kallsyms lists as
/// `bpf_prog_<tag>_<name>` once JITed.
fn object_functions() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = PROGRAM_NAMES.iter().map(|p| p.to_string()).collect();
        if let Ok(obj) = aya_obj::Object::parse(super::PROBES_OBJECT) {
            names.extend(obj.functions.values().map(|f| f.name.clone()));
        }
        names.sort();
        names.dedup();
        names
    })
}

/// The function of our probe object a kernel symbol names:
/// `bpf_prog_<tag>_<name>` as kallsyms lists JITed code (the name cut to
/// 15 bytes), or a bare program name.
fn program_of(symbol: &str) -> Option<&'static str> {
    let name = match symbol.strip_prefix("bpf_prog_") {
        Some(rest) => rest.split_once('_').map_or(rest, |(_tag, name)| name),
        // A bare name counts only for our programs, never for a kernel
        // function that shares a subprogram's name (memset).
        None if symbol.starts_with("pp_") => symbol,
        None => return None,
    };
    if name.is_empty() {
        return None;
    }
    let matches = |f: &&String| f.as_str() == name || (name.len() >= 15 && f.starts_with(name));
    object_functions().iter().find(matches).map(String::as_str)
}

/// The kernel's glue between an attach point and a program: what runs only
/// because a probe is attached (the syscall tracepoints' slow path, the
/// tracepoint and perf-event dispatch).
fn is_dispatch(symbol: &str) -> bool {
    const EXACT: &[&str] = &[
        "syscall_trace_enter",
        "syscall_exit_work",
        "syscall_exit_to_user_mode_prepare",
        "trace_call_bpf",
        "bpf_overflow_handler",
        "__perf_event_overflow",
        "perf_event_overflow",
        "perf_swevent_hrtimer",
        "perf_trace_run_bpf_submit",
        "migrate_disable",
        "migrate_enable",
        "__rcu_read_lock",
        "__rcu_read_unlock",
    ];
    EXACT.contains(&symbol)
        || [
            "bpf_trace_run",
            "__bpf_trace_",
            "__traceiter_",
            "trace_sys_",
            "__bpf_prog_run",
        ]
        .iter()
        .any(|p| symbol.starts_with(p))
}

/// Where our probe's frames begin in `kernel` (names, outermost first), or
/// `None` when the stack holds no probe frame. Everything from the
/// outermost probe frame inwards is the probe's (helpers it called, maps it
/// touched), and so are the dispatch frames right outside it.
pub fn probe_cut(kernel: &[&str]) -> Option<ProbeCut> {
    let (at, program) = kernel
        .iter()
        .enumerate()
        .find_map(|(i, name)| program_of(name).map(|p| (i, p)))?;
    let mut start = at;
    while start > 0 && is_dispatch(kernel[start - 1]) {
        start -= 1;
    }
    Some(ProbeCut {
        start,
        program: program.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offcpu_stack_is_cut_at_the_scheduler() {
        let stack = [
            "entry_SYSCALL_64",
            "do_syscall_64",
            "__x64_sys_epoll_wait",
            "schedule_hrtimeout_range",
            "schedule",
            "__schedule",
            "__traceiter_sched_switch",
            "bpf_trace_run4",
            "bpf_prog_6deef7357e7b4530_pp_sched_switch",
        ];
        assert_eq!(
            probe_cut(&stack),
            Some(ProbeCut {
                start: 6,
                program: "pp_sched_switch".into()
            })
        );
    }

    #[test]
    fn cpu_sample_inside_a_probe_names_it() {
        let stack = [
            "entry_SYSCALL_64",
            "do_syscall_64",
            "syscall_trace_enter",
            "trace_sys_enter",
            "__traceiter_sys_enter",
            "bpf_trace_run2",
            "bpf_prog_0123456789abcdef_pp_sys_enter",
            "htab_map_lookup_elem",
        ];
        assert_eq!(
            probe_cut(&stack),
            Some(ProbeCut {
                start: 2,
                program: "pp_sys_enter".into()
            })
        );
        // Truncated by the kernel to 15 bytes, and without the tag.
        assert_eq!(
            probe_cut(&["do_syscall_64", "pp_floor_sys_en"]).map(|c| c.program),
            Some("pp_floor_sys_enter".to_string())
        );
        // A subprogram of our object; the unwinder stops at JITed code.
        assert_eq!(
            probe_cut(&[
                "bpf_prog_4f9302ba65b90ccd_memset",
                "__pi___x86_indirect_thunk_rax"
            ]),
            Some(ProbeCut {
                start: 0,
                program: "memset".into()
            })
        );
        // The kernel's own memset is the target's.
        assert_eq!(probe_cut(&["do_syscall_64", "memset"]), None);
    }

    #[test]
    fn other_programs_and_plain_stacks_are_left_alone() {
        assert_eq!(probe_cut(&["do_syscall_64", "tcp_sendmsg"]), None);
        assert_eq!(
            probe_cut(&["do_syscall_64", "bpf_prog_0123456789abcdef_sd_fw_ingress"]),
            None
        );
        assert_eq!(probe_cut(&[]), None);
    }
}
