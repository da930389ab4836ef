//! The network section (`report.network`) as tables and lines that
//! report.md, report.html and the terminal summary each lay out their own
//! way: the link's settings, what the router counted, the goodput beside
//! the rate set, the RTT and the delay line's own cost and timing error.

use std::fmt::Write as _;

use super::html::escape;
use crate::report::{LinkMeasure, LinkReport, LinkSettings, NetworkReport, Report};

/// A table: header cells, then rows of cells.
pub struct Table {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// The network section, laid out once for every output.
pub struct NetworkView {
    /// One row per direction: settings and the whole run's counts.
    pub links: Table,
    /// One row per direction and measured window: rates, goodput, loss.
    pub windows: Table,
    /// RTT, delay line, the hosts, notes.
    pub lines: Vec<String>,
}

fn direction(d: &str) -> &'static str {
    match d {
        "up" => "up (client → server)",
        _ => "down (server → client)",
    }
}

/// "25 ms ± 5 ms, 20 Mbit/s (queue 250 KB), 2 % random loss".
pub fn settings_text(s: &LinkSettings) -> String {
    let mut parts = Vec::new();
    if s.delay_ms > 0.0 || s.jitter_ms > 0.0 {
        parts.push(if s.jitter_ms > 0.0 {
            format!("delay {} ms ± {} ms", s.delay_ms, s.jitter_ms)
        } else {
            format!("delay {} ms", s.delay_ms)
        });
    }
    if let Some(rate) = s.rate_mbit {
        parts.push(match s.queue_bytes {
            Some(q) => format!("{rate} Mbit/s (queue {})", super::bytes(q as f64)),
            None => format!("{rate} Mbit/s"),
        });
    }
    if s.loss_percent > 0.0 {
        parts.push(match s.burst_packets {
            Some(b) => format!(
                "{} % {} loss (bursts of {b} packets)",
                s.loss_percent, s.loss_model
            ),
            None => format!("{} % {} loss", s.loss_percent, s.loss_model),
        });
    }
    if parts.is_empty() {
        "unimpaired".into()
    } else {
        parts.join(", ")
    }
}

/// "12 / 10000 = 0.12 % [0.06 %, 0.21 %]".
pub fn loss_text(m: &LinkMeasure) -> String {
    match &m.loss {
        Some(l) => format!(
            "{} / {} = {:.2} % [{:.2} %, {:.2} %]",
            m.lost,
            m.packets,
            l.share * 100.0,
            l.low * 100.0,
            l.high * 100.0
        ),
        None => "no packets".into(),
    }
}

fn mbit(v: f64) -> String {
    format!("{v:.1}")
}

fn link_rows(dir: &str, l: &LinkReport, links: &mut Table, windows: &mut Table, r: &Report) {
    links.rows.push(vec![
        direction(dir).into(),
        settings_text(&l.settings),
        loss_text(&l.run),
        mbit(l.run.arrived_mbit_s),
        l.run.limiter_mbit_s.map_or("–".into(), mbit),
        l.run.queue_drops.to_string(),
        l.run.sender_tcp.as_ref().map_or("–".into(), |t| {
            format!("{} of {} segments", t.retransmitted, t.sent)
        }),
    ]);
    for w in &l.windows {
        let phase = match (w.pass.as_str(), r.workload.phases.get(w.phase)) {
            ("main", Some(p)) => format!("{} ({})", w.phase, super::phase_label(p)),
            (pass, _) => format!("{} ({pass} pass)", w.phase),
        };
        let goodput = match (w.goodput_mbit_s, l.settings.rate_mbit) {
            (Some(g), Some(rate)) => format!("{g:.1} ({:.0} % of the rate)", g / rate * 100.0),
            (Some(g), None) => mbit(g),
            (None, _) => "–".into(),
        };
        windows.rows.push(vec![
            dir.into(),
            phase,
            format!("{:.1}", w.measure.seconds),
            mbit(w.measure.arrived_mbit_s),
            w.measure.limiter_mbit_s.map_or("–".into(), mbit),
            goodput,
            loss_text(&w.measure),
        ]);
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} ms"))
}

/// The network section of a report that ran in namespaces.
pub fn view(r: &Report) -> Option<NetworkView> {
    let net: &NetworkReport = r.network.as_ref()?;
    let mut links = Table {
        header: vec![
            "direction",
            "set",
            "lost / packets, whole run [95 % interval]",
            "arrived Mbit/s",
            "limiter sent Mbit/s",
            "queue drops",
            "sending host's TCP retransmitted",
        ],
        rows: Vec::new(),
    };
    let mut windows = Table {
        header: vec![
            "dir",
            "phase",
            "window s",
            "arrived Mbit/s",
            "limiter sent Mbit/s",
            "goodput Mbit/s",
            "lost / packets [95 % interval]",
        ],
        rows: Vec::new(),
    };
    link_rows("up", &net.up, &mut links, &mut windows, r);
    link_rows("down", &net.down, &mut links, &mut windows, r);
    let mut lines = vec![format!(
        "RTT client ↔ server: median {}, min {}, max {} ({} of {} handshakes; {}) for {} ms set",
        ms(net.rtt.median_ms),
        ms(net.rtt.min_ms),
        ms(net.rtt.max_ms),
        net.rtt.samples,
        net.rtt.attempts,
        net.rtt.method,
        net.rtt.set_ms
    )];
    match &net.delay_line {
        Some(d) => lines.push(format!(
            "Delay line: {:.2} s CPU over {:.1} s ({:.1} % of a core), {} per packet over {} packets; \
             timing error p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; {} write errors",
            d.cpu_s,
            d.wall_s,
            d.cpu_share * 100.0,
            d.ns_per_packet
                .map_or("–".into(), super::duration_ns),
            d.packets,
            d.timing_error_p50_us,
            d.timing_error_p99_us,
            d.timing_error_max_us,
            d.write_errors
        )),
        None => lines.push("Delay line: not running (no delay, jitter or bursty loss set)".into()),
    }
    lines.push(format!(
        "Hosts: {}",
        net.hosts
            .iter()
            .map(|h| format!("{} {} ({})", h.host, h.addresses.join(", "), h.namespace))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    lines.push(
        "Goodput: payload that reached the receiving end in the window (up: the sink, down: the \
         generator); the limiter's rate counts link-layer bytes, headers and repairs included"
            .into(),
    );
    lines.extend(net.notes.iter().map(|n| format!("Note: {n}")));
    Some(NetworkView {
        links,
        windows,
        lines,
    })
}

/// A markdown table.
pub fn markdown_table(t: &Table) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| {} |", t.header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(t.header.len()));
    for row in &t.rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md
}

/// An HTML table.
pub fn html_table(t: &Table, class: &str) -> String {
    let mut out = format!("<table class=\"{class}\"><tr>");
    for h in &t.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", escape(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// report.html's network section (nothing on loopback).
pub fn html_section(out: &mut String, r: &Report) {
    let Some(v) = view(r) else {
        return;
    };
    out.push_str("<h2 id=\"network\">Network</h2>\n");
    out.push_str(&html_table(&v.links, "network-links"));
    out.push_str(&html_table(&v.windows, "network-windows"));
    for l in &v.lines {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(l));
    }
}

/// report.md's network section (nothing on loopback).
pub fn markdown_section(r: &Report) -> String {
    let Some(v) = view(r) else {
        return String::new();
    };
    let mut md = String::from("## Network\n\n");
    md.push_str(&markdown_table(&v.links));
    md.push('\n');
    md.push_str(&markdown_table(&v.windows));
    md.push('\n');
    for l in &v.lines {
        let _ = writeln!(md, "{l}.  ");
    }
    md.push('\n');
    md
}

/// The terminal summary's network lines (none on loopback).
pub fn terminal_lines(r: &Report) -> Vec<String> {
    let Some(v) = view(r) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for row in &v.links.rows {
        out.push(format!(
            "network {}: {}; lost {}; limiter sent {} Mbit/s",
            row[0], row[1], row[2], row[4]
        ));
    }
    for row in &v.windows.rows {
        out.push(format!(
            "  {} phase {}: goodput {} Mbit/s, limiter sent {} Mbit/s, lost {}",
            row[0], row[1], row[5], row[4], row[6]
        ));
    }
    // RTT and the delay line; hosts and notes stay in the reports.
    out.extend(v.lines.iter().take(2).cloned());
    out
}
