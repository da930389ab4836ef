//! `report.md`: a summary that fits a pull-request comment.

use std::fmt::Write as _;

use super::{bytes, duration_ns, integrity};
use crate::{capture::Reading, report::Report};

/// The markdown report.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# protoprof: {} ({})\n", r.run.profile, r.run.protocol);
    if !r.run.description.is_empty() {
        let _ = writeln!(md, "{}\n", r.run.description);
    }
    let _ = writeln!(
        md,
        "Run `{}` · started {} · {:.1} s measured · kernel {} · {} CPUs · status **{}**\n",
        &r.run.id[..12.min(r.run.id.len())],
        r.run.started_at,
        r.run.measured_s,
        r.run.kernel,
        r.run.cpus,
        r.run.status
    );
    for w in &r.warnings {
        let _ = writeln!(md, "> **warning:** {w}");
    }
    if !r.warnings.is_empty() {
        md.push('\n');
    }

    let _ = writeln!(md, "## Workload\n");
    let _ = writeln!(
        md,
        "Integrity: **{}** ({} up, {} down, BLAKE3-checked end to end)\n",
        integrity(r.workload.integrity),
        bytes(r.workload.bytes_up as f64),
        bytes(r.workload.bytes_down as f64)
    );
    let _ = writeln!(
        md,
        "| phase | conns | measured | up /s (median) | down /s (median) | round trips | latency p50 / p99 / max | setup p50 |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---|---:|");
    for p in &r.workload.phases {
        let lat = p
            .latency_us
            .as_ref()
            .map(|l| format!("{:.0} / {:.0} / {:.0} µs", l.p50, l.p99, l.max))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "| {}{} | {} | {:.1} s | {} | {} | {} | {} | {:.0} µs |",
            p.pattern,
            p.direction
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            p.connections,
            p.measured_s,
            bytes(p.throughput.up_bps_median),
            bytes(p.throughput.down_bps_median),
            p.round_trips,
            lat,
            p.setup_us.p50
        );
    }
    md.push('\n');

    for t in &r.targets {
        let _ = writeln!(md, "## {} endpoint (pid {})\n", t.role, t.pid);
        let _ = writeln!(md, "`{}`\n", t.exe);
        if let Some(rss) = t.peak_rss_bytes {
            let _ = writeln!(md, "Peak RSS {}.\n", bytes(rss as f64));
        }
        let _ = writeln!(md, "| counter | value |\n|---|---:|");
        for (name, reading) in &t.counters {
            let v = match reading {
                Reading::Value(v) => v.to_string(),
                Reading::Unavailable(why) => format!("unavailable: {why}"),
            };
            let _ = writeln!(md, "| {name} | {v} |");
        }
        md.push('\n');
        if !t.syscalls.is_empty() {
            let _ = writeln!(md, "Top syscalls by time:\n");
            let _ = writeln!(md, "| syscall | calls | total | mean | max | bytes | errors |\n|---|---:|---:|---:|---:|---:|---:|");
            for s in t.syscalls.iter().take(10) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    s.name,
                    s.count,
                    duration_ns(s.total_ns as f64),
                    duration_ns(s.mean_ns),
                    duration_ns(s.max_ns as f64),
                    if s.bytes > 0 {
                        bytes(s.bytes as f64)
                    } else {
                        "–".into()
                    },
                    s.errors
                );
            }
            md.push('\n');
        }
        if t.cpu.samples > 0 {
            let _ = writeln!(
                md,
                "Top functions by self CPU ({} samples):\n",
                t.cpu.samples
            );
            let _ = writeln!(md, "| function | self | share |\n|---|---:|---:|");
            for f in t.cpu.top_functions.iter().take(10) {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {:.1}% |",
                    f.name.replace('|', "\\|"),
                    f.self_samples,
                    f.self_share * 100.0
                );
            }
            md.push('\n');
        }
    }
    if let Some(svg) = r.outputs.get("cpu_svg") {
        let _ = writeln!(md, "On-CPU flame graph: [{svg}]({svg})\n");
    }
    md
}
