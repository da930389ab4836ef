//! The terminal summary printed at the end of a run.

use std::fmt::Write as _;

use super::{alloc_line, bytes, crypto_line, duration_ns, integrity, percentiles_text, share_text};
use crate::report::{Report, Verdict};

/// Throughput, latency, top syscalls and top functions, for a terminal.
pub fn summary(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "protoprof {} ({}): integrity {}, {:.1} s measured, status {}",
        r.run.profile,
        r.run.protocol,
        integrity(r.workload.integrity),
        r.run.measured_s,
        r.run.status
    );
    for p in &r.workload.phases {
        let _ = write!(
            out,
            "  {:<5} {} conns: up {}/s, down {}/s (medians)",
            p.pattern,
            p.connections,
            bytes(p.throughput.up_bps_median),
            bytes(p.throughput.down_bps_median)
        );
        if let Some(l) = &p.latency_us {
            let _ = write!(
                out,
                "; {} round trips, {}, max {:.0} µs",
                p.round_trips,
                percentiles_text(l, &["p50", "p99"]),
                l.max
            );
        }
        let _ = writeln!(
            out,
            "; setup {} (n={})",
            percentiles_text(&p.setup_us, &["p50"]),
            p.setup_us.count
        );
    }
    if let Some(s) = &r.workload.setup {
        let _ = writeln!(out, "  set-up: {}", super::setup_line(s));
    }
    for l in super::network::terminal_lines(r) {
        let _ = writeln!(out, "  {l}");
    }
    for w in super::noisy_windows(r) {
        let _ = writeln!(out, "  disturbed window: {w}");
    }
    for t in &r.targets {
        let _ = writeln!(
            out,
            "  {} (pid {}): {} CPU samples",
            t.role, t.pid, t.cpu.samples
        );
        let sys: Vec<String> = t
            .syscalls
            .iter()
            .take(5)
            .map(|s| {
                if r.probes.options.syscall_time {
                    format!("{} {}× {}", s.name, s.count, duration_ns(s.total_ns as f64))
                } else {
                    format!("{} {}×", s.name, s.count)
                }
            })
            .collect();
        if !sys.is_empty() {
            let _ = writeln!(out, "    syscalls: {}", sys.join(", "));
        }
        if let Some(a) = &t.alloc {
            let _ = writeln!(out, "    allocations: {}", alloc_line(a));
        }
        if let Some(c) = &t.crypto {
            let _ = writeln!(out, "    crypto: {}", crypto_line(c));
        }
        if let Some(o) = &t.offcpu {
            let top = o
                .top_blocking
                .first()
                .map(|b| format!(", mostly in {}", truncate(&b.name, 60)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    off-CPU: {}{top}",
                duration_ns(o.total_us as f64 * 1e3)
            );
        }
        if let Some(c) = &t.costs {
            let mut cats: Vec<_> = c.categories.iter().filter(|c| c.samples > 0).collect();
            cats.sort_by(|a, b| b.share.total_cmp(&a.share));
            let cats: Vec<String> = cats
                .iter()
                .map(|k| format!("{} {}", k.category, share_text(k, c.samples)))
                .collect();
            let _ = writeln!(out, "    costs: {}", cats.join(", "));
        }
        for f in t.cpu.top_functions.iter().take(10) {
            let _ = writeln!(
                out,
                "    {:5.1}%  {}",
                f.self_share * 100.0,
                truncate(&f.name, 100)
            );
        }
    }
    if r.checklist.is_empty() {
        let _ = writeln!(out, "  checklist: not evaluated");
    } else {
        let count = |v: Verdict| r.checklist.iter().filter(|c| c.verdict == v).count();
        let _ = writeln!(
            out,
            "  checklist: {} fail, {} warn, {} ok, {} not evaluated (report.md, report.html)",
            count(Verdict::Fail),
            count(Verdict::Warn),
            count(Verdict::Ok),
            count(Verdict::NotEvaluated)
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}
