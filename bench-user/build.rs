//! Builds the eBPF probes (`bench-ebpf`) and leaves the object in `OUT_DIR`,
//! where `capture` embeds it with `include_bytes_aligned!`.
//!
//! Why embed: the runner must load exactly the probes it was compiled
//! against. The map keys and values come from `bench-common` on both sides,
//! so a probe object from another build could silently misread every map.
//! Embedding also leaves one binary to copy, with no probe file to find at
//! run time.
//!
//! Why a nested cargo: the probes build for `bpfel-unknown-none`, need `core`
//! built from source (`-Z build-std`, which stable cargo allows only with
//! `RUSTC_BOOTSTRAP=1`; it is set for this nested build alone) and link with
//! `bpf-linker`. `cargo xtask setup` builds bpf-linker against the
//! toolchain's own LLVM and names it in `PROTOPROF_BPF_LINKER`; every xtask
//! command sets that variable.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    if let Err(e) = build_probes() {
        // A build script reports through a panic; keep it one clear message.
        panic!("building the eBPF probes failed: {e}");
    }
}

fn build_probes() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("bench-user has no parent directory")?;
    let ebpf_dir = root.join("bench-ebpf");
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    for watched in [
        "bench-ebpf/src",
        "bench-ebpf/Cargo.toml",
        "bench-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=PROTOPROF_BPF_LINKER");

    let linker = find_bpf_linker()?;
    let linker_dir = linker
        .parent()
        .ok_or("PROTOPROF_BPF_LINKER has no parent directory")?;
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![linker_dir.to_path_buf()];
    paths.extend(env::split_paths(&path));
    let path = env::join_paths(paths).map_err(|e| e.to_string())?;

    // Beside the workspace's own target directory, shared by debug and
    // release builds so the probes compile once.
    let target_dir = workspace_target_dir(&out_dir).join("bpfel");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ebpf_dir)
        .args([
            "build",
            "--package",
            "bench-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("PATH", path)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
            "--cfg bpf_target_arch=\"x86_64\" -C debuginfo=2 -C link-arg=--btf",
        );
    // The outer build's flags are for the host target; they must not leak
    // into the probe build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo for bench-ebpf: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of bench-ebpf exited with {status}"));
    }
    let object = target_dir.join("bpfel-unknown-none/release/bench-ebpf");
    std::fs::copy(&object, out_dir.join("bench-ebpf.o"))
        .map_err(|e| format!("copying {}: {e}", object.display()))?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set"))
}

fn find_bpf_linker() -> Result<PathBuf, String> {
    if let Some(p) = env::var_os("PROTOPROF_BPF_LINKER") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(format!(
            "PROTOPROF_BPF_LINKER={} is not a file; run `cargo xtask setup`",
            p.display()
        ));
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "bpf-linker not found: build through `cargo xtask` (it runs `cargo xtask setup`), \
             or set PROTOPROF_BPF_LINKER to a bpf-linker built for this toolchain's LLVM"
                .to_string()
        })
}

/// `OUT_DIR` is `<target>/<profile>/build/<pkg>-<hash>/out`.
fn workspace_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("ebpf"))
}
