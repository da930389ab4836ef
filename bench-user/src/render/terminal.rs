//! The terminal summary printed at the end of a run.

use std::fmt::Write as _;

use super::{bytes, duration_ns, integrity};
use crate::report::Report;

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
                "; {} round trips, p50 {:.0} µs p99 {:.0} µs max {:.0} µs",
                p.round_trips, l.p50, l.p99, l.max
            );
        }
        let _ = writeln!(out, "; setup p50 {:.0} µs", p.setup_us.p50);
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
            .map(|s| format!("{} {}× {}", s.name, s.count, duration_ns(s.total_ns as f64)))
            .collect();
        if !sys.is_empty() {
            let _ = writeln!(out, "    syscalls: {}", sys.join(", "));
        }
        if let Some(a) = &t.alloc {
            let _ = writeln!(
                out,
                "    allocations: {} calls, {} ({} frees)",
                a.calls,
                bytes(a.bytes as f64),
                a.frees
            );
        }
        if let Some(c) = &t.crypto {
            let calls: u64 = c.symbols.iter().map(|s| s.calls).sum();
            let share = c
                .cpu_share
                .map(|s| format!(", {:.1}% of CPU samples", s * 100.0))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    crypto: {calls} calls to {} probed functions{share}",
                c.symbols.len()
            );
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
        for f in t.cpu.top_functions.iter().take(10) {
            let _ = writeln!(
                out,
                "    {:5.1}%  {}",
                f.self_share * 100.0,
                truncate(&f.name, 100)
            );
        }
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
