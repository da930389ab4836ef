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
    points: Vec<Point>,
    /// How many of `points` are attached (they are attached in order).
    attached: usize,
    /// `None` once uprobe_multi failed: perf-event links from then on.
    multi: Option<MultiPrograms>,
    /// Why uprobe_multi is not used, when it is not.
    pub(super) multi_unavailable: Option<String>,
    multi_links: Vec<OwnedFd>,
    links: Vec<(&'static str, UProbeLinkId)>,
}

impl UprobeSet {
    pub(super) fn new(multi: Result<MultiPrograms, String>) -> UprobeSet {
        let (multi, multi_unavailable) = match multi {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        };
        UprobeSet {
            points: Vec::new(),
            attached: 0,
            multi,
            multi_unavailable,
            multi_links: Vec::new(),
            links: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, point: Point) {
        self.points.push(point);
    }

    /// How many links are open (one per uprobe_multi group or per point).
    pub(super) fn link_count(&self) -> usize {
        self.multi_links.len() + self.links.len()
    }

    /// Attach every point not attached yet (idempotent).
    pub(super) fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        let new = &self.points[self.attached.min(self.points.len())..];
        // One link per (program, file, process).
        let mut groups: BTreeMap<(&'static str, &PathBuf, u32), Vec<&Point>> = BTreeMap::new();
        for p in new {
            groups
                .entry((p.program, &p.path, p.pid))
                .or_default()
                .push(p);
        }
        for ((program, path, pid), points) in groups {
            if let Some(multi) = &mut self.multi {
                let at: Vec<(u64, u64)> = points.iter().map(|p| (p.offset, p.cookie)).collect();
                let ret = multi.is_return(program);
                match multi.attach(program, ret, path, pid, &at) {
                    Ok(link) => {
                        self.multi_links.push(link);
                        continue;
                    }
                    Err(e) => {
                        self.multi_unavailable = Some(e.to_string());
                        self.multi = None;
                    }
                }
            }
            for p in points {
                self.links.push((p.program, attach_perf(ebpf, p)?));
            }
        }
        self.attached = self.points.len();
        Ok(())
    }

    /// Close every link, each on a helper thread (each close waits for a
    /// grace period), and wait for all.
    pub(super) fn close(&mut self, ebpf: &mut Ebpf) {
        let mut closing = Vec::new();
        for link in self.multi_links.drain(..) {
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
