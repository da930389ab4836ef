//! soak.md: a soak's checkpoint report, rendered from soak.json alone.

use std::fmt::Write as _;

use super::bytes;
use crate::report::SoakReport;

/// The soak's report as Markdown: status, the leak verdicts over the whole
/// soak, then one row per interval.
pub fn markdown(r: &SoakReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Soak: {} ({})\n", r.profile, r.protocol);
    let _ = writeln!(
        md,
        "Started {}; {:.0} of {:.0} s planned, in intervals of {:.0} s; status **{}**; \
         {} interval(s) finished. Machine: {}, {} CPUs.\n",
        r.started_at,
        r.elapsed_s,
        r.planned_s,
        r.interval_s,
        r.status,
        r.intervals.len(),
        r.machine.cpu_model,
        r.machine.cpus
    );
    let _ = writeln!(
        md,
        "## Leaks over the whole soak\n\nJudged on the resource readings of every interval \
         (one kept every {:.0} s per endpoint), after warm-up (the first 10 % of connections \
         served); descriptors and sockets back at their baseline only once the soak has \
         ended.\n",
        r.resource_step_s
    );
    if r.leak_verdicts.is_empty() {
        let _ = writeln!(md, "No interval finished: nothing judged.\n");
    } else {
        let _ = writeln!(
            md,
            "| endpoint | rule | verdict | evidence |\n|---|---|---|---|"
        );
        for c in &r.leak_verdicts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.target,
                c.id,
                c.verdict.as_str(),
                c.evidence.replace('|', "\\|")
            );
        }
        md.push('\n');
    }
    for t in &r.targets {
        let Some(l) = &t.leak else { continue };
        for s in &l.resources {
            if let Some(h) = s.per_hour {
                let _ = writeln!(
                    md,
                    "- {} `{}`: {:+.3} {} per hour [{:+.3}, {:+.3}]",
                    t.role, s.resource, h.estimate, s.unit, h.low, h.high
                );
            }
        }
    }
    let _ = writeln!(md, "\n## Intervals\n");
    let _ = writeln!(
        md,
        "Each interval's full report is in its directory. Throughput: both directions, each \
         phase's mean; p99 of round trips where the sample count bounds it. Resources: each \
         endpoint's last reading in the interval (client / server).\n"
    );
    let _ = writeln!(
        md,
        "| # | from–to s | status | phases | RSS | FDs | threads | CPU, cores | failed rules |\n|---:|---|---|---|---|---|---|---|---|"
    );
    for i in &r.intervals {
        let phases: Vec<String> = i
            .phases
            .iter()
            .map(|p| {
                let p99 = p
                    .p99_us
                    .map_or(String::new(), |v| format!(", p99 {:.2} ms", v / 1e3));
                format!("{}: {}/s{p99}", p.pattern, bytes(p.up_bps + p.down_bps))
            })
            .collect();
        let each = |f: &dyn Fn(&crate::report::IntervalTarget) -> String| {
            i.targets.iter().map(f).collect::<Vec<_>>().join(" / ")
        };
        let _ = writeln!(
            md,
            "| [{}]({}/report.md) | {:.0}–{:.0} | {} | {} | {} | {} | {} | {} | {} |",
            i.index,
            i.dir,
            i.from_s,
            i.to_s,
            i.status,
            phases.join("; "),
            each(&|t| bytes(t.rss_bytes as f64)),
            each(&|t| t.fds.to_string()),
            each(&|t| t.threads.to_string()),
            each(&|t| t.cpu_cores.map_or("–".into(), |c| format!("{c:.2}"))),
            if i.failed_rules.is_empty() {
                "–".to_string()
            } else {
                i.failed_rules.join(", ")
            }
        );
    }
    if let Some(svg) = r.outputs.get("diff_cpu_svg") {
        let _ = writeln!(
            md,
            "\n[{svg}]({svg}): on-CPU stacks of the latest interval against the first \
             (red: grew since the first interval, blue: shrank)."
        );
    }
    let _ = writeln!(
        md,
        "\n## The runner\n\n| at s | runner RSS | soak directory |\n|---:|---:|---:|"
    );
    for x in &r.runner {
        let _ = writeln!(
            md,
            "| {:.0} | {} | {} |",
            x.t_s,
            bytes(x.rss_bytes as f64),
            bytes(x.dir_bytes as f64)
        );
    }
    md
}
