//! repeat: run the variants of a comparison interleaved (A, B, A, B…) so
//! that drift of the machine (thermal, other load) spreads over both sides
//! instead of biasing one.

use std::path::{Path, PathBuf};

use super::{CompareError, RunSet};
use crate::run::{self, RunError, RunOptions};

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
            _ => 1,
        }
    }
}

/// Run every variant `repeat` times, interleaved, each into
/// `<root>/<label>-<k>/`, and return one run set per variant. `check` sees
/// each finished run (e.g. to compare its spec hash with the expected one).
pub fn run_interleaved(
    base: &RunOptions,
    variants: &[Variant],
    repeat: usize,
    root: &Path,
    mut check: impl FnMut(&Variant, &run::RunOutcome) -> Result<(), String>,
) -> Result<Vec<RunSet>, RepeatError> {
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
            let outcome = run::run_profile(&opts).map_err(|source| RepeatError::Run {
                name: name.clone(),
                source: Box::new(source),
            })?;
            check(v, &outcome).map_err(|message| RepeatError::Check {
                name: name.clone(),
                message,
            })?;
            runs.push((outcome.dir, outcome.report));
        }
    }
    Ok(variants
        .iter()
        .zip(sets)
        .map(|(v, runs)| RunSet::from_runs(root.join(format!("{}-*", v.label)), runs))
        .collect())
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
    use super::parse_variants;

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
}
