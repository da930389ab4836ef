//! render: every output of a run, each rendered from the [`Report`] alone.
//! One file per output format.

mod charts;
mod html;
mod markdown;
mod network;
pub mod pprof;
pub mod soak;
mod stress;
mod terminal;
mod timeseries;

use std::{io::Write as _, path::Path};

pub use html::html;
pub use markdown::markdown;
pub use stress::{resources_csv, stress_lines};
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
    write_file(
        &dir.join("resources.csv"),
        resources_csv(report.resources.as_ref()).as_bytes(),
    )?;
    write_html(report, graphs, dir)?;
    write_pprof(report, graphs, dir)?;
    Ok(())
}

/// What [`write_all`] writes: output name (the key in `Report.outputs`) →
/// file name in the run directory.
pub const OUTPUTS: &[(&str, &str)] = &[
    ("report_md", "report.md"),
    ("timeseries_csv", "timeseries.csv"),
    ("resources_csv", "resources.csv"),
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
    let unfreed = a.unfreed.as_ref().map_or(String::new(), |u| {
        let site = u
            .sites
            .first()
            .map(|s| format!(", most from `{}`", s.name.replace('|', "\\|")))
            .unwrap_or_default();
        format!(
            "; {} sampled and never freed{site} (unfreed.svg)",
            bytes(u.bytes as f64)
        )
    });
    format!(
        "{} calls, {} requested, {} frees{unfreed}",
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

/// "40 calls to 12 probed functions, crypto cost category 3.1 % [2.2,
/// 4.0] of 812 samples (the same phases as the costs)".
pub fn crypto_line(c: &crate::report::CryptoSummary) -> String {
    let calls: u64 = c.symbols.iter().map(|s| s.calls).sum();
    let share = c
        .cpu_share
        .as_ref()
        .map(|s| {
            format!(
                ", crypto cost category {} (the same phases as the costs)",
                share_with_interval(s.share, &s.interval, s.samples)
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
    share_with_interval(c.share, &c.interval, of_samples)
}

/// [`share_text`] of any share with its interval.
pub fn share_with_interval(share: f64, interval: &ShareInterval, of_samples: u64) -> String {
    match interval {
        ShareInterval::Interval { low, high, .. } => format!(
            "{:.1} % [{:.1}, {:.1}] of {of_samples} samples",
            share * 100.0,
            low * 100.0,
            high * 100.0
        ),
        ShareInterval::Unavailable(_) => {
            format!(
                "{:.1} % (no interval) of {of_samples} samples",
                share * 100.0
            )
        }
    }
}

/// "300 of 300 connections, one at a time, in 0.4 s: set-up p50 … p99 …;
/// first response p50 … p99 …".
pub fn setup_line(s: &crate::report::SetupPhase) -> String {
    format!(
        "{} of {} connections, one at a time, in {:.1} s: set-up {}; first response {}",
        s.connections,
        s.planned,
        s.elapsed_s,
        percentiles_text(&s.setup_us, &["p50", "p90", "p99"]),
        percentiles_text(&s.first_response_us, &["p50", "p99"])
    )
}

/// One line per measured window where steal or other processes took more
/// than [`WindowLoad::NOTABLE_CORES`](crate::report::WindowLoad::NOTABLE_CORES):
/// "main pass, phase 0 (bulk): other processes 0.62 cores, steal 0.00, over
/// 8.0 s (targets 1.31, runner 0.55)".
pub fn noisy_windows(r: &Report) -> Vec<String> {
    r.workload
        .windows
        .iter()
        .filter(|w| w.notable())
        .map(|w| {
            let phase = r
                .workload
                .phases
                .get(w.phase)
                .map_or_else(String::new, |p| format!(" ({})", p.label()));
            format!(
                "{} pass, phase {}{phase}: other processes {:.2} cores, steal {:.2}, over {:.1} s (targets {:.2}, runner {:.2})",
                w.pass.replace('_', "-"),
                w.phase,
                w.other_cores,
                w.steal_cores,
                w.seconds,
                w.targets_cores,
                w.runner_cores
            )
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{order_statistics, report};

    fn fixture() -> Report {
        serde_json::from_str(include_str!("../../tests/data/run-tcp/report.json"))
            .expect("fixture report")
    }

    /// A report saved before `probes.syscall_time` existed timed its
    /// syscalls and says so; an untimed one shows no times and says how
    /// to get them.
    #[test]
    fn syscall_times_are_shown_only_when_measured() {
        let mut r = fixture();
        assert!(r.probes.options.syscall_time);
        let top = r.targets[0].syscalls[0].clone();
        assert!(top.total_ns > 0, "{top:?}");
        let timed = markdown::markdown(&r);
        assert!(!timed.contains("Counted, not timed"));
        let row = format!("| {} | {} | – | – |", top.name, top.count);
        assert!(!timed.contains(&row), "{timed}");

        r.probes.options.syscall_time = false;
        let counted = markdown::markdown(&r);
        assert!(counted.contains("Counted, not timed"), "{counted}");
        assert!(counted.contains(&row), "{counted}");
    }

    /// Samples 1, 2, … n µs.
    fn ranks(n: u64) -> report::LatencySummary {
        report::LatencySummary {
            count: n,
            mean: (n + 1) as f64 / 2.0,
            percentiles: order_statistics::REPORTED
                .iter()
                .map(|&q| report::Percentile::from(&order_statistics::estimate(q, n, |k| k as f64)))
                .collect(),
            max: n as f64,
        }
    }

    fn load(phase: usize, other: f64, steal: f64) -> report::WindowLoad {
        report::WindowLoad {
            pass: "main".into(),
            phase,
            opened_unix_s: 1.7e9,
            seconds: 2.0,
            steal_cores: steal,
            irq_cores: 0.1,
            targets_cores: 1.2,
            runner_cores: 0.4,
            other_cores: other,
        }
    }

    #[test]
    fn markdown_shows_the_setup_phase_and_only_disturbed_windows() {
        let mut r = fixture();
        r.workload.setup = Some(report::SetupPhase {
            planned: 300,
            connections: 300,
            request_size: 64,
            response_size: 1024,
            elapsed_s: 0.42,
            setup_us: ranks(300),
            first_response_us: ranks(300),
            integrity: r.workload.phases[0].integrity.clone(),
        });
        r.workload.windows = vec![load(0, 0.62, 0.0), load(1, 0.04, 0.01), load(1, 0.0, 0.2)];
        let md = markdown(&r);
        let line = md
            .lines()
            .find(|l| l.starts_with("Connection set-up phase: 300 of 300 connections"))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(line.contains("in 0.4 s: set-up p50 "), "{line}");
        assert!(line.contains("p99 "), "{line}");
        let noisy: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("> **disturbed window:**"))
            .collect();
        assert_eq!(
            noisy,
            [
                "> **disturbed window:** main pass, phase 0 (bulk (both)): other processes 0.62 cores, steal 0.00, over 2.0 s (targets 1.20, runner 0.40)",
                "> **disturbed window:** main pass, phase 1 (rr): other processes 0.00 cores, steal 0.20, over 2.0 s (targets 1.20, runner 0.40)",
            ]
        );
    }
}
