//! resolve: turn stack addresses into function names (blazesym).
//!
//! User addresses are symbolized against the live process (its mappings and
//! the debug info of each mapped file), so this runs before the endpoints are
//! stopped. Inlined frames are expanded where the line tables have them.
//! Return addresses (every frame but the innermost) are looked up one byte
//! earlier, inside the call instruction, so that they name the calling line
//! and the right inlined function. Addresses in Go binaries without a symbol
//! table are named from the binary's own function table (`.gopclntab`);
//! other addresses without a symbol, by their file and the address in it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use blazesym::{
    symbolize::{
        source::{Elf, Kernel, Process, Source},
        Input, Symbolized, Symbolizer,
    },
    Pid,
};

use crate::capture::{
    elf::{self, ElfFile, Mapping},
    probe_frames,
    process_tree::ProcessTree,
    Graph, StackRecord,
};

/// One frame of a resolved stack. The name is shared by every sample
/// with that frame: a pass holds one sample per stack and 100-ms slot, and
/// an owned copy of each name per sample made the runner's memory grow
/// with the pass's length (heaptrack: 126 MB of 330 MB for a 32-s tuic
/// bulk pass).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub name: Arc<str>,
    pub kernel: bool,
}

/// A weighted stack with names, outermost frame first. The frames and the
/// thread's name are shared by every sample with the same stack (one per
/// 100-ms slot for CPU samples), so that a long pass costs the runner a
/// few words per sample, not a copy of its stack.
#[derive(Debug, Clone)]
pub struct ResolvedSample {
    pub graph: Graph,
    pub tgid: u32,
    pub tid: u32,
    pub thread_name: Arc<str>,
    pub frames: Arc<[Frame]>,
    /// Frames walked for the user stack (before inline expansion).
    pub user_depth: usize,
    pub weight: u64,
    /// The measured window (phase) it was recorded in, if the probe keeps one.
    pub window: Option<u32>,
    /// Its time slot in the window (CPU samples).
    pub slot: u16,
}

/// Name used where an address has no symbol.
pub const UNKNOWN: &str = "[unknown]";

/// Names for a process's addresses that blazesym could not name, from the
/// files mapped there: a Go binary without a symbol table names them from
/// its function table; any other file as `<file name>+<address in the
/// file>`, so that a sample in a stripped library's internal code (the
/// AES assembly inside libcrypto.so.3) says whose code it is, rather than
/// borrowing a neighbouring exported symbol or saying nothing.
struct MappedFiles {
    mappings: Vec<Mapping>,
    files: HashMap<std::path::PathBuf, Option<ElfFile>>,
}

impl MappedFiles {
    fn new(pid: u32, tree: &ProcessTree) -> MappedFiles {
        let mut mappings = elf::executable_mappings(pid);
        if mappings.is_empty() {
            mappings = tree.mappings(pid).map(<[_]>::to_vec).unwrap_or_default();
        }
        MappedFiles {
            mappings,
            files: HashMap::new(),
        }
    }

    fn name(&mut self, addr: u64) -> Option<String> {
        let m = self
            .mappings
            .iter()
            .find(|m| addr >= m.start && addr < m.end)?;
        let offset = addr - m.start + m.file_offset;
        let file = self
            .files
            .entry(m.path.clone())
            .or_insert_with(|| ElfFile::read(&m.path).ok())
            .as_ref();
        let vaddr = file.and_then(|f| {
            if f.pie {
                f.address_of_offset(offset)
            } else {
                Some(addr)
            }
        });
        if let (Some(f), Some(vaddr)) = (file, vaddr) {
            if f.is_go && !f.has_symtab {
                if let Some(func) = f.function_at(vaddr) {
                    return Some(func.name.clone());
                }
            }
        }
        Some(offset_name(&m.path, vaddr.unwrap_or(offset)))
    }
}

/// `libcrypto.so.3+0x1a2b3c`: a file's name and an address in it (its ELF
/// virtual address, as `nm` and `addr2line` take it, where the file could be
/// read; else the offset in the file).
fn offset_name(path: &std::path::Path, addr: u64) -> String {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    format!("{file}+{addr:#x}")
}

/// What names a record's frames: its process, whether probe frames are
/// kept as a `[profiler]` frame (CPU samples), its user and kernel
/// addresses and its leaf.
type StackId<'a> = (u32, bool, &'a [u64], &'a [u64], Option<&'a str>);

/// Symbolize every record's user and kernel stack.
pub fn resolve(
    records: &[StackRecord],
    thread_names: &HashMap<u32, String>,
) -> Vec<ResolvedSample> {
    resolve_in_tree(records, thread_names, &ProcessTree::default())
}

/// Symbolize every record's stacks, each against its own process: a live
/// one through /proc, one that has exited through the mappings `tree` kept
/// for it. Each sample is then counted as its target's (a forked child's
/// as the process the runner added).
pub fn resolve_in_tree(
    records: &[StackRecord],
    thread_names: &HashMap<u32, String>,
    tree: &ProcessTree,
) -> Vec<ResolvedSample> {
    let symbolizer = Symbolizer::builder()
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .enable_code_info(true)
        .build();

    // Batch per process: one symbolization call per source.
    let mut user_addrs: HashMap<u32, BTreeSet<u64>> = HashMap::new();
    let mut kernel_addrs: BTreeSet<u64> = BTreeSet::new();
    for r in records {
        user_addrs
            .entry(r.tgid)
            .or_default()
            .extend(lookup_addrs(&r.user));
        kernel_addrs.extend(lookup_addrs(&r.kernel));
    }
    let mut user_names: HashMap<(u32, u64), Vec<Arc<str>>> = HashMap::new();
    for (tgid, addrs) in user_addrs {
        let gone = !std::path::Path::new(&format!("/proc/{tgid}/maps")).exists();
        let found = match tree.mappings(tgid) {
            Some(mappings) if gone => symbolize_from_mappings(&symbolizer, mappings, addrs),
            _ => {
                let src = Source::Process(Process::new(Pid::from(tgid)));
                symbolize(&symbolizer, &src, addrs)
            }
        };
        let mut files = MappedFiles::new(tgid, tree);
        for (addr, names) in found {
            let names = match names {
                Some(n) => n,
                None => match files.name(addr) {
                    Some(n) => vec![n],
                    None => continue,
                },
            };
            user_names.insert((tgid, addr), names.into_iter().map(Arc::from).collect());
        }
    }
    let kernel_names: HashMap<u64, Vec<Arc<str>>> = if kernel_addrs.is_empty() {
        HashMap::new()
    } else {
        let src = Source::Kernel(Kernel::default());
        symbolize(&symbolizer, &src, kernel_addrs)
            .into_iter()
            .filter_map(|(a, n)| n.map(|n| (a, n.into_iter().map(Arc::from).collect())))
            .collect()
    };

    // Each distinct stack is named once; its samples share the frames.
    let mut stacks: HashMap<StackId, Arc<[Frame]>> = HashMap::new();
    let mut threads: HashMap<u32, Arc<str>> = HashMap::new();
    records
        .iter()
        .map(|r| {
            let is_cpu = r.graph == Graph::Cpu;
            let key = (
                r.tgid,
                is_cpu,
                &r.user[..],
                &r.kernel[..],
                r.leaf.as_deref(),
            );
            let frames = stacks
                .entry(key)
                .or_insert_with(|| {
                    let mut frames = Vec::new();
                    for addr in lookup_addrs(&r.user).collect::<Vec<_>>().into_iter().rev() {
                        push_frames(&mut frames, user_names.get(&(r.tgid, addr)), addr, false);
                    }
                    let user_frames = frames.len();
                    for addr in lookup_addrs(&r.kernel)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        push_frames(&mut frames, kernel_names.get(&addr), addr, true);
                    }
                    trim_probe_frames(is_cpu, &mut frames, user_frames);
                    if let Some(leaf) = &r.leaf {
                        frames.push(Frame {
                            name: Arc::from(leaf.as_str()),
                            kernel: true,
                        });
                    }
                    frames.into()
                })
                .clone();
            let thread_name = threads
                .entry(r.tid)
                .or_insert_with(|| {
                    thread_names
                        .get(&r.tid)
                        .map_or_else(|| Arc::from(format!("tid-{}", r.tid)), |n| Arc::from(&**n))
                })
                .clone();
            ResolvedSample {
                graph: r.graph,
                tgid: tree.root_of(r.tgid).unwrap_or(r.tgid),
                tid: r.tid,
                thread_name,
                frames,
                user_depth: r.user.len(),
                weight: r.weight,
                window: r.window,
                slot: r.slot,
            }
        })
        .collect()
}

/// Our probes' frames are not the target's: off-CPU stacks end where the
/// thread blocked, and a CPU sample taken while a probe ran ends in one
/// `[profiler] <program>` frame (the `profiler` cost category).
fn trim_probe_frames(is_cpu: bool, frames: &mut Vec<Frame>, kernel_from: usize) {
    let names: Vec<&str> = frames[kernel_from..].iter().map(|f| &*f.name).collect();
    let Some(cut) = probe_frames::probe_cut(&names) else {
        return;
    };
    frames.truncate(kernel_from + cut.start);
    if is_cpu {
        frames.push(Frame {
            name: Arc::from(format!(
                "{}{}",
                probe_frames::PROFILER_FRAME_PREFIX,
                cut.program
            )),
            kernel: true,
        });
    }
}

/// The address to look up for each frame, innermost first: return
/// addresses move back into the call instruction.
fn lookup_addrs(stack: &[u64]) -> impl Iterator<Item = u64> + '_ {
    stack
        .iter()
        .enumerate()
        .map(|(i, &ip)| if i == 0 { ip } else { ip.saturating_sub(1) })
}

fn push_frames(frames: &mut Vec<Frame>, names: Option<&Vec<Arc<str>>>, addr: u64, kernel: bool) {
    match names {
        Some(names) => frames.extend(names.iter().map(|n| Frame {
            name: n.clone(),
            kernel,
        })),
        None => frames.push(Frame {
            name: if kernel {
                Arc::from(UNKNOWN)
            } else {
                Arc::from(format!("{UNKNOWN} {addr:#x}"))
            },
            kernel,
        }),
    }
}

/// Names for addresses of a process that has exited, from the mappings
/// read while it lived: each address becomes an offset in its file.
fn symbolize_from_mappings(
    symbolizer: &Symbolizer,
    mappings: &[Mapping],
    addrs: BTreeSet<u64>,
) -> Vec<(u64, Option<Vec<String>>)> {
    let mut by_file: HashMap<&std::path::Path, (Vec<u64>, Vec<u64>)> = HashMap::new();
    let mut out = Vec::new();
    for addr in addrs {
        match mappings.iter().find(|m| addr >= m.start && addr < m.end) {
            Some(m) => {
                let (a, offsets) = by_file.entry(&m.path).or_default();
                a.push(addr);
                offsets.push(addr - m.start + m.file_offset);
            }
            None => out.push((addr, None)),
        }
    }
    for (path, (addrs, offsets)) in by_file {
        let src = Source::Elf(Elf::new(path));
        out.extend(symbolize_input(
            symbolizer,
            &src,
            &addrs,
            Input::FileOffset(&offsets),
        ));
    }
    out
}

/// Names for each address (`None` = unknown), outer function first, then
/// the functions inlined into it at that address.
fn symbolize(
    symbolizer: &Symbolizer,
    src: &Source,
    addrs: BTreeSet<u64>,
) -> Vec<(u64, Option<Vec<String>>)> {
    let addrs: Vec<u64> = addrs.into_iter().collect();
    symbolize_input(symbolizer, src, &addrs, Input::AbsAddr(&addrs))
}

/// [`symbolize`] with the input given: `addrs` as looked up, or as file
/// offsets (in the same order).
fn symbolize_input(
    symbolizer: &Symbolizer,
    src: &Source,
    addrs: &[u64],
    input: Input<&[u64]>,
) -> Vec<(u64, Option<Vec<String>>)> {
    let Ok(results) = symbolizer.symbolize(src, input) else {
        return addrs.iter().map(|&a| (a, None)).collect();
    };
    addrs
        .iter()
        .zip(results)
        .map(|(&addr, sym)| match sym {
            Symbolized::Sym(sym) => {
                let mut names = vec![clean_name(&sym.name)];
                // An inlined function's code_info is its call site, in its
                // caller; the function's own file is where the next one is
                // called from (or, for the innermost, the address itself).
                let own_files = sym
                    .inlined
                    .iter()
                    .skip(1)
                    .map(|f| f.code_info.as_ref())
                    .chain(std::iter::once(sym.code_info.as_deref()));
                names.extend(sym.inlined.iter().zip(own_files).map(|(f, file)| {
                    let name = clean_name(&f.name);
                    match file.and_then(|c| crate_of(&c.to_path())) {
                        Some(krate) if !is_qualified(&name) => format!("{krate}::{name}"),
                        _ => name,
                    }
                }));
                (addr, Some(names))
            }
            Symbolized::Unknown(_) => (addr, None),
        })
        .collect()
}

/// Whether a function name carries its path (`a::b` before any generics).
fn is_qualified(name: &str) -> bool {
    name.split('<')
        .next()
        .is_some_and(|head| head.contains("::"))
}

/// The crate a source file belongs to, from where cargo and rustup keep
/// sources: `…/library/core/src/…` (the standard library),
/// `…/registry/src/<index>/tokio-1.47.1/src/…`, or `<dir>/src/…` of a
/// workspace crate. DWARF names inlined functions without their path; this
/// puts the crate back so frames say whose code they are.
fn crate_of(path: &std::path::Path) -> Option<String> {
    let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
    let registry = parts
        .windows(2)
        .position(|w| w == ["registry", "src"])
        .and_then(|i| parts.get(i + 3));
    let dir = match registry {
        Some(dir) => *dir,
        None => {
            let src = parts.iter().rposition(|p| *p == "src")?;
            *parts.get(src.checked_sub(1)?)?
        }
    };
    // `name-1.2.3` (or `name-1.2.3-rc.1`): drop the version.
    let name = match dir
        .match_indices('-')
        .find(|(i, _)| dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
    {
        Some((i, _)) => &dir[..i],
        None => dir,
    };
    (!name.is_empty()).then(|| name.replace('-', "_"))
}

/// Drop the hash of legacy Rust mangling; the folded format reserves ';'.
fn clean_name(name: &str) -> String {
    elf::strip_hash(name).replace(';', ":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_from_source_paths() {
        let c = |p: &str| crate_of(std::path::Path::new(p));
        assert_eq!(
            c("/rustc/abc/library/core/src/sync/atomic.rs").as_deref(),
            Some("core")
        );
        assert_eq!(
            c("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.47.1/src/runtime/park.rs").as_deref(),
            Some("tokio")
        );
        assert_eq!(
            c("/root/.cargo/registry/src/i/parking_lot_core-0.9.11/src/parking_lot.rs").as_deref(),
            Some("parking_lot_core")
        );
        assert_eq!(
            c("/work/main/bench-proto/src/relay.rs").as_deref(),
            Some("bench_proto")
        );
        assert_eq!(c("relay.rs"), None);
        assert_eq!(
            c("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/mio-1.2.5/lib.rs")
                .as_deref(),
            Some("mio")
        );
        assert!(is_qualified("a::b<c::d>") && !is_qualified("poll_write<tokio::net::TcpStream>"));
    }

    #[test]
    fn hashes_are_dropped() {
        assert_eq!(
            clean_name("core::ptr::drop::h0123456789abcdef"),
            "core::ptr::drop"
        );
        assert_eq!(clean_name("a::hello"), "a::hello");
        assert_eq!(clean_name("x;y"), "x:y");
    }

    #[test]
    fn probe_frames_are_trimmed() {
        let frames = |names: &[&str]| -> Vec<Frame> {
            names
                .iter()
                .map(|n| Frame {
                    name: Arc::from(*n),
                    kernel: !n.starts_with("user"),
                })
                .collect()
        };
        let stack = [
            "user_main",
            "do_syscall_64",
            "__schedule",
            "__traceiter_sched_switch",
            "bpf_trace_run4",
            "bpf_prog_6deef7357e7b4530_pp_sched_switch",
            "bpf_get_stackid",
        ];
        let mut off = frames(&stack);
        trim_probe_frames(false, &mut off, 1);
        assert_eq!(off, frames(&stack[..3]));
        let mut cpu = frames(&stack);
        trim_probe_frames(true, &mut cpu, 1);
        let mut want = frames(&stack[..3]);
        want.extend(frames(&["[profiler] pp_sched_switch"]));
        assert_eq!(cpu, want);
        // A user frame that happens to share a probe's name is not cut.
        let mut user = frames(&["user_pp_sys_enter", "do_syscall_64"]);
        trim_probe_frames(true, &mut user, 1);
        assert_eq!(user, frames(&["user_pp_sys_enter", "do_syscall_64"]));
    }

    #[test]
    fn unnamed_code_is_named_by_file_and_address() {
        let lib = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
        assert_eq!(offset_name(lib, 0x1a2b3c), "libcrypto.so.3+0x1a2b3c");
    }

    #[test]
    fn return_addresses_move_into_the_call() {
        let addrs: Vec<u64> = lookup_addrs(&[100, 200, 300]).collect();
        assert_eq!(addrs, vec![100, 199, 299]);
    }

    #[test]
    fn samples_of_one_stack_share_its_frames() {
        let addr = hashes_are_dropped as *const () as u64;
        let me = std::process::id();
        let rec = |slot, user: Vec<u64>| StackRecord {
            graph: Graph::Cpu,
            tgid: me,
            tid: me,
            user: user.into(),
            kernel: Default::default(),
            leaf: None,
            weight: 1,
            window: Some(0),
            slot,
        };
        let out = resolve(
            &[
                rec(0, vec![addr]),
                rec(1, vec![addr]),
                rec(1, vec![addr + 1]),
            ],
            &HashMap::new(),
        );
        assert!(Arc::ptr_eq(&out[0].frames, &out[1].frames));
        assert!(!Arc::ptr_eq(&out[0].frames, &out[2].frames));
        assert!(Arc::ptr_eq(&out[0].thread_name, &out[2].thread_name));
        assert_eq!((out[0].slot, out[1].slot), (0, 1));
    }

    #[test]
    fn symbolizes_this_process() {
        // A real address of a function in this test binary.
        let addr = hashes_are_dropped as *const () as u64;
        let me = std::process::id();
        let rec = StackRecord {
            graph: Graph::Cpu,
            tgid: me,
            tid: me,
            user: vec![addr].into(),
            kernel: Default::default(),
            leaf: Some("write".into()),
            weight: 3,
            window: Some(0),
            slot: 0,
        };
        let names = HashMap::from([(me, "t".to_string())]);
        let out = resolve(&[rec], &names);
        let frames: Vec<&str> = out[0].frames.iter().map(|f| &*f.name).collect();
        assert!(
            frames.iter().any(|n| n.contains("hashes_are_dropped")),
            "{frames:?}"
        );
        assert_eq!(frames.last(), Some(&"write"));
        assert_eq!((out[0].weight, &*out[0].thread_name), (3, "t"));
    }
}
