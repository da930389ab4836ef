//! markdown: compare.md (sized for a PR comment) and the terminal summary.

use std::fmt::Write as _;

use super::{Change, Comparison, Family, GateOutcome, MetricRow, Scale};

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

/// A change on the row's scale: a percentage on the ratio scale, a signed
/// amount in the unit on the difference scale.
fn amount(r: &MetricRow, x: f64) -> String {
    match r.scale {
        Scale::Ratio => format!("{:+.1} %", x * 100.0),
        Scale::Difference => {
            let sign = if x > 0.0 { "+" } else { "" };
            format!("{sign}{}", num(x))
        }
    }
}

fn estimate(r: &MetricRow) -> String {
    match (r.change_estimate, r.scale) {
        (None, _) => "–".into(),
        (Some(x), Scale::Ratio) => amount(r, x),
        (Some(x), Scale::Difference) => format!("{} {}", amount(r, x), r.unit),
    }
}

fn interval(r: &MetricRow) -> String {
    r.interval.map_or("–".into(), |(lo, hi)| {
        format!("[{}, {}]", amount(r, lo), amount(r, hi))
    })
}

fn smallest(r: &MetricRow) -> String {
    if r.judged_by.is_some() {
        return "via cost".into();
    }
    match r.scale {
        Scale::Ratio => format!("±{:.0} %", r.min_effect * 100.0),
        Scale::Difference => format!("±{}", num(r.min_effect)),
    }
}

fn verdict(r: &MetricRow) -> String {
    let mut v = r.change.label();
    if let Some(k) = &r.judged_by {
        let _ = write!(v, " (via `{k}`)");
    }
    if r.gate_failed {
        v.push_str(", **gate failed**");
    }
    v
}

/// One gate failure as a sentence with its numbers.
pub fn gate_line(r: &MetricRow) -> String {
    let g = r.gate.as_ref();
    let name = g.map_or("", |g| g.metric.as_str());
    let limit = g.map_or(0.0, |g| g.max_regression);
    let level = r.level * 100.0;
    if r.scale == Scale::Difference && r.median_a == 0.0 {
        return format!(
            "{}: {} → {} {} (from zero; {level:.2} % interval of B − A {}), beyond any relative gate (gate `{name}`)",
            r.metric,
            num(r.median_a),
            num(r.median_b),
            r.unit,
            interval(r),
        );
    }
    let (est, iv) = match r.scale {
        Scale::Ratio => (estimate(r), interval(r)),
        // The gate is relative: state the change relative to A too.
        Scale::Difference => {
            let rel = |x: f64| format!("{:+.1} %", x / r.median_a.abs() * 100.0);
            (
                r.change_estimate.map_or("–".into(), rel),
                r.interval.map_or("–".into(), |(lo, hi)| {
                    format!("[{}, {}]", rel(lo), rel(hi))
                }),
            )
        }
    };
    format!(
        "{}: {} → {} {} ({est}, {level:.2} % interval {iv}), wholly beyond the gate's {:.1} % (gate `{name}`)",
        r.metric,
        num(r.median_a),
        num(r.median_b),
        r.unit,
        limit * 100.0,
    )
}

fn table(rows: &[&MetricRow], out: &mut String) {
    out.push_str(
        "| metric | n A/B | median A | median B | change | interval | level | smallest | verdict |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {}/{} | {} {} | {} {} | {} | {} | {:.2} % | {} | {} |",
            r.metric,
            r.n_a,
            r.n_b,
            num(r.median_a),
            r.unit,
            num(r.median_b),
            r.unit,
            estimate(r),
            interval(r),
            r.level * 100.0,
            smallest(r),
            verdict(r)
        );
    }
}

fn gates_heading(c: &Comparison, out: &mut String) {
    let g = &c.gates;
    match g.outcome {
        GateOutcome::Pass if g.metrics == 0 => {
            out.push_str("**Gates: none** (no gated metric in these runs).\n\n")
        }
        GateOutcome::Pass => {
            let _ = writeln!(
                out,
                "**Gates: pass** ({} gated metrics, each on its {:.2} % interval).\n",
                g.metrics,
                g.level * 100.0
            );
        }
        GateOutcome::Failed => {
            let failures: Vec<&MetricRow> = c.gate_failures().collect();
            let _ = writeln!(out, "**Gates: {} failed.**\n", failures.len());
            for r in failures {
                let _ = writeln!(out, "- ❌ {}", gate_line(r));
            }
            out.push('\n');
        }
        GateOutcome::TooFewRuns => {
            let _ = writeln!(
                out,
                "**Gates: not judged, too few runs.** The {} gated metrics need {} runs a side for their {:.2} % intervals; A has {}, B {}.\n",
                g.metrics,
                g.runs_needed,
                g.level * 100.0,
                c.a.runs.len(),
                c.b.runs.len()
            );
        }
    }
}

/// compare.md: the gates, the gated metrics, the exploratory metrics that
/// moved, the rest folded.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# protoprof compare: {}\n\nA: `{}` ({} runs) · B: `{}` ({} runs)\n",
        c.a.profile,
        c.a.path,
        c.a.runs.len(),
        c.b.path,
        c.b.runs.len()
    );
    gates_heading(c, &mut out);
    let of = |family: Family| -> Vec<&MetricRow> {
        c.metrics.iter().filter(|r| r.family == family).collect()
    };
    let gated = of(Family::Gated);
    if !gated.is_empty() {
        out.push_str("## Gated metrics\n\n");
        table(&gated, &mut out);
        out.push('\n');
    }
    let exploratory = of(Family::Exploratory);
    let n_exploratory = exploratory.len();
    let (called, rest): (Vec<&MetricRow>, Vec<&MetricRow>) =
        exploratory.into_iter().partition(|r| r.change.is_called());
    let _ = writeln!(
        out,
        "## Exploratory metrics\n\nNot gated; each on its own {:.0} % interval, so among {} of them some can be called by chance: leads to confirm, not decisions.\n",
        c.exploratory_level * 100.0,
        n_exploratory
    );
    if called.is_empty() {
        out.push_str("None better or worse beyond its smallest meaningful change.\n\n");
    } else {
        table(&called, &mut out);
        out.push('\n');
    }
    if !rest.is_empty() {
        let count = |f: fn(&Change) -> bool| rest.iter().filter(|r| f(&r.change)).count();
        let _ = writeln!(
            out,
            "<details><summary>{} other exploratory metrics: {} no meaningful change, {} inconclusive, {} too few runs or not tested</summary>\n",
            rest.len(),
            count(|c| *c == Change::NoMeaningfulChange),
            count(|c| *c == Change::Inconclusive),
            count(|c| matches!(c, Change::TooFewRuns { .. } | Change::NotTested(_)))
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
    for n in &c.notes {
        let _ = writeln!(out, "> {n}");
    }
    out.push_str(
        "\nChange: Hodges-Lehmann estimate (ratio scale: B/A − 1 from the logarithms; otherwise B − A); interval: distribution-free, from the exact Mann-Whitney distribution. Better or worse only when the whole interval lies beyond the metric's smallest meaningful change; a gate fails only when it lies wholly beyond the allowed regression. CPU shares are judged through their category's ns per byte. Differential CPU flame graph: `diff-cpu.svg` (red: grew in B).\n",
    );
    out
}

/// The terminal summary: the gated metrics' verdicts, exploratory calls,
/// one line each, then the gates.
pub fn summary(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare {}: A {} runs, B {} runs, {} metrics ({} gated)",
        c.a.profile,
        c.a.runs.len(),
        c.b.runs.len(),
        c.metrics.len(),
        c.gates.metrics
    );
    let shown = c
        .metrics
        .iter()
        .filter(|r| r.change.is_called() || r.gate_failed);
    for r in shown {
        let tag = match r.family {
            Family::Gated => "gated",
            Family::Exploratory => "exploratory",
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<36} {:>12} → {:<12} {:>10}  {:.2} % interval {}  [{tag}]",
            r.change.label(),
            r.metric,
            num(r.median_a),
            num(r.median_b),
            estimate(r),
            r.level * 100.0,
            interval(r),
        );
    }
    let quiet = c.metrics.iter().filter(|r| !r.change.is_called()).count();
    let _ = writeln!(
        out,
        "  {quiet} metrics without a meaningful change, inconclusive or not tested"
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
    match c.gates.outcome {
        GateOutcome::Pass => out.push_str("gates: pass\n"),
        GateOutcome::Failed => {
            for r in c.gate_failures() {
                let _ = writeln!(out, "GATE FAILED {}", gate_line(r));
            }
        }
        GateOutcome::TooFewRuns => {
            let _ = writeln!(
                out,
                "gates: not judged ({} runs a side needed)",
                c.gates.runs_needed
            );
        }
    }
    out
}
