//! The functions a target can be probed at: symbols of the executable and
//! the libraries it has mapped, with the file offsets uprobes attach to.
//!
//! Symbols come from `.symtab` and `.dynsym` (Rust names demangled), and for
//! Go binaries — often shipped stripped — from the Go runtime's own function
//! table (`.gopclntab`, see [`crate::gopclntab`]), which no strip removes.

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
        let err = |message: String| ElfError {
            path: path.display().to_string(),
            message,
        };
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let file = object::File::parse(&*data).map_err(|e| err(e.to_string()))?;
        let has_symtab = file.section_by_name(".symtab").is_some();
        let pclntab = file.section_by_name(".gopclntab");
        let is_go = pclntab.is_some() || file.section_by_name(".go.buildinfo").is_some();
        let pie = file.kind() == object::ObjectKind::Dynamic;

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
                if let Ok(bytes) = section.data() {
                    for f in crate::gopclntab::functions(bytes, text).unwrap_or_default() {
                        by_address.entry((f.address, f.name.clone())).or_insert(f);
                    }
                }
            }
        }
        let mut functions: Vec<Function> = by_address.into_values().collect();
        functions.sort_by(|a, b| a.address.cmp(&b.address).then_with(|| a.name.cmp(&b.name)));
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        Ok(ElfFile {
            path: path.to_path_buf(),
            is_go,
            has_symtab,
            pie,
            functions,
            segments,
        })
    }

    /// The file offset of a virtual address (what a uprobe attaches to).
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(_, vaddr, size)| address >= *vaddr && address < vaddr + size)
            .map(|(offset, vaddr, _)| address - vaddr + offset)
    }

    /// The virtual address of a file offset (for symbolizing a runtime
    /// address: runtime − mapping start + mapping file offset).
    pub fn address_of_offset(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(off, _, size)| offset >= *off && offset < off + size)
            .map(|(off, vaddr, _)| offset - off + vaddr)
    }

    /// The function containing a virtual address.
    pub fn function_at(&self, address: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.address <= address);
        let f = self.functions.get(i.checked_sub(1)?)?;
        // Sizes of 0 (some assembly symbols) cover up to the next function.
        let end = if f.size > 0 {
            f.address + f.size
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

    #[test]
    fn parses_maps_lines() {
        let m =
            parse_mapping("7f00-7f80 r-xp 00001000 08:01 123 /usr/lib/libc.so.6").expect("line");
        assert_eq!((m.start, m.end, m.file_offset), (0x7f00, 0x7f80, 0x1000));
        assert!(parse_mapping("7f00-7f80 rw-p 00000000 00:00 0 [heap]").is_none());
        assert!(parse_mapping("7f00-7f80 r--p 00000000 08:01 1 /usr/lib/libc.so.6").is_none());
    }
}
