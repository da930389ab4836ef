//! fold: stacks into folded lines and flame graphs (inferno).
//!
//! A folded line is `root;frame;…;leaf count`, outermost first. The root is
//! the endpoint's role, then the thread name, so that one graph shows both
//! endpoints side by side and a thread split is one click away.

use std::{collections::BTreeMap, fs::File, io::BufWriter, path::Path};

use inferno::flamegraph::{self, Options};

use crate::{capture::Graph, report::FoldedStack, resolve::ResolvedSample};

/// Options for drawing one flame graph.
#[derive(Debug, Clone)]
pub struct FoldOptions {
    pub title: String,
    /// What one count is ("samples", "bytes", "us").
    pub count_name: String,
}

/// Errors of writing folded files and graphs.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
}

/// Folded stacks of one graph, one per distinct stack, sorted. `root` names
/// each process. Zero-weight stacks are left out.
pub fn fold(
    samples: &[ResolvedSample],
    graph: Graph,
    root: impl Fn(u32) -> String,
) -> Vec<FoldedStack> {
    let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.graph == graph && s.weight > 0) {
        let mut line = root(s.tgid);
        line.push(';');
        line.push_str(&s.thread_name.replace(';', ":"));
        for f in s.frames.iter() {
            line.push(';');
            line.push_str(&f.name);
            if f.kernel {
                // inferno's convention: colours kernel frames apart.
                line.push_str("_[k]");
            }
        }
        *stacks.entry(line).or_default() += s.weight;
    }
    stacks
        .into_iter()
        .map(|(stack, count)| FoldedStack { stack, count })
        .collect()
}

/// Folded stacks as inferno's input lines: `stack count`.
pub fn lines(stacks: &[FoldedStack]) -> Vec<String> {
    stacks
        .iter()
        .map(|s| format!("{} {}", s.stack, s.count))
        .collect()
}

/// Write folded stacks to `path`, one line each.
pub fn write_folded(stacks: &[FoldedStack], path: &Path) -> Result<(), FoldError> {
    let mut text = lines(stacks).join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|source| FoldError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Draw a flame graph SVG from folded stacks. With no samples it still
/// writes an SVG that says so, rather than no file.
pub fn write_svg(
    stacks: &[FoldedStack],
    options: &FoldOptions,
    path: &Path,
) -> Result<(), FoldError> {
    let file = File::create(path).map_err(|source| FoldError::Io {
        path: path.display().to_string(),
        source,
    })?;
    svg(stacks, options, BufWriter::new(file)).map_err(|e| match e {
        SvgError::Io(source) => FoldError::Io {
            path: path.display().to_string(),
            source,
        },
        SvgError::Draw(message) => FoldError::Draw {
            path: path.display().to_string(),
            message,
        },
    })
}

/// Why [`svg`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SvgError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Draw(String),
}

/// Draw a flame graph SVG from folded stacks into `out`.
pub fn svg(
    stacks: &[FoldedStack],
    options: &FoldOptions,
    mut out: impl std::io::Write,
) -> Result<(), SvgError> {
    if stacks.is_empty() {
        // inferno refuses an empty graph; an empty one still says why.
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"60\">\
             <text x=\"600\" y=\"24\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\
             <text x=\"600\" y=\"48\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">\
             no {} recorded in the measured window</text></svg>\n",
            xml_escape(&options.title),
            xml_escape(&options.count_name)
        );
        out.write_all(svg.as_bytes())?;
        return Ok(());
    }
    let mut opts = Options::default();
    opts.title = options.title.clone();
    opts.count_name = options.count_name.clone();
    opts.min_width = 0.05;
    let lines = lines(stacks);
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
        .map_err(|e| SvgError::Draw(e.to_string()))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Frame;
    use std::sync::Arc;

    fn sample(frames: &[&str], kernel: &[&str], weight: u64) -> ResolvedSample {
        let mut f: Vec<Frame> = frames
            .iter()
            .map(|n| Frame {
                name: Arc::from(*n),
                kernel: false,
            })
            .collect();
        f.extend(kernel.iter().map(|n| Frame {
            name: Arc::from(*n),
            kernel: true,
        }));
        ResolvedSample {
            graph: Graph::Cpu,
            tgid: 7,
            tid: 8,
            thread_name: "worker".into(),
            frames: f.into(),
            user_depth: frames.len(),
            weight,
            window: Some(0),
            slot: 0,
        }
    }

    #[test]
    fn folds_and_merges() {
        let lines = fold(
            &[
                sample(&["main", "relay"], &[], 2),
                sample(&["main", "relay"], &[], 3),
                sample(&["main"], &["tcp_sendmsg"], 1),
                sample(&["main", "idle"], &[], 0),
            ],
            Graph::Cpu,
            |_| "client".into(),
        );
        assert_eq!(
            super::lines(&lines),
            vec![
                "client;worker;main;relay 5".to_string(),
                "client;worker;main;tcp_sendmsg_[k] 1".to_string(),
            ]
        );
    }

    #[test]
    fn draws_an_svg_with_the_frames() {
        let dir = std::env::temp_dir().join(format!("pp-fold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("cpu.svg");
        let lines = fold(
            &[sample(&["main", "bench_proto::relay::pump"], &[], 10)],
            Graph::Cpu,
            |_| "client".into(),
        );
        assert!(
            fold(&[sample(&["main"], &[], 10)], Graph::OffCpu, |_| "client"
                .into())
            .is_empty()
        );
        let empty = dir.join("empty.svg");
        let title = FoldOptions {
            title: "a <b>".into(),
            count_name: "bytes".into(),
        };
        write_svg(&[], &title, &empty).expect("empty svg");
        let text = std::fs::read_to_string(&empty).expect("read");
        assert!(text.contains("no bytes recorded") && text.contains("a &lt;b&gt;"));
        write_svg(
            &lines,
            &FoldOptions {
                title: "t".into(),
                count_name: "samples".into(),
            },
            &path,
        )
        .expect("svg");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.contains("bench_proto::relay::pump"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
