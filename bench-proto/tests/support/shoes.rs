//! shoes (a Rust proxy, the only REALITY implementation installable here)
//! for the interop tests: found through `PROTOPROF_SHOES` or the cache
//! `cargo xtask setup` installs it into, checked, run and killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::peer_process::PeerProcess;

/// Keep in step with the shoes piece in xtask/src/peers.rs.
pub const INSTALL: &str = "cargo xtask setup (as root), or: \
     CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
     CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
     RUSTFLAGS='-C force-frame-pointers=yes' \
     cargo install shoes --version 0.3.2 --locked --root ~/.cache/protoprof/shoes-0.3.2";

/// The shoes binary: `$PROTOPROF_SHOES`, else `shoes-0.3.2/bin/shoes` in
/// xtask's cache (`$PROTOPROF_CACHE`, else `$XDG_CACHE_HOME/protoprof`,
/// else `~/.cache/protoprof`); panics with the install command if there is
/// none.
pub fn shoes() -> PathBuf {
    if let Some(p) = std::env::var_os("PROTOPROF_SHOES") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "PROTOPROF_SHOES={} is not a file", p.display());
        return p;
    }
    let cache = if let Some(d) = std::env::var_os("PROTOPROF_CACHE") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(d).join("protoprof")
    } else {
        let home = std::env::var_os("HOME")
            .unwrap_or_else(|| panic!("shoes not found: HOME is not set; install it: {INSTALL}"));
        PathBuf::from(home).join(".cache/protoprof")
    };
    let p = cache.join("shoes-0.3.2/bin/shoes");
    assert!(
        p.is_file(),
        "shoes not found at {}: install it: {INSTALL} (or set PROTOPROF_SHOES)",
        p.display()
    );
    p
}

/// A running shoes, killed by its handle when dropped (also on panic).
pub struct Shoes {
    _process: PeerProcess,
}

impl Shoes {
    /// Writes `dir/NAME.yaml`, checks it with `shoes -d`, then starts
    /// `shoes --no-reload NAME.yaml` (stdout to NAME.out, stderr, where it
    /// logs, to NAME.log).
    pub fn start(dir: &Path, name: &str, yaml: &str) -> Shoes {
        let bin = shoes();
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let check = Command::new(&bin).arg("-d").arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&check.stdout);
        // A parsed config says so on stdout; a refused one exits 1.
        assert!(
            check.status.success() && stdout.contains("config parsed successfully"),
            "shoes -d {name}.yaml ({}): {}{}\n{yaml}",
            check.status,
            stdout,
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new(&bin);
        cmd.arg("--no-reload").arg(&path);
        Shoes {
            _process: PeerProcess::spawn("shoes", cmd, dir, name),
        }
    }
}
