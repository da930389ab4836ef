//! `cargo xtask setup`: the toolchain pieces the probes need.
//!
//! bpf-linker must be built against the same LLVM major as rustc, and Debian
//! has no LLVM new enough. rustc ships its own libLLVM; bpf-linker links
//! against it when `LLVM_PREFIX/lib` holds `libLLVM.so` (and the versioned
//! name) pointing there. The result is cached under
//! `~/.cache/protoprof/bpf-linker/llvm-<version>-<rustc commit>/`, outside
//! `target/`, so fresh clones on this machine reuse it until the toolchain
//! (and so its LLVM) changes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

/// bpf-linker release known to work with aya 0.14 and LLVM 21-23.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Paths of the tools `setup` provides.
pub struct Tools {
    pub bpf_linker: PathBuf,
}

pub fn setup(_root: &Path) -> Result<Tools> {
    ensure_rust_src()?;
    let bpf_linker = ensure_bpf_linker()?;
    Ok(Tools { bpf_linker })
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_rust_src() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.is_dir() {
        return Ok(());
    }
    eprintln!("xtask setup: adding rust-src (needed to build core for bpfel-unknown-none)");
    let status = Command::new("rustup")
        .args(["component", "add", "rust-src"])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup component add rust-src failed ({status})");
    }
    Ok(())
}

/// The active rustc's LLVM version and commit, from `rustc -vV`.
struct Rustc {
    llvm_version: String,
    llvm_major: String,
    commit: String,
    sysroot: PathBuf,
}

fn rustc_info() -> Result<Rustc> {
    let vv = output(Command::new("rustc").arg("-vV"))?;
    let field = |name: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let llvm_version = field("LLVM version:").context("rustc -vV printed no LLVM version")?;
    let llvm_major = llvm_version
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let commit = field("commit-hash:").unwrap_or_else(|| "unknown".into());
    let sysroot = PathBuf::from(output(Command::new("rustc").args(["--print", "sysroot"]))?.trim());
    Ok(Rustc {
        llvm_version,
        llvm_major,
        commit,
        sysroot,
    })
}

/// Where built tools are kept across clones (bpf-linker, cargo-fuzz).
pub(crate) fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("PROTOPROF_CACHE") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("protoprof"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set PROTOPROF_CACHE")?;
    Ok(PathBuf::from(home).join(".cache/protoprof"))
}

fn ensure_bpf_linker() -> Result<PathBuf> {
    let rustc = rustc_info()?;
    let short_commit: String = rustc.commit.chars().take(12).collect();
    let dir = cache_dir()?
        .join("bpf-linker")
        .join(format!("llvm-{}-{short_commit}", rustc.llvm_version));
    let bin = dir.join("bin/bpf-linker");
    if bin.is_file()
        && Command::new(&bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(bin);
    }

    // rustc's own libLLVM, e.g. lib/libLLVM.so.22.1-rust-1.95.0-stable.
    let lib = rustc.sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: this toolchain ships no shared LLVM",
                lib.display()
            )
        })?;
    let prefix = dir.join("llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let versioned = libllvm.file_name().context("libLLVM has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), versioned] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }

    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against rustc's LLVM {} (a few minutes, once)",
        rustc.llvm_version
    );
    let started = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{}", rustc.llvm_major))
        .arg("--root")
        .arg(&dir)
        .env("LLVM_PREFIX", &prefix)
        // Build in a scratch directory, not in the workspace's target/.
        .env("CARGO_TARGET_DIR", dir.join("build"))
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    let _ = std::fs::remove_dir_all(dir.join("build"));
    eprintln!(
        "xtask setup: bpf-linker ready in {:.0} s at {}",
        started.elapsed().as_secs_f64(),
        bin.display()
    );
    Ok(bin)
}
