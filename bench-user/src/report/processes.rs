//! The processes of each target: the endpoint process itself and the
//! processes it forked (or forked and exec'd) during the run, whose
//! figures count as the target's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capture::{process_tree::ProcessTree, Capture};

/// One process of a target's process tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetProcess {
    pub pid: u32,
    /// The process that forked it; absent for the target's own process.
    pub parent: Option<u32>,
    /// Its name (comm) as last read while it lived.
    pub comm: String,
    /// Its executable as last read while it lived (after its last exec).
    pub exe: String,
    /// Times it called execve while followed.
    pub execs: u32,
    /// Whether it exited before the runner read the probes.
    pub exited: bool,
    /// Syscalls it made in the measured windows (all passes' windows of
    /// the main pass).
    pub syscalls: u64,
    /// CPU samples taken in it in the measured windows.
    pub cpu_samples: u64,
}

/// Target `pid`'s processes, itself first, then its children in pid order.
pub fn of_target(capture: &Capture, pid: u32) -> Vec<TargetProcess> {
    of_tree(&capture.tree, capture, pid)
}

fn of_tree(tree: &ProcessTree, capture: &Capture, pid: u32) -> Vec<TargetProcess> {
    let mut out: Vec<TargetProcess> = tree
        .processes()
        .filter(|p| p.root == pid)
        .map(|p| {
            let counts = capture
                .process_counts
                .get(&p.pid)
                .copied()
                .unwrap_or_default();
            TargetProcess {
                pid: p.pid,
                parent: p.parent,
                comm: p.comm.clone(),
                exe: p.exe.clone(),
                execs: p.execs,
                exited: p.exited,
                syscalls: counts.syscalls,
                cpu_samples: counts.cpu_samples,
            }
        })
        .collect();
    // The target first: it has no parent in its own tree.
    out.sort_by_key(|p| (p.parent.is_some(), p.pid));
    out
}
