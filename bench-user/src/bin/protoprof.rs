//! `protoprof`: profile a proxy chain. Thin over the `protoprof` library.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use protoprof::{render, run};

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

#[derive(Subcommand)]
enum Command {
    /// Start the chain of a profile, drive its traffic, measure, report.
    Profile {
        /// A profile name (looked up as profiles/NAME.toml) or a .toml path.
        profile: String,
        /// Total measured seconds, split over the profile's phases.
        #[arg(long)]
        duration: Option<f64>,
        /// Where run directories go.
        #[arg(long, default_value = "target/protoprof/runs")]
        out: PathBuf,
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
    },
    /// Render every output (report.md, timeseries.csv, …) and the summary
    /// again from a run's report.json.
    Render {
        /// A run directory.
        run: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Profile {
            profile,
            duration,
            out,
            endpoint,
            profiles,
            set,
        } => {
            let spec_path = if profile.ends_with(".toml") || profile.contains('/') {
                PathBuf::from(&profile)
            } else {
                profiles.join(format!("{profile}.toml"))
            };
            if !spec_path.is_file() {
                eprintln!(
                    "protoprof: profile {profile:?}: no file {}; name one of {}/*.toml or give a path",
                    spec_path.display(),
                    profiles.display()
                );
                return ExitCode::from(2);
            }
            let endpoint = match endpoint.or_else(sibling_endpoint) {
                Some(e) => e,
                None => {
                    eprintln!("protoprof: --endpoint: protoprof-endpoint not found beside protoprof; pass its path");
                    return ExitCode::from(2);
                }
            };
            let opts = run::RunOptions {
                spec_path,
                duration,
                out_dir: out,
                endpoint,
                print_summary: true,
                overrides: set,
            };
            match run::run_profile(&opts) {
                Ok(outcome) => {
                    println!("{}", outcome.dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("protoprof: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
        Command::Render { run } => {
            let report = match render::read_json(&run.join("report.json")) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("protoprof: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = render::write_all(&report, &run) {
                eprintln!("protoprof: {e}");
                return ExitCode::FAILURE;
            }
            print!("{}", render::summary(&report));
            println!("{}", run.display());
            ExitCode::SUCCESS
        }
    }
}

fn sibling_endpoint() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("protoprof-endpoint");
    p.is_file().then_some(p)
}
