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
        if let Some(o) = &t.offcpu {
            let _ = writeln!(
                md,
                "Off-CPU: {} across all threads. Where threads blocked:\n",
                duration_ns(o.total_us as f64 * 1e3)
            );
            let _ = writeln!(md, "| function | time | share |\n|---|---:|---:|");
            for b in o.top_blocking.iter().take(8) {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {:.1}% |",
                    cell(&b.name),
                    duration_ns(b.weight as f64 * 1e3),
                    b.share * 100.0
                );
            }
            md.push('\n');
        }
        if let Some(a) = &t.alloc {
            let allocator: Vec<String> = a
                .attached
                .iter()
                .filter(|x| x.role != "free")
                .map(|x| format!("`{}`", x.symbol))
                .collect();
            let _ = writeln!(
                md,
                "Allocations: {} calls, {} requested, {} frees ({}; {} stack samples, one per {} allocated).\n",
                a.calls,
                bytes(a.bytes as f64),
                a.frees,
                if allocator.is_empty() { "no allocator found".to_string() } else { allocator.join(", ") },
                a.samples,
                bytes(a.sample_bytes as f64)
            );
            if !a.top_sites.is_empty() {
                let _ = writeln!(
                    md,
                    "| allocation site | sampled bytes | share |\n|---|---:|---:|"
                );
                for site in a.top_sites.iter().take(8) {
                    let _ = writeln!(
                        md,
                        "| `{}` | {} | {:.1}% |",
                        cell(&site.name),
                        bytes(site.weight as f64),
                        site.share * 100.0
                    );
                }
                md.push('\n');
            }
        }
        if let Some(c) = &t.crypto {
            let used: Vec<_> = c.symbols.iter().filter(|s| s.calls > 0).collect();
            let share = c
                .cpu_share
                .map(|s| format!("{:.1}% of CPU samples have crypto on the stack", s * 100.0))
                .unwrap_or_else(|| "crypto share of CPU not measured (cpu probe off)".into());
            let _ = writeln!(
                md,
                "Crypto: {} symbols probed, {} called; {share}.\n",
                c.symbols.len(),
                used.len()
            );
            if !used.is_empty() {
                let _ = writeln!(
                    md,
                    "| function | family | accel | calls | bytes | mean time |\n|---|---|---|---:|---:|---:|"
                );
                for s in used {
                    let _ = writeln!(
                        md,
                        "| `{}` | {} | {} | {} | {} | {} |",
                        cell(&s.symbol),
                        s.family,
                        s.accel,
                        s.calls,
                        s.bytes
                            .map(|b| bytes(b as f64))
                            .unwrap_or_else(|| "–".into()),
                        s.mean_ns.map(duration_ns).unwrap_or_else(|| "–".into())
                    );
                }
                md.push('\n');
            }
        }
        if t.threads.len() > 1 || t.threads.iter().any(|th| th.threads > 1) {
            let _ = writeln!(
                md,
                "| thread | count | cpu samples | task-clock | off-CPU | syscalls | allocations |\n|---|---:|---:|---:|---:|---:|---:|"
            );
            for th in &t.threads {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    cell(&th.name),
                    th.threads,
                    th.cpu_samples,
                    th.task_clock_ns
                        .map(|n| duration_ns(n as f64))
                        .unwrap_or_else(|| "–".into()),
                    duration_ns(th.offcpu_us as f64 * 1e3),
                    th.syscalls,
                    th.alloc_calls
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
                    cell(&f.name),
                    f.self_samples,
                    f.self_share * 100.0
                );
            }
            md.push('\n');
        }
    }
    let graphs: Vec<String> = [
        ("cpu_svg", "on-CPU"),
        ("offcpu_svg", "off-CPU"),
        ("alloc_svg", "allocated bytes"),
        ("alloc_count_svg", "allocations"),
        ("syscalls_svg", "syscalls"),
    ]
    .iter()
    .filter_map(|(k, what)| r.outputs.get(*k).map(|f| format!("[{what}]({f})")))
    .collect();
    if !graphs.is_empty() {
        let _ = writeln!(md, "Flame graphs: {}\n", graphs.join(" · "));
    }

    let _ = writeln!(md, "## What measuring cost\n");
    for (title, rows) in [
        (
            "Control pass (no probes) against the profiled pass",
            &r.probes.overhead,
        ),
        (
            "Main pass against the per-call (alloc, crypto) pass",
            &r.probes.per_call_pass,
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "{title}:\n\n| phase | baseline /s | probed /s | ratio |\n|---|---:|---:|---:|"
        );
        for o in rows {
            let _ = writeln!(
                md,
                "| {} {} | {} | {} | {:.3} |",
                o.phase,
                o.pattern,
                bytes(o.baseline_bps),
                bytes(o.probed_bps),
                o.ratio
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "| BPF program | runs | mean per run |\n|---|---:|---:|");
    for c in r.probes.program_costs.iter().filter(|c| c.run_count > 0) {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            c.program,
            c.run_count,
            duration_ns(c.run_time_ns as f64 / c.run_count as f64)
        );
    }
    md.push('\n');
    md
}

/// Text safe inside a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}
