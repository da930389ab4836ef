//! Function names and addresses from a Go binary's `.gopclntab`, the table
//! the Go runtime itself uses for tracebacks. It survives stripping, so it
//! is how protoprof finds `runtime.mallocgc` and Go's crypto in a stripped
//! binary such as the sing-box release builds, and how it names their
//! frames.
//!
//! Layout (Go 1.18 and later; magic 0xfffffff0 for 1.18-1.19, 0xfffffff1
//! for 1.20+): an 8-byte header (magic, two zero bytes, instruction size
//! quantum, pointer size), then pointer-sized words: number of functions,
//! number of files, text start, and the offsets of the function-name table,
//! the compilation-unit table, the file table, the pc table and the
//! function table. The function table holds `nfunc + 1` pairs of u32
//! (entry offset from text start, offset of the function's `_func` record
//! from the function table); a `_func` record starts with its entry offset
//! (u32) and its name offset (i32) into the function-name table.

use crate::elf::Function;

/// Errors of parsing a pclntab.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("not a Go 1.18+ pclntab (magic {0:#x})")]
    Magic(u32),
    #[error("pclntab truncated at offset {0}")]
    Truncated(usize),
    #[error("pclntab says {0} functions, more than its {1} bytes can hold")]
    TooManyFunctions(u64, usize),
    #[error("pclntab function at text offset {0:#x} lies past the end of the address space")]
    AddressOverflow(u32),
}

const MAGIC_118: u32 = 0xffff_fff0;
const MAGIC_120: u32 = 0xffff_fff1;

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    /// The bytes at `at..at + len`; offsets come from the table itself, so
    /// any of them may point anywhere.
    fn bytes(&self, at: usize, len: usize) -> Result<&[u8], PclntabError> {
        at.checked_add(len)
            .and_then(|end| self.data.get(at..end))
            .ok_or(PclntabError::Truncated(at))
    }

    fn u32(&self, at: usize) -> Result<u32, PclntabError> {
        let b = self.bytes(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn word(&self, at: usize, ptr_size: usize) -> Result<u64, PclntabError> {
        if ptr_size == 4 {
            return self.u32(at).map(u64::from);
        }
        let b = self.bytes(at, 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    fn c_str(&self, at: usize) -> Result<&str, PclntabError> {
        let rest = self.data.get(at..).ok_or(PclntabError::Truncated(at))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PclntabError::Truncated(at))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| PclntabError::Truncated(at))
    }
}

/// Every function in the table. `text_section` is the address of `.text`,
/// used when the header's text start is zero (relocated at run time).
pub fn functions(data: &[u8], text_section: u64) -> Result<Vec<Function>, PclntabError> {
    let r = Reader { data };
    let magic = r.u32(0)?;
    if magic != MAGIC_118 && magic != MAGIC_120 {
        return Err(PclntabError::Magic(magic));
    }
    let ptr_size = *data.get(7).ok_or(PclntabError::Truncated(7))? as usize;
    if ptr_size != 4 && ptr_size != 8 {
        return Err(PclntabError::Magic(magic));
    }
    let word = |i: usize| r.word(8 + i * ptr_size, ptr_size);
    let nfunc = word(0)?;
    // Each function has an 8-byte entry in the function table: a count the
    // data cannot hold is a malformed table, not an allocation to attempt.
    if nfunc >= (data.len() / 8) as u64 {
        return Err(PclntabError::TooManyFunctions(nfunc, data.len()));
    }
    let nfunc = nfunc as usize;
    let text_start = match word(2)? {
        0 => text_section,
        t => t,
    };
    let offset = |w: u64| usize::try_from(w).map_err(|_| PclntabError::Truncated(usize::MAX));
    let funcname_off = offset(word(3)?)?;
    let functab_off = offset(word(7)?)?;
    // Offsets relative to a table offset; past usize is past the data.
    let at = |base: usize, rel: usize| base.checked_add(rel).ok_or(PclntabError::Truncated(base));

    let mut out = Vec::with_capacity(nfunc);
    let mut entries = Vec::with_capacity(nfunc + 1);
    for i in 0..=nfunc {
        let entry = at(functab_off, i * 8)?;
        entries.push((r.u32(entry)?, r.u32(at(entry, 4)?)?));
    }
    for i in 0..nfunc {
        let (entry, func_off) = entries[i];
        let record = at(functab_off, func_off as usize)?;
        let name_off = r.u32(at(record, 4)?)? as usize;
        let name = r.c_str(at(funcname_off, name_off)?)?;
        let size = entries[i + 1].0.saturating_sub(entry);
        let address = text_start
            .checked_add(u64::from(entry))
            .ok_or(PclntabError::AddressOverflow(entry))?;
        out.push(Function {
            name: name.to_string(),
            address,
            size: u64::from(size),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built table of two functions, laid out as Go 1.20 does.
    fn table() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&MAGIC_120.to_le_bytes());
        t.extend_from_slice(&[0, 0, 1, 8]);
        let header_words = 8;
        let names_off = 8 + header_words * 8;
        let names = b"main.main\0runtime.mallocgc\0";
        let functab_off = names_off + names.len();
        for w in [
            2u64,
            0,
            0x401000,
            names_off as u64,
            0,
            0,
            0,
            functab_off as u64,
        ] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        t.extend_from_slice(names);
        // functab: 3 pairs, then two _func records (entry, name offset).
        let records = 3 * 8;
        for (entry, rec) in [
            (0u32, records as u32),
            (0x40, records as u32 + 8),
            (0x100, 0),
        ] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&rec.to_le_bytes());
        }
        for (entry, name) in [(0u32, 0u32), (0x40, 10)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&name.to_le_bytes());
        }
        t
    }

    #[test]
    fn reads_names_addresses_and_sizes() {
        let f = functions(&table(), 0).expect("parse");
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name.as_str(), f[0].address, f[0].size),
            ("main.main", 0x401000, 0x40)
        );
        assert_eq!(
            (f[1].name.as_str(), f[1].address, f[1].size),
            ("runtime.mallocgc", 0x401040, 0xc0)
        );
    }

    /// Found by `cargo xtask fuzz gopclntab`: a function count far beyond
    /// the data made the reader try to allocate for it (capacity overflow).
    #[test]
    fn a_function_count_the_data_cannot_hold_is_an_error() {
        let crash = [
            0xf1, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x6e, 0x61,
            0x69, 0x6e, 0x00, 0x72, 0x75, 0x6e, 0x74, 0x69, 0x6d, 0x65, 0x2e, 0x6d, 0x61, 0x6c,
            0x6c, 0x6f, 0x63, 0x67, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1a, 0x00, 0x00, 0x00,
            0x40, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,
            0x0a, 0x00, 0x00, 0x00,
        ];
        assert!(matches!(
            functions(&crash, 0),
            Err(PclntabError::TooManyFunctions(_, 74))
        ));
        // The same with the count at its largest.
        let mut t = table();
        t[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            functions(&t, 0),
            Err(PclntabError::TooManyFunctions(u64::MAX, _))
        ));
    }

    #[test]
    fn offsets_and_addresses_past_the_end_are_errors() {
        // Function-table offset at the top of the address space.
        let mut t = table();
        t[8 + 7 * 8..8 + 8 * 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(functions(&t, 0), Err(PclntabError::Truncated(_))));
        // Text start so high that a function's address wraps.
        let mut t = table();
        t[8 + 2 * 8..8 + 3 * 8].copy_from_slice(&(u64::MAX - 0x10).to_le_bytes());
        assert_eq!(
            functions(&t, 0).unwrap_err(),
            PclntabError::AddressOverflow(0x40)
        );
    }

    #[test]
    fn rejects_other_data() {
        assert_eq!(
            functions(&[1, 2, 3, 4, 0, 0, 1, 8], 0).unwrap_err(),
            PclntabError::Magic(0x0403_0201)
        );
        let mut t = table();
        t.truncate(40);
        assert!(matches!(functions(&t, 0), Err(PclntabError::Truncated(_))));
    }
}
