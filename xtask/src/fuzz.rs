//! `cargo xtask fuzz [TARGET] [--time S]`: the fuzz targets in `fuzz/`
//! (every wire decoder of bench-proto, every binary reader of
//! bench-binfmt), each run for a set time with libFuzzer through cargo-fuzz
//! on the nightly toolchain. `cargo xtask test` runs each briefly.
//!
//! cargo-fuzz is installed on demand, pinned, into the same cache as
//! bpf-linker (`~/.cache/protoprof/cargo-fuzz-<version>/`). The corpus
//! grows in `fuzz/corpus/TARGET` (not committed) from the seeds in
//! `fuzz/seeds/TARGET`; a crash leaves its input in `fuzz/artifacts/TARGET`
//! and fails the run.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

/// The cargo-fuzz release used (installed with `--locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Why no sanitizer: the decoders and readers are safe Rust, where
/// overflow checks and debug assertions (on in cargo-fuzz's default build)
/// catch what AddressSanitizer would; without it the build and each
/// execution are about twice as fast.
const FUZZ_FLAGS: &[&str] = &["--sanitizer", "none"];

/// What one target's run did.
pub struct Outcome {
    /// Inputs executed, as libFuzzer counts them.
    pub runs: u64,
    pub seconds: f64,
    /// The input that crashed it, if one did.
    pub crash: Option<PathBuf>,
}

/// Why fuzzing cannot run here; `None` when it can.
pub fn missing_toolchain() -> Option<String> {
    let ok = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| {
        "the fuzz targets need the nightly toolchain: rustup toolchain install nightly --profile minimal"
            .to_string()
    })
}

/// Installs the nightly toolchain (minimal profile) when it is missing and
/// installing is allowed: a fresh machine has only stable, and the fuzz
/// step of `cargo xtask test` needs nightly. Returns why fuzzing still
/// cannot run, if it cannot.
pub fn ensure_toolchain(install: crate::peers::Install) -> Option<String> {
    let why = missing_toolchain()?;
    if install == crate::peers::Install::Never {
        return Some(why);
    }
    eprintln!("xtask: installing the nightly toolchain for the fuzz targets");
    let _ = Command::new("rustup")
        .args(["toolchain", "install", "nightly", "--profile", "minimal"])
        .status();
    missing_toolchain()
}

/// cargo-fuzz, installed once per cache.
pub fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let dir = crate::setup::cache_dir()?.join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let bin = dir.join("bin/cargo-fuzz");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} (once)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "cargo-fuzz", "--locked", "--version"])
        .arg(format!("={CARGO_FUZZ_VERSION}"))
        .arg("--root")
        .arg(&dir)
        .env("CARGO_TARGET_DIR", dir.join("build"))
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    let _ = std::fs::remove_dir_all(dir.join("build"));
    Ok(bin)
}

/// `cargo fuzz SUBCOMMAND` on nightly, in the workspace root.
fn cargo_fuzz(root: &Path, bin: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(root)
        .arg("fuzz")
        .arg(subcommand)
        // xtask runs under stable cargo, which sets these for its children;
        // cargo-fuzz must reach the nightly cargo through rustup.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env("RUSTUP_TOOLCHAIN", "nightly");
    cmd
}

/// The targets, as `fuzz/Cargo.toml` lists them.
pub fn targets(root: &Path, bin: &Path) -> Result<Vec<String>> {
    let out = cargo_fuzz(root, bin, "list")
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Builds every target, then runs `only` (or all) for `seconds` each.
pub fn run(root: &Path, only: Option<&str>, seconds: u64) -> Result<Vec<Outcome>> {
    let bin = ensure_cargo_fuzz()?;
    let mut all = targets(root, &bin)?;
    if let Some(name) = only {
        if !all.iter().any(|t| t == name) {
            bail!(
                "no fuzz target {name:?}: the targets are {} (fuzz/Cargo.toml)",
                all.join(", ")
            );
        }
        all.retain(|t| t == name);
    }
    let mut build = cargo_fuzz(root, &bin, "build");
    build.args(FUZZ_FLAGS);
    if let Some(name) = only {
        build.arg(name);
    }
    let started = Instant::now();
    let status = build.status().context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    eprintln!(
        "xtask fuzz: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut outcomes = Vec::new();
    for target in all {
        let outcome = run_one(root, &bin, &target, seconds)?;
        match &outcome.crash {
            None => println!(
                "fuzz {target}: {} runs in {:.0} s, no crash",
                outcome.runs, outcome.seconds
            ),
            Some(input) => println!(
                "fuzz {target}: CRASH after {} runs; input {} (reproduce: cargo +nightly fuzz run {} {target} {})",
                outcome.runs,
                input.display(),
                FUZZ_FLAGS.join(" "),
                input.display()
            ),
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn run_one(root: &Path, bin: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = root.join("fuzz/corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    // cargo-fuzz points libFuzzer's crash inputs at fuzz/artifacts/TARGET/.
    std::fs::create_dir_all(&corpus)?;
    let mut cmd = cargo_fuzz(root, bin, "run");
    cmd.args(FUZZ_FLAGS).arg(target).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    // The ELF seeds carry unwind tables too.
    if target == "elf" || target == "unwind" {
        if let Some(dir) = elf_seeds(root) {
            cmd.arg(dir);
        }
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // Binaries are larger than libFuzzer's default 4 KiB inputs.
        .arg("-max_len=65536")
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1");
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut log)
            .with_context(|| format!("reading fuzz {target}'s output"))?;
    }
    let status = child.wait().context("waiting for cargo fuzz run")?;
    let runs = executed_units(&log).unwrap_or(0);
    let crash = if status.success() {
        None
    } else {
        let input = crash_input(&log);
        if input.is_none() {
            // Not a crash of the target (a build or setup failure): say all.
            eprintln!("{log}");
            bail!("fuzz {target} failed ({status}) without a crash input");
        }
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        input
    };
    Ok(Outcome {
        runs,
        seconds: started.elapsed().as_secs_f64(),
        crash,
    })
}

/// A C program of two functions, for the ELF seeds.
const ELF_SEED_SOURCE: &str =
    "int helper(int x) { return x * 3; }\nint main(int c, char **v) { (void)v; return helper(c); }\n";

/// ELF seeds made here rather than committed (no binary in the repository):
/// a small PIE with symbols, and the same stripped with the gopclntab seed
/// added as `.gopclntab`, the shape of a stripped Go binary. `None` (the
/// target then starts from nothing) without cc and objcopy.
fn elf_seeds(root: &Path) -> Option<PathBuf> {
    let dir = root.join("target/fuzz-seeds/elf");
    std::fs::create_dir_all(&dir).ok()?;
    let source = dir.join("seed.c");
    std::fs::write(&source, ELF_SEED_SOURCE).ok()?;
    let exe = dir.join("pie-with-symbols");
    let built = Command::new("cc")
        .args(["-Os", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .is_ok_and(|s| s.success());
    std::fs::remove_file(&source).ok()?;
    if !built {
        eprintln!("xtask fuzz: no cc: the elf target starts without seeds");
        return None;
    }
    let pclntab = root.join("fuzz/seeds/gopclntab/two-functions");
    let go_like = Command::new("objcopy")
        .arg("--strip-all")
        .arg(format!("--add-section=.gopclntab={}", pclntab.display()))
        .arg(&exe)
        .arg(dir.join("stripped-with-gopclntab"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !go_like {
        eprintln!("xtask fuzz: objcopy failed: no stripped Go-like ELF seed");
    }
    Some(dir)
}

/// libFuzzer's count of executed inputs (`-print_final_stats=1`).
fn executed_units(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// The input libFuzzer saved for a crash ("Test unit written to PATH").
fn crash_input(log: &str) -> Option<PathBuf> {
    log.lines().find_map(|l| {
        l.split_once("Test unit written to ")
            .map(|(_, p)| PathBuf::from(p.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_output() {
        let log = "INFO: seed\n#2 INITED\nstat::number_of_executed_units: 123456\n\
                   stat::average_exec_per_sec:     41152\n";
        assert_eq!(executed_units(log), Some(123456));
        let crash = "==1== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='fuzz/artifacts/elf/'; Test unit written to fuzz/artifacts/elf/crash-ab12\n";
        assert_eq!(
            crash_input(crash),
            Some(PathBuf::from("fuzz/artifacts/elf/crash-ab12"))
        );
        assert_eq!(crash_input(log), None);
    }
}
