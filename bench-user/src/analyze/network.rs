//! The checklist's network rules: each judges what the client–server link
//! did (`report.network`) against the link's own settings, the goodput
//! against the rate set, the loss seen against the loss set, which a fixed
//! threshold in profiles/checklist.toml cannot express; so they live here.
//! Each judges the endpoint that sends into a direction: the client the up
//! direction (client → server), the server the down one. A report without
//! a network section gets none of them.

use crate::report::{LinkReport, NetworkReport, Report, Role, RuleResult, Verdict};

/// Goodput below these shares of the rate set: warn, fail. Headers
/// (TCP/IP or UDP/IP/QUIC, Ethernet) take 4–8 % of a 1500-byte packet, so a
/// sender that fills the link delivers about 0.9 of it as payload.
pub const GOODPUT_WARN_BELOW: f64 = 0.80;
pub const GOODPUT_FAIL_BELOW: f64 = 0.50;
/// The delay line's p99 timing error above these shares of the delay set.
pub const DELAY_ERROR_WARN_ABOVE: f64 = 0.05;
pub const DELAY_ERROR_FAIL_ABOVE: f64 = 0.20;
/// Retransmitted segments beyond the packets the link dropped, as a share
/// of the packets the router saw: above these, warn, fail. Each drop
/// needs one repair; more are spurious.
pub const RETRANSMIT_EXCESS_WARN_ABOVE: f64 = 0.01;
pub const RETRANSMIT_EXCESS_FAIL_ABOVE: f64 = 0.05;
/// The loss rule fails when the setting is outside this interval of the
/// loss seen (the report's own is 95 %: outside it, the rule warns).
pub const LOSS_FAIL_CONFIDENCE: f64 = 0.999;

/// Protocols that carry their streams in encrypted QUIC packets.
const QUIC_PROTOCOLS: &[&str] = &["tuic", "hysteria1", "hysteria2"];

/// The network rules for every target of a report with a network section.
pub fn evaluate(report: &Report) -> Vec<RuleResult> {
    let Some(net) = report.network.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &report.targets {
        let side = Side::of(t.role, net);
        out.push(goodput(report, &side));
        out.push(loss(&side));
        out.push(retransmits(&report.run.protocol, &side));
        out.push(delay_line(net, &side));
    }
    out
}

/// One endpoint and the direction it sends into.
struct Side<'a> {
    role: Role,
    dir: &'static str,
    /// `client → server` or `server → client`.
    path: &'static str,
    link: &'a LinkReport,
}

impl Side<'_> {
    fn of(role: Role, net: &NetworkReport) -> Side<'_> {
        match role {
            Role::Client => Side {
                role,
                dir: "up",
                path: "client → server",
                link: &net.up,
            },
            Role::Server => Side {
                role,
                dir: "down",
                path: "server → client",
                link: &net.down,
            },
        }
    }

    fn result(&self, id: &str, title: &str, metric: &str, unit: &str) -> RuleResult {
        RuleResult {
            id: id.into(),
            area: "network".into(),
            title: title.into(),
            target: self.role,
            verdict: Verdict::NotEvaluated,
            metric: metric.into(),
            value: None,
            unit: unit.into(),
            evidence: String::new(),
            recommendation: String::new(),
        }
    }
}

/// Fail above `fail`, warn above `warn` (negate all three for "below").
fn beyond(value: f64, warn: f64, fail: f64) -> Verdict {
    if value > fail {
        Verdict::Fail
    } else if value > warn {
        Verdict::Warn
    } else {
        Verdict::Ok
    }
}

/// The verdict, and what to change unless it is ok.
fn judged(r: &mut RuleResult, verdict: Verdict, recommendation: &str) {
    r.verdict = verdict;
    if verdict != Verdict::Ok {
        r.recommendation = recommendation
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
    }
}

fn pct(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

fn goodput(report: &Report, s: &Side) -> RuleResult {
    let mut r = s.result(
        "network.goodput",
        "Payload delivered fills the link's rate",
        &format!("network.{}.goodput_share_of_rate", s.dir),
        "share",
    );
    let Some(rate) = s.link.settings.rate_mbit else {
        r.evidence = format!(
            "no rate limit on the {} direction (network.{}.rate_mbit): nothing to compare goodput with",
            s.dir, s.dir
        );
        return r;
    };
    // The main pass's bulk phases that sent this way.
    let sends = |d: &str| d == s.dir || d == "both";
    let bulk: Vec<usize> = report
        .workload
        .phases
        .iter()
        .enumerate()
        .filter(|(_, p)| p.pattern == "bulk" && p.direction.as_deref().is_some_and(sends))
        .map(|(i, _)| i)
        .collect();
    if bulk.is_empty() {
        r.evidence = format!(
            "no bulk phase sent {} ({}) in the main pass: the link was never filled that way",
            s.dir, s.path
        );
        return r;
    }
    let windows: Vec<_> = s
        .link
        .windows
        .iter()
        .filter(|w| w.pass == "main" && bulk.contains(&w.phase))
        .filter_map(|w| w.goodput_mbit_s.map(|g| (w, g)))
        .collect();
    let seconds: f64 = windows.iter().map(|(w, _)| w.measure.seconds).sum();
    if windows.is_empty() || seconds <= 0.0 {
        r.evidence = format!(
            "the goodput of the bulk windows (network.{}.windows[].goodput_mbit_s) is not in this report",
            s.dir
        );
        return r;
    }
    let mean = |f: &dyn Fn(&crate::report::LinkWindow, f64) -> f64| {
        windows
            .iter()
            .map(|(w, g)| f(w, *g) * w.measure.seconds)
            .sum::<f64>()
            / seconds
    };
    let good = mean(&|_, g| g);
    let share = good / rate;
    r.value = Some(share);
    let phases: Vec<String> = windows.iter().map(|(w, _)| w.phase.to_string()).collect();
    let mut evidence = format!(
        "goodput {good:.1} Mbit/s at the receiving end = {} of the {rate} Mbit/s set on {} (warn below {}, fail below {}); main pass, bulk phase(s) {}, {seconds:.1} s",
        pct(share),
        s.dir,
        pct(GOODPUT_WARN_BELOW),
        pct(GOODPUT_FAIL_BELOW),
        phases.join(", ")
    );
    if windows
        .iter()
        .all(|(w, _)| w.measure.limiter_mbit_s.is_some())
    {
        let carried = mean(&|w, _| w.measure.limiter_mbit_s.unwrap_or(0.0));
        evidence.push_str(&format!(
            "; the limiter sent {carried:.1} Mbit/s (link-layer bytes: headers and repairs included)"
        ));
    }
    evidence.push_str(&format!("; loss set {}%", s.link.settings.loss_percent));
    r.evidence = evidence;
    judged(
        &mut r,
        beyond(-share, -GOODPUT_WARN_BELOW, -GOODPUT_FAIL_BELOW),
        "The sender leaves the link partly unused or spends it on repairs. \
            Check its congestion controller (for TCP the kernel's net.ipv4.tcp_congestion_control: \
            cubic and Reno back off on every loss, BBR hardly; for QUIC the endpoint's own: \
            Brutal holds its set rate), its send and receive windows against the \
            bandwidth-delay product (rate × RTT), and whether the endpoint's CPU, not the link, \
            was the limit (its cpu share in this report).",
    );
    r
}

fn loss(s: &Side) -> RuleResult {
    let mut r = s.result(
        "network.loss-as-set",
        "The link dropped the share of packets it was set to",
        &format!("network.{}.run.loss", s.dir),
        "share",
    );
    let m = &s.link.run;
    let set = s.link.settings.loss_percent / 100.0;
    let Some(seen) = m.loss.as_ref() else {
        r.evidence = format!("no packet crossed the router {} ({})", s.dir, s.path);
        return r;
    };
    let rho = match (
        s.link.settings.loss_model.as_str(),
        s.link.settings.burst_packets,
    ) {
        ("bursty", Some(b)) if set > 0.0 => {
            crate::chain::network::delay_line::loss_correlation(set, b)
        }
        _ => 0.0,
    };
    let Some((low, high)) =
        super::binomial::clopper_pearson_correlated(m.lost, m.packets, rho, LOSS_FAIL_CONFIDENCE)
    else {
        r.evidence = format!("no interval for {} lost of {} packets", m.lost, m.packets);
        return r;
    };
    r.value = Some(seen.share);
    r.evidence = format!(
        "lost {} of {} packets {} ({}), 95% interval [{}, {}], 99.9% [{}, {}]; set {}% ({}); the limiter's full queue dropped {} more",
        m.lost,
        m.packets,
        s.dir,
        pct(seen.share),
        pct(seen.low),
        pct(seen.high),
        pct(low),
        pct(high),
        s.link.settings.loss_percent,
        s.link.settings.loss_model,
        m.queue_drops
    );
    let verdict = if set < low || set > high {
        Verdict::Fail
    } else if set < seen.low || set > seen.high {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    judged(
        &mut r,
        verdict,
        "The link did not drop what was set, so no throughput or latency \
            figure of this run answers the question the setting asked. Check that nothing else \
            dropped or added packets on the router (network.notes), and run again; a warn alone \
            happens by chance in one run of 20.",
    );
    r
}

fn retransmits(protocol: &str, s: &Side) -> RuleResult {
    let mut r = s.result(
        "network.retransmits",
        "The sender repairs what the link lost, and no more",
        &format!("network.{}.run.sender_tcp", s.dir),
        "share",
    );
    if QUIC_PROTOCOLS.contains(&protocol) {
        r.evidence = format!(
            "not counted: {protocol} repairs lost packets inside encrypted QUIC packets; the router counts packets, not repairs, and the hosts' TCP counters see only the SOCKS5 and sink sides, so no retransmitted share is given (the limiter's carried rate against the goodput bounds headers and repairs together)"
        );
        return r;
    }
    let m = &s.link.run;
    let Some(tcp) = m.sender_tcp.as_ref() else {
        r.evidence = "the sending host's TCP counters are not in this report".into();
        return r;
    };
    if m.packets == 0 {
        r.evidence = format!("no packet crossed the router {} ({})", s.dir, s.path);
        return r;
    }
    let dropped = m.lost + m.queue_drops;
    let excess = tcp.retransmitted as f64 - dropped as f64;
    let value = excess / m.packets as f64;
    r.value = Some(value);
    r.evidence = format!(
        "the {} host retransmitted {} TCP segments ({} of the {} packets the router saw {}); the link dropped {} ({} by the loss set, {} at the limiter's full queue): {:+.0} repairs beyond the drops = {} of the packets (warn above {}, fail above {}); whole run",
        s.role.as_str(),
        tcp.retransmitted,
        pct(tcp.retransmitted as f64 / m.packets as f64),
        m.packets,
        s.dir,
        dropped,
        m.lost,
        m.queue_drops,
        excess,
        pct(value),
        pct(RETRANSMIT_EXCESS_WARN_ABOVE),
        pct(RETRANSMIT_EXCESS_FAIL_ABOVE)
    );
    judged(
        &mut r,
        beyond(
            value,
            RETRANSMIT_EXCESS_WARN_ABOVE,
            RETRANSMIT_EXCESS_FAIL_ABOVE,
        ),
        "The sender retransmitted segments the link did not drop: \
            spurious repairs that spend the link twice. Look for a retransmission timeout \
            shorter than the delay's spread (jitter), losses on the generator's side of the \
            host, or a congestion controller that retransmits whole windows after one loss \
            (no SACK or RACK).",
    );
    r
}

fn delay_line(net: &NetworkReport, s: &Side) -> RuleResult {
    let mut r = s.result(
        "network.delay-line",
        "The delay line held the delay it was set to",
        "network.delay_line.timing_error_p99_us",
        "share",
    );
    let delay_ms = s.link.settings.delay_ms;
    let Some(dl) = net.delay_line.as_ref() else {
        r.evidence = "no delay line ran (no delay, jitter or bursty loss was set)".into();
        return r;
    };
    if delay_ms <= 0.0 {
        r.evidence = format!("no delay set on {} (network.{}.delay_ms)", s.dir, s.dir);
        return r;
    }
    let share = dl.timing_error_p99_us / (delay_ms * 1e3);
    r.value = Some(share);
    r.evidence = format!(
        "p99 timing error {:.0} µs = {} of the {delay_ms} ms delay set on {} (warn above {}, fail above {}); max {:.0} µs over {} packets; the delay line took {:.1}% of a core; RTT measured {} for {} ms set",
        dl.timing_error_p99_us,
        pct(share),
        s.dir,
        pct(DELAY_ERROR_WARN_ABOVE),
        pct(DELAY_ERROR_FAIL_ABOVE),
        dl.timing_error_max_us,
        dl.packets,
        dl.cpu_share * 100.0,
        net.rtt
            .median_ms
            .map_or("nothing".to_string(), |m| format!("{m:.1} ms")),
        net.rtt.set_ms
    );
    judged(
        &mut r,
        beyond(share, DELAY_ERROR_WARN_ABOVE, DELAY_ERROR_FAIL_ABOVE),
        "The machine was too busy to release packets on time: the run had \
            more delay than set (network.rtt says how much). Free a core for the delay line \
            (other work, the per-call pass's probes), or lower the rate.",
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{
        DelayLineReport, LinkMeasure, LinkSettings, LinkWindow, LossInterval, RttReport,
    };

    /// The real tcp run the render tests use (loopback: client and server,
    /// bulk up in phase 0, rr in phase 1), given a link.
    fn fixture(net: NetworkReport) -> Report {
        let mut r: Report =
            serde_json::from_str(include_str!("../../tests/data/run-tcp/report.json"))
                .expect("fixture report");
        r.network = Some(net);
        r
    }

    fn measure(packets: u64, lost: u64, limiter: Option<f64>) -> LinkMeasure {
        LinkMeasure {
            seconds: 5.0,
            packets,
            lost,
            loss: super::super::binomial::clopper_pearson(lost, packets, 0.95).map(
                |(low, high)| LossInterval {
                    share: lost as f64 / packets as f64,
                    low,
                    high,
                    method: "clopper-pearson 95%".into(),
                },
            ),
            arrived_mbit_s: 20.0,
            limiter_mbit_s: limiter,
            queue_drops: 0,
            sender_tcp: None,
        }
    }

    /// A link of `rate` Mbit/s and `loss` % each way whose bulk window
    /// (main pass, phase 0) delivered `goodput` Mbit/s, `lost` of 10 000
    /// packets dropped over the run.
    fn link(rate: Option<f64>, loss: f64, goodput: Option<f64>, lost: u64) -> LinkReport {
        LinkReport {
            settings: LinkSettings {
                delay_ms: 25.0,
                jitter_ms: 0.0,
                rate_mbit: rate,
                loss_percent: loss,
                loss_model: "random".into(),
                burst_packets: None,
                queue_bytes: rate.map(|r| (r * 1e6 / 8.0 * 0.1) as u64),
            },
            run: measure(10_000, lost, rate),
            windows: vec![LinkWindow {
                pass: "main".into(),
                phase: 0,
                measure: measure(5_000, lost / 2, rate),
                goodput_mbit_s: goodput,
            }],
        }
    }

    fn network(up: LinkReport, down: LinkReport, p99_us: f64) -> NetworkReport {
        NetworkReport {
            mode: "namespaces".into(),
            hosts: Vec::new(),
            up,
            down,
            rtt: RttReport {
                set_ms: 50.0,
                attempts: 21,
                samples: 21,
                median_ms: Some(50.6),
                min_ms: Some(50.3),
                max_ms: Some(52.0),
                method: "TCP handshake".into(),
            },
            delay_line: Some(DelayLineReport {
                cpu_s: 1.0,
                wall_s: 10.0,
                cpu_share: 0.1,
                packets: 20_000,
                ns_per_packet: Some(50_000.0),
                timing_error_p50_us: 80.0,
                timing_error_p99_us: p99_us,
                timing_error_max_us: p99_us * 2.0,
                write_errors: 0,
            }),
            notes: Vec::new(),
        }
    }

    fn rule(r: &Report, id: &str, role: Role) -> RuleResult {
        evaluate(r)
            .into_iter()
            .find(|x| x.id == id && x.target == role)
            .expect("rule result")
    }

    #[test]
    fn loopback_reports_get_no_network_rules() {
        let mut r = fixture(network(
            link(None, 0.0, None, 0),
            link(None, 0.0, None, 0),
            100.0,
        ));
        r.network = None;
        assert!(evaluate(&r).is_empty());
    }

    #[test]
    fn goodput_against_the_rate_set() {
        let down = link(None, 0.0, None, 0);
        let up = |g: f64| {
            fixture(network(
                link(Some(20.0), 1.0, Some(g), 100),
                down.clone(),
                100.0,
            ))
        };
        let ok = rule(&up(18.6), "network.goodput", Role::Client);
        assert_eq!(ok.verdict, Verdict::Ok);
        assert!((ok.value.expect("value") - 0.93).abs() < 1e-9);
        assert!(
            ok.evidence.contains("goodput 18.6 Mbit/s"),
            "{}",
            ok.evidence
        );
        assert!(
            ok.evidence.contains("the limiter sent 20.0 Mbit/s"),
            "{}",
            ok.evidence
        );
        assert!(ok.recommendation.is_empty());
        let warn = rule(&up(14.0), "network.goodput", Role::Client);
        assert_eq!(warn.verdict, Verdict::Warn);
        assert!(warn.recommendation.contains("congestion controller"));
        assert_eq!(
            rule(&up(9.0), "network.goodput", Role::Client).verdict,
            Verdict::Fail
        );
        // The server sends down, which has no rate: nothing to compare with.
        let server = rule(&up(18.6), "network.goodput", Role::Server);
        assert_eq!(server.verdict, Verdict::NotEvaluated);
        assert!(server
            .evidence
            .contains("no rate limit on the down direction"));
    }

    #[test]
    fn goodput_needs_a_bulk_phase_that_sent_that_way() {
        let mut r = fixture(network(
            link(Some(20.0), 0.0, Some(19.0), 0),
            link(Some(20.0), 0.0, Some(0.1), 0),
            100.0,
        ));
        // A bulk phase that sent up only never filled the server's
        // direction, however low its goodput.
        r.workload.phases[0].direction = Some("up".into());
        let server = rule(&r, "network.goodput", Role::Server);
        assert_eq!(server.verdict, Verdict::NotEvaluated);
        assert!(
            server.evidence.contains("no bulk phase sent down"),
            "{}",
            server.evidence
        );
        r.workload.phases[0].direction = Some("both".into());
        assert_eq!(
            rule(&r, "network.goodput", Role::Server).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn loss_seen_against_the_loss_set() {
        let r = |lost: u64| {
            fixture(network(
                link(None, 2.0, None, lost),
                link(None, 0.0, None, 0),
                100.0,
            ))
        };
        // 10 000 packets at 2 %: 200 expected; the 95 % interval of 200 is
        // about [1.74 %, 2.29 %], the 99.9 % one [1.63 %, 2.43 %].
        let ok = rule(&r(200), "network.loss-as-set", Role::Client);
        assert_eq!(ok.verdict, Verdict::Ok, "{}", ok.evidence);
        assert_eq!(ok.value, Some(0.02));
        assert_eq!(
            rule(&r(240), "network.loss-as-set", Role::Client).verdict,
            Verdict::Warn
        );
        let fail = rule(&r(100), "network.loss-as-set", Role::Client);
        assert_eq!(fail.verdict, Verdict::Fail, "{}", fail.evidence);
        assert!(fail.recommendation.contains("did not drop what was set"));
        // Nothing set, nothing lost.
        assert_eq!(
            rule(&r(0), "network.loss-as-set", Role::Server).verdict,
            Verdict::Ok
        );
    }

    #[test]
    fn bursty_loss_is_judged_over_fewer_independent_packets() {
        // 300 of 10 000 lost against 2 % set: far outside the interval of
        // independent drops, inside that of bursts of 8 (rho about 0.87).
        let mut up = link(None, 2.0, None, 300);
        assert_eq!(
            rule(
                &fixture(network(up.clone(), link(None, 0.0, None, 0), 100.0)),
                "network.loss-as-set",
                Role::Client
            )
            .verdict,
            Verdict::Fail
        );
        up.settings.loss_model = "bursty".into();
        up.settings.burst_packets = Some(8.0);
        let r = rule(
            &fixture(network(up, link(None, 0.0, None, 0), 100.0)),
            "network.loss-as-set",
            Role::Client,
        );
        assert_ne!(r.verdict, Verdict::Fail, "{}", r.evidence);
    }

    #[test]
    fn retransmits_of_encrypted_quic_are_said_to_be_uncountable() {
        let mut r = fixture(network(
            link(None, 1.0, None, 100),
            link(None, 1.0, None, 100),
            100.0,
        ));
        r.run.protocol = "hysteria2".into();
        let quic = rule(&r, "network.retransmits", Role::Client);
        assert_eq!(quic.verdict, Verdict::NotEvaluated);
        assert_eq!(quic.value, None);
        assert!(
            quic.evidence.contains("inside encrypted QUIC packets"),
            "{}",
            quic.evidence
        );
        // Without the host's counters, TCP is not guessed either.
        r.run.protocol = "tls".into();
        let tcp = rule(&r, "network.retransmits", Role::Server);
        assert_eq!(tcp.verdict, Verdict::NotEvaluated);
        assert!(
            tcp.evidence.contains("TCP counters are not in this report"),
            "{}",
            tcp.evidence
        );
    }

    #[test]
    fn tcp_repairs_beyond_the_drops_are_spurious() {
        // 10 000 packets up, 100 lost: 110 repairs are the drops and a few
        // more; 300 are 2 % of the packets beyond them; 700 are 6 %.
        let r = |retransmitted: u64| {
            let mut up = link(None, 1.0, None, 100);
            up.run.sender_tcp = Some(crate::report::TcpSegments {
                sent: 12_000,
                retransmitted,
            });
            fixture(network(up, link(None, 0.0, None, 0), 100.0))
        };
        let ok = rule(&r(110), "network.retransmits", Role::Client);
        assert_eq!(ok.verdict, Verdict::Ok, "{}", ok.evidence);
        assert!((ok.value.expect("value") - 0.001).abs() < 1e-12);
        assert!(
            ok.evidence.contains("retransmitted 110 TCP segments"),
            "{}",
            ok.evidence
        );
        let warn = rule(&r(300), "network.retransmits", Role::Client);
        assert_eq!(warn.verdict, Verdict::Warn);
        assert!(warn.recommendation.contains("spurious"));
        assert_eq!(
            rule(&r(700), "network.retransmits", Role::Client).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn the_delay_lines_timing_error_against_the_delay_set() {
        let r = |p99: f64| {
            fixture(network(
                link(None, 0.0, None, 0),
                link(None, 0.0, None, 0),
                p99,
            ))
        };
        // 25 ms set each way.
        let ok = rule(&r(1000.0), "network.delay-line", Role::Client);
        assert_eq!(ok.verdict, Verdict::Ok);
        assert!((ok.value.expect("value") - 0.04).abs() < 1e-12);
        assert_eq!(
            rule(&r(2000.0), "network.delay-line", Role::Server).verdict,
            Verdict::Warn
        );
        assert_eq!(
            rule(&r(6000.0), "network.delay-line", Role::Client).verdict,
            Verdict::Fail
        );
        let mut none = r(1000.0);
        if let Some(n) = none.network.as_mut() {
            n.delay_line = None;
        }
        let ne = rule(&none, "network.delay-line", Role::Client);
        assert_eq!(ne.verdict, Verdict::NotEvaluated);
        assert!(ne.evidence.contains("no delay line ran"));
    }
}
