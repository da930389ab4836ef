//! Stacks of code without frame pointers. The probes copy such a stack,
//! up to 32 KiB from the stack pointer up with the registers, into the
//! `STACK_COPIES` ring (bench-ebpf `user_stack.rs`), and name it in their
//! record by a tag. Here the copies are drained while the targets run and
//! unwound with framehop from the unwind tables (`.eh_frame`,
//! `.debug_frame`) of the files each process has mapped, as `perf
//! --call-graph dwarf` does; [`super::stacks::StackReader`] then hands a
//! tag's frames out like a walked stack's.
//!
//! Which processes get copies, and for which code, is decided here too
//! ([`StackCopies::prepare`]): a process whose mapped files include one built
//! without frame pointers but with unwind tables has its stacks copied
//! whenever the instruction pointer lies outside the files that keep frame
//! pointers (up to six of those ranges; the rest are copied too).

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use bench_binfmt::unwind::{unwind_copy, CacheX86_64, UnwindTables, Unwinder, UnwinderX86_64};
use bench_common::{
    StackCopy, UnwindRanges, MAX_FRAME_POINTER_RANGES, MAX_USER_FRAMES, STACK_COPY_BYTES,
};
use serde::{Deserialize, Serialize};

use super::{
    elf::{self, Mapping},
    process_tree::ProcessTree,
    ring_reader::RingReader,
    CaptureError,
};

/// How the probes take user stacks (`probes.unwind` in a profile).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnwindMode {
    /// Per file: copy where the code lacks frame pointers and has unwind
    /// tables, walk the rest.
    #[default]
    Auto,
    /// Walk every stack by frame pointer (no copies).
    FramePointers,
    /// Copy every stack and unwind it from the tables.
    Dwarf,
}

/// How often the drain thread wakes when the ring is quiet.
const POLL_MS: i32 = 5;
/// A process's unwinder is rebuilt when an address falls outside its
/// modules (a library loaded since), at most this often.
const REBUILD_EVERY: Duration = Duration::from_millis(200);

/// What the copies gave, for the report's probe notes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStats {
    /// Copies received.
    pub copies: u64,
    /// Bytes of stack they held.
    pub bytes: u64,
    /// Copies whose stack could not be read at all (0 bytes).
    pub unreadable: u64,
    /// Frames unwound, over all copies.
    pub frames: u64,
    /// Copies whose unwinding reached the end of the copied bytes: deeper
    /// frames were cut off.
    pub cut: u64,
    /// The runner's CPU time unwinding them (the drain thread's, ns).
    pub unwind_ns: u64,
}

/// The unwinding state the drain thread and the reader share.
#[derive(Default)]
struct Unwound {
    by_tag: HashMap<u64, Arc<[u64]>>,
    /// One allocation per distinct stack, shared by every tag with it.
    distinct: HashSet<Arc<[u64]>>,
    processes: HashMap<u32, ProcessUnwinder>,
    files: FileTables,
    cache: CacheX86_64,
    stats: CopyStats,
    /// What could not be unwound, by the process it was found in, not yet
    /// taken into the report.
    notes: Vec<(u32, String)>,
}

/// Unwind tables by file, read once for all processes, and what could not
/// be read (each said once).
#[derive(Default)]
struct FileTables {
    files: HashMap<PathBuf, Option<Arc<UnwindTables>>>,
    notes: Vec<String>,
}

/// Where separate debug files are installed, by build id.
const DEBUG_ROOT: &str = "/usr/lib/debug";

impl FileTables {
    fn get(&mut self, path: &Path) -> Option<Arc<UnwindTables>> {
        let notes = &mut self.notes;
        self.files
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                match UnwindTables::read_with_debug_file(path, Path::new(DEBUG_ROOT)) {
                    Ok(t) => {
                        notes.extend(t.notes.iter().cloned());
                        Some(Arc::new(t))
                    }
                    Err(e) => {
                        notes.push(format!(
                            "unwind tables unreadable ({e}): stacks in that file are walked by \
                             frame pointer"
                        ));
                        None
                    }
                }
            })
            .clone()
    }
}

struct ProcessUnwinder {
    unwinder: UnwinderX86_64<Arc<[u8]>>,
    modules: Vec<Range<u64>>,
    built: Instant,
}

impl ProcessUnwinder {
    fn build(mappings: &[Mapping], files: &mut FileTables) -> ProcessUnwinder {
        let mut unwinder = UnwinderX86_64::new();
        let mut modules = Vec::new();
        for (path, range, bias) in modules_of(mappings, files) {
            let Some(t) = files.get(&path) else { continue };
            let name = path.display().to_string();
            unwinder.add_module(t.module(name, range.clone(), bias));
            modules.push(range);
        }
        ProcessUnwinder {
            unwinder,
            modules,
            built: Instant::now(),
        }
    }

    fn covers(&self, addr: u64) -> bool {
        self.modules.iter().any(|r| r.contains(&addr))
    }
}

/// Each mapped file once: its executable address range and load bias
/// (where its ELF virtual address 0 lies in the process).
fn modules_of(mappings: &[Mapping], files: &mut FileTables) -> Vec<(PathBuf, Range<u64>, u64)> {
    let mut out: Vec<(PathBuf, Range<u64>, u64)> = Vec::new();
    for m in mappings {
        if let Some((_, range, _)) = out.iter_mut().find(|(p, _, _)| *p == m.path) {
            range.start = range.start.min(m.start);
            range.end = range.end.max(m.end);
            continue;
        }
        let Some(t) = files.get(&m.path) else {
            continue;
        };
        let Some(vaddr) = t.address_of_mapping(m.file_offset) else {
            continue;
        };
        out.push((m.path.clone(), m.start..m.end, m.start.wrapping_sub(vaddr)));
    }
    out
}

impl Unwound {
    /// The file tables' new notes, as found in process `pid`.
    fn take_file_notes(&mut self, pid: u32) {
        for n in std::mem::take(&mut self.files.notes) {
            self.notes.push((pid, n));
        }
    }

    fn unwind(&mut self, rec: &StackCopy, tree: &Mutex<ProcessTree>) {
        let started = Instant::now();
        self.unwind_timed(rec, tree);
        self.stats.unwind_ns += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    }

    fn unwind_timed(&mut self, rec: &StackCopy, tree: &Mutex<ProcessTree>) {
        self.stats.copies += 1;
        let len = (rec.len as usize).min(STACK_COPY_BYTES);
        self.stats.bytes += len as u64;
        if len == 0 {
            self.stats.unreadable += 1;
        }
        let stale = self
            .processes
            .get(&rec.tgid)
            .is_none_or(|p| !p.covers(rec.ip) && p.built.elapsed() >= REBUILD_EVERY);
        if stale {
            let mut mappings = elf::executable_mappings(rec.tgid);
            if mappings.is_empty() {
                // Exited already: the mappings the process tree kept.
                let tree = tree.lock().unwrap_or_else(|p| p.into_inner());
                mappings = tree
                    .mappings(rec.tgid)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
            }
            let p = ProcessUnwinder::build(&mappings, &mut self.files);
            self.processes.insert(rec.tgid, p);
            self.take_file_notes(rec.tgid);
        }
        let Some(p) = self.processes.get(&rec.tgid) else {
            return;
        };
        let unwound = unwind_copy(
            &p.unwinder,
            &mut self.cache,
            (rec.ip, rec.sp, rec.bp),
            &rec.stack[..len],
            MAX_USER_FRAMES,
        );
        if unwound.cut {
            self.stats.cut += 1;
        }
        self.stats.frames += unwound.frames.len() as u64;
        let frames: Arc<[u64]> = Arc::from(unwound.frames);
        let frames = match self.distinct.get(&frames) {
            Some(f) => f.clone(),
            None => {
                self.distinct.insert(frames.clone());
                frames
            }
        };
        self.by_tag.insert(rec.tag, frames);
    }
}

/// The drain thread and what it has unwound.
pub(super) struct StackCopies {
    unwound: Arc<Mutex<Unwound>>,
    ring: Arc<Mutex<RingBuf<MapData>>>,
    tree: Arc<Mutex<ProcessTree>>,
    _reader: RingReader,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Take the ring and start draining it. `tree` is the process tree the
/// watcher keeps: the mappings of a process that exited before its last
/// copies were unwound.
pub(super) fn start(
    ebpf: &mut aya::Ebpf,
    tree: Arc<Mutex<ProcessTree>>,
) -> Result<StackCopies, CaptureError> {
    let map = ebpf
        .take_map("STACK_COPIES")
        .ok_or(CaptureError::Missing("STACK_COPIES"))?;
    let ring = RingBuf::try_from(map).map_err(|source| CaptureError::Map {
        name: "STACK_COPIES",
        source,
    })?;
    let fd: RawFd = ring.as_raw_fd();
    let ring = Arc::new(Mutex::new(ring));
    let unwound = Arc::new(Mutex::new(Unwound::default()));
    let reader = {
        let (ring, unwound, tree) = (ring.clone(), unwound.clone(), tree.clone());
        RingReader::start("protoprof-unwind", fd, POLL_MS, move || {
            drain(&mut lock_in_order(&ring, &unwound), &tree);
        })
        .map_err(CaptureError::Watcher)?
    };
    Ok(StackCopies {
        unwound,
        ring,
        tree,
        _reader: reader,
    })
}

/// The ring and the unwound state, locked in the one order every thread
/// takes them: the ring first, then the state (and under it, briefly, the
/// process tree). A caller that took the state first could hold it while
/// the drain thread, every 5 ms, holds the ring: each would wait on the
/// other for ever, and the run hang as it reads its stacks.
fn lock_in_order<'a>(ring: &'a Mutex<RingBuf<MapData>>, unwound: &'a Mutex<Unwound>) -> Locked<'a> {
    let ring = lock(ring);
    Locked(ring, lock(unwound))
}

struct Locked<'a>(MutexGuard<'a, RingBuf<MapData>>, MutexGuard<'a, Unwound>);

fn drain(locked: &mut Locked<'_>, tree: &Mutex<ProcessTree>) {
    let Locked(ring, unwound) = locked;
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<StackCopy>() {
            // SAFETY: the probe writes whole StackCopy records (repr(C),
            // plain integers and bytes); read unaligned from the ring.
            let rec = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const StackCopy) };
            unwound.unwind(&rec, tree);
        }
    }
}

impl StackCopies {
    /// Every copy sent so far, unwound: frames by tag.
    pub(super) fn frames(&self) -> HashMap<u64, Arc<[u64]>> {
        let mut locked = lock_in_order(&self.ring, &self.unwound);
        drain(&mut locked, &self.tree);
        locked.1.by_tag.clone()
    }

    /// What the copies gave so far.
    pub(super) fn stats(&self) -> CopyStats {
        lock(&self.unwound).stats
    }

    /// The `UNWIND` entry for process `pid` as mapped now (`None`: walk
    /// every stack by frame pointer, as for a process without an entry).
    /// Where it gets copies, its unwinder is built now rather than at its
    /// first copy.
    pub(super) fn prepare(&self, pid: u32, mode: UnwindMode) -> Option<UnwindRanges> {
        prepare(&self.unwound, pid, mode)
    }

    /// What the process-tree watcher needs to write the `UNWIND` entry of a
    /// process that exec'd: the kernel dropped its old one at the exec.
    pub(super) fn after_exec(&self, mode: UnwindMode, map: UnwindMap) -> AfterExec {
        AfterExec {
            unwound: self.unwound.clone(),
            mode,
            map,
        }
    }

    /// What could not be unwound since the last call, by the process it
    /// was found in (a file's tables unreadable, a stripped file without a
    /// debug file): the report's warnings, so that a gap is never silent.
    pub(super) fn take_notes(&self) -> Vec<(u32, String)> {
        let mut locked = lock_in_order(&self.ring, &self.unwound);
        drain(&mut locked, &self.tree);
        std::mem::take(&mut locked.1.notes)
    }
}

/// The `UNWIND` entry for process `pid` as mapped now; see
/// [`StackCopies::prepare`].
fn prepare(state: &Mutex<Unwound>, pid: u32, mode: UnwindMode) -> Option<UnwindRanges> {
    let mut ranges = UnwindRanges::default();
    if mode == UnwindMode::FramePointers {
        return None;
    }
    let mappings = elf::executable_mappings(pid);
    let mut unwound = lock(state);
    let mut copies = mode == UnwindMode::Dwarf;
    if mode == UnwindMode::Auto {
        for (path, range, _) in modules_of(&mappings, &mut unwound.files) {
            let Some(t) = unwound.files.get(&path) else {
                continue;
            };
            if t.needs_copy() {
                copies = true;
            } else if (ranges.n as usize) < MAX_FRAME_POINTER_RANGES {
                ranges.fp[ranges.n as usize] = [range.start, range.end];
                ranges.n += 1;
            }
        }
    }
    unwound.take_file_notes(pid);
    if !copies {
        return None;
    }
    let p = ProcessUnwinder::build(&mappings, &mut unwound.files);
    unwound.processes.insert(pid, p);
    Some(ranges)
}

/// The `UNWIND` map (how each process's stacks are taken, by tgid),
/// written by the probes as targets are added and by the watcher's thread
/// after an exec.
pub(super) type UnwindMap = Arc<Mutex<aya::maps::HashMap<MapData, u32, UnwindRanges>>>;

/// Writes the `UNWIND` entry of a followed process after its exec (the
/// exec probe drops the old one: the new image decides), on the
/// process-tree watcher's thread as the loader maps the new image.
#[derive(Clone)]
pub(super) struct AfterExec {
    unwound: Arc<Mutex<Unwound>>,
    mode: UnwindMode,
    map: UnwindMap,
}

impl AfterExec {
    /// `pid` exec'd and maps what it maps now: its entry again (or none,
    /// when its new image keeps frame pointers throughout).
    pub(super) fn mapped(&self, pid: u32) {
        let entry = prepare(&self.unwound, pid, self.mode);
        let mut map = lock(&self.map);
        // A failed write leaves the process walked by frame pointer, as
        // every process without an entry is.
        let _ = match entry {
            Some(ranges) => map.insert(pid, ranges, 0),
            None => map.remove(&pid),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{mpsc, Arc, Mutex},
        time::{Duration, Instant},
    };

    use super::{start, ProcessTree};

    /// The runner reads the unwound stacks while the drain thread wakes
    /// every 5 ms to drain the same ring. With the two taking their locks
    /// in opposite orders (as `frames` did), reading in a loop hung within
    /// the two seconds; bounded here, so that a hang fails the test.
    #[test]
    #[ignore = "needs root: loads the probes' maps; cargo xtask test runs it as root"]
    fn reading_while_the_drain_thread_runs_never_deadlocks() {
        let mut ebpf = aya::EbpfLoader::new()
            .load(super::super::PROBES_OBJECT)
            .expect("load the probes' object");
        let copies = start(&mut ebpf, Arc::new(Mutex::new(ProcessTree::default())))
            .expect("start the drain thread");
        let (done, finished) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(2);
            let mut reads = 0u64;
            while Instant::now() < until {
                assert!(copies.frames().is_empty());
                assert!(copies.take_notes().is_empty());
                reads += 1;
            }
            let _ = done.send(reads);
        });
        let reads = finished
            .recv_timeout(Duration::from_secs(30))
            .expect("reading the stack copies hung: a lock-order deadlock with the drain thread");
        assert!(reads > 1000, "{reads} reads in 2 s");
        reader.join().expect("reader thread");
        drop(ebpf);
    }
}
