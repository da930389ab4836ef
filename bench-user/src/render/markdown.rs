//! `report.md`: a summary that fits a pull-request comment.
//!
//! The summary, the top costs and the checklist always come first; the
//! per-target details follow only while the page stays within
//! [`LINE_BUDGET`], and a closing line points to report.html for the rest.

use std::fmt::Write as _;

use super::{
    alloc_line, bytes, crypto_line, duration_ns, integrity, noisy_windows, percentiles_text,
    phase_label, setup_line, share_text,
};
use crate::report::{Report, RuleResult, Target, Verdict};

/// Lines a pull-request comment can hold and still be read.
pub const LINE_BUDGET: usize = 150;
/// Checklist rows shown before the rest are summarised in one line (failed
/// and warned rows go first).
const CHECKLIST_ROWS: usize = 60;
/// Top functions per target.
const TOP_FUNCTIONS: usize = 5;

/// The markdown report.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    head(&mut md, r);
    md.push_str(&super::network::markdown_section(r));
    top_costs(&mut md, r);
    checklist(&mut md, r);
    let footer = footer(r);
    let mut left_out = 0;
    for block in details(r) {
        if lines(&md) + lines(&block) + lines(&footer) + 2 <= LINE_BUDGET {
            md.push_str(&block);
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        let _ = writeln!(
            md,
            "_{left_out} detail section(s) left out to keep this short: see report.html or report.json._\n"
        );
    }
    md.push_str(&footer);
    md
}

fn lines(s: &str) -> usize {
    s.lines().count()
}

fn head(md: &mut String, r: &Report) {
    let _ = writeln!(md, "# protoprof: {} ({})\n", r.run.profile, r.run.protocol);
    if !r.run.description.is_empty() {
        let _ = writeln!(md, "{}\n", r.run.description);
    }
    let _ = writeln!(
        md,
        "Run `{}` · started {} · {:.1} s measured · kernel {} · {} CPUs · status **{}** · \
         integrity **{}** ({} up, {} down, BLAKE3-checked end to end)\n",
        &r.run.id[..12.min(r.run.id.len())],
        r.run.started_at,
        r.run.measured_s,
        r.run.kernel,
        r.run.cpus,
        r.run.status,
        integrity(r.workload.integrity),
        bytes(r.workload.bytes_up as f64),
        bytes(r.workload.bytes_down as f64)
    );
    const MAX_WARNINGS: usize = 5;
    for w in r.warnings.iter().take(MAX_WARNINGS) {
        let _ = writeln!(md, "> **warning:** {}", one_line(w));
    }
    if r.warnings.len() > MAX_WARNINGS {
        let _ = writeln!(
            md,
            "> …and {} more warnings in report.json",
            r.warnings.len() - MAX_WARNINGS
        );
    }
    if !r.warnings.is_empty() {
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "| phase | conns | up /s (median) | down /s (median) | round trips | latency [95 % bounds] | setup [95 % bounds] |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---:|");
    for p in &r.workload.phases {
        let lat = p
            .latency_us
            .as_ref()
            .map(|l| {
                format!(
                    "{} (n={})",
                    percentiles_text(l, &["p50", "p90", "p99"]),
                    l.count
                )
            })
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} (n={}) |",
            phase_label(p),
            p.connections,
            bytes(p.throughput.up_bps_median),
            bytes(p.throughput.down_bps_median),
            p.round_trips,
            lat,
            percentiles_text(&p.setup_us, &["p50", "p99"]),
            p.setup_us.count
        );
    }
    md.push('\n');
    if let Some(s) = &r.workload.setup {
        let _ = writeln!(md, "Connection set-up phase: {}.\n", setup_line(s));
    }
    let stress = super::stress_lines(r);
    for l in &stress {
        let _ = writeln!(md, "{l}.  ");
    }
    if !stress.is_empty() {
        md.push('\n');
    }
    let noisy = noisy_windows(r);
    for w in &noisy {
        let _ = writeln!(md, "> **disturbed window:** {w}");
    }
    if !noisy.is_empty() {
        md.push('\n');
    }
}

/// Cost categories side by side per target, then each target's top
/// functions.
fn top_costs(md: &mut String, r: &Report) {
    let _ = writeln!(md, "## Top costs\n");
    let measured: Vec<&Target> = r.targets.iter().filter(|t| t.costs.is_some()).collect();
    for t in r.targets.iter().filter(|t| t.costs.is_none()) {
        let _ = writeln!(md, "{}: cost attribution not measured.\n", t.role);
    }
    if !measured.is_empty() {
        let mut header = String::from("| category |");
        let mut rule = String::from("|---|");
        for t in &measured {
            let _ = write!(header, " {0} share | {0} CPU ns/B |", t.role);
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        // Categories in the first target's order (the attribution file's).
        let categories = measured[0].costs.iter().flat_map(|c| {
            c.categories
                .iter()
                .map(|c| (c.category.as_str(), c.measuring))
        });
        for (cat, measuring) in categories {
            // The profiler's own probes: measuring, not the target.
            let apart = if measuring { " (measuring)" } else { "" };
            let _ = write!(md, "| {cat}{apart} |");
            for t in &measured {
                let row = t
                    .costs
                    .as_ref()
                    .and_then(|c| c.categories.iter().find(|c| c.category == cat));
                match row {
                    Some(c) => {
                        let _ = write!(
                            md,
                            " {} | {} |",
                            share_text(c, t.costs.as_ref().map_or(0, |a| a.samples)),
                            c.ns_per_byte
                                .map(|v| format!("{v:.3}"))
                                .unwrap_or_else(|| "–".into())
                        );
                    }
                    None => md.push_str(" – | – |"),
                }
            }
            md.push('\n');
        }
        let totals: Vec<String> = measured
            .iter()
            .filter_map(|t| {
                t.costs.as_ref().map(|c| {
                    format!(
                        "{} {} over {} in {} ({})",
                        t.role,
                        duration_ns(c.cpu_ns),
                        bytes(c.bytes as f64),
                        super::phases_text(&c.phases, r),
                        c.cpu_ns_source
                    )
                })
            })
            .collect();
        let _ = writeln!(md, "\nCPU: {}.\n", totals.join("; "));
    }
    let with_samples: Vec<&Target> = r.targets.iter().filter(|t| t.cpu.samples > 0).collect();
    if with_samples.is_empty() {
        let _ = writeln!(md, "Top functions: no CPU samples.\n");
        return;
    }
    let _ = writeln!(
        md,
        "| top functions (self CPU) | target | self | share |\n|---|---|---:|---:|"
    );
    for t in with_samples {
        for f in t.cpu.top_functions.iter().take(TOP_FUNCTIONS) {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {:.1}% |",
                cell(&f.name),
                t.role,
                f.self_samples,
                f.self_share * 100.0
            );
        }
    }
    md.push('\n');
}

/// Failed first, then warned, ok, not evaluated.
fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Fail => 0,
        Verdict::Warn => 1,
        Verdict::Ok => 2,
        Verdict::NotEvaluated => 3,
    }
}

fn checklist(md: &mut String, r: &Report) {
    let _ = writeln!(md, "## Checklist\n");
    if r.checklist.is_empty() {
        let _ = writeln!(md, "Checklist: not evaluated.\n");
        return;
    }
    let count = |v: Verdict| r.checklist.iter().filter(|c| c.verdict == v).count();
    let _ = writeln!(
        md,
        "{} fail · {} warn · {} ok · {} not evaluated\n",
        count(Verdict::Fail),
        count(Verdict::Warn),
        count(Verdict::Ok),
        count(Verdict::NotEvaluated)
    );
    let mut rows: Vec<&RuleResult> = r.checklist.iter().collect();
    rows.sort_by_key(|c| severity(c.verdict));
    let _ = writeln!(
        md,
        "| rule | target | verdict | evidence | recommendation |\n|---|---|---|---|---|"
    );
    for c in rows.iter().take(CHECKLIST_ROWS) {
        let _ = writeln!(
            md,
            "| {} {} | {} | {} | {} | {} |",
            cell(&c.id),
            cell(&c.title),
            cell(c.target.as_str()),
            c.verdict.as_str(),
            cell(&c.evidence),
            cell(&c.recommendation)
        );
    }
    if rows.len() > CHECKLIST_ROWS {
        let _ = writeln!(
            md,
            "\n{} more rows (ok or not evaluated) in report.html.",
            rows.len() - CHECKLIST_ROWS
        );
    }
    md.push('\n');
}

/// Droppable sections, most useful first.
fn details(r: &Report) -> Vec<String> {
    let mut blocks = Vec::new();
    if !r.calibration.is_empty() {
        let mut b = String::from("Cipher calibration (this machine): ");
        let rows: Vec<String> = r
            .calibration
            .iter()
            .map(|c| {
                format!(
                    "{} ({}) {:.3} ns/B",
                    c.primitive, c.implementation, c.ns_per_byte
                )
            })
            .collect();
        let _ = writeln!(b, "{}.\n", rows.join(", "));
        blocks.push(b);
    }
    for t in &r.targets {
        blocks.push(target_details(t, r.probes.options.syscall_time));
    }
    blocks.push(measuring_cost(r));
    blocks
}

/// `timed`: the syscalls were timed (`probes.syscall_time`).
fn target_details(t: &Target, timed: bool) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### {} endpoint (pid {})\n", t.role, t.pid);
    let mut facts = vec![format!("`{}`", t.exe)];
    if let Some(rss) = t.peak_rss_bytes {
        facts.push(format!("peak RSS {}", bytes(rss as f64)));
    }
    if let Some(o) = &t.offcpu {
        let top = o
            .top_blocking
            .first()
            .map(|b| format!(", mostly in `{}`", cell(&b.name)))
            .unwrap_or_default();
        facts.push(format!(
            "off-CPU {}{top}",
            duration_ns(o.total_us as f64 * 1e3)
        ));
    }
    if let Some(a) = &t.alloc {
        facts.push(format!("allocations: {}", alloc_line(a)));
    }
    if let Some(c) = &t.crypto {
        facts.push(format!("crypto: {}", crypto_line(c)));
    }
    let _ = writeln!(md, "{}.\n", facts.join(" · "));
    if !t.syscalls.is_empty() {
        let _ = writeln!(
            md,
            "| syscall | calls | total | mean | bytes |\n|---|---:|---:|---:|---:|"
        );
        let time = |ns: f64| {
            if timed {
                duration_ns(ns)
            } else {
                "–".into()
            }
        };
        for s in t.syscalls.iter().take(5) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                s.name,
                s.count,
                time(s.total_ns as f64),
                time(s.mean_ns),
                if s.bytes > 0 {
                    bytes(s.bytes as f64)
                } else {
                    "–".into()
                }
            );
        }
        if !timed {
            md.push_str(
                "\nCounted, not timed: `--set probes.syscall_time=true` times each call, at a cost to the rate (docs/probes.md).\n",
            );
        }
        md.push('\n');
    }
    md
}

fn measuring_cost(r: &Report) -> String {
    let mut md = String::new();
    let rows: Vec<String> = r
        .probes
        .overhead
        .iter()
        .map(|o| format!("phase {} {}: {:.3}", o.phase, o.pattern, o.ratio))
        .collect();
    if rows.is_empty() {
        let _ = writeln!(
            md,
            "Probe overhead: not measured (no control pass; `--set probes.control=true` adds one).\n"
        );
    } else {
        let _ = writeln!(
            md,
            "Throughput with probes / without: {}.\n",
            rows.join(", ")
        );
    }
    md
}

fn footer(r: &Report) -> String {
    let mut files = vec!["[report.html](report.html)".to_string()];
    files.push("[profile.pb.gz](profile.pb.gz) (pprof)".into());
    files.extend(r.stacks.iter().filter_map(|g| {
        r.outputs
            .get(&format!("{}_svg", g.name.replace('-', "_")))
            .map(|f| format!("[{}]({f})", g.name))
    }));
    format!("Full report: {}\n", files.join(" · "))
}

/// Text safe inside a table cell, on one line.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
