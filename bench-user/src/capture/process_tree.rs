//! The targets' process trees: the processes each target forked (and what
//! they exec'd), followed by the process tree probe (bench-ebpf
//! `process_tree.rs`), which makes a forked child a target in the kernel as
//! it forks. Here the runner keeps, per process, its parent, name,
//! executable and mappings, read from /proc as the probe's events arrive
//! (at fork, at exec and for a short while after an exec, while the dynamic
//! loader maps the libraries), so that the frames of a child that exited
//! before the end can still be named. Every record of a child is counted as
//! its target's (the root process's): a server's workers are that server.

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsRawFd, RawFd},
    sync::{Arc, Mutex, MutexGuard},
};

use aya::maps::{MapData, RingBuf};
use bench_common::{
    ProcessEvent, ThreadTotals, PROCESS_EXEC, PROCESS_EXIT, PROCESS_FORK, PROCESS_THREAD_EXIT,
};

use super::{
    elf::{self, Mapping},
    per_call::{self, Follow},
    ring_reader::RingReader,
    stack_copies::AfterExec,
    Capture, CaptureError, Graph,
};

/// Attach the process tree programs (whatever else is on: they run only
/// when a process forks, execs or exits) and start reading their events.
pub(super) fn attach(ebpf: &mut aya::Ebpf) -> Result<Watcher, CaptureError> {
    for (name, event) in [
        ("pp_process_fork", "sched_process_fork"),
        ("pp_process_exec", "sched_process_exec"),
        ("pp_process_exit", "sched_process_exit"),
    ] {
        // Attached for good: the tree is followed between windows too.
        super::program_links::attach_tracepoint(ebpf, name, event)?;
    }
    let map = ebpf
        .take_map("PROCESS_EVENTS")
        .ok_or(CaptureError::Missing("PROCESS_EVENTS"))?;
    let ring = RingBuf::try_from(map).map_err(|source| CaptureError::Map {
        name: "PROCESS_EVENTS",
        source,
    })?;
    Watcher::start(ring).map_err(CaptureError::Watcher)
}

/// What one process did in the measured windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    pub syscalls: u64,
    pub cpu_samples: u64,
}

/// Count each process's own syscalls and CPU samples, then count every
/// child's records as its target's (stacks excepted: see
/// [`Capture::tree`]).
pub(super) fn fold_into_targets(capture: &mut Capture) {
    for r in &capture.syscalls {
        capture.process_counts.entry(r.tgid).or_default().syscalls += r.stats.count;
    }
    for s in capture.stacks.iter().filter(|s| s.graph == Graph::Cpu) {
        capture
            .process_counts
            .entry(s.tgid)
            .or_default()
            .cpu_samples += s.weight;
    }
    let roots = capture.tree.roots();
    if roots.is_empty() {
        return;
    }
    let root = |tgid: u32| *roots.get(&tgid).unwrap_or(&tgid);
    for r in &mut capture.syscalls {
        r.tgid = root(r.tgid);
    }
    let histograms = std::mem::take(&mut capture.syscall_histograms);
    for ((tgid, nr), buckets) in histograms {
        let sum = capture
            .syscall_histograms
            .entry((root(tgid), nr))
            .or_insert_with(|| vec![0; buckets.len()]);
        for (s, b) in sum.iter_mut().zip(&buckets) {
            *s += b;
        }
    }
    for r in &mut capture.alloc.records {
        r.tgid = root(r.tgid);
    }
    let sizes = std::mem::take(&mut capture.alloc.size_histograms);
    for ((tgid, role, window), buckets) in sizes {
        let sum = capture
            .alloc
            .size_histograms
            .entry((root(tgid), role, window))
            .or_insert_with(|| vec![0; buckets.len()]);
        for (s, b) in sum.iter_mut().zip(&buckets) {
            *s += b;
        }
    }
    let samples = std::mem::take(&mut capture.alloc.samples);
    for (tgid, n) in samples {
        *capture.alloc.samples.entry(root(tgid)).or_insert(0) += n;
    }
    for r in &mut capture.crypto {
        r.tgid = root(r.tgid);
    }
}

/// Thread exits kept between two window edges; more are dropped (and the
/// counters then miss those threads' last part).
const MAX_PENDING_EXITS: usize = 65_536;

/// Reads of a process's mappings after an exec (one per poll period): the
/// loader maps the libraries in the first milliseconds.
const READS_AFTER_EXEC: u8 = 20;
/// How long the watcher waits for events before re-reading mappings.
const POLL_MS: i32 = 5;

/// One process of a target's tree.
#[derive(Debug, Clone)]
pub struct TreeProcess {
    pub pid: u32,
    /// The process that forked it; `None` for a target itself.
    pub parent: Option<u32>,
    /// The target (runner-added process) whose tree it is in.
    pub root: u32,
    /// Its name (comm) as last read.
    pub comm: String,
    /// Its executable as last read.
    pub exe: String,
    /// Times it called execve while followed.
    pub execs: u32,
    /// Its main thread exited during the run.
    pub exited: bool,
    /// Its executable mappings as last read while it lived.
    pub mappings: Vec<Mapping>,
    /// µs from its fork (or last exec) until the per-call probes' links
    /// covered it; `None` when they never did (off, or nothing to probe).
    pub per_call_after_us: Option<u64>,
    /// When it forked or last exec'd, CLOCK_MONOTONIC ns (0: found in /proc).
    event_ns: u64,
    reads_left: u8,
}

impl TreeProcess {
    fn read(pid: u32, parent: Option<u32>, root: u32) -> TreeProcess {
        let mut p = TreeProcess {
            pid,
            parent,
            root,
            comm: String::new(),
            exe: String::new(),
            execs: 0,
            exited: false,
            mappings: Vec::new(),
            per_call_after_us: None,
            event_ns: 0,
            reads_left: 0,
        };
        p.reread();
        p
    }

    /// Its executable, then the other files it maps executable.
    fn files(&self) -> Vec<std::path::PathBuf> {
        let mut out: Vec<std::path::PathBuf> = Vec::new();
        if !self.exe.is_empty() {
            out.push(self.exe.clone().into());
        }
        for m in &self.mappings {
            if !out.contains(&m.path) {
                out.push(m.path.clone());
            }
        }
        out
    }

    /// Read name, executable and mappings again, keeping the last good
    /// ones when the process has gone.
    fn reread(&mut self) {
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)) {
            self.comm = comm.trim_end().to_string();
        }
        if let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", self.pid)) {
            self.exe = exe.display().to_string();
        }
        let mappings = elf::executable_mappings(self.pid);
        if !mappings.is_empty() {
            self.mappings = mappings;
        }
    }
}

/// A thread of a followed process that exited, with what the kernel had
/// counted for it (for the counters: it is gone from /proc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadExit {
    pub tgid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC ns.
    pub time_ns: u64,
    pub totals: ThreadTotals,
}

/// Every process followed so far, by pid.
#[derive(Debug, Clone, Default)]
pub struct ProcessTree {
    processes: BTreeMap<u32, TreeProcess>,
    /// Thread exits not yet taken by the counters.
    exits: Vec<ThreadExit>,
    /// Whether the per-call probes or the stack copies follow the
    /// children (then `follows` fills until the watcher takes it).
    follow: bool,
    follows: Vec<Follow>,
}

impl ProcessTree {
    /// A process the runner added (a target); its descendants that already
    /// exist are followed from now on too and returned.
    pub fn add_root(&mut self, pid: u32) -> Vec<u32> {
        self.processes
            .insert(pid, TreeProcess::read(pid, None, pid));
        let mut added = Vec::new();
        let mut parents = vec![pid];
        let all = parents_by_pid();
        while let Some(parent) = parents.pop() {
            for (&child, _) in all.iter().filter(|(_, &pp)| pp == parent) {
                if child != pid && !self.processes.contains_key(&child) {
                    self.processes
                        .insert(child, TreeProcess::read(child, Some(parent), pid));
                    added.push(child);
                    parents.push(child);
                }
            }
        }
        added
    }

    /// Apply one event of the probe.
    pub fn apply(&mut self, event: &ProcessEvent) {
        match event.kind {
            PROCESS_FORK => {
                let root = self.root_of(event.parent).unwrap_or(event.parent);
                let p = self.processes.entry(event.pid).or_insert_with(|| {
                    let mut p = TreeProcess::read(event.pid, Some(event.parent), root);
                    p.event_ns = event.time_ns;
                    p
                });
                if self.follow {
                    self.follows.push(Follow::Fork {
                        pid: p.pid,
                        parent: event.parent,
                        root: p.root,
                    });
                }
            }
            PROCESS_EXEC => {
                if let Some(p) = self.processes.get_mut(&event.pid) {
                    p.execs += 1;
                    p.event_ns = event.time_ns;
                    p.reread();
                    p.reads_left = READS_AFTER_EXEC;
                    if self.follow {
                        self.follows.push(Follow::Mapped {
                            pid: p.pid,
                            root: p.root,
                            files: p.files(),
                        });
                    }
                }
            }
            PROCESS_EXIT => {
                if let Some(p) = self.processes.get_mut(&event.pid) {
                    p.exited = true;
                    p.reads_left = 0;
                }
                if self.follow {
                    self.follows.push(Follow::Exit { pid: event.pid });
                }
                self.record_exit(event);
            }
            PROCESS_THREAD_EXIT => self.record_exit(event),
            _ => {}
        }
    }

    fn record_exit(&mut self, event: &ProcessEvent) {
        // Bounded: a run whose counters are off never takes them.
        if self.exits.len() < MAX_PENDING_EXITS {
            self.exits.push(ThreadExit {
                tgid: event.pid,
                tid: event.tid,
                time_ns: event.time_ns,
                totals: event.totals,
            });
        }
    }

    /// The thread exits since the last call.
    pub fn take_exits(&mut self) -> Vec<ThreadExit> {
        std::mem::take(&mut self.exits)
    }

    /// Re-read the processes that exec'd a moment ago.
    fn refresh(&mut self) {
        for p in self.processes.values_mut().filter(|p| p.reads_left > 0) {
            p.reads_left -= 1;
            let before = p.files();
            p.reread();
            // Only a change is news: the followers read files and build
            // unwinders for each Mapped.
            if self.follow && p.files() != before {
                self.follows.push(Follow::Mapped {
                    pid: p.pid,
                    root: p.root,
                    files: p.files(),
                });
            }
        }
    }

    /// What the per-call probes must follow since the last call.
    fn take_follows(&mut self) -> Vec<Follow> {
        std::mem::take(&mut self.follows)
    }

    /// The per-call probes' links covered `pid` at `now_ns`.
    fn per_call_attached(&mut self, pid: u32, now_ns: u64) {
        if let Some(p) = self.processes.get_mut(&pid) {
            if p.event_ns > 0 {
                p.per_call_after_us = Some(now_ns.saturating_sub(p.event_ns) / 1000);
            }
        }
    }

    /// The target whose tree `pid` is in, if followed.
    pub fn root_of(&self, pid: u32) -> Option<u32> {
        self.processes.get(&pid).map(|p| p.root)
    }

    /// The followed processes, in pid order (targets included).
    pub fn processes(&self) -> impl Iterator<Item = &TreeProcess> {
        self.processes.values()
    }

    /// A process's mappings as last read (for processes that have exited).
    pub fn mappings(&self, pid: u32) -> Option<&[Mapping]> {
        self.processes.get(&pid).map(|p| p.mappings.as_slice())
    }

    /// pid → its target, for every followed child (not the targets).
    pub fn roots(&self) -> HashMap<u32, u32> {
        self.processes
            .values()
            .filter(|p| p.parent.is_some())
            .map(|p| (p.pid, p.root))
            .collect()
    }
}

/// pid → parent pid of every process, from /proc/PID/stat.
fn parents_by_pid() -> BTreeMap<u32, u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command's closing parenthesis: state, ppid.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect()
}

/// The thread that reads the probe's events as they come, so that a
/// child's mappings are read while it lives.
pub(super) struct Watcher {
    tree: Arc<Mutex<ProcessTree>>,
    ring: Arc<Mutex<RingBuf<MapData>>>,
    /// The per-call probes, when they follow the children.
    per_call: Arc<Mutex<Option<per_call::Shared>>>,
    /// The `UNWIND` entries of processes that exec'd, when stacks are
    /// copied at all.
    after_exec: Arc<Mutex<Option<AfterExec>>>,
    _reader: RingReader,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watcher {
    pub(super) fn start(ring: RingBuf<MapData>) -> std::io::Result<Watcher> {
        let fd: RawFd = ring.as_raw_fd();
        let tree = Arc::new(Mutex::new(ProcessTree::default()));
        let ring = Arc::new(Mutex::new(ring));
        let per_call: Arc<Mutex<Option<per_call::Shared>>> = Arc::new(Mutex::new(None));
        let after_exec: Arc<Mutex<Option<AfterExec>>> = Arc::new(Mutex::new(None));
        let reader = {
            let (tree, ring, per_call) = (tree.clone(), ring.clone(), per_call.clone());
            let after_exec = after_exec.clone();
            RingReader::start("protoprof-tree", fd, POLL_MS, move || {
                let follows = {
                    let mut tree = lock(&tree);
                    drain(&mut lock(&ring), &mut tree);
                    tree.refresh();
                    tree.take_follows()
                };
                if follows.is_empty() {
                    return;
                }
                // Outside the tree's lock: reading a new image's files
                // takes a while, and the probes read the tree meanwhile.
                // A copy, so that no lock of ours is held while `mapped`
                // takes the unwinder's (whose drain takes the tree's).
                let exec = lock(&after_exec).clone();
                if let Some(a) = exec.as_ref() {
                    let mut execs: Vec<u32> = follows
                        .iter()
                        .filter_map(|f| match f {
                            Follow::Mapped { pid, .. } => Some(*pid),
                            _ => None,
                        })
                        .collect();
                    execs.dedup();
                    for pid in execs {
                        a.mapped(pid);
                    }
                }
                let Some(shared) = lock(&per_call).clone() else {
                    return;
                };
                let covered: Vec<u32> = {
                    let mut pc = per_call::lock(&shared);
                    follows
                        .iter()
                        .filter(|f| pc.follow(f))
                        .filter_map(|f| match f {
                            Follow::Fork { pid, .. } | Follow::Mapped { pid, .. } => Some(*pid),
                            Follow::Exit { .. } => None,
                        })
                        .collect()
                };
                let now = super::monotonic_ns();
                let mut tree = lock(&tree);
                for pid in covered {
                    tree.per_call_attached(pid, now);
                }
            })?
        };
        Ok(Watcher {
            tree,
            ring,
            per_call,
            after_exec,
            _reader: reader,
        })
    }

    /// Write the `UNWIND` entry of each followed process again after its
    /// exec, from its new image.
    pub(super) fn unwind_after_exec(&self, a: AfterExec) {
        lock(&self.tree).follow = true;
        *lock(&self.after_exec) = Some(a);
    }

    /// Give the per-call probes the children as they fork and exec.
    pub(super) fn follow_with(&self, shared: per_call::Shared) {
        lock(&self.tree).follow = true;
        *lock(&self.per_call) = Some(shared);
    }

    /// Stop following: no link is made after this returns (the watcher's
    /// thread makes them under the same lock).
    pub(super) fn stop_following(&self) {
        let shared = lock(&self.per_call).take();
        if let Some(shared) = shared {
            // Waits for a follow in progress; one about to start finds
            // the probes stopped.
            per_call::lock(&shared).stop();
        }
        // One lock at a time, as the watcher's thread takes them: no
        // order between them to keep.
        let follow = lock(&self.after_exec).is_some();
        let mut tree = lock(&self.tree);
        tree.follow = follow;
        tree.follows.clear();
    }

    /// The tree itself, shared with the stack copies' drain thread (the
    /// mappings of processes that already exited).
    pub(super) fn shared_tree(&self) -> Arc<Mutex<ProcessTree>> {
        self.tree.clone()
    }

    /// The tree with every event sent so far applied.
    pub(super) fn tree(&self) -> MutexGuard<'_, ProcessTree> {
        let mut tree = lock(&self.tree);
        drain(&mut lock(&self.ring), &mut tree);
        tree
    }
}

fn drain(ring: &mut RingBuf<MapData>, tree: &mut ProcessTree) {
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<ProcessEvent>() {
            // SAFETY: the probe writes whole ProcessEvents (repr(C), plain
            // integers); read unaligned from the ring's bytes.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const ProcessEvent) };
            tree.apply(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_join_their_parents_tree_and_exits_keep_the_process() {
        let mut tree = ProcessTree::default();
        let me = std::process::id();
        tree.add_root(me);
        // Pids that do not exist: read from /proc, nothing found.
        let fork = |pid, parent| ProcessEvent {
            kind: PROCESS_FORK,
            pid,
            parent,
            ..Default::default()
        };
        tree.apply(&fork(u32::MAX - 1, me));
        tree.apply(&fork(u32::MAX - 2, u32::MAX - 1));
        tree.apply(&ProcessEvent {
            kind: PROCESS_EXIT,
            pid: u32::MAX - 2,
            ..Default::default()
        });
        assert_eq!(tree.root_of(u32::MAX - 2), Some(me));
        assert_eq!(tree.roots().len(), 2);
        let grandchild = tree.processes().find(|p| p.pid == u32::MAX - 2);
        assert!(grandchild.is_some_and(|p| p.exited && p.parent == Some(u32::MAX - 1)));
        // The root's own mappings were read: this test binary is mapped.
        assert!(tree.mappings(me).is_some_and(|m| !m.is_empty()));
    }
}
