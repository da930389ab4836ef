//! End to end: `protoprof profile tcp` as a user runs it, as a child
//! process. Needs root (eBPF); see tests/probes.rs.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod support;
use support::*;

#[test]
#[ignore = "needs root"]
fn tcp_profile_end_to_end() {
    become_subreaper();
    let out = out_dir("e2e");
    let (dir, report, stdout) = profile_ok("tcp", &out, "3");
    assert!(
        stdout.contains("syscalls:"),
        "no terminal summary:\n{stdout}"
    );
    assert_eq!(report.schema_version, protoprof::report::SCHEMA_VERSION);
    assert_eq!(report.run.id.len(), 64);
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    assert_eq!(report.workload.phases.len(), 2);
    for p in &report.workload.phases {
        // Whole connections carry at least what their window did, and the
        // mean throughput is window bytes over window seconds.
        assert!(p.bytes_up >= p.window_bytes_up && p.bytes_down >= p.window_bytes_down);
        let mean = p.window_bytes_up as f64 / p.measured_s;
        assert!(
            (p.throughput.up_bps_mean / mean - 1.0).abs() < 0.01,
            "{}: mean {} against {mean}",
            p.pattern,
            p.throughput.up_bps_mean
        );
    }
    assert_eq!(
        report.workload.bytes_up,
        report
            .workload
            .phases
            .iter()
            .map(|p| p.bytes_up)
            .sum::<u64>()
    );
    // Bulk both ways on 4 connections: a working loopback relay moves tens of
    // MiB a second; 1 MiB in the window is far below any healthy run.
    let bulk = &report.workload.phases[0];
    assert!(
        bulk.window_bytes_up >= 1 << 20 && bulk.window_bytes_down >= 1 << 20,
        "bulk window moved {} up, {} down",
        bulk.window_bytes_up,
        bulk.window_bytes_down
    );
    // Closed-loop rr, 64-byte requests and 1 KiB responses on 4
    // connections: the window's bytes are its round trips' bytes, give or
    // take the one request per connection in flight at each window edge.
    let rr = &report.workload.phases[1];
    let latency = rr.latency_us.as_ref().expect("rr latency");
    assert_eq!(latency.count, rr.round_trips);
    assert!(rr.round_trips >= 100, "{} round trips", rr.round_trips);
    let edge = 2 * 4;
    assert!(
        rr.window_bytes_up.abs_diff(64 * rr.round_trips) <= 64 * edge,
        "rr: {} bytes up for {} round trips",
        rr.window_bytes_up,
        rr.round_trips
    );
    assert!(
        rr.window_bytes_down.abs_diff(1024 * rr.round_trips) <= 1024 * edge,
        "rr: {} bytes down for {} round trips",
        rr.window_bytes_down,
        rr.round_trips
    );
    setup_phase_judged(&report);
    windows_carry_the_machine_load(&report);
    assert!(
        (2.0..6.0).contains(&report.run.measured_s),
        "measured {}",
        report.run.measured_s
    );
    assert_eq!(report.targets.len(), 2);
    let window_s: f64 = report.workload.phases.iter().map(|p| p.measured_s).sum();
    let cpus = report.run.cpus as f64;
    for t in &report.targets {
        let calls: u64 = t.syscalls.iter().map(|s| s.count).sum();
        // The relay moves every payload byte through read/write-family calls.
        let moved: u64 = t.syscalls.iter().map(|s| s.bytes).sum();
        assert!(
            moved >= report.workload.bytes_up / 2,
            "{} endpoint moved only {moved} bytes",
            t.role
        );
        // No call moves more than the 64 KiB relay buffer.
        assert!(
            calls >= moved / 65536,
            "{} endpoint: {calls} syscalls moved {moved} bytes",
            t.role
        );
        // 99 Hz per CPU, only inside the windows: at most that many
        // samples (10 % for window edges), and a relay moving MiB a second
        // is on CPU for more than a tenth of a second.
        let most = 99.0 * cpus * window_s * 1.1;
        assert!(
            (10.0..=most).contains(&(t.cpu.samples as f64)),
            "{} endpoint: {} cpu samples (at most {most:.0})",
            t.role,
            t.cpu.samples
        );
        let rss = t.peak_rss_bytes.expect("peak RSS");
        assert!(
            (1 << 20..1 << 30).contains(&rss),
            "{} endpoint: peak RSS {rss}",
            t.role
        );
        match t.counters.get("task_clock_ns") {
            // CPU time inside the windows: no more than every CPU for
            // their whole length, and it agrees with the cpu samples ×
            // their period (10.1 ms) within sampling error.
            Some(protoprof::report::Reading::Value(ns)) => {
                let ns = *ns as f64;
                assert!(ns <= window_s * cpus * 1.05e9, "task clock {ns} ns");
                let sampled = t.cpu.samples as f64 * 1e9 / 99.0;
                assert!(
                    (0.4..2.5).contains(&(ns / sampled)),
                    "{} endpoint: task clock {ns} ns against {sampled} ns sampled",
                    t.role
                );
            }
            other => panic!("task clock: {other:?}"),
        }
        // Unavailable with a reason, or a real non-zero count: never zero.
        match t.counters.get("cycles") {
            Some(protoprof::report::Reading::Value(v)) => assert!(*v > 0),
            Some(protoprof::report::Reading::Unavailable(why)) => assert!(!why.is_empty()),
            None => panic!("cycles missing"),
        }
    }
    let svg = std::fs::read_to_string(dir.join("cpu.svg")).expect("cpu.svg");
    assert!(
        svg.contains("bench_proto::relay"),
        "the relay's own functions are not in the flame graph"
    );
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    assert!(
        folded.lines().any(|l| l.starts_with("client;"))
            && folded.lines().any(|l| l.starts_with("server;"))
    );
    assert!(dir.join("report.md").is_file() && dir.join("run.log").is_file());
    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).expect("timeseries.csv");
    assert!(csv.lines().count() > 2 && csv.starts_with("phase,pattern,t_s"));
    for graph in ["offcpu", "alloc", "alloc-count"] {
        assert!(
            dir.join(format!("{graph}.svg")).is_file(),
            "{graph}.svg missing"
        );
    }
    for t in &report.targets {
        let off = t.offcpu.as_ref().expect("offcpu summary");
        // Every thread blocks (epoll) between chunks; none can be off CPU
        // for longer than the windows last.
        let threads: usize = t.threads.iter().map(|th| th.threads).sum();
        let most = (threads as f64 * window_s * 1e6 * 1.1) as u64;
        assert!(
            (1000..=most).contains(&off.total_us),
            "{} endpoint: {} µs off CPU over {threads} threads",
            t.role,
            off.total_us
        );
        let alloc = t.alloc.as_ref().expect("alloc summary");
        assert!(
            alloc.attached.iter().any(|a| a.symbol == "malloc"),
            "{} endpoint: malloc not found",
            t.role
        );
        assert!(
            t.threads.iter().any(|th| th.name.starts_with("tokio")),
            "{:?}",
            t.threads
        );
    }

    judged_and_rendered(&dir, &report);

    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

/// The set-up phase's 300 connections bound set-up's p50, p90 and p99, so
/// both endpoints' set-up metrics are values a gate can judge.
fn setup_phase_judged(report: &protoprof::report::Report) {
    use protoprof::report::{IntegrityStatus, Metric};
    let s = report.workload.setup.as_ref().expect("set-up phase");
    assert_eq!((s.planned, s.connections), (300, 300), "{s:?}");
    assert_eq!(s.integrity.status, IntegrityStatus::Ok);
    assert_eq!(s.integrity.connections_checked, 300);
    assert_eq!(s.integrity.bytes_checked, 300 * (64 + 1024));
    for l in [&s.setup_us, &s.first_response_us] {
        assert_eq!(l.count, 300);
        let judged: Vec<(&str, bool)> = l
            .percentiles
            .iter()
            .map(|p| (p.label.as_str(), p.value().is_some()))
            .collect();
        assert_eq!(
            judged,
            [("p50", true), ("p90", true), ("p99", true), ("p999", false)]
        );
    }
    let p50 = s.setup_us.percentile("p50").and_then(|p| p.value());
    let first = s
        .first_response_us
        .percentile("p50")
        .and_then(|p| p.value());
    assert!(
        p50 <= first,
        "set-up {p50:?} after first response {first:?}"
    );
    // Loopback through the tcp relay: between 10 µs and 100 ms.
    assert!(
        p50.is_some_and(|v| (10.0..100_000.0).contains(&v)),
        "{p50:?}"
    );
    for t in &report.targets {
        for name in ["setup_p50_us", "setup_p99_us"] {
            let want = s.setup_us.percentile(&name[6..9]).and_then(|p| p.value());
            assert_eq!(t.metrics.get(name).and_then(Metric::value), want, "{name}");
        }
    }
}

/// One load reading per measured window (main pass, then per-call pass),
/// lined up with the phases it measured.
fn windows_carry_the_machine_load(report: &protoprof::report::Report) {
    let w = &report.workload.windows;
    let phases = report.workload.phases.len();
    let per_call = report.workload.per_call_pass.phases.len();
    let order: Vec<(&str, usize)> = w.iter().map(|w| (w.pass.as_str(), w.phase)).collect();
    let want: Vec<(&str, usize)> = (0..phases)
        .map(|i| ("main", i))
        .chain((0..per_call).map(|i| ("per_call", i)))
        .collect();
    assert_eq!(order, want);
    for (win, p) in w.iter().zip(&report.workload.phases) {
        // The load is read just around the probes' start and stop, so the
        // reading spans the traffic window within a few tens of ms.
        assert!(
            (win.seconds - p.measured_s).abs() < 0.25,
            "{win:?} vs {}",
            p.measured_s
        );
        // Both endpoints relay at full speed in these windows.
        assert!(win.targets_cores > 0.05, "{win:?}");
        assert!(win.runner_cores > 0.01, "{win:?}");
        let cpus = report.run.cpus as f64;
        // Interrupt time is part of the busy time the others are taken
        // from, not beside it.
        let sum = win.targets_cores + win.runner_cores + win.other_cores;
        assert!(win.irq_cores <= cpus, "{win:?}");
        assert!(sum <= cpus * 1.05 + 0.05, "{win:?}");
    }
}

/// Every figure of `t` divides quantities of the same windows: the costs
/// cover the bulk phase, the categories add up to the total, each phase's
/// task clock agrees with its samples × period, and throughput is window
/// bytes over window seconds.
fn one_scope_per_figure(report: &protoprof::report::Report, t: &protoprof::report::Target) {
    use protoprof::report::{Metric, MetricPass, Reading};
    let costs = t.costs.as_ref().expect("cost attribution");
    // tcp: phase 0 is bulk, phase 1 rr; the per-byte costs cover bulk.
    assert_eq!(t.metrics_phases, vec![0]);
    assert_eq!(costs.phases, vec![0]);
    assert_eq!(costs.bytes, report.workload.phases[0].window_bytes());
    let value = |name: &str| match t.metrics.get(name) {
        Some(Metric::Value(v)) => *v,
        other => panic!("{} {name}: {other:?}", t.role),
    };
    let total = value("cpu_ns_per_byte");
    assert!(
        (total - costs.cpu_ns / costs.bytes as f64).abs() <= 1e-9 * total,
        "{total}"
    );
    let sum: f64 = protoprof::analyze::metrics::CATEGORIES
        .iter()
        .map(|c| value(&format!("cost.{c}.ns_per_byte")))
        .sum();
    assert!(
        (sum - total).abs() <= 0.01 * total,
        "{}: categories {sum} ns/B vs total {total} ns/B",
        t.role
    );
    assert_eq!(
        value("crypto_ns_per_byte"),
        value("cost.crypto.ns_per_byte")
    );
    let scope = &t.metric_scopes["cpu_ns_per_byte"];
    assert_eq!(
        (scope.pass, scope.phases.clone()),
        (MetricPass::Main, vec![0])
    );
    assert_eq!(t.metric_scopes.len(), t.metrics.len());
    // Every phase has its own costs; together they hold the target's
    // samples (a sample taken as a window closes may land in none).
    let phase_samples: u64 = t
        .phases
        .iter()
        .map(|p| p.costs.as_ref().expect("phase costs").samples)
        .sum();
    assert!(
        phase_samples <= t.cpu.samples && phase_samples * 100 >= t.cpu.samples * 99,
        "{} of {} samples in the phases",
        phase_samples,
        t.cpu.samples
    );
    let offcpu: u64 = t.phases.iter().filter_map(|p| p.offcpu_us).sum();
    assert_eq!(offcpu, t.offcpu.as_ref().expect("offcpu").total_us);
    // Task clock vs samples × period, phase by phase, within sampling
    // error (`task_clock_agrees` states the bound and why).
    let hz = report
        .probes
        .options
        .cpu_frequency_hz
        .expect("cpu probe on") as f64;
    for p in &t.phases {
        let c = p.costs.as_ref().expect("phase costs");
        let Some(Reading::Value(task_ns)) = p.counters.get("task_clock_ns") else {
            panic!("{} phase {}: no task clock", t.role, p.phase);
        };
        assert_eq!(c.cpu_ns, *task_ns as f64);
        if let Err(e) =
            protoprof::analyze::attribution::task_clock_agrees(*task_ns as f64, c.samples, hz)
        {
            panic!("{} phase {}: {e}", t.role, p.phase);
        }
    }
    // Throughput is the window's bytes over the window's seconds.
    for p in &report.workload.phases {
        let mean = p.throughput.up_bps_mean + p.throughput.down_bps_mean;
        let direct = p.window_bytes() as f64 / p.measured_s;
        assert!(
            (mean - direct).abs() <= 0.01 * direct,
            "{}: {mean} vs {direct}",
            p.pattern
        );
    }
}

/// Cost attribution, metrics, checklist and every rendered output of a
/// real run.
fn judged_and_rendered(dir: &std::path::Path, report: &protoprof::report::Report) {
    use protoprof::report::{Metric, Verdict};
    let window_s: f64 = report.workload.phases.iter().map(|p| p.measured_s).sum();
    let cpus = report.run.cpus as f64;
    for t in &report.targets {
        let costs = t.costs.as_ref().expect("cost attribution");
        let names: Vec<_> = costs
            .categories
            .iter()
            .map(|c| c.category.as_str())
            .collect();
        assert_eq!(names, protoprof::analyze::metrics::CATEGORIES);
        one_scope_per_figure(report, t);
        assert_eq!(
            costs.categories.iter().map(|c| c.samples).sum::<u64>(),
            costs.samples
        );
        // A plain relay's CPU is mostly the kernel's: syscalls, the network
        // stack and its copies to and from user space, which `copy` counts.
        // How the two split depends on the CPU's copy routine (on a Xeon
        // copy took the larger part, on the EPYC machines kernel_io), so
        // they are judged together.
        let share = |name: &str| {
            costs
                .categories
                .iter()
                .find(|c| c.category == name)
                .map_or(0.0, |c| c.share)
        };
        assert!(share("kernel_io") + share("copy") > 0.5, "{costs:?}");
        // Both directions of the windows of the phases the costs cover.
        assert_eq!(
            costs.bytes,
            costs
                .phases
                .iter()
                .map(|&i| report.workload.phases[i].window_bytes())
                .sum::<u64>()
        );
        assert!(
            costs.cpu_ns > 0.0 && costs.cpu_ns <= window_s * cpus * 1.05e9,
            "{costs:?}"
        );
        // Over the bulk phase, each endpoint reads every payload byte once
        // and writes it once, at most 64 KiB a call: at least 32 calls per
        // MiB of both directions; a relay making a call per KiB is broken.
        match t.metrics.get("syscalls_per_mib") {
            Some(Metric::Value(v)) => assert!((32.0..1024.0).contains(v), "{v}"),
            other => panic!("syscalls_per_mib: {other:?}"),
        }
        let sockets = t.sockets.as_ref().expect("sockets inspected");
        // 4 connections in, 4 out, all with TCP_NODELAY (tokio sets it for us).
        assert!(sockets.tcp >= 8 && sockets.inbound >= 4, "{sockets:?}");
        assert_eq!(sockets.nodelay, sockets.tcp);
    }
    let rules = protoprof::analyze::checklist::Checklist::load(&workspace().join("profiles"))
        .expect("checklist");
    assert!(rules.rules.len() >= 20);
    for rule in &rules.rules {
        let results: Vec<_> = report
            .checklist
            .iter()
            .filter(|r| r.id == rule.id)
            .collect();
        assert!(!results.is_empty(), "rule {} not judged", rule.id);
        for r in results {
            assert!(!r.evidence.is_empty(), "{r:?}");
            match r.verdict {
                Verdict::NotEvaluated => assert!(r.value.is_none() || rule.only_if.is_some()),
                Verdict::Ok => assert!(r.recommendation.is_empty()),
                Verdict::Warn | Verdict::Fail => assert!(!r.recommendation.is_empty()),
            }
        }
    }
    assert_eq!(report.calibration.len(), 3);
    let cpu = protoprof::report::stacks::read_named(dir, report, "cpu")
        .expect("cpu side file")
        .expect("cpu stacks");
    assert_eq!(
        cpu.stacks.iter().map(|s| s.count).sum::<u64>(),
        report.targets.iter().map(|t| t.cpu.samples).sum::<u64>()
    );
    for file in [
        "report.html",
        "profile.pb.gz",
        "report.md",
        "timeseries.csv",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
        assert!(
            report.outputs.values().any(|f| f == file),
            "{file} not in outputs"
        );
    }
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        md.contains("## Checklist") && md.contains("kernel_io"),
        "{md}"
    );
}

/// A process's user + system CPU seconds, from /proc/PID/stat.
fn process_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = protoprof::capture::machine_load::parse_pid_stat(&text)?;
    Some(ticks as f64 / protoprof::capture::machine_load::ticks_per_second())
}

/// The CPU a process used between two Unix times, interpolated from
/// (time, cumulative CPU) samples.
fn cpu_between(samples: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let at = |t: f64| {
        let i = samples.partition_point(|s| s.0 <= t);
        assert!(
            i > 0 && i < samples.len(),
            "{t} outside the samples {:?}..{:?}",
            samples.first(),
            samples.last()
        );
        let ((t0, c0), (t1, c1)) = (samples[i - 1], samples[i]);
        c0 + (c1 - c0) * (t - t0) / (t1 - t0).max(1e-9)
    };
    at(to) - at(from)
}

/// `probes.alternate`: every phase's whole seconds pair up, one ratio per
/// pair, and the runner switched the programs on the schedule (off after
/// the first second of a pair that starts attached, on again after the
/// second of one that starts detached), leaving them attached at the end.
#[test]
#[ignore = "needs root"]
fn alternating_probes_pair_every_phase_s_seconds() {
    become_subreaper();
    let out = out_dir("alternate");
    let (dir, report, _) = profile_ok_with(
        "tcp",
        &out,
        "9",
        &[
            "probes.alternate=true",
            "probes.per_call_pass=false",
            "probes.alloc.enabled=false",
            "probes.crypto.enabled=false",
        ],
    );
    assert!(report.probes.options.alternate);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("probes.alternate: ")),
        "{:?}",
        report.warnings
    );
    let phases = &report.workload.phases;
    assert_eq!(report.probes.alternating.len(), phases.len());
    let mut expected_switches = 0;
    for (a, p) in report.probes.alternating.iter().zip(phases) {
        let whole = p
            .timeseries
            .iter()
            .enumerate()
            .take_while(|(i, s)| (s.span_s - 1.0).abs() < 1e-6 && (s.t_s - *i as f64).abs() < 1e-6)
            .count();
        assert!(whole >= 2, "phase {}: {whole} whole seconds", a.phase);
        assert_eq!(a.pattern, p.pattern);
        assert_eq!(a.pair_ratios.len(), whole / 2, "phase {}: {a:?}", a.phase);
        assert!(
            a.pair_ratios.iter().all(|r| r.is_finite() && *r > 0.0),
            "{a:?}"
        );
        // (A median with pairs; what it is the unit tests check.)
        assert!(a.median_ratio.is_some(), "{a:?}");
        // Detached in seconds 1, 2, 5, 6, …: a switch off at the start of
        // each such run of seconds and one back on at its end (or at the
        // window's close), as far as the window went (its last, partial
        // second included).
        let seconds = p.measured_s.ceil() as u64;
        let detached_runs = (0..seconds)
            .filter(|&k| {
                !protoprof::analyze::alternation::attached_in_second(k)
                    && (k == 0 || protoprof::analyze::alternation::attached_in_second(k - 1))
            })
            .count();
        expected_switches += 2 * detached_runs;
        assert!(a.switch_ms_max > 0.0, "{a:?}");
    }
    let log = std::fs::read_to_string(dir.join("run.log")).expect("run.log");
    let switches: usize = log
        .lines()
        .find_map(|l| l.split("alternating: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no alternating line in run.log:\n{log}"));
    // A switch can land a moment before the window's close, when the
    // measured time ends just past a second's edge: one pair of switches of
    // slack per phase.
    assert!(
        switches <= expected_switches && switches + 2 * phases.len() >= expected_switches,
        "{switches} switches, {expected_switches} expected from the windows' lengths"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "needs root"]
fn a_busy_neighbour_shows_as_other_processes_cpu() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    become_subreaper();
    let out = out_dir("busy");
    let mut busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("start a busy loop");
    let pid = busy.id();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs_f64();
                if let Some(cpu) = process_cpu_s(pid) {
                    v.push((now, cpu));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            v
        })
    };
    let run = std::panic::catch_unwind(|| profile_ok("tcp", &out, "3"));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    busy.kill().expect("stop the busy loop");
    busy.wait().expect("reap the busy loop");
    let (dir, report, _) = run.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let (mut busy_s, mut other_s, mut window_s) = (0.0, 0.0, 0.0);
    for w in &report.workload.windows {
        busy_s += cpu_between(&samples, w.opened_unix_s, w.opened_unix_s + w.seconds);
        other_s += w.other_cores * w.seconds;
        window_s += w.seconds;
    }
    // The loop got a measurable share of the CPUs beside the chain (on a
    // machine shared with builds, as little as a tenth of the window)…
    assert!(busy_s >= 0.05 * window_s, "busy {busy_s} s of {window_s} s");
    // …and the report counts at least 80 % of it as other processes' CPU.
    // (No upper bound: other developers' builds share this machine and
    // are other processes too.)
    eprintln!(
        "other processes {other_s:.3} s, the busy loop {busy_s:.3} s, over {window_s:.2} s of windows"
    );
    assert!(
        other_s >= 0.8 * busy_s,
        "other processes {other_s:.3} s, the busy loop alone {busy_s:.3} s over {window_s:.2} s"
    );
    // Well above 5 % of a core: report.md points the windows out.
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        md.contains("> **disturbed window:** main pass, phase 0 (bulk (both)): other processes"),
        "{md}"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "needs root"]
fn ctrl_c_stops_the_chain_and_detaches_the_probes() {
    become_subreaper();
    let out = out_dir("sigint");
    let child = profile_cmd(&out, "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until both endpoints are up (their logs say so), i.e. mid-run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|run| {
                ["client.log", "server.log"].iter().all(|l| {
                    std::fs::read_to_string(run.path().join(l))
                        .is_ok_and(|t| t.contains("listening"))
                })
            })
            .unwrap_or(false);
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "endpoints never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let done = finish_within(child, COMMAND_LIMIT, Stderr::Keep);
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_profile_exits_2_with_one_line() {
    let out = out_dir("bad");
    let spec = out.join("bad.toml");
    std::fs::write(&spec, "name = \"x\"\nprotocol = \"tcp\"\n[[phase]]\npattern = \"bulk\"\nduration_s = 1\nconnections = 0\n")
        .expect("write");
    let result = Command::new(PROTOPROF)
        .arg("profile")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--endpoint")
        .arg(PROTOPROF)
        .output()
        .expect("run");
    assert_eq!(result.status.code(), Some(2));
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("phase[0].connections") && err.contains("use 1 to 10000"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "needs root"]
fn tuic_profile_end_to_end() {
    become_subreaper();
    let out = out_dir("tuic");
    let (dir, report, _) = profile_ok("tuic", &out, "3");
    assert_eq!(
        report.workload.integrity,
        protoprof::report::IntegrityStatus::Ok
    );
    for t in &report.targets {
        assert!(
            t.syscalls
                .iter()
                .any(|s| s.name == "sendmsg" || s.name == "sendto"),
            "{}",
            t.role
        );
        // The run's credentials never reach the report.
        let pw = t
            .command
            .iter()
            .position(|a| a == "--password")
            .expect("--password");
        assert_eq!(t.command[pw + 1], "<secret>");
        // QUIC's AEAD (ring, AES-GCM) is found and counted.
        let crypto = t.crypto.as_ref().expect("crypto");
        let calls: u64 = crypto
            .symbols
            .iter()
            .filter(|s| s.family.starts_with("ring AES-GCM"))
            .map(|s| s.calls)
            .sum();
        // Per packet, the bulk AEAD call or the leftover-blocks call.
        let bytes = assert_a_call_per_quic_packet(&report, t, calls);
        // The family's bytes are the payload plus QUIC's framing, less the
        // last partial block of each packet (encrypted outside the family).
        let sealed: u64 = crypto
            .symbols
            .iter()
            .filter(|s| s.family.starts_with("ring AES-GCM"))
            .filter_map(|s| s.bytes)
            .sum();
        let ratio = sealed as f64 / bytes as f64;
        assert!(
            (0.8..2.0).contains(&ratio),
            "{}: the AES-GCM calls covered {sealed} bytes for {bytes} payload bytes",
            t.role
        );
    }
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    assert!(
        folded.contains("bench_proto::tuic"),
        "the TUIC endpoint's functions are not in the flame graph"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
