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
         endpoint's last reading in the interval (client / server). Machine: the \
         hypervisor's steal and other processes' CPU, mean over the interval's measured \
         windows, in cores: throughput falls when they rise.\n"
    );
    let _ = writeln!(
        md,
        "| # | from–to s | status | phases | RSS | FDs | threads | CPU, cores | machine: steal / other, cores | failed rules |\n|---:|---|---|---|---|---|---|---|---|---|"
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
        // Client first, as the column headers say, whatever order the
        // soak listed the endpoints in.
        let mut targets: Vec<&crate::report::IntervalTarget> = i.targets.iter().collect();
        targets.sort_by_key(|t| t.role);
        let each = |f: &dyn Fn(&crate::report::IntervalTarget) -> String| {
            targets.iter().map(|t| f(t)).collect::<Vec<_>>().join(" / ")
        };
        let _ = writeln!(
            md,
            "| [{}]({}/report.md) | {:.0}–{:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            i.machine_load.map_or("–".into(), |l| format!(
                "{:.2} / {:.2}",
                l.steal_cores, l.other_cores
            )),
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
        "\n## The runner\n\nHeap in use and free-but-held are the allocator's own counts \
         (glibc `mallinfo2`): RSS that grows while the heap in use stays flat is memory the \
         allocator keeps, not data the runner holds.\n\n\
         | at s | runner RSS | heap in use | heap free, held | soak directory |\n\
         |---:|---:|---:|---:|---:|"
    );
    for x in &r.runner {
        let (used, held) = match x.heap {
            Some(h) => (
                bytes(h.in_use_bytes as f64),
                bytes(h.free_held_bytes as f64),
            ),
            None => ("–".to_string(), "–".to_string()),
        };
        let _ = writeln!(
            md,
            "| {:.0} | {} | {used} | {held} | {} |",
            x.t_s,
            bytes(x.rss_bytes as f64),
            bytes(x.dir_bytes as f64)
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intervals_row_lists_the_client_first_and_the_machines_load() {
        let target = |role: &str, rss: u64| {
            serde_json::json!({
                "role": role, "rss_bytes": rss, "fds": 7, "threads": 3, "tcp_sockets": 1,
                "cpu_cores": 0.5, "live_heap_bytes": null
            })
        };
        let r: SoakReport = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "profile": "tuic", "protocol": "tuic",
            "started_at": "2026-12-03T00:00:00Z",
            "machine": {"fingerprint": "f", "cpu_model": "cpu", "cpus": 2,
                        "memory_bytes": 1, "kernel": "6.18"},
            "planned_s": 600.0, "interval_s": 300.0, "elapsed_s": 300.0, "status": "running",
            "intervals": [{
                "index": 0, "dir": "intervals/000", "from_s": 0.0, "to_s": 300.0,
                "status": "ok", "phases": [],
                // The server listed first, as the soak lists its endpoints.
                "targets": [target("server", 2 << 20), target("client", 1 << 20)],
                "failed_rules": [],
                "machine_load": {"steal_cores": 0.75, "other_cores": 0.0, "seconds": 150.0}
            }],
            "targets": [], "leak_verdicts": [], "resource_step_s": 1.0, "runner": [],
            "outputs": {}
        }))
        .expect("a soak report");
        let md = markdown(&r);
        let row = md
            .lines()
            .find(|l| l.starts_with("| [0]"))
            .expect("the interval's row");
        assert!(row.contains("| 1.00 MiB / 2.00 MiB |"), "{row}");
        assert!(row.contains("| 0.75 / 0.00 |"), "{row}");
    }
}
