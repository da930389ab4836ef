//! `protoprof attach`: measure proxy processes the runner did not start.
//! With a SOCKS5 address the profile's phases drive traffic through it to
//! the runner's sink; without one the probes observe for a while. The
//! targets are never stopped or signalled: on every way out (success,
//! error, Ctrl-C, a target exiting) only the probes are detached, by
//! dropping them.
//!
//! The steps: [`check_targets`] (each pid names a running process; nothing
//! runs before), the privileges, [`identify`](super::identify),
//! [`measure_passes`](super::measure_passes) with [`observe`] in place of
//! the phases when there is no SOCKS5 address, [`target_facts`], then the
//! report as for `profile`.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{
    assemble, draw_graphs, drive_runtime, identify, io_err, measure_passes, peak_rss, verdict,
    watch_signals, write_outputs, Assembly, Command, PassContext, RunError, RunLog, RunOptions,
    RunOutcome, Traffic,
};
use crate::{
    analyze::{self, TargetFacts},
    chain::Role,
    drive::{self, PhaseResult, Sink, Window},
    live, render, report,
};

/// Seconds observed without `--socks` when no `--duration` is given.
pub const DEFAULT_OBSERVE_S: f64 = 10.0;

/// What to attach to.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The processes, in the order given.
    pub pids: Vec<u32>,
    /// One role per pid, or one for all.
    pub roles: Vec<Role>,
    /// Drive the profile's phases through this SOCKS5 address.
    pub socks: Option<SocketAddr>,
}

/// A running process to measure.
struct Attached {
    role: Role,
    pid: u32,
    exe: PathBuf,
    command: Vec<String>,
}

/// Each pid names a running process, each has a role: else one line,
/// before anything starts.
fn check_targets(a: &AttachOptions) -> Result<Vec<Attached>, RunError> {
    if a.pids.is_empty() {
        return Err(RunError::Usage(
            "--pid: give the pid of a running proxy (PID[,PID…])".into(),
        ));
    }
    if a.roles.len() > 1 && a.roles.len() != a.pids.len() {
        return Err(RunError::Usage(format!(
            "--role: give one role for all pids or one per pid ({} pids, {} roles)",
            a.pids.len(),
            a.roles.len()
        )));
    }
    a.pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| {
                RunError::Usage(format!(
                    "--pid {pid}: no running process to attach to ({e}); give the pid of a running proxy"
                ))
            })?;
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let role = a.roles.get(i).or(a.roles.first()).copied();
            Ok(Attached {
                role: role.unwrap_or(Role::Client),
                pid,
                exe,
                command,
            })
        })
        .collect()
}

/// Whether `pid` still runs (not a zombie). Read from /proc, never by
/// signalling it.
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Measure running processes: see the module's documentation.
pub fn attach_running(opts: &RunOptions, a: &AttachOptions) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    opts.live.check().map_err(RunError::Usage)?;
    let targets = check_targets(a)?;
    crate::capture::privileges::Privileges::current().check()?;
    let inputs = opts.inputs()?;
    let mut spec = inputs.spec(&opts.overrides)?;
    let traffic = match a.socks {
        Some(addr) => {
            if let Some(d) = opts.duration {
                spec.set_total_duration(d).map_err(RunError::Usage)?;
            }
            Traffic::Socks(addr)
        }
        None => Traffic::Observe(opts.duration.unwrap_or(DEFAULT_OBSERVE_S)),
    };
    let (categories, checklist) = (inputs.categories, inputs.checklist);
    let programs: Vec<(Role, PathBuf)> = targets.iter().map(|t| (t.role, t.exe.clone())).collect();
    let id = identify(opts, &spec, &programs, started_at)?;
    let plan = match traffic {
        Traffic::Socks(_) => super::planned(&spec),
        Traffic::Observe(_) => Vec::new(),
    };
    let shown = live::Running::start(&opts.live, live::Live::new(&spec.name, plan))
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let mut log = RunLog {
        file: std::fs::File::create(id.dir.join("run.log")).ok(),
        start: started,
    };
    for t in &targets {
        log.line(&format!(
            "attaching to the {} pid {} ({})",
            t.role.as_str(),
            t.pid,
            t.exe.display()
        ));
    }

    let rt = drive_runtime()?;
    let cancel = CancellationToken::new();
    let signal_task = watch_signals(&rt, &cancel);
    let sink = rt
        .block_on(Sink::start((std::net::Ipv4Addr::LOCALHOST, 0).into()))
        .map_err(io_err("starting the sink"))?;
    let phases = spec.phase_options();
    let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
    // Their ports are not ours to know: sockets are inspected by process.
    let ports: Vec<(u32, Option<u16>, Option<u16>)> =
        pids.iter().map(|&p| (p, None, None)).collect();
    let sweep_levels = spec.sweep_levels();
    let fd_limit = drive::raise_fd_limit().map_err(io_err("raising RLIMIT_NOFILE"))?;
    // The targets run with their own limits, which are not ours to know.
    let limits = report::Limits {
        fd_limit_before: fd_limit.was,
        fd_limit: fd_limit.now,
        fd_hard_limit: fd_limit.hard,
        local_ports: drive::local_port_count(),
        stream_limit: None,
    };
    let roles: Vec<(report::Role, u32)> = targets.iter().map(|t| (t.role.into(), t.pid)).collect();
    // Read for the live view only: an attach report has no resource series.
    let sampler = crate::capture::resources::Sampler::start(
        pids.clone(),
        started,
        super::RESOURCE_INTERVAL,
        None,
    );
    shown.live.targets(
        targets
            .iter()
            .map(|t| (t.role.as_str().to_string(), t.pid))
            .collect(),
        sampler.latest(),
    );
    let mut ctx = PassContext {
        rt: &rt,
        sink: &sink,
        phases: &phases,
        sweep_levels: &sweep_levels,
        spec: &spec,
        limits: &limits,
        roles: &roles,
        traffic,
        cancel: &cancel,
        pids: &pids,
        ports: &ports,
        started,
        network: None,
        live: &shown.live,
        pass: "main",
    };
    let mut exited = || {
        targets
            .iter()
            .find(|t| !running(t.pid))
            .map(|t| (t.role, format!("pid {} exited", t.pid)))
    };
    let measured = measure_passes(&mut ctx, &spec, &mut exited, &mut log);
    shown.live.stage("finishing");
    drop(sampler);
    rt.block_on(sink.stop());
    let measured = measured?;
    signal_task.abort();
    drop(rt);
    log.line("probes detached; the targets were left running");

    let facts = target_facts(&targets);
    let commands: Vec<Command> = targets
        .iter()
        .map(|t| (t.role, t.pid, t.command.clone()))
        .collect();
    let capture_opts = spec.probes.capture_options();
    let graphs = draw_graphs(&spec, &capture_opts, &measured.samples, &commands, &id.dir)?;
    let mut report = assemble(
        &spec,
        &categories,
        id.clone(),
        Assembly {
            started,
            started_at,
            capture_opts: &capture_opts,
            facts: &facts,
            control: &[],
            setup: None,
            measured: &measured,
            graphs: &graphs,
        },
    );
    report.warnings.push(format!(
        "attached to running processes (pids {}): {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        match a.socks {
            Some(s) => format!("traffic through SOCKS5 {s}; no control pass, no set-up phase"),
            None => "observed only, no traffic driven".into(),
        }
    ));
    analyze::judge(&mut report, &checklist);
    write_outputs(&report, &graphs.graphs, &id.dir)?;
    log.line(&format!("report written; status {}", report.run.status));
    log.line(&shown.finish());
    if opts.print_summary {
        print!("{}", render::summary(&report));
    }
    verdict(report, measured.exited_early, id.dir)
}

/// What /proc says of each target now, which it keeps running.
fn target_facts(targets: &[Attached]) -> Vec<TargetFacts> {
    targets
        .iter()
        .map(|t| {
            let mut command = vec![t.exe.display().to_string()];
            command.extend(t.command.iter().skip(1).cloned());
            TargetFacts {
                role: t.role.into(),
                pid: t.pid,
                exe: t.exe.display().to_string(),
                command,
                peak_rss_bytes: peak_rss(t.pid),
                exited: (!running(t.pid)).then(|| "exited during the run".to_string()),
            }
        })
        .collect()
}

/// One window of `seconds` with the probes on and no traffic; ends early
/// on Ctrl-C or when a target exits (returned as the error).
pub(super) async fn observe(
    seconds: f64,
    window: &dyn Window,
    cancel: &CancellationToken,
    exited: &mut dyn FnMut() -> Option<(Role, String)>,
) -> Result<PhaseResult, (Role, String)> {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    window.open();
    let mut gone = None;
    while Instant::now() < end && !cancel.is_cancelled() {
        if let Some(e) = exited() {
            gone = Some(e);
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = cancel.cancelled() => {}
        }
    }
    window.close();
    if let Some(e) = gone {
        return Err(e);
    }
    Ok(PhaseResult {
        pattern: "observe".into(),
        connections: 0,
        direction: None,
        warmup_s: 0.0,
        measured_s: start.elapsed().as_secs_f64(),
        bytes_up: 0,
        bytes_down: 0,
        window_bytes_up: 0,
        window_bytes_down: 0,
        window_bytes_up_received: None,
        throughput: Default::default(),
        timeseries: Vec::new(),
        latency_us: None,
        setup_us: Default::default(),
        round_trips: 0,
        bytes_per_connection: None,
        schedule: None,
        churn: None,
        integrity: drive::Integrity {
            status: drive::IntegrityStatus::Ok,
            connections_checked: 0,
            bytes_checked: 0,
            mismatches: Vec::new(),
            connections: Vec::new(),
            warnings: Vec::new(),
        },
    })
}
