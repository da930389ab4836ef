//! Probe tests against programs with known behaviour. They load eBPF and so
//! need root: `cargo xtask test` runs them as root with `--include-ignored`;
//! elsewhere they show as ignored ("needs root"), never as passed.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use protoprof::{
    capture::{self, CaptureOptions, Probes},
    resolve,
};

const FIXTURE: &str = env!("CARGO_BIN_EXE_protoprof-fixture");

fn fixture(args: &[&str]) -> Child {
    Command::new(FIXTURE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fixture")
}

/// After a test: none of our BPF programs is still loaded (the kernel frees
/// them a moment after their last fd closes).
fn assert_no_programs_left() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = capture::loaded_program_names();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "BPF programs left loaded: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_exited(child: &mut Child) {
    let status = child.wait().expect("wait fixture");
    assert!(status.success(), "fixture failed: {status}");
    assert!(child.try_wait().expect("try_wait").is_some());
}

#[test]
#[ignore = "needs root"]
fn syscalls_are_counted_exactly() {
    const GETPPID: u64 = 1234;
    const WRITES: u64 = 77;
    const SIZE: u64 = 4096;
    let opts = CaptureOptions {
        syscalls: true,
        cpu_frequency_hz: None,
        counters: false,
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let mut child = fixture(&[
        "syscalls",
        "--getppid",
        &GETPPID.to_string(),
        "--writes",
        &WRITES.to_string(),
        "--size",
        &SIZE.to_string(),
    ]);
    let pid = child.id();
    probes.add_target(pid, 0).expect("add target");
    probes.start().expect("start");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"g")
        .expect("go");
    assert_exited(&mut child);
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    drop(probes);

    let row = |name: &str| {
        cap.syscalls
            .iter()
            .find(|r| r.tgid == pid && r.name == name)
            .unwrap_or_else(|| panic!("no {name} row for {pid}: {:?}", cap.syscalls))
    };
    let getppid = row("getppid");
    assert_eq!(getppid.stats.count, GETPPID);
    assert_eq!(getppid.stats.bytes, 0);
    assert_eq!(getppid.histogram.iter().sum::<u64>(), GETPPID);
    assert!(getppid.stats.total_ns > 0 && getppid.stats.max_ns <= getppid.stats.total_ns);
    let write = row("write");
    assert_eq!(write.stats.count, WRITES);
    assert_eq!(write.stats.bytes, WRITES * SIZE);
    assert_eq!(write.stats.errors, 0);
    // Only the fixture was recorded.
    assert!(cap.syscalls.iter().all(|r| r.tgid == pid));
    assert_no_programs_left();
}

#[test]
#[ignore = "needs root"]
fn cpu_samples_find_the_spinning_function() {
    let opts = CaptureOptions {
        syscalls: false,
        cpu_frequency_hz: Some(99),
        counters: true,
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let mut child = fixture(&["spin", "--seconds", "2"]);
    let pid = child.id();
    probes.add_target(pid, 0).expect("add target");
    probes.start().expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"g").expect("go");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("done line");
    assert_eq!(line.trim(), "done");
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    // Symbolize while the fixture is still alive.
    let samples = resolve::resolve(&cap.cpu);
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let total: u64 = samples
        .iter()
        .filter(|s| s.tgid == pid)
        .map(|s| s.count)
        .sum();
    let spinning: u64 = samples
        .iter()
        .filter(|s| {
            s.tgid == pid
                && s.frames
                    .iter()
                    .any(|f| f.name.contains("spin_in_named_function"))
        })
        .map(|s| s.count)
        .sum();
    // 2 s at 99 Hz on the CPU it runs on: about 198 samples.
    assert!(total >= 100, "only {total} samples");
    assert!(
        spinning * 10 >= total * 9,
        "spin_in_named_function in {spinning} of {total} samples"
    );

    // task-clock covered the spin: at least 1.5 s of CPU.
    let counters = &cap.counters[&pid];
    let task_clock = counters
        .iter()
        .find(|c| c.0 == "task_clock_ns")
        .expect("task clock");
    match &task_clock.1 {
        capture::Reading::Value(ns) => assert!(*ns >= 1_500_000_000, "task clock {ns} ns"),
        other => panic!("task clock unavailable: {other:?}"),
    }
    assert_no_programs_left();
}
