//! The stress figures as outputs: `resources.csv` (every target's
//! once-a-second readings) and report.html's sections on resources over
//! time, churn, open-loop schedules and concurrency sweeps.

use std::fmt::Write as _;

use super::{
    bytes,
    charts::{line_chart, Series},
    duration_ns,
    html::escape,
    percentiles_text,
};
use crate::report::{Report, ResourcePoint, Resources};

/// CSV with a header: role, pid, t_s (since the run started), rss_bytes,
/// fds, then descriptors by kind, threads, cpu_s, cpu_cores (empty on a
/// target's first row), then TCP sockets by state.
pub fn resources_csv(r: Option<&Resources>) -> String {
    let mut out = String::from(
        "role,pid,t_s,rss_bytes,fds,fd_socket,fd_pipe,fd_eventfd,fd_eventpoll,fd_timerfd,fd_anon,fd_file,\
         threads,cpu_s,cpu_cores,tcp_established,tcp_syn_sent,tcp_syn_recv,tcp_fin_wait1,tcp_fin_wait2,\
         tcp_time_wait,tcp_close,tcp_close_wait,tcp_last_ack,tcp_listen,tcp_closing\n",
    );
    for t in r.iter().flat_map(|r| r.targets.iter()) {
        for p in &t.samples {
            let (f, c) = (&p.fds, &p.tcp);
            let _ = writeln!(
                out,
                "{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{}",
                t.role.as_str(),
                t.pid,
                p.t_s,
                p.rss_bytes,
                f.total,
                f.socket,
                f.pipe,
                f.eventfd,
                f.eventpoll,
                f.timerfd,
                f.anon,
                f.file,
                p.threads,
                p.cpu_s,
                p.cpu_cores.map_or(String::new(), |v| format!("{v:.3}")),
                c.established,
                c.syn_sent,
                c.syn_recv,
                c.fin_wait1,
                c.fin_wait2,
                c.time_wait,
                c.close,
                c.close_wait,
                c.last_ack,
                c.listen,
                c.closing
            );
        }
    }
    out
}

/// A chart: title, one line per target, how to label its values.
type Chart<'a> = (&'a str, Vec<Series>, &'a dyn Fn(f64) -> String);

const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

/// report.html: resources over time, one chart per resource with a line
/// per target; `charts` counts the charts drawn.
pub fn resources_section(out: &mut String, r: &Report, charts: &mut usize) {
    out.push_str("<h2 id=\"resources\">Resources over time</h2>\n");
    let Some(res) = &r.resources else {
        out.push_str("<p class=\"muted\">Not recorded in this report.</p>\n");
        return;
    };
    let _ = writeln!(
        out,
        "<p class=\"muted\">Each target read from /proc every {:.0} s for the whole run (set-up phase, \
         passes and the gaps between them); x is seconds since the run started. {}</p>",
        res.interval_s,
        escape(&res.notes.join(" "))
    );
    let metric = |f: fn(&ResourcePoint) -> f64| -> Vec<Series> {
        res.targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Series::new(
                    t.role.as_str(),
                    COLOURS[i % COLOURS.len()],
                    t.samples.iter().map(|p| (p.t_s, f(p))).collect(),
                )
            })
            .collect()
    };
    let charts_of: [Chart; 5] = [
        (
            "resident memory (RSS)",
            metric(|p| p.rss_bytes as f64),
            &|v| bytes(v),
        ),
        ("open descriptors", metric(|p| p.fds.total as f64), &|v| {
            format!("{v:.0}")
        }),
        (
            "TCP sockets established",
            metric(|p| p.tcp.established as f64),
            &|v| format!("{v:.0}"),
        ),
        ("threads", metric(|p| p.threads as f64), &|v| {
            format!("{v:.0}")
        }),
        (
            "CPU (cores)",
            metric(|p| p.cpu_cores.unwrap_or(0.0)),
            &|v| format!("{v:.2}"),
        ),
    ];
    out.push_str("<div>");
    for (title, series, fmt) in charts_of {
        out.push_str(&line_chart(title, "s", &series, fmt));
        *charts += 1;
    }
    out.push_str("</div>\n");
}

/// report.html: churn, open-loop and sweep figures, where the run has them.
pub fn stress_section(out: &mut String, r: &Report) {
    let phases = &r.workload.phases;
    let churn: Vec<_> = phases
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.churn.as_ref().map(|c| (i, c)))
        .collect();
    if !churn.is_empty() {
        out.push_str(
            "<h3>Churn</h3>\n<table><tr><th>phase</th><th>target /s</th><th>achieved /s</th>\
             <th>started</th><th>completed</th><th>failed</th><th>set-up (SOCKS5 reply)</th>\
             <th>first response</th><th>failures</th></tr>\n",
        );
        for (i, c) in churn {
            let failures: Vec<String> = c
                .failures
                .iter()
                .map(|f| format!("{} × {}", f.count, f.kind))
                .collect();
            let _ = writeln!(
                out,
                "<tr><td>{i}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.target_per_s
                    .map_or("as fast as possible".to_string(), |t| format!("{t:.1}")),
                c.connections_per_s,
                c.started,
                c.completed,
                c.failed,
                escape(&percentiles_text(&c.setup_us, &["p50", "p99"])),
                escape(&percentiles_text(&c.first_response_us, &["p50", "p99"])),
                escape(&failures.join(", "))
            );
        }
        out.push_str("</table>\n");
    }
    for (i, p) in phases.iter().enumerate() {
        if let Some(s) = &p.schedule {
            let _ = writeln!(
                out,
                "<p>Phase {i}, rr open loop at {:.1} requests/s per connection: {} requests due in the window, \
                 {} sent more than one interval late or not at all; lag behind schedule {}, max {}.</p>",
                s.rate_per_connection,
                s.due,
                s.behind,
                escape(&percentiles_text(&s.lag_us, &["p50", "p99"])),
                duration_ns(s.lag_us.max * 1e3)
            );
        }
        if let Some(b) = p.bytes_per_connection {
            let _ = writeln!(
                out,
                "<p>Phase {i}, exact-length bulk: {} per connection each way, all {} connections counted at both ends.</p>",
                bytes(b as f64),
                p.integrity.connections_checked
            );
        }
    }
    for s in &r.sweeps {
        let _ = writeln!(
            out,
            "<h3>Concurrency sweep (phase table {})</h3>\n<p class=\"muted\">Levels asked: {:?}; \
             RLIMIT_NOFILE {} (was {}, hard {}); {} local ports{}.</p>\n\
             <table><tr><th>connections</th><th>throughput</th><th>round trips /s</th><th>p50</th><th>p99</th>\
             <th>target: RSS, FDs, per connection</th></tr>",
            s.spec_phase,
            s.planned,
            s.limits.fd_limit,
            s.limits.fd_limit_before,
            s.limits.fd_hard_limit,
            s.limits.local_ports,
            s.limits
                .stream_limit
                .map_or(String::new(), |l| format!("; {l} QUIC streams per connection"))
        );
        for l in &s.levels {
            let us = |v: Option<f64>| v.map_or("–".to_string(), |v| duration_ns(v * 1e3));
            let targets: Vec<String> = l
                .targets
                .iter()
                .map(|t| {
                    format!(
                        "{}: {}, {} FDs; {} and {:.2} FDs per connection",
                        t.role.as_str(),
                        bytes(t.rss_bytes as f64),
                        t.fds,
                        bytes(t.rss_per_connection_bytes),
                        t.fds_per_connection
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}/s</td><td class=\"n\">{:.0}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                l.connections,
                bytes(l.throughput_bps),
                l.round_trips_per_s,
                us(l.latency_p50_us),
                us(l.latency_p99_us),
                escape(&targets.join("; "))
            );
        }
        out.push_str("</table>\n");
        for (what, stop) in [
            ("First failure", &s.first_failure),
            ("Not tried", &s.limited),
        ] {
            if let Some(stop) = stop {
                let _ = writeln!(
                    out,
                    "<p><b>{what}</b> at {} connections: {}</p>",
                    stop.connections,
                    escape(&stop.reason)
                );
            }
        }
    }
}

/// One line per stress figure for report.md: churn rate and set-up,
/// open-loop lag, each sweep's reach.
pub fn stress_lines(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in r.workload.phases.iter().enumerate() {
        if let Some(c) = &p.churn {
            let failed: u64 = c.failures.iter().map(|f| f.count).sum();
            out.push(format!(
                "Phase {i} churn: {:.1} connections/s ({} of {} in the window; target {}), set-up {}, {failed} failed",
                c.connections_per_s,
                c.completed,
                c.started,
                c.target_per_s
                    .map_or("as fast as possible".to_string(), |t| format!("{t:.1}/s")),
                percentiles_text(&c.setup_us, &["p50", "p99"]),
            ));
        }
        if let Some(s) = &p.schedule {
            out.push(format!(
                "Phase {i} rr open loop at {:.1}/s per connection: {} due, {} sent more than an interval late or not at all",
                s.rate_per_connection, s.due, s.behind
            ));
        }
    }
    for s in &r.sweeps {
        let reached = s.levels.last().map_or(0, |l| l.connections);
        let stop = s
            .first_failure
            .as_ref()
            .map(|f| format!("; first failure at {}: {}", f.connections, f.reason))
            .or_else(|| {
                s.limited
                    .as_ref()
                    .map(|l| format!("; {} not tried: {}", l.connections, l.reason))
            })
            .unwrap_or_default();
        out.push(format!(
            "Concurrency sweep: {} of {} levels, up to {reached} connections{stop}",
            s.levels.len(),
            s.planned.len()
        ));
    }
    out.extend(r.targets.iter().filter_map(leak_line));
    out
}

/// One target's growth per connection served after warm-up, each with its
/// 95 % interval, and its counts against their baseline.
fn leak_line(t: &crate::report::Target) -> Option<String> {
    let leak = t.leak.as_ref()?;
    let slopes: Vec<String> = leak
        .resources
        .iter()
        .filter_map(|r| {
            let s = r.per_connection?;
            Some(if r.unit == "B" {
                format!(
                    "{} {} [{}, {}] a connection",
                    r.resource,
                    crate::units::bytes(s.estimate),
                    crate::units::bytes(s.low),
                    crate::units::bytes(s.high)
                )
            } else {
                format!(
                    "{} {:.2} [{:.2}, {:.2}] per 1000",
                    r.resource,
                    s.estimate * 1000.0,
                    s.low * 1000.0,
                    s.high * 1000.0
                )
            })
        })
        .collect();
    let growth = if slopes.is_empty() {
        leak.notes.join("; ")
    } else {
        format!(
            "over {} connections after warm-up: {}",
            leak.connections,
            slopes.join(", ")
        )
    };
    let baseline = leak.return_to_baseline.map_or(String::new(), |b| {
        format!(
            "; after the traffic {} descriptors (before: {}), {} TCP sockets (before: {})",
            b.after.fds, b.before.fds, b.after.tcp_sockets, b.before.tcp_sockets
        )
    });
    Some(format!("Leaks ({}): {growth}{baseline}", t.role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{FdCounts, Role, TargetResources, TcpCounts};

    #[test]
    fn one_csv_row_per_reading() {
        let p = |t_s: f64, cpu_cores| ResourcePoint {
            t_s,
            rss_bytes: 4096,
            fds: FdCounts {
                total: 9,
                socket: 4,
                pipe: 2,
                eventfd: 1,
                eventpoll: 1,
                timerfd: 0,
                anon: 0,
                file: 1,
            },
            threads: 3,
            cpu_s: 0.5,
            cpu_cores,
            tcp: TcpCounts {
                established: 3,
                syn_sent: 0,
                syn_recv: 0,
                fin_wait1: 0,
                fin_wait2: 0,
                time_wait: 0,
                close: 0,
                close_wait: 0,
                last_ack: 0,
                listen: 1,
                closing: 0,
            },
            connections_served: None,
        };
        let r = Resources {
            interval_s: 1.0,
            notes: Vec::new(),
            targets: vec![TargetResources {
                role: Role::Server,
                pid: 42,
                samples: vec![p(0.0, None), p(1.0, Some(0.25))],
                return_to_baseline: None,
            }],
        };
        let csv = resources_csv(Some(&r));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            "server,42,0.000,4096,9,4,2,1,1,0,0,1,3,0.500,,3,0,0,0,0,0,0,0,0,1,0"
        );
        assert!(lines[2].starts_with("server,42,1.000,") && lines[2].contains(",0.500,0.250,"));
        assert_eq!(
            lines[0].split(',').count(),
            lines[1].split(',').count(),
            "header and rows agree"
        );
        assert_eq!(resources_csv(None).lines().count(), 1);
    }
}
