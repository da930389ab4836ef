//! The functions a target can be probed at: symbols of the executable and
//! the libraries it has mapped, with the file offsets uprobes attach to.
//!
//! Symbols come from `.symtab` and `.dynsym` (Rust names demangled), and for
//! Go binaries — often shipped stripped — from the Go runtime's own function
//! table (`.gopclntab`, see [`crate::gopclntab`]), which no strip removes.
//!
//! A part that cannot be read (a malformed `.gopclntab`, say) does not fail
//! the file: it is left out and said in [`ElfFile::notes`], which the runner
//! carries into the report.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

/// One function in a file.
#[derive(Debug, Clone)]
pub struct Function {
    /// Demangled name.
    pub name: String,
    /// Virtual address in the file's own address space.
    pub address: u64,
    pub size: u64,
}

/// The probe-relevant facts of one ELF file.
#[derive(Debug, Clone)]
pub struct ElfFile {
    pub path: PathBuf,
    /// Built by the Go toolchain.
    pub is_go: bool,
    /// Has a `.symtab` (not stripped).
    pub has_symtab: bool,
    /// Position-independent (addresses move with the load base).
    pub pie: bool,
    /// Sorted by address.
    pub functions: Vec<Function>,
    /// What could not be read and was left out (a malformed function
    /// table, say), one sentence each.
    pub notes: Vec<String>,
    /// (file offset, virtual address, size) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

/// Errors of reading an ELF file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ElfError {
    pub path: String,
    pub message: String,
}

impl ElfFile {
    /// Read the functions of `path`.
    pub fn read(path: &Path) -> Result<ElfFile, ElfError> {
        let data = std::fs::read(path).map_err(|e| ElfError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        ElfFile::parse(path, &data)
    }

    /// Read the functions of `data`, the contents of the file at `path`.
    pub fn parse(path: &Path, data: &[u8]) -> Result<ElfFile, ElfError> {
        let err = |message: String| ElfError {
            path: path.display().to_string(),
            message,
        };
        let file = object::File::parse(data).map_err(|e| err(e.to_string()))?;
        let has_symtab = file.section_by_name(".symtab").is_some();
        let pclntab = file.section_by_name(".gopclntab");
        let is_go = pclntab.is_some() || file.section_by_name(".go.buildinfo").is_some();
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let mut notes = Vec::new();

        let mut by_address: HashMap<(u64, String), Function> = HashMap::new();
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.address() == 0 {
                continue;
            }
            let Ok(raw) = sym.name() else { continue };
            let name = rustc_demangle::demangle(raw).to_string();
            let name = strip_hash(&name).to_string();
            by_address
                .entry((sym.address(), name.clone()))
                .or_insert(Function {
                    name,
                    address: sym.address(),
                    size: sym.size(),
                });
        }
        if !has_symtab {
            if let Some(section) = pclntab {
                let text = file
                    .section_by_name(".text")
                    .map(|s| s.address())
                    .unwrap_or(0);
                let functions = section.data().map_err(|e| e.to_string()).and_then(|bytes| {
                    crate::gopclntab::functions(bytes, text).map_err(|e| e.to_string())
                });
                match functions {
                    Ok(functions) => {
                        for f in functions {
                            by_address.entry((f.address, f.name.clone())).or_insert(f);
                        }
                    }
                    Err(e) => notes.push(format!(
                        "{}: .gopclntab unreadable ({e}): its Go functions are not named",
                        path.display()
                    )),
                }
            }
        }
        let mut functions: Vec<Function> = by_address.into_values().collect();
        functions.sort_by(|a, b| a.address.cmp(&b.address).then_with(|| a.name.cmp(&b.name)));
        let mut segments = Vec::new();
        for s in file.segments() {
            let (offset, size) = s.file_range();
            // A segment that says it holds bytes past the end of the file
            // (or of the address space) cannot be mapped as it says.
            let in_file = offset
                .checked_add(size)
                .is_some_and(|end| end <= data.len() as u64);
            if in_file && s.address().checked_add(size).is_some() {
                segments.push((offset, s.address(), size));
            } else {
                notes.push(format!(
                    "{}: segment at {:#x} of {size} bytes from file offset {offset:#x} lies outside \
                     the file or the address space: its addresses are not mapped",
                    path.display(),
                    s.address()
                ));
            }
        }
        Ok(ElfFile {
            path: path.to_path_buf(),
            is_go,
            has_symtab,
            pie,
            functions,
            notes,
            segments,
        })
    }

    /// The file offset of a virtual address (what a uprobe attaches to).
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segments.iter().find_map(|(offset, vaddr, size)| {
            let into = address.checked_sub(*vaddr).filter(|into| into < size)?;
            into.checked_add(*offset)
        })
    }

    /// The virtual address of a file offset (for symbolizing a runtime
    /// address: runtime − mapping start + mapping file offset).
    pub fn address_of_offset(&self, offset: u64) -> Option<u64> {
        self.segments.iter().find_map(|(off, vaddr, size)| {
            let into = offset.checked_sub(*off).filter(|into| into < size)?;
            into.checked_add(*vaddr)
        })
    }

    /// The function containing a virtual address.
    pub fn function_at(&self, address: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.address <= address);
        let f = self.functions.get(i.checked_sub(1)?)?;
        // Sizes of 0 (some assembly symbols) cover up to the next function;
        // a size past the address space, to its end.
        let end = if f.size > 0 {
            f.address.saturating_add(f.size)
        } else {
            self.functions.get(i).map_or(u64::MAX, |n| n.address)
        };
        (address < end).then_some(f)
    }

    /// Functions whose name is exactly `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Function> + 'a {
        self.functions.iter().filter(move |f| f.name == name)
    }
}

/// Drop the `::h0123456789abcdef` hash of legacy Rust mangling.
pub fn strip_hash(name: &str) -> &str {
    match name.rfind("::h") {
        Some(i) if name.len() - i == 19 && name[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => {
            &name[..i]
        }
        _ => name,
    }
}

/// One executable mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: PathBuf,
}

/// The executable file mappings of a process, from /proc/PID/maps.
pub fn executable_mappings(pid: u32) -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    maps.lines().filter_map(parse_mapping).collect()
}

fn parse_mapping(line: &str) -> Option<Mapping> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let perms = f.next()?;
    let offset = f.next()?;
    let _dev = f.next()?;
    let _inode = f.next()?;
    let path = f.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        file_offset: u64::from_str_radix(offset, 16).ok()?,
        path: PathBuf::from(path),
    })
}

/// The distinct files a process has mapped executable, main binary first.
pub fn mapped_files(pid: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        out.push(exe);
    }
    for m in executable_mappings(pid) {
        if !out.contains(&m.path) {
            out.push(m.path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().expect("exe");
        let elf = ElfFile::read(&exe).expect("read");
        assert!(!elf.is_go && elf.has_symtab);
        let here = reads_this_test_binary as *const () as u64;
        // The test binary is PIE: find our function through the mapping.
        let map = executable_mappings(std::process::id())
            .into_iter()
            .find(|m| m.path == exe && here >= m.start && here < m.end)
            .expect("mapping");
        let vaddr = elf
            .address_of_offset(here - map.start + map.file_offset)
            .expect("vaddr");
        let f = elf.function_at(vaddr).expect("function");
        assert!(f.name.ends_with("reads_this_test_binary"), "{}", f.name);
        assert_eq!(
            elf.file_offset(f.address)
                .and_then(|o| elf.address_of_offset(o)),
            Some(f.address)
        );
    }

    /// Found by `cargo xtask fuzz elf`: a LOAD segment of file size
    /// 0xffff_ffff_ffff_ffff at 0x2000 made the address lookups overflow.
    #[test]
    fn lookups_near_the_end_of_the_address_space_do_not_overflow() {
        let elf = ElfFile {
            path: PathBuf::from("x"),
            is_go: false,
            has_symtab: true,
            pie: true,
            functions: vec![Function {
                name: "f".into(),
                address: u64::MAX - 4,
                size: 100,
            }],
            notes: Vec::new(),
            segments: vec![(0x2000, 0x2000, u64::MAX), (u64::MAX - 8, u64::MAX - 8, 8)],
        };
        assert_eq!(elf.file_offset(0x2010), Some(0x2010));
        assert_eq!(elf.file_offset(u64::MAX), Some(u64::MAX));
        assert_eq!(elf.address_of_offset(u64::MAX - 1), Some(u64::MAX - 1));
        assert_eq!(elf.file_offset(0x1fff), None);
        assert_eq!(
            elf.function_at(u64::MAX - 1).map(|f| f.address),
            Some(u64::MAX - 4)
        );
    }

    /// The same segment read from a file: left out, with a note, and the
    /// file's functions still read.
    #[test]
    fn a_segment_past_the_end_of_the_file_is_a_note() {
        let exe = std::env::current_exe().expect("exe");
        let mut data = std::fs::read(&exe).expect("read");
        let elf = ElfFile::parse(&exe, &data).expect("parse");
        assert!(elf.notes.is_empty(), "{:?}", elf.notes);
        // The first PT_LOAD header's p_filesz made to run past the file
        // (ELF64: e_phoff at 0x20, 56-byte headers, p_filesz at 0x20 of one).
        let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap()) as usize;
        let load = (0..)
            .map(|i| phoff + i * 56)
            .find(|&h| data[h..h + 4] == 1u32.to_le_bytes())
            .expect("a PT_LOAD header");
        data[load + 0x20..load + 0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        let bad = ElfFile::parse(&exe, &data).expect("still parses");
        assert_eq!(bad.notes.len(), 1, "{:?}", bad.notes);
        assert!(
            bad.notes[0].contains("outside the file"),
            "{}",
            bad.notes[0]
        );
        assert_eq!(bad.functions.len(), elf.functions.len());
    }

    #[test]
    fn parses_maps_lines() {
        let m =
            parse_mapping("7f00-7f80 r-xp 00001000 08:01 123 /usr/lib/libc.so.6").expect("line");
        assert_eq!((m.start, m.end, m.file_offset), (0x7f00, 0x7f80, 0x1000));
        assert!(parse_mapping("7f00-7f80 rw-p 00000000 00:00 0 [heap]").is_none());
        assert!(parse_mapping("7f00-7f80 r--p 00000000 08:01 1 /usr/lib/libc.so.6").is_none());
    }
}
