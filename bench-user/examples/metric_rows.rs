//! Print each run's metrics as one CSV row, the metric keys of `compare`
//! as columns (empty where a run has no value): the run sets that
//! bench-user/tests/data/tcp-runs.csv holds for compare's simulations.
//!
//!     cargo run --release -p bench-user --example metric_rows -- RUNS_DIR > FILE.csv

use std::{collections::BTreeSet, path::PathBuf, process::ExitCode};

use protoprof::compare::{self, RunSet};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("metric_rows: give a directory of run directories");
        return ExitCode::from(2);
    };
    let set = match RunSet::load(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("metric_rows: {e}");
            return ExitCode::from(e.exit_code().clamp(1, 255) as u8);
        }
    };
    let rows: Vec<compare::Samples> = set
        .runs
        .iter()
        .filter(|(_, r)| r.run.status == "ok")
        .map(|run| compare::collect(&RunSet::from_runs(dir.clone(), vec![run.clone()])))
        .collect();
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    println!(
        "{}",
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    for r in &rows {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| {
                r.get(*k)
                    .and_then(|v| v.first())
                    .map_or(String::new(), |v| format!("{v}"))
            })
            .collect();
        println!("{}", cells.join(","));
    }
    ExitCode::SUCCESS
}
