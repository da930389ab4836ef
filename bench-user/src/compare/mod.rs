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
pub mod verdict;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    analyze::metrics::{self, Better, Effect},
    report::{Report, Verdict},
};

pub use gate::{Gate, Gates};
pub use verdict::{Change, Family, Scale};

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

/// One metric, A against B.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRow {
    /// `p<i>.<name>` (workload) or `<role>.<name>` (target).
    pub metric: String,
    pub unit: String,
    /// "higher" or "lower".
    pub better: String,
    /// Gated (the primary family, at the adjusted level) or exploratory.
    pub family: Family,
    /// Runs with a value, per side.
    pub n_a: usize,
    pub n_b: usize,
    pub median_a: f64,
    pub median_b: f64,
    /// The scale of `change_estimate`, `interval` and `min_effect`.
    pub scale: Scale,
    /// Hodges-Lehmann estimate of the change: B / A − 1 on the ratio
    /// scale, B − A in `unit` on the difference scale.
    pub change_estimate: Option<f64>,
    /// The distribution-free interval of the change (inverted
    /// Mann-Whitney) at `level`; absent with too few runs.
    pub interval: Option<(f64, f64)>,
    /// The level asked of the interval.
    pub level: f64,
    /// The interval's exact coverage at these run counts (≥ `level`).
    pub coverage: Option<f64>,
    /// The smallest meaningful change, on `scale` (from the catalogue).
    pub min_effect: f64,
    /// A CPU share takes its verdict from this per-byte cost.
    pub judged_by: Option<String>,
    pub change: Change,
    /// The gate on this metric, when there is one.
    pub gate: Option<Gate>,
    /// Set when the gate failed.
    pub gate_failed: bool,
}

/// How the gates came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateOutcome {
    /// Every gated metric judged, none failed (or no gated metric).
    Pass,
    /// At least one gate failed.
    Failed,
    /// Some gated metric has no interval at the family's level: the gates
    /// decline to judge.
    TooFewRuns,
}

/// The gated metrics as one family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateSummary {
    /// Gated metrics with values on both sides.
    pub metrics: usize,
    /// The level of each one's two-sided interval: 1 − 2·0.05 / metrics,
    /// so that an unchanged build fails any gate (each reads one tail) in
    /// at most 5 % of comparisons.
    pub level: f64,
    /// Runs per side at which those intervals exist.
    pub runs_needed: usize,
    pub outcome: GateOutcome,
}

impl GateSummary {
    /// The one line saying why the gates declined, with the runs to make.
    pub fn too_few_line(&self, n_a: usize, n_b: usize) -> String {
        format!(
            "gates not judged: too few runs (A {n_a}, B {n_b}); the {} gated metrics need {} runs a side for their {:.2} % intervals: rerun with --repeat {}",
            self.metrics,
            self.runs_needed,
            self.level * 100.0,
            self.runs_needed
        )
    }
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
    /// out…).
    pub notes: Vec<String>,
    /// The gated family and how its gates came out.
    pub gates: GateSummary,
    /// The level of each exploratory metric's interval.
    pub exploratory_level: f64,
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

/// A metric's values, one per run, keyed `scope.name`.
pub type Samples = BTreeMap<String, Vec<f64>>;

/// Every metric's values over a side's runs; a metric unavailable in a run
/// is not a sample.
pub fn collect(set: &RunSet) -> Samples {
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

fn definition(key: &str) -> Option<metrics::MetricDef> {
    metrics::workload_def(key).or_else(|| metrics::lookup(key.split_once('.')?.1))
}

/// Judge every metric with values on both sides: the gated ones as one
/// family at the adjusted level, the rest exploratory at 95 %, each CPU
/// share through its category's per-byte cost.
pub fn judge(sa: &Samples, sb: &Samples, gates: &Gates) -> (Vec<MetricRow>, GateSummary) {
    let paired: Vec<(&String, metrics::MetricDef, &Vec<f64>, &Vec<f64>)> = sa
        .iter()
        .filter_map(|(key, va)| Some((key, definition(key)?, va, sb.get(key)?)))
        .filter(|(_, _, va, vb)| !va.is_empty() && !vb.is_empty())
        .collect();
    let gated = paired
        .iter()
        .filter(|(key, def, ..)| {
            def.min_effect != Effect::CpuShare && gates.for_metric(key).is_some()
        })
        .count();
    let level = verdict::gated_level(gated);
    let mut rows: Vec<MetricRow> = paired
        .iter()
        .map(|(key, def, va, vb)| {
            let gate = gates
                .for_metric(key)
                .cloned()
                .filter(|_| def.min_effect != Effect::CpuShare);
            row(key, def, va, vb, gate, level)
        })
        .collect();
    // CPU shares take the verdict of the per-byte cost behind them.
    let costs: BTreeMap<String, Change> = rows
        .iter()
        .map(|r| (r.metric.clone(), r.change.clone()))
        .collect();
    for (r, (_, def, ..)) in rows.iter_mut().zip(&paired) {
        if def.min_effect != Effect::CpuShare {
            continue;
        }
        let judged_by = r.metric.split_once('.').and_then(|(scope, name)| {
            Some(format!(
                "{scope}.cost.{}.ns_per_byte",
                verdict::share_category(name)?
            ))
        });
        r.change = match judged_by.as_ref().and_then(|k| costs.get(k)) {
            Some(c) => c.clone(),
            None => Change::NotTested("no per-byte cost of its category to judge it by".into()),
        };
        r.judged_by = judged_by;
    }
    let failed = rows.iter().any(|r| r.gate_failed);
    let undecided = rows
        .iter()
        .any(|r| r.family == Family::Gated && matches!(r.change, Change::TooFewRuns { .. }));
    let summary = GateSummary {
        metrics: gated,
        level,
        runs_needed: verdict::runs_needed(gated),
        outcome: if failed {
            GateOutcome::Failed
        } else if undecided {
            GateOutcome::TooFewRuns
        } else {
            GateOutcome::Pass
        },
    };
    (rows, summary)
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
    let (rows, summary) = judge(&collect(&a), &collect(&b), gates);
    Ok(Comparison {
        a: side_info(&a, spec_a),
        b: side_info(&b, spec_b),
        metrics: rows,
        checklist_changes: checklist_changes(&a, &b),
        notes,
        gates: summary,
        exploratory_level: verdict::EXPLORATORY_LEVEL,
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

/// One metric's row: the gated family's `gated_level` when it has a gate,
/// else the exploratory level.
fn row(
    key: &str,
    def: &metrics::MetricDef,
    a: &[f64],
    b: &[f64],
    gate: Option<Gate>,
    gated_level: f64,
) -> MetricRow {
    let (ma, mb) = (
        stats::median(a).unwrap_or(f64::NAN),
        stats::median(b).unwrap_or(f64::NAN),
    );
    let (family, level) = match gate {
        Some(_) => (Family::Gated, gated_level),
        None => (Family::Exploratory, verdict::EXPLORATORY_LEVEL),
    };
    let j = verdict::judge(def, a, b, ma, level);
    let gate_failed = gate
        .as_ref()
        .is_some_and(|g| verdict::gate_fails(def, &j, g, ma));
    MetricRow {
        metric: key.to_string(),
        unit: def.unit.to_string(),
        better: match def.better {
            Better::Higher => "higher".into(),
            Better::Lower => "lower".into(),
        },
        family,
        n_a: a.len(),
        n_b: b.len(),
        median_a: ma,
        median_b: mb,
        scale: j.scale,
        change_estimate: j.estimate,
        interval: j.interval,
        level,
        coverage: j.coverage,
        min_effect: j.min_effect,
        judged_by: None,
        change: j.change,
        gate,
        gate_failed,
    }
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

    /// Six runs around `center` with 1 % of spread, in a fixed order.
    fn runs(center: f64) -> Vec<f64> {
        [0.0, 0.6, -0.4, 0.3, -0.2, 0.9]
            .iter()
            .map(|j| center * (1.0 + j / 100.0))
            .collect()
    }

    fn gates(toml_text: &str) -> Gates {
        toml::from_str(toml_text).expect("gates")
    }

    fn find<'a>(rows: &'a [MetricRow], key: &str) -> &'a MetricRow {
        rows.iter()
            .find(|r| r.metric == key)
            .unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn a_share_that_rose_because_another_vanished_is_not_worse() {
        // The 3-vs-3 finding: a pooled relay's allocator share vanished and
        // kernel_io_share rose 12.7 %, called worse. The kernel's ns per
        // byte did not move: its share is judged through that.
        let mut sa = Samples::new();
        let mut sb = Samples::new();
        for (s, alloc) in [(&mut sa, 0.10), (&mut sb, 0.0)] {
            let total = alloc + 0.6 + 0.3;
            s.insert("server.cost.alloc.ns_per_byte".into(), runs(alloc));
            s.insert("server.cost.kernel_io.ns_per_byte".into(), runs(0.6));
            s.insert("server.cost.other.ns_per_byte".into(), runs(0.3));
            s.insert("server.kernel_io_share".into(), runs(0.6 / total));
            s.insert("server.cost.kernel_io.share".into(), runs(0.6 / total));
            s.insert("server.cost.alloc.share".into(), runs(alloc / total));
        }
        let (rows, summary) = judge(&sa, &sb, &Gates::default());
        assert_eq!(summary.outcome, GateOutcome::Pass);
        let share = find(&rows, "server.kernel_io_share");
        assert!(share.median_b / share.median_a > 1.1);
        assert_eq!(share.change, Change::NoMeaningfulChange);
        assert_eq!(
            share.judged_by.as_deref(),
            Some("server.cost.kernel_io.ns_per_byte")
        );
        assert_eq!(
            find(&rows, "server.cost.kernel_io.share").change,
            Change::NoMeaningfulChange
        );
        // The category that fell is better, through its cost.
        assert_eq!(
            find(&rows, "server.cost.alloc.ns_per_byte").change,
            Change::Better
        );
        assert_eq!(
            find(&rows, "server.cost.alloc.share").change,
            Change::Better
        );
        assert!(rows.iter().all(|r| r.family == Family::Exploratory));
    }

    #[test]
    fn gated_metrics_are_one_family_at_the_adjusted_level() {
        let g = gates(
            "[[gate]]\nmetric = \"throughput_bps\"\nmax_regression = 0.05\n\
             [[gate]]\nmetric = \"*.cpu_ns_per_byte\"\nmax_regression = 0.05\n\
             [[gate]]\nmetric = \"*.copy_share\"\nmax_regression = 0.05\n",
        );
        let mut sa = Samples::new();
        let mut sb = Samples::new();
        for s in [&mut sa, &mut sb] {
            s.insert("p0.throughput_bps".into(), runs(1e9));
            s.insert("p1.throughput_bps".into(), runs(1e6));
            s.insert("client.cpu_ns_per_byte".into(), runs(0.5));
            s.insert("server.cpu_ns_per_byte".into(), runs(0.5));
            s.insert("client.syscalls_per_mib".into(), runs(35.0));
            s.insert("client.copy_share".into(), runs(0.2));
        }
        sb.insert("p0.throughput_bps".into(), runs(0.8e9));
        let (rows, summary) = judge(&sa, &sb, &g);
        // Four gated metrics (a share is never gated): 1 − 2·0.05/4.
        assert_eq!(summary.metrics, 4);
        assert!((summary.level - 0.975).abs() < 1e-12);
        assert_eq!(summary.runs_needed, 5);
        assert_eq!(summary.outcome, GateOutcome::Failed);
        let t = find(&rows, "p0.throughput_bps");
        assert_eq!((t.family, t.level), (Family::Gated, summary.level));
        assert!(t.gate_failed && t.change == Change::Worse);
        assert!(t.coverage.expect("coverage") >= summary.level);
        let s = find(&rows, "client.syscalls_per_mib");
        assert_eq!((s.family, s.level), (Family::Exploratory, 0.95));
        let c = find(&rows, "client.copy_share");
        assert!(c.gate.is_none() && c.family == Family::Exploratory);

        // Four runs a side: numbers, but the gates decline to judge.
        let four = |s: &Samples| -> Samples {
            s.iter()
                .map(|(k, v)| (k.clone(), v[..4].to_vec()))
                .collect()
        };
        let (rows, summary) = judge(&four(&sa), &four(&sb), &g);
        assert_eq!(summary.outcome, GateOutcome::TooFewRuns);
        let t = find(&rows, "p0.throughput_bps");
        assert_eq!(t.change, Change::TooFewRuns { needed: 5 });
        assert!(!t.gate_failed && t.interval.is_none());
        assert!((t.change_estimate.expect("estimate") + 0.2).abs() < 1e-9);
        // The exploratory ones still have their 95 % intervals at 4 a side.
        assert_eq!(
            find(&rows, "client.syscalls_per_mib").change,
            Change::NoMeaningfulChange
        );
        let line = summary.too_few_line(4, 4);
        assert!(
            line.contains("need 5 runs a side") && line.contains("--repeat 5"),
            "{line}"
        );
    }
}
