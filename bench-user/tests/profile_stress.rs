//! End to end: profiles/tcp-stress.toml (churn, open-loop rr, exact-length
//! bulk, a concurrency sweep 1/10/100) through the plain TCP chain, and the
//! resource series of every run. Needs root (eBPF); see tests/probes.rs.

use std::process::Command;

mod support;
use support::*;

use protoprof::report::{Phase, Report, Role};

/// `protoprof profile tcp-stress` with its own durations (no --duration).
fn stress_run(out: &std::path::Path, sets: &[&str]) -> (std::path::PathBuf, Report) {
    profile_as_written("tcp-stress", out, sets)
}

#[test]
#[ignore = "needs root"]
fn tcp_stress_patterns_end_to_end() {
    become_subreaper();
    let out = out_dir("stress");
    let (dir, report) = stress_run(&out, &[]);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    let phases = &report.workload.phases;
    // churn, rr open loop, exact bulk, then the sweep's three levels.
    assert_eq!(
        phases.len(),
        6,
        "{:?}",
        phases.iter().map(Phase::label).collect::<Vec<_>>()
    );
    churn_counted_exactly(&phases[0]);
    open_loop_on_schedule(&phases[1]);
    exact_bulk(&phases[2]);
    sweep_levels(&report);
    resources_follow_the_connections(&report);

    let csv = std::fs::read_to_string(dir.join("resources.csv")).expect("resources.csv");
    let rows = report.resources.as_ref().map_or(0, |r| {
        r.targets.iter().map(|t| t.samples.len()).sum::<usize>()
    });
    assert_eq!(csv.lines().count(), rows + 1);
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    for heading in ["Resources over time", "Churn", "Concurrency sweep"] {
        assert!(html.contains(heading), "report.html lacks {heading}");
    }
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

/// Every connection started is either checked or failed; none failed on a
/// healthy loopback chain.
fn churn_counted_exactly(p: &Phase) {
    assert_eq!(p.pattern, "churn");
    let c = p.churn.as_ref().expect("churn figures");
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    assert_eq!(p.integrity.connections_checked as u64, c.all_started);
    assert_eq!(c.completed, c.started);
    assert_eq!(c.setup_us.count, c.completed);
    assert_eq!(c.first_response_us.count, c.completed);
    // 64-byte request and 1 KiB response on each, both ways checked.
    assert_eq!(p.bytes_up, 64 * c.all_started);
    assert_eq!(p.bytes_down, 1024 * c.all_started);
    assert_eq!(p.integrity.bytes_checked, 1088 * c.all_started);
    assert!(
        p.round_trips.abs_diff(c.completed) <= 2 * c.concurrency as u64,
        "{} completions in the window, {} started",
        p.round_trips,
        c.completed
    );
    // Four at a time through a loopback relay pair: hundreds a second on an
    // idle machine; 20 a second would mean the churn loop is broken.
    assert!(c.connections_per_s >= 20.0, "{} /s", c.connections_per_s);
}

/// 100 requests a second on each of 4 connections for the window: the
/// count is the schedule's, within the edges, unless the generator says it
/// fell behind.
fn open_loop_on_schedule(p: &Phase) {
    let s = p.schedule.as_ref().expect("schedule figures");
    assert_eq!(s.rate_per_connection, 100.0);
    let want = 4.0 * 100.0 * p.measured_s;
    // Due times in the window: rate × T per connection, ± 1 at an edge,
    // however busy the machine (a request never sent is due, and behind).
    assert!(
        (s.due as f64 - want).abs() <= 4.0,
        "{} due, want {want}",
        s.due
    );
    assert!(s.due - s.lag_us.count <= s.behind);
    assert_eq!(p.latency_us.as_ref().expect("latency").count, p.round_trips);
    assert!(p.round_trips as f64 <= want + 12.0);
    if s.behind == 0 {
        // Completions: ± the request in flight at each edge besides.
        assert!(
            (p.round_trips as f64 - want).abs() <= 12.0,
            "{} round trips, want {want}",
            p.round_trips
        );
    } else {
        eprintln!(
            "open loop: generator behind on {} of {} requests (machine busy)",
            s.behind, s.due
        );
    }
}

fn exact_bulk(p: &Phase) {
    let n = 16 * 1024 * 1024;
    assert_eq!(p.bytes_per_connection, Some(n));
    assert_eq!(p.integrity.connections.len(), 2);
    for c in &p.integrity.connections {
        assert_eq!((c.bytes_up, c.bytes_down), (n, n));
    }
    assert_eq!((p.window_bytes_up, p.window_bytes_down), (2 * n, 2 * n));
}

/// The sweep ran 1, 10 and 100 connections; the plain relay holds two
/// descriptors per connection (accepted and upstream) in each endpoint.
fn sweep_levels(r: &Report) {
    assert_eq!(r.sweeps.len(), 1);
    let s = &r.sweeps[0];
    assert_eq!(s.first_failure, None);
    assert_eq!(s.limited, None);
    let levels: Vec<usize> = s.levels.iter().map(|l| l.connections).collect();
    assert_eq!(levels, [1, 10, 100]);
    assert!(s.limits.fd_limit >= s.limits.fd_limit_before);
    for l in &s.levels {
        let phase = &r.workload.phases[l.phase];
        assert_eq!(phase.connections, l.connections);
        assert_eq!(l.targets.len(), 2);
        for t in &l.targets {
            // The readings were taken with the level's connections open and
            // nothing else in flight: two each, give or take one earlier
            // connection (two descriptors) still closing at the baseline.
            let off = (t.fds_per_connection - 2.0).abs() * l.connections as f64;
            assert!(off <= 2.0, "{} at {}: {:?}", t.role, l.connections, t);
        }
    }
    let top = &s.levels[2];
    for t in &top.targets {
        // A relayed connection costs at least its buffers' first pages
        // and its task; under a MiB each.
        assert!(
            (4096.0..=1048576.0).contains(&t.rss_per_connection_bytes),
            "{}: {} bytes per connection",
            t.role,
            t.rss_per_connection_bytes
        );
    }
}

/// Once a second for the whole run: the most sockets each endpoint held
/// is the sweep's top level, 100 accepted and 100 upstream besides its
/// listener, all established.
fn resources_follow_the_connections(r: &Report) {
    let res = r.resources.as_ref().expect("resources");
    assert_eq!(res.targets.len(), 2);
    let top = &r.sweeps[0].levels[2];
    for t in &res.targets {
        // The run lasts well over 20 s: one reading a second.
        assert!(
            t.samples.len() >= 15,
            "{}: {} samples",
            t.role,
            t.samples.len()
        );
        let first = &t.samples[0];
        assert_eq!(first.tcp.established, 0, "{}: {:?}", t.role, first.tcp);
        assert_eq!(first.tcp.listen, 1, "{}: {:?}", t.role, first.tcp);
        let max_est = t
            .samples
            .iter()
            .map(|p| p.tcp.established)
            .max()
            .unwrap_or(0);
        assert_eq!(max_est, 200, "{}", t.role);
        let max_sockets = t.samples.iter().map(|p| p.fds.socket).max().unwrap_or(0);
        let at_level = top
            .targets
            .iter()
            .find(|l| l.role == t.role)
            .expect("level target");
        assert_eq!(max_sockets, at_level.sockets, "{}", t.role);
        assert_eq!(max_sockets, first.fds.socket + 200, "{}", t.role);
        assert!(t.samples.windows(2).all(|w| w[0].t_s < w[1].t_s));
        assert!(matches!(t.role, Role::Client | Role::Server));
    }
}

#[test]
fn nonsensical_stress_settings_exit_2_with_one_line() {
    let out = out_dir("stress-bad");
    for (set, field) in [
        ("phase.0.rate=0", "phase[0].rate"),
        (
            "phase.2.bytes_per_connection=-1",
            "phase[2].bytes_per_connection",
        ),
        ("phase.3.levels=[1, 1000000]", "phase[3].levels"),
    ] {
        let result = Command::new(PROTOPROF)
            .arg("profile")
            .arg("tcp-stress")
            .arg("--profiles")
            .arg(workspace().join("profiles"))
            .arg("--out")
            .arg(&out)
            .arg("--endpoint")
            .arg(PROTOPROF)
            .arg("--set")
            .arg(set)
            .output()
            .expect("run");
        assert_eq!(result.status.code(), Some(2), "{set}");
        let err = String::from_utf8_lossy(&result.stderr);
        assert_eq!(err.lines().count(), 1, "{set}: {err}");
        assert!(err.contains(field), "{set}: {err}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
