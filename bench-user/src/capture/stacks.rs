//! Stacks as the probes store them, and the record every stack-producing
//! probe is read into.

use std::{collections::HashMap as StdHashMap, sync::Arc};

use aya::{
    maps::{HashMap, MapData, StackTraceMap},
    Ebpf,
};
use bench_common::{UserStack, STACK_COPY_TAG};
use serde::{Deserialize, Serialize};

use super::CaptureError;

/// Which flame graph a stack belongs to, and what its weight counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Graph {
    /// On-CPU samples.
    Cpu,
    /// Nanoseconds off CPU.
    OffCpu,
    /// Bytes allocated (sampled, scaled).
    AllocBytes,
    /// Allocations (sampled, scaled).
    AllocCalls,
    /// Sampled bytes still allocated when the probes were read: what was
    /// allocated during the pass and never freed (as bcc's memleak shows).
    AllocUnfreed,
    /// Syscalls entered (sampled, scaled).
    Syscalls,
}

impl Graph {
    /// Every graph, in report order.
    pub const ALL: [Graph; 6] = [
        Graph::Cpu,
        Graph::OffCpu,
        Graph::AllocBytes,
        Graph::AllocCalls,
        Graph::AllocUnfreed,
        Graph::Syscalls,
    ];

    /// Base name of its files (`cpu.folded`, `cpu.svg`, …).
    pub fn file_stem(self) -> &'static str {
        match self {
            Graph::Cpu => "cpu",
            Graph::OffCpu => "offcpu",
            Graph::AllocBytes => "alloc",
            Graph::AllocCalls => "alloc-count",
            Graph::AllocUnfreed => "unfreed",
            Graph::Syscalls => "syscalls",
        }
    }

    /// What one unit of weight is.
    pub fn unit(self) -> &'static str {
        match self {
            Graph::Cpu => "samples",
            Graph::OffCpu => "us",
            Graph::AllocBytes => "bytes",
            Graph::AllocCalls => "allocations",
            Graph::AllocUnfreed => "bytes",
            Graph::Syscalls => "syscalls",
        }
    }
}

/// One weighted stack of one thread.
#[derive(Debug, Clone)]
pub struct StackRecord {
    pub graph: Graph,
    pub tgid: u32,
    pub tid: u32,
    /// Innermost frame first; empty when not captured. Shared by every
    /// record of the same stack (a CPU sample's is one per 100-ms slot).
    pub user: Arc<[u64]>,
    /// Innermost frame first.
    pub kernel: Arc<[u64]>,
    /// A frame to put on top (the syscall's name for syscall stacks).
    pub leaf: Option<String>,
    pub weight: u64,
    /// The measured window (phase) it was recorded in; `None` where the
    /// probe keeps no window (syscall stacks).
    pub window: Option<u32>,
    /// Its time slot in the window (`bench_common::TIME_SLOT_NS`); CPU
    /// samples only, 0 for the rest.
    pub slot: u16,
}

/// Reads stacks out of `USER_STACKS` and `KERNEL_STACKS`, once each.
pub(super) struct StackReader<'a> {
    user: HashMap<&'a MapData, u64, UserStack>,
    kernel: StackTraceMap<&'a MapData>,
    user_cache: StdHashMap<u64, Arc<[u64]>>,
    kernel_cache: StdHashMap<i64, Arc<[u64]>>,
    /// Stack copies, unwound, by tag.
    copied: StdHashMap<u64, Arc<[u64]>>,
}

impl<'a> StackReader<'a> {
    pub(super) fn new(
        ebpf: &'a Ebpf,
        copied: StdHashMap<u64, Arc<[u64]>>,
    ) -> Result<StackReader<'a>, CaptureError> {
        let user = HashMap::try_from(
            ebpf.map("USER_STACKS")
                .ok_or(CaptureError::Missing("USER_STACKS"))?,
        )
        .map_err(|source| CaptureError::Map {
            name: "USER_STACKS",
            source,
        })?;
        let kernel = StackTraceMap::try_from(
            ebpf.map("KERNEL_STACKS")
                .ok_or(CaptureError::Missing("KERNEL_STACKS"))?,
        )
        .map_err(|source| CaptureError::Map {
            name: "KERNEL_STACKS",
            source,
        })?;
        Ok(StackReader {
            user,
            kernel,
            user_cache: StdHashMap::new(),
            kernel_cache: StdHashMap::new(),
            copied,
        })
    }

    /// A user stack by hash (0 = none) or by a stack copy's tag.
    pub(super) fn user(&mut self, hash: u64) -> Arc<[u64]> {
        if hash == 0 {
            return Arc::default();
        }
        if hash & STACK_COPY_TAG != 0 {
            // A copy the runner has not unwound (its ring was full, or its
            // process's files could not be read) has no frames.
            return self.copied.get(&hash).cloned().unwrap_or_default();
        }
        let map = &self.user;
        self.user_cache
            .entry(hash)
            .or_insert_with(|| match map.get(&hash, 0) {
                Ok(s) => Arc::from(&s.ips[..(s.len as usize).min(s.ips.len())]),
                Err(_) => Arc::default(),
            })
            .clone()
    }

    /// A kernel stack by id (negative = none).
    pub(super) fn kernel(&mut self, id: i64) -> Arc<[u64]> {
        if id < 0 {
            return Arc::default();
        }
        let map = &self.kernel;
        self.kernel_cache
            .entry(id)
            .or_insert_with(|| match map.get(&(id as u32), 0) {
                Ok(trace) => trace.frames().iter().map(|f| f.ip).collect(),
                Err(_) => Arc::default(),
            })
            .clone()
    }
}

/// Records that differ only in weight, merged into one. Each stack copy
/// has a tag of its own, so records of one stack arrive as many records;
/// their frames are one shared allocation per distinct stack
/// (stack_copies.rs), so equal stacks compare by pointer.
pub(super) fn merge_same(records: Vec<StackRecord>) -> Vec<StackRecord> {
    type Key = (
        Graph,
        u32,
        u32,
        *const u64,
        usize,
        *const u64,
        Option<String>,
        Option<u32>,
        u16,
    );
    let mut at: StdHashMap<Key, usize> = StdHashMap::with_capacity(records.len());
    let mut out: Vec<StackRecord> = Vec::with_capacity(records.len());
    for r in records {
        let key = (
            r.graph,
            r.tgid,
            r.tid,
            r.user.as_ptr(),
            r.user.len(),
            r.kernel.as_ptr(),
            r.leaf.clone(),
            r.window,
            r.slot,
        );
        match at.get(&key) {
            Some(&i) => out[i].weight += r.weight,
            None => {
                at.insert(key, out.len());
                out.push(r);
            }
        }
    }
    out
}
