//! Builds the eBPF probes (`bench-ebpf`) with aya-build and leaves the
//! object in `OUT_DIR/bench-ebpf.o`, where `capture` embeds it with
//! `include_bytes_aligned!`.
//!
//! Why embed: the runner must load exactly the probes it was compiled
//! against. The map keys and values come from `bench-common` on both sides,
//! so a probe object from another build could silently misread every map.
//! Embedding also leaves one binary to copy, with no probe file to find at
//! run time.
//!
//! How: aya-build runs a nested cargo for `bpfel-unknown-none` with the
//! probes' flags (`bpf_target_arch` from this build's target, full debug
//! info, BTF). This toolchain recipe is stable Rust: `core` is built from
//! source (`-Z build-std`), which stable cargo allows only with
//! `RUSTC_BOOTSTRAP=1`, set here for the nested build (aya-build passes
//! `-Z build-std=core` when it sees it). The probes link with the
//! bpf-linker that `cargo xtask setup` builds against the toolchain's own
//! LLVM and names in `PROTOPROF_BPF_LINKER` (every xtask command sets it);
//! it is put first on the nested build's `PATH`.
//!
//! Architectures: the target architecture is this build's own
//! (`CARGO_CFG_TARGET_ARCH`), never written down here; the probes support
//! x86_64 only (the user-stack walk reads x86_64 registers and syscalls are
//! named by x86_64's numbers), so another target stops here with that
//! sentence rather than building probes that would misread every sample.
use std::{
    env,
    path::{Path, PathBuf},
};

fn main() {
    if let Err(e) = build_probes() {
        // A build script reports through a panic; keep it one clear message.
        panic!("building the eBPF probes failed: {e}");
    }
}

/// Architectures whose registers and syscall numbers the probes know.
const SUPPORTED_ARCHES: &[&str] = &["x86_64"];

fn build_probes() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("bench-user has no parent directory")?;
    let ebpf_dir = root.join("bench-ebpf");
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    // aya-build watches bench-ebpf itself; the shared types live beside it.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("bench-common/src").display()
    );
    println!("cargo:rerun-if-env-changed=PROTOPROF_BPF_LINKER");

    let arch = env_var("CARGO_CFG_TARGET_ARCH")?;
    if !SUPPORTED_ARCHES.contains(&arch.as_str()) {
        return Err(format!(
            "the probes support {} only, not {arch}: bench-ebpf's user-stack walk reads \
             x86_64 registers and the syscall tables are x86_64's",
            SUPPORTED_ARCHES.join(", ")
        ));
    }

    let linker = find_bpf_linker()?;
    let linker_dir = linker
        .parent()
        .ok_or("PROTOPROF_BPF_LINKER has no parent directory")?;
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![linker_dir.to_path_buf()];
    paths.extend(env::split_paths(&path));
    let path = env::join_paths(paths).map_err(|e| e.to_string())?;

    // aya-build's nested cargo inherits this process's environment: set
    // what it needs, and keep the outer (host) build's settings out of it.
    env::set_var("PATH", path);
    env::set_var("RUSTC_BOOTSTRAP", "1");
    for var in [
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        env::remove_var(var);
    }
    // The toolchain running this build (rustup names it to its children),
    // not aya-build's default nightly.
    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".into());
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or("the bench-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "bench-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .map_err(|e| format!("{e:#}"))?;
    let object = out_dir.join("bench-ebpf");
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
        .find(|p| Path::is_file(p))
        .ok_or_else(|| {
            "bpf-linker not found: build through `cargo xtask` (it runs `cargo xtask setup`), \
             or set PROTOPROF_BPF_LINKER to a bpf-linker built for this toolchain's LLVM"
                .to_string()
        })
}
