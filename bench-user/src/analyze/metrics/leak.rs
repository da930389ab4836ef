//! Leak metrics: the lower bound of each resource's 95 % interval of
//! growth per connection served (the rules call a leak only what even
//! that bound shows), the growth per hour beside it, and the descriptors
//! and TCP sockets still held over their baseline once traffic ended.

use std::collections::BTreeMap;

use super::{un, MIB};
use crate::report::{LeakSummary, Metric, Target};

/// (resource, metric of its growth per connection, scale to the metric's
/// unit, metric of its growth per hour, scale).
const SLOPES: &[(&str, &str, f64, &str, f64)] = &[
    (
        "rss_bytes",
        "leak_rss_bytes_per_connection",
        1.0,
        "leak_rss_mib_per_hour",
        1.0 / MIB,
    ),
    (
        "fds",
        "leak_fds_per_kconn",
        1000.0,
        "leak_fds_per_hour",
        1.0,
    ),
    (
        "threads",
        "leak_threads_per_kconn",
        1000.0,
        "leak_threads_per_hour",
        1.0,
    ),
    (
        "tcp_sockets",
        "leak_tcp_sockets_per_kconn",
        1000.0,
        "leak_tcp_sockets_per_hour",
        1.0,
    ),
];

pub(super) fn insert(t: &Target, m: &mut BTreeMap<String, Metric>) {
    let Some(leak) = &t.leak else {
        let why = "the target's resources were not read (no resources section)";
        for (_, per_conn, _, per_hour, _) in SLOPES {
            m.insert(per_conn.to_string(), un(why));
            m.insert(per_hour.to_string(), un(why));
        }
        for name in ["fds_over_baseline", "tcp_sockets_over_baseline"] {
            m.insert(name.into(), un(why));
        }
        return;
    };
    for &(resource, per_conn, conn_scale, per_hour, hour_scale) in SLOPES {
        let r = leak.resources.iter().find(|r| r.resource == resource);
        m.insert(
            per_conn.into(),
            match r.and_then(|r| r.per_connection) {
                Some(s) => Metric::Value(s.low * conn_scale),
                None => un(&why_missing(leak)),
            },
        );
        m.insert(
            per_hour.into(),
            match r.and_then(|r| r.per_hour) {
                Some(s) => Metric::Value(s.estimate * hour_scale),
                None => un(&why_missing(leak)),
            },
        );
    }
    let (fds, sockets) = match leak.return_to_baseline {
        Some(b) => (
            Metric::Value(b.after.fds as f64 - b.before.fds as f64),
            Metric::Value(b.after.tcp_sockets as f64 - b.before.tcp_sockets as f64),
        ),
        None => {
            let why =
                "the counts before the main pass or after the last connection could not be read";
            (un(why), un(why))
        }
    };
    m.insert("fds_over_baseline".into(), fds);
    m.insert("tcp_sockets_over_baseline".into(), sockets);
}

fn why_missing(leak: &LeakSummary) -> String {
    if leak.notes.is_empty() {
        "no slope could be estimated".into()
    } else {
        leak.notes.join("; ")
    }
}
