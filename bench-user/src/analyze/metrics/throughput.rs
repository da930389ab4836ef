//! Throughput against a fixed send rate: `rate_held_share`.

use std::collections::BTreeMap;

use super::un;
use crate::report::{Metric, Role, Target, Workload};

/// `rate_held_share`: the payload rate of the direction this target sends
/// in, over its bulk phases' measured windows, as a share of the rate the
/// profile says that direction holds. Payload only: the rate counts the
/// protocol's packets, so a sender that holds it exactly shows a little
/// under 1 (QUIC's headers, frames and acknowledgements).
pub(super) fn insert(t: &Target, w: &Workload, m: &mut BTreeMap<String, Metric>) {
    m.insert("rate_held_share".into(), rate_held_share(t.role, w));
}

fn rate_held_share(role: Role, w: &Workload) -> Metric {
    let Some(limit) = w.rate_limit else {
        return un("the profile declares no fixed send rate ([rate_limit])");
    };
    let (mbps, name) = match role {
        Role::Client => (limit.up_mbps, "up_mbps"),
        Role::Server => (limit.down_mbps, "down_mbps"),
    };
    let Some(mbps) = mbps.filter(|r| *r > 0.0) else {
        return un(&format!("[rate_limit] has no {name}"));
    };
    let (mut bytes, mut seconds) = (0u64, 0.0f64);
    for p in w.phases.iter().filter(|p| p.pattern == "bulk") {
        let sent = match role {
            Role::Client => p.window_bytes_up,
            Role::Server => p.window_bytes_down,
        };
        if sent > 0 {
            bytes += sent;
            seconds += p.measured_s;
        }
    }
    if bytes == 0 || seconds <= 0.0 {
        return un(&format!(
            "no bulk phase moved payload the way the {role} sends"
        ));
    }
    let payload_mbps = bytes as f64 * 8.0 / seconds / 1e6;
    Metric::Value(payload_mbps / mbps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RateLimit;

    /// The trimmed real tcp run's workload (tests/data/run-tcp), cut to
    /// its bulk phase, carrying `up` and `down` bytes in `seconds`.
    fn workload(up: u64, down: u64, seconds: f64, limit: Option<RateLimit>) -> Workload {
        let report: crate::report::Report =
            serde_json::from_str(include_str!("../../../tests/data/run-tcp/report.json"))
                .expect("fixture report");
        let mut w = report.workload;
        w.phases.retain(|p| p.pattern == "bulk");
        w.phases.truncate(1);
        let p = w.phases.first_mut().expect("the fixture has a bulk phase");
        p.window_bytes_up = up;
        p.window_bytes_down = down;
        p.measured_s = seconds;
        w.rate_limit = limit;
        w
    }

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn each_role_is_judged_by_the_direction_it_sends() {
        let limit = Some(RateLimit {
            up_mbps: Some(1000.0),
            down_mbps: Some(500.0),
        });
        // 5 s of 100 MiB/s up and 50 MiB/s down.
        let w = workload((500.0 * MIB) as u64, (250.0 * MIB) as u64, 5.0, limit);
        let share = |role| match rate_held_share(role, &w) {
            Metric::Value(v) => v,
            other => panic!("{other:?}"),
        };
        // 100 MiB/s = 838.9 Mbit/s of 1000; 50 MiB/s of 500.
        assert!(
            (share(Role::Client) - 0.8389).abs() < 1e-3,
            "{}",
            share(Role::Client)
        );
        assert!(
            (share(Role::Server) - 0.8389).abs() < 1e-3,
            "{}",
            share(Role::Server)
        );
    }

    #[test]
    fn unavailable_without_a_declared_rate_or_bulk_payload() {
        let w = workload(1 << 20, 1 << 20, 5.0, None);
        assert!(
            matches!(rate_held_share(Role::Client, &w), Metric::Unavailable(why) if why.contains("[rate_limit]"))
        );
        let only_up = Some(RateLimit {
            up_mbps: Some(1000.0),
            down_mbps: None,
        });
        let w = workload(1 << 20, 0, 5.0, only_up);
        assert!(
            matches!(rate_held_share(Role::Server, &w), Metric::Unavailable(why) if why.contains("down_mbps"))
        );
        let both = Some(RateLimit {
            up_mbps: Some(1000.0),
            down_mbps: Some(1000.0),
        });
        let w = workload(1 << 20, 0, 5.0, both);
        assert!(
            matches!(rate_held_share(Role::Server, &w), Metric::Unavailable(why) if why.contains("server sends"))
        );
    }
}
