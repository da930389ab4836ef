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

use crate::{drive::IntegrityStatus, report::Report};

/// Errors of writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {path}: {message}")]
    Parse { path: String, message: String },
    #[error("serializing the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("drawing {what}: {message}")]
    Draw { what: String, message: String },
}

/// Write every output that renders from the report (all but report.json
/// and the flame graph files the run draws as it folds).
pub fn write_all(report: &Report, dir: &Path) -> Result<(), RenderError> {
    write_markdown(report, dir)?;
    write_timeseries(report, dir)?;
    write_html(report, dir)?;
    write_pprof(report, dir)?;
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
pub fn write_html(report: &Report, dir: &Path) -> Result<(), RenderError> {
    let page = html(report).map_err(|message| RenderError::Draw {
        what: "report.html".into(),
        message,
    })?;
    write_file(&dir.join("report.html"), page.as_bytes())
}

/// Write `profile.pb.gz`: the cpu graph in pprof's format, gzipped as
/// pprof expects on disk.
pub fn write_pprof(report: &Report, dir: &Path) -> Result<(), RenderError> {
    let path = dir.join("profile.pb.gz");
    let io = |source| RenderError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&pprof::encode(report)).map_err(io)?;
    let bytes = gz.finish().map_err(io)?;
    write_file(&path, &bytes)
}

/// Write `report.json`.
pub fn write_json(report: &Report, dir: &Path) -> Result<(), RenderError> {
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(report)?;
    write_file(&path, (text + "\n").as_bytes())
}

/// Read a `report.json` back.
pub fn read_json(path: &Path) -> Result<Report, RenderError> {
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| RenderError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Write `report.md`.
pub fn write_markdown(report: &Report, dir: &Path) -> Result<(), RenderError> {
    write_file(&dir.join("report.md"), markdown(report).as_bytes())
}

/// "ok" or "mismatch".
pub fn integrity(s: IntegrityStatus) -> &'static str {
    match s {
        IntegrityStatus::Ok => "ok",
        IntegrityStatus::Mismatch => "mismatch",
    }
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

/// "40 calls to 12 probed functions, 3.1% of CPU samples".
pub fn crypto_line(c: &crate::report::CryptoSummary) -> String {
    let calls: u64 = c.symbols.iter().map(|s| s.calls).sum();
    let share = c
        .cpu_share
        .map(|s| format!(", {:.1}% of CPU samples", s * 100.0))
        .unwrap_or_default();
    format!(
        "{calls} calls to {} probed functions{share}",
        c.symbols.len()
    )
}

/// "bulk (both)", "rr": a phase as the tables name it.
pub fn phase_label(p: &crate::drive::PhaseResult) -> String {
    match &p.direction {
        Some(d) => format!("{} ({d})", p.pattern),
        None => p.pattern.clone(),
    }
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

/// 1234567 → "1.18 MiB".
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Nanoseconds → "812 ns", "14.2 µs", "3.10 ms", "1.20 s".
pub fn duration_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.00 GiB");
        assert_eq!(duration_ns(812.0), "812 ns");
        assert_eq!(duration_ns(14_200.0), "14.2 µs");
        assert_eq!(duration_ns(3_100_000.0), "3.10 ms");
    }
}
