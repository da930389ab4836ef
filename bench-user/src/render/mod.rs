//! render: every output of a run, each rendered from the [`Report`] alone.
//! One file per output format.

mod charts;
mod html;
mod markdown;
pub mod pprof;
mod terminal;
mod timeseries;

use std::{io::Write as _, path::Path};

pub use html::html;
pub use markdown::markdown;
pub use terminal::summary;
pub use timeseries::timeseries_csv;

use crate::report::{
    CategoryCost, FoldedGraph, IntegrityStatus, LatencySummary, Percentile, PercentileEstimate,
    Report, ShareInterval,
};
pub use crate::units::{bytes, duration_ns};

/// Errors of writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("serializing the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Report(#[from] crate::report::ReportError),
    #[error("{0}")]
    Stacks(#[from] crate::report::stacks::StackError),
    #[error("drawing {what}: {message}")]
    Draw { what: String, message: String },
}

/// Write every output that renders from the report and the stacks it
/// names (all but report.json and the flame graph files the run draws as
/// it folds).
pub fn write_all(report: &Report, graphs: &[FoldedGraph], dir: &Path) -> Result<(), RenderError> {
    write_markdown(report, dir)?;
    write_timeseries(report, dir)?;
    write_html(report, graphs, dir)?;
    write_pprof(report, graphs, dir)?;
    Ok(())
}

/// What [`write_all`] writes: output name (the key in `Report.outputs`) →
/// file name in the run directory.
pub const OUTPUTS: &[(&str, &str)] = &[
    ("report_md", "report.md"),
    ("timeseries_csv", "timeseries.csv"),
    ("report_html", "report.html"),
    ("profile_pb_gz", "profile.pb.gz"),
];

/// Write `bytes` to `path`, naming the file in the error.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RenderError> {
    std::fs::write(path, bytes).map_err(|source| RenderError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Write `report.html`.
pub fn write_html(report: &Report, graphs: &[FoldedGraph], dir: &Path) -> Result<(), RenderError> {
    let page = html(report, graphs).map_err(|message| RenderError::Draw {
        what: "report.html".into(),
        message,
    })?;
    write_file(&dir.join("report.html"), page.as_bytes())
}

/// Write `profile.pb.gz`: the cpu graph in pprof's format, gzipped as
/// pprof expects on disk.
pub fn write_pprof(report: &Report, graphs: &[FoldedGraph], dir: &Path) -> Result<(), RenderError> {
    let path = dir.join("profile.pb.gz");
    let io = |source| RenderError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&pprof::encode(report, graphs)).map_err(io)?;
    let bytes = gz.finish().map_err(io)?;
    write_file(&path, &bytes)
}

/// Write `report.json`.
pub fn write_json(report: &Report, dir: &Path) -> Result<(), RenderError> {
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(report)?;
    write_file(&path, (text + "\n").as_bytes())
}

/// Read a `report.json` back (refusing other schema versions).
pub fn read_json(path: &Path) -> Result<Report, RenderError> {
    Ok(crate::report::read(path)?)
}

/// Read a run directory's report and every graph it names, verified.
pub fn read_run(dir: &Path) -> Result<(Report, Vec<FoldedGraph>), RenderError> {
    let report = read_json(&dir.join("report.json"))?;
    let graphs = crate::report::stacks::read_all(dir, &report)?;
    Ok((report, graphs))
}

/// Write `report.md`.
pub fn write_markdown(report: &Report, dir: &Path) -> Result<(), RenderError> {
    write_file(&dir.join("report.md"), markdown(report).as_bytes())
}

/// "ok" or "mismatch".
pub fn integrity(s: IntegrityStatus) -> &'static str {
    s.as_str()
}

/// "1200 calls, 3.00 MiB requested, 1100 frees".
pub fn alloc_line(a: &crate::report::AllocSummary) -> String {
    format!(
        "{} calls, {} requested, {} frees",
        a.calls,
        bytes(a.bytes as f64),
        a.frees
    )
}

/// "phase 0 (bulk (both))", "phases 0 (bulk (both)), 1 (rr)"; "every
/// phase" for figures that name none (older reports).
pub fn phases_text(phases: &[usize], r: &crate::report::Report) -> String {
    if phases.is_empty() {
        return "every phase".into();
    }
    let named: Vec<String> = phases
        .iter()
        .map(|&i| match r.workload.phases.get(i) {
            Some(p) => format!("{i} ({})", p.label()),
            None => i.to_string(),
        })
        .collect();
    let word = if phases.len() == 1 { "phase" } else { "phases" };
    format!("{word} {}", named.join(", "))
}

/// "40 calls to 12 probed functions, 3.1% of CPU samples (crypto cost
/// category, the same phases as the costs)".
pub fn crypto_line(c: &crate::report::CryptoSummary) -> String {
    let calls: u64 = c.symbols.iter().map(|s| s.calls).sum();
    let share = c
        .cpu_share
        .map(|s| {
            format!(
                ", {:.1}% of CPU samples (the crypto cost category)",
                s * 100.0
            )
        })
        .unwrap_or_default();
    format!(
        "{calls} calls to {} probed functions{share}",
        c.symbols.len()
    )
}

/// "p99 812 µs [640 µs, 1.02 ms]" (the bounds are one-sided 95 % each), or
/// "p99 — too few samples (n=4; p99 needs 299)".
pub fn percentile_text(p: &Percentile) -> String {
    let us = |v: f64| duration_ns(v * 1e3);
    match &p.estimate {
        PercentileEstimate::Value {
            value,
            lower,
            upper,
        } => format!(
            "{} {} [{}, {}]",
            p.label,
            us(*value),
            lower.map_or_else(|| "–".to_string(), us),
            us(*upper)
        ),
        PercentileEstimate::TooFewSamples { .. } => {
            format!("{} — {}", p.label, p.too_few().unwrap_or_default())
        }
    }
}

/// The named percentiles of a summary, joined by " · ".
pub fn percentiles_text(l: &LatencySummary, labels: &[&str]) -> String {
    labels
        .iter()
        .filter_map(|&label| l.percentile(label))
        .map(percentile_text)
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A percentile's value for a chart; 0 (no bar) without one.
pub fn percentile_bar(l: &LatencySummary, label: &str) -> f64 {
    l.percentile(label)
        .and_then(Percentile::value)
        .unwrap_or(0.0)
}

/// "10.6 % [8.9, 12.4] of 812 samples", or without the brackets and with
/// the reason when there is no interval.
pub fn share_text(c: &CategoryCost, of_samples: u64) -> String {
    match &c.interval {
        ShareInterval::Interval { low, high, .. } => format!(
            "{:.1} % [{:.1}, {:.1}] of {of_samples} samples",
            c.share * 100.0,
            low * 100.0,
            high * 100.0
        ),
        ShareInterval::Unavailable(_) => format!(
            "{:.1} % (no interval) of {of_samples} samples",
            c.share * 100.0
        ),
    }
}

/// "bulk (both)", "rr": a phase as the tables name it.
pub fn phase_label(p: &crate::report::Phase) -> String {
    p.label()
}

/// Write `timeseries.csv`.
pub fn write_timeseries(report: &Report, dir: &Path) -> Result<(), RenderError> {
    let path = dir.join("timeseries.csv");
    let phases = report
        .workload
        .phases
        .iter()
        .map(|p| (p.pattern.as_str(), p.timeseries.as_slice()));
    write_file(&path, timeseries_csv(phases).as_bytes())
}
