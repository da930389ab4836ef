//! compare: two sets of runs (each one run or repeats of one variant),
//! metric by metric, with statistics that hold on few noisy repeats; gates
//! that fail a comparison when a metric regresses beyond its threshold; a
//! differential CPU flame graph; checklist verdicts that changed.
//!
//! Reads only report.json files (the contract), so it compares runs made by
//! any protoprof of the same schema.

pub mod diff;
pub mod gate;
pub mod markdown;
pub mod repeat;
pub mod stats;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    analyze::metrics::{self, Better},
    report::{Report, Verdict},
};

pub use gate::{Gate, Gates};

/// Bootstrap resamples per metric.
pub const RESAMPLES: usize = 4000;
/// Fixed so that the same runs always give the same intervals.
pub const SEED: u64 = 0x5eed_c0de;
pub const LEVEL: f64 = 0.95;

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Input the user can fix: names the argument and the fix.
    #[error("{argument}: {message}")]
    BadInput { argument: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Draw(String),
}

impl CompareError {
    /// 2 for input the user can fix, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CompareError::BadInput { .. } => 2,
            _ => 1,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CompareError {
    let what = what.into();
    move |source| CompareError::Io { what, source }
}

/// The runs of one side.
#[derive(Debug, Clone)]
pub struct RunSet {
    /// What the user named (a run directory or a directory of them).
    pub path: PathBuf,
    /// Each run's directory and report, in directory-name order.
    pub runs: Vec<(PathBuf, Report)>,
}

impl RunSet {
    /// Load a run directory (has report.json) or a directory of them (run
    /// directories as children or grandchildren, e.g. `a-1/<run>/`).
    pub fn load(path: &Path) -> Result<RunSet, CompareError> {
        let bad = |message: String| CompareError::BadInput {
            argument: path.display().to_string(),
            message,
        };
        if !path.is_dir() {
            return Err(bad(
                "not a directory; give a run directory (with report.json) or a directory of them"
                    .into(),
            ));
        }
        let mut dirs = Vec::new();
        if path.join("report.json").is_file() {
            dirs.push(path.to_path_buf());
        } else {
            for child in sorted_subdirs(path)? {
                if child.join("report.json").is_file() {
                    dirs.push(child);
                } else {
                    dirs.extend(
                        sorted_subdirs(&child)?
                            .into_iter()
                            .filter(|g| g.join("report.json").is_file()),
                    );
                }
            }
        }
        if dirs.is_empty() {
            return Err(bad(
                "no report.json in it or in its subdirectories; give a run directory from `protoprof profile` or a directory of them".into(),
            ));
        }
        let mut runs = Vec::new();
        for d in dirs {
            let file = d.join("report.json");
            // An older schema is refused in one line that names its version.
            let report = crate::report::read(&file).map_err(|e| bad(e.to_string()))?;
            runs.push((d, report));
        }
        Ok(RunSet {
            path: path.to_path_buf(),
            runs,
        })
    }

    /// A run set from reports already in memory.
    pub fn from_runs(path: PathBuf, runs: Vec<(PathBuf, Report)>) -> RunSet {
        RunSet { path, runs }
    }

    fn reports(&self) -> impl Iterator<Item = &Report> {
        self.runs.iter().map(|(_, r)| r)
    }
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<PathBuf>, CompareError> {
    let rd = std::fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// What a comparison concluded about one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Better,
    Worse,
    NoSignificantChange,
    /// Why no test was made (one run a side, no scale…).
    NotTested(String),
}

impl Change {
    pub fn label(&self) -> String {
        match self {
            Change::Better => "better".into(),
            Change::Worse => "worse".into(),
            Change::NoSignificantChange => "no significant change".into(),
            Change::NotTested(why) => format!("not tested ({why})"),
        }
    }
}

/// One metric, A against B.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRow {
    /// `p<i>.<name>` (workload) or `<role>.<name>` (target).
    pub metric: String,
    pub unit: String,
    /// "higher" or "lower".
    pub better: String,
    /// What one sample is: "run" (one value per run) or "second" (the
    /// per-second throughput samples of a single run).
    pub samples: String,
    pub n_a: usize,
    pub n_b: usize,
    pub median_a: f64,
    pub median_b: f64,
    /// (median B - median A) / |median A|; absent when A's median is 0.
    pub rel_diff: Option<f64>,
    /// 95 % bootstrap interval of `rel_diff`.
    pub ci: Option<(f64, f64)>,
    /// Two-sided Mann-Whitney U p-value.
    pub p_value: Option<f64>,
    pub p_method: Option<stats::PMethod>,
    pub change: Change,
    /// The gate on this metric, when there is one.
    pub gate: Option<Gate>,
    /// Set when the gate failed.
    pub gate_failed: bool,
}

/// One checklist rule on one target whose most common verdict changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChecklistChange {
    pub rule: String,
    pub target: String,
    pub title: String,
    pub a: String,
    pub b: String,
}

/// The full comparison: what compare.json holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub a: SideInfo,
    pub b: SideInfo,
    pub metrics: Vec<MetricRow>,
    pub checklist_changes: Vec<ChecklistChange>,
    /// Things the reader should know (different specs, failed runs left
    /// out, per-second samples…).
    pub notes: Vec<String>,
    pub resamples: usize,
    pub seed: u64,
    pub confidence: f64,
    /// Output name → file name in the comparison directory.
    pub outputs: BTreeMap<String, String>,
}

impl Comparison {
    pub fn gate_failures(&self) -> impl Iterator<Item = &MetricRow> {
        self.metrics.iter().filter(|m| m.gate_failed)
    }
}

/// One side as compare.json describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideInfo {
    pub path: String,
    pub profile: String,
    pub spec_blake3: Vec<String>,
    pub runs: Vec<String>,
}

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Compare runs of different profiles.
    pub force: bool,
}

/// A metric's values, one per run (or per second), keyed `scope.name`.
type Samples = BTreeMap<String, Vec<f64>>;

fn collect(set: &RunSet) -> Samples {
    let mut out: Samples = BTreeMap::new();
    for r in set.reports() {
        for (k, m) in metrics::workload_metrics(&r.workload) {
            if let Some(v) = m.value() {
                out.entry(k).or_default().push(v);
            }
        }
        for t in &r.targets {
            for (k, m) in &t.metrics {
                if let Some(v) = m.value() {
                    out.entry(format!("{}.{k}", t.role)).or_default().push(v);
                }
            }
        }
    }
    out
}

/// Per-second throughput samples of phase `i` of a single run.
fn per_second(r: &Report, phase: usize) -> Vec<f64> {
    r.workload
        .phases
        .get(phase)
        .map(|p| {
            p.timeseries
                .iter()
                .filter(|s| s.span_s > 0.0)
                .map(|s| (s.bytes_up + s.bytes_down) as f64 / s.span_s)
                .collect()
        })
        .unwrap_or_default()
}

fn definition(key: &str) -> Option<metrics::MetricDef> {
    metrics::workload_def(key).or_else(|| metrics::lookup(key.split_once('.')?.1))
}

/// Compare B against A.
pub fn compare(
    a: &RunSet,
    b: &RunSet,
    gates: &Gates,
    opts: &CompareOptions,
) -> Result<Comparison, CompareError> {
    let mut notes = Vec::new();
    let a = usable(a, "A", &mut notes)?;
    let b = usable(b, "B", &mut notes)?;
    let prof_a = a.runs[0].1.run.profile.clone();
    let prof_b = b.runs[0].1.run.profile.clone();
    if prof_a != prof_b {
        if !opts.force {
            return Err(CompareError::BadInput {
                argument: b.path.display().to_string(),
                message: format!(
                    "runs of profile {prof_b:?}, A's are of {prof_a:?}; compare runs of one profile, or pass --force"
                ),
            });
        }
        notes.push(format!("different profiles: A {prof_a}, B {prof_b}"));
    }
    let specs = |s: &RunSet| {
        let mut v: Vec<String> = s.reports().map(|r| r.run.spec_blake3.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let (spec_a, spec_b) = (specs(&a), specs(&b));
    if spec_a.len() > 1 || spec_b.len() > 1 {
        notes.push(
            "the runs of one side differ in their spec: they are not repeats of one variant".into(),
        );
    }
    if spec_a != spec_b {
        notes.push("A and B ran different specs (expected when comparing a setting; otherwise check --set and --duration)".into());
    }
    let machines = |s: &RunSet| {
        let mut v: Vec<String> = s
            .reports()
            .map(|r| r.run.machine.fingerprint.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if machines(&a) != machines(&b) {
        notes.push("A and B ran on different machines: differences may be the machine's".into());
    }

    let (sa, sb) = (collect(&a), collect(&b));
    let single = a.runs.len() == 1 && b.runs.len() == 1;
    let mut rows = Vec::new();
    for (key, va) in &sa {
        let Some(vb) = sb.get(key) else { continue };
        let Some(def) = definition(key) else { continue };
        let (mut xa, mut xb, mut samples) = (va.clone(), vb.clone(), "run");
        if single && key.ends_with(".throughput_bps") {
            let phase = key
                .split_once('.')
                .and_then(|(p, _)| p.strip_prefix('p')?.parse::<usize>().ok());
            if let Some(i) = phase {
                let (pa, pb) = (per_second(&a.runs[0].1, i), per_second(&b.runs[0].1, i));
                if pa.len() >= 2 && pb.len() >= 2 {
                    (xa, xb, samples) = (pa, pb, "second");
                }
            }
        }
        rows.push(row(key, def, &xa, &xb, samples, gates));
    }
    if rows.iter().any(|r| r.samples == "second") {
        notes.push("one run a side: throughput is tested on the per-second samples of each run's measured window (they are not independent; repeat runs with --repeat for a sound test)".into());
    }
    Ok(Comparison {
        a: side_info(&a, spec_a),
        b: side_info(&b, spec_b),
        metrics: rows,
        checklist_changes: checklist_changes(&a, &b),
        notes,
        resamples: RESAMPLES,
        seed: SEED,
        confidence: LEVEL,
        outputs: BTreeMap::new(),
    })
}

/// The side's runs that finished ok; failed ones are left out with a note.
fn usable(set: &RunSet, side: &str, notes: &mut Vec<String>) -> Result<RunSet, CompareError> {
    let mut ok = Vec::new();
    for (dir, r) in &set.runs {
        if r.run.status == "ok" {
            ok.push((dir.clone(), r.clone()));
        } else {
            notes.push(format!(
                "{side}: left out {} ({})",
                dir.display(),
                r.run.status
            ));
        }
    }
    if ok.is_empty() {
        return Err(CompareError::BadInput {
            argument: set.path.display().to_string(),
            message: "no run in it finished ok (see each run's status); run the profile again"
                .into(),
        });
    }
    Ok(RunSet::from_runs(set.path.clone(), ok))
}

fn side_info(s: &RunSet, spec_blake3: Vec<String>) -> SideInfo {
    SideInfo {
        path: s.path.display().to_string(),
        profile: s.runs[0].1.run.profile.clone(),
        spec_blake3,
        runs: s
            .runs
            .iter()
            .map(|(d, _)| d.display().to_string())
            .collect(),
    }
}

fn row(
    key: &str,
    def: metrics::MetricDef,
    a: &[f64],
    b: &[f64],
    samples: &str,
    gates: &Gates,
) -> MetricRow {
    let (ma, mb) = (
        stats::median(a).unwrap_or(f64::NAN),
        stats::median(b).unwrap_or(f64::NAN),
    );
    let rel = stats::relative_difference(ma, mb);
    let mut r = MetricRow {
        metric: key.to_string(),
        unit: def.unit.to_string(),
        better: match def.better {
            Better::Higher => "higher".into(),
            Better::Lower => "lower".into(),
        },
        samples: samples.to_string(),
        n_a: a.len(),
        n_b: b.len(),
        median_a: ma,
        median_b: mb,
        rel_diff: rel,
        ci: None,
        p_value: None,
        p_method: None,
        change: Change::NoSignificantChange,
        gate: gates.for_metric(key).cloned(),
        gate_failed: false,
    };
    if a.len() < 2 || b.len() < 2 {
        r.change = Change::NotTested("n=1; use --repeat".into());
        return r;
    }
    if let Some(mw) = stats::mann_whitney(a, b) {
        r.p_value = Some(mw.p);
        r.p_method = Some(mw.method);
    }
    if rel.is_none() {
        // From zero (e.g. allocations per MiB after a pool) there is no
        // relative scale or interval; the rank test still says whether B
        // moved, and any significant growth from zero exceeds every gate.
        r.change = match r.p_value {
            Some(p) if p < 1.0 - LEVEL && mb != ma => {
                if (mb > ma) == (def.better == Better::Higher) {
                    Change::Better
                } else {
                    Change::Worse
                }
            }
            Some(_) => Change::NoSignificantChange,
            None if mb == ma => Change::NoSignificantChange,
            None => Change::NotTested("median A is 0: no relative scale".into()),
        };
        r.gate_failed = r.change == Change::Worse && r.gate.is_some();
        return r;
    }
    r.ci = stats::bootstrap_ci(a, b, RESAMPLES, LEVEL, SEED);
    r.change = match (r.ci, rel) {
        (Some((lo, hi)), Some(d)) if lo > 0.0 || hi < 0.0 => {
            let up = d > 0.0;
            if up == (def.better == Better::Higher) {
                Change::Better
            } else {
                Change::Worse
            }
        }
        (Some(_), _) => Change::NoSignificantChange,
        (None, _) => Change::NotTested("A's resampled median is 0 too often".into()),
    };
    if let (Change::Worse, Some(g), Some(d)) = (&r.change, &r.gate, rel) {
        r.gate_failed = d.abs() > g.max_regression;
    }
    r
}

/// Most common verdict of every (rule, target) on each side; those that
/// differ.
fn checklist_changes(a: &RunSet, b: &RunSet) -> Vec<ChecklistChange> {
    type Key = (String, String);
    let modes = |s: &RunSet| -> BTreeMap<Key, (String, Verdict)> {
        let mut counts: BTreeMap<Key, (String, BTreeMap<Verdict, usize>)> = BTreeMap::new();
        for r in s.reports() {
            for rr in &r.checklist {
                let e = counts
                    .entry((rr.id.clone(), rr.target.to_string()))
                    .or_insert_with(|| (rr.title.clone(), BTreeMap::new()));
                *e.1.entry(rr.verdict).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .filter_map(|(k, (title, c))| {
                // Ties go to the worse verdict (Fail sorts after Warn after Ok).
                let v = c
                    .iter()
                    .max_by_key(|(v, n)| (**n, **v != Verdict::NotEvaluated, **v))?
                    .0;
                Some((k, (title, *v)))
            })
            .collect()
    };
    let (ma, mb) = (modes(a), modes(b));
    ma.iter()
        .filter_map(|(k, (title, va))| {
            let (_, vb) = mb.get(k)?;
            (va != vb).then(|| ChecklistChange {
                rule: k.0.clone(),
                target: k.1.clone(),
                title: title.clone(),
                a: va.as_str().into(),
                b: vb.as_str().into(),
            })
        })
        .collect()
}

/// Compare and write every output into `out`: compare.json, compare.md,
/// the folded inputs and diff-cpu.svg.
pub fn write(
    a: &RunSet,
    b: &RunSet,
    gates: &Gates,
    opts: &CompareOptions,
    out: &Path,
) -> Result<Comparison, CompareError> {
    let mut c = compare(a, b, gates, opts)?;
    std::fs::create_dir_all(out).map_err(io_err(format!("creating {}", out.display())))?;
    c.outputs.extend(diff::write_cpu_diff(a, b, out)?);
    c.outputs.insert("compare_md".into(), "compare.md".into());
    c.outputs
        .insert("compare_json".into(), "compare.json".into());
    let json = serde_json::to_string_pretty(&c).map_err(|e| CompareError::Io {
        what: "serializing compare.json".into(),
        source: e.into(),
    })?;
    let path = out.join("compare.json");
    std::fs::write(&path, json).map_err(io_err(format!("writing {}", path.display())))?;
    let path = out.join("compare.md");
    std::fs::write(&path, markdown::markdown(&c))
        .map_err(io_err(format!("writing {}", path.display())))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocs_gate() -> Gates {
        Gates {
            gates: vec![gate::Gate {
                metric: "*.allocs_per_mib".into(),
                max_regression: 0.10,
            }],
        }
    }

    #[test]
    fn growth_from_zero_is_tested_by_rank_and_fails_the_gate() {
        let def = metrics::lookup("allocs_per_mib").expect("catalogue");
        let zero = [0.0; 5];
        let grown = [28.0, 29.5, 30.0, 31.0, 29.0];
        let r = row(
            "server.allocs_per_mib",
            def,
            &zero,
            &grown,
            "run",
            &allocs_gate(),
        );
        assert_eq!(r.change, Change::Worse);
        assert!(r.gate_failed && r.rel_diff.is_none());
        assert!(markdown::gate_line(&r).contains("from zero"));
        // The other way round it is an improvement, and no gate fails.
        let r = row(
            "server.allocs_per_mib",
            def,
            &grown,
            &zero,
            "run",
            &allocs_gate(),
        );
        assert_eq!(r.change, Change::Better);
        assert!(!r.gate_failed);
        // Zero on both sides: nothing moved.
        let r = row(
            "server.allocs_per_mib",
            def,
            &zero,
            &zero,
            "run",
            &allocs_gate(),
        );
        assert_eq!(r.change, Change::NoSignificantChange);
        assert!(!r.gate_failed);
    }
}
