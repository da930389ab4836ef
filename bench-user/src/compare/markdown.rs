//! markdown: compare.md (sized for a PR comment) and the terminal summary.

use std::fmt::Write as _;

use super::{Change, Comparison, MetricRow};

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:+.1} %", v * 100.0))
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.3} G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.3} M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.3} k", x / 1e3)
    } else if a >= 1.0 || a == 0.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

fn ci(r: &MetricRow) -> String {
    r.ci.map_or("–".into(), |(lo, hi)| {
        format!("[{:+.1} %, {:+.1} %]", lo * 100.0, hi * 100.0)
    })
}

fn p(r: &MetricRow) -> String {
    r.p_value.map_or("–".into(), |p| format!("{p:.3}"))
}

/// One gate failure as a sentence with its numbers.
pub fn gate_line(r: &MetricRow) -> String {
    let limit = r.gate.as_ref().map_or(0.0, |g| g.max_regression);
    if r.rel_diff.is_none() {
        return format!(
            "{}: {} → {} {} (from zero, Mann-Whitney p {}), beyond any relative gate (gate `{}`)",
            r.metric,
            num(r.median_a),
            num(r.median_b),
            r.unit,
            r.p_value.map_or("–".into(), |p| format!("{p:.3}")),
            r.gate.as_ref().map_or("", |g| g.metric.as_str())
        );
    }
    format!(
        "{}: {} → {} {} ({}, 95 % CI {}), beyond the gate's {:.1} % (gate `{}`)",
        r.metric,
        num(r.median_a),
        num(r.median_b),
        r.unit,
        pct(r.rel_diff),
        ci(r),
        limit * 100.0,
        r.gate.as_ref().map_or("", |g| g.metric.as_str())
    )
}

fn table(rows: &[&MetricRow], out: &mut String) {
    out.push_str("| metric | n A/B | median A | median B | change | 95 % CI | p | verdict |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
    for r in rows {
        let per_second = if r.samples == "second" { " ¹" } else { "" };
        let _ = writeln!(
            out,
            "| `{}`{per_second} | {}/{} | {} {} | {} {} | {} | {} | {} | {} |",
            r.metric,
            r.n_a,
            r.n_b,
            num(r.median_a),
            r.unit,
            num(r.median_b),
            r.unit,
            pct(r.rel_diff),
            ci(r),
            p(r),
            r.change.label()
        );
    }
}

/// compare.md: gate failures first, then significant changes, then the rest
/// summarised.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let failures: Vec<&MetricRow> = c.gate_failures().collect();
    let _ = writeln!(
        out,
        "# protoprof compare: {}\n\nA: `{}` ({} runs) · B: `{}` ({} runs)\n",
        c.a.profile,
        c.a.path,
        c.a.runs.len(),
        c.b.path,
        c.b.runs.len()
    );
    if failures.is_empty() {
        out.push_str("**Gates: pass.**\n\n");
    } else {
        let _ = writeln!(out, "**Gates: {} failed.**\n", failures.len());
        for r in &failures {
            let _ = writeln!(out, "- ❌ {}", gate_line(r));
        }
        out.push('\n');
    }
    let significant: Vec<&MetricRow> = c
        .metrics
        .iter()
        .filter(|r| matches!(r.change, Change::Better | Change::Worse))
        .collect();
    if significant.is_empty() {
        out.push_str("No significant change (95 % bootstrap interval of the change of medians excludes 0 for no metric).\n\n");
    } else {
        out.push_str("## Significant changes\n\n");
        table(&significant, &mut out);
        out.push('\n');
    }
    let rest: Vec<&MetricRow> = c
        .metrics
        .iter()
        .filter(|r| !matches!(r.change, Change::Better | Change::Worse))
        .collect();
    if !rest.is_empty() {
        let untested = rest
            .iter()
            .filter(|r| matches!(r.change, Change::NotTested(_)))
            .count();
        let _ = writeln!(
            out,
            "<details><summary>{} other metrics: {} no significant change, {} not tested</summary>\n",
            rest.len(),
            rest.len() - untested,
            untested
        );
        table(&rest, &mut out);
        out.push_str("\n</details>\n\n");
    }
    if !c.checklist_changes.is_empty() {
        out.push_str(
            "## Checklist verdicts that changed\n\n| rule | target | A | B |\n|---|---|---|---|\n",
        );
        for ch in &c.checklist_changes {
            let _ = writeln!(
                out,
                "| {} ({}) | {} | {} | {} |",
                ch.rule, ch.title, ch.target, ch.a, ch.b
            );
        }
        out.push('\n');
    }
    if c.metrics.iter().any(|r| r.samples == "second") {
        out.push_str("¹ tested on per-second samples of one run a side.\n\n");
    }
    for n in &c.notes {
        let _ = writeln!(out, "> {n}");
    }
    let _ = writeln!(
        out,
        "\nChange = (median B − median A) / |median A|; {} % percentile bootstrap ({} resamples, seed {:#x}); p: two-sided Mann-Whitney U. Differential CPU flame graph: `diff-cpu.svg` (red: grew in B).",
        (c.confidence * 100.0).round(),
        c.resamples,
        c.seed
    );
    out
}

/// The terminal summary: gate failures and significant changes, one line
/// each.
pub fn summary(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare {}: A {} runs, B {} runs, {} metrics",
        c.a.profile,
        c.a.runs.len(),
        c.b.runs.len(),
        c.metrics.len()
    );
    for r in c
        .metrics
        .iter()
        .filter(|r| matches!(r.change, Change::Better | Change::Worse))
    {
        let _ = writeln!(
            out,
            "  {:<8} {:<36} {:>12} → {:<12} {:>9}  CI {}  p {}",
            r.change.label(),
            r.metric,
            num(r.median_a),
            num(r.median_b),
            pct(r.rel_diff),
            ci(r),
            p(r)
        );
    }
    let quiet = c
        .metrics
        .iter()
        .filter(|r| !matches!(r.change, Change::Better | Change::Worse))
        .count();
    let _ = writeln!(
        out,
        "  {quiet} metrics without a significant change or not tested"
    );
    for ch in &c.checklist_changes {
        let _ = writeln!(
            out,
            "  checklist {} on {}: {} → {}",
            ch.rule, ch.target, ch.a, ch.b
        );
    }
    for n in &c.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    let failures: Vec<&MetricRow> = c.gate_failures().collect();
    if failures.is_empty() {
        out.push_str("gates: pass\n");
    } else {
        for r in failures {
            let _ = writeln!(out, "GATE FAILED {}", gate_line(r));
        }
    }
    out
}
