//! `timeseries.csv`: the per-second series of every phase's measured
//! window, for plotting and for tools that want the raw curve.

use std::fmt::Write as _;

use crate::report::SecondSample;

/// CSV with a header: phase, pattern, t_s (from the window's start), span_s,
/// bytes_up, bytes_down, round_trips, up_bps, down_bps, latency_p50_us,
/// latency_p99_us (empty without round trips).
pub fn timeseries_csv<'a>(phases: impl Iterator<Item = (&'a str, &'a [SecondSample])>) -> String {
    let mut out =
        String::from("phase,pattern,t_s,span_s,bytes_up,bytes_down,round_trips,up_bps,down_bps,latency_p50_us,latency_p99_us\n");
    for (i, (pattern, samples)) in phases.enumerate() {
        for s in samples {
            let rate = |b: u64| {
                if s.span_s > 0.0 {
                    b as f64 / s.span_s
                } else {
                    0.0
                }
            };
            let us = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
            let _ = writeln!(
                out,
                "{i},{pattern},{:.3},{:.3},{},{},{},{:.0},{:.0},{},{}",
                s.t_s,
                s.span_s,
                s.bytes_up,
                s.bytes_down,
                s.round_trips,
                rate(s.bytes_up),
                rate(s.bytes_down),
                us(s.latency_p50_us),
                us(s.latency_p99_us)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_second_with_rates() {
        let s = |t_s, span_s, up| SecondSample {
            t_s,
            span_s,
            bytes_up: up,
            bytes_down: 0,
            round_trips: 0,
            latency_p50_us: None,
            latency_p99_us: None,
        };
        let bulk = [s(0.0, 1.0, 1000), s(1.0, 1.5, 3000)];
        let mut rr = s(0.0, 1.0, 64);
        rr.round_trips = 1;
        rr.latency_p50_us = Some(251.04);
        rr.latency_p99_us = Some(480.0);
        let csv = timeseries_csv([("bulk", &bulk[..]), ("rr", &[rr][..])].into_iter());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], "0,bulk,0.000,1.000,1000,0,0,1000,0,,");
        assert_eq!(lines[2], "0,bulk,1.000,1.500,3000,0,0,2000,0,,");
        assert_eq!(lines[3], "1,rr,0.000,1.000,64,0,1,64,0,251.0,480.0");
    }
}
