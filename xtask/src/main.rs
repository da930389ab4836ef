//! `cargo xtask`: everything around cargo that protoprof needs.
//!
//! - `setup`: make this machine able to build the probes (rust-src, and
//!   bpf-linker built against this toolchain's own LLVM, cached outside
//!   `target/`), and, as root, install what the tests run against (Debian
//!   packages, sing-box pinned by hash: see `peers`). Every other command
//!   runs the toolchain part first; `test` the whole. A second run takes
//!   seconds.
//! - `build`: release build of the runner (with the probes embedded) and of
//!   the reference endpoints.
//! - `profile NAME`: build, then run `profiles/NAME.toml` (with `--compare
//!   KEY=V1,KEY=V2 --repeat N`: two variants, interleaved, compared).
//! - `baseline save|check NAME`, `compare A B`, `attach --pid PID …`:
//!   build, then the protoprof command of the same name.
//! - `test`: format check, clippy (the probes too), and the whole test
//!   suite (the probe tests need root; without it they are listed as
//!   ignored, never passed). A peer that is missing and cannot be installed
//!   skips the tests that need it, with one line naming it and its install
//!   command; under `CI=true` it fails the run instead.
//! - `fuzz [TARGET] [--time S]`: run the fuzz targets (every wire decoder
//!   and binary reader, `fuzz/`) for S seconds each; `test` runs each for
//!   [`FUZZ_TEST_SECONDS`] and fails on a crash.
//! - `lint`: format check and clippy only.
//! - `figures [DOC…]`: rerun what the measured tables in docs/ need and
//!   rewrite them between their markers (see `figures`).

mod figures;
mod fuzz;
mod peers;
mod setup;
mod stress;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the probes and running the tests need
    /// (idempotent; the system packages and sing-box only as root).
    Setup,
    /// Release build of protoprof and protoprof-endpoint.
    Build,
    /// Build, then profile `profiles/NAME.toml`; prints the run directory last.
    Profile {
        name: String,
        /// Total measured seconds, split over the profile's phases.
        #[arg(long)]
        duration: Option<f64>,
        /// Where run directories go (default target/protoprof/runs).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a profile setting, KEY=VALUE (dotted TOML key); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run two variants interleaved and compare them: KEY=V1,KEY=V2.
        #[arg(long, value_name = "KEY=V1,KEY=V2")]
        compare: Option<String>,
        /// Runs per variant with --compare (protoprof's default: 3).
        #[arg(long)]
        repeat: Option<usize>,
    },
    /// Build, then `protoprof baseline save|check NAME …` (arguments passed
    /// through: --repeat, --duration, --set, --force, --baselines, --gates).
    Baseline {
        /// `save` or `check`.
        action: String,
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then `protoprof compare A B …` (arguments passed through).
    Compare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then `protoprof attach [PROFILE] --pid PID[,PID…] [--role R]
    /// [--socks ADDR] [--duration S] …` (arguments passed through; named
    /// profiles from the repository's profiles/).
    Attach {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then `protoprof soak NAME --duration D [--interval I] …`
    /// (arguments passed through): the profile's passes on one chain for
    /// hours, a report per interval, soak.json/soak.md as checkpoints.
    Soak {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks: `probes` measures what each probe costs on the tcp chain
    /// (profiled against unprofiled throughput, medians over repeats);
    /// `protocols` compares every protocol through our endpoints and through
    /// sing-box's, side by side. Both print a table; `figures` writes the docs.
    Bench {
        /// What to measure: `protocols` (default) or `probes`.
        #[arg(default_value = "protocols")]
        what: String,
        /// Runs per configuration.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 6.0)]
        duration: f64,
        /// `probes`: only the row with this label, or else the rows whose
        /// label contains it; `protocols`: only these protocols (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// `probes`: measure side by side instead of against a control pass:
        /// each run detaches and attaches the probes second by second
        /// (`probes.alternate`), and a cell is the median over every pair
        /// of adjacent seconds of every run.
        #[arg(long)]
        alternate: bool,
    },
    /// Format check, clippy and every test.
    Test {
        /// Install nothing: tests whose peer is missing are skipped (listed).
        #[arg(long)]
        no_install: bool,
        /// Passed to every test binary after `--` (e.g. a name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Format check and clippy.
    Lint,
    /// Fuzz the wire decoders and binary readers (cargo-fuzz on nightly,
    /// installed on demand); fails on a crash, naming the input.
    Fuzz {
        /// One target (default: every one in fuzz/Cargo.toml).
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
    },
    /// The stress table for every protocol, ours and sing-box's: connection
    /// rate, a large transfer, concurrent connections, leak and descriptor
    /// checks; writes docs/stress.md (with --only or other sizes: prints the
    /// tables and keeps them under target/protoprof/stress/).
    Stress {
        /// Only these rows, by profile (repeatable): tcp, tls, sing-box-tls, …
        #[arg(long)]
        only: Vec<String>,
        /// The concurrency sweep's levels.
        #[arg(long, value_delimiter = ',', default_values_t = stress::LEVELS.to_vec())]
        levels: Vec<usize>,
        /// The large transfer: bytes each way on one connection.
        #[arg(long, default_value_t = stress::TRANSFER_BYTES)]
        transfer_bytes: u64,
    },
    /// Rerun what the docs' measured tables need and rewrite them between
    /// their `<!-- figures: ID -->` markers, stamped with date, machine
    /// and command.
    Figures {
        /// Only the figures of these documents (default: every document).
        docs: Vec<PathBuf>,
        /// Only these figures (repeatable; `--list` names them).
        #[arg(long)]
        only: Vec<String>,
        /// Also the figures that take many minutes (the compares).
        #[arg(long)]
        slow: bool,
        /// Write the soak figure from the finished soak in this directory
        /// (soak.json and intervals/, as `cargo xtask soak` leaves them)
        /// instead of running a new one-hour soak.
        #[arg(long, value_name = "DIR")]
        soak_dir: Option<PathBuf>,
        /// List the figures and exit.
        #[arg(long)]
        list: bool,
    },
}

/// Seconds each fuzz target runs in `cargo xtask test`: a smoke run that
/// catches a decoder change that crashes at once, within CI's budget (the
/// long runs are `cargo xtask fuzz`).
const FUZZ_TEST_SECONDS: u64 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    let root = workspace_root()?;
    let tools = setup::setup(&root)?;
    match cmd {
        Cmd::Setup => {
            let missing = peers::ensure(&root, peers::Install::IfRoot)?;
            for p in &missing {
                println!(
                    "xtask setup: {} is missing; install it as root: {}",
                    p.name,
                    p.install_command()
                );
            }
            Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Build => {
            build(&root, &tools)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Profile {
            name,
            duration,
            out,
            set,
            compare,
            repeat,
        } => {
            build(&root, &tools)?;
            let mut cmd = Command::new(root.join("target/release/protoprof"));
            cmd.current_dir(&root)
                .arg("profile")
                .arg(&name)
                .arg("--profiles")
                .arg(root.join("profiles"))
                .arg("--out")
                .arg(out.unwrap_or_else(|| root.join("target/protoprof/runs")));
            if let Some(d) = duration {
                cmd.arg("--duration").arg(d.to_string());
            }
            for s in &set {
                cmd.arg("--set").arg(s);
            }
            if let Some(c) = compare {
                cmd.arg("--compare").arg(c);
            }
            if let Some(n) = repeat {
                cmd.arg("--repeat").arg(n.to_string());
            }
            run_protoprof(cmd)
        }
        Cmd::Baseline { action, name, args } => {
            build(&root, &tools)?;
            let mut cmd = Command::new(root.join("target/release/protoprof"));
            cmd.current_dir(&root)
                .args(["baseline", &action, &name, "--profiles"])
                .arg(root.join("profiles"));
            // The repository's store unless the caller names another.
            if !args.iter().any(|a| a.starts_with("--baselines")) {
                cmd.arg("--baselines").arg(root.join("profiles/baselines"));
            }
            cmd.args(&args);
            run_protoprof(cmd)
        }
        Cmd::Compare { args } => {
            build(&root, &tools)?;
            let mut cmd = Command::new(root.join("target/release/protoprof"));
            cmd.current_dir(&root).arg("compare").args(&args);
            run_protoprof(cmd)
        }
        Cmd::Attach { args } => {
            build(&root, &tools)?;
            pass_through(&root, "attach", &args)
        }
        Cmd::Soak { name, args } => {
            build(&root, &tools)?;
            let mut all = vec![name];
            all.extend(args);
            pass_through(&root, "soak", &all)
        }
        Cmd::Test { no_install, args } => {
            let install = if no_install {
                peers::Install::Never
            } else {
                peers::Install::IfRoot
            };
            test(&root, &tools, install, &args)
        }
        Cmd::Bench {
            what,
            repeat,
            duration,
            only,
            alternate,
        } => {
            if alternate && what != "probes" {
                eprintln!("xtask bench: --alternate applies to `bench probes` only");
                return Ok(ExitCode::from(2));
            }
            match what.as_str() {
                "probes" => {
                    build(&root, &tools)?;
                    if alternate {
                        bench_probes_alternating(&root, repeat, duration, &only)?;
                    } else {
                        bench_probes(&root, repeat, duration, &only)?;
                    }
                }
                "protocols" => {
                    build(&root, &tools)?;
                    if let Some(bad) = only
                        .iter()
                        .find(|p| !PROTOCOL_PAIRS.iter().any(|(o, _)| o == p))
                    {
                        eprintln!(
                            "xtask bench protocols: --only {bad}: no such protocol; use one of {}",
                            PROTOCOL_PAIRS
                                .iter()
                                .map(|(o, _)| *o)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        return Ok(ExitCode::from(2));
                    }
                    bench_protocols(&root, repeat, duration, &only)?;
                }
                _ => {
                    eprintln!(
                        "xtask bench: {what:?}: unknown benchmark; use `probes` or `protocols`"
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lint => {
            lint(&root, &tools)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fuzz { target, time } => {
            if let Some(why) = fuzz::missing_toolchain() {
                bail!("{why}");
            }
            let outcomes = fuzz::run(&root, target.as_deref(), time)?;
            Ok(if outcomes.iter().all(|o| o.crash.is_none()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Stress {
            only,
            levels,
            transfer_bytes,
        } => {
            let opts = stress::Options {
                only,
                levels,
                transfer_bytes,
            };
            // Bad options: one line and exit status 2, before the build.
            if let Err(e) = opts.check() {
                eprintln!("xtask: {e}");
                return Ok(ExitCode::from(2));
            }
            build(&root, &tools)?;
            stress::command(&root, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Figures {
            docs,
            only,
            slow,
            soak_dir,
            list,
        } => {
            if list {
                for f in figures::FIGURES {
                    let slow = if f.slow { " (slow)" } else { "" };
                    println!("{}\t{}{slow}\t{}", f.id, f.doc, f.what);
                }
                return Ok(ExitCode::SUCCESS);
            }
            build(&root, &tools)?;
            let docs = docs
                .into_iter()
                .map(|d| std::path::absolute(&d).unwrap_or(d))
                .collect();
            let soak_dir = soak_dir.map(|d| std::path::absolute(&d).unwrap_or(d));
            figures::run(
                &root,
                &figures::Request {
                    docs,
                    only,
                    slow,
                    soak_dir,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// A cargo command in the workspace that can build the probes.
fn cargo(root: &Path, tools: &setup::Tools) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .env("PROTOPROF_BPF_LINKER", &tools.bpf_linker);
    cmd
}

fn check(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn build(root: &Path, tools: &setup::Tools) -> Result<()> {
    let mut cmd = cargo(root, tools);
    cmd.args([
        "build",
        "--release",
        "-p",
        "bench-user",
        "-p",
        "bench-proto",
    ]);
    check(cmd, "cargo build --release")
}

/// Where [`build_endpoint_without_frame_pointers`] puts its build.
pub const NO_FRAME_POINTERS_DIR: &str = "target/no-frame-pointers";

/// A second protoprof-endpoint, built as most proxies ship: without frame
/// pointers (the workspace's rustflags force them). The stack tests
/// profile it to show that copied stacks, unwound from `.eh_frame`, are as
/// deep as walked ones. Its own target directory: other rustflags rebuild
/// every crate, and sharing one would rebuild the main build each time.
fn build_endpoint_without_frame_pointers(root: &Path, tools: &setup::Tools) -> Result<()> {
    let mut cmd = cargo(root, tools);
    cmd.args([
        "build",
        "--release",
        "-p",
        "bench-proto",
        "--bin",
        "protoprof-endpoint",
        "--target-dir",
        NO_FRAME_POINTERS_DIR,
    ])
    // RUSTFLAGS replaces the config's target rustflags.
    .env("RUSTFLAGS", "-C force-frame-pointers=no");
    check(
        cmd,
        "cargo build of protoprof-endpoint without frame pointers",
    )
}

fn lint(root: &Path, tools: &setup::Tools) -> Result<()> {
    let mut cmd = cargo(root, tools);
    cmd.args(["fmt", "--all", "--check"]);
    check(cmd, "cargo fmt --check")?;
    let mut cmd = cargo(root, tools);
    cmd.args([
        "clippy",
        "--release",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    check(cmd, "cargo clippy")?;
    // The decoders-only build the fuzz targets link (no default features).
    let mut cmd = cargo(root, tools);
    cmd.args([
        "clippy",
        "--release",
        "-p",
        "bench-proto",
        "--no-default-features",
        "--lib",
        "--",
        "-D",
        "warnings",
    ]);
    check(cmd, "cargo clippy on bench-proto's wire decoders alone")?;
    clippy_probes(root, tools)
}

/// Clippy on the probe crate, which the workspace's default members leave
/// out (it builds only for BPF): the same target and flags as the probe
/// build in bench-user/build.rs, without linking.
fn clippy_probes(root: &Path, tools: &setup::Tools) -> Result<()> {
    let mut cmd = cargo(root, tools);
    cmd.args([
        "clippy",
        "--package",
        "bench-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])
    // build-std on stable, as in the probe build.
    .env("RUSTC_BOOTSTRAP", "1")
    .env(
        "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
        // The probes read the registers of the machine they run on.
        format!("--cfg bpf_target_arch=\"{}\"", std::env::consts::ARCH),
    );
    check(cmd, "cargo clippy on the probes (bench-ebpf)")
}

fn test(
    root: &Path,
    tools: &setup::Tools,
    install: peers::Install,
    args: &[String],
) -> Result<ExitCode> {
    // Peers before the lint: clippy compiles boring-sys, whose build script
    // needs cmake, which a fresh machine gets from the install.
    let missing = peers::ensure(root, install)?;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let mut skips = Vec::new();
    for p in &missing {
        let line = format!(
            "{} is missing; install it with `cargo xtask setup` as root, or: {}",
            p.name,
            p.install_command()
        );
        match p.tests {
            // Interop must not go green by skipping.
            _ if ci => bail!("CI=true: {line}"),
            Some(word) => skips.push((word, line)),
            None => bail!("{line} (the build needs it)"),
        }
    }
    lint(root, tools)?;
    // The end-to-end tests run the release protoprof and protoprof-endpoint.
    build(root, tools)?;
    build_endpoint_without_frame_pointers(root, tools)?;
    let root_user = is_root();
    if !root_user {
        println!(
            "xtask test: not root: the probe tests are skipped (listed as ignored: needs root)"
        );
    }
    // One line per missing peer, with the number of tests it skips.
    let mut skipped = 0u64;
    let mut skip_lines = Vec::new();
    if !skips.is_empty() {
        let names = test_names(root, tools, args)?;
        for (word, line) in &skips {
            let n = names.iter().filter(|t| t.contains(word)).count() as u64;
            // Without a filter every peer has its tests; none means a test
            // was renamed away from the word and would now fail unskipped.
            if n == 0 && args.is_empty() {
                bail!("no test is named *{word}*: peers::PIECES is out of date");
            }
            skip_lines.push(format!(
                "xtask test: skipped {n} tests named *{word}*: {line}"
            ));
            skipped += n;
        }
    }
    let mut cmd = cargo(root, tools);
    // Release: the end-to-end tests profile the same binaries a user runs,
    // and they share their build with `cargo xtask profile`. One test at a
    // time: the probe tests check that no BPF program is left loaded.
    // --no-fail-fast: one failing binary must not hide the others' results.
    cmd.args([
        "test",
        "--release",
        "--workspace",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]);
    if root_user {
        // The probe tests are #[ignore = "needs root"]: run them too.
        cmd.arg("--include-ignored");
    }
    cmd.args(args);
    for (word, _) in &skips {
        cmd.args(["--skip", word]);
    }
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().context("running cargo test")?;
    let mut totals = [0u64; 3];
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            if let Some(counts) = test_result_counts(&line) {
                for (t, c) in totals.iter_mut().zip(counts) {
                    *t += c;
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    // A short run of every fuzz target, each counted as one test.
    match fuzz::ensure_toolchain(install) {
        Some(why) if ci => bail!("CI=true: {why}"),
        Some(why) => {
            let n = fuzz::targets(root, &fuzz::ensure_cargo_fuzz()?)?.len() as u64;
            skip_lines.push(format!("xtask test: skipped {n} fuzz targets: {why}"));
            skipped += n;
        }
        None => {
            for o in fuzz::run(root, None, FUZZ_TEST_SECONDS)? {
                let i = if o.crash.is_none() { 0 } else { 1 };
                totals[i] += 1;
            }
        }
    }
    for line in &skip_lines {
        println!("{line}");
    }
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals[0],
        totals[1],
        totals[2] + skipped
    );
    if totals[1] > 0 && status.success() {
        // Only a fuzz target failed.
        return Ok(ExitCode::FAILURE);
    }
    Ok(exit_code(status))
}

/// The names of the tests a `cargo test` with these arguments would run
/// (ignored ones too).
fn test_names(root: &Path, tools: &setup::Tools, args: &[String]) -> Result<Vec<String>> {
    let mut cmd = cargo(root, tools);
    cmd.args(["test", "--release", "--workspace", "--", "--list"])
        .args(args)
        .stderr(Stdio::inherit());
    let out = cmd.output().context("listing the tests")?;
    if !out.status.success() {
        bail!("cargo test -- --list failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// Passed, failed and ignored counts of a libtest "test result:" line.
fn test_result_counts(line: &str) -> Option<[u64; 3]> {
    let rest = line.strip_prefix("test result: ")?;
    let mut counts = [0u64; 3];
    for part in rest.split(['.', ';']) {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => counts[0] = n,
            "failed" => counts[1] = n,
            "ignored" => counts[2] = n,
            _ => {}
        }
    }
    Some(counts)
}

/// A benchmark's markdown table, the machine its runs named and the load
/// seen while they ran: what a figure block is made of.
pub struct BenchTable {
    pub table: String,
    pub machine: String,
    pub load: figures::Load,
}

/// Settings that switch every probe off.
const PROBES_OFF: &[&str] = &[
    "probes.syscalls=false",
    "probes.cpu.enabled=false",
    "probes.offcpu=false",
    "probes.counters=false",
    "probes.alloc.enabled=false",
    "probes.crypto.enabled=false",
];

/// Every probe alone, then the default set, each with a control pass, on
/// the tcp profile: throughput and round-trip ratios, medians over repeats.
/// A row of `bench probes`: label, base settings (every probe off, or the
/// defaults) and the settings on top.
type ProbeRow = (&'static str, &'static [&'static str], Vec<&'static str>);

/// The rows of `bench probes`, in table order.
fn probe_rows() -> Vec<ProbeRow> {
    const OFF: &[&str] = PROBES_OFF;
    vec![
        (
            "floor: empty programs on the syscalls, cpu and offcpu points",
            OFF,
            vec![
                "probes.syscalls=true",
                "probes.cpu.enabled=true",
                "probes.offcpu=true",
                "probes.floor=true",
            ],
        ),
        (
            "floor, one point: an empty program on sys_exit alone",
            OFF,
            vec!["probes.syscalls=true", "probes.floor=true"],
        ),
        (
            "floor, one point: an empty program on sched_switch alone",
            OFF,
            vec!["probes.offcpu=true", "probes.floor=true"],
        ),
        (
            "floor, one point: an empty program on the cpu clock alone (99 Hz)",
            OFF,
            vec!["probes.cpu.enabled=true", "probes.floor=true"],
        ),
        ("syscalls", OFF, vec!["probes.syscalls=true"]),
        (
            "syscalls timed (probes.syscall_time)",
            OFF,
            vec!["probes.syscalls=true", "probes.syscall_time=true"],
        ),
        (
            "syscalls + syscall stacks (1 in 64)",
            OFF,
            vec!["probes.syscalls=true", "probes.syscall_stacks.enabled=true"],
        ),
        ("cpu (99 Hz)", OFF, vec!["probes.cpu.enabled=true"]),
        ("offcpu", OFF, vec!["probes.offcpu=true"]),
        ("counters", OFF, vec!["probes.counters=true"]),
        (
            "alloc + crypto (per-call uprobes)",
            OFF,
            vec![
                "probes.alloc.enabled=true",
                "probes.crypto.enabled=true",
                "probes.per_call_pass=false",
            ],
        ),
        (
            "floor of the default set: empty programs + counters",
            OFF,
            vec![
                "probes.syscalls=true",
                "probes.cpu.enabled=true",
                "probes.offcpu=true",
                "probes.counters=true",
                "probes.floor=true",
            ],
        ),
        ("default set, main pass", &[], vec![]),
        (
            "default set, off-CPU stacks walked at most every 10 ms (probes.offcpu_stack_interval_us=10000)",
            &[],
            vec!["probes.offcpu_stack_interval_us=10000"],
        ),
        (
            "timed syscalls' floor: empty programs at both syscall points, cpu and offcpu + counters",
            OFF,
            vec![
                "probes.syscalls=true",
                "probes.syscall_time=true",
                "probes.cpu.enabled=true",
                "probes.offcpu=true",
                "probes.counters=true",
                "probes.floor=true",
            ],
        ),
        (
            "default set with syscalls timed (probes.syscall_time)",
            &[],
            vec!["probes.syscall_time=true"],
        ),
        (
            "default set, every stack walked by frame pointer (probes.unwind=frame-pointers)",
            &[],
            vec!["probes.unwind=frame-pointers"],
        ),
        (
            "default set, every stack copied and unwound (probes.unwind=dwarf)",
            &[],
            vec!["probes.unwind=dwarf"],
        ),
        (
            "default set + program run-time stats (probes.program_costs)",
            &[],
            vec!["probes.program_costs=true"],
        ),
        (
            "default set + program run-time stats, every stack walked by frame pointer",
            &[],
            vec!["probes.program_costs=true", "probes.unwind=frame-pointers"],
        ),
    ]
}

/// Whether `--only` picks the probe row `label`: an argument that is a
/// row's whole label picks that row alone (so "counters" is not also the
/// rows that mention counters); any other picks the rows containing it.
fn row_wanted(label: &str, only: &[String]) -> bool {
    let labels: Vec<&str> = probe_rows().iter().map(|r| r.0).collect();
    only.is_empty()
        || only
            .iter()
            .any(|o| label == o || (!labels.contains(&o.as_str()) && label.contains(o.as_str())))
}

fn bench_probes(root: &Path, repeat: usize, duration: f64, only: &[String]) -> Result<BenchTable> {
    let configs = probe_rows();
    let out = root.join("target/protoprof/bench-probes");
    let _ = std::fs::remove_dir_all(&out);
    let mut table = String::from(
        "| probes | bulk throughput, probed / unprofiled | rr round trips, probed / unprofiled | load avg (1 min), start–end |\n|---|---:|---:|---:|\n",
    );
    print!("{table}");
    let mut load = figures::Load::default();
    let mut machine = String::new();
    let mut program_ns = std::collections::BTreeMap::<String, (Vec<f64>, u64)>::new();
    // Per unwind mode: (bytes per copy, runner ns per copy) per run, copies.
    let mut copies = std::collections::BTreeMap::<String, (Vec<f64>, Vec<f64>, u64)>::new();
    for (label, base, on) in configs {
        if !row_wanted(label, only) {
            continue;
        }
        let load_before = load_average();
        load.sample();
        let mut bulk = Vec::new();
        let mut rr = Vec::new();
        for _ in 0..repeat {
            let sets: Vec<&str> = std::iter::once("probes.control=true")
                .chain(base.iter().copied())
                .chain(on.iter().copied())
                .collect();
            let (_, report) = figures::profile_run(root, &out, "tcp", Some(duration), &sets)
                .with_context(|| label.to_string())?;
            machine = figures::machine_line(&report);
            for o in report["probes"]["overhead"]
                .as_array()
                .into_iter()
                .flatten()
            {
                match o["pattern"].as_str() {
                    Some("bulk") => bulk.extend(o["ratio"].as_f64()),
                    Some("rr") => {
                        if let (Some(p), Some(b)) =
                            (o["probed_rps"].as_f64(), o["baseline_rps"].as_f64())
                        {
                            rr.push(p / b);
                        }
                    }
                    _ => {}
                }
            }
            let mode = report["probes"]["options"]["unwind"]
                .as_str()
                .unwrap_or("auto")
                .to_string();
            for c in report["probes"]["stack_copies"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let (Some(n), Some(bytes), Some(ns)) = (
                    c["copies"].as_f64(),
                    c["bytes"].as_f64(),
                    c["unwind_ns"].as_f64(),
                ) {
                    if n > 0.0 {
                        let e = copies.entry(mode.clone()).or_default();
                        e.0.push(bytes / n);
                        e.1.push(ns / n);
                        e.2 += n as u64;
                    }
                }
            }
            // With probes.program_costs: the kernel's time per run of each
            // program, one value per run, by unwind mode.
            for c in report["probes"]["program_costs"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let (Some(name), Some(ns), Some(n)) = (
                    c["program"].as_str(),
                    c["run_time_ns"].as_f64(),
                    c["run_count"].as_f64(),
                ) {
                    if n > 0.0 {
                        let e = program_ns.entry(format!("`{name}`, {mode}")).or_default();
                        e.0.push(ns / n);
                        e.1 += n as u64;
                    }
                }
            }
        }
        load.sample();
        let row = format!(
            "| {label} | {} | {} | {}–{} |\n",
            figures::spread_with_interval(&mut bulk, 3),
            figures::spread_with_interval(&mut rr, 3),
            load_before,
            load_average()
        );
        print!("{row}");
        table.push_str(&row);
    }
    if !program_ns.is_empty() {
        let mut costs = String::from(
            "\nThe kernel's run time per invocation of each program (`BPF_ENABLE_STATS`, \
             rows with `probes.program_costs`; every invocation on the machine, targets or not; \
             the statistics' own two clock reads included):\n\n\
             | program, stacks taken (`probes.unwind`) | ns per run, median [min–max] over runs | runs counted |\n|---|---:|---:|\n",
        );
        for (name, (mut v, n)) in program_ns {
            costs.push_str(&format!(
                "| {name} | {} | {n} |\n",
                figures::spread(&mut v, 0)
            ));
        }
        print!("{costs}");
        table.push_str(&costs);
    }
    if !copies.is_empty() {
        let mut t = String::from(
            "\nStack copies (code without frame pointers, docs/probes.md), all rows with copies, \
             by `probes.unwind`: bytes copied per copy, and the runner's CPU time unwinding one:\n\n\
             | stacks taken | bytes per copy, median [min–max] over runs | µs to unwind a copy | copies counted |\n|---|---:|---:|---:|\n",
        );
        for (mode, (mut bytes, ns, n)) in copies {
            let mut us: Vec<f64> = ns.iter().map(|v| v / 1000.0).collect();
            t.push_str(&format!(
                "| {mode} | {} | {} | {n} |\n",
                figures::spread(&mut bytes, 0),
                figures::spread(&mut us, 1)
            ));
        }
        print!("{t}");
        table.push_str(&t);
    }
    Ok(BenchTable {
        table,
        machine,
        load,
    })
}

/// `bench probes --alternate`: each row's runs detach and attach the main
/// pass's programs second by second (`probes.alternate`); a cell pools the
/// attached / detached ratios of every pair of adjacent seconds of every
/// run: median [min–max], pairs, and the median's distribution-free 95 %
/// interval. Rows that attach none of those programs (counters, the
/// per-call probes) switch nothing: their ratios show the method's noise.
fn bench_probes_alternating(
    root: &Path,
    repeat: usize,
    duration: f64,
    only: &[String],
) -> Result<BenchTable> {
    let out = root.join("target/protoprof/bench-probes");
    let _ = std::fs::remove_dir_all(&out);
    let mut table = String::from(
        "| probes | bulk throughput, attached / detached seconds | rr round trips, attached / detached seconds | longest switch, ms | load avg (1 min), start–end |\n|---|---:|---:|---:|---:|\n",
    );
    print!("{table}");
    let mut load = figures::Load::default();
    let mut machine = String::new();
    for (label, base, on) in probe_rows() {
        if !row_wanted(label, only) {
            continue;
        }
        let load_before = load_average();
        load.sample();
        let mut bulk = Vec::new();
        let mut rr = Vec::new();
        let mut switch_ms: Vec<f64> = Vec::new();
        for _ in 0..repeat {
            // The per-call probes run in a pass of their own, which
            // alternating does not touch: the default rows leave it out.
            let per_call_off: &[&str] = if base.is_empty() {
                &["probes.alloc.enabled=false", "probes.crypto.enabled=false"]
            } else {
                &[]
            };
            let sets: Vec<&str> = std::iter::once("probes.alternate=true")
                .chain(base.iter().copied())
                .chain(per_call_off.iter().copied())
                .chain(on.iter().copied())
                .collect();
            let (_, report) = figures::profile_run(root, &out, "tcp", Some(duration), &sets)
                .with_context(|| label.to_string())?;
            machine = figures::machine_line(&report);
            for a in report["probes"]["alternating"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let into = match a["pattern"].as_str() {
                    Some("bulk") => &mut bulk,
                    Some("rr") => &mut rr,
                    _ => continue,
                };
                into.extend(
                    a["pair_ratios"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_f64()),
                );
                switch_ms.extend(a["switch_ms_max"].as_f64());
            }
        }
        load.sample();
        let row = format!(
            "| {label} | {} | {} | {} | {}–{} |\n",
            figures::spread_with_interval(&mut bulk, 3).replace("runs", "pairs"),
            figures::spread_with_interval(&mut rr, 3).replace("runs", "pairs"),
            figures::spread(&mut switch_ms, 1),
            load_before,
            load_average()
        );
        print!("{row}");
        table.push_str(&row);
    }
    Ok(BenchTable {
        table,
        machine,
        load,
    })
}

/// The 1-minute load average, as /proc/loadavg gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// One profile run with every probe off; the run's report.json.
fn plain_run(
    root: &Path,
    out: &Path,
    profile: &str,
    duration: f64,
    extra: &[&str],
) -> Result<serde_json::Value> {
    let sets: Vec<&str> = PROBES_OFF.iter().chain(extra).copied().collect();
    figures::profile_run(root, out, profile, Some(duration), &sets).map(|(_, r)| r)
}

/// Our endpoints against an outside implementation's (sing-box, or shoes
/// for reality), protocol by protocol, interleaved run by run, probes off:
/// upload throughput (sing-box relays no half-close, so both sides upload
/// only) and rr latency. `cargo xtask figures` writes the table into
/// docs/benchmarks.md.
/// Each of our protocols with the outside profile it is measured against
/// (profile, implementation), if there is one.
type ProtocolPair = (&'static str, Option<(&'static str, &'static str)>);
const PROTOCOL_PAIRS: [ProtocolPair; 8] = [
    ("tcp", None),
    ("tls", Some(("sing-box-tls", "sing-box"))),
    ("tuic", Some(("sing-box-tuic", "sing-box"))),
    ("ssh", None),
    ("ech", Some(("sing-box-ech", "sing-box"))),
    ("hysteria1", Some(("sing-box-hysteria1", "sing-box"))),
    ("hysteria2", Some(("sing-box-hysteria2", "sing-box"))),
    ("reality", Some(("shoes-reality", "shoes"))),
];

/// `only`: these protocols (empty: every one).
fn bench_protocols(
    root: &Path,
    repeat: usize,
    duration: f64,
    only: &[String],
) -> Result<BenchTable> {
    let pairs = PROTOCOL_PAIRS
        .into_iter()
        .filter(|(ours, _)| only.is_empty() || only.iter().any(|o| o == ours));
    let out = root.join("target/protoprof/bench-protocols");
    let _ = std::fs::remove_dir_all(&out);
    // Our bulk phase as sing-box's: upload only.
    let ours_extra = ["phase.0.direction=up"];
    let mut load = figures::Load::default();
    let mut machine = String::new();
    let mut table = String::from(
        "| protocol | outside implementation | ours: upload MiB/s | outside: upload MiB/s | ours / outside (medians) | ours: rr p50 / p99 (medians) | outside: rr p50 / p99 (medians) |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for (ours, theirs) in pairs {
        let mut up = [Vec::new(), Vec::new()];
        let mut p50 = [Vec::new(), Vec::new()];
        let mut p99 = [Vec::new(), Vec::new()];
        for _ in 0..repeat {
            let runs = [
                Some((ours, &ours_extra[..])),
                theirs.map(|(t, _)| (t, &[][..])),
            ];
            for (i, run) in runs.iter().enumerate() {
                let Some((profile, extra)) = run else {
                    continue;
                };
                load.sample();
                let r = plain_run(root, &out, profile, duration, extra)?;
                machine = figures::machine_line(&r);
                let phases = &r["workload"]["phases"];
                up[i].extend(phases[0]["throughput"]["up_bps_median"].as_f64());
                // A percentile with too few samples has no value: left out.
                let pct = |label: &str| {
                    phases[1]["latency_us"]["percentiles"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["label"] == label))
                        .and_then(|p| p["estimate"]["value"]["value"].as_f64())
                };
                p50[i].extend(pct("p50"));
                p99[i].extend(pct("p99"));
            }
        }
        // MiB/s, median [min–max] over the repeats.
        let mib = |v: &[f64]| {
            let mut m: Vec<f64> = v.iter().map(|b| b / 1048576.0).collect();
            if m.is_empty() {
                "–".to_string()
            } else {
                figures::spread(&mut m, 1)
            }
        };
        let lat = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{a:.0} / {b:.0} µs"),
            _ => "–".into(),
        };
        let (u0, u1) = (median(&mut up[0]), median(&mut up[1]));
        let ratio = match (u0, u1) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        // Brutal sends at a fixed rate: the row says which, for both sides.
        let label = match ours {
            "hysteria1" => format!("{ours} (Brutal {HYSTERIA1_MBPS} Mbit/s both sides)"),
            _ => ours.to_owned(),
        };
        let outside = theirs.map(|(_, name)| name).unwrap_or("–");
        let row = format!(
            "| {label} | {outside} | {} | {} | {ratio} | {} | {} |\n",
            mib(&up[0]),
            mib(&up[1]),
            lat(median(&mut p50[0]), median(&mut p99[0])),
            lat(median(&mut p50[1]), median(&mut p99[1]))
        );
        print!("{row}");
        table.push_str(&row);
    }
    load.sample();
    Ok(BenchTable {
        table,
        machine,
        load,
    })
}

/// The Brutal rate of both hysteria1 profiles, each way, in Mbit/s: our
/// endpoint's default and the sing-box configurations' `up_mbps` and
/// `down_mbps`.
pub const HYSTERIA1_MBPS: u64 = 1000;

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Run protoprof and pass its exit status on (0 / 1 gate or run failure /
/// 2 bad input / 130 interrupted).
/// `protoprof SUBCOMMAND --profiles ROOT/profiles ARGS…`.
fn pass_through(root: &Path, subcommand: &str, args: &[String]) -> Result<ExitCode> {
    let mut cmd = Command::new(root.join("target/release/protoprof"));
    cmd.current_dir(root)
        .arg(subcommand)
        .arg("--profiles")
        .arg(root.join("profiles"))
        .args(args);
    run_protoprof(cmd)
}

fn run_protoprof(mut cmd: Command) -> Result<ExitCode> {
    // The runner handles Ctrl-C itself (stops the chain, detaches the
    // probes); xtask only waits for it.
    ignore_sigint();
    let status = cmd.status().context("running protoprof")?;
    Ok(exit_code(status))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ignore_sigint() {
    // SAFETY: setting a signal to SIG_IGN is always sound.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::{probe_rows, row_wanted, test_result_counts};

    #[test]
    fn only_picks_a_whole_label_alone_and_else_by_substring() {
        let picked = |only: &[&str]| -> Vec<&str> {
            let only: Vec<String> = only.iter().map(|o| o.to_string()).collect();
            probe_rows()
                .into_iter()
                .map(|r| r.0)
                .filter(|l| row_wanted(l, &only))
                .collect()
        };
        assert_eq!(picked(&["counters"]), ["counters"]);
        assert_eq!(picked(&["offcpu"]), ["offcpu"]);
        let floors = picked(&["floor, one point"]);
        assert_eq!(floors.len(), 3, "{floors:?}");
        assert!(picked(&["floor"]).len() > 3);
        assert_eq!(picked(&[]).len(), probe_rows().len());
        // The figures' rows each pick something.
        for only in ["default set, main pass", "floor of the default"] {
            assert_eq!(picked(&[only]).len(), 1, "{only}");
        }
    }

    #[test]
    fn reads_libtest_summaries() {
        let line = "test result: ok. 32 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 10.54s";
        assert_eq!(test_result_counts(line), Some([32, 1, 2]));
        assert_eq!(test_result_counts("running 3 tests"), None);
    }
}
