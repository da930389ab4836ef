//! diff: the differential CPU flame graph of two run sets.
//!
//! Each side's `cpu` stacks are summed over its runs; inferno's
//! `differential` scales A's total to B's (so that a side with more or
//! longer runs does not paint everything red) and the flame graph colours
//! what grew in B red, what shrank blue.

use std::{collections::BTreeMap, path::Path};

use inferno::{differential, flamegraph};

use super::{io_err, CompareError, RunSet};
use crate::{
    fold::{self, FoldOptions},
    report::{stacks, FoldedStack},
};

/// The `cpu` stacks of a side's ok runs, summed stack by stack; each run's
/// side file is read through its report.json and its BLAKE3 checked.
pub fn merged_cpu(set: &RunSet) -> Result<Vec<FoldedStack>, CompareError> {
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for (dir, r) in set.runs.iter().filter(|(_, r)| r.run.status == "ok") {
        let graph = stacks::read_named(dir, r, "cpu").map_err(|e| CompareError::BadInput {
            argument: dir.display().to_string(),
            message: e.to_string(),
        })?;
        for s in graph.into_iter().flat_map(|g| g.stacks) {
            *sum.entry(s.stack).or_default() += s.count;
        }
    }
    Ok(sum
        .into_iter()
        .map(|(stack, count)| FoldedStack { stack, count })
        .collect())
}

/// Write `cpu-a.folded`, `cpu-b.folded`, `diff-cpu.folded` (inferno's
/// two-count lines) and `diff-cpu.svg`. Returns output name → file name.
pub fn write_cpu_diff(
    a: &RunSet,
    b: &RunSet,
    out: &Path,
) -> Result<BTreeMap<String, String>, CompareError> {
    let (fa, fb) = (merged_cpu(a)?, merged_cpu(b)?);
    let fold_err = |e: fold::FoldError| CompareError::Draw(e.to_string());
    fold::write_folded(&fa, &out.join("cpu-a.folded")).map_err(fold_err)?;
    fold::write_folded(&fb, &out.join("cpu-b.folded")).map_err(fold_err)?;
    let mut outputs = BTreeMap::new();
    outputs.insert("cpu_a_folded".into(), "cpu-a.folded".into());
    outputs.insert("cpu_b_folded".into(), "cpu-b.folded".into());
    outputs.insert("diff_cpu_svg".into(), "diff-cpu.svg".into());
    let svg_path = out.join("diff-cpu.svg");
    let title = "on-CPU, B against A (red: grew in B, blue: shrank)".to_string();
    if fa.is_empty() || fb.is_empty() {
        // Nothing to difference: an SVG that says so rather than no file.
        return fold::write_svg(
            &[],
            &FoldOptions {
                title,
                count_name: "cpu samples on both sides".into(),
            },
            &svg_path,
        )
        .map(|()| outputs)
        .map_err(fold_err);
    }
    let text = |s: &[FoldedStack]| fold::lines(s).join("\n") + "\n";
    let (ta, tb) = (text(&fa), text(&fb));
    let mut diffed = Vec::new();
    differential::from_readers(
        differential::Options {
            normalize: true,
            strip_hex: false,
        },
        ta.as_bytes(),
        tb.as_bytes(),
        &mut diffed,
    )
    .map_err(io_err("differencing the cpu stacks"))?;
    let path = out.join("diff-cpu.folded");
    std::fs::write(&path, &diffed).map_err(io_err(format!("writing {}", path.display())))?;
    outputs.insert("diff_cpu_folded".into(), "diff-cpu.folded".into());
    let diffed = String::from_utf8_lossy(&diffed);
    let file = std::fs::File::create(&svg_path)
        .map_err(io_err(format!("writing {}", svg_path.display())))?;
    let mut opts = flamegraph::Options::default();
    opts.title = title;
    opts.count_name = "samples".into();
    opts.min_width = 0.05;
    flamegraph::from_lines(&mut opts, diffed.lines(), std::io::BufWriter::new(file))
        .map_err(|e| CompareError::Draw(format!("drawing {}: {e}", svg_path.display())))?;
    Ok(outputs)
}
