//! The per-call probes (allocator and crypto uprobes), attached as one set
//! when the first window opens and closed together at the end.
//!
//! A uprobe traps on every call (an entry and a return probe together cost
//! about 20 µs per call here), so on a hot function — Go's mallocgc, a
//! per-packet AEAD — they cost more than the work they measure and distort
//! every other figure. The runner therefore measures them in a pass of
//! their own (see `run`). Switching them on and off within a pass does not
//! work on these kernels: closing one uprobe link waits for an RCU grace
//! period (about 0.1 s), serialised across links, and the breakpoints keep
//! trapping meanwhile.

use std::{num::NonZeroU32, path::PathBuf};

use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        UProbe,
    },
    Ebpf,
};

use super::CaptureError;

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
    links: Vec<(&'static str, UProbeLinkId)>,
    closing: Vec<std::thread::JoinHandle<()>>,
}

impl UprobeSet {
    pub(super) fn new() -> UprobeSet {
        UprobeSet {
            points: Vec::new(),
            links: Vec::new(),
            closing: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, point: Point) {
        self.points.push(point);
    }

    /// Attach every point not attached yet (idempotent): each point gets
    /// one link, so the links so far count the points already attached.
    pub(super) fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        let done = self.links.len();
        for p in &self.points[done.min(self.points.len())..] {
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
            let link = program
                .attach(point, &p.path, UProbeScope::OneProcess(pid))
                .map_err(|source| CaptureError::Program {
                    name: p.program,
                    source,
                })?;
            self.links.push((p.program, link));
        }
        Ok(())
    }

    /// Take the links out of the programs, close them on helper threads (in
    /// parallel: each close waits for a grace period) and wait for all.
    pub(super) fn close(&mut self, ebpf: &mut Ebpf) {
        for (name, link) in self.links.drain(..) {
            let Some(Ok(program)) = ebpf.program_mut(name).map(<&mut UProbe>::try_from) else {
                continue;
            };
            if let Ok(owned) = program.take_link(link) {
                self.closing.push(std::thread::spawn(move || drop(owned)));
            }
        }
        for t in self.closing.drain(..) {
            let _ = t.join();
        }
    }
}
