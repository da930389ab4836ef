//! `report.html`: the whole report in one self-contained page (no network:
//! styles, charts and flame graphs are all inline).
//!
//! Each flame graph is inferno's own SVG, script included, inside its own
//! `<iframe srcdoc>`: every graph runs its click-to-zoom and search in its
//! own document, so their ids and globals do not clash. The page's script
//! only checks that everything drew, and records the result in
//! `body[data-rendered]` and `html[data-errors]` (what the tests read).

use std::{collections::BTreeSet, fmt::Write as _};

use super::{
    bytes,
    charts::{line_chart, log_bar_chart, Group, Series},
    duration_ns, integrity, percentile_bar, percentiles_text, phase_label, share_text,
};
use crate::{
    analyze::metrics,
    fold::{self, FoldOptions},
    report::{FoldedGraph, Metric, Report, Target},
};

/// Text safe in HTML content and in quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1240px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 90%; word-break: break-all; }
.muted { color: #777; }
.warning { background: #fff4d6; border-left: 4px solid #e0a000; padding: 4px 8px; margin: 4px 0; }
.v-ok { background: #dff3df; } .v-warn { background: #fff0c2; }
.v-fail { background: #f8d0d0; } .v-not_evaluated { background: #eee; color: #666; }
.status-ok { color: #1a7f1a; } .status-bad { color: #b00; }
svg.chart { border: 1px solid #ddd; margin: 4px 8px 4px 0; background: #fff; }
svg.chart text { font-size: 11px; fill: #333; } svg.chart .chart-title { font-size: 13px; font-weight: 600; }
svg.chart .grid { stroke: #e4e4e4; }
iframe.flame { width: 100%; border: 1px solid #ddd; }
";

/// Records errors (script and failed loads) before anything else runs.
const ERROR_HOOK: &str = "<script>
window.ppErrors = [];
function ppError(message) {
  window.ppErrors.push(String(message));
  document.documentElement.setAttribute('data-errors', window.ppErrors.join(' | '));
}
window.addEventListener('error', function (e) { ppError(e.message || ('failed to load ' + (e.target && (e.target.src || e.target.href)))); }, true);
</script>";

/// Runs once every iframe has loaded (the window's load event waits for
/// them): checks the charts and that each flame graph's own script ran.
const CHECK: &str = "<script>
window.addEventListener('load', function () {
  try {
    var want = Number(document.body.getAttribute('data-charts'));
    var charts = document.querySelectorAll('svg.chart').length;
    if (charts !== want) ppError('expected ' + want + ' charts, found ' + charts);
    document.querySelectorAll('iframe.flame').forEach(function (f) {
      try {
        var d = f.contentDocument;
        if (!d || !d.querySelector('svg')) { ppError(f.id + ': no SVG inside'); return; }
        f.style.height = (d.documentElement.scrollHeight + 8) + 'px';
        if (f.getAttribute('data-empty') === 'yes') return;
        var g = d.getElementById('frames');
        var n = g ? g.querySelectorAll('g').length : 0;
        f.setAttribute('data-frames', String(n));
        if (n === 0) ppError(f.id + ': no frames drawn');
        if (typeof f.contentWindow.init !== 'function' || !f.contentWindow.searchbtn) ppError(f.id + ': flame graph script did not run');
        var t = g && g.querySelector('g > title');
        f.setAttribute('data-first-frame', t ? t.textContent : '');
      } catch (e) { ppError(f.id + ': ' + e); }
    });
  } catch (e) { ppError(e); }
  document.body.setAttribute('data-rendered', window.ppErrors.length ? 'error' : 'ok');
});
</script>";

/// The page. Fails only when a flame graph cannot be drawn.
pub fn html(r: &Report, graphs: &[FoldedGraph]) -> Result<String, String> {
    let mut body = String::new();
    let mut charts = 0;
    summary(&mut body, r);
    workload(&mut body, r, &mut charts);
    super::network::html_section(&mut body, r);
    super::stress::stress_section(&mut body, r);
    super::stress::resources_section(&mut body, r, &mut charts);
    costs(&mut body, r);
    checklist(&mut body, r);
    metrics_table(&mut body, r);
    calibration(&mut body, r);
    flame_graphs(&mut body, graphs)?;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>protoprof: {} ({})</title><style>{STYLE}</style>{ERROR_HOOK}</head>\n\
         <body data-rendered=\"pending\" data-charts=\"{charts}\">\n{body}{CHECK}\n</body></html>\n",
        escape(&r.run.profile),
        escape(&r.run.protocol)
    );
    Ok(page)
}

fn summary(out: &mut String, r: &Report) {
    let ok = r.run.status == "ok";
    let _ = write!(
        out,
        "<h1>protoprof: {} ({})</h1>\n<p>{}</p>\n\
         <p>Run <code>{}</code> · started {} · {:.1} s measured of {:.1} s · kernel {} · {} CPUs ({}) · \
         protoprof {} · status <b class=\"{}\">{}</b> · integrity <b class=\"{}\">{}</b></p>\n",
        escape(&r.run.profile),
        escape(&r.run.protocol),
        escape(&r.run.description),
        escape(&r.run.id),
        escape(&r.run.started_at),
        r.run.measured_s,
        r.run.duration_s,
        escape(&r.run.kernel),
        r.run.cpus,
        escape(&r.run.machine.cpu_model),
        escape(&r.run.tool_version),
        if ok { "status-ok" } else { "status-bad" },
        escape(&r.run.status),
        if integrity(r.workload.integrity) == "ok" {
            "status-ok"
        } else {
            "status-bad"
        },
        integrity(r.workload.integrity),
    );
    for w in &r.warnings {
        let _ = writeln!(out, "<div class=\"warning\">{}</div>", escape(w));
    }
    let mut names: BTreeSet<&str> = r.outputs.values().map(String::as_str).collect();
    names.extend(["report.json", "profile.pb.gz"]);
    let files: Vec<String> = names
        .iter()
        .map(|f| format!("<a href=\"{0}\">{0}</a>", escape(f)))
        .collect();
    let _ = writeln!(
        out,
        "<p class=\"muted\">Other files of this run: {}</p>",
        files.join(" · ")
    );
}

fn workload(out: &mut String, r: &Report, charts: &mut usize) {
    let _ = writeln!(
        out,
        "<h2 id=\"workload\">Workload</h2>\n<p>{} up, {} down, BLAKE3-checked end to end.</p>\n\
         <table><tr><th>phase</th><th>conns</th><th>measured</th><th>up /s (median)</th>\
         <th>down /s (median)</th><th>round trips</th><th>latency [95 % bounds], max</th>\
         <th>setup [95 % bounds]</th><th>integrity</th></tr>",
        bytes(r.workload.bytes_up as f64),
        bytes(r.workload.bytes_down as f64)
    );
    for (i, p) in r.workload.phases.iter().enumerate() {
        let lat = p
            .latency_us
            .as_ref()
            .map(|l| {
                format!(
                    "{} · max {} (n={})",
                    percentiles_text(l, &["p50", "p90", "p99", "p999"]),
                    duration_ns(l.max * 1e3),
                    l.count
                )
            })
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "<tr><td>{i} {}</td><td class=\"n\">{}</td><td class=\"n\">{:.1} s</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&phase_label(p)),
            p.connections,
            p.measured_s,
            bytes(p.throughput.up_bps_median),
            bytes(p.throughput.down_bps_median),
            p.round_trips,
            escape(&lat),
            escape(&format!(
                "{} (n={})",
                percentiles_text(&p.setup_us, &["p50", "p99"]),
                p.setup_us.count
            )),
            integrity(p.integrity.status)
        );
    }
    out.push_str("</table>\n");
    if let Some(s) = &r.workload.setup {
        let _ = writeln!(
            out,
            "<p>Connection set-up phase: {}; integrity {}.</p>",
            escape(&super::setup_line(s)),
            integrity(s.integrity.status)
        );
    }
    for w in super::noisy_windows(r) {
        let _ = writeln!(out, "<p><b>Disturbed window:</b> {}</p>", escape(&w));
    }
    out.push_str("<h3>Throughput over time</h3>\n<div>");
    for (i, p) in r.workload.phases.iter().enumerate() {
        // Each sample is plotted at the middle of its interval, as a rate.
        let rate = |f: fn(&crate::report::SecondSample) -> u64| -> Vec<(f64, f64)> {
            p.timeseries
                .iter()
                .filter(|s| s.span_s > 0.0)
                .map(|s| (s.t_s + s.span_s / 2.0, f(s) as f64 / s.span_s))
                .collect()
        };
        let mut draw = |what: &str, series: Vec<Series>, fmt: &dyn Fn(f64) -> String| {
            let title = format!("phase {i} {}: {what} per second", p.pattern);
            out.push_str(&line_chart(&title, "s", &series, fmt));
            *charts += 1;
        };
        draw(
            "bytes",
            vec![
                Series::new("up", "#1f77b4", rate(|s| s.bytes_up)),
                Series::new("down", "#ff7f0e", rate(|s| s.bytes_down)),
            ],
            &|v| format!("{}/s", bytes(v)),
        );
        if p.round_trips > 0 {
            draw(
                "round trips",
                vec![Series::new(
                    "round trips",
                    "#2ca02c",
                    rate(|s| s.round_trips),
                )],
                &|v| format!("{v:.0}/s"),
            );
            let latency = |f: fn(&crate::report::SecondSample) -> Option<f64>| -> Vec<(f64, f64)> {
                p.timeseries
                    .iter()
                    .filter_map(|s| f(s).map(|v| (s.t_s + s.span_s / 2.0, v)))
                    .collect()
            };
            let p50 = latency(|s| s.latency_p50_us);
            if !p50.is_empty() {
                draw(
                    "round-trip latency",
                    vec![
                        Series::new("p50", "#4c78a8", p50),
                        Series::new("p99", "#e45756", latency(|s| s.latency_p99_us)),
                    ],
                    &|us| duration_ns(us * 1e3),
                );
            }
        }
    }
    out.push_str("</div>\n<h3>Latency per phase</h3>\n");
    let groups: Vec<Group> = r
        .workload
        .phases
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.latency_us.as_ref().map(|l| Group {
                label: format!("phase {i} {}", p.pattern),
                bars: ["p50", "p90", "p99", "p999"]
                    .map(|q| percentile_bar(l, q))
                    .to_vec(),
            })
        })
        .collect();
    if groups.is_empty() {
        out.push_str("<p class=\"muted\">No round-trip phase: latency not measured.</p>\n");
    } else {
        out.push_str(
            "<p class=\"muted\">Round-trip latency percentiles over each phase's whole measured window \
             (log scale); the curves above give the median and 99th percentile of each second.</p>\n",
        );
        out.push_str(&log_bar_chart(
            "round-trip latency percentiles",
            &[
                ("p50", "#4c78a8"),
                ("p90", "#f58518"),
                ("p99", "#e45756"),
                ("p99.9", "#72b7b2"),
            ],
            &groups,
            |us| duration_ns(us * 1e3),
        ));
        *charts += 1;
    }
}

fn costs(out: &mut String, r: &Report) {
    out.push_str("<h2 id=\"costs\">Where the CPU went</h2>\n");
    for t in &r.targets {
        let _ = writeln!(
            out,
            "<h3>{} endpoint (pid {})</h3>\n<p><code>{}</code>{}</p>",
            escape(t.role.as_str()),
            t.pid,
            escape(&t.exe),
            t.peak_rss_bytes
                .map(|b| format!(" · peak RSS {}", bytes(b as f64)))
                .unwrap_or_default()
        );
        match &t.costs {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "<p>{} CPU samples, {} of CPU ({}), {} moved.</p>\n\
                     <table><tr><th>category</th><th>samples</th><th>share [95 %]</th><th>CPU</th><th>CPU ns/byte</th></tr>",
                    c.samples,
                    duration_ns(c.cpu_ns),
                    escape(&c.cpu_ns_source),
                    bytes(c.bytes as f64)
                );
                for cat in &c.categories {
                    let _ = writeln!(
                        out,
                        "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                        escape(&cat.category),
                        cat.samples,
                        escape(&share_text(cat, c.samples)),
                        duration_ns(cat.cpu_ns),
                        cat.ns_per_byte
                            .map(|v| format!("{v:.3}"))
                            .unwrap_or_else(|| "–".into())
                    );
                }
                out.push_str("</table>\n");
                if !c.unclassified.is_empty() {
                    let names: Vec<String> = c
                        .unclassified
                        .iter()
                        .take(10)
                        .map(|w| {
                            format!("<code>{}</code> {:.1}%", escape(&w.name), w.share * 100.0)
                        })
                        .collect();
                    let _ = writeln!(
                        out,
                        "<p class=\"muted\">Unclassified (\"other\"): {}</p>",
                        names.join(", ")
                    );
                }
            }
            None => out.push_str("<p class=\"muted\">Cost attribution: not measured.</p>\n"),
        }
        top_functions(out, t);
    }
}

fn top_functions(out: &mut String, t: &Target) {
    if t.cpu.top_functions.is_empty() {
        out.push_str("<p class=\"muted\">Top functions: no CPU samples.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<table><tr><th>function (by self CPU, {} samples)</th><th>self</th><th>share</th><th>total</th></tr>",
        t.cpu.samples
    );
    for f in t.cpu.top_functions.iter().take(15) {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{}</td></tr>",
            escape(&f.name),
            f.self_samples,
            f.self_share * 100.0,
            f.total_samples
        );
    }
    out.push_str("</table>\n");
}

/// A section's heading; when `empty`, also the line saying why there is
/// nothing, and false so the caller stops there.
fn section(out: &mut String, id: &str, title: &str, empty: bool, why: &str) -> bool {
    let _ = writeln!(out, "<h2 id=\"{id}\">{title}</h2>");
    if empty {
        let _ = writeln!(out, "<p class=\"muted\">{title}: {why}.</p>");
    }
    !empty
}

fn checklist(out: &mut String, r: &Report) {
    if !section(
        out,
        "checklist",
        "Checklist",
        r.checklist.is_empty(),
        "not evaluated",
    ) {
        return;
    }
    out.push_str(
        "<table class=\"checklist\"><tr><th>rule</th><th>target</th><th>verdict</th><th>value</th>\
         <th>evidence</th><th>recommendation</th></tr>\n",
    );
    for c in &r.checklist {
        let verdict = c.verdict.as_str();
        let _ = writeln!(
            out,
            "<tr class=\"rule v-{}\" data-rule=\"{}\"><td><b>{}</b> {}<br><span class=\"muted\">{}</span></td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            verdict.replace(' ', "_"),
            escape(&c.id),
            escape(&c.id),
            escape(&c.title),
            escape(&c.area),
            escape(c.target.as_str()),
            verdict,
            c.value
                .map(|v| format!("{} {}", number(v), escape(&c.unit)))
                .unwrap_or_else(|| "–".into()),
            escape(&c.evidence),
            escape(&c.recommendation)
        );
    }
    out.push_str("</table>\n");
}

fn metrics_table(out: &mut String, r: &Report) {
    let names: BTreeSet<&String> = r.targets.iter().flat_map(|t| t.metrics.keys()).collect();
    if !section(out, "metrics", "Metrics", names.is_empty(), "not measured") {
        return;
    }
    out.push_str("<table><tr><th>metric</th><th>unit</th>");
    for t in &r.targets {
        let _ = write!(out, "<th>{}</th>", escape(t.role.as_str()));
    }
    out.push_str("</tr>\n");
    for name in names {
        let def = metrics::lookup(name);
        let _ = write!(
            out,
            "<tr><td title=\"{}\">{}</td><td>{}</td>",
            escape(def.map(|d| d.doc).unwrap_or("")),
            escape(name),
            escape(def.map(|d| d.unit).unwrap_or(""))
        );
        for t in &r.targets {
            let cell = match t.metrics.get(name) {
                Some(Metric::Value(v)) => format!("<td class=\"n\">{}</td>", number(*v)),
                Some(Metric::Unavailable(why)) => {
                    format!("<td class=\"muted\">unavailable: {}</td>", escape(why))
                }
                None => "<td class=\"muted\">–</td>".into(),
            };
            out.push_str(&cell);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn calibration(out: &mut String, r: &Report) {
    if !section(
        out,
        "calibration",
        "Cipher calibration",
        r.calibration.is_empty(),
        "not measured",
    ) {
        return;
    }
    out.push_str(
        "<table><tr><th>primitive</th><th>implementation</th><th>record</th><th>ns/byte</th></tr>\n",
    );
    for c in &r.calibration {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.3}</td></tr>",
            escape(&c.primitive),
            escape(&c.implementation),
            bytes(c.record_bytes as f64),
            c.ns_per_byte
        );
    }
    out.push_str("</table>\n");
}

fn flame_graphs(out: &mut String, graphs: &[FoldedGraph]) -> Result<(), String> {
    if !section(
        out,
        "flame-graphs",
        "Flame graphs",
        graphs.is_empty(),
        "no stacks recorded",
    ) {
        return Ok(());
    }
    out.push_str(
        "<p class=\"muted\">Click a frame to zoom, Ctrl-F or \"Search\" to highlight; \
         the root's children are the endpoints (client, server), then their threads.</p>\n",
    );
    for g in graphs {
        let (doc, height) = flame_document(g)?;
        let _ = writeln!(
            out,
            "<h3>{} <span class=\"muted\">({})</span></h3>\n\
             <iframe class=\"flame\" id=\"flame-{}\" title=\"{}\" data-empty=\"{}\" height=\"{height}\" srcdoc=\"{}\"></iframe>",
            escape(&g.title),
            escape(&g.unit),
            escape(&g.name),
            escape(&g.title),
            if g.stacks.is_empty() { "yes" } else { "no" },
            escape(&doc)
        );
    }
    Ok(())
}

/// One graph's SVG as an HTML document for `srcdoc`, and its height.
fn flame_document(g: &FoldedGraph) -> Result<(String, u32), String> {
    let mut svg = Vec::new();
    fold::svg(
        &g.stacks,
        &FoldOptions {
            title: g.title.clone(),
            count_name: g.unit.clone(),
        },
        &mut svg,
    )
    .map_err(|e| format!("flame graph {}: {e}", g.name))?;
    let svg = String::from_utf8_lossy(&svg);
    // The XML prolog and doctype mean nothing in an HTML document.
    let svg = svg.find("<svg").map(|i| &svg[i..]).unwrap_or(&svg);
    let height = svg
        .split_once(" height=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|h| h.parse::<u32>().ok())
        .unwrap_or(600);
    Ok((
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
             <style>html,body{{margin:0}}</style></head><body>{svg}</body></html>"
        ),
        height + 8,
    ))
}

/// A number as a person reads it: few digits, no exponent for usual sizes.
fn number(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e6) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}
