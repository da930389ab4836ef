//! End to end: `protoprof soak`. A 3-minute soak with 30-second intervals
//! (each a checkpoint) of the leak profile with descriptors leaking on
//! purpose, and a soak ended by SIGTERM. Needs root (the runner); see
//! tests/probes.rs.

mod support;
use support::*;

use std::{path::Path, process::Command, time::Duration};

use protoprof::report::{Report, Role, SoakReport, Verdict};

/// `protoprof soak tcp-leak` with the CPU and syscall probes on.
fn soak_cmd(out: &Path, duration: &str, interval: &str, leak: &str) -> Command {
    let mut cmd = Command::new(PROTOPROF);
    cmd.arg("soak")
        .arg("tcp-leak")
        .args(["--duration", duration, "--interval", interval])
        .arg("--out")
        .arg(out)
        .arg("--profiles")
        .arg(workspace().join("profiles"))
        .arg("--endpoint")
        .arg(endpoint())
        .args(["--set", &format!("relay.leak={leak}")])
        .args(["--set", "probes.cpu.enabled=true"])
        .args(["--set", "probes.syscalls=true"]);
    cmd
}

fn read_soak(dir: &Path) -> SoakReport {
    let text = std::fs::read_to_string(dir.join("soak.json")).expect("soak.json");
    serde_json::from_str(&text).expect("soak.json parses")
}

fn last_line(out: &[u8]) -> std::path::PathBuf {
    let text = String::from_utf8_lossy(out);
    std::path::PathBuf::from(text.lines().last().expect("a last line").trim())
}

#[test]
#[ignore = "needs root"]
fn a_three_minute_soak_checkpoints_stays_bounded_and_finds_the_leak() {
    become_subreaper();
    let out = out_dir("soak");
    let result = output_within(
        &mut soak_cmd(&out, "180s", "30s", "fds"),
        COMMAND_LIMIT,
        Stderr::Echo,
    );
    assert!(result.status.success(), "soak failed: {:?}", result.status);
    let dir = last_line(&result.stdout);
    let s = read_soak(&dir);
    assert_eq!(s.status, "completed");
    // 30-s intervals in 180 s, each a few seconds longer for attaching,
    // reading and analysing: 5 or 6.
    let n = s.intervals.len();
    assert!((5..=6).contains(&n), "{n} intervals");
    let mut previous_end = 0.0;
    for (k, i) in s.intervals.iter().enumerate() {
        assert_eq!(i.index, k);
        assert!(i.from_s >= previous_end, "interval {k} overlaps");
        previous_end = i.to_s;
        let length = i.to_s - i.from_s;
        assert!((28.0..=45.0).contains(&length), "interval {k}: {length} s");
        assert_eq!(i.status, "ok", "interval {k}");
        // A full report per interval, with its flame graph.
        let r: Report = protoprof::render::read_json(&dir.join(&i.dir).join("report.json"))
            .expect("interval report");
        assert_eq!(r.run.status, "ok");
        // The machine's load is the interval report's windows, summed up.
        let load = i.machine_load.expect("an interval with windows has a load");
        let windows: f64 = r.workload.windows.iter().map(|w| w.seconds).sum();
        assert!((load.seconds - windows).abs() < 1e-9, "interval {k}");
        assert!(load.steal_cores >= 0.0 && load.other_cores >= 0.0);
        assert!(
            dir.join(&i.dir).join("cpu.svg").is_file(),
            "interval {k}: cpu.svg"
        );
        // 50 churned connections a second, each checked.
        let rate = r.workload.phases[0]
            .churn
            .as_ref()
            .expect("churn figures")
            .connections_per_s;
        assert!((45.0..=55.0).contains(&rate), "interval {k}: {rate}/s");
    }
    assert!(s.elapsed_s <= 200.0, "{} s", s.elapsed_s);
    // One checkpoint per interval, and the final one.
    assert_eq!(s.runner.len(), n + 1);
    // Bounded: the runner's memory after the first interval grows by less
    // than 8 MiB an interval, and the directory by one interval's files
    // (each under 16 MiB) per interval.
    let rss: Vec<u64> = s.runner.iter().map(|r| r.rss_bytes).collect();
    let growth = rss[n].saturating_sub(rss[0]);
    assert!(
        growth <= (8 * n as u64) << 20,
        "runner RSS {rss:?} grew {growth} B"
    );
    // What the runner holds (the allocator's bytes in use, read after the
    // freed pages go back) grows by the soak's thinned readings only: far
    // under 1 MiB an interval.
    let heap: Vec<u64> = s
        .runner
        .iter()
        .map(|r| r.heap.expect("glibc reports the heap").in_use_bytes)
        .collect();
    let held = heap[n].saturating_sub(heap[0]);
    assert!(
        held <= (n as u64) << 20,
        "runner heap in use {heap:?} grew {held} B"
    );
    for w in s.runner.windows(2) {
        let step = w[1].dir_bytes.saturating_sub(w[0].dir_bytes);
        assert!(
            step <= 16 << 20,
            "the directory grew {step} B in one interval"
        );
    }
    assert!(s.runner[n].dir_bytes <= (n as u64 + 1) * (16 << 20));
    // The first interval against the last.
    assert!(dir.join("diff-cpu.svg").is_file(), "diff-cpu.svg");
    assert!(dir.join("soak.md").is_file());
    // One descriptor leaked per connection (about 9000): found over the
    // whole soak, and nothing else.
    for role in [Role::Client, Role::Server] {
        let v = |id: &str| {
            s.leak_verdicts
                .iter()
                .find(|c| c.id == id && c.target == role)
                .unwrap_or_else(|| panic!("{role} {id}"))
        };
        assert_eq!(
            v("leak.fds").verdict,
            Verdict::Fail,
            "{role}: {}",
            v("leak.fds").evidence
        );
        assert_eq!(v("leak.fds-baseline").verdict, Verdict::Fail, "{role}");
        for id in ["leak.threads", "leak.sockets", "leak.sockets-baseline"] {
            assert_eq!(
                v(id).verdict,
                Verdict::Ok,
                "{role} {id}: {}",
                v(id).evidence
            );
        }
        let t = s.targets.iter().find(|t| t.role == role).expect("target");
        let fds = t
            .leak
            .as_ref()
            .and_then(|l| l.resources.iter().find(|r| r.resource == "fds"))
            .and_then(|r| r.per_connection)
            .expect("an fds slope");
        assert!((0.95..=1.05).contains(&fds.estimate), "{role}: {fds:?}");
    }
    assert_clean();
}

#[test]
#[ignore = "needs root"]
fn sigterm_ends_a_soak_with_a_full_report() {
    become_subreaper();
    let out = out_dir("soak-term");
    let child = soak_cmd(&out, "10m", "20s", "none")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start protoprof soak");
    // Two intervals of 20 s and part of a third.
    std::thread::sleep(Duration::from_secs(55));
    // SAFETY: signalling the child we started, by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let result = finish_within(child, COMMAND_LIMIT, Stderr::Keep);
    assert!(result.status.success(), "{:?}", result.status);
    let dir = last_line(&result.stdout);
    let s = read_soak(&dir);
    assert_eq!(s.status, "interrupted");
    assert!(
        (2..=3).contains(&s.intervals.len()),
        "{} intervals",
        s.intervals.len()
    );
    // The unfinished interval is left out, the finished ones judged.
    assert!(s.elapsed_s < 70.0, "{} s", s.elapsed_s);
    assert!(!s.leak_verdicts.is_empty());
    for c in &s.leak_verdicts {
        assert_ne!(
            c.verdict,
            Verdict::Fail,
            "{} {}: {}",
            c.target,
            c.id,
            c.evidence
        );
    }
    assert_clean();
}
