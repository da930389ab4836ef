//! Folded stacks as side files of report.json.
//!
//! Embedded, the stacks made a 12-second tuic report 51 MB; each graph is
//! now `stacks/<name>.folded` in the run directory (one `stack count` line
//! per stack, as inferno reads it), and report.json names each file with
//! its byte count and BLAKE3. Readers go through [`read_graph`], which
//! refuses a file that is not the one the report names, so report.json
//! stays the single entry point of a run.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Report;

/// The directory of the side files, relative to report.json's.
pub const DIR: &str = "stacks";

/// One graph's side file, as report.json names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct StackFile {
    /// Graph name: "cpu", "offcpu", "alloc", "alloc-count", "syscalls".
    pub name: String,
    pub title: String,
    /// What a count is: "samples", "us", "bytes", "calls".
    pub unit: String,
    /// Path relative to the run directory, e.g. `stacks/cpu.folded`.
    pub file: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// BLAKE3 (hex) of the file.
    pub blake3: String,
    /// Distinct stacks (lines) in it.
    pub stacks: u64,
    /// Sum of the counts.
    pub total: u64,
}

/// One graph's folded stacks, in memory: `role;thread;outermost;…;leaf`
/// with a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedGraph {
    pub name: String,
    pub title: String,
    pub unit: String,
    pub stacks: Vec<FoldedStack>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedStack {
    /// Frames joined by ';', outermost first; kernel frames end in `_[k]`.
    pub stack: String,
    pub count: u64,
}

/// Why a side file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: BLAKE3 {found} is not the {expected} report.json names; the file changed after the run, restore it or re-run the profile")]
    Hash {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path}: line {line} is not `stack count`; restore the file or re-run the profile")]
    Line { path: String, line: usize },
    #[error("{file}: report.json names a side file outside the run directory; fix the report's stacks[].file")]
    Outside { file: String },
}

/// The text of a folded file: one `stack count` line per stack.
pub fn folded_text(stacks: &[FoldedStack]) -> String {
    let mut text = String::new();
    for s in stacks {
        text.push_str(&s.stack);
        text.push(' ');
        text.push_str(&s.count.to_string());
        text.push('\n');
    }
    text
}

/// Write `graph` as `stacks/<name>.folded` under `dir`; returns the entry
/// report.json keeps for it.
pub fn write_graph(dir: &Path, graph: &FoldedGraph) -> Result<StackFile, StackError> {
    let sub = dir.join(DIR);
    std::fs::create_dir_all(&sub).map_err(|source| StackError::Io {
        path: sub.display().to_string(),
        source,
    })?;
    let file = format!("{DIR}/{}.folded", graph.name);
    let path = dir.join(&file);
    let text = folded_text(&graph.stacks);
    std::fs::write(&path, &text).map_err(|source| StackError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(StackFile {
        name: graph.name.clone(),
        title: graph.title.clone(),
        unit: graph.unit.clone(),
        file,
        bytes: text.len() as u64,
        blake3: blake3::hash(text.as_bytes()).to_hex().to_string(),
        stacks: graph.stacks.len() as u64,
        total: graph.stacks.iter().map(|s| s.count).sum(),
    })
}

/// The bytes of a side file under `dir`, checked against its entry.
pub fn read_verified(dir: &Path, entry: &StackFile) -> Result<Vec<u8>, StackError> {
    let rel = Path::new(&entry.file);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(StackError::Outside {
            file: entry.file.clone(),
        });
    }
    let path = dir.join(rel);
    let bytes = std::fs::read(&path).map_err(|source| StackError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let found = blake3::hash(&bytes).to_hex().to_string();
    if found != entry.blake3 {
        return Err(StackError::Hash {
            path: path.display().to_string(),
            found,
            expected: entry.blake3.clone(),
        });
    }
    Ok(bytes)
}

/// Read one graph's side file, verified.
pub fn read_graph(dir: &Path, entry: &StackFile) -> Result<FoldedGraph, StackError> {
    let bytes = read_verified(dir, entry)?;
    let path = || dir.join(&entry.file).display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| StackError::Line {
        path: path(),
        line: 0,
    })?;
    let mut stacks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let parsed = line
            .rsplit_once(' ')
            .and_then(|(stack, n)| Some((stack, n.parse::<u64>().ok()?)));
        let Some((stack, count)) = parsed else {
            return Err(StackError::Line {
                path: path(),
                line: i + 1,
            });
        };
        stacks.push(FoldedStack {
            stack: stack.to_string(),
            count,
        });
    }
    Ok(FoldedGraph {
        name: entry.name.clone(),
        title: entry.title.clone(),
        unit: entry.unit.clone(),
        stacks,
    })
}

/// Every graph a report names, read from its run directory `dir`.
pub fn read_all(dir: &Path, report: &Report) -> Result<Vec<FoldedGraph>, StackError> {
    report.stacks.iter().map(|e| read_graph(dir, e)).collect()
}

/// The graph called `name`, when the report has one.
pub fn read_named(
    dir: &Path,
    report: &Report,
    name: &str,
) -> Result<Option<FoldedGraph>, StackError> {
    report
        .stacks
        .iter()
        .find(|e| e.name == name)
        .map(|e| read_graph(dir, e))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> FoldedGraph {
        FoldedGraph {
            name: "cpu".into(),
            title: "t".into(),
            unit: "samples".into(),
            stacks: vec![
                FoldedStack {
                    stack: "client;main;relay with space".into(),
                    count: 7,
                },
                FoldedStack {
                    stack: "server;main;read_[k]".into(),
                    count: 3,
                },
            ],
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pp-stacks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn round_trip_keeps_every_stack_and_names_the_file() {
        let d = temp("rt");
        let entry = write_graph(&d, &graph()).expect("write");
        assert_eq!(entry.file, "stacks/cpu.folded");
        assert_eq!((entry.stacks, entry.total), (2, 10));
        let text = folded_text(&graph().stacks);
        assert_eq!(entry.bytes, text.len() as u64);
        assert_eq!(
            entry.blake3,
            blake3::hash(text.as_bytes()).to_hex().to_string()
        );
        assert_eq!(read_graph(&d, &entry).expect("read"), graph());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_changed_file_is_refused_in_one_line() {
        let d = temp("hash");
        let entry = write_graph(&d, &graph()).expect("write");
        std::fs::write(d.join(&entry.file), "client;main 8\n").expect("tamper");
        let e = read_graph(&d, &entry).expect_err("tampered file accepted");
        let msg = e.to_string();
        assert!(matches!(e, StackError::Hash { .. }), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(
            msg.contains("cpu.folded") && msg.contains(&entry.blake3),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_path_outside_the_run_is_refused() {
        let d = temp("outside");
        let mut entry = write_graph(&d, &graph()).expect("write");
        entry.file = "../cpu.folded".into();
        assert!(matches!(
            read_graph(&d, &entry),
            Err(StackError::Outside { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
