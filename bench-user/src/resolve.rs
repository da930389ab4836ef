//! resolve: turn stack addresses into function names (blazesym).
//!
//! User addresses are symbolized against the live process (its mappings and
//! the debug info of each mapped file), so this runs before the endpoints are
//! stopped. Inlined frames are expanded where the line tables have them.
//! Return addresses (every frame but the innermost) are looked up one byte
//! earlier, inside the call instruction, so that they name the calling line
//! and the right inlined function.

use std::collections::{BTreeSet, HashMap};

use blazesym::{
    symbolize::{
        source::{Kernel, Process, Source},
        Input, Symbolized, Symbolizer,
    },
    Pid,
};

use crate::capture::CpuRecord;

/// One frame of a resolved stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub name: String,
    pub kernel: bool,
}

/// A sampled stack with names, outermost frame first.
#[derive(Debug, Clone)]
pub struct ResolvedSample {
    pub tgid: u32,
    pub tid: u32,
    pub thread_name: String,
    pub frames: Vec<Frame>,
    /// Frames the kernel walked for the user stack (before inline expansion).
    pub user_depth: usize,
    pub count: u64,
}

/// Name used where an address has no symbol.
pub const UNKNOWN: &str = "[unknown]";

/// Symbolize every sample's user and kernel stack.
pub fn resolve(records: &[CpuRecord]) -> Vec<ResolvedSample> {
    let symbolizer = Symbolizer::builder()
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .enable_code_info(true)
        .build();

    // Batch per process: one symbolization call per source.
    let mut user_addrs: HashMap<u32, BTreeSet<u64>> = HashMap::new();
    let mut kernel_addrs: BTreeSet<u64> = BTreeSet::new();
    for r in records {
        let set = user_addrs.entry(r.tgid).or_default();
        set.extend(lookup_addrs(&r.user));
        kernel_addrs.extend(lookup_addrs(&r.kernel));
    }
    let mut user_names: HashMap<(u32, u64), Vec<String>> = HashMap::new();
    for (tgid, addrs) in user_addrs {
        let src = Source::Process(Process::new(Pid::from(tgid)));
        for (addr, names) in symbolize(&symbolizer, &src, addrs) {
            user_names.insert((tgid, addr), names);
        }
    }
    let kernel_names: HashMap<u64, Vec<String>> = if kernel_addrs.is_empty() {
        HashMap::new()
    } else {
        let src = Source::Kernel(Kernel::default());
        symbolize(&symbolizer, &src, kernel_addrs)
            .into_iter()
            .collect()
    };

    records
        .iter()
        .map(|r| {
            let mut frames = Vec::new();
            for addr in lookup_addrs(&r.user).collect::<Vec<_>>().into_iter().rev() {
                let names = user_names.get(&(r.tgid, addr));
                push_frames(&mut frames, names, addr, false);
            }
            for addr in lookup_addrs(&r.kernel)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                push_frames(&mut frames, kernel_names.get(&addr), addr, true);
            }
            ResolvedSample {
                tgid: r.tgid,
                tid: r.tid,
                thread_name: r.thread_name.clone(),
                frames,
                user_depth: r.user.len(),
                count: r.count,
            }
        })
        .collect()
}

/// The address to look up for each frame, innermost first: return
/// addresses move back into the call instruction.
fn lookup_addrs(stack: &[u64]) -> impl Iterator<Item = u64> + '_ {
    stack
        .iter()
        .enumerate()
        .map(|(i, &ip)| if i == 0 { ip } else { ip.saturating_sub(1) })
}

fn push_frames(frames: &mut Vec<Frame>, names: Option<&Vec<String>>, addr: u64, kernel: bool) {
    match names {
        Some(names) => frames.extend(names.iter().map(|n| Frame {
            name: n.clone(),
            kernel,
        })),
        None => frames.push(Frame {
            name: if kernel {
                UNKNOWN.to_string()
            } else {
                format!("{UNKNOWN} {addr:#x}")
            },
            kernel,
        }),
    }
}

/// Names for each address, outer function first, then the functions inlined
/// into it at that address.
fn symbolize(
    symbolizer: &Symbolizer,
    src: &Source,
    addrs: BTreeSet<u64>,
) -> Vec<(u64, Vec<String>)> {
    let addrs: Vec<u64> = addrs.into_iter().collect();
    let Ok(results) = symbolizer.symbolize(src, Input::AbsAddr(&addrs)) else {
        return Vec::new();
    };
    addrs
        .iter()
        .zip(results)
        .filter_map(|(&addr, sym)| match sym {
            Symbolized::Sym(sym) => {
                let mut names = vec![clean_name(&sym.name)];
                names.extend(sym.inlined.iter().map(|f| clean_name(&f.name)));
                Some((addr, names))
            }
            Symbolized::Unknown(_) => None,
        })
        .collect()
}

/// Drop the `::h0123456789abcdef` hash of legacy Rust mangling; the folded
/// format reserves ';'.
fn clean_name(name: &str) -> String {
    let name = match name.rfind("::h") {
        Some(i) if name.len() - i == 19 && name[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => {
            &name[..i]
        }
        _ => name,
    };
    name.replace(';', ":")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn return_addresses_move_into_the_call() {
        let addrs: Vec<u64> = lookup_addrs(&[100, 200, 300]).collect();
        assert_eq!(addrs, vec![100, 199, 299]);
    }

    #[test]
    fn symbolizes_this_process() {
        // A real address of a function in this test binary.
        let addr = hashes_are_dropped as *const () as u64;
        let rec = CpuRecord {
            tgid: std::process::id(),
            tid: std::process::id(),
            thread_name: "t".into(),
            user: vec![addr],
            kernel: vec![],
            user_error: None,
            count: 3,
        };
        let out = resolve(&[rec]);
        let names: Vec<&str> = out[0].frames.iter().map(|f| f.name.as_str()).collect();
        assert!(
            names.iter().any(|n| n.contains("hashes_are_dropped")),
            "{names:?}"
        );
        assert_eq!(out[0].count, 3);
    }
}
