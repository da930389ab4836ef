//! `protoprof soak`: one chain, the profile's passes run again and again
//! for hours, with the probes on.
//!
//! The chain starts once (as for `profile`), then intervals follow back to
//! back until the soak's duration is used up, Ctrl-C or SIGTERM arrives,
//! an endpoint exits, or bytes go missing. An interval is one `profile` run
//! of the same chain: the main pass and, where the profile has one, the
//! per-call pass, with the phases scaled to the interval's length; it gets
//! a full report of its own (flame graphs, checklist) in `intervals/NNN/`.
//! After every interval the soak's own report, `soak.json` and `soak.md`,
//! is rewritten (the checkpoint): a killed soak keeps every finished
//! interval, and Ctrl-C or SIGTERM ends it with a full one.
//!
//! Bounded as it goes: each interval's stacks and samples are dropped once
//! its report is written; the soak keeps a few numbers per interval and
//! the resource readings thinned to at most [`MAX_READINGS`] per target,
//! from which the leak verdicts of the whole soak are judged. The disk
//! grows by one interval directory per interval, and the number of
//! intervals is capped ([`MAX_INTERVALS`]).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{
    assemble, chain_facts, draw_graphs, drive_runtime, identify, io_err, measure_passes,
    note_signals, plan, return_to_baseline, setup_phase, start_chain, stop_chain, watch_signals,
    which, write_outputs, Assembly, Driving, RunError, RunLog, RunOptions, StartedChain, SIGNALLED,
};
use crate::{
    analyze,
    capture::resources::{Held, Sampler, TimedSample},
    chain::{network::NetworkMode, Role},
    compare::{diff, RunSet},
    drive::{self, Sink},
    live::{self, Live},
    render,
    report::{
        self, IntervalTarget, Report, RunnerHeap, RunnerReading, SoakInterval, SoakPhase,
        SoakReport, SoakTarget, SOAK_SCHEMA_VERSION,
    },
};

/// Most intervals in one soak: a longer soak needs longer intervals.
pub const MAX_INTERVALS: usize = 1000;
/// Shortest interval: attaching, detaching and analysing take a few
/// seconds, which a shorter interval would mostly be.
pub const MIN_INTERVAL_S: f64 = 20.0;
/// Most resource readings the soak keeps per target for its leak figures.
pub const MAX_READINGS: usize = 7200;
/// Resource readings inside an interval (each interval's report keeps all).
const READING_EVERY: Duration = Duration::from_secs(1);

/// How long, and how finely.
#[derive(Debug, Clone, Copy)]
pub struct SoakOptions {
    /// The whole soak, seconds.
    pub duration_s: f64,
    /// One interval (one report, one flame graph per graph), seconds;
    /// `None`: a 24th of the soak, between 1 minute and 1 hour.
    pub interval_s: Option<f64>,
}

impl SoakOptions {
    /// The interval's length, or the one-line reason it cannot be.
    pub fn interval(&self) -> Result<f64, String> {
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err("--duration: give a length above 0, e.g. 24h, 90m or 600s".into());
        }
        let i = self.interval_s.unwrap_or_else(|| {
            (self.duration_s / 24.0)
                .clamp(60.0, 3600.0)
                .min(self.duration_s)
        });
        if !(i.is_finite() && i >= MIN_INTERVAL_S) {
            return Err(format!(
                "--interval: give at least {MIN_INTERVAL_S} s (attaching and analysing take a few seconds per interval)"
            ));
        }
        if i > self.duration_s {
            return Err(format!(
                "--interval: {i} s is longer than the soak ({} s); give a shorter interval or a longer --duration",
                self.duration_s
            ));
        }
        if self.duration_s / i > MAX_INTERVALS as f64 {
            return Err(format!(
                "--interval: {} intervals of {i} s; at most {MAX_INTERVALS} per soak, give a longer interval",
                (self.duration_s / i).ceil()
            ));
        }
        Ok(i)
    }
}

/// Where the soak wrote, and its report.
#[derive(Debug)]
pub struct SoakOutcome {
    pub dir: PathBuf,
    pub report: SoakReport,
}

/// Parse "24h", "90m", "600s", "600" (seconds) or "1.5h".
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.chars().last() {
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('s') => (&t[..t.len() - 1], 1.0),
        _ => (t, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * scale),
        _ => Err(format!(
            "{text:?}: give a length above 0 such as 24h, 90m, 600s or 600"
        )),
    }
}

/// Run a soak: see the module's documentation.
pub fn soak(opts: &RunOptions, soak: &SoakOptions) -> Result<SoakOutcome, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let interval_s = soak.interval().map_err(RunError::Usage)?;
    // One interval is one pass set: with a per-call pass apart, each pass
    // gets half the interval.
    // Read once: the spec checked here and the one the soak runs are the
    // same text.
    let mut opts = opts.clone();
    opts.read_inputs()?;
    let opts = &opts;
    let spec = opts.spec()?;
    if spec.network.mode == NetworkMode::Namespaces {
        return Err(RunError::Usage(
            "network.mode: soaks run on loopback; set network.mode = \"loopback\"".into(),
        ));
    }
    let passes = if spec.probes.per_call_pass && spec.probes.capture_options().has_per_call() {
        2.0
    } else {
        1.0
    };
    let mut run_opts = opts.clone();
    run_opts.duration = Some(interval_s / passes);
    let plan = plan(&run_opts)?;
    let programs: Vec<(Role, PathBuf)> = plan
        .launches
        .iter()
        .map(|l| (l.role, which(&l.program)))
        .collect();
    let id = identify(opts, &plan.spec, &programs, started_at)?;
    let dir = id.dir.clone();
    let mut log = RunLog {
        file: std::fs::File::create(dir.join("run.log")).ok(),
        start: started,
    };
    log.line(&format!(
        "soak of {} for {} s in intervals of {interval_s} s",
        plan.spec.name, soak.duration_s
    ));
    note_signals()?;
    let rt = drive_runtime()?;
    let cancel = CancellationToken::new();
    let signal_task = watch_signals(&rt, &cancel);
    if SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(RunError::Interrupted);
    }
    let fd_limit = drive::raise_fd_limit().map_err(io_err("raising RLIMIT_NOFILE"))?;
    let (mut chain, commands) = start_chain(&plan, &dir, &cancel, &mut log)?;
    let roles: Vec<(report::Role, u32)> = commands.iter().map(|c| (c.0.into(), c.1)).collect();
    let phases = plan.spec.phase_options();
    let sink = rt
        .block_on(Sink::start((plan.sink_ip, 0).into()))
        .map_err(io_err("starting the sink"))?;
    // Quiet: a soak prints one line per interval instead.
    let shown = live::Running::start(
        &live::LiveOptions {
            quiet: true,
            ..opts.live.clone()
        },
        Live::new(&plan.spec.name, Vec::new()),
    )
    .map_err(|e| RunError::Usage(e.to_string()))?;
    let setup = setup_phase(&plan, &rt, &sink, &cancel, &mut log)?;
    let held_before: Vec<(u32, Option<Held>)> = roles
        .iter()
        .map(|&(_, pid)| (pid, Held::read(pid)))
        .collect();
    let capture_opts = plan.spec.probes.capture_options();
    let started_chain = StartedChain::new(&plan, &commands, &fd_limit);
    let step_s = (soak.duration_s / MAX_READINGS as f64).max(READING_EVERY.as_secs_f64());
    let mut state = SoakState {
        report: SoakReport {
            schema_version: SOAK_SCHEMA_VERSION,
            profile: plan.spec.name.clone(),
            protocol: plan.spec.protocol.clone(),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: crate::machine::this_machine(),
            planned_s: soak.duration_s,
            interval_s,
            elapsed_s: 0.0,
            status: "running".into(),
            intervals: Vec::new(),
            targets: Vec::new(),
            leak_verdicts: Vec::new(),
            resource_step_s: step_s,
            runner: Vec::new(),
            outputs: Default::default(),
        },
        readings: Vec::new(),
        last_kept: std::collections::BTreeMap::new(),
        dir: dir.clone(),
        started,
        roles: roles.clone(),
    };

    let mut failure: Option<RunError> = None;
    let mut stop_status: Option<String> = None;
    // An interval is started only when it can end by the deadline, judged
    // by the longest one so far (attaching, reading and analysing make each
    // a few seconds longer than asked): the soak ends within its duration
    // plus the final report, never half an interval past it. The first
    // interval always runs.
    let mut longest_s = interval_s;
    for index in 0.. {
        if index > 0 && started.elapsed().as_secs_f64() + longest_s > soak.duration_s {
            break;
        }
        let from_s = started.elapsed().as_secs_f64();
        let sampler = Sampler::start(
            started_chain.pids.clone(),
            started,
            READING_EVERY,
            Some(sink.accepted()),
        );
        let mut ctx = started_chain.main_pass(Driving {
            rt: &rt,
            sink: &sink,
            phases: &phases,
            plan: &plan,
            roles: &roles,
            cancel: &cancel,
            started,
            network: None,
            live: &shown.live,
        });
        let mut exited = || chain.first_exited();
        log.line(&format!("interval {index}"));
        let measured = measure_passes(&mut ctx, &plan.spec, &mut exited, &mut log);
        let samples = sampler.finish();
        let measured = match measured {
            Ok(m) => m,
            Err(RunError::Interrupted) => {
                stop_status = Some("interrupted".into());
                break;
            }
            Err(e) => {
                stop_status = Some(format!("failed: interval {index}: {e}"));
                failure = Some(e);
                break;
            }
        };
        if cancel.is_cancelled() {
            stop_status = Some("interrupted".into());
            break;
        }
        let interval_dir = dir.join("intervals").join(format!("{index:03}"));
        std::fs::create_dir_all(&interval_dir)
            .map_err(io_err(format!("creating {}", interval_dir.display())))?;
        let facts = chain_facts(&commands, &[]);
        let graphs = draw_graphs(
            &plan.spec,
            &capture_opts,
            &measured.samples,
            &commands,
            &interval_dir,
        )?;
        let mut interval_id = id.clone();
        interval_id.dir = interval_dir.clone();
        let mut r = assemble(
            &plan.spec,
            &plan.categories,
            interval_id,
            Assembly {
                started,
                started_at,
                capture_opts: &capture_opts,
                facts: &facts,
                control: &[],
                setup: if index == 0 { setup.as_ref() } else { None },
                measured: &measured,
                graphs: &graphs,
            },
        );
        r.resources = Some(report::resources(
            &samples,
            &roles,
            READING_EVERY.as_secs_f64(),
        ));
        r.sweeps = measured.main.sweeps.clone();
        analyze::judge(&mut r, &plan.checklist);
        write_outputs(&r, &graphs.graphs, &interval_dir)?;
        drop(graphs);
        drop(measured);
        let to_s = started.elapsed().as_secs_f64();
        longest_s = longest_s.max(to_s - from_s);
        state.add_interval(index, from_s, to_s, &r, &samples);
        let integrity_ok = r.workload.integrity == report::IntegrityStatus::Ok;
        let status = r.run.status.clone();
        eprintln!(
            "soak: interval {index} ({from_s:.0}–{to_s:.0} s of {:.0}): {status}",
            soak.duration_s
        );
        state.checkpoint(&r, &plan.checklist, None, "running")?;
        if !integrity_ok || status != "ok" {
            // Lost bytes or a dead endpoint end the soak loudly, with the
            // interval's report and the checkpoint written.
            stop_status = Some(format!("failed: interval {index}: {status}"));
            failure = Some(RunError::Integrity {
                dir: interval_dir,
                details: status,
            });
            break;
        }
    }
    rt.block_on(sink.stop());
    let returned = return_to_baseline(&held_before);
    let facts = stop_chain(&mut chain, &commands);
    signal_task.abort();
    drop(rt);
    log.line("endpoints stopped, probes detached");
    let status = stop_status.unwrap_or_else(|| "completed".into());
    // The last interval's report carries the targets the soak-wide leak
    // rules are judged on; without any interval there is nothing to judge.
    let last = state
        .report
        .intervals
        .last()
        .map(|i| dir.join(&i.dir).join("report.json"));
    match last.and_then(|p| render::read_json(&p).ok()) {
        Some(last) => state.checkpoint(&last, &plan.checklist, Some(&returned), &status)?,
        None => {
            state.report.status = status.clone();
            state.write()?;
        }
    }
    if let Some((role, how)) = facts
        .iter()
        .find_map(|f| f.exited.clone().map(|h| (f.role, h)))
    {
        log.line(&format!("{role} endpoint exited: {how}"));
    }
    log.line(&format!("soak ended: {status}"));
    eprintln!("soak: {status}; {}", dir.join("soak.md").display());
    match failure {
        Some(e) => Err(e),
        None => Ok(SoakOutcome {
            dir,
            report: state.report,
        }),
    }
}

/// What the soak keeps between intervals.
struct SoakState {
    report: SoakReport,
    /// Resource readings thinned to one per `resource_step_s` per target.
    readings: Vec<TimedSample>,
    last_kept: std::collections::BTreeMap<u32, f64>,
    dir: PathBuf,
    started: Instant,
    roles: Vec<(report::Role, u32)>,
}

impl SoakState {
    fn add_interval(
        &mut self,
        index: usize,
        from_s: f64,
        to_s: f64,
        r: &Report,
        samples: &[TimedSample],
    ) {
        let step = self.report.resource_step_s;
        for s in samples {
            let due = self
                .last_kept
                .get(&s.pid)
                .is_none_or(|&last| s.t_s - last >= step);
            if due {
                self.last_kept.insert(s.pid, s.t_s);
                self.readings.push(*s);
            }
        }
        let phases = r
            .workload
            .phases
            .iter()
            .map(|p| SoakPhase {
                pattern: p.label(),
                up_bps: p.throughput.up_bps_mean,
                down_bps: p.throughput.down_bps_mean,
                round_trips_per_s: if p.measured_s > 0.0 {
                    p.round_trips as f64 / p.measured_s
                } else {
                    0.0
                },
                p99_us: p
                    .latency_us
                    .as_ref()
                    .and_then(|l| l.percentile("p99"))
                    .and_then(|p| p.value()),
            })
            .collect();
        let targets = self
            .roles
            .iter()
            .map(|&(role, pid)| {
                let own: Vec<&TimedSample> = samples.iter().filter(|s| s.pid == pid).collect();
                let last = own.last();
                let cpu = match (own.first(), own.last()) {
                    (Some(a), Some(b)) if b.t_s > a.t_s => {
                        Some((b.sample.cpu_s - a.sample.cpu_s) / (b.t_s - a.t_s))
                    }
                    _ => None,
                };
                let live = r
                    .targets
                    .iter()
                    .find(|t| t.pid == pid)
                    .and_then(|t| t.alloc.as_ref())
                    .and_then(|a| a.live_bytes.last())
                    .map(|l| l.bytes);
                IntervalTarget {
                    role,
                    rss_bytes: last.map_or(0, |s| s.sample.rss_bytes),
                    fds: last.map_or(0, |s| s.sample.fds.total()),
                    threads: last.map_or(0, |s| s.sample.threads),
                    tcp_sockets: last.map_or(0, |s| s.sample.tcp.total()),
                    cpu_cores: cpu,
                    live_heap_bytes: live,
                }
            })
            .collect();
        let failed_rules = r
            .checklist
            .iter()
            .filter(|c| c.verdict == report::Verdict::Fail)
            .map(|c| format!("{} {}", c.target, c.id))
            .collect();
        self.report.intervals.push(SoakInterval {
            index,
            dir: format!("intervals/{index:03}"),
            from_s,
            to_s,
            status: r.run.status.clone(),
            phases,
            targets,
            failed_rules,
            machine_load: report::IntervalLoad::over(&r.workload.windows),
        });
    }

    /// Judge the leak rules over the whole soak so far (on a copy of the
    /// latest interval's report, its resources replaced by the soak's),
    /// draw the first interval against the latest, write soak.json and
    /// soak.md.
    fn checkpoint(
        &mut self,
        latest: &Report,
        checklist: &analyze::checklist::Checklist,
        returned: Option<&[(u32, report::BaselineCheck)]>,
        status: &str,
    ) -> Result<(), RunError> {
        let mut whole = latest.clone();
        let mut resources =
            report::resources(&self.readings, &self.roles, self.report.resource_step_s);
        for t in resources.targets.iter_mut() {
            t.return_to_baseline =
                returned.and_then(|r| r.iter().find(|r| r.0 == t.pid).map(|r| r.1));
        }
        whole.resources = Some(resources);
        for t in whole.targets.iter_mut() {
            t.leak = None;
        }
        analyze::judge(&mut whole, checklist);
        self.report.leak_verdicts = whole
            .checklist
            .into_iter()
            .filter(|c| c.id.starts_with("leak."))
            .collect();
        self.report.targets = whole
            .targets
            .iter()
            .map(|t| SoakTarget {
                role: t.role,
                pid: t.pid,
                leak: t.leak.clone(),
            })
            .collect();
        self.diff_first_latest()?;
        self.report.status = status.to_string();
        self.report.elapsed_s = self.started.elapsed().as_secs_f64();
        // What the interval freed goes back first, so the reading shows what
        // the runner holds from one interval to the next.
        release_freed_memory();
        self.report.runner.push(RunnerReading {
            t_s: self.report.elapsed_s,
            rss_bytes: own_rss(),
            dir_bytes: dir_bytes(&self.dir),
            heap: own_heap(),
        });
        self.write()
    }

    /// diff-cpu.svg: the latest interval's CPU stacks against the first's
    /// (red: grew since the first interval).
    fn diff_first_latest(&mut self) -> Result<(), RunError> {
        let (Some(first), Some(last)) =
            (self.report.intervals.first(), self.report.intervals.last())
        else {
            return Ok(());
        };
        if first.index == last.index {
            return Ok(());
        }
        let load = |d: &str| RunSet::load(&self.dir.join(d));
        let (Ok(a), Ok(b)) = (load(&first.dir), load(&last.dir)) else {
            return Ok(());
        };
        match diff::write_cpu_diff(&a, &b, &self.dir) {
            Ok(outputs) => {
                self.report.outputs = outputs;
                Ok(())
            }
            // No CPU graph (cpu probe off): nothing to difference.
            Err(_) => Ok(()),
        }
    }

    /// soak.json then soak.md, each written whole and renamed into place,
    /// so a soak killed mid-write leaves the previous checkpoint.
    fn write(&self) -> Result<(), RunError> {
        let json = serde_json::to_string_pretty(&self.report).map_err(|e| RunError::Io {
            what: "serializing soak.json".into(),
            source: std::io::Error::other(e),
        })?;
        replace(&self.dir.join("soak.json"), json.as_bytes())?;
        replace(
            &self.dir.join("soak.md"),
            render::soak::markdown(&self.report).as_bytes(),
        )
    }
}

fn replace(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("writing {}", path.display())))
}

/// The runner's own resident memory.
fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Hands the pages of freed chunks back to the system. An interval frees
/// nearly everything it allocated (its samples, stacks and report), but
/// glibc's arenas keep the freed chunks: measured on a tuic soak with
/// 120-s intervals, 4 MiB of heap in use against 129 MiB free and held,
/// the runner's RSS growing from interval to interval with it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free memory of the arenas to the
    // system under the allocator's own locks; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// The runner's heap as glibc's allocator counts it, over all arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn own_heap() -> Option<RunnerHeap> {
    // SAFETY: mallinfo2 takes no arguments, only reads the allocator's own
    // statistics under its locks and returns them by value.
    let m = unsafe { libc::mallinfo2() };
    Some(RunnerHeap {
        in_use_bytes: (m.uordblks + m.hblkhd) as u64,
        free_held_bytes: m.fordblks as u64,
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn own_heap() -> Option<RunnerHeap> {
    None
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h"), Ok(86400.0));
        assert_eq!(parse_duration("90m"), Ok(5400.0));
        assert_eq!(parse_duration("1.5h"), Ok(5400.0));
        assert_eq!(parse_duration("600s"), Ok(600.0));
        assert_eq!(parse_duration("600"), Ok(600.0));
        for bad in ["", "h", "-1h", "0", "x", "nanh", "3d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn intervals_are_checked() {
        let o = |d: f64, i: Option<f64>| SoakOptions {
            duration_s: d,
            interval_s: i,
        };
        // A 24th of the soak, between a minute and an hour.
        assert_eq!(o(86400.0, None).interval(), Ok(3600.0));
        assert_eq!(o(7200.0, None).interval(), Ok(300.0));
        assert_eq!(o(600.0, None).interval(), Ok(60.0));
        assert_eq!(o(180.0, Some(30.0)).interval(), Ok(30.0));
        assert!(o(180.0, Some(5.0)).interval().is_err());
        assert!(o(30.0, Some(60.0)).interval().is_err());
        assert!(o(86400.0 * 365.0, Some(30.0)).interval().is_err());
        assert!(o(0.0, None).interval().is_err());
    }
}
