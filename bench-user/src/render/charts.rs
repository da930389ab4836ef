//! Charts as inline SVG strings, for report.html: no script and no outside
//! resource, so they show even with scripts off. Each point and bar has a
//! `<title>`, which browsers show on hover.

use std::fmt::Write as _;

use super::html::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 86.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 34.0;
/// Horizontal grid lines per chart.
const TICKS: usize = 4;

/// One line of a line chart.
pub struct Series {
    pub name: &'static str,
    pub colour: &'static str,
    /// (x, y), x ascending.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: &'static str, colour: &'static str, points: Vec<(f64, f64)>) -> Self {
        Series {
            name,
            colour,
            points,
        }
    }
}

/// One group of a bar chart: a label and one bar per series name.
pub struct Group {
    pub label: String,
    pub bars: Vec<f64>,
}

fn open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\">\
         <text x=\"{x}\" y=\"16\" text-anchor=\"middle\" class=\"chart-title\">{t}</text>",
        t = escape(title),
        x = WIDTH / 2.0
    );
}

fn legend(out: &mut String, names: &[(&str, &str)]) {
    let mut x = LEFT;
    for (name, colour) in names {
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" class=\"legend\">{n}</text>",
            y = HEIGHT - 12.0,
            tx = x + 14.0,
            ty = HEIGHT - 3.0,
            n = escape(name)
        );
        x += 24.0 + 7.0 * name.chars().count() as f64;
    }
}

/// Horizontal grid lines with labels, at the y values given.
fn grid(out: &mut String, ys: &[(f64, String)]) {
    for (py, label) in ys {
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\" class=\"tick\">{l}</text>",
            x2 = WIDTH - RIGHT,
            lx = LEFT - 4.0,
            ty = py + 4.0,
            l = escape(label)
        );
    }
}

/// A line chart starting at y = 0; `fmt_y` labels the axis and the points,
/// `x_unit` names the x axis.
pub fn line_chart(
    title: &str,
    x_unit: &str,
    series: &[Series],
    fmt_y: impl Fn(f64) -> String,
) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0_f64, f64::max).max(1.0);
    let y_max = all.map(|p| p.1).fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let px = |x: f64| LEFT + x / x_max * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let ys: Vec<(f64, String)> = (0..=TICKS)
        .map(|i| {
            let v = y_max * i as f64 / TICKS as f64;
            (py(v), fmt_y(v))
        })
        .collect();
    grid(&mut out, &ys);
    let _ = write!(
        out,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" class=\"tick\">{xm:.1} {u}</text>",
        x = WIDTH - RIGHT,
        y = TOP + plot_h + 14.0,
        xm = x_max,
        u = escape(x_unit)
    );
    for s in series {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            s.colour,
            path.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>{}: {} at {x:.1} {}</title></circle>",
                px(x),
                py(y),
                s.colour,
                escape(s.name),
                escape(&fmt_y(y)),
                escape(x_unit)
            );
        }
    }
    let names: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.colour)).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

/// Grouped bars on a log10 scale (latency percentiles span decades).
/// Values ≤ 0 are not drawn.
pub fn log_bar_chart(
    title: &str,
    names: &[(&str, &'static str)],
    groups: &[Group],
    fmt_y: impl Fn(f64) -> String,
) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let positive = groups
        .iter()
        .flat_map(|g| g.bars.iter())
        .filter(|v| **v > 0.0);
    let lo = positive.clone().fold(f64::INFINITY, |a, &b| a.min(b));
    let hi = positive.fold(0.0_f64, |a, &b| a.max(b));
    let (lo_exp, hi_exp) = if hi > 0.0 {
        (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        )
    } else {
        (0.0, 1.0)
    };
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let py = |v: f64| TOP + plot_h - (v.log10() - lo_exp) / (hi_exp - lo_exp) * plot_h;
    let ys: Vec<(f64, String)> = (lo_exp as i32..=hi_exp as i32)
        .map(|e| {
            let v = 10f64.powi(e);
            (py(v), fmt_y(v))
        })
        .collect();
    grid(&mut out, &ys);
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / names.len().max(1) as f64;
    for (gi, g) in groups.iter().enumerate() {
        let x0 = LEFT + gi as f64 * group_w + group_w * 0.1;
        for (bi, &v) in g.bars.iter().enumerate().filter(|(_, v)| **v > 0.0) {
            let (name, colour) = names.get(bi).copied().unwrap_or(("", "#888"));
            let top = py(v);
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                 <title>{} {}: {}</title></rect>",
                x0 + bi as f64 * bar_w,
                bar_w * 0.9,
                (TOP + plot_h - top).max(0.0),
                escape(&g.label),
                escape(name),
                escape(&fmt_y(v))
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"tick\">{}</text>",
            x0 + group_w * 0.4,
            TOP + plot_h + 14.0,
            escape(&g.label)
        );
    }
    legend(&mut out, names);
    out.push_str("</svg>");
    out
}
