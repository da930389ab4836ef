//! baseline: stored runs of a profile to compare new runs against.
//!
//! A baseline is only comparable with runs of the same effective spec on the
//! same kind of machine, so its key is both: the BLAKE3 of the spec (after
//! overrides and duration, as `run.spec_blake3`) and the machine
//! fingerprint. Layout: `<baselines>/<profile>/<spec16>-<machine16>/` with
//! `baseline.json` and `run-<k>/report.json` with the side files it names
//! (`run-<k>/stacks/*.folded`, each checked against its BLAKE3 as it is
//! copied), so nothing else is needed to compare or draw. Baselines of an
//! older report schema are refused on load and must be re-recorded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    compare::RunSet,
    report::{stacks, Machine, Report},
    spec::ProfileSpec,
};

/// What identifies a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub spec_blake3: String,
    pub machine: Machine,
}

impl Key {
    /// The directory name: 16 hex digits of each half.
    pub fn dir_name(&self) -> String {
        format!(
            "{}-{}",
            prefix(&self.spec_blake3),
            prefix(&self.machine.fingerprint)
        )
    }
}

fn prefix(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// `baseline.json`: what a baseline holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineIndex {
    pub profile: String,
    pub spec_blake3: String,
    pub machine: Machine,
    pub tool_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The overrides it was made with (for the reader; the key is the hash).
    pub overrides: Vec<String>,
    pub duration: Option<f64>,
    /// Run directories, relative to the baseline's.
    pub runs: Vec<String>,
}

/// Why a baseline could not be saved or found.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl BaselineError {
    /// 2 for what the user can fix (including a missing baseline), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            BaselineError::Io { .. } => 1,
            _ => 2,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BaselineError {
    let what = what.into();
    move |source| BaselineError::Io { what, source }
}

/// The spec as a run would use it, and its hash: the same steps as
/// `run::run_profile` (the profile read once for the series, with
/// overrides, scaled to the duration, the canonical TOML hashed), done
/// before running.
pub fn effective_spec(
    opts: &crate::run::RunOptions,
) -> Result<(ProfileSpec, String), BaselineError> {
    let mut spec = opts
        .spec()
        .map_err(|e| BaselineError::Usage(e.to_string()))?;
    if let Some(d) = opts.duration {
        spec.set_total_duration(d).map_err(BaselineError::Usage)?;
    }
    let hash = blake3::hash(spec.canonical().as_bytes())
        .to_hex()
        .to_string();
    Ok((spec, hash))
}

/// The directory of a baseline.
pub fn dir(baselines: &Path, profile: &str, key: &Key) -> PathBuf {
    baselines.join(profile).join(key.dir_name())
}

/// Every stored baseline of a profile, with its directory name.
pub fn existing(baselines: &Path, profile: &str) -> Vec<(String, BaselineIndex)> {
    let Ok(rd) = std::fs::read_dir(baselines.join(profile)) else {
        return Vec::new();
    };
    let mut v: Vec<(String, BaselineIndex)> = rd
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("baseline.json")).ok()?;
            let idx = serde_json::from_str(&text).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), idx))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Store finished runs as the baseline of `key`. An existing baseline of the
/// key is replaced only with `force`.
pub fn save(
    baselines: &Path,
    index: &BaselineIndex,
    key: &Key,
    runs: &[(PathBuf, Report)],
    force: bool,
) -> Result<PathBuf, BaselineError> {
    let d = dir(baselines, &index.profile, key);
    if d.exists() {
        if !force {
            return Err(BaselineError::Usage(format!(
                "baseline {} exists; pass --force to replace it",
                d.display()
            )));
        }
        std::fs::remove_dir_all(&d).map_err(io_err(format!("removing {}", d.display())))?;
    }
    let mut index = index.clone();
    index.runs.clear();
    for (k, (run_dir, report)) in runs.iter().enumerate() {
        let name = format!("run-{}", k + 1);
        let to = d.join(&name);
        std::fs::create_dir_all(&to).map_err(io_err(format!("creating {}", to.display())))?;
        // The report as the run wrote it, byte for byte.
        let from = run_dir.join("report.json");
        std::fs::copy(&from, to.join("report.json"))
            .map_err(io_err(format!("copying {}", from.display())))?;
        // And every side file it names, only if it is the one it names.
        for entry in &report.stacks {
            let bytes = stacks::read_verified(run_dir, entry)
                .map_err(|e| BaselineError::Usage(e.to_string()))?;
            let dest = to.join(&entry.file);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_err(format!("creating {}", parent.display())))?;
            }
            std::fs::write(&dest, bytes).map_err(io_err(format!("writing {}", dest.display())))?;
        }
        index.runs.push(name);
    }
    let text = serde_json::to_string_pretty(&index).map_err(|e| BaselineError::Io {
        what: "serializing baseline.json".into(),
        source: e.into(),
    })?;
    let path = d.join("baseline.json");
    std::fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
    Ok(d)
}

/// The runs of the baseline of `key`, or why there is none: one line that
/// says how to make it and which keys exist for the profile.
pub fn load(baselines: &Path, profile: &str, key: &Key) -> Result<RunSet, BaselineError> {
    let d = dir(baselines, profile, key);
    if !d.join("baseline.json").is_file() {
        let others = existing(baselines, profile);
        let listed = if others.is_empty() {
            format!("none exists for {profile} in {}", baselines.display())
        } else {
            let items: Vec<String> = others
                .iter()
                .map(|(name, idx)| {
                    let same_spec = idx.spec_blake3 == key.spec_blake3;
                    let same_machine = idx.machine.fingerprint == key.machine.fingerprint;
                    let what = match (same_spec, same_machine) {
                        (true, false) => format!("same spec, machine {}", idx.machine.cpu_model),
                        (false, true) => "this machine, other spec".to_string(),
                        _ => format!("other spec, machine {}", idx.machine.cpu_model),
                    };
                    format!("{name} ({what}, set {:?})", idx.overrides)
                })
                .collect();
            format!("existing: {}", items.join("; "))
        };
        return Err(BaselineError::Missing(format!(
            "no baseline of {profile} for this spec and machine ({}); create it with `protoprof baseline save {profile}` and the same --set/--duration; {listed}",
            key.dir_name()
        )));
    }
    RunSet::load(&d).map_err(|e| BaselineError::Usage(e.to_string()))
}
