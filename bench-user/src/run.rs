//! One profile run, start to finish: spec → chain → capture → drive →
//! resolve → fold → analyze → render. Everything it starts it stops again,
//! on success, on error and on Ctrl-C: the chain and the probes are owned
//! values whose `Drop` stops the processes and detaches the programs.

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

mod alternate;
mod attach;
mod inputs;
mod soak;
pub use attach::{attach_running, AttachOptions};
pub use inputs::Inputs;
pub use soak::{parse_duration, soak, SoakOptions, SoakOutcome};

use crate::{
    analyze::{self, TargetFacts},
    capture::{
        machine_load::{self, LoadSnapshot},
        resources::Held,
        CaptureError, Graph, Probes,
    },
    chain::{
        free_port, launch,
        network::{self, impair, Host, Network, NetworkError, NetworkMode},
        secrets::Secrets,
        Chain, ChainError, Role,
    },
    drive::{self, DriveError, IntegrityStatus, PhaseResult, Sink, Window},
    fold::{self, FoldOptions},
    live::{self, Live, LiveOptions},
    render,
    report::{
        self, stacks, FoldedGraph, Input, Overhead, ProbesInfo, Report, RunInfo, StackFile,
        Workload, SCHEMA_VERSION,
    },
    resolve,
    spec::{ProfileSpec, SpecError},
};

/// What to run and where to write it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub spec_path: PathBuf,
    /// Total measured seconds, split over the phases (overrides the spec).
    pub duration: Option<f64>,
    /// The directory that receives the run directory.
    pub out_dir: PathBuf,
    /// The `protoprof-endpoint` binary.
    pub endpoint: PathBuf,
    /// Print the terminal summary.
    pub print_summary: bool,
    /// `KEY=VALUE` overrides of the profile (dotted TOML keys).
    pub overrides: Vec<String>,
    /// The live view and `--serve`.
    pub live: LiveOptions,
    /// The profile, attribution and checklist as a series read them at
    /// its start ([`RunOptions::read_inputs`]); `None`: each run reads
    /// them from `spec_path`'s directory.
    pub inputs: Option<Inputs>,
}

impl RunOptions {
    /// Reads the profile, attribution and checklist now, once for every
    /// run made with these options (see [`Inputs`]).
    pub fn read_inputs(&mut self) -> Result<(), RunError> {
        if self.inputs.is_none() {
            self.inputs = Some(Inputs::load(&self.spec_path)?);
        }
        Ok(())
    }

    /// The profile with these options' overrides, from the inputs read
    /// for the series (else read now); not yet scaled to `duration`.
    pub fn spec(&self) -> Result<ProfileSpec, RunError> {
        Ok(self.inputs()?.spec(&self.overrides)?)
    }

    /// The inputs read for the series, else read now.
    fn inputs(&self) -> Result<Inputs, RunError> {
        match &self.inputs {
            Some(inputs) => Ok(inputs.clone()),
            None => Inputs::load(&self.spec_path),
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub report: Report,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Privileges(#[from] crate::capture::privileges::MissingPrivileges),
    #[error("{0}")]
    Chain(#[from] ChainError),
    #[error("{0}")]
    Capture(#[from] CaptureError),
    #[error("{0}")]
    Network(#[from] NetworkError),
    #[error("traffic: {0}")]
    Drive(#[from] DriveError),
    #[error("{0}")]
    Render(#[from] render::RenderError),
    #[error("{0}")]
    Fold(#[from] fold::FoldError),
    #[error("{0}")]
    Stacks(#[from] stacks::StackError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("interrupted; endpoints stopped and probes detached")]
    Interrupted,
    #[error("payload integrity failed: {details} (report in {dir})")]
    Integrity { dir: PathBuf, details: String },
    #[error(
        "the {role} endpoint exited during the {stage} ({how}), before anything was measured; \
         no report, its output is in {}", log.display()
    )]
    TargetExitedBeforeMeasuring {
        role: String,
        stage: &'static str,
        how: String,
        log: PathBuf,
    },
    #[error("the {role} endpoint exited during the run ({how}); report in {dir}")]
    TargetExited {
        role: String,
        how: String,
        dir: PathBuf,
    },
}

impl RunError {
    /// Process exit status for this error: 2 for bad input, 130 for Ctrl-C.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Spec(_) | RunError::Usage(_) | RunError::Privileges(_) => 2,
            RunError::Interrupted => 130,
            _ => 1,
        }
    }
}

/// The runner's own log, `run.log` in the run directory.
struct RunLog {
    file: Option<File>,
    start: Instant,
}

impl RunLog {
    fn line(&mut self, msg: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "[{:8.3}s] {msg}", self.start.elapsed().as_secs_f64());
        }
    }
}

/// Switches the probes on and off at the drive's window edges.
struct ProbeWindow<'a> {
    probes: &'a Mutex<Probes>,
    errors: Mutex<Vec<String>>,
    /// The targets with their listening and next-hop ports, whose sockets
    /// are inspected as each window closes.
    ports: &'a [(u32, Option<u16>, Option<u16>)],
    /// Per target, the inspection that saw the most sockets.
    sockets: Mutex<std::collections::BTreeMap<u32, crate::report::SocketSummary>>,
    /// Running totals as each window closed, for figures per phase.
    snapshots: Mutex<Vec<crate::capture::WindowSnapshot>>,
    /// The targets, whose CPU is not "other processes'" load.
    pids: &'a [u32],
    /// The machine's load at the open window's start.
    load_at_open: Mutex<Option<LoadSnapshot>>,
    /// Each closed window's load.
    loads: Mutex<Vec<machine_load::WindowLoad>>,
    /// Each target's resources as each window closed (connections open).
    resources: Mutex<Vec<Vec<(u32, crate::capture::resources::ResourceSample)>>>,
    /// The namespaces' router, whose counters frame each window.
    network: Option<&'a Network>,
    link_at_open: Mutex<Option<impair::Snapshot>>,
    /// Router counters at each window's open and close.
    links: Mutex<Vec<(impair::Snapshot, impair::Snapshot)>>,
    /// The live view, which reads the phase's counters.
    live: &'a Live,
    /// The current phase's counters, whose window edges
    /// `probes.alternate` switches the programs at.
    counters: Mutex<Option<drive::LiveCounters>>,
    /// Each target's UDP drops so far at the open window's start.
    udp_drops_at_open: Mutex<std::collections::BTreeMap<u32, u64>>,
    /// Each target's UDP drops inside windows so far: a running total like
    /// the probes' own, so that a window's count is the difference of two.
    udp_drops_in_windows: Mutex<std::collections::BTreeMap<u32, u64>>,
}

impl Window for ProbeWindow<'_> {
    fn open(&self) {
        // Read before the probes start, as closing reads after they stop,
        // so the window's drops are the kernel's between the two.
        if let Ok(mut at) = self.udp_drops_at_open.lock() {
            at.clear();
            for &pid in self.pids {
                if let Ok(d) = crate::capture::sockets::udp_drops(pid) {
                    at.insert(pid, d);
                }
            }
        }
        match LoadSnapshot::read(self.pids) {
            Ok(l) => {
                if let Ok(mut at) = self.load_at_open.lock() {
                    *at = Some(l);
                }
            }
            Err(e) => self.note(format!("reading the machine's load: {e}")),
        }
        if let Some(net) = self.network {
            match impair::read(net) {
                Ok(snap) => {
                    if let Ok(mut at) = self.link_at_open.lock() {
                        *at = Some(snap);
                    }
                }
                Err(e) => self.note(format!("reading the router's counters: {e}")),
            }
        }
        if let Ok(mut p) = self.probes.lock() {
            if let Err(e) = p.start() {
                self.note(format!("opening the window: {e}"));
            }
        }
    }
    fn close(&self) {
        if let Ok(mut p) = self.probes.lock() {
            if let Err(e) = p.stop() {
                self.note(format!("closing the window: {e}"));
            }
            match p.snapshot() {
                Ok(mut snap) => {
                    self.count_udp_drops(&mut snap);
                    if let Ok(mut v) = self.snapshots.lock() {
                        v.push(snap);
                    }
                }
                Err(e) => self.note(format!("reading the window's totals: {e}")),
            }
        }
        let link_opened = self.link_at_open.lock().ok().and_then(|mut a| a.take());
        if let (Some(net), Some(opened)) = (self.network, link_opened) {
            match impair::read(net) {
                Ok(closed) => {
                    if let Ok(mut v) = self.links.lock() {
                        v.push((opened, closed));
                    }
                }
                Err(e) => self.note(format!("reading the router's counters: {e}")),
            }
        }
        let opened = self.load_at_open.lock().ok().and_then(|mut a| a.take());
        if let Some(opened) = opened {
            match LoadSnapshot::read(self.pids) {
                Ok(closed) => {
                    let load = opened.until(&closed, machine_load::ticks_per_second());
                    if let Ok(mut v) = self.loads.lock() {
                        v.push(load);
                    }
                }
                Err(e) => self.note(format!("reading the machine's load: {e}")),
            }
        }
        // The phase's connections are still open here (not yet drained).
        let held = self
            .pids
            .iter()
            .filter_map(|&pid| {
                crate::capture::resources::sample(pid)
                    .ok()
                    .map(|s| (pid, s))
            })
            .collect();
        if let Ok(mut v) = self.resources.lock() {
            v.push(held);
        }
        for &(pid, listen, upstream) in self.ports {
            match crate::capture::sockets::inspect(pid, listen, upstream) {
                Ok(seen) => {
                    if let Ok(mut m) = self.sockets.lock() {
                        let best = m.entry(pid).or_default();
                        if seen.tcp + seen.udp > best.tcp + best.udp {
                            *best = seen;
                        }
                    }
                }
                Err(e) => self.note(format!("inspecting sockets: {e}")),
            }
        }
    }
    fn counting(&self, counters: &drive::LiveCounters) {
        self.live.counting(counters);
        if let Ok(mut c) = self.counters.lock() {
            *c = Some(counters.clone());
        }
    }
}

impl ProbeWindow<'_> {
    fn note(&self, e: String) {
        if let Ok(mut v) = self.errors.lock() {
            v.push(e);
        }
    }

    /// Adds each target's UDP drops in the closing window to its running
    /// total and puts that in the snapshot beside the perf counters
    /// (`udp_receive_drops`); a target whose count could not be read at
    /// both edges gets the reason instead.
    fn count_udp_drops(&self, snap: &mut crate::capture::WindowSnapshot) {
        use crate::capture::Reading;
        let (Ok(at_open), Ok(mut totals)) = (
            self.udp_drops_at_open.lock(),
            self.udp_drops_in_windows.lock(),
        ) else {
            return;
        };
        for &pid in self.pids {
            let reading = match (at_open.get(&pid), crate::capture::sockets::udp_drops(pid)) {
                (Some(&opened), Ok(closed)) => {
                    let total = totals.entry(pid).or_default();
                    // A socket closed in the window took its count along.
                    *total += closed.saturating_sub(opened);
                    Reading::Value(*total)
                }
                (None, _) => Reading::Unavailable(
                    "the UDP sockets' drops could not be read as the window opened".into(),
                ),
                (_, Err(e)) => Reading::Unavailable(format!("UDP drops: {e}")),
            };
            snap.counters
                .entry(pid)
                .or_default()
                .push((crate::capture::sockets::UDP_DROPS, reading));
        }
    }

    /// How many windows each per-window record holds.
    fn marks(&self) -> [usize; 3] {
        [
            self.snapshots.lock().map_or(0, |v| v.len()),
            self.loads.lock().map_or(0, |v| v.len()),
            self.resources.lock().map_or(0, |v| v.len()),
        ]
    }

    /// Forgets the windows of a phase that produced no result (a sweep
    /// level that failed), so that window records and results stay
    /// aligned phase by phase. Its probe counts stay in the next window's
    /// totals.
    fn forget_since(&self, marks: [usize; 3]) {
        if let Ok(mut v) = self.snapshots.lock() {
            v.truncate(marks[0]);
        }
        if let Ok(mut v) = self.loads.lock() {
            v.truncate(marks[1]);
        }
        if let Ok(mut v) = self.resources.lock() {
            v.truncate(marks[2]);
        }
    }

    fn last_resources(&self) -> Vec<(u32, crate::capture::resources::ResourceSample)> {
        self.resources
            .lock()
            .ok()
            .and_then(|v| v.last().cloned())
            .unwrap_or_default()
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Run one profile. Must be called on a thread that lives until it returns
/// (the endpoints' death signal is tied to the spawning thread).
///
/// The steps, in order: [`plan`] (spec, rules, command lines; nothing runs
/// yet), [`identify`] (the run id and directory), [`start_chain`],
/// [`control_pass`], [`measure`] (main pass, then the per-call pass when
/// apart), [`merge_per_call`], [`stop_chain`], [`draw_graphs`] (side files
/// and flame graphs), [`assemble`] (the report), [`write_outputs`], and
/// [`verdict`] (the run's own success or failure).
pub fn run_profile(opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    opts.live.check().map_err(RunError::Usage)?;
    let plan = plan(opts)?;
    let shown = live::Running::start(&opts.live, Live::new(&plan.spec.name, planned(&plan.spec)))
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let programs: Vec<(Role, PathBuf)> = plan
        .launches
        .iter()
        .map(|l| (l.role, which(&l.program)))
        .collect();
    let id = identify(opts, &plan.spec, &programs, started_at)?;
    let mut log = RunLog {
        file: File::create(id.dir.join("run.log")).ok(),
        start: started,
    };
    log.line(&format!(
        "profile {} from {}",
        plan.spec.name,
        opts.spec_path.display()
    ));

    // The namespaces, then this thread inside the generator's: the
    // runtime's threads start from here and inherit it, so the load
    // generator's and the sink's sockets live there. Dropped in reverse:
    // back to our own namespace, then the namespaces deleted.
    note_signals()?;
    let mut network = match plan.spec.network.mode {
        NetworkMode::Namespaces => {
            let net = Network::create(&plan.spec.network)?;
            log.line(&format!(
                "namespaces {}..{} built",
                net.namespace(Host::Router),
                net.namespace(Host::Server)
            ));
            Some(net)
        }
        NetworkMode::Loopback => None,
    };
    let link = match &network {
        Some(net) => {
            let rtt = network::rtt::measure(net)?;
            log.line(&format!("RTT client to server: {:?} s", rtt));
            Some((rtt, impair::read(net)?))
        }
        None => None,
    };
    // Ctrl-C during set-up: the namespaces go as `network` drops.
    if SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(RunError::Interrupted);
    }
    let in_generator = match &network {
        Some(net) => Some(
            network::Entered::new(&net.path(Host::Generator))
                .map_err(io_err("entering the generator's namespace"))?,
        ),
        None => None,
    };

    let rt = drive_runtime()?;
    let cancel = CancellationToken::new();
    let signal_task = watch_signals(&rt, &cancel);

    // Before the endpoints start, so that they inherit it.
    let fd_limit = drive::raise_fd_limit().map_err(io_err("raising RLIMIT_NOFILE"))?;
    log.line(&format!(
        "RLIMIT_NOFILE {} -> {} (hard {})",
        fd_limit.was, fd_limit.now, fd_limit.hard
    ));
    let (mut chain, commands) = start_chain(&plan, &id.dir, &cancel, &mut log)?;
    let roles: Vec<(report::Role, u32)> = commands.iter().map(|c| (c.0.into(), c.1)).collect();
    let phases = plan.spec.phase_options();
    let sink = rt
        .block_on(Sink::start((plan.sink_ip, 0).into()))
        .map_err(io_err("starting the sink"))?;
    let sampler = crate::capture::resources::Sampler::start(
        roles.iter().map(|r| r.1).collect(),
        started,
        RESOURCE_INTERVAL,
        Some(sink.accepted()),
    );
    shown.live.targets(
        commands
            .iter()
            .map(|c| (c.0.as_str().to_string(), c.1))
            .collect(),
        sampler.latest(),
    );
    let control = control_pass(
        &plan,
        &rt,
        &sink,
        &phases,
        &cancel,
        &id.dir,
        &mut log,
        &shown.live,
    )
    .map_err(|e| exited_before_measuring(e, &mut chain, "control pass", &id.dir))?;
    shown.live.stage("set-up");
    let setup = setup_phase(&plan, &rt, &sink, &cancel, &mut log)
        .map_err(|e| exited_before_measuring(e, &mut chain, "set-up phase", &id.dir))?;

    // After the control pass, which opens what a target keeps for good
    // (a QUIC connection, a multiplexed upstream).
    let held_before: Vec<(u32, Option<Held>)> = roles
        .iter()
        .map(|&(_, pid)| (pid, Held::read(pid)))
        .collect();
    let capture_opts = plan.spec.probes.capture_options();
    let started_chain = StartedChain::new(&plan, &commands, &fd_limit);
    let mut pass_ctx = started_chain.main_pass(Driving {
        rt: &rt,
        sink: &sink,
        phases: &phases,
        plan: &plan,
        roles: &roles,
        cancel: &cancel,
        started,
        network: network.as_ref(),
        live: &shown.live,
    });
    let mut exited = || chain.first_exited();
    let measured = measure_passes(&mut pass_ctx, &plan.spec, &mut exited, &mut log);
    shown.live.stage("finishing");
    rt.block_on(sink.stop());
    let measured = measured?;
    if cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    let returned = return_to_baseline(&held_before);
    let link_windows: Vec<_> = [("main", &measured.main.links)]
        .into_iter()
        .chain(
            (!measured.per_call_results.is_empty())
                .then_some(("per_call", &measured.per_call_links)),
        )
        .flat_map(|(pass, links)| {
            links
                .iter()
                .enumerate()
                .map(move |(i, (a, b))| (pass.to_string(), i, *a, *b))
        })
        .collect();
    let facts = stop_chain(&mut chain, &commands);
    let resource_samples = sampler.finish();
    signal_task.abort();
    drop(rt);
    log.line("endpoints stopped, probes detached");
    let network_report = match (network.as_mut(), link) {
        (Some(net), Some((rtt, at_start))) => {
            let at_end = impair::read(net)?;
            if let Some(d) = net.delay_line.as_mut() {
                d.stop();
            }
            Some(report::from_run::network(
                net,
                &rtt,
                (&at_start, &at_end),
                &link_windows,
            ))
        }
        _ => None,
    };
    drop(in_generator);
    if let Some(mut net) = network.take() {
        net.teardown()?;
        log.line("namespaces removed");
    }

    let graphs = draw_graphs(
        &plan.spec,
        &capture_opts,
        &measured.samples,
        &commands,
        &id.dir,
    )?;
    let mut report = assemble(
        &plan.spec,
        &plan.categories,
        id.clone(),
        Assembly {
            started,
            started_at,
            capture_opts: &capture_opts,
            facts: &facts,
            control: &control,
            setup: setup.as_ref(),
            measured: &measured,
            graphs: &graphs,
        },
    );
    let mut resources =
        report::resources(&resource_samples, &roles, RESOURCE_INTERVAL.as_secs_f64());
    for t in resources.targets.iter_mut() {
        t.return_to_baseline = returned.iter().find(|r| r.0 == t.pid).map(|r| r.1);
    }
    report.resources = Some(resources);
    report.sweeps = measured.main.sweeps.clone();
    report.warnings.extend(stress_warnings(&report));
    report.network = network_report;
    if let Some(net) = report.network.as_mut() {
        report::from_run::network_goodput(net, &report.workload.phases);
    }
    analyze::judge(&mut report, &plan.checklist);
    write_outputs(&report, &graphs.graphs, &id.dir)?;
    log.line(&format!("report written; status {}", report.run.status));
    log.line(&shown.finish());
    if opts.print_summary {
        print!("{}", render::summary(&report));
    }
    verdict(report, measured.exited_early, id.dir)
}

/// Every phase the run will drive, in order, for the live view's
/// remaining time.
fn planned(spec: &ProfileSpec) -> Vec<live::Planned> {
    let phases = spec.phase_options();
    let mut plan = Vec::new();
    if spec.probes.control {
        plan.extend(live::Planned::pass("control", &phases));
    }
    plan.extend(live::Planned::pass("main", &phases));
    if spec.probes.per_call_pass && spec.probes.capture_options().has_per_call() {
        plan.extend(live::Planned::pass("per-call", &phases));
    }
    plan
}

/// The main pass, then the per-call pass when the profile measures the
/// per-call probes apart, merged.
fn measure_passes(
    ctx: &mut PassContext,
    spec: &ProfileSpec,
    exited: &mut dyn FnMut() -> Option<(Role, String)>,
    log: &mut RunLog,
) -> Result<Measured, RunError> {
    // One pass's windows: every phase, each level of a sweep.
    let measured_s: f64 = spec
        .phases
        .iter()
        .map(|p| p.duration_s * p.levels.as_ref().map_or(1, Vec::len).max(1) as f64)
        .sum();
    let capture_opts = spec.probes.capture_options().sized_for(measured_s);
    // Per-call probes trap on every call; measured apart, they leave the
    // main pass's flame graphs and throughput undistorted.
    let separate = spec.probes.per_call_pass && capture_opts.has_per_call();
    let main_opts = if separate {
        capture_opts.without_per_call()
    } else {
        capture_opts.clone()
    };
    let main = measure(ctx, &main_opts, exited, log)?;
    let mut per_call = None;
    if separate && main.exited_early.is_none() && main.integrity_ok() {
        log.line("per-call pass: alloc and crypto probes");
        ctx.pass = "per-call";
        per_call = Some(measure(ctx, &capture_opts.per_call_only(), exited, log)?);
    }
    Ok(merge_per_call(main, per_call))
}

/// What will run, checked before anything starts: a bad spec, rule file or
/// endpoint stops the run here.
struct Plan {
    spec: ProfileSpec,
    /// Owns the run's credentials and certificates for as long as the
    /// endpoints use them.
    secrets: Secrets,
    client_port: u16,
    server_port: u16,
    /// REALITY's destination (protocol reality), served by the runner.
    dest_port: u16,
    categories: std::sync::Arc<analyze::attribution::Categories>,
    checklist: std::sync::Arc<analyze::checklist::Checklist>,
    /// Server first: the client needs it.
    launches: [crate::chain::Launch; 2],
    socks_addr: std::net::SocketAddr,
    /// Where the sink listens: loopback, or the generator's namespace.
    sink_ip: std::net::Ipv4Addr,
}

fn plan(opts: &RunOptions) -> Result<Plan, RunError> {
    // Rules and patterns are data; a bad file stops the run before it starts.
    let inputs = opts.inputs()?;
    let mut spec = inputs.spec(&opts.overrides)?;
    if let Some(d) = opts.duration {
        spec.set_total_duration(d).map_err(RunError::Usage)?;
    }
    let builtin = spec.endpoints.client.is_none() || spec.endpoints.server.is_none();
    if builtin && !opts.endpoint.is_file() {
        return Err(RunError::Usage(format!(
            "endpoint binary {} not found; build it with `cargo xtask build` or pass --endpoint PATH",
            opts.endpoint.display()
        )));
    }

    // Before anything is started or written (launch::build may run python3
    // to find sing-box): without the privileges to probe a run would fail
    // halfway.
    crate::capture::privileges::Privileges::current().check()?;

    // The chain's command lines: ports, credentials, placeholders.
    let secrets = Secrets::create().map_err(|e| RunError::Usage(e.to_string()))?;
    let server_port = free_port()?.port();
    let client_port = free_port()?.port();
    let dest_port = free_port()?.port();
    let profiles_dir = opts
        .spec_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // A crypto families file that does not parse stops the run here,
    // before anything starts (capture parses it again when it attaches).
    crate::capture::Families::shipped()
        .map_err(|e| RunError::Capture(crate::capture::CaptureError::Families(e)))?;
    let (hosts, netns) = match spec.network.mode {
        NetworkMode::Loopback => {
            let lo = std::net::Ipv4Addr::LOCALHOST;
            ((lo, lo, lo), None)
        }
        NetworkMode::Namespaces => {
            for tool in ["ip", "tc", "nft", "ethtool"] {
                if which(Path::new(tool)).components().count() < 2 {
                    return Err(RunError::Usage(format!(
                        "network.mode = \"namespaces\" needs `{tool}`; install iproute2, nftables and ethtool (cargo xtask setup)"
                    )));
                }
            }
            let subnets = spec
                .network
                .subnets()
                .map_err(|(f, m)| RunError::Usage(format!("{f}: {m}")))?;
            let a = network::Addresses::new(subnets);
            let pid = std::process::id();
            let path = |h| network::namespace_path(&network::namespace_name(pid, h));
            (
                (a.client, a.server, a.generator),
                Some((path(Host::Client), path(Host::Server))),
            )
        }
    };
    let ctx = launch::Context {
        client_port,
        server_port,
        dest_port,
        client_host: hosts.0,
        server_host: hosts.1,
        client_netns: netns.as_ref().map(|n| n.0.clone()),
        server_netns: netns.map(|n| n.1),
        secrets: &secrets,
        profiles_dir: &profiles_dir,
        endpoint: spec.endpoints.binary.as_deref().unwrap_or(&opts.endpoint),
    };
    let (server_launch, _) =
        launch::build(&spec, Role::Server, &ctx).map_err(|e| RunError::Usage(e.to_string()))?;
    let (client_launch, socks_addr) =
        launch::build(&spec, Role::Client, &ctx).map_err(|e| RunError::Usage(e.to_string()))?;
    Ok(Plan {
        spec,
        secrets,
        client_port,
        server_port,
        dest_port,
        categories: inputs.categories,
        checklist: inputs.checklist,
        launches: [server_launch, client_launch],
        socks_addr,
        sink_ip: hosts.2,
    })
}

/// The run's identity and where it writes.
#[derive(Clone)]
struct Identity {
    run_id: String,
    spec_blake3: String,
    kernel: String,
    inputs: Vec<Input>,
    dir: PathBuf,
}

/// Hash everything that defines what ran into the run id, and create the
/// run directory named after it.
fn identify(
    opts: &RunOptions,
    spec: &ProfileSpec,
    programs: &[(Role, PathBuf)],
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<Identity, RunError> {
    let kernel = kernel_release();
    let spec_text = spec.canonical();
    let mut inputs = vec![Input {
        what: "spec".into(),
        path: opts.spec_path.display().to_string(),
        blake3: blake3::hash(spec_text.as_bytes()).to_hex().to_string(),
    }];
    for (role, program) in programs {
        let hash = hash_file(program).map_err(io_err(format!("hashing {}", program.display())))?;
        inputs.push(Input {
            what: format!("{} endpoint", role.as_str()),
            path: program.display().to_string(),
            blake3: hash,
        });
    }
    let mut h = blake3::Hasher::new();
    h.update(b"protoprof run v1\0spec\0");
    h.update(spec_text.as_bytes());
    for i in &inputs[1..] {
        h.update(b"\0binary\0");
        h.update(i.blake3.as_bytes());
    }
    h.update(b"\0kernel\0");
    h.update(kernel.as_bytes());
    let run_id = h.finalize().to_hex().to_string();
    let spec_blake3 = inputs[0].blake3.clone();
    let dir = opts.out_dir.join(format!(
        "{}-{}-{}",
        spec.name,
        started_at.format("%Y%m%d-%H%M%S"),
        &run_id[..6]
    ));
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(Identity {
        run_id,
        spec_blake3,
        kernel,
        inputs,
        dir,
    })
}

/// From here on SIGINT/SIGTERM cancel the run instead of killing it.
/// The runtime the load generator and the sink run on: two workers, so
/// that it needs no more of the machine than the endpoints it drives.
fn drive_runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("protoprof-drive")
        .build()
        .map_err(io_err("starting the async runtime"))
}

fn watch_signals(
    rt: &tokio::runtime::Runtime,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let cancel = cancel.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        // A signal noted before these listeners existed.
        if !SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        cancel.cancel();
    })
}

/// Ctrl-C or SIGTERM since the run began. Noted, instead of ending the
/// process, from before the namespaces are built: set-up then finishes
/// and its clean-up runs (the runtime's watch takes over once it exists).
static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn note_signals() -> Result<(), RunError> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the action only stores to an atomic, which is
            // async-signal-safe.
            unsafe {
                signal_hook_registry::register(sig, || {
                    SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst)
                })
            }
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| RunError::Io {
        what: "noting Ctrl-C".into(),
        source: std::io::Error::other(e),
    })
}

/// An endpoint as the report names it: role, pid, redacted command line.
type Command = (Role, u32, Vec<String>);

/// Start the endpoints, server first.
fn start_chain(
    plan: &Plan,
    dir: &Path,
    cancel: &CancellationToken,
    log: &mut RunLog,
) -> Result<(Chain, Vec<Command>), RunError> {
    let mut chain = Chain::new();
    let mut commands = Vec::new();
    if plan.spec.protocol == "reality" {
        let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, plan.dest_port));
        chain.serve_destination(addr, &plan.secrets.cert, &plan.secrets.key)?;
        log.line(&format!(
            "REALITY destination (TLS 1.3, served by the runner) on {addr}"
        ));
    }
    for launch in &plan.launches {
        let ep = chain.start(launch, dir, Duration::from_secs(10))?;
        log.line(&format!(
            "{} endpoint pid {} accepting on {}",
            launch.role.as_str(),
            ep.pid,
            ep.listen
        ));
        // Reports never carry the run's credentials.
        let mut cmd = vec![launch.program.display().to_string()];
        cmd.extend(launch.args.iter().map(|a| plan.secrets.redact(a)));
        commands.push((launch.role, ep.pid, cmd));
        if cancel.is_cancelled() {
            return Err(RunError::Interrupted);
        }
    }
    Ok((chain, commands))
}

/// How long a traffic error waits for an endpoint's exit to show: the
/// exit can reach `waitpid` a little after the connection broke.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// The first endpoint to exit within `grace`, polled every 20 ms.
fn exited_within(
    exited: &mut dyn FnMut() -> Option<(Role, String)>,
    grace: Duration,
) -> Option<(Role, String)> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(e) = exited() {
            return Some(e);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A traffic error before the main pass, when an endpoint has died, is
/// that death: a SOCKS5 or connection error would hide it.
fn exited_before_measuring(
    e: RunError,
    chain: &mut Chain,
    stage: &'static str,
    dir: &Path,
) -> RunError {
    if matches!(e, RunError::Interrupted) {
        return e;
    }
    match exited_within(&mut || chain.first_exited(), EXIT_GRACE) {
        Some((role, how)) => RunError::TargetExitedBeforeMeasuring {
            role: role.as_str().into(),
            stage,
            how,
            log: dir.join(format!("{}.log", role.as_str())),
        },
        None => e,
    }
}

/// The same phases with no probe attached at all, when the profile asks.
#[allow(clippy::too_many_arguments)]
fn control_pass(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    sink: &Sink,
    phases: &[drive::PhaseOptions],
    cancel: &CancellationToken,
    dir: &Path,
    log: &mut RunLog,
    live: &Live,
) -> Result<Vec<PhaseResult>, RunError> {
    let mut control = Vec::new();
    if !plan.spec.probes.control {
        return Ok(control);
    }
    for (i, phase) in phases.iter().enumerate() {
        log.line(&format!("control phase {i}: {:?}", phase.pattern));
        live.phase("control", i, phases.len(), phase);
        match rt.block_on(drive::run_phase(phase, plan.socks_addr, sink, live, cancel)) {
            Ok(r) => control.push(r),
            Err(DriveError::Cancelled) => return Err(RunError::Interrupted),
            Err(DriveError::Integrity(r)) => {
                return Err(RunError::Integrity {
                    dir: dir.to_path_buf(),
                    details: r.integrity.mismatches.join("; "),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(control)
}

/// The set-up phase, when the profile has it: before the main pass, with
/// no probe attached, so that its connections are timed, not profiled.
fn setup_phase(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    sink: &Sink,
    cancel: &CancellationToken,
    log: &mut RunLog,
) -> Result<Option<drive::SetupResult>, RunError> {
    let Some(opts) = plan.spec.setup.options() else {
        return Ok(None);
    };
    log.line(&format!("set-up phase: {} connections", opts.connections));
    match rt.block_on(drive::run_setup(&opts, plan.socks_addr, sink, cancel)) {
        Ok(r) => {
            log.line(&format!(
                "set-up phase: {} connections in {:.2} s, integrity {:?}",
                r.connections, r.elapsed_s, r.integrity.status
            ));
            Ok(Some(r))
        }
        Err(DriveError::Cancelled) => Err(RunError::Interrupted),
        Err(e) => Err(e.into()),
    }
}

/// The main pass, with the per-call pass's allocation and crypto figures
/// (when it ran apart) in place of the main pass's.
struct Measured {
    main: Pass,
    per_call_overhead: Vec<Overhead>,
    per_call_window_bytes: Option<u64>,
    /// The same per phase.
    per_call_phase_window_bytes: Option<Vec<u64>>,
    /// The maps either pass found full.
    full_maps: Vec<report::FullMap>,
    /// Each pass's stack copies.
    stack_copies: Vec<report::StackCopies>,
    /// The per-call pass's phases (empty when it did not run apart): its
    /// integrity counts as much as the main pass's.
    per_call_results: Vec<PhaseResult>,
    /// The per-call pass's window loads (empty when it did not run apart).
    per_call_loads: Vec<machine_load::WindowLoad>,
    /// The router's counters at the per-call pass's window edges.
    per_call_links: Vec<(impair::Snapshot, impair::Snapshot)>,
    exited_early: Option<(Role, String)>,
    samples: Vec<resolve::ResolvedSample>,
}

fn merge_per_call(main: Pass, per_call: Option<Pass>) -> Measured {
    let mut m = Measured {
        exited_early: main.exited_early.clone(),
        samples: Vec::new(),
        per_call_overhead: Vec::new(),
        per_call_window_bytes: None,
        per_call_phase_window_bytes: None,
        full_maps: full_maps("main", &main.capture.full_maps),
        stack_copies: stack_copies("main", &main.capture.stack_copies)
            .into_iter()
            .collect(),
        per_call_results: Vec::new(),
        per_call_loads: Vec::new(),
        per_call_links: Vec::new(),
        main,
    };
    m.samples = std::mem::take(&mut m.main.samples);
    let Some(pc) = per_call else {
        return m;
    };
    let main = &mut m.main;
    m.full_maps
        .extend(full_maps("per_call", &pc.capture.full_maps));
    m.stack_copies
        .extend(stack_copies("per_call", &pc.capture.stack_copies));
    m.exited_early = pc.exited_early.clone();
    m.per_call_links = pc.links.clone();
    m.per_call_overhead = overhead(&main.results, &pc.results);
    m.per_call_window_bytes = Some(pc.results.iter().map(|r| r.window_bytes()).sum());
    m.per_call_phase_window_bytes = Some(pc.results.iter().map(|r| r.window_bytes()).collect());
    main.capture.alloc = pc.capture.alloc;
    main.capture.crypto = pc.capture.crypto;
    main.capture.stacks.extend(pc.capture.stacks);
    main.capture.program_costs.extend(pc.capture.program_costs);
    for (tid, name) in pc.capture.thread_names {
        main.capture.thread_names.entry(tid).or_insert(name);
    }
    m.samples.extend(pc.samples);
    for (pid, info) in pc.attached {
        let entry = main.attached.entry(pid).or_default();
        entry.alloc = info.alloc;
        entry.crypto = info.crypto;
        entry.notes.extend(info.notes);
        entry.exe = info.exe;
        entry.is_go = info.is_go;
        entry.has_symbols = info.has_symbols;
    }
    main.window_errors.extend(pc.window_errors);
    main.live = pc.live;
    m.per_call_results = pc.results;
    m.per_call_loads = pc.loads;
    m
}

/// A pass's full maps as the report records them.
fn full_maps(pass: &str, maps: &[crate::capture::FullMap]) -> Vec<report::FullMap> {
    maps.iter()
        .map(|f| report::FullMap {
            pass: pass.to_string(),
            map: f.map.to_string(),
            capacity: f.capacity,
            lost: f.lost,
        })
        .collect()
}

/// A pass's stack copies for the report (none when it copied none).
fn stack_copies(pass: &str, s: &crate::capture::CopyStats) -> Option<report::StackCopies> {
    (s.copies > 0).then(|| report::StackCopies {
        pass: pass.to_string(),
        copies: s.copies,
        bytes: s.bytes,
        unreadable: s.unreadable,
        cut: s.cut,
        frames: s.frames,
        unwind_ns: s.unwind_ns,
    })
}

/// Whether every phase of a pass ran and kept every byte.
fn pass_ok(results: &[PhaseResult]) -> bool {
    results
        .iter()
        .all(|r| r.integrity.status == IntegrityStatus::Ok)
}

/// The workload section: the set-up phase, the main pass's phases, the
/// per-call pass's integrity beside them. A mismatch in any of them, or a
/// main pass without a phase, makes the workload's integrity `mismatch`,
/// which fails the run.
fn workload(
    main: &[PhaseResult],
    per_call: &[PhaseResult],
    setup: Option<&drive::SetupResult>,
) -> Workload {
    let setup_ok = setup.is_none_or(|s| s.integrity.status == IntegrityStatus::Ok);
    let ok = !main.is_empty() && pass_ok(main) && pass_ok(per_call) && setup_ok;
    Workload {
        integrity: if ok {
            report::IntegrityStatus::Ok
        } else {
            report::IntegrityStatus::Mismatch
        },
        bytes_up: main.iter().map(|r| r.bytes_up).sum(),
        bytes_down: main.iter().map(|r| r.bytes_down).sum(),
        phases: main.iter().map(Into::into).collect(),
        per_call_pass: report::PassIntegrity {
            phases: per_call
                .iter()
                .map(|r| report::Phase::from(r).integrity)
                .collect(),
        },
        setup: setup.map(Into::into),
        windows: Vec::new(),
        rate_limit: None,
    }
}

/// Every pass's uneven connections, one warning each, naming pass and phase.
fn integrity_warnings(main: &[PhaseResult], per_call: &[PhaseResult]) -> Vec<String> {
    let passes = [("main", main), ("per-call", per_call)];
    passes
        .iter()
        .flat_map(|(pass, results)| {
            results.iter().enumerate().flat_map(move |(i, r)| {
                r.integrity
                    .warnings
                    .iter()
                    .map(move |w| format!("{pass} pass, phase {i} ({}): {w}", r.pattern))
            })
        })
        .collect()
}

/// Read what the chain knows of each endpoint, then stop it.
fn stop_chain(chain: &mut Chain, commands: &[Command]) -> Vec<TargetFacts> {
    let facts = chain_facts(commands, &chain.exited());
    chain.stop(Duration::from_secs(2));
    facts
}

/// The endpoints as the report names them, with those that exited (role,
/// pid, how).
fn chain_facts(commands: &[Command], exits: &[(Role, u32, String)]) -> Vec<TargetFacts> {
    commands
        .iter()
        .map(|(role, pid, cmd)| TargetFacts {
            role: (*role).into(),
            pid: *pid,
            exe: cmd[0].clone(),
            command: cmd.clone(),
            peak_rss_bytes: peak_rss(*pid),
            exited: exits.iter().find(|e| e.1 == *pid).map(|e| e.2.clone()),
        })
        .collect()
}

/// What every pass over the started chain needs to know of it.
struct StartedChain {
    pids: Vec<u32>,
    /// (pid, listening port, next hop's port) per target.
    ports: Vec<(u32, Option<u16>, Option<u16>)>,
    sweep_levels: Vec<Option<crate::spec::SweepLevel>>,
    limits: report::Limits,
}

/// What drives the passes over a started chain.
struct Driving<'a> {
    rt: &'a tokio::runtime::Runtime,
    sink: &'a Sink,
    phases: &'a [drive::PhaseOptions],
    plan: &'a Plan,
    roles: &'a [(report::Role, u32)],
    cancel: &'a CancellationToken,
    started: Instant,
    network: Option<&'a Network>,
    live: &'a Live,
}

impl StartedChain {
    /// The main pass's context: the phases through the chain's SOCKS5.
    fn main_pass<'a>(&'a self, d: Driving<'a>) -> PassContext<'a> {
        PassContext {
            rt: d.rt,
            sink: d.sink,
            phases: d.phases,
            sweep_levels: &self.sweep_levels,
            spec: &d.plan.spec,
            limits: &self.limits,
            roles: d.roles,
            traffic: Traffic::Socks(d.plan.socks_addr),
            cancel: d.cancel,
            pids: &self.pids,
            ports: &self.ports,
            started: d.started,
            network: d.network,
            live: d.live,
            pass: "main",
        }
    }

    fn new(plan: &Plan, commands: &[Command], fd_limit: &drive::FdLimit) -> StartedChain {
        StartedChain {
            pids: commands.iter().map(|c| c.1).collect(),
            ports: commands
                .iter()
                .map(|(role, pid, _)| match role {
                    Role::Client => (*pid, Some(plan.client_port), Some(plan.server_port)),
                    Role::Server => (*pid, Some(plan.server_port), None),
                })
                .collect(),
            sweep_levels: plan.spec.sweep_levels(),
            limits: report::Limits {
                fd_limit_before: fd_limit.was,
                fd_limit: fd_limit.now,
                fd_hard_limit: fd_limit.hard,
                local_ports: drive::local_port_count(),
                stream_limit: stream_limit(&plan.spec).map(|l| l.0),
            },
        }
    }
}

/// Every graph the probes fed: folded in memory, written as side files
/// under `stacks/` (named in report.json with their BLAKE3) and drawn as
/// flame graphs.
struct Graphs {
    graphs: Vec<FoldedGraph>,
    files: Vec<StackFile>,
    outputs: std::collections::BTreeMap<String, String>,
}

fn draw_graphs(
    spec: &ProfileSpec,
    capture_opts: &crate::capture::CaptureOptions,
    samples: &[resolve::ResolvedSample],
    commands: &[Command],
    dir: &Path,
) -> Result<Graphs, RunError> {
    let roles: std::collections::HashMap<u32, String> = commands
        .iter()
        .map(|(r, p, _)| (*p, r.as_str().to_string()))
        .collect();
    let mut out = Graphs {
        graphs: Vec::new(),
        files: Vec::new(),
        outputs: std::collections::BTreeMap::new(),
    };
    for graph in Graph::ALL {
        let enabled = match graph {
            Graph::Cpu => capture_opts.cpu_frequency_hz.is_some(),
            Graph::OffCpu => capture_opts.offcpu,
            Graph::AllocBytes | Graph::AllocCalls => capture_opts.alloc.is_some(),
            Graph::AllocUnfreed => capture_opts.alloc.as_ref().is_some_and(|a| a.live),
            Graph::Syscalls => capture_opts.syscall_stack_every > 0,
        };
        if !enabled {
            continue;
        }
        let lines = fold::fold(samples, graph, |tgid| {
            roles
                .get(&tgid)
                .cloned()
                .unwrap_or_else(|| tgid.to_string())
        });
        let stem = graph.file_stem();
        let folded = FoldedGraph {
            name: stem.to_string(),
            title: graph_title(spec, graph),
            unit: graph.unit().to_string(),
            stacks: lines,
        };
        let file = stacks::write_graph(dir, &folded)?;
        fold::write_svg(
            &folded.stacks,
            &FoldOptions {
                title: folded.title.clone(),
                count_name: folded.unit.clone(),
            },
            &dir.join(format!("{stem}.svg")),
        )?;
        let key = stem.replace('-', "_");
        out.outputs
            .insert(format!("{key}_folded"), file.file.clone());
        out.outputs
            .insert(format!("{key}_svg"), format!("{stem}.svg"));
        out.files.push(file);
        out.graphs.push(folded);
    }
    for (key, file) in render::OUTPUTS {
        out.outputs.insert(key.to_string(), file.to_string());
    }
    out.outputs
        .insert("run_log".to_string(), "run.log".to_string());
    Ok(out)
}

/// What [`assemble`] reads besides the plan and the identity.
struct Assembly<'a> {
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    capture_opts: &'a crate::capture::CaptureOptions,
    facts: &'a [TargetFacts],
    control: &'a [PhaseResult],
    setup: Option<&'a drive::SetupResult>,
    measured: &'a Measured,
    graphs: &'a Graphs,
}

/// The report: runtime results converted into report types (in
/// `report::from_run`), the targets analysed; the checklist is judged after.
fn assemble(
    spec: &ProfileSpec,
    categories: &analyze::attribution::Categories,
    id: Identity,
    a: Assembly,
) -> Report {
    let main = &a.measured.main;
    let results = &main.results;
    let phases: Vec<analyze::PhaseInput> = results
        .iter()
        .map(|r| analyze::PhaseInput {
            pattern: r.pattern.clone(),
            window_bytes: r.window_bytes(),
        })
        .collect();
    let targets = analyze::targets(&analyze::Inputs {
        facts: a.facts,
        capture: &main.capture,
        samples: &a.measured.samples,
        attached: &main.attached,
        options: a.capture_opts,
        live: &main.live,
        categories,
        phases: &phases,
        sockets: &main.sockets,
        snapshots: &main.snapshots,
    });
    let mut warnings = analyze::warnings(&targets, a.capture_opts);
    warnings.extend(main.window_errors.iter().cloned());
    let per_call = &a.measured.per_call_results;
    warnings.extend(integrity_warnings(results, per_call));
    warnings.extend(a.measured.full_maps.iter().map(analyze::full_map_warning));
    let mut workload = workload(results, per_call, a.setup);
    workload.rate_limit = spec.rate_limit.map(|r| report::RateLimit {
        up_mbps: r.up_mbps,
        down_mbps: r.down_mbps,
    });
    workload.windows = [
        ("main", &main.loads),
        ("per_call", &a.measured.per_call_loads),
    ]
    .into_iter()
    .flat_map(|(pass, loads)| {
        loads
            .iter()
            .enumerate()
            .map(move |(i, l)| report::from_run::window_load(pass, i, l))
    })
    .collect();
    let integrity_ok = workload.integrity == report::IntegrityStatus::Ok;
    let status = match (&a.measured.exited_early, integrity_ok) {
        (Some((role, how)), _) => format!("failed: the {} endpoint exited ({how})", role.as_str()),
        (None, false) => "failed: payload integrity".to_string(),
        (None, true) => "ok".to_string(),
    };
    Report {
        schema_version: SCHEMA_VERSION,
        run: RunInfo {
            id: id.run_id,
            profile: spec.name.clone(),
            protocol: spec.protocol.clone(),
            description: spec.description.clone(),
            started_at: a
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_s: a.started.elapsed().as_secs_f64(),
            measured_s: results.iter().map(|r| r.measured_s).sum(),
            kernel: id.kernel,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            spec_blake3: id.spec_blake3,
            machine: crate::machine::this_machine(),
            inputs: id.inputs,
            status,
        },
        workload,
        targets,
        probes: ProbesInfo {
            options: a.capture_opts.into(),
            windows: main.windows,
            program_costs: main.capture.program_costs.iter().map(Into::into).collect(),
            overhead: overhead(a.control, results),
            alternating: main
                .alternate_switch_ms
                .map(|ms| {
                    results
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            crate::analyze::alternation::alternation(
                                i,
                                &r.pattern,
                                &r.timeseries,
                                ms,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            per_call_pass: a.measured.per_call_overhead.clone(),
            per_call_window_bytes: a.measured.per_call_window_bytes,
            per_call_phase_window_bytes: a
                .measured
                .per_call_phase_window_bytes
                .clone()
                .unwrap_or_default(),
            full_maps: a.measured.full_maps.clone(),
            stack_copies: a.measured.stack_copies.clone(),
        },
        outputs: a.graphs.outputs.clone(),
        warnings,
        checklist: Vec::new(),
        calibration: crate::calibrate::ciphers(Duration::from_millis(300)),
        stacks: a.graphs.files.clone(),
        resources: None,
        sweeps: Vec::new(),
        network: None,
    }
}

/// Longest wait, once the last connection closed, for the targets'
/// descriptors and sockets to return to their baseline.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Each target's descriptors and TCP sockets before the main pass and once
/// every connection has closed (waiting up to [`SETTLE_LIMIT`]). The
/// targets settle side by side, so a leaking chain waits the limit once,
/// not once per target.
fn return_to_baseline(before: &[(u32, Option<Held>)]) -> Vec<(u32, report::BaselineCheck)> {
    let held = |h: Held| report::HeldCounts {
        fds: h.fds,
        tcp_sockets: h.tcp_sockets,
    };
    let settled: Vec<_> = std::thread::scope(|scope| {
        let waits: Vec<_> = before
            .iter()
            .filter_map(|&(pid, b)| {
                let b = b?;
                Some((
                    pid,
                    b,
                    scope.spawn(move || crate::capture::resources::settle(pid, b, SETTLE_LIMIT)),
                ))
            })
            .collect();
        waits
            .into_iter()
            .filter_map(|(pid, b, wait)| Some((pid, b, wait.join().ok()??)))
            .collect()
    });
    settled
        .into_iter()
        .map(|(pid, b, (after, waited))| {
            (
                pid,
                report::BaselineCheck {
                    before: held(b),
                    after: held(after),
                    settle_ms: waited.as_millis() as u64,
                },
            )
        })
        .collect()
}

/// How often every target's resources are read.
const RESOURCE_INTERVAL: Duration = Duration::from_secs(1);

/// Concurrent streams per QUIC connection of the reference endpoints
/// (bench-proto's MAX_STREAMS): each SOCKS5 connection is one stream.
/// Unknown for outside implementations.
fn stream_limit(spec: &ProfileSpec) -> Option<(u64, &'static str)> {
    let quic = matches!(spec.protocol.as_str(), "tuic" | "hysteria1" | "hysteria2");
    let ours = spec.endpoints.client.is_none() && spec.endpoints.server.is_none();
    (quic && ours).then_some((1024, "the reference endpoints' QUIC connection"))
}

/// What the stress figures say the reader must know: failed churn
/// connections, a generator behind its schedule, sweeps that stopped.
fn stress_warnings(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in r.workload.phases.iter().enumerate() {
        if let Some(c) = &p.churn {
            for f in &c.failures {
                out.push(format!(
                    "phase {i} (churn): {} connections failed ({}), e.g. {}",
                    f.count, f.kind, f.example
                ));
            }
            if c.behind > 0 {
                out.push(format!(
                    "phase {i} (churn): {} of {} connections started more than one interval late: the generator or the in-flight cap ({}) held the rate below its target",
                    c.behind, c.started, c.concurrency
                ));
            }
        }
        if let Some(s) = &p.schedule {
            if s.behind > 0 {
                out.push(format!(
                    "phase {i} (rr open loop): the generator fell behind its schedule on {} of {} requests, sent more than one interval late or not at all (lag in schedule.lag_us)",
                    s.behind, s.due
                ));
            }
        }
    }
    for s in &r.sweeps {
        if let Some(f) = &s.first_failure {
            out.push(format!(
                "concurrency sweep (phase table {}): first failure at {} connections: {}",
                s.spec_phase, f.connections, f.reason
            ));
        }
        if let Some(l) = &s.limited {
            out.push(format!(
                "concurrency sweep (phase table {}): {} connections not tried: {}",
                s.spec_phase, l.connections, l.reason
            ));
        }
    }
    out
}

/// report.json and everything rendered from it.
fn write_outputs(report: &Report, graphs: &[FoldedGraph], dir: &Path) -> Result<(), RunError> {
    render::write_json(report, dir)?;
    render::write_all(report, graphs, dir)?;
    Ok(())
}

/// The run's own outcome: an endpoint that died or bytes that did not
/// arrive fail it, with the report already written.
fn verdict(
    report: Report,
    exited_early: Option<(Role, String)>,
    dir: PathBuf,
) -> Result<RunOutcome, RunError> {
    if let Some((role, how)) = exited_early {
        return Err(RunError::TargetExited {
            role: role.as_str().into(),
            how,
            dir,
        });
    }
    if report.workload.integrity != report::IntegrityStatus::Ok {
        let w = &report.workload;
        let main = w.phases.iter().map(|p| &p.integrity);
        let per_call = w.per_call_pass.phases.iter();
        let setup = w.setup.iter().flat_map(|s| {
            s.integrity
                .mismatches
                .iter()
                .map(|m| format!("set-up phase: {m}"))
        });
        let details = setup
            .chain(
                [
                    ("main", main.collect::<Vec<_>>()),
                    ("per-call", per_call.collect()),
                ]
                .iter()
                .flat_map(|(pass, phases)| {
                    phases.iter().enumerate().flat_map(move |(i, p)| {
                        p.mismatches
                            .iter()
                            .map(move |m| format!("{pass} pass, phase {i}: {m}"))
                    })
                }),
            )
            .collect::<Vec<_>>()
            .join("; ");
        return Err(RunError::Integrity { dir, details });
    }
    Ok(RunOutcome { dir, report })
}

/// What every measuring pass shares.
struct PassContext<'a> {
    rt: &'a tokio::runtime::Runtime,
    sink: &'a Sink,
    phases: &'a [drive::PhaseOptions],
    /// Parallel to `phases`: the sweep level each phase is, if any.
    sweep_levels: &'a [Option<crate::spec::SweepLevel>],
    spec: &'a ProfileSpec,
    limits: &'a report::Limits,
    roles: &'a [(report::Role, u32)],
    traffic: Traffic,
    cancel: &'a CancellationToken,
    pids: &'a [u32],
    /// (pid, listening port, next hop's port) per target.
    ports: &'a [(u32, Option<u16>, Option<u16>)],
    started: Instant,
    network: Option<&'a Network>,
    live: &'a Live,
    /// `main` or `per-call`, for the live view.
    pass: &'static str,
}

/// Where a pass's traffic goes.
#[derive(Debug, Clone, Copy)]
enum Traffic {
    /// The phases' traffic through this SOCKS5 address.
    Socks(std::net::SocketAddr),
    /// No traffic: one window of this many seconds, observing whatever
    /// the targets do (`attach` without `--socks`).
    Observe(f64),
}

/// What one pass measured, read while the targets still run.
struct Pass {
    results: Vec<PhaseResult>,
    capture: crate::capture::Capture,
    samples: Vec<resolve::ResolvedSample>,
    attached: std::collections::BTreeMap<u32, crate::capture::TargetProbes>,
    windows: u32,
    window_errors: Vec<String>,
    live: Vec<(f64, std::collections::BTreeMap<u32, i64>)>,
    exited_early: Option<(Role, String)>,
    sockets: std::collections::BTreeMap<u32, crate::report::SocketSummary>,
    snapshots: Vec<crate::capture::WindowSnapshot>,
    /// The machine's load in each window, in phase order.
    loads: Vec<machine_load::WindowLoad>,
    /// The concurrency sweeps, level by level.
    sweeps: Vec<report::ConcurrencySweep>,
    /// The router's counters at each window's open and close.
    links: Vec<(impair::Snapshot, impair::Snapshot)>,
    /// With `probes.alternate`: the longest detach or attach, ms.
    alternate_switch_ms: Option<f64>,
}

impl Pass {
    fn integrity_ok(&self) -> bool {
        !self.results.is_empty() && pass_ok(&self.results)
    }
}

/// Attach `opts`, drive every phase with the probes on in each measured
/// window, read and symbolize, detach.
fn measure(
    ctx: &mut PassContext,
    opts: &crate::capture::CaptureOptions,
    exited: &mut dyn FnMut() -> Option<(Role, String)>,
    log: &mut RunLog,
) -> Result<Pass, RunError> {
    let mut probes = Probes::load(opts)?;
    for (i, pid) in ctx.pids.iter().enumerate() {
        probes.add_target(*pid, i as u32)?;
    }
    log.line("probes attached");
    let probes = Mutex::new(probes);
    let window = ProbeWindow {
        probes: &probes,
        errors: Mutex::new(Vec::new()),
        ports: ctx.ports,
        sockets: Mutex::new(std::collections::BTreeMap::new()),
        snapshots: Mutex::new(Vec::new()),
        pids: ctx.pids,
        load_at_open: Mutex::new(None),
        loads: Mutex::new(Vec::new()),
        resources: Mutex::new(Vec::new()),
        network: ctx.network,
        link_at_open: Mutex::new(None),
        links: Mutex::new(Vec::new()),
        live: ctx.live,
        counters: Mutex::new(None),
        udp_drops_at_open: Mutex::new(std::collections::BTreeMap::new()),
        udp_drops_in_windows: Mutex::new(std::collections::BTreeMap::new()),
    };
    let mut results = Vec::new();
    let mut sweeps: Vec<Sweep> = Vec::new();
    let mut exited_early = None;
    let live: Mutex<Vec<(f64, std::collections::BTreeMap<u32, i64>)>> = Mutex::new(Vec::new());
    let started = ctx.started;
    let stop_switching = std::sync::atomic::AtomicBool::new(false);
    let mut switching = None;
    let drive_result: Result<(), RunError> = std::thread::scope(|scope| {
        let switcher = opts
            .alternate
            .then(|| scope.spawn(|| alternate::run(&probes, &window.counters, &stop_switching)));
        let r = ctx.rt.block_on(async {
            let phases_done = async {
                let socks = match ctx.traffic {
                    Traffic::Socks(a) => a,
                    Traffic::Observe(seconds) => {
                        log.line(&format!("observing for {seconds} s"));
                        ctx.live.observe(seconds);
                        let r = attach::observe(seconds, &window, ctx.cancel, exited).await;
                        exited_early = r.as_ref().err().cloned();
                        results.extend(r.ok());
                        return Ok(());
                    }
                };
                for (i, phase) in ctx.phases.iter().enumerate() {
                    let level = ctx.sweep_levels.get(i).copied().flatten();
                    if let Some(level) = level {
                        if !sweep_may_run(&mut sweeps, level, ctx, log) {
                            continue;
                        }
                    }
                    log.line(&format!("phase {i}: {:?}", phase.pattern));
                    ctx.live.phase(ctx.pass, i, ctx.phases.len(), phase);
                    let marks = window.marks();
                    let outcome =
                        drive::run_phase(phase, socks, ctx.sink, &window, ctx.cancel).await;
                    if let Some(level) = level {
                        // A failing level is the sweep's finding, not the run's end.
                        let failed = match &outcome {
                            Ok(_) | Err(DriveError::Cancelled) => None,
                            Err(DriveError::Integrity(r)) => Some(format!(
                                "integrity: {}",
                                r.integrity.mismatches.first().cloned().unwrap_or_default()
                            )),
                            Err(e) => Some(e.to_string()),
                        };
                        if let Some(reason) = failed {
                            log.line(&format!(
                                "phase {i}: level {} failed: {reason}",
                                level.level
                            ));
                            window.forget_since(marks);
                            if let Some(s) = sweeps
                                .iter_mut()
                                .find(|s| s.report.spec_phase == level.spec_phase)
                            {
                                s.report.first_failure = Some(report::LevelStop {
                                    connections: level.level,
                                    reason,
                                });
                            }
                            if let Some(e) = exited() {
                                exited_early = Some(e);
                                break;
                            }
                            continue;
                        }
                    }
                    match outcome {
                        Ok(r) => {
                            log.line(&format!("phase {i}: integrity {:?}", r.integrity.status));
                            if let Some(level) = level {
                                level_done(&mut sweeps, level, &r, results.len(), ctx, &window);
                            }
                            results.push(r);
                        }
                        Err(DriveError::Integrity(r)) => {
                            // Keep the evidence for the report; the run fails later.
                            log.line(&format!("phase {i}: integrity mismatch"));
                            results.push(*r);
                            break;
                        }
                        Err(DriveError::Cancelled) => return Err(RunError::Interrupted),
                        Err(e) => return Err(e.into()),
                    }
                    if let Some(e) = exited() {
                        exited_early = Some(e);
                        break;
                    }
                }
                Ok(())
            };
            // Live allocation bytes once a second, for leak slopes.
            let sampler = async {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let sample = lock(&probes).live_bytes();
                    if let (Ok(m), Ok(mut v)) = (sample, live.lock()) {
                        if !m.is_empty() {
                            v.push((started.elapsed().as_secs_f64(), m));
                        }
                    }
                }
            };
            tokio::select! {
                r = phases_done => r,
                () = sampler => Ok(()),
            }
        });
        stop_switching.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = switcher {
            switching = Some(h.join().unwrap_or_default());
        }
        r
    });
    if let Some(s) = &switching {
        log.line(&format!(
            "alternating: {} switches, longest {:.1} ms",
            s.switch_ms.len(),
            s.max_ms()
        ));
        if let Some(e) = &s.error {
            window.note(format!("probes.alternate stopped: {e}"));
        }
    }
    // A phase that failed because an endpoint died is reported as that.
    // A dying process closes its sockets before it can be reaped, so the
    // traffic can fail a moment before the death shows: give it that moment.
    if exited_early.is_none() {
        exited_early = exited();
    }
    if exited_early.is_none()
        && matches!(&drive_result, Err(e) if !matches!(e, RunError::Interrupted))
    {
        exited_early = exited_within(exited, EXIT_GRACE);
    }
    if let Err(e) = drive_result {
        if exited_early.is_none() || matches!(e, RunError::Interrupted) {
            log.line(&format!("stopping: {e}"));
            return Err(e);
        }
    }
    if ctx.cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    let window_errors = window.errors.into_inner().unwrap_or_default();
    let sockets = window.sockets.into_inner().unwrap_or_default();
    let snapshots = window.snapshots.into_inner().unwrap_or_default();
    let loads = window.loads.into_inner().unwrap_or_default();
    let sweeps = sweeps.into_iter().map(|s| s.report).collect();
    let links = window.links.into_inner().unwrap_or_default();
    let mut probes = probes.into_inner().unwrap_or_else(|p| p.into_inner());
    let capture = probes.read()?;
    let windows = probes.windows();
    let attached = probes.attached();
    let samples = resolve::resolve_in_tree(&capture.stacks, &capture.thread_names, &capture.tree);
    log.line(&format!(
        "read {} syscall rows, {} stacks",
        capture.syscalls.len(),
        capture.stacks.len()
    ));
    drop(probes);
    log.line("probes detached");
    Ok(Pass {
        results,
        capture,
        samples,
        attached,
        windows,
        window_errors,
        live: live.into_inner().unwrap_or_default(),
        exited_early,
        sockets,
        snapshots,
        loads,
        sweeps,
        links,
        alternate_switch_ms: switching.as_ref().map(alternate::Switching::max_ms),
    })
}

/// A concurrency sweep as it runs: its report and each target's reading
/// before its first level.
struct Sweep {
    report: report::ConcurrencySweep,
    baseline: Vec<(u32, crate::capture::resources::ResourceSample)>,
}

/// Whether the next level of a sweep runs: not after a failed level, nor
/// beyond a limit of the machine or the protocol (which is recorded).
fn sweep_may_run(
    sweeps: &mut Vec<Sweep>,
    level: crate::spec::SweepLevel,
    ctx: &PassContext,
    log: &mut RunLog,
) -> bool {
    let index = match sweeps
        .iter()
        .position(|s| s.report.spec_phase == level.spec_phase)
    {
        Some(i) => i,
        None => {
            let spec = &ctx.spec.phases[level.spec_phase];
            // The targets before the first level: what each level adds.
            let baseline = ctx
                .roles
                .iter()
                .filter_map(|&(_, pid)| {
                    crate::capture::resources::sample(pid)
                        .ok()
                        .map(|s| (pid, s))
                })
                .collect();
            sweeps.push(Sweep {
                report: report::ConcurrencySweep {
                    spec_phase: level.spec_phase,
                    planned: spec.levels.clone().unwrap_or_default(),
                    request_size: spec.request_size.unwrap_or(64),
                    response_size: spec.response_size.unwrap_or(1024),
                    levels: Vec::new(),
                    first_failure: None,
                    limited: None,
                    limits: ctx.limits.clone(),
                },
                baseline,
            });
            sweeps.len() - 1
        }
    };
    let sweep = &mut sweeps[index].report;
    if sweep.first_failure.is_some() || sweep.limited.is_some() {
        return false;
    }
    let limit = drive::level_limit(
        level.level,
        ctx.limits.fd_limit,
        ctx.limits.local_ports,
        stream_limit(ctx.spec),
    );
    if let Some(reason) = limit {
        log.line(&format!("sweep level {} not tried: {reason}", level.level));
        sweep.limited = Some(report::LevelStop {
            connections: level.level,
            reason,
        });
        return false;
    }
    true
}

/// Records a level that ran: its traffic and each target's resources as
/// its window closed, against the sweep's baseline.
fn level_done(
    sweeps: &mut [Sweep],
    level: crate::spec::SweepLevel,
    r: &PhaseResult,
    phase: usize,
    ctx: &PassContext,
    window: &ProbeWindow,
) {
    let Some(sweep) = sweeps
        .iter_mut()
        .find(|s| s.report.spec_phase == level.spec_phase)
    else {
        return;
    };
    let n = level.level as f64;
    let held = window.last_resources();
    let targets = ctx
        .roles
        .iter()
        .filter_map(|&(role, pid)| {
            let now = held.iter().find(|h| h.0 == pid)?.1;
            let before = sweep.baseline.iter().find(|h| h.0 == pid)?.1;
            Some(report::LevelTarget {
                role,
                pid,
                rss_bytes: now.rss_bytes,
                fds: now.fds.total(),
                sockets: now.fds.socket,
                threads: now.threads,
                rss_per_connection_bytes: (now.rss_bytes as f64 - before.rss_bytes as f64) / n,
                fds_per_connection: (now.fds.total() as f64 - before.fds.total() as f64) / n,
            })
        })
        .collect();
    let at = |quantile: f64| {
        r.latency_us.as_ref().and_then(|l| {
            l.percentiles
                .iter()
                .find(|q| q.q == quantile)
                .and_then(|q| q.bounds.map(|b| b.value))
        })
    };
    sweep.report.levels.push(report::SweepLevel {
        connections: level.level,
        phase,
        throughput_bps: r.throughput.up_bps_mean + r.throughput.down_bps_mean,
        round_trips_per_s: if r.measured_s > 0.0 {
            r.round_trips as f64 / r.measured_s
        } else {
            0.0
        },
        latency_p50_us: at(0.50),
        latency_p99_us: at(0.99),
        targets,
    });
}

fn graph_title(spec: &ProfileSpec, graph: Graph) -> String {
    let what = match graph {
        Graph::Cpu => format!("on-CPU ({} Hz per CPU)", spec.probes.cpu.frequency_hz),
        Graph::OffCpu => "off-CPU time (µs)".into(),
        Graph::AllocBytes => format!(
            "allocated bytes (sampled every {} bytes)",
            spec.probes.alloc.sample_bytes
        ),
        Graph::AllocCalls => "allocations (estimated from byte samples)".into(),
        Graph::AllocUnfreed => format!(
            "bytes allocated during the pass and not freed at its end (sampled every {} bytes)",
            spec.probes.alloc.sample_bytes
        ),
        Graph::Syscalls => format!(
            "syscalls (one stack in {})",
            spec.probes.syscall_stacks.every
        ),
    };
    format!("{}: {what}", spec.name)
}

/// Probed against baseline throughput, phase by phase.
fn overhead(baseline: &[PhaseResult], probed: &[PhaseResult]) -> Vec<Overhead> {
    baseline
        .iter()
        .zip(probed)
        .enumerate()
        .map(|(i, (c, p))| {
            let bps = |r: &PhaseResult| r.throughput.up_bps_median + r.throughput.down_bps_median;
            let rps = |r: &PhaseResult| {
                (r.pattern == "rr" && r.measured_s > 0.0)
                    .then(|| r.round_trips as f64 / r.measured_s)
            };
            let (u, q) = (bps(c), bps(p));
            Overhead {
                phase: i,
                pattern: p.pattern.clone(),
                baseline_bps: u,
                probed_bps: q,
                ratio: if u > 0.0 { q / u } else { 0.0 },
                baseline_rps: rps(c),
                probed_rps: rps(p),
            }
        })
        .collect()
}

fn lock(p: &Mutex<Probes>) -> std::sync::MutexGuard<'_, Probes> {
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A program named without a directory, as the shell would find it.
fn which(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| program.to_path_buf())
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

/// VmHWM of a live process, bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::drive::test_relay::{Mode, Relay};
    use crate::drive::{BulkOptions, Direction, Pattern, PhaseOptions, DEFAULT_CHUNK_SIZE};

    /// One short bulk-up phase through a relay stub behaving as `mode`; the
    /// result whether or not its bytes arrived intact.
    async fn phase_through(mode: Mode) -> PhaseResult {
        let relay = Relay::start(mode).await;
        let sink = Sink::start((std::net::Ipv4Addr::LOCALHOST, 0).into())
            .await
            .expect("sink");
        let opts = PhaseOptions {
            pattern: Pattern::Bulk(BulkOptions {
                connections: 2,
                direction: Direction::Up,
                chunk_size: DEFAULT_CHUNK_SIZE,
                bytes_per_connection: None,
            }),
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            io_timeout: Duration::from_secs(2),
        };
        let cancel = CancellationToken::new();
        let r = drive::run_phase(&opts, relay.addr, &sink, &drive::NoWindow, &cancel).await;
        sink.stop().await;
        match r {
            Ok(r) => r,
            Err(DriveError::Integrity(r)) => *r,
            Err(e) => panic!("phase failed without a result: {e}"),
        }
    }

    /// The checked-in run's report, to carry a workload section under test.
    fn fixture_report() -> Report {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-tcp/report.json");
        render::read_json(&path).expect("fixture report")
    }

    #[tokio::test]
    async fn per_call_pass_mismatch_fails_the_run() {
        let main = vec![phase_through(Mode::Relay).await];
        let per_call = vec![phase_through(Mode::CorruptUp { at: 100_000 }).await];
        assert_eq!(main[0].integrity.status, IntegrityStatus::Ok);
        assert_eq!(per_call[0].integrity.status, IntegrityStatus::Mismatch);

        let w = workload(&main, &per_call, None);
        assert_eq!(w.integrity, report::IntegrityStatus::Mismatch);
        assert_eq!(w.phases.len(), 1);
        assert_eq!(w.phases[0].integrity.status, report::IntegrityStatus::Ok);
        assert_eq!(w.per_call_pass.phases.len(), 1);
        assert_eq!(w.bytes_up, main[0].bytes_up);

        let mut report = fixture_report();
        report.workload = w;
        let dir = PathBuf::from("run-dir");
        match verdict(report, None, dir.clone()) {
            Err(RunError::Integrity { dir: d, details }) => {
                assert_eq!(d, dir);
                // Only the per-call pass was corrupted (the stub flips a bit
                // at one offset of each connection's upstream stream).
                assert!(
                    details.starts_with("per-call pass, phase 0: connection 0 up: same byte count, different content"),
                    "{details}"
                );
                assert!(!details.contains("main pass"), "{details}");
            }
            Err(e) => panic!("expected an integrity failure, got {e}"),
            Ok(_) => panic!("a corrupted per-call pass passed the run"),
        }
    }

    #[tokio::test]
    async fn a_setup_phase_mismatch_fails_the_run() {
        let relay = Relay::start(Mode::CorruptUp { at: 50 }).await;
        let sink = Sink::start((std::net::Ipv4Addr::LOCALHOST, 0).into())
            .await
            .expect("sink");
        let opts = drive::SetupOptions {
            connections: 3,
            request_size: 64,
            response_size: 1024,
            max_duration: Duration::from_secs(10),
            io_timeout: Duration::from_secs(2),
        };
        let cancel = CancellationToken::new();
        let setup = drive::run_setup(&opts, relay.addr, &sink, &cancel)
            .await
            .expect("the phase runs to its end");
        sink.stop().await;
        assert_eq!(setup.integrity.status, IntegrityStatus::Mismatch);
        let main = vec![phase_through(Mode::Relay).await];
        let w = workload(&main, &[], Some(&setup));
        assert_eq!(w.integrity, report::IntegrityStatus::Mismatch);
        assert_eq!(w.setup.as_ref().map(|s| s.connections), Some(3));
        let mut report = fixture_report();
        report.workload = w;
        match verdict(report, None, PathBuf::from("d")) {
            Err(RunError::Integrity { details, .. }) => {
                // The header is 40 bytes: offset 50 is the request's 11th.
                assert!(
                    details.starts_with(
                        "set-up phase: connection 0 up: same byte count, different content"
                    ),
                    "{details}"
                );
                assert!(!details.contains("main pass"), "{details}");
            }
            Err(e) => panic!("expected an integrity failure, got {e}"),
            Ok(_) => panic!("a corrupted set-up phase passed the run"),
        }
    }

    #[tokio::test]
    async fn clean_passes_pass_and_an_empty_main_pass_fails() {
        let main = vec![phase_through(Mode::Relay).await];
        let per_call = vec![phase_through(Mode::Relay).await];
        let w = workload(&main, &per_call, None);
        assert_eq!(w.integrity, report::IntegrityStatus::Ok);
        let mut report = fixture_report();
        report.workload = w;
        assert!(verdict(report, None, PathBuf::from("d")).is_ok());

        assert_eq!(
            workload(&[], &per_call, None).integrity,
            report::IntegrityStatus::Mismatch
        );
    }

    #[tokio::test]
    async fn thin_connection_warnings_name_pass_and_phase() {
        let mut r = phase_through(Mode::Relay).await;
        r.integrity.warnings = vec!["connection 3 moved 5 bytes".into()];
        let got = integrity_warnings(&[], std::slice::from_ref(&r));
        assert_eq!(
            got,
            ["per-call pass, phase 0 (bulk): connection 3 moved 5 bytes"]
        );
    }
}
