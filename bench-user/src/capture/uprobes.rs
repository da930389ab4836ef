//! The per-call probes (allocator and crypto uprobes), attached as one set
//! and closed together at the end.
//!
//! A uprobe traps on every call (1.5–8 µs per entry + return here), so on a
//! hot function — Go's mallocgc, a per-packet AEAD — they cost more than
//! the work they measure and distort every other figure. The runner
//! therefore measures them in a pass of their own (see `run`).
//!
//! Each (program, file, process) gets one uprobe_multi link
//! (`uprobe_multi.rs`), whose close waits for one RCU grace period. Where
//! the kernel has no uprobe_multi (before 6.6) each point gets a perf-event
//! link of its own; closing those waits for grace periods one link at a
//! time, serialised by the kernel, about 0.1 s each.

use std::{collections::BTreeMap, num::NonZeroU32, os::fd::OwnedFd, path::PathBuf};

use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        UProbe,
    },
    Ebpf,
};

use super::{uprobe_multi::MultiPrograms, CaptureError};

/// One place to attach one program.
#[derive(Debug, Clone)]
pub(super) struct Point {
    pub program: &'static str,
    pub path: PathBuf,
    pub offset: u64,
    pub cookie: u64,
    pub pid: u32,
}

/// The set and its links.
pub(super) struct UprobeSet {
    /// Points added and not attached yet.
    pending: Vec<Point>,
    /// Points attached, for the processes that inherit them (forks).
    attached: Vec<Point>,
    /// `None` once uprobe_multi failed: perf-event links from then on.
    multi: Option<MultiPrograms>,
    /// Why uprobe_multi is not used, when it is not.
    pub(super) multi_unavailable: Option<String>,
    /// uprobe_multi links, with the process each names.
    multi_links: Vec<(u32, OwnedFd)>,
    links: Vec<(&'static str, UProbeLinkId)>,
}

/// One link's worth of points: one program, file and process.
type Group = ((&'static str, PathBuf, u32), Vec<Point>);

impl UprobeSet {
    pub(super) fn new(multi: Result<MultiPrograms, String>) -> UprobeSet {
        let (multi, multi_unavailable) = match multi {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        };
        UprobeSet {
            pending: Vec::new(),
            attached: Vec::new(),
            multi,
            multi_unavailable,
            multi_links: Vec::new(),
            links: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, point: Point) {
        self.pending.push(point);
    }

    /// The points of process `pid`, attached or not.
    pub(super) fn points_of(&self, pid: u32) -> impl Iterator<Item = &Point> {
        self.attached
            .iter()
            .chain(&self.pending)
            .filter(move |p| p.pid == pid)
    }

    /// How many links are open (one per uprobe_multi group or per point).
    pub(super) fn link_count(&self) -> usize {
        self.multi_links.len() + self.links.len()
    }

    /// The pending points, one group per link.
    fn take_groups(&mut self) -> Vec<Group> {
        let mut groups: BTreeMap<(&'static str, PathBuf, u32), Vec<Point>> = BTreeMap::new();
        for p in self.pending.drain(..) {
            groups
                .entry((p.program, p.path.clone(), p.pid))
                .or_default()
                .push(p);
        }
        groups.into_iter().collect()
    }

    /// One uprobe_multi link for `group`; false (and uprobe_multi off from
    /// then on) when the kernel refuses it.
    fn attach_multi_group(&mut self, group: &Group) -> bool {
        let Some(multi) = &mut self.multi else {
            return false;
        };
        let ((program, path, pid), points) = group;
        let at: Vec<(u64, u64)> = points.iter().map(|p| (p.offset, p.cookie)).collect();
        let ret = multi.is_return(program);
        match multi.attach(program, ret, path, *pid, &at) {
            Ok(link) => {
                self.multi_links.push((*pid, link));
                true
            }
            Err(e) => {
                self.multi_unavailable = Some(e.to_string());
                self.multi = None;
                false
            }
        }
    }

    /// Attach every pending point (idempotent).
    pub(super) fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        for group in self.take_groups() {
            if !self.attach_multi_group(&group) {
                for p in &group.1 {
                    self.links.push((p.program, attach_perf(ebpf, p)?));
                }
            }
            self.attached.extend(group.1);
        }
        Ok(())
    }

    /// Attach the pending points through uprobe_multi only, which needs no
    /// handle on the loaded object (the process-tree watcher's thread has
    /// none). Without uprobe_multi they stay pending, for [`Self::attach`]
    /// at the next window; the error says why.
    pub(super) fn attach_multi(&mut self) -> Result<(), String> {
        let mut groups = self.take_groups().into_iter();
        while let Some(group) = groups.next() {
            if !self.attach_multi_group(&group) {
                self.pending.extend(group.1);
                self.pending.extend(groups.flat_map(|(_, points)| points));
                return Err(self
                    .multi_unavailable
                    .clone()
                    .unwrap_or_else(|| "uprobe_multi unavailable".into()));
            }
            self.attached.extend(group.1);
        }
        Ok(())
    }

    /// Forget process `pid`'s points and close its uprobe_multi links, on a
    /// helper thread (a close waits for a grace period): it has exited.
    pub(super) fn close_process(&mut self, pid: u32) {
        self.pending.retain(|p| p.pid != pid);
        self.attached.retain(|p| p.pid != pid);
        let (gone, kept) = std::mem::take(&mut self.multi_links)
            .into_iter()
            .partition(|(p, _)| *p == pid);
        self.multi_links = kept;
        let gone: Vec<(u32, OwnedFd)> = gone;
        if !gone.is_empty() {
            std::thread::spawn(move || drop(gone));
        }
    }

    /// Close every link, each on a helper thread (each close waits for a
    /// grace period), and wait for all.
    pub(super) fn close(&mut self, ebpf: &mut Ebpf) {
        let mut closing = Vec::new();
        for (_, link) in self.multi_links.drain(..) {
            closing.push(std::thread::spawn(move || drop(link)));
        }
        for (name, link) in self.links.drain(..) {
            let Some(Ok(program)) = ebpf.program_mut(name).map(<&mut UProbe>::try_from) else {
                continue;
            };
            if let Ok(owned) = program.take_link(link) {
                closing.push(std::thread::spawn(move || drop(owned)));
            }
        }
        for t in closing {
            let _ = t.join();
        }
    }
}

/// A perf-event uprobe link of aya's, for one point.
fn attach_perf(ebpf: &mut Ebpf, p: &Point) -> Result<UProbeLinkId, CaptureError> {
    let pid = NonZeroU32::new(p.pid).ok_or(CaptureError::Missing("pid"))?;
    let program: &mut UProbe = ebpf
        .program_mut(p.program)
        .ok_or(CaptureError::Missing(p.program))?
        .try_into()
        .map_err(|source| CaptureError::Program {
            name: p.program,
            source,
        })?;
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(p.offset),
        cookie: Some(p.cookie),
    };
    program
        .attach(point, &p.path, UProbeScope::OneProcess(pid))
        .map_err(|source| CaptureError::Program {
            name: p.program,
            source,
        })
}
