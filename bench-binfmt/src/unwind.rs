//! Unwind tables of an ELF file, and whether its code keeps frame pointers.
//!
//! The probes walk a stack by frame pointer where the code keeps them and
//! copy it for the runner otherwise; the runner then unwinds the copy with
//! framehop from these tables: `.eh_frame` (indexed by `.eh_frame_hdr`)
//! as the file has it, or `.debug_frame` from the file or from its separate
//! debug file, found by build id where the file is stripped.
//!
//! Whether a file keeps frame pointers is read from its functions' first
//! instructions: code built with them begins nearly every function with
//! `push %rbp; mov %rsp,%rbp` (after an `endbr64` where CET is on, and
//! with other moves between the two where GCC scheduled them). Go
//! binaries keep frame pointers but begin functions with a stack check and
//! carry no `.eh_frame`, so they are walked as they are.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use framehop::{x86_64::UnwindRegsX86_64, ExplicitModuleSectionInfo, Module};
// The unwinder the runner and the fuzz target drive, re-exported so that
// both use this crate's framehop.
pub use framehop::{
    x86_64::{CacheX86_64, UnwinderX86_64},
    Unwinder,
};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::elf::ElfError;

/// Most functions whose first instructions are read to decide
/// [`FramePointers`]; spread evenly over the file's functions.
const PROLOGUES_READ: usize = 512;
/// Fewer functions than this decide nothing ([`FramePointers::Unknown`]).
const PROLOGUES_NEEDED: usize = 16;
/// The page size mappings are aligned to (x86_64).
const PAGE: u64 = 4096;

/// Whether a file's code keeps frame pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePointers {
    /// At least 60 % of the functions read set up a frame pointer.
    Kept,
    /// Fewer did.
    Omitted,
    /// Too few functions with a symbol to tell (a stripped file).
    Unknown,
}

/// The unwind-relevant parts of one ELF file. Section data is shared
/// (`Arc`), so that the unwinders of many processes mapping one library
/// hold one copy of its tables.
#[derive(Debug, Clone)]
pub struct UnwindTables {
    pub path: PathBuf,
    pub frame_pointers: FramePointers,
    /// Built by the Go toolchain (frame pointers, no `.eh_frame`).
    pub is_go: bool,
    /// The GNU build id, for finding a separate debug file.
    pub build_id: Option<Vec<u8>>,
    text_svma: Option<Range<u64>>,
    got_svma: Option<Range<u64>>,
    eh_frame_svma: Option<Range<u64>>,
    eh_frame: Option<Arc<[u8]>>,
    eh_frame_hdr_svma: Option<Range<u64>>,
    eh_frame_hdr: Option<Arc<[u8]>>,
    debug_frame: Option<Arc<[u8]>>,
    /// (file offset, virtual address, size) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
    /// What could not be used and what was done instead, one sentence
    /// each (for the report's warnings).
    pub notes: Vec<String>,
}

impl UnwindTables {
    /// Read the tables of the file at `path`.
    pub fn read(path: &Path) -> Result<UnwindTables, ElfError> {
        let data = std::fs::read(path).map_err(|e| ElfError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        UnwindTables::parse(path, &data)
    }

    /// Read the tables of `data`, the contents of the file at `path`.
    pub fn parse(path: &Path, data: &[u8]) -> Result<UnwindTables, ElfError> {
        let file = object::File::parse(data).map_err(|e| ElfError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let range = |name: &str| {
            let s = file.section_by_name(name)?;
            let end = s.address().checked_add(s.size())?;
            Some(s.address()..end)
        };
        let bytes = |name: &str| -> Option<Arc<[u8]>> {
            let s = file.section_by_name(name)?;
            // A section whose contents cannot be read (compressed, or past
            // the file's end) is treated as absent.
            let d = s.uncompressed_data().ok()?;
            (!d.is_empty()).then(|| Arc::from(&*d))
        };
        let is_go = file.section_by_name(".gopclntab").is_some()
            || file.section_by_name(".go.buildinfo").is_some();
        let eh_frame_svma = range(".eh_frame");
        let eh_frame_hdr_svma = range(".eh_frame_hdr");
        // An index that points outside .eh_frame is dropped: framehop then
        // indexes .eh_frame itself (gimli subtracts the index's pointers
        // from .eh_frame's start unchecked; `cargo xtask fuzz unwind`
        // found it).
        let mut notes = Vec::new();
        let eh_frame_hdr = bytes(".eh_frame_hdr").filter(|hdr| {
            let usable = match (&eh_frame_hdr_svma, &eh_frame_svma) {
                (Some(h), Some(e)) => index_points_into(hdr, h.start, e),
                _ => false,
            };
            if !usable {
                notes.push(format!(
                    "{}: .eh_frame_hdr is not an index of .eh_frame: not used (the unwinder indexes \
                     .eh_frame itself)",
                    path.display()
                ));
            }
            usable
        });
        Ok(UnwindTables {
            path: path.to_path_buf(),
            frame_pointers: frame_pointers(&file),
            is_go,
            build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
            text_svma: range(".text"),
            got_svma: range(".got"),
            eh_frame_svma,
            eh_frame: bytes(".eh_frame"),
            eh_frame_hdr_svma,
            eh_frame_hdr,
            debug_frame: bytes(".debug_frame"),
            segments: file
                .segments()
                .map(|s| (s.file_range().0, s.address(), s.file_range().1))
                .collect(),
            notes,
        })
    }

    /// Read the tables of `path`; where it has neither `.eh_frame` nor
    /// `.debug_frame` (stripped of them), take `.debug_frame` from its
    /// separate debug file, found by build id under `debug_root`
    /// (`/usr/lib/debug` on a system). What could not be found is said in
    /// [`Self::notes`]: the stacks in that file are then walked by frame
    /// pointer.
    pub fn read_with_debug_file(path: &Path, debug_root: &Path) -> Result<UnwindTables, ElfError> {
        let mut t = UnwindTables::read(path)?;
        // Walked by frame pointer anyway: nothing to look for.
        if t.has_tables() || t.is_go || t.frame_pointers == FramePointers::Kept {
            return Ok(t);
        }
        let Some(debug) = t
            .build_id
            .as_deref()
            .and_then(|id| debug_file_path(debug_root, id))
        else {
            t.notes.push(format!(
                "{}: no unwind tables and no build id to find a debug file by: its stacks are \
                 walked by frame pointer",
                path.display()
            ));
            return Ok(t);
        };
        match UnwindTables::read(&debug) {
            Ok(d) if t.add_debug_file(&d) => {}
            Ok(_) => t.notes.push(format!(
                "{}: no unwind tables, and its debug file {} has no .debug_frame: its stacks are \
                 walked by frame pointer",
                path.display(),
                debug.display()
            )),
            Err(e) => t.notes.push(format!(
                "{}: no unwind tables, and no debug file by its build id ({e}): its stacks are \
                 walked by frame pointer",
                path.display()
            )),
        }
        Ok(t)
    }

    /// The virtual address of a file offset.
    pub fn address_of_offset(&self, offset: u64) -> Option<u64> {
        self.segments.iter().find_map(|(off, vaddr, size)| {
            let into = offset.checked_sub(*off).filter(|into| into < size)?;
            into.checked_add(*vaddr)
        })
    }

    /// The virtual address at the start of a mapping of the file from
    /// (page-aligned) `offset`. Not [`Self::address_of_offset`]: a page
    /// may hold the end of one segment and the start of the next (lld
    /// packs them so), and the mapping belongs to the segment whose
    /// page-aligned offset it starts at, not to the one whose bytes the
    /// offset falls in; taking the latter put every address of the
    /// executable segment 4 KiB off.
    pub fn address_of_mapping(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(off, _, _)| off & !(PAGE - 1) == offset)
            .and_then(|(off, vaddr, _)| vaddr.checked_sub(off - offset))
            .or_else(|| self.address_of_offset(offset))
    }

    /// Whether the file has tables to unwind it by.
    pub fn has_tables(&self) -> bool {
        self.eh_frame.is_some() || self.debug_frame.is_some()
    }

    /// Whether stacks in this file's code must be copied and unwound from
    /// its tables: it does not keep frame pointers (or cannot be shown to)
    /// and it has the tables. Go code is walked by frame pointer.
    pub fn needs_copy(&self) -> bool {
        !self.is_go && self.frame_pointers != FramePointers::Kept && self.has_tables()
    }

    /// Take `.debug_frame` from `debug`, the file's separate debug file,
    /// where the file itself has neither table. Returns whether it did.
    pub fn add_debug_file(&mut self, debug: &UnwindTables) -> bool {
        if self.has_tables() || debug.debug_frame.is_none() {
            return false;
        }
        self.debug_frame = debug.debug_frame.clone();
        true
    }

    /// A framehop module for the file mapped at `avma_range`, its ELF
    /// virtual address 0 at `bias` in the process.
    pub fn module(&self, name: String, avma_range: Range<u64>, bias: u64) -> Module<Arc<[u8]>> {
        Module::new(
            name,
            avma_range,
            bias,
            ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: self.text_svma.clone(),
                got_svma: self.got_svma.clone(),
                eh_frame_svma: self.eh_frame_svma.clone(),
                eh_frame: self.eh_frame.clone(),
                eh_frame_hdr_svma: self.eh_frame_hdr_svma.clone(),
                eh_frame_hdr: self.eh_frame_hdr.clone(),
                debug_frame: self.debug_frame.clone(),
                ..Default::default()
            },
        )
    }
}

/// A stack as [`unwind_copy`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    /// The instruction pointer, then return addresses, innermost first.
    pub frames: Vec<u64>,
    /// The unwinding needed a word past the copied bytes: deeper frames
    /// were cut off.
    pub cut: bool,
}

/// Unwind a copied stack: `stack` holds the process's memory from `sp`
/// up, the registers are the thread's at the sample. At most `max` frames.
pub fn unwind_copy(
    unwinder: &UnwinderX86_64<Arc<[u8]>>,
    cache: &mut CacheX86_64,
    (ip, sp, bp): (u64, u64, u64),
    stack: &[u8],
    max: usize,
) -> Unwound {
    let mut cut = false;
    let mut read_stack = |addr: u64| -> Result<u64, ()> {
        let word = addr
            .checked_sub(sp)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| stack.get(at..at.checked_add(8)?));
        match word.and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            Some(w) => Ok(u64::from_le_bytes(w)),
            None => {
                // Above the copy: the stack went on; below sp: garbage.
                if addr >= sp && !stack.is_empty() {
                    cut = true;
                }
                Err(())
            }
        }
    };
    let mut frames = Vec::with_capacity(32);
    let regs = UnwindRegsX86_64::new(ip, sp, bp);
    // Scoped: the iterator holds `read_stack`, which holds `cut`.
    {
        let mut iter = unwinder.iter_frames(ip, regs, cache, &mut read_stack);
        while frames.len() < max {
            match iter.next() {
                Ok(Some(f)) => frames.push(f.address()),
                Ok(None) | Err(_) => break,
            }
        }
    }
    Unwound { frames, cut }
}

/// Where a separate debug file with build id `id` is installed under
/// `root` (`/usr/lib/debug`: the layout of Debian's `-dbgsym` packages).
pub fn debug_file_path(root: &Path, id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        root.join(".build-id")
            .join(format!("{first:02x}"))
            .join(format!("{rest}.debug")),
    )
}

/// Whether `.eh_frame_hdr` (`hdr`, at `hdr_svma`) is in the layout every
/// linker writes (version 1; `.eh_frame`'s address pc-relative, the count
/// as 4 bytes, the table's entries relative to `hdr` in 4 bytes each) and
/// names `.eh_frame`'s start and FDEs inside it.
fn index_points_into(hdr: &[u8], hdr_svma: u64, eh_frame: &Range<u64>) -> bool {
    let word = |at: usize| -> Option<i64> {
        let b: [u8; 4] = hdr.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(i64::from(i32::from_le_bytes(b)))
    };
    let at = |base: u64, rel: i64| base.checked_add_signed(rel);
    let inside = |a: Option<u64>| a.is_some_and(|a| eh_frame.contains(&a));
    if hdr.get(..4) != Some(&[1, 0x1b, 0x03, 0x3b][..]) {
        return false;
    }
    let Some(ptr) = word(4).and_then(|rel| at(hdr_svma + 4, rel)) else {
        return false;
    };
    let Some(count) = word(8).map(|c| c as u32 as usize) else {
        return false;
    };
    let table_end = count.checked_mul(8).and_then(|n| n.checked_add(12));
    if ptr != eh_frame.start || table_end.is_none_or(|end| end > hdr.len()) {
        return false;
    }
    (0..count).all(|i| inside(word(12 + 8 * i + 4).and_then(|rel| at(hdr_svma, rel))))
}

/// Read the first instructions of up to [`PROLOGUES_READ`] functions.
fn frame_pointers(file: &object::File) -> FramePointers {
    let Some(text) = file.section_by_name(".text") else {
        return FramePointers::Unknown;
    };
    let Ok(code) = text.data() else {
        return FramePointers::Unknown;
    };
    let start = text.address();
    let mut entries: Vec<u64> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.size() >= 8)
        .map(|s| s.address())
        .filter(|a| *a >= start && a - start < code.len() as u64)
        .collect();
    entries.sort_unstable();
    entries.dedup();
    if entries.len() < PROLOGUES_NEEDED {
        return FramePointers::Unknown;
    }
    let step = entries.len().div_ceil(PROLOGUES_READ);
    let mut read = 0usize;
    let mut kept = 0usize;
    for a in entries.iter().step_by(step) {
        // In range: filtered above.
        let at = (a - start) as usize;
        read += 1;
        if sets_up_frame_pointer(&code[at..]) {
            kept += 1;
        }
    }
    if kept * 10 >= read * 6 {
        FramePointers::Kept
    } else {
        FramePointers::Omitted
    }
}

/// `[endbr64] push %rbp`, then `mov %rsp,%rbp` (either encoding) within
/// the next few instructions: GCC schedules other moves between the two.
fn sets_up_frame_pointer(code: &[u8]) -> bool {
    let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(code);
    let Some(rest) = code.strip_prefix(&[0x55]) else {
        return false;
    };
    let rest = &rest[..rest.len().min(16)];
    rest.windows(3)
        .any(|w| w == [0x48, 0x89, 0xe5] || w == [0x48, 0x8b, 0xec])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologues_are_recognised() {
        assert!(sets_up_frame_pointer(&[0x55, 0x48, 0x89, 0xe5, 0x90]));
        assert!(sets_up_frame_pointer(&[
            0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5
        ]));
        assert!(sets_up_frame_pointer(&[0x55, 0x48, 0x8b, 0xec]));
        // GCC: push %rbp; xor %edi,%edi; mov $1,%edx; mov %rsp,%rbp.
        assert!(sets_up_frame_pointer(&[
            0x55, 0x31, 0xff, 0xba, 0x01, 0x00, 0x00, 0x00, 0x48, 0x89, 0xe5
        ]));
        // push %rbp; mov %rdi,%rbp: rbp as a scratch register.
        assert!(!sets_up_frame_pointer(&[0x55, 0x48, 0x89, 0xfd]));
        assert!(!sets_up_frame_pointer(&[0x55]));
        assert!(!sets_up_frame_pointer(&[]));
    }

    #[test]
    fn debug_files_are_found_by_build_id() {
        let root = Path::new("/usr/lib/debug");
        assert_eq!(
            debug_file_path(root, &[0xab, 0x01, 0xff]),
            Some(PathBuf::from("/usr/lib/debug/.build-id/ab/01ff.debug"))
        );
        assert_eq!(debug_file_path(root, &[0xab]), None);
        assert_eq!(debug_file_path(root, &[]), None);
    }

    fn run(cmd: &mut std::process::Command) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install -y gcc binutils)"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A file stripped of its unwind tables is unwound from the
    /// `.debug_frame` of its debug file, found by build id; without the
    /// debug file, a note says its stacks are walked instead.
    #[test]
    fn a_stripped_file_is_unwound_from_its_debug_file() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!("binfmt-debug-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let src = dir.join("p.c");
        std::fs::write(
            &src,
            "int f(int x) { return x + 1; }\nint main(void) { return f(1); }\n",
        )
        .expect("source");
        let full = dir.join("p");
        // .debug_frame rather than .eh_frame for our code (the C runtime's
        // objects still bring an .eh_frame, removed below).
        run(Command::new("cc")
            .args([
                "-O1",
                "-g",
                "-fno-asynchronous-unwind-tables",
                "-Wl,--build-id",
                "-o",
            ])
            .arg(&full)
            .arg(&src));
        let debug = dir.join("p.debug");
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&full)
            .arg(&debug));
        let stripped = dir.join("p.stripped");
        run(Command::new("objcopy")
            .args([
                "--strip-debug",
                "--remove-section=.eh_frame",
                "--remove-section=.eh_frame_hdr",
            ])
            .arg(&full)
            .arg(&stripped));

        let root = dir.join("debug-root");
        let bare = UnwindTables::read_with_debug_file(&stripped, &root).expect("read");
        assert!(!bare.has_tables());
        assert!(
            bare.notes.iter().any(|n| n.contains("no debug file")),
            "{:?}",
            bare.notes
        );
        let id = bare.build_id.clone().expect("a build id");
        let at = debug_file_path(&root, &id).expect("a path");
        std::fs::create_dir_all(at.parent().expect("parent")).expect("build-id dir");
        std::fs::copy(&debug, &at).expect("install the debug file");
        let t = UnwindTables::read_with_debug_file(&stripped, &root).expect("read");
        assert!(t.has_tables() && t.debug_frame.is_some(), "{:?}", t.notes);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// This test's own binary: Rust code built with frame pointers (the
    /// workspace's rustflags) and with `.eh_frame`.
    #[test]
    fn this_binary_keeps_frame_pointers_and_has_tables() {
        let exe = std::env::current_exe().expect("current exe");
        let t = UnwindTables::read(&exe).expect("read own binary");
        assert_eq!(t.frame_pointers, FramePointers::Kept, "{}", exe.display());
        assert!(t.has_tables());
        assert!(t.eh_frame_hdr.is_some(), "the linker's index was refused");
        assert!(!t.needs_copy());
        assert!(t.build_id.is_some());
    }

    /// glibc is built without frame pointers and ships `.eh_frame`.
    #[test]
    fn libc_omits_frame_pointers_and_is_copied() {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let libc = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/libc.so"))
            .expect("libc mapped");
        let t = UnwindTables::read(Path::new(libc)).expect("read libc");
        assert_eq!(t.frame_pointers, FramePointers::Omitted, "{libc}");
        assert!(t.eh_frame_hdr.is_some(), "libc's index was refused");
        assert!(t.needs_copy());
    }

    /// lld's layout (this endpoint's, read with `readelf -l`): the
    /// read-only segment ends and the executable one starts in the same
    /// file page, 0x2cf000.
    #[test]
    fn a_mapping_belongs_to_the_segment_it_starts() {
        let t = UnwindTables {
            segments: vec![
                (0, 0, 0x2cf7b8),
                (0x2cf7c0, 0x2d07c0, 0x7ea260),
                (0xab9a20, 0xabba20, 0x49240),
            ],
            ..empty()
        };
        assert_eq!(t.address_of_mapping(0x2cf000), Some(0x2d0000));
        assert_eq!(t.address_of_mapping(0), Some(0));
        assert_eq!(t.address_of_mapping(0xab9000), Some(0xabb000));
        // No segment starts in that page: the byte's own segment.
        assert_eq!(t.address_of_mapping(0x1000), Some(0x1000));
    }

    fn empty() -> UnwindTables {
        UnwindTables {
            path: PathBuf::new(),
            frame_pointers: FramePointers::Unknown,
            is_go: false,
            build_id: None,
            text_svma: None,
            got_svma: None,
            eh_frame_svma: None,
            eh_frame: None,
            eh_frame_hdr_svma: None,
            eh_frame_hdr: None,
            debug_frame: None,
            segments: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn an_index_outside_eh_frame_is_refused() {
        // Header at 0x1000; .eh_frame at 0x2000..0x3000; two entries.
        let hdr = |eh_rel: i32, fde: [i32; 2]| {
            let mut h = vec![1, 0x1b, 0x03, 0x3b];
            h.extend(eh_rel.to_le_bytes());
            h.extend(2u32.to_le_bytes());
            for f in fde {
                h.extend(0i32.to_le_bytes());
                h.extend(f.to_le_bytes());
            }
            h
        };
        let eh = 0x2000..0x3000;
        assert!(index_points_into(
            &hdr(0xffc, [0x1000, 0x1ff0]),
            0x1000,
            &eh
        ));
        // An FDE before .eh_frame: what gimli subtracted with overflow.
        assert!(!index_points_into(
            &hdr(0xffc, [0x0ff0, 0x1000]),
            0x1000,
            &eh
        ));
        assert!(!index_points_into(
            &hdr(0xffc, [0x1000, 0x2000]),
            0x1000,
            &eh
        ));
        // .eh_frame's address is not where the section is.
        assert!(!index_points_into(&hdr(0, [0x1000, 0x1000]), 0x1000, &eh));
        // A count the table does not hold.
        let mut short = hdr(0xffc, [0x1000, 0x1ff0]);
        short.truncate(20);
        assert!(!index_points_into(&short, 0x1000, &eh));
        assert!(!index_points_into(&[], 0x1000, &eh));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(UnwindTables::parse(Path::new("x"), b"\x7fELF not really").is_err());
        assert!(UnwindTables::parse(Path::new("x"), &[]).is_err());
    }
}
