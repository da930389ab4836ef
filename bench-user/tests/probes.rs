//! Probe tests against programs with known behaviour. They load eBPF and so
//! need root: `cargo xtask test` runs them as root with `--include-ignored`;
//! elsewhere they show as ignored ("needs root"), never as passed.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use protoprof::{
    capture::{self, AllocOptions, CaptureOptions, CryptoOptions, Graph, Probes},
    resolve,
};

const FIXTURE: &str = env!("CARGO_BIN_EXE_protoprof-fixture");

/// A fixture process, started and past its `ready` line; its stdout is
/// returned for the `done` line.
fn fixture(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    started(std::path::Path::new(FIXTURE), args)
}

/// A program that prints `ready` when set up, started and past that line.
fn started(
    program: &std::path::Path,
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fixture");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready");
    (child, out)
}

/// After a test: none of our BPF programs is still loaded (the kernel frees
/// them a moment after their last fd closes).
fn assert_no_programs_left() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = capture::loaded_program_names().expect("listing loaded BPF programs");
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

/// The fixture exited by itself, successfully, and is reaped: its pid no
/// longer names a child of ours (`try_wait` after `wait` would only replay
/// the cached status, so it proved nothing). A pid reused by an unrelated
/// process has another parent.
fn assert_exited(child: &mut Child) {
    let status = child.wait().expect("wait fixture");
    assert!(status.success(), "fixture failed: {status}");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    // Fields after the command's closing parenthesis: state, ppid, ...
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse::<u32>().ok());
    assert_ne!(
        ppid,
        Some(std::process::id()),
        "fixture pid {} is still our child after wait: {stat}",
        child.id()
    );
}

/// Runs a fixture as the only target of probes loaded with `opts`, from
/// its "go" to its exit; returns its pid, what the probes saw, and how long
/// it ran after "go", µs.
fn measure_fixture(opts: &CaptureOptions, args: &[&str]) -> (u32, capture::Capture, u64) {
    let mut probes = Probes::load(opts).expect("load probes");
    let (mut child, _out) = fixture(args);
    let pid = child.id();
    probes.add_target(pid, 0).expect("add target");
    probes.start().expect("start");
    let started = Instant::now();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"g")
        .expect("go");
    assert_exited(&mut child);
    let elapsed_us = started.elapsed().as_micros() as u64;
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    drop(probes);
    (pid, cap, elapsed_us)
}

#[test]
#[ignore = "needs root"]
fn syscalls_are_counted_exactly() {
    syscalls_counted_exactly(false);
}

#[test]
#[ignore = "needs root"]
fn syscalls_are_counted_and_timed_exactly() {
    syscalls_counted_exactly(true);
}

/// 1234 getppid calls and 77 writes of 4096 bytes, counted (and timed, or
/// not) by the syscalls probe.
fn syscalls_counted_exactly(timed: bool) {
    const GETPPID: u64 = 1234;
    const WRITES: u64 = 77;
    const SIZE: u64 = 4096;
    let opts = CaptureOptions {
        syscalls: true,
        syscall_time: timed,
        ..CaptureOptions::none()
    };
    let (pid, cap, _) = measure_fixture(
        &opts,
        &[
            "syscalls",
            "--getppid",
            &GETPPID.to_string(),
            "--writes",
            &WRITES.to_string(),
            "--size",
            &SIZE.to_string(),
        ],
    );

    let row = |name: &str| {
        cap.syscalls
            .iter()
            .find(|r| r.tgid == pid && r.name == name)
            .unwrap_or_else(|| panic!("no {name} row for {pid}: {:?}", cap.syscalls))
    };
    let getppid = row("getppid");
    assert_eq!(getppid.stats.count, GETPPID);
    assert_eq!(getppid.stats.bytes, 0);
    // One thread, so the per-thread row is the process.
    assert_eq!(getppid.tid, pid);
    let histogram: u64 = cap.syscall_histograms[&(pid, getppid.nr)].iter().sum();
    let total = getppid.stats.total_ns;
    if timed {
        assert_eq!(histogram, GETPPID);
        // Entry to exit of a syscall that does almost nothing: tens of ns
        // at least (two clock reads apart), far under a millisecond each.
        assert!(
            (GETPPID * 20..GETPPID * 1_000_000).contains(&total),
            "{GETPPID} getppid calls took {total} ns"
        );
        assert!(getppid.stats.max_ns <= total && getppid.stats.max_ns * GETPPID >= total);
    } else {
        // Counted at exit alone: no time, no histogram.
        assert_eq!((histogram, total, getppid.stats.max_ns), (0, 0, 0));
    }
    let write = row("write");
    assert_eq!(write.stats.count, WRITES);
    assert_eq!(write.stats.bytes, WRITES * SIZE);
    assert_eq!(write.stats.errors, 0);
    // Only the fixture was recorded.
    assert!(cap.syscalls.iter().all(|r| r.tgid == pid));
    assert_no_programs_left();
}

/// `probes.alternate` takes the main pass's programs off the machine and
/// puts them back: a fixture run while they are detached leaves no record,
/// one run after they are attached again is counted exactly, and the maps
/// kept what they held in between.
#[test]
#[ignore = "needs root"]
fn detached_main_programs_count_nothing_and_count_exactly_again() {
    const GETPPID: u64 = 321;
    let opts = CaptureOptions {
        syscalls: true,
        cpu_frequency_hz: Some(99),
        offcpu: true,
        alternate: true,
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let getppid = GETPPID.to_string();
    let args = [
        "syscalls",
        "--getppid",
        getppid.as_str(),
        "--writes",
        "0",
        "--size",
        "1",
    ];
    let run = |probes: &mut Probes| {
        let (mut child, _out) = fixture(&args);
        let pid = child.id();
        probes.add_target(pid, 0).expect("add target");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"g")
            .expect("go");
        assert_exited(&mut child);
        pid
    };
    let getppid_count = |cap: &capture::Capture, pid: u32| -> u64 {
        cap.syscalls
            .iter()
            .filter(|r| r.tgid == pid && r.name == "getppid")
            .map(|r| r.stats.count)
            .sum()
    };
    probes.start().expect("start");
    let first = run(&mut probes);
    probes.set_main_attached(false).expect("detach");
    // Twice: detaching what is detached is nothing.
    probes.set_main_attached(false).expect("detach again");
    let detached = run(&mut probes);
    probes.set_main_attached(true).expect("attach again");
    let again = run(&mut probes);
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    assert_eq!(getppid_count(&cap, first), GETPPID, "{:?}", cap.syscalls);
    assert_eq!(getppid_count(&cap, detached), 0, "{:?}", cap.syscalls);
    assert!(
        cap.syscalls.iter().all(|r| r.tgid != detached),
        "the run while detached left rows: {:?}",
        cap.syscalls
    );
    assert_eq!(getppid_count(&cap, again), GETPPID, "{:?}", cap.syscalls);
    drop(probes);
    assert_no_programs_left();
}

/// A fixture spinning for 2 s as the only target of the CPU probe (99 Hz,
/// a CPU sample map of `cpu_sample_entries`, 0 = its own size) and the
/// counters, measured from its "go" to its "done"; it is left alive (its
/// `stdin` open) so that its mappings can still be read.
struct Spun {
    probes: Probes,
    child: Child,
    stdin: std::process::ChildStdin,
    pid: u32,
    cap: capture::Capture,
}

impl Spun {
    /// Let the fixture exit, check it did, detach the probes; what they saw.
    fn finish(self) -> capture::Capture {
        let Spun {
            probes,
            mut child,
            stdin,
            cap,
            ..
        } = self;
        drop(stdin);
        assert_exited(&mut child);
        drop(probes);
        cap
    }
}

fn spin_two_seconds(cpu_sample_entries: u32) -> Spun {
    let opts = CaptureOptions {
        cpu_frequency_hz: Some(99),
        counters: true,
        cpu_sample_entries,
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let (mut child, mut out) = fixture(&["spin", "--seconds", "2"]);
    let pid = child.id();
    probes.add_target(pid, 0).expect("add target");
    probes.start().expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"g").expect("go");
    let mut line = String::new();
    out.read_line(&mut line).expect("done line");
    assert_eq!(line.trim(), "done");
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    Spun {
        probes,
        child,
        stdin,
        pid,
        cap,
    }
}

#[test]
#[ignore = "needs root"]
fn cpu_samples_find_the_spinning_function() {
    let spun = spin_two_seconds(0);
    let pid = spun.pid;
    // Symbolize while the fixture is still alive.
    let samples = resolve::resolve(&spun.cap.stacks, &spun.cap.thread_names);
    let process_cpu_ns = process_cpu_ns(pid);
    let cap = spun.finish();

    let total: u64 = samples
        .iter()
        .filter(|s| s.tgid == pid)
        .map(|s| s.weight)
        .sum();
    let spinning: u64 = samples
        .iter()
        .filter(|s| {
            s.tgid == pid
                && s.frames
                    .iter()
                    .any(|f| f.name.contains("spin_in_named_function"))
        })
        .map(|s| s.weight)
        .sum();
    assert!(
        spinning * 10 >= total * 9,
        "spin_in_named_function in {spinning} of {total} samples"
    );

    // How much CPU a 2-s spin gets depends on the machine's load, so the
    // task clock is held against the kernel's own tally of the process's
    // CPU (/proc/PID/stat, in clock ticks: everything but the few ms before
    // the window), and the samples against the task clock (99 Hz while on
    // a CPU: a Poisson count, within four standard deviations).
    let counters = &cap.counters[&pid];
    let task_clock = counters
        .iter()
        .find(|c| c.0 == "task_clock_ns")
        .expect("task clock");
    let capture::Reading::Value(ns) = task_clock.1 else {
        panic!("task clock unavailable: {task_clock:?}");
    };
    let tick_ns = 1_000_000_000 / clock_ticks_per_second();
    assert!(
        ns <= process_cpu_ns + 2 * tick_ns && ns + 2 * tick_ns + 50_000_000 >= process_cpu_ns,
        "task clock {ns} ns, process CPU {process_cpu_ns} ns"
    );
    assert!(ns >= 200_000_000, "the spin got only {ns} ns of CPU");
    let expected = ns as f64 * 99.0 / 1e9;
    assert!(
        (total as f64 - expected).abs() <= 4.0 * expected.sqrt() + 2.0,
        "{total} samples for {ns} ns of CPU at 99 Hz"
    );
    assert_no_programs_left();
}

/// A CPU sample map too small for the pass keeps what it can, and the
/// samples that found it full are counted, not silently dropped: kept and
/// lost together are the samples the task clock predicts.
#[test]
#[ignore = "needs root"]
fn a_full_cpu_sample_map_counts_the_samples_it_could_not_keep() {
    // 2 s of spinning is 20 time slots of 100 ms, each at least one key.
    const ENTRIES: u32 = 4;
    let spun = spin_two_seconds(ENTRIES);
    let pid = spun.pid;
    let cap = spun.finish();

    let kept: Vec<_> = cap
        .stacks
        .iter()
        .filter(|s| s.graph == Graph::Cpu)
        .collect();
    assert!(kept.len() <= ENTRIES as usize, "{} keys kept", kept.len());
    let kept: u64 = kept.iter().map(|s| s.weight).sum();
    let [full] = cap.full_maps.as_slice() else {
        panic!("full maps: {:?}", cap.full_maps);
    };
    assert_eq!((full.map, full.capacity), ("CPU_SAMPLES", ENTRIES));
    assert!(full.lost > 0);
    let capture::Reading::Value(ns) = cap.counters[&pid]
        .iter()
        .find(|c| c.0 == "task_clock_ns")
        .expect("task clock")
        .1
    else {
        panic!("task clock unavailable");
    };
    assert!(ns >= 200_000_000, "the spin got only {ns} ns of CPU");
    let expected = ns as f64 * 99.0 / 1e9;
    let total = (kept + full.lost) as f64;
    assert!(
        (total - expected).abs() <= 4.0 * expected.sqrt() + 2.0,
        "{kept} kept + {} lost samples for {ns} ns of CPU at 99 Hz",
        full.lost
    );
    assert_no_programs_left();
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).expect("clock ticks")
}

/// The CPU time the kernel has charged process `pid` so far (user and
/// system, /proc/PID/stat fields 14 and 15), in ns.
fn process_cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("name") + 1..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks * 1_000_000_000 / clock_ticks_per_second()
}

/// The counters come from /proc at the window's edges and, for threads that
/// ended inside the window, from their exit events: a fixture whose every
/// worker thread starts and ends inside the window has them all counted.
#[test]
#[ignore = "needs root"]
fn counters_count_threads_that_ended_inside_the_window() {
    const THREADS: u64 = 4;
    const SLEEPS: u64 = 200;
    const PAGES: u64 = 256;
    const SPIN_MS: u64 = 100;
    let opts = CaptureOptions {
        counters: true,
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let args = [
        "threads".to_string(),
        "--threads".into(),
        THREADS.to_string(),
        "--sleeps".into(),
        SLEEPS.to_string(),
        "--pages".into(),
        PAGES.to_string(),
        "--spin-ms".into(),
        SPIN_MS.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, stdin) = run_until_done(&mut probes, &args);
    let cap = probes.read().expect("read");
    let process_cpu_ns = process_cpu_ns(child.id());
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let value = |name: &str| match cap.counters[&child.id()].iter().find(|c| c.0 == name) {
        Some((_, capture::Reading::Value(v))) => *v,
        other => panic!("{name}: {other:?}"),
    };
    // Each worker's sleeps are voluntary switches, its pages faults; its
    // CPU time is in the kernel's tally of the process (which keeps the
    // ended threads' time), less the few ms before the window and a tick
    // of accounting lag.
    let switches = value("context_switches");
    assert!(switches >= THREADS * SLEEPS, "{switches} switches");
    let faults = value("page_faults");
    assert!(faults >= THREADS * PAGES, "{faults} faults");
    let cpu = value("task_clock_ns");
    let tick_ns = 1_000_000_000 / clock_ticks_per_second();
    assert!(
        cpu <= process_cpu_ns + 2 * tick_ns && cpu + 2 * tick_ns + 50_000_000 >= process_cpu_ns,
        "task clock {cpu} ns, process CPU {process_cpu_ns} ns"
    );
    // Without the ended threads' exit events it would hold the main
    // thread's few ms only.
    assert!(
        cpu >= THREADS * SPIN_MS * 1_000_000 / 10,
        "task clock {cpu} ns"
    );
    let migrations = value("cpu_migrations");
    assert!(migrations <= switches, "{migrations} migrations");
    // Per thread: the workers, gone before the window closed, are there.
    let workers = cap
        .thread_counters
        .iter()
        .filter(|((pid, tid, name), v)| {
            *pid == child.id() && *tid != child.id() && name == "page_faults" && **v >= PAGES
        })
        .count() as u64;
    assert!(workers >= THREADS, "{workers} workers counted");
    assert_no_programs_left();
}

/// Start a fixture that prints `done` when its work is finished.
fn run_until_done(probes: &mut Probes, args: &[&str]) -> (Child, std::process::ChildStdin) {
    run_program_until_done(probes, std::path::Path::new(FIXTURE), args)
}

/// [`run_until_done`] for any program that speaks the fixture's lines.
fn run_program_until_done(
    probes: &mut Probes,
    program: &std::path::Path,
    args: &[&str],
) -> (Child, std::process::ChildStdin) {
    let (mut child, mut out) = started(program, args);
    probes.add_target(child.id(), 0).expect("add target");
    probes.start().expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"g").expect("go");
    let mut line = String::new();
    out.read_line(&mut line).expect("done line");
    assert_eq!(line.trim(), "done");
    probes.stop().expect("stop");
    (child, stdin)
}

#[test]
#[ignore = "needs root"]
fn allocations_are_counted_exactly_and_sampled_in_proportion() {
    const COUNT: u64 = 20_000;
    const SIZE: u64 = 1000;
    const KEEP: u64 = 5000;
    const SAMPLE: u64 = 64 * 1024;
    let opts = CaptureOptions {
        alloc: Some(AllocOptions {
            sample_bytes: SAMPLE,
            live: true,
        }),
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let (mut child, stdin) = run_until_done(
        &mut probes,
        &[
            "alloc",
            "--count",
            &COUNT.to_string(),
            "--size",
            &SIZE.to_string(),
            "--keep",
            &KEEP.to_string(),
        ],
    );
    let pid = child.id();
    let attached = probes.attached()[&pid].clone();
    let attached = &attached;
    assert!(
        attached
            .alloc
            .iter()
            .any(|a| a.symbol == "malloc" && a.file.contains("libc")),
        "{attached:?}"
    );
    let live = probes.live_bytes().expect("live bytes");
    let cap = probes.read().expect("read");
    let samples = resolve::resolve(&cap.stacks, &cap.thread_names);
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let calls = |role: &str| -> (u64, u64) {
        cap.alloc
            .records
            .iter()
            .filter(|r| r.tgid == pid && r.role == role)
            .fold((0, 0), |a, r| (a.0 + r.calls, a.1 + r.bytes))
    };
    assert_eq!(calls("malloc"), (COUNT, COUNT * SIZE));
    assert_eq!(calls("free").0, COUNT - KEEP);
    // One window: the test opens it once, as phase 0.
    let hist = &cap.alloc.size_histograms[&(pid, "malloc".to_string(), 0)];
    // 1000 bytes falls in [512, 1024): bucket 9.
    assert_eq!(hist[9], COUNT);

    // Sampled bytes estimate the true 20 MB; with ~300 samples a 15%
    // band is several standard deviations wide.
    let truth = (COUNT * SIZE) as f64;
    let sampled: u64 = samples
        .iter()
        .filter(|s| s.tgid == pid && s.graph == Graph::AllocBytes)
        .map(|s| s.weight)
        .sum();
    let ratio = sampled as f64 / truth;
    assert!(
        (0.85..1.15).contains(&ratio),
        "sampled {sampled} of {truth} bytes"
    );
    let in_fixture: u64 = samples
        .iter()
        .filter(|s| {
            s.graph == Graph::AllocBytes
                && s.frames
                    .iter()
                    .any(|f| f.name.contains("allocate_known_sizes"))
        })
        .map(|s| s.weight)
        .sum();
    assert!(
        in_fixture * 10 >= sampled * 9,
        "allocation stacks miss the fixture: {in_fixture} of {sampled}"
    );
    // Count-weighted estimate of the calls, same band.
    let est_calls: u64 = samples
        .iter()
        .filter(|s| s.tgid == pid && s.graph == Graph::AllocCalls)
        .map(|s| s.weight)
        .sum();
    let ratio = est_calls as f64 / COUNT as f64;
    assert!(
        (0.85..1.15).contains(&ratio),
        "estimated {est_calls} of {COUNT} calls"
    );
    // The kept quarter is live: 5 MB, sampled (~75 samples: 25% band).
    let live = *live.get(&pid).expect("live bytes of the fixture") as f64;
    let ratio = live / (KEEP * SIZE) as f64;
    assert!(
        (0.75..1.25).contains(&ratio),
        "live {live} of {} bytes",
        KEEP * SIZE
    );
    assert_no_programs_left();
}

#[test]
#[ignore = "needs root"]
fn crypto_calls_are_counted_exactly_and_the_symbol_reported() {
    const CALLS: u64 = 1000;
    let opts = CaptureOptions {
        crypto: Some(CryptoOptions {
            return_probes: true,
        }),
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let (mut child, stdin) = run_until_done(
        &mut probes,
        &["crypto", "--calls", &CALLS.to_string(), "--size", "1024"],
    );
    let pid = child.id();
    let matched = probes.attached()[&pid].crypto.clone();
    // One uprobe_multi link per program in the one probed file (entry and
    // return), not one per symbol: they detach in one grace period each.
    let notes = probes.attached()[&pid].notes.clone();
    assert!(
        !notes.iter().any(|n| n.contains("uprobe_multi")),
        "{notes:?}"
    );
    assert_eq!(probes.uprobe_links(), 2);
    let cap = probes.read().expect("read");
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let seal: Vec<_> = matched
        .iter()
        .filter(|m| m.symbol.contains("chacha20_poly1305_seal"))
        .collect();
    assert!(
        !seal.is_empty(),
        "no chacha20_poly1305_seal symbol matched: {matched:?}"
    );
    assert!(seal
        .iter()
        .all(|m| m.family.starts_with("ring ChaCha20-Poly1305") && m.return_probe));
    // One window, the first: every call is in it.
    let rec = |id: u32| {
        cap.crypto
            .iter()
            .find(|r| r.tgid == pid && r.symbol == id && r.window == 0)
    };
    let calls: u64 = seal.iter().filter_map(|m| rec(m.id)).map(|r| r.calls).sum();
    let timed: u64 = seal.iter().filter_map(|m| rec(m.id)).map(|r| r.timed).sum();
    assert_eq!(calls, CALLS);
    assert_eq!(timed, CALLS);
    let hist: u64 = seal
        .iter()
        .filter_map(|m| rec(m.id))
        .map(|r| r.histogram.iter().sum::<u64>())
        .sum();
    assert_eq!(hist, CALLS);
    assert_no_programs_left();
}

#[test]
#[ignore = "needs root"]
fn off_cpu_time_matches_a_known_sleep() {
    let opts = CaptureOptions {
        offcpu: true,
        ..CaptureOptions::none()
    };
    let (pid, cap, _) = measure_fixture(&opts, &["sleep", "--ms", "200", "--times", "3"]);

    let off_us: u64 = cap
        .stacks
        .iter()
        .filter(|s| s.tgid == pid && s.graph == Graph::OffCpu)
        .map(|s| s.weight)
        .sum();
    let mut each: Vec<String> = cap
        .stacks
        .iter()
        .filter(|s| s.graph == Graph::OffCpu)
        .map(|s| {
            format!(
                "tgid {} tid {} window {:?} {} µs {} user {} kernel frames",
                s.tgid,
                s.tid,
                s.window,
                s.weight,
                s.user.len(),
                s.kernel.len()
            )
        })
        .collect();
    each.sort();
    assert!(
        (540_000..=660_000).contains(&off_us),
        "off-CPU {off_us} µs for 600 ms of sleep: {each:#?}"
    );
    assert_no_programs_left();
}

/// With stacks walked at most every 10 ms, 300 sleeps of 1 ms still count
/// every interval: the switch-outs between walks are charged to the last
/// walk's stacks, not dropped.
#[test]
#[ignore = "needs root"]
fn off_cpu_time_is_kept_when_stacks_are_walked_less_often() {
    let opts = CaptureOptions {
        offcpu: true,
        offcpu_stack_interval_ns: 10_000_000,
        ..CaptureOptions::none()
    };
    let (pid, cap, elapsed_us) = measure_fixture(&opts, &["sleep", "--ms", "1", "--times", "300"]);

    let stacks: Vec<_> = cap
        .stacks
        .iter()
        .filter(|s| s.tgid == pid && s.graph == Graph::OffCpu)
        .collect();
    let off_us: u64 = stacks.iter().map(|s| s.weight).sum();
    // At least the 300 ms asked for; at most the time the fixture lived.
    assert!(
        (300_000..=elapsed_us).contains(&off_us),
        "off-CPU {off_us} µs for 300 sleeps of 1 ms, fixture lived {elapsed_us} µs"
    );
    // One place blocked in, walked a few dozen times at most: few stacks.
    assert!(
        !stacks.is_empty() && stacks.len() <= 8,
        "{} off-CPU stacks",
        stacks.len()
    );
    assert_no_programs_left();
}

/// Whether a resolved frame is one of our probes' programs.
fn is_probe_frame(name: &str) -> bool {
    name.starts_with("bpf_prog_")
        || capture::PROGRAM_NAMES
            .iter()
            .any(|p| name == *p || (name.len() >= 15 && p.starts_with(name)))
}

#[test]
#[ignore = "needs root"]
fn probe_frames_go_to_the_profiler_not_the_target() {
    const GETPPID: u64 = 3_000_000;
    let opts = CaptureOptions {
        syscalls: true,
        cpu_frequency_hz: Some(499),
        offcpu: true,
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let (mut busy, _busy_out) = fixture(&[
        "syscalls",
        "--getppid",
        &GETPPID.to_string(),
        "--writes",
        "0",
        "--size",
        "1",
    ]);
    let (mut sleeper, _sleeper_out) = fixture(&["sleep", "--ms", "50", "--times", "4"]);
    probes.add_target(busy.id(), 0).expect("add target");
    probes.add_target(sleeper.id(), 1).expect("add target");
    probes.start().expect("start");
    for child in [&mut busy, &mut sleeper] {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"g")
            .expect("go");
    }
    assert_exited(&mut busy);
    assert_exited(&mut sleeper);
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    drop(probes);
    let samples = resolve::resolve(&cap.stacks, &cap.thread_names);
    let categories = protoprof::analyze::attribution::Categories::parse(
        protoprof::analyze::attribution::DEFAULT_ATTRIBUTION,
        "attribution.toml",
    )
    .expect("shipped attribution");
    let names: Vec<&str> = categories.names().collect();

    // No stack of any graph keeps a probe's own frame.
    for s in &samples {
        assert!(
            !s.frames.iter().any(|f| f.kernel && is_probe_frame(&f.name)),
            "{:?} stack holds a probe frame: {:?}",
            s.graph,
            s.frames
        );
    }

    // CPU: the busy fixture spends a good part of each getppid in the
    // syscall probes; those samples end in one `[profiler]` frame and go to
    // the profiler category.
    let cpu: Vec<_> = samples
        .iter()
        .filter(|s| s.graph == Graph::Cpu && s.tgid == busy.id())
        .collect();
    let total: u64 = cpu.iter().map(|s| s.weight).sum();
    let in_probes: Vec<_> = cpu
        .iter()
        .filter(|s| {
            s.frames
                .last()
                .is_some_and(|f| f.kernel && f.name.starts_with("[profiler] pp_sys_e"))
        })
        .collect();
    let probe_weight: u64 = in_probes.iter().map(|s| s.weight).sum();
    assert!(total >= 200, "only {total} cpu samples");
    assert!(
        probe_weight * 20 >= total,
        "{probe_weight} of {total} samples in the syscall probes"
    );
    for s in &in_probes {
        assert_eq!(names[categories.classify(&s.frames)], "profiler");
    }

    // Off-CPU: the sleeper's stacks end where it blocked, in the scheduler.
    let off: Vec<_> = samples
        .iter()
        .filter(|s| s.graph == Graph::OffCpu && s.tgid == sleeper.id())
        .collect();
    let off_us: u64 = off.iter().map(|s| s.weight).sum();
    assert!(
        (180_000..=260_000).contains(&off_us),
        "off-CPU {off_us} µs for 200 ms of sleep"
    );
    for s in &off {
        assert_eq!(
            s.frames.last().map(|f| (f.kernel, &*f.name)),
            Some((true, "__schedule")),
            "{:?}",
            s.frames
        );
    }
    assert_no_programs_left();
}

/// The fixture's `forks` arguments, then `extra`.
fn forks_args(children: u64, getppid: u64, spin_ms: u64, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "forks".to_string(),
        "--children".into(),
        children.to_string(),
        "--getppid".into(),
        getppid.to_string(),
        "--spin-ms".into(),
        spin_ms.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Runs the fixture with `args` as the only target of probes loaded with
/// `opts`, until its children are done; returns its pid, the capture and
/// the samples resolved in its process tree.
fn forks_measured(
    opts: &CaptureOptions,
    args: &[String],
) -> (u32, capture::Capture, Vec<resolve::ResolvedSample>) {
    let mut probes = Probes::load(opts).expect("load probes");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, stdin) = run_until_done(&mut probes, &args);
    let pid = child.id();
    let cap = probes.read().expect("read");
    let samples = resolve::resolve_in_tree(&cap.stacks, &cap.thread_names, &cap.tree);
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);
    (pid, cap, samples)
}

/// With one in-flight slot, every thread's id collides with the first
/// one's: a parent and its three children share it, so all but the first
/// to make a syscall keep theirs in the spill map (as on a machine whose
/// `pid_max` exceeds the slots), and every call is still counted once.
#[test]
#[ignore = "needs root"]
fn syscalls_of_threads_sharing_an_in_flight_slot_are_counted_exactly() {
    const CHILDREN: u64 = 3;
    const GETPPID: u64 = 1000;
    let opts = CaptureOptions {
        syscalls: true,
        // The in-flight slots are the timed programs' own.
        syscall_time: true,
        inflight_slots: 1,
        ..CaptureOptions::none()
    };
    let (pid, cap, _) = forks_measured(&opts, &forks_args(CHILDREN, GETPPID, 0, &[]));
    let getppid = getppid_rows_of(&cap, pid);
    // Each child's calls are its own thread's row: at least two of the
    // three children took the spill map.
    assert_eq!(getppid.len() as u64, CHILDREN, "{getppid:?}");
    for r in &getppid {
        assert_eq!(r.stats.count, GETPPID, "{r:?}");
    }
    assert_eq!(
        cap.syscall_histograms[&(pid, getppid[0].nr)]
            .iter()
            .sum::<u64>(),
        CHILDREN * GETPPID
    );
    assert_no_programs_left();
}

/// The capture's getppid rows, each checked to be counted as `pid`'s.
fn getppid_rows_of(cap: &capture::Capture, pid: u32) -> Vec<&capture::SyscallRecord> {
    let rows: Vec<_> = cap
        .syscalls
        .iter()
        .filter(|r| r.name == "getppid")
        .collect();
    assert!(rows.iter().all(|r| r.tgid == pid), "{rows:?}");
    rows
}

/// A target that forks children (each exiting before the probes are read)
/// is measured with them: their syscalls, CPU samples and CPU time count as
/// the target's, their frames are named from the mappings kept while they
/// lived, and the target's process list names each of them.
fn forked_children_are_followed(exec: bool) {
    const CHILDREN: u64 = 3;
    const GETPPID: u64 = 1000;
    const SPIN_MS: u64 = 300;
    const HZ: u64 = 999;
    let opts = CaptureOptions {
        syscalls: true,
        cpu_frequency_hz: Some(HZ),
        counters: true,
        ..CaptureOptions::none()
    };
    let extra: &[&str] = if exec { &["--exec"] } else { &[] };
    let (pid, cap, samples) = forks_measured(&opts, &forks_args(CHILDREN, GETPPID, SPIN_MS, extra));

    // Every getppid was a child's, each counted as the target's.
    let getppid = getppid_rows_of(&cap, pid);
    assert_eq!(
        getppid.iter().map(|r| r.stats.count).sum::<u64>(),
        CHILDREN * GETPPID
    );

    let processes = protoprof::report::processes::of_target(&cap, pid);
    assert_eq!(processes.len() as u64, 1 + CHILDREN, "{processes:?}");
    assert_eq!((processes[0].pid, processes[0].parent), (pid, None));
    // Each spin is SPIN_MS of wall time; on a busy 2-core machine a child
    // gets at least a fifth of a CPU.
    let min_samples = SPIN_MS * HZ / 1000 / 5;
    for p in &processes[1..] {
        assert_eq!(p.parent, Some(pid), "{p:?}");
        assert!(p.exited, "{p:?}");
        assert_eq!(p.execs, u32::from(exec), "{p:?}");
        assert!(p.exe.ends_with("protoprof-fixture"), "{p:?}");
        // An exec names the process after the file exec'd: /proc/self/exe.
        let comm = if exec { "exe" } else { "protoprof-fixtu" };
        assert_eq!(p.comm, comm, "{p:?}");
        // Its getppid calls and, with exec, the loader's and runtime's.
        assert!(p.syscalls >= GETPPID, "{p:?}");
        assert!(p.cpu_samples >= min_samples, "{p:?}");
    }
    // The children's CPU samples are the target's, named after the
    // function they spun in although they had exited.
    let spinning: u64 = samples
        .iter()
        .filter(|s| {
            s.tgid == pid
                && s.frames
                    .iter()
                    .any(|f| f.name.contains("spin_in_named_function"))
        })
        .map(|s| s.weight)
        .sum();
    let children_samples: u64 = processes[1..].iter().map(|p| p.cpu_samples).sum();
    assert!(
        spinning * 10 >= children_samples * 9,
        "spin_in_named_function in {spinning} of the children's {children_samples} samples"
    );
    // The counters were inherited: the children's CPU time is in them.
    let task_clock = cap.counters[&pid]
        .iter()
        .find(|c| c.0 == "task_clock_ns")
        .expect("task clock");
    match &task_clock.1 {
        capture::Reading::Value(ns) => assert!(
            *ns >= CHILDREN * SPIN_MS * 1_000_000 / 5,
            "task clock {ns} ns"
        ),
        other => panic!("task clock unavailable: {other:?}"),
    }
    assert_no_programs_left();
}

#[test]
#[ignore = "needs root"]
fn forked_children_are_measured_as_their_target() {
    forked_children_are_followed(false);
}

#[test]
#[ignore = "needs root"]
fn forked_and_execed_children_are_measured_as_their_target() {
    forked_children_are_followed(true);
}

/// The allocator uprobes follow a target's children: forked ones (the
/// parent's libc), ones that exec the same program (the links follow the
/// process through the exec), and ones that exec a program with an
/// allocator of its own (statically linked: its malloc is a new file's,
/// found as the watcher reads the new image). Each child sleeps 100 ms
/// before it allocates, longer than its links take (asserted), and then
/// makes exactly 50 allocations of 3 MiB, a size nothing else here asks
/// for: all of them are counted, as the target's.
fn forked_children_allocations_are_counted(exec: &[&str]) {
    const CHILDREN: u64 = 3;
    const MALLOCS: u64 = 50;
    const SETTLE_MS: u64 = 100;
    let opts = CaptureOptions {
        alloc: Some(AllocOptions {
            sample_bytes: 512 * 1024,
            live: false,
        }),
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let mallocs = MALLOCS.to_string();
    let settle = SETTLE_MS.to_string();
    let mut extra = vec!["--mallocs", &mallocs, "--settle-ms", &settle];
    extra.extend_from_slice(exec);
    let args = forks_args(CHILDREN, 0, 0, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, stdin) = run_until_done(&mut probes, &args);
    let pid = child.id();
    let tree = probes.process_tree();
    let notes = probes.attached()[&pid].notes.clone();
    let cap = probes.read().expect("read");
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let children: Vec<_> = tree
        .processes()
        .filter(|p| p.root == pid && p.parent.is_some())
        .collect();
    assert_eq!(children.len() as u64, CHILDREN, "{children:?}");
    for c in &children {
        let after = c.per_call_after_us.expect("per-call probes attached");
        eprintln!(
            "child {}: per-call probes {after} µs after its fork or exec",
            c.pid
        );
        assert!(after < SETTLE_MS * 1000, "{c:?}");
    }
    assert!(
        notes
            .iter()
            .any(|n| n.contains("3 forked or exec'd children")),
        "{notes:?}"
    );
    // One window, phase 0; 3 MiB falls in [2 MiB, 4 MiB): bucket 21.
    let hist = &cap.alloc.size_histograms[&(pid, "malloc".to_string(), 0)];
    assert_eq!(hist[21], CHILDREN * MALLOCS, "{hist:?}");
}

#[test]
#[ignore = "needs root"]
fn allocations_of_forked_children_are_counted() {
    forked_children_allocations_are_counted(&[]);
}

#[test]
#[ignore = "needs root"]
fn allocations_of_forked_and_execed_children_are_counted() {
    forked_children_allocations_are_counted(&["--exec"]);
}

#[test]
#[ignore = "needs root"]
fn allocations_of_a_program_children_exec_are_counted() {
    let program = exec_child_program().display().to_string();
    forked_children_allocations_are_counted(&["--exec-program", &program]);
}

/// `tests/data/exec_child.c`: static, without frame pointers.
fn exec_child_program() -> std::path::PathBuf {
    c_program(
        "exec_child",
        &["-O2", "-static", "-fno-builtin", "-fomit-frame-pointer"],
    )
}

/// A child that execs a program without frame pointers gets its stacks
/// copied (the exec dropped its parent's `UNWIND` entry; the watcher
/// writes one for the new image): its CPU samples name the spinning
/// function and both its callers, as the program's own do when it is the
/// target (`cpu_samples_of_code_without_frame_pointers_name_every_caller`).
#[test]
#[ignore = "needs root and cc"]
fn cpu_samples_of_an_execed_child_without_frame_pointers_name_every_caller() {
    let program = exec_child_program().display().to_string();
    let opts = CaptureOptions {
        cpu_frequency_hz: Some(999),
        ..CaptureOptions::none()
    };
    // 50 ms before the spin: the entry is written as the loader maps.
    let args = forks_args(
        1,
        0,
        500,
        &["--settle-ms", "50", "--exec-program", &program],
    );
    let (pid, _, samples) = forks_measured(&opts, &args);
    let (chained, total) = spin_chain_samples(&samples, pid);
    // 0.5 s at 999 Hz is about 500 samples on an idle CPU.
    assert!(total >= 100, "{total} samples");
    assert!(
        chained * 10 >= total * 9,
        "main > spin_caller > spin_in_named_function in {chained} of {total} samples"
    );
}

/// `tests/data/evp_records.c`, compiled against the system's libcrypto.
/// A missing compiler or missing OpenSSL headers fail the test with one
/// line naming the package (`cargo xtask test` skips the tests named
/// *libcrypto* instead, or fails under CI).
fn evp_records_program() -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/evp_records.c");
    let bin = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("evp_records");
    let install =
        "install them with `cargo xtask setup` as root, or: apt-get install -y libssl-dev gcc";
    let out = match Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-lcrypto")
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("no C compiler (cc: {e}); {install}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("openssl/evp.h"),
        "OpenSSL's headers (libssl-dev) are missing; {install}"
    );
    assert!(out.status.success(), "cc {}: {stderr}", src.display());
    bin
}

/// Runs the EVP program as the only target of probes loaded with `opts`
/// from its go to its `done` line; returns it (alive, waiting for stdin to
/// close), its stdin, and the probes.
fn run_evp_records(
    opts: &CaptureOptions,
    args: &[u64],
) -> (Child, std::process::ChildStdin, Probes) {
    let bin = evp_records_program();
    let mut probes = Probes::load(opts).expect("load probes");
    let args: Vec<String> = args.iter().map(u64::to_string).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, stdin) = run_program_until_done(&mut probes, &bin, &args);
    (child, stdin, probes)
}

/// OpenSSL 3 from the distribution (exported symbols only): EVP_Cipher and
/// EVP_CipherUpdate are counted exactly, EVP_EncryptUpdate, which
/// EVP_CipherUpdate tail-calls, not a second time.
#[test]
#[ignore = "needs root, cc and libssl-dev"]
fn libcrypto_evp_calls_are_counted_once_each() {
    const CIPHER: u64 = 3000;
    const UPDATE: u64 = 2000;
    const SIZE: u64 = 1024;
    let opts = CaptureOptions {
        crypto: Some(CryptoOptions {
            return_probes: true,
        }),
        ..CaptureOptions::none()
    };
    let (mut child, stdin, mut probes) = run_evp_records(&opts, &[CIPHER, UPDATE, SIZE]);
    let pid = child.id();
    let matched = probes.attached()[&pid].crypto.clone();
    let cap = probes.read().expect("read");
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let row = |name: &str| {
        let m = matched
            .iter()
            .find(|m| m.symbol == name)
            .unwrap_or_else(|| panic!("{name} not matched: {matched:?}"));
        assert!(
            m.file.contains("libcrypto.so") && m.return_probe,
            "{name}: {m:?}"
        );
        let recs: Vec<_> = cap
            .crypto
            .iter()
            .filter(|r| r.tgid == pid && r.symbol == m.id)
            .collect();
        let sum = |f: fn(&capture::CryptoRecord) -> u64| recs.iter().map(|r| f(r)).sum::<u64>();
        (sum(|r| r.calls), sum(|r| r.timed), sum(|r| r.length_sum))
    };
    assert_eq!(row("EVP_Cipher"), (CIPHER, CIPHER, CIPHER * SIZE));
    assert_eq!(row("EVP_CipherUpdate"), (UPDATE, UPDATE, UPDATE * SIZE));
    assert_eq!(row("EVP_EncryptUpdate"), (0, 0, 0));
    assert_eq!(row("EVP_DecryptUpdate"), (0, 0, 0));
    assert_no_programs_left();
}

/// Samples in libcrypto's stripped AES code are named
/// `libcrypto.so.3+0x…` (not after a neighbouring exported symbol) and
/// counted as crypto: crypto's share of the samples agrees, within
/// sampling error, with the share whose instruction lies in libcrypto.
#[test]
#[ignore = "needs root, cc and libssl-dev"]
fn libcrypto_unnamed_code_counts_as_crypto() {
    use protoprof::analyze::attribution::{Categories, DEFAULT_ATTRIBUTION};
    const HZ: u64 = 499;
    let opts = CaptureOptions {
        cpu_frequency_hz: Some(HZ),
        ..CaptureOptions::none()
    };
    // About a second of AES-256-CTR here (8 GB/s).
    let (mut child, stdin, mut probes) = run_evp_records(&opts, &[500_000, 0, 16384]);
    let pid = child.id();
    let cap = probes.read().expect("read");
    // Symbolize and read the mappings while the program still lives.
    let samples = resolve::resolve(&cap.stacks, &cap.thread_names);
    let libcrypto: Vec<_> = capture::elf::executable_mappings(pid)
        .into_iter()
        .filter(|m| {
            m.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libcrypto.so"))
        })
        .collect();
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);
    assert!(!libcrypto.is_empty(), "libcrypto is not mapped");
    let lib = capture::elf::ElfFile::read(&libcrypto[0].path).expect("read libcrypto");
    let lib_name = libcrypto[0]
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let categories = Categories::parse(DEFAULT_ATTRIBUTION, "attribution.toml").expect("parses");
    let crypto = categories
        .names()
        .position(|n| n == "crypto")
        .expect("crypto category");
    let (mut total, mut in_crypto, mut in_lib, mut unnamed, mut in_kernel) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (record, s) in cap.stacks.iter().zip(&samples) {
        if record.tgid != pid || record.graph != Graph::Cpu {
            continue;
        }
        total += s.weight;
        if categories.classify(&s.frames) == crypto {
            in_crypto += s.weight;
        }
        // A sample taken in the kernel (an interrupt, a page fault) ran
        // the kernel's code, not libcrypto's.
        if !record.kernel.is_empty() {
            in_kernel += s.weight;
            continue;
        }
        let Some(&ip) = record.user.first() else {
            continue;
        };
        let Some(m) = libcrypto.iter().find(|m| ip >= m.start && ip < m.end) else {
            continue;
        };
        in_lib += s.weight;
        // The innermost user frame names the sampled instruction.
        let leaf = &s.frames[..s.frames.iter().filter(|f| !f.kernel).count()]
            .last()
            .expect("a user frame")
            .name;
        let vaddr = lib
            .address_of_offset(ip - m.start + m.file_offset)
            .expect("address in libcrypto");
        match lib.function_at(vaddr) {
            // An exported function that covers the address names it.
            Some(f) if f.size > 0 => assert_eq!(&**leaf, f.name.as_str(), "{vaddr:#x}"),
            // Anything else is libcrypto's unnamed code.
            _ => {
                assert_eq!(&**leaf, format!("{lib_name}+{vaddr:#x}").as_str());
                unnamed += s.weight;
            }
        }
    }
    // About a second at 499 Hz.
    assert!(total >= 200, "only {total} samples");
    // The program does little but encrypt, and that in unnamed assembly.
    assert!(
        in_lib * 10 >= total * 8,
        "{in_lib} of {total} samples in libcrypto"
    );
    assert!(
        unnamed * 10 >= in_lib * 8,
        "{unnamed} of {in_lib} libcrypto samples unnamed"
    );
    eprintln!(
        "{total} samples: {in_lib} in libcrypto ({unnamed} unnamed), {in_kernel} in the kernel, {in_crypto} crypto"
    );
    // The shares come from the same samples and differ only by samples
    // whose category another frame decides (the kernel's, in the few taken
    // in the kernel). Bound: 3 binomial standard errors of the libcrypto
    // share, its variance at least that of one sample in n, and one sample.
    let n = total as f64;
    let (p_lib, p_crypto) = (in_lib as f64 / n, in_crypto as f64 / n);
    let variance = (p_lib * (1.0 - p_lib)).max(1.0 / n) / n;
    let bound = 3.0 * variance.sqrt() + 1.0 / n;
    assert!(
        (p_crypto - p_lib).abs() <= bound,
        "crypto {in_crypto} vs libcrypto {in_lib} of {total} samples (bound {bound:.4})"
    );
    assert_no_programs_left();
}

/// `tests/data/NAME.c`, compiled with `flags` (a missing compiler fails the
/// test with one line naming the package).
fn c_program(name: &str, flags: &[&str]) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.c"));
    let bin = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let out = match Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "no C compiler (cc: {e}); install it with `cargo xtask setup` as root, or: apt-get install -y gcc"
        ),
    };
    assert!(
        out.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// The names of a resolved stack, outermost first, for messages.
fn frame_names(s: &resolve::ResolvedSample) -> Vec<&str> {
    s.frames.iter().map(|f| &*f.name).collect()
}

/// A C program built with frame pointers, blocked in glibc's read(): glibc
/// sets up no frame there, so a frame-pointer walk skipped read's caller
/// in about half the stacks (the hole #12 names). Its stack is copied and
/// unwound from .eh_frame instead: every off-CPU stack in read names the
/// caller, under its own caller.
#[test]
#[ignore = "needs root and cc"]
fn a_c_program_blocked_in_read_names_its_caller_in_every_off_cpu_stack() {
    use std::io::Read;
    const BYTES: usize = 20;
    let bin = c_program("read_blocked", &["-O2", "-fno-omit-frame-pointer"]);
    let opts = CaptureOptions {
        offcpu: true,
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn read_blocked");
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout");
    let mut b = [0u8; 1];
    out.read_exact(&mut b).expect("ready byte");
    assert_eq!(&b, b"r");
    probes.add_target(pid, 0).expect("add target");
    probes.start().expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    for _ in 0..BYTES {
        std::thread::sleep(Duration::from_millis(20));
        stdin.write_all(b"x").expect("byte");
        out.read_exact(&mut b).expect("answer");
        assert_eq!(&b, b"k");
    }
    std::thread::sleep(Duration::from_millis(20));
    probes.stop().expect("stop");
    let cap = probes.read().expect("read");
    // Symbolize while the program is still alive.
    let samples = resolve::resolve(&cap.stacks, &cap.thread_names);
    stdin.write_all(b"q").expect("quit");
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);

    let in_read: Vec<_> = samples
        .iter()
        .filter(|s| {
            s.tgid == pid
                && s.graph == Graph::OffCpu
                && s.frames
                    .iter()
                    .any(|f| !f.kernel && f.name.ends_with("read"))
        })
        .collect();
    // 21 waits of about 20 ms each.
    let read_us: u64 = in_read.iter().map(|s| s.weight).sum();
    assert!(
        read_us >= 300_000,
        "{read_us} µs off CPU in read over {} stacks",
        in_read.len()
    );
    for s in &in_read {
        let names = frame_names(s);
        let user: Vec<&str> = s
            .frames
            .iter()
            .filter(|f| !f.kernel)
            .map(|f| &*f.name)
            .collect();
        let at = |name: &str| user.iter().position(|n| *n == name);
        let (Some(serve), Some(wait)) = (at("serve"), at("wait_for_byte")) else {
            panic!("a stack in read without its callers: {names:?}");
        };
        assert!(serve < wait, "callers out of order: {names:?}");
        assert!(
            user[wait + 1..].iter().any(|n| n.ends_with("read")),
            "read is not below wait_for_byte: {names:?}"
        );
    }
    assert_no_programs_left();
}

/// Samples of `pid` in `samples` that name `spin_in_named_function` under
/// `spin_caller` under `main`, and all of `pid`'s CPU samples.
fn spin_chain_samples(samples: &[resolve::ResolvedSample], pid: u32) -> (u64, u64) {
    let mine = samples
        .iter()
        .filter(|s| s.tgid == pid && s.graph == Graph::Cpu);
    let total: u64 = mine.clone().map(|s| s.weight).sum();
    let chained: u64 = mine
        .filter(|s| {
            let names = frame_names(s);
            let at = |name: &str| names.iter().position(|n| *n == name);
            matches!(
                (at("main"), at("spin_caller"), at("spin_in_named_function")),
                (Some(a), Some(b), Some(c)) if a < b && b < c
            )
        })
        .map(|s| s.weight)
        .sum();
    (chained, total)
}

/// Spin for 2 s in the no-frame-pointer C program under cpu probes with
/// `unwind`; returns (samples naming the whole chain, all samples).
fn spin_without_frame_pointers(unwind: capture::UnwindMode) -> (u64, u64) {
    let bin = c_program("spin_no_frame_pointers", &["-O2", "-fomit-frame-pointer"]);
    let opts = CaptureOptions {
        cpu_frequency_hz: Some(99),
        unwind,
        ..CaptureOptions::none()
    };
    let mut probes = Probes::load(&opts).expect("load probes");
    let (mut child, stdin) = run_program_until_done(&mut probes, &bin, &["2"]);
    let pid = child.id();
    let cap = probes.read().expect("read");
    let samples = resolve::resolve(&cap.stacks, &cap.thread_names);
    drop(stdin);
    assert_exited(&mut child);
    drop(probes);
    assert_no_programs_left();
    spin_chain_samples(&samples, pid)
}

/// The spinning-function test on code built without frame pointers: the
/// copied stacks, unwound from .eh_frame, name the spinning function and
/// both its callers in nine samples of ten; walked by frame pointer, the
/// same program's stacks lose the callers (which shows the test can tell).
#[test]
#[ignore = "needs root and cc"]
fn cpu_samples_of_code_without_frame_pointers_name_every_caller() {
    let (chained, total) = spin_without_frame_pointers(capture::UnwindMode::Auto);
    // 2 s at 99 Hz is about 200 samples on an idle CPU.
    assert!(total >= 50, "{total} samples");
    assert!(
        chained * 10 >= total * 9,
        "main > spin_caller > spin_in_named_function in {chained} of {total} samples"
    );
    let (walked, total) = spin_without_frame_pointers(capture::UnwindMode::FramePointers);
    assert!(
        walked * 2 < total,
        "walked by frame pointer, the whole chain in {walked} of {total} samples: \
         the program keeps a frame chain after all"
    );
}
