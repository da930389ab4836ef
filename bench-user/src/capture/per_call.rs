//! The per-call probes' state (allocator and crypto uprobes): the points
//! and links of every probed process, the targets' and their children's.
//!
//! A uprobe link names one process: the kernel runs its program only
//! there. A link for every process that maps a file (pid 0) would trap
//! every program on the machine that calls libc's malloc, the load
//! generator's included, so each process a target forks or execs gets
//! links of its own, made on the process-tree watcher's thread as its
//! events arrive: a forked child gets its parent's points (same files,
//! same offsets); a process that exec'd gets the points of the files its
//! new image maps that its links do not cover yet (a link follows its
//! process through an exec, into every mapping of the same file), read as
//! the loader maps them. The child runs meanwhile, so the calls it makes
//! before its links exist are not counted: each child's delay is in the
//! report (`targets[].processes[].per_call_after_us`). A child's links are
//! closed when it exits.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use aya::Ebpf;

use super::{
    alloc,
    crypto::{self, Families},
    elf::ElfFile,
    uprobes::{Point, UprobeSet},
    AllocOptions, CaptureError, CryptoOptions, TargetProbes,
};

/// Shared by the probes and the process-tree watcher's thread.
pub(super) type Shared = Arc<Mutex<PerCall>>;

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, PerCall> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the watcher saw that the per-call probes must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// `pid` was forked by `parent`.
    Fork { pid: u32, parent: u32, root: u32 },
    /// `pid` maps `files` (executable first), read after its exec.
    Mapped {
        pid: u32,
        root: u32,
        files: Vec<PathBuf>,
    },
    /// `pid` exited.
    Exit { pid: u32 },
}

pub(super) struct PerCall {
    pub(super) set: UprobeSet,
    alloc: Option<AllocOptions>,
    crypto: Option<CryptoOptions>,
    families: Families,
    next_crypto_id: u32,
    /// The files each probed process's links cover.
    probed: HashMap<u32, Vec<PathBuf>>,
    /// What children's images added to their targets' probes, by target.
    found: BTreeMap<u32, TargetProbes>,
    /// Files read for children, by path (a forking server's children exec
    /// the same helper again and again); `None` when unreadable.
    files: HashMap<PathBuf, Option<ElfFile>>,
    /// No more links: the probes are closing.
    stopped: bool,
}

impl PerCall {
    pub(super) fn new(
        set: UprobeSet,
        alloc: Option<AllocOptions>,
        crypto: Option<CryptoOptions>,
        families: Families,
    ) -> PerCall {
        PerCall {
            set,
            alloc,
            crypto,
            families,
            next_crypto_id: 0,
            probed: HashMap::new(),
            found: BTreeMap::new(),
            files: HashMap::new(),
            stopped: false,
        }
    }

    /// Make no more links.
    pub(super) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether any per-call probe is on.
    pub(super) fn on(&self) -> bool {
        self.alloc.is_some() || self.crypto.is_some()
    }

    /// Add the points of `files` in process `pid` to the set (not attached
    /// yet) and what they probe to `info`.
    pub(super) fn add_files(&mut self, pid: u32, files: &[ElfFile], info: &mut TargetProbes) {
        self.probed
            .entry(pid)
            .or_default()
            .extend(files.iter().map(|f| f.path.clone()));
        if let Some(a) = &self.alloc {
            for entry in alloc::points(&mut self.set, pid, files, a.live) {
                if !info.alloc.contains(&entry) {
                    info.alloc.push(entry);
                }
            }
        }
        if let Some(c) = &self.crypto {
            let (symbols, notes) = crypto::points(
                &mut self.set,
                pid,
                files,
                &self.families,
                c.return_probes,
                &mut self.next_crypto_id,
            );
            info.crypto.extend(symbols);
            for n in notes {
                if !info.notes.contains(&n) {
                    info.notes.push(n);
                }
            }
        }
    }

    /// Attach links for what the watcher saw; true when `event`'s process
    /// got links of its own.
    pub(super) fn follow(&mut self, event: &Follow) -> bool {
        if !self.on() || self.stopped {
            return false;
        }
        let root = match event {
            Follow::Exit { pid } => {
                self.probed.remove(pid);
                self.set.close_process(*pid);
                return false;
            }
            Follow::Fork {
                pid, parent, root, ..
            } => {
                let points: Vec<Point> = self
                    .set
                    .points_of(*parent)
                    .map(|p| Point {
                        pid: *pid,
                        ..p.clone()
                    })
                    .collect();
                if points.is_empty() {
                    return false;
                }
                let files = self.probed.get(parent).cloned().unwrap_or_default();
                self.probed.insert(*pid, files);
                for p in points {
                    self.set.add(p);
                }
                *root
            }
            Follow::Mapped { pid, root, files } => {
                let covered = self.probed.get(pid).cloned().unwrap_or_default();
                let new: Vec<PathBuf> = files
                    .iter()
                    .filter(|f| !covered.contains(f))
                    .cloned()
                    .collect();
                if new.is_empty() {
                    return false;
                }
                let mut read = Vec::new();
                let mut info = self.found.remove(root).unwrap_or_default();
                for path in &new {
                    let file =
                        self.files.entry(path.clone()).or_insert_with(|| {
                            match ElfFile::read(path) {
                                Ok(f) => Some(f),
                                Err(e) => {
                                    info.notes.push(format!("not probed in a child: {e}"));
                                    None
                                }
                            }
                        });
                    if let Some(f) = file {
                        read.push(f.clone());
                    }
                }
                // Unreadable files count as covered: read once, said once.
                self.probed.entry(*pid).or_default().extend(new);
                self.add_files(*pid, &read, &mut info);
                self.found.insert(*root, info);
                *root
            }
        };
        match self.set.attach_multi() {
            Ok(()) => true,
            Err(why) => {
                let note = format!(
                    "per-call probes in forked or exec'd children wait for the next window ({why})"
                );
                let notes = &mut self.found.entry(root).or_default().notes;
                if !notes.contains(&note) {
                    notes.push(note);
                }
                false
            }
        }
    }

    /// What children's images added, by target, to merge into the
    /// targets' own.
    pub(super) fn found(&self) -> &BTreeMap<u32, TargetProbes> {
        &self.found
    }

    /// Attach every pending point (with perf-event links where uprobe_multi
    /// is unavailable).
    pub(super) fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        self.set.attach(ebpf)
    }
}
