//! repeat: run the variants of a comparison interleaved (A, B, A, B…) so
//! that drift of the machine (thermal, other load) spreads over both sides
//! instead of biasing one.

use std::path::{Path, PathBuf};

use super::{verdict, CompareError, Gates, RunSet};
use crate::{
    analyze::metrics,
    report::WindowLoad,
    run::{self, RunError, RunOptions},
    spec::{PatternName, ProfileSpec},
};

/// Runs per variant when `--repeat` is not given: the fewest at which
/// every gated metric the profile can produce gets its interval at the
/// gated family's level (docs/compare.md). Counts every catalogue metric of
/// both endpoints, so a metric a run leaves unavailable only makes the
/// number safe, never short.
pub fn default_repeat(spec: &ProfileSpec, gates: &Gates) -> usize {
    verdict::runs_needed(gated_count(spec, gates))
}

/// How many of the metrics a run of `spec` can produce `gates` gate.
pub fn gated_count(spec: &ProfileSpec, gates: &Gates) -> usize {
    let mut keys = Vec::new();
    for (i, p) in spec.phases.iter().enumerate() {
        keys.push(format!("p{i}.throughput_bps"));
        if p.pattern == PatternName::Rr {
            for name in ["rr_per_s", "latency_p50_us", "latency_p99_us"] {
                keys.push(format!("p{i}.{name}"));
            }
        }
    }
    for role in ["client", "server"] {
        for d in metrics::CATALOGUE {
            keys.push(format!("{role}.{}", d.name));
        }
        for cat in metrics::CATEGORIES {
            keys.push(format!("{role}.cost.{cat}.ns_per_byte"));
        }
    }
    keys.iter()
        .filter(|k| gates.for_metric(k).is_some())
        .count()
}

/// Read `--compare KEY=V1,KEY=V2` (or the shorthand `KEY=V1,V2`) into the
/// two `KEY=VALUE` overrides.
pub fn parse_variants(arg: &str) -> Result<[String; 2], CompareError> {
    let bad = |message: &str| CompareError::BadInput {
        argument: format!("--compare {arg}"),
        message: message.to_string(),
    };
    let usage = "write KEY=V1,KEY=V2 or KEY=V1,V2 (e.g. relay.buffer_size=65536,4096)";
    let (first, second) = arg.split_once(',').ok_or_else(|| bad(usage))?;
    let (key, v1) = first.split_once('=').ok_or_else(|| bad(usage))?;
    let key = key.trim();
    if key.is_empty() || v1.is_empty() || second.is_empty() || second.contains(',') {
        return Err(bad(usage));
    }
    let v2 = match second.split_once('=') {
        Some((k2, v2)) if k2.trim() == key => v2,
        Some((k2, _)) => {
            return Err(bad(&format!(
                "compares one key, got {key:?} and {:?}; {usage}",
                k2.trim()
            )))
        }
        None => second,
    };
    if v2.is_empty() {
        return Err(bad(usage));
    }
    Ok([format!("{key}={v1}"), format!("{key}={v2}")])
}

/// One variant: a label naming its run directories and its overrides.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub overrides: Vec<String>,
}

/// Why a series of runs stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepeatError {
    #[error("run {name}: {source}")]
    Run {
        name: String,
        // Boxed: RunError is large and this travels up by value.
        source: Box<RunError>,
    },
    #[error("run {name}: {message}")]
    Check { name: String, message: String },
    #[error("{0}")]
    Inputs(Box<RunError>),
    #[error("creating {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RepeatError {
    /// The run's own status (130 on Ctrl-C, 2 for bad input), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            RepeatError::Run { source, .. } => source.exit_code(),
            RepeatError::Inputs(source) => source.exit_code(),
            _ => 1,
        }
    }
}

/// Above this many cores taken by other processes (or stolen by the
/// hypervisor) in a main-pass window, a run of a series was disturbed by a
/// neighbour: on a shared machine such runs are the outliers that widen a
/// comparison's intervals most (a build or test beside it took 0.6–0.7
/// cores and the run lost 40 % of its throughput), while undisturbed
/// windows see 0.05–0.15.
pub const DISTURBED_CORES: f64 = 0.25;
/// Attempts at one run of a series; the last is kept even if disturbed.
pub const ATTEMPTS: usize = 3;

/// The CPU others took in the most disturbed main-pass window, if over
/// [`DISTURBED_CORES`].
pub fn disturbance(windows: &[WindowLoad]) -> Option<f64> {
    windows
        .iter()
        .filter(|w| w.pass == "main")
        .map(|w| w.other_cores + w.steal_cores)
        .filter(|&cores| cores > DISTURBED_CORES)
        .reduce(f64::max)
}

/// Run every variant `repeat` times, interleaved, each into
/// `<root>/<label>-<k>/`, and return one run set per variant. `check` sees
/// each finished run (e.g. to compare its spec hash with the expected one).
/// A run that a neighbour disturbed (see [`disturbance`]) is set aside in
/// `<root>/disturbed/` and made again, up to [`ATTEMPTS`] times: whether a
/// run is kept depends on the other processes' CPU, never on its own
/// figures, so the choice cannot favour either side.
pub fn run_interleaved(
    base: &RunOptions,
    variants: &[Variant],
    repeat: usize,
    root: &Path,
    mut check: impl FnMut(&Variant, &run::RunOutcome) -> Result<(), String>,
) -> Result<Vec<RunSet>, RepeatError> {
    // Every run of the series reads the profile and its rules as they are
    // now, whatever is edited while it runs (see `run::Inputs`).
    let mut base = base.clone();
    base.read_inputs()
        .map_err(|e| RepeatError::Inputs(Box::new(e)))?;
    let base = &base;
    let mut sets: Vec<Vec<_>> = variants.iter().map(|_| Vec::new()).collect();
    let interrupted = watch_interrupts();
    for k in 1..=repeat {
        for (v, runs) in variants.iter().zip(sets.iter_mut()) {
            let name = format!("{}-{k}", v.label);
            // A run stops itself on Ctrl-C; between runs nobody else would
            // (the first run's handler replaced the default action).
            if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(RepeatError::Run {
                    name,
                    source: Box::new(RunError::Interrupted),
                });
            }
            let out_dir = root.join(&name);
            std::fs::create_dir_all(&out_dir).map_err(|source| RepeatError::Io {
                path: out_dir.clone(),
                source,
            })?;
            let mut opts = base.clone();
            opts.out_dir = out_dir;
            opts.overrides.extend(v.overrides.iter().cloned());
            eprintln!("protoprof: run {name} of {}", repeat * variants.len());
            let mut attempt = 1;
            let outcome = loop {
                let outcome = run::run_profile(&opts).map_err(|source| RepeatError::Run {
                    name: name.clone(),
                    source: Box::new(source),
                })?;
                check(v, &outcome).map_err(|message| RepeatError::Check {
                    name: name.clone(),
                    message,
                })?;
                let Some(cores) = disturbance(&outcome.report.workload.windows) else {
                    break outcome;
                };
                if attempt == ATTEMPTS {
                    eprintln!(
                        "protoprof: run {name}: other processes took {cores:.2} cores in a \
                         measured window, still, after {ATTEMPTS} attempts; kept"
                    );
                    break outcome;
                }
                let aside = root.join("disturbed").join(format!("{name}-{attempt}"));
                set_aside(&outcome.dir, &aside)?;
                attempt += 1;
                eprintln!(
                    "protoprof: run {name}: other processes took {cores:.2} cores in a measured \
                     window (over {DISTURBED_CORES}); set aside in {}, attempt {attempt} of \
                     {ATTEMPTS}",
                    aside.display()
                );
            };
            runs.push((outcome.dir, outcome.report));
        }
    }
    Ok(variants
        .iter()
        .zip(sets)
        .map(|(v, runs)| RunSet::from_runs(root.join(format!("{}-*", v.label)), runs))
        .collect())
}

fn set_aside(dir: &Path, aside: &Path) -> Result<(), RepeatError> {
    let io = |source| RepeatError::Io {
        path: aside.to_path_buf(),
        source,
    };
    if let Some(parent) = aside.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::rename(dir, aside).map_err(io)
}

/// A flag raised on SIGINT or SIGTERM, watched from a thread of its own for
/// the rest of the process's life.
fn watch_interrupts() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raised = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if let Ok(rt) = rt {
        std::thread::spawn(move || {
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                raised.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        });
    }
    flag
}

#[cfg(test)]
mod tests {
    use super::{default_repeat, disturbance, gated_count, parse_variants};
    use crate::{compare::Gates, spec::ProfileSpec};

    #[test]
    fn default_repeat_covers_the_gated_family_of_the_profile() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let gates = Gates::load(&root.join("gates.toml")).expect("gates.toml");
        let tcp = ProfileSpec::load(&root.join("tcp.toml")).expect("tcp.toml");
        // tcp: bulk (throughput) and rr (throughput, rr/s, p50, p99) and
        // five gated metrics on each endpoint: 15, so 1 − 0.05/15 and 6
        // runs a side (2/924 ≤ 0.0033 < 2/252).
        assert_eq!(default_repeat(&tcp, &gates), 6);
        // Without gates the exploratory 95 % needs 4.
        assert_eq!(default_repeat(&tcp, &Gates::default()), 4);
    }

    /// README.md, docs/compare.md and gates.toml state tcp's gate count and default
    /// runs; they must be the numbers this code computes.
    #[test]
    fn docs_state_the_computed_tcp_numbers() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let gates = Gates::load(&root.join("profiles/gates.toml")).expect("gates.toml");
        let tcp = ProfileSpec::load(&root.join("profiles/tcp.toml")).expect("tcp.toml");
        let (m, n) = (gated_count(&tcp, &gates), default_repeat(&tcp, &gates));
        // Line breaks fall anywhere: compare the text with whitespace folded.
        let text = |f: &str| {
            let t = std::fs::read_to_string(root.join(f)).expect(f);
            t.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let readme = text("README.md");
        let want = format!("({n} runs each for tcp, the fewest at which its {m} gates can judge)");
        assert!(readme.contains(&want), "README.md lacks {want:?}");
        let compare = text("docs/compare.md");
        for want in [
            format!("they are many ({m} for tcp:"),
            format!("catalogue metrics: {n} for tcp."),
            format!("the fewest runs at which the gates can judge, {n} for tcp)"),
            format!("(tcp's {m}) |"),
        ] {
            assert!(compare.contains(&want), "docs/compare.md lacks {want:?}");
        }
        let want = format!("tcp's {m} need {n} runs a side");
        assert!(
            text("profiles/gates.toml").contains(&want),
            "profiles/gates.toml lacks {want:?}"
        );
    }

    #[test]
    fn reads_both_spellings() {
        let want = [
            "relay.buffer_size=65536".to_string(),
            "relay.buffer_size=4096".to_string(),
        ];
        assert_eq!(
            parse_variants("relay.buffer_size=65536,relay.buffer_size=4096").ok(),
            Some(want.clone())
        );
        assert_eq!(
            parse_variants("relay.buffer_size=65536,4096").ok(),
            Some(want)
        );
        for bad in [
            "relay.buffer_size=65536",
            "relay.buffer_size=1,probes.cpu.enabled=false",
            "=1,2",
            "a=1,",
            "a=1,2,3",
        ] {
            assert!(parse_variants(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_is_disturbed_by_other_processes_in_a_main_window_only() {
        let window = |pass: &str, other: f64, steal: f64| crate::report::WindowLoad {
            pass: pass.into(),
            phase: 0,
            opened_unix_s: 0.0,
            seconds: 4.0,
            steal_cores: steal,
            irq_cores: 0.3,
            targets_cores: 1.5,
            runner_cores: 0.4,
            other_cores: other,
        };
        assert_eq!(disturbance(&[]), None);
        assert_eq!(
            disturbance(&[window("main", 0.12, 0.0), window("main", 0.2, 0.04)]),
            None
        );
        assert_eq!(
            disturbance(&[window("main", 0.1, 0.0), window("main", 0.7, 0.0)]),
            Some(0.7)
        );
        assert_eq!(disturbance(&[window("main", 0.2, 0.1)]), Some(0.2 + 0.1));
        assert_eq!(disturbance(&[window("per_call", 0.9, 0.0)]), None);
    }
}
