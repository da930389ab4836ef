//! Connection metrics: set-up time, upstream connections per stream,
//! keep-alive and no-delay shares.

use std::collections::BTreeMap;

use super::{ratio, un, Evidence, MetricInputs};
use crate::report::{LatencySummary, Metric, MetricEvidence, Target};

/// `setup_p50_us` and `setup_p99_us`.
fn setup(inp: &MetricInputs, m: &mut BTreeMap<String, Metric>, ev: &mut Evidence) {
    // Set-up: from the set-up phase when the run had one (its hundreds of
    // connections bound p50 and p99), else from the traffic phases' few.
    if let Some(s) = inp.workload.setup.as_ref().filter(|s| s.setup_us.count > 0) {
        m.insert("setup_p50_us".into(), super::percentile(&s.setup_us, "p50"));
        m.insert("setup_p99_us".into(), super::percentile(&s.setup_us, "p99"));
        connections(ev, s.setup_us.count);
    } else {
        phase_setups(inp, m, ev);
    }
}

/// The connections behind both set-up percentiles.
fn connections(ev: &mut Evidence, n: u64) {
    for name in ["setup_p50_us", "setup_p99_us"] {
        ev.insert(
            name.into(),
            MetricEvidence {
                samples: n,
                interval: None,
            },
        );
    }
}

/// Set-up percentiles from the traffic phases' connections.
fn phase_setups(inp: &MetricInputs, m: &mut BTreeMap<String, Metric>, ev: &mut Evidence) {
    let setups: Vec<_> = inp
        .workload
        .phases
        .iter()
        .map(|p| &p.setup_us)
        .filter(|s| s.count > 0)
        .collect();
    if setups.is_empty() {
        m.insert("setup_p50_us".into(), un("no connection was set up"));
        m.insert("setup_p99_us".into(), un("no connection was set up"));
    } else {
        // Phases keep percentiles, not samples: the p50 is their
        // connection-weighted mean, the p99 the worst phase's (an upper
        // bound), and either only when every phase has samples enough.
        let n: u64 = setups.iter().map(|s| s.count).sum();
        connections(ev, n);
        let value = |s: &LatencySummary, label: &str| match super::percentile(s, label) {
            Metric::Value(v) => Ok(v),
            why => Err(why),
        };
        let p50 = setups
            .iter()
            .try_fold(0.0, |acc, s| Ok(acc + value(s, "p50")? * s.count as f64));
        let p99 = setups
            .iter()
            .try_fold(0.0, |acc: f64, s| Ok(acc.max(value(s, "p99")?)));
        m.insert(
            "setup_p50_us".into(),
            p50.map_or_else(|why| why, |v| Metric::Value(v / n as f64)),
        );
        m.insert(
            "setup_p99_us".into(),
            p99.map_or_else(|why| why, Metric::Value),
        );
    }
}

/// The connection family.
pub(super) fn insert(
    t: &Target,
    inp: &MetricInputs,
    m: &mut BTreeMap<String, Metric>,
    ev: &mut Evidence,
) {
    setup(inp, m, ev);
    m.insert(
        "upstream_connections".into(),
        match &t.sockets {
            _ if t.role != crate::report::Role::Client => un("measured on the client endpoint only"),
            None => un("the target's sockets could not be inspected"),
            Some(s) if s.upstream == 0 && s.udp > 0 => un(
                "the client reaches the server over UDP (QUIC): connections share one socket, so the kernel cannot count them",
            ),
            Some(s) => Metric::Value(s.upstream as f64),
        },
    );
    m.insert(
        "upstream_connections_per_stream".into(),
        match &t.sockets {
            _ if t.role != crate::report::Role::Client => un("measured on the client endpoint only"),
            None => un("the target's sockets could not be inspected"),
            Some(s) if s.upstream == 0 && s.udp > 0 => un(
                "the client reaches the server over UDP (QUIC): connections share one socket, so the kernel cannot count them",
            ),
            Some(s) => ratio(
                s.upstream as f64,
                s.inbound as f64,
                "no stream was open when the sockets were inspected",
            ),
        },
    );
    match &t.sockets {
        Some(s) if s.unreadable > 0 => {
            let why = format!(
                "{} of the target's sockets could not be borrowed to read their options",
                s.unreadable
            );
            m.insert("keepalive_share".into(), un(&why));
            m.insert("nodelay_share".into(), un(&why));
        }
        Some(s) if s.tcp > 0 => {
            for (name, unknown) in [
                ("keepalive_share", s.keepalive_unknown),
                ("nodelay_share", s.nodelay_unknown),
            ] {
                ev.insert(
                    name.into(),
                    MetricEvidence {
                        samples: u64::from(s.tcp.saturating_sub(unknown)),
                        interval: None,
                    },
                );
            }
            m.insert(
                "keepalive_share".into(),
                option_share(s.keepalive, s.tcp, s.keepalive_unknown, "SO_KEEPALIVE"),
            );
            m.insert(
                "nodelay_share".into(),
                option_share(s.nodelay, s.tcp, s.nodelay_unknown, "TCP_NODELAY"),
            );
        }
        Some(s) => {
            let why = if s.udp > 0 {
                "no TCP socket: the target speaks QUIC, whose keep-alive and pacing live in the protocol"
            } else {
                "no connected TCP socket when the sockets were inspected"
            };
            m.insert("keepalive_share".into(), un(why));
            m.insert("nodelay_share".into(), un(why));
        }
        None => {
            let why = "the target's sockets could not be inspected";
            m.insert("keepalive_share".into(), un(why));
            m.insert("nodelay_share".into(), un(why));
        }
    }
}

/// The share of TCP sockets with an option on, over those where it could be
/// read; not evaluated when it could be read on none.
fn option_share(on: u32, tcp: u32, unknown: u32, option: &str) -> Metric {
    let read = tcp.saturating_sub(unknown);
    if read == 0 {
        return un(&format!(
            "{option} could not be read on any of the target's {tcp} TCP sockets"
        ));
    }
    Metric::Value(f64::from(on) / f64::from(read))
}
