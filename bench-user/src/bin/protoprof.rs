//! `protoprof`: profile a proxy chain. Thin over the `protoprof` library.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand};
use protoprof::{
    baseline::{self, BaselineIndex, Key},
    compare::{
        self,
        repeat::{self, Variant},
        CompareOptions, Comparison, GateOutcome, Gates, RunSet,
    },
    render, run,
};

#[derive(Parser)]
#[command(
    name = "protoprof",
    version,
    about = "eBPF profiler for proxy protocol implementations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every command that runs a profile shares.
#[derive(Args, Clone)]
struct RunArgs {
    /// A profile name (looked up as profiles/NAME.toml) or a .toml path.
    profile: String,
    /// Total measured seconds, split over the profile's phases.
    #[arg(long)]
    duration: Option<f64>,
    /// The protoprof-endpoint binary (default: beside this binary).
    #[arg(long)]
    endpoint: Option<PathBuf>,
    /// Directory of named profiles.
    #[arg(long, default_value = "profiles")]
    profiles: PathBuf,
    /// Override a profile setting, KEY=VALUE with a dotted TOML key
    /// (e.g. probes.alloc.enabled=false); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Regression thresholds (default: gates.toml in --profiles).
    #[arg(long)]
    gates: Option<PathBuf>,
    #[command(flatten)]
    live: LiveArgs,
}

/// The live view of a run (docs/live.md).
#[derive(Args, Clone, Default)]
struct LiveArgs {
    /// No live status on stderr while the run runs.
    #[arg(long)]
    no_live: bool,
    /// Serve the live figures as Prometheus text at http://ADDR/metrics
    /// while each run runs (a loopback address, e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    serve: Option<std::net::SocketAddr>,
    /// Allow --serve on an address other than loopback.
    #[arg(long, requires = "serve")]
    serve_non_loopback: bool,
}

impl LiveArgs {
    fn options(&self) -> protoprof::live::LiveOptions {
        protoprof::live::LiveOptions {
            quiet: self.no_live,
            serve: self.serve,
            serve_non_loopback: self.serve_non_loopback,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start the chain of a profile, drive its traffic, measure, report.
    Profile {
        #[command(flatten)]
        run: RunArgs,
        /// Where run directories go.
        #[arg(long, default_value = "target/protoprof/runs")]
        out: PathBuf,
        /// Run two variants and compare them: KEY=V1,KEY=V2 (or KEY=V1,V2),
        /// on top of any --set.
        #[arg(long, value_name = "KEY=V1,KEY=V2")]
        compare: Option<String>,
        /// Runs per variant with --compare, interleaved A, B, A, B…
        /// (default: the fewest at which the gates can judge, e.g. 6 for tcp).
        #[arg(long)]
        repeat: Option<usize>,
    },
    /// Render every output (report.md, timeseries.csv, …) and the summary
    /// again from a run's report.json.
    Render {
        /// A run directory.
        run: PathBuf,
    },
    /// Compare two runs, or two directories of repeated runs: Hodges-Lehmann
    /// changes with exact distribution-free intervals, verdicts, gates,
    /// differential flame graph. Exit status 1 when a gate fails, 2 when
    /// there are too few runs for the gates to judge.
    Compare {
        /// Run directory (or directory of run directories) of A, the reference.
        a: PathBuf,
        /// The same for B, the candidate.
        b: PathBuf,
        /// Output directory (default target/protoprof/compares/A-vs-B).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Regression thresholds.
        #[arg(long, default_value = "profiles/gates.toml")]
        gates: PathBuf,
        /// Compare runs of different profiles.
        #[arg(long)]
        force: bool,
    },
    /// Measure proxy processes already running (never stopped or
    /// signalled): drive the profile's traffic through --socks, or only
    /// observe for --duration seconds.
    Attach {
        /// A profile name or .toml path: its probes, and its phases when
        /// driving traffic.
        #[arg(default_value = "tcp")]
        profile: String,
        /// The processes to measure, PID[,PID…].
        #[arg(long = "pid", value_delimiter = ',', required = true)]
        pids: Vec<u32>,
        /// client or server: one for every pid, or one per pid.
        #[arg(long = "role", value_delimiter = ',', value_parser = parse_role)]
        roles: Vec<protoprof::chain::Role>,
        /// The proxy's SOCKS5 address to drive the profile's traffic through
        /// (to protoprof's own sink); without it, only observe.
        #[arg(long)]
        socks: Option<std::net::SocketAddr>,
        /// Seconds: the phases' total with --socks, the observed window
        /// without (default 10).
        #[arg(long)]
        duration: Option<f64>,
        /// Directory of named profiles.
        #[arg(long, default_value = "profiles")]
        profiles: PathBuf,
        /// Override a profile setting, KEY=VALUE; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where run directories go.
        #[arg(long, default_value = "target/protoprof/runs")]
        out: PathBuf,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Soak: start the chain once and run the profile's passes again and
    /// again for --duration, one full report per interval in intervals/,
    /// soak.json and soak.md rewritten after each (docs/soak.md). Ctrl-C or
    /// SIGTERM ends it with a full report.
    Soak {
        /// A profile name (profiles/NAME.toml) or a .toml path.
        profile: String,
        /// The soak's length: 24h, 90m, 600s or plain seconds.
        #[arg(long, value_parser = parse_length)]
        duration: f64,
        /// One interval (report, flame graphs, checkpoint): default a 24th
        /// of the soak, between 1 minute and 1 hour.
        #[arg(long, value_parser = parse_length)]
        interval: Option<f64>,
        /// The protoprof-endpoint binary (default: beside this binary).
        #[arg(long)]
        endpoint: Option<PathBuf>,
        /// Directory of named profiles.
        #[arg(long, default_value = "profiles")]
        profiles: PathBuf,
        /// Override a profile setting, KEY=VALUE; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where soak directories go.
        #[arg(long, default_value = "target/protoprof/soaks")]
        out: PathBuf,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Print the JSON Schema of report.json (docs/report.schema.json).
    Schema,
    /// Stored runs to check new runs against, keyed by spec and machine.
    Baseline {
        #[command(subcommand)]
        action: BaselineCmd,
    },
}

#[derive(Args, Clone)]
struct BaselineArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Runs to make (default: the fewest at which the gates can judge).
    #[arg(long)]
    repeat: Option<usize>,
    /// Where baselines are stored.
    #[arg(long, default_value = "profiles/baselines")]
    baselines: PathBuf,
    /// Where the runs themselves go.
    #[arg(long, default_value = "target/protoprof/baseline-runs")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum BaselineCmd {
    /// Run the profile N times and store the runs as its baseline.
    Save {
        #[command(flatten)]
        args: BaselineArgs,
        /// Replace an existing baseline of the same key.
        #[arg(long)]
        force: bool,
    },
    /// Run the profile N times and compare against its baseline: exit 0
    /// pass, 1 regression, 2 no baseline for this spec and machine.
    Check {
        #[command(flatten)]
        args: BaselineArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Profile {
            run,
            out,
            compare,
            repeat,
        } => profile(&run, out, compare, repeat),
        Command::Render { run } => render_again(&run),
        Command::Soak {
            profile,
            duration,
            interval,
            endpoint,
            profiles,
            set,
            out,
            live,
        } => {
            let args = RunArgs {
                profile,
                duration: None,
                endpoint,
                profiles,
                set,
                gates: None,
                live,
            };
            let soak = run::SoakOptions {
                duration_s: duration,
                interval_s: interval,
            };
            soak_run(&args, out, &soak)
        }
        Command::Schema => print_schema(),
        Command::Attach {
            profile,
            pids,
            roles,
            socks,
            duration,
            profiles,
            set,
            out,
            live,
        } => {
            let args = RunArgs {
                profile,
                duration,
                endpoint: None,
                profiles,
                set,
                gates: None,
                live,
            };
            let attach = run::AttachOptions { pids, roles, socks };
            attach_running(&args, out, &attach)
        }
        Command::Compare {
            a,
            b,
            out,
            gates,
            force,
        } => compare_dirs(&a, &b, out, &gates, force),
        Command::Baseline { action } => match action {
            BaselineCmd::Save { args, force } => baseline_save(&args, force),
            BaselineCmd::Check { args } => baseline_check(&args),
        },
    };
    ExitCode::from(code)
}

/// Print one line and return the exit status.
fn fail(code: i32, msg: impl std::fmt::Display) -> u8 {
    eprintln!("protoprof: {msg}");
    u8::try_from(code).unwrap_or(1)
}

fn parse_role(s: &str) -> Result<protoprof::chain::Role, String> {
    match s {
        "client" => Ok(protoprof::chain::Role::Client),
        "server" => Ok(protoprof::chain::Role::Server),
        _ => Err(format!("{s:?}: use client or server")),
    }
}

fn parse_length(s: &str) -> Result<f64, String> {
    run::parse_duration(s)
}

/// `soak`: the run options, then the soak; prints its directory last.
fn soak_run(a: &RunArgs, out: PathBuf, soak: &run::SoakOptions) -> u8 {
    let opts = match run_options(a, out) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match run::soak(&opts, soak) {
        Ok(outcome) => {
            println!("{}", outcome.dir.display());
            0
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

/// `attach`: the run options without an endpoint binary (nothing is
/// started), then the run.
fn attach_running(a: &RunArgs, out: PathBuf, attach: &run::AttachOptions) -> u8 {
    let spec_path = match spec_path(a) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let opts = run::RunOptions {
        spec_path,
        duration: a.duration,
        out_dir: out,
        endpoint: PathBuf::new(),
        print_summary: true,
        overrides: a.set.clone(),
        live: a.live.options(),
        inputs: None,
    };
    match run::attach_running(&opts, attach) {
        Ok(outcome) => {
            println!("{}", outcome.dir.display());
            0
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

/// The profile's file, or the exit status of a name that names none.
fn spec_path(a: &RunArgs) -> Result<PathBuf, u8> {
    let spec_path = if a.profile.ends_with(".toml") || a.profile.contains('/') {
        PathBuf::from(&a.profile)
    } else {
        a.profiles.join(format!("{}.toml", a.profile))
    };
    if !spec_path.is_file() {
        return Err(fail(
            2,
            format!(
                "profile {:?}: no file {}; name one of {}/*.toml or give a path",
                a.profile,
                spec_path.display(),
                a.profiles.display()
            ),
        ));
    }
    Ok(spec_path)
}

/// The run options of a profile, or the exit status of bad arguments.
fn run_options(a: &RunArgs, out: PathBuf) -> Result<run::RunOptions, u8> {
    let spec_path = spec_path(a)?;
    let Some(endpoint) = a.endpoint.clone().or_else(sibling_endpoint) else {
        return Err(fail(
            2,
            "--endpoint: protoprof-endpoint not found beside protoprof; pass its path",
        ));
    };
    Ok(run::RunOptions {
        spec_path,
        duration: a.duration,
        out_dir: out,
        endpoint,
        print_summary: true,
        overrides: a.set.clone(),
        live: a.live.options(),
        inputs: None,
    })
}

/// The gates of a run command: --gates, else gates.toml beside the profiles
/// (none when that file does not exist).
fn run_gates(a: &RunArgs) -> Result<Gates, u8> {
    match &a.gates {
        Some(path) => Gates::load(path).map_err(|e| fail(e.exit_code(), e)),
        None => {
            let path = a.profiles.join("gates.toml");
            if path.is_file() {
                Gates::load(&path).map_err(|e| fail(e.exit_code(), e))
            } else {
                eprintln!("protoprof: no {}: comparing without gates", path.display());
                Ok(Gates::default())
            }
        }
    }
}

fn profile(a: &RunArgs, out: PathBuf, compare: Option<String>, repeat: Option<usize>) -> u8 {
    let mut opts = match run_options(a, out.clone()) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(spec) = compare else {
        if repeat.is_some() {
            return fail(
                2,
                "--repeat: only with --compare (or `baseline save|check`)",
            );
        }
        return match run::run_profile(&opts) {
            Ok(outcome) => {
                println!("{}", outcome.dir.display());
                0
            }
            Err(e) => fail(e.exit_code(), e),
        };
    };
    let variants = match repeat::parse_variants(&spec) {
        Ok(v) => v,
        Err(e) => return fail(2, e),
    };
    let gates = match run_gates(a) {
        Ok(g) => g,
        Err(code) => return code,
    };
    // Read once here: the run count below and every run of the series
    // come from the same profile text.
    if let Err(e) = opts.read_inputs() {
        return fail(e.exit_code(), e);
    }
    let n = match repeat {
        Some(n) => n,
        None => match opts.spec() {
            Ok(spec) => repeat::default_repeat(&spec, &gates),
            Err(e) => return fail(e.exit_code(), e),
        },
    };
    if n == 0 {
        return fail(2, "--repeat: use 1 or more runs per variant");
    }
    let name = Path::new(&a.profile)
        .file_stem()
        .map_or_else(|| a.profile.clone(), |s| s.to_string_lossy().into_owned());
    let root = out.join(format!(
        "compare-{name}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    ));
    opts.print_summary = false;
    let variants: Vec<Variant> = ["a", "b"]
        .iter()
        .zip(variants)
        .map(|(label, set)| Variant {
            label: label.to_string(),
            overrides: vec![set],
        })
        .collect();
    for v in &variants {
        eprintln!("protoprof: variant {}: --set {}", v.label, v.overrides[0]);
    }
    let sets = match repeat::run_interleaved(&opts, &variants, n, &root, |_, _| Ok(())) {
        Ok(s) => s,
        Err(e) => return fail(e.exit_code(), e),
    };
    finish_compare(
        &sets[0],
        &sets[1],
        &gates,
        &CompareOptions::default(),
        &root,
    )
}

/// Compare, write, print; the exit status from the gates.
fn finish_compare(a: &RunSet, b: &RunSet, gates: &Gates, opts: &CompareOptions, out: &Path) -> u8 {
    match compare::write(a, b, gates, opts, out) {
        Ok(c) => report_comparison(&c, out),
        Err(e) => fail(e.exit_code(), e),
    }
}

fn report_comparison(c: &Comparison, out: &Path) -> u8 {
    print!("{}", compare::markdown::summary(c));
    println!("{}", out.display());
    match c.gates.outcome {
        GateOutcome::Pass => 0,
        GateOutcome::Failed => 1,
        GateOutcome::TooFewRuns => fail(2, c.gates.too_few_line(c.a.runs.len(), c.b.runs.len())),
    }
}

fn compare_dirs(a: &Path, b: &Path, out: Option<PathBuf>, gates: &Path, force: bool) -> u8 {
    let gates = if gates.is_file() || gates != Path::new("profiles/gates.toml") {
        match Gates::load(gates) {
            Ok(g) => g,
            Err(e) => return fail(e.exit_code(), e),
        }
    } else {
        eprintln!("protoprof: no profiles/gates.toml here: comparing without gates");
        Gates::default()
    };
    let (sa, sb) = match (RunSet::load(a), RunSet::load(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return fail(e.exit_code(), e),
    };
    let stem = |p: &Path| {
        p.canonicalize()
            .ok()
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "run".into())
    };
    let out = out.unwrap_or_else(|| {
        PathBuf::from("target/protoprof/compares").join(format!("{}-vs-{}", stem(a), stem(b)))
    });
    finish_compare(&sa, &sb, &gates, &CompareOptions { force }, &out)
}

/// What a baseline command runs: its options, profile name, key (the key
/// of the runs it would make, before making them) and runs to make.
struct BaselinePlan {
    opts: run::RunOptions,
    profile: String,
    key: Key,
    repeat: usize,
    gates: Gates,
}

fn baseline_setup(args: &BaselineArgs) -> Result<BaselinePlan, u8> {
    let mut opts = run_options(&args.run, args.out.clone())?;
    // Read once: the key's spec hash and every run's come from one text.
    opts.read_inputs().map_err(|e| fail(e.exit_code(), e))?;
    let (spec, hash) = baseline::effective_spec(&opts).map_err(|e| fail(e.exit_code(), e))?;
    let gates = run_gates(&args.run)?;
    let repeat = args
        .repeat
        .unwrap_or_else(|| repeat::default_repeat(&spec, &gates));
    if repeat == 0 {
        return Err(fail(2, "--repeat: use 1 or more runs"));
    }
    let key = Key {
        spec_blake3: hash,
        machine: protoprof::machine::this_machine(),
    };
    Ok(BaselinePlan {
        opts,
        profile: spec.name,
        key,
        repeat,
        gates,
    })
}

/// Run the profile the plan's number of times into `root`, checking that
/// every run hashed the spec as the key says.
fn baseline_runs(plan: &BaselinePlan, root: &Path) -> Result<RunSet, u8> {
    let mut opts = plan.opts.clone();
    opts.print_summary = false;
    let variant = Variant {
        label: "run".into(),
        overrides: Vec::new(),
    };
    let expected = plan.key.spec_blake3.clone();
    repeat::run_interleaved(&opts, &[variant], plan.repeat, root, |_, outcome| {
        if outcome.report.run.spec_blake3 == expected {
            Ok(())
        } else {
            Err(format!(
                "its spec hash {} is not the key's {expected}: protoprof computes the key unlike the runner (a bug)",
                outcome.report.run.spec_blake3
            ))
        }
    })
    .map(|mut v| v.remove(0))
    .map_err(|e| fail(e.exit_code(), e))
}

fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string()
}

fn baseline_save(args: &BaselineArgs, force: bool) -> u8 {
    let plan = match baseline_setup(args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (opts, profile, key) = (&plan.opts, &plan.profile, &plan.key);
    let target = baseline::dir(&args.baselines, profile, key);
    if target.exists() && !force {
        return fail(
            2,
            format!(
                "baseline {} exists; pass --force to replace it",
                target.display()
            ),
        );
    }
    let root = args.out.join(format!("{profile}-{}", stamp()));
    let set = match baseline_runs(&plan, &root) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let index = BaselineIndex {
        profile: profile.clone(),
        spec_blake3: key.spec_blake3.clone(),
        machine: key.machine.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        overrides: opts.overrides.clone(),
        duration: opts.duration,
        runs: Vec::new(),
    };
    match baseline::save(&args.baselines, &index, key, &set.runs, force) {
        Ok(dir) => {
            println!("{}", dir.display());
            0
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

fn baseline_check(args: &BaselineArgs) -> u8 {
    let plan = match baseline_setup(args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (profile, key) = (&plan.profile, &plan.key);
    // Before running anything: without a baseline there is nothing to check.
    let base = match baseline::load(&args.baselines, profile, key) {
        Ok(b) => b,
        Err(e) => return fail(e.exit_code(), e),
    };
    let root = args.out.join(format!("check-{profile}-{}", stamp()));
    let now = match baseline_runs(&plan, &root) {
        Ok(s) => s,
        Err(code) => return code,
    };
    finish_compare(
        &base,
        &now,
        &plan.gates,
        &CompareOptions::default(),
        &root.join("compare"),
    )
}

fn print_schema() -> u8 {
    match serde_json::to_string_pretty(&protoprof::report::json_schema()) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => fail(1, e),
    }
}

fn render_again(run: &Path) -> u8 {
    // An older schema or a side file that is not the one report.json
    // names is refused in one line.
    let (report, graphs) = match render::read_run(run) {
        Ok(r) => r,
        Err(e) => return fail(2, e),
    };
    if let Err(e) = render::write_all(&report, &graphs, run) {
        return fail(1, e);
    }
    print!("{}", render::summary(&report));
    println!("{}", run.display());
    0
}

fn sibling_endpoint() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("protoprof-endpoint");
    p.is_file().then_some(p)
}
