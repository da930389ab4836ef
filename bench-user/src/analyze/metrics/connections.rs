//! Connection metrics: set-up time, upstream connections per stream,
//! keep-alive and no-delay shares.

use std::collections::BTreeMap;

use super::{ratio, un, MetricInputs};
use crate::report::{Metric, Target};

/// The connection family.
pub(super) fn insert(t: &Target, inp: &MetricInputs, m: &mut BTreeMap<String, Metric>) {
    // Connections.
    let setups: Vec<_> = inp.workload.phases.iter().map(|p| p.setup_us).collect();
    if setups.iter().any(|s| s.count > 0) {
        // Phases keep percentiles, not samples: the p50 is their
        // connection-weighted mean, the p99 the worst phase's (an upper bound).
        let n: u64 = setups.iter().map(|s| s.count).sum();
        let p50 = setups.iter().map(|s| s.p50 * s.count as f64).sum::<f64>() / n as f64;
        let p99 = setups
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.p99)
            .fold(0.0, f64::max);
        m.insert("setup_p50_us".into(), Metric::Value(p50));
        m.insert("setup_p99_us".into(), Metric::Value(p99));
    } else {
        m.insert("setup_p50_us".into(), un("no connection was set up"));
        m.insert("setup_p99_us".into(), un("no connection was set up"));
    }
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
        Some(s) if s.tcp > 0 => {
            m.insert(
                "keepalive_share".into(),
                Metric::Value(s.keepalive as f64 / s.tcp as f64),
            );
            m.insert(
                "nodelay_share".into(),
                Metric::Value(s.nodelay as f64 / s.tcp as f64),
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
