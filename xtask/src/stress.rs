//! `cargo xtask stress`: the stress table of docs/stress.md, for every
//! protocol, through our endpoints and through an outside implementation's
//! (sing-box's where it has the protocol, shoes's for reality). Each implementation gets two runs of its own profile with the
//! phases replaced (`--set phase=[…]`) and every probe off, so that the
//! figures are the chain's, not the probes':
//!
//! - the stress run: churn as fast as 8 connections in flight allow
//!   (connection rate, set-up time over every connection, failures), one
//!   connection moving an exact length each way (the large transfer), and a
//!   concurrency sweep up to 500 connections held open at once (RSS and
//!   descriptors per connection, the first level that failed);
//! - the leak run: a minute of churn at 50 connections a second, the run
//!   the `leak.*` rules were proven on (tests/profile_leak.rs), judged for
//!   growth per connection served and for descriptors and sockets back at
//!   their baseline afterwards (the descriptor check).
//!
//! Every figure is read from the runs' report.json; a run that fails is a
//! row that says so, not a missing row.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::figures::{self, Load};

/// One row of the table: a protocol through one implementation.
pub struct Implementation {
    pub protocol: &'static str,
    /// `ours`, `sing-box` or `shoes`.
    pub who: &'static str,
    pub profile: &'static str,
}

/// Every protocol with an implementation of ours, then the outside one's:
/// sing-box's where the pinned sing-box has it (it has no SSH or REALITY,
/// and plain TCP is not a protocol of its), shoes's for reality.
pub const IMPLEMENTATIONS: &[Implementation] = &[
    imp("tcp", "ours", "tcp"),
    imp("tls", "ours", "tls"),
    imp("tls", "sing-box", "sing-box-tls"),
    imp("ech", "ours", "ech"),
    imp("ech", "sing-box", "sing-box-ech"),
    imp("tuic", "ours", "tuic"),
    imp("tuic", "sing-box", "sing-box-tuic"),
    imp("hysteria2", "ours", "hysteria2"),
    imp("hysteria2", "sing-box", "sing-box-hysteria2"),
    imp("hysteria1", "ours", "hysteria1"),
    imp("hysteria1", "sing-box", "sing-box-hysteria1"),
    imp("ssh", "ours", "ssh"),
    imp("reality", "ours", "reality"),
    imp("reality", "shoes", "shoes-reality"),
];

const fn imp(protocol: &'static str, who: &'static str, profile: &'static str) -> Implementation {
    Implementation {
        protocol,
        who,
        profile,
    }
}

/// What `cargo xtask stress` was asked to do.
pub struct Options {
    /// Only these profiles (all when empty); the table is then printed and
    /// written under target/, not into docs/stress.md.
    pub only: Vec<String>,
    /// The concurrency sweep's levels.
    pub levels: Vec<usize>,
    /// The large transfer, bytes each way on one connection.
    pub transfer_bytes: u64,
}

/// The levels docs/stress.md is made with.
pub const LEVELS: &[usize] = &[1, 10, 100, 500];
/// The large transfer docs/stress.md is made with: 1 GiB each way.
pub const TRANSFER_BYTES: u64 = 1 << 30;

/// Connections in flight in the churn phase.
const CHURN_IN_FLIGHT: usize = 8;
const CHURN_S: f64 = 10.0;
/// The leak run: as in profiles/tcp-leak.toml.
const LEAK_RATE: u32 = 50;
const LEAK_S: f64 = 60.0;

impl Options {
    /// The options docs/stress.md is made with.
    pub fn for_docs() -> Options {
        Options {
            only: Vec::new(),
            levels: LEVELS.to_vec(),
            transfer_bytes: TRANSFER_BYTES,
        }
    }

    fn is_for_docs(&self) -> bool {
        self.only.is_empty() && self.levels == LEVELS && self.transfer_bytes == TRANSFER_BYTES
    }

    /// Refuse what cannot run, before anything starts.
    pub fn check(&self) -> Result<()> {
        for o in &self.only {
            if !IMPLEMENTATIONS.iter().any(|i| i.profile == o) {
                bail!(
                    "--only {o}: not a stress row; use one of {}",
                    IMPLEMENTATIONS
                        .iter()
                        .map(|i| i.profile)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if self.levels.is_empty() || self.levels.contains(&0) {
            bail!("--levels: give connection counts above 0, e.g. 1,10,100,500");
        }
        if self.levels.windows(2).any(|w| w[0] >= w[1]) {
            bail!("--levels: give them in increasing order, e.g. 1,10,100,500");
        }
        if self.transfer_bytes == 0 {
            bail!("--transfer-bytes: give a size above 0, e.g. 1073741824");
        }
        Ok(())
    }

    fn selected(&self) -> impl Iterator<Item = &'static Implementation> + '_ {
        IMPLEMENTATIONS
            .iter()
            .filter(|i| self.only.is_empty() || self.only.iter().any(|o| o == i.profile))
    }
}

/// The stress run's phases, as the TOML value of `--set phase=…`.
pub fn stress_phases(levels: &[usize], transfer_bytes: u64) -> String {
    let levels = levels
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // The transfer's duration_s only bounds it: at 4 MiB/s a GiB takes
    // about 4.5 minutes; below that the run fails as too slow.
    let bound_s = (transfer_bytes as f64 / (4.0 * 1048576.0)).max(60.0).ceil();
    format!(
        "[{{ pattern = \"churn\", connections = {CHURN_IN_FLIGHT}, request_size = 64, \
         response_size = 1024, warmup_s = 1, duration_s = {CHURN_S} }}, \
         {{ pattern = \"bulk\", connections = 1, direction = \"both\", \
         bytes_per_connection = {transfer_bytes}, duration_s = {bound_s} }}, \
         {{ pattern = \"concurrency\", levels = [{levels}], request_size = 64, \
         response_size = 1024, warmup_s = 1, duration_s = 3 }}]"
    )
}

/// The leak run's phase.
pub fn leak_phases() -> String {
    format!(
        "[{{ pattern = \"churn\", connections = 4, rate = {LEAK_RATE}, request_size = 64, \
         response_size = 1024, warmup_s = 2, duration_s = {LEAK_S} }}]"
    )
}

/// No separate set-up phase (churn times set-up over every connection),
/// and every probe off ([`crate::PROBES_OFF`]).
const NO_SETUP: &str = "setup.enabled=false";

/// A run's report, or why there is none.
enum Outcome {
    Report(Box<Value>),
    Failed(String),
}

fn run_profile(root: &Path, out: &Path, profile: &str, phases: &str) -> Result<Outcome> {
    let mut cmd = Command::new(root.join("target/release/protoprof"));
    cmd.current_dir(root)
        .args(["profile", profile, "--no-live", "--profiles"])
        .arg(root.join("profiles"))
        .arg("--out")
        .arg(out)
        .args(["--set", &format!("phase={phases}")]);
    for s in std::iter::once(&NO_SETUP).chain(crate::PROBES_OFF) {
        cmd.args(["--set", s]);
    }
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running protoprof")?;
    if !output.status.success() {
        // Bad settings (2) or an interruption (130) stop the table; any
        // other failure is the row's result.
        if matches!(output.status.code(), Some(2 | 130)) {
            bail!("protoprof profile {profile}: {}", output.status);
        }
        return Ok(Outcome::Failed(format!(
            "run failed ({}); see its run.log under {}",
            output.status,
            out.display()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(text.lines().last().unwrap_or_default().trim());
    let report = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json"))
            .with_context(|| format!("reading {}/report.json", dir.display()))?,
    )
    .context("parsing report.json")?;
    Ok(Outcome::Report(Box::new(report)))
}

/// Above this many cores taken from the chain in a main-pass window (the
/// hypervisor's steal plus other processes' CPU), a run was disturbed by a
/// neighbour: set aside and made again. The threshold `protoprof compare`
/// uses for its series (`DISTURBED_CORES`, docs/compare.md); here it
/// matters as much, since every cell is a single run: a stress run of our
/// hysteria2 endpoints with 0.85 cores stolen by the hypervisor churned at
/// about half the rate of an undisturbed one.
const DISTURBED_CORES: f64 = 0.25;
/// Attempts at one run; the last is kept even if disturbed.
const ATTEMPTS: usize = 3;

/// The most CPU the hypervisor and other processes took in one main-pass
/// window of a report, in cores.
fn worst_window(report: &Value) -> Option<f64> {
    report["workload"]["windows"]
        .as_array()?
        .iter()
        .filter(|w| w["pass"] == "main")
        .map(|w| {
            w["steal_cores"].as_f64().unwrap_or(0.0) + w["other_cores"].as_f64().unwrap_or(0.0)
        })
        .reduce(f64::max)
}

/// A run kept, with the attempts it took.
struct Kept {
    outcome: Outcome,
    attempts: usize,
}

/// [`run_profile`] until a run is not disturbed ([`DISTURBED_CORES`]), at
/// most [`ATTEMPTS`] times.
fn run_undisturbed(root: &Path, out: &Path, profile: &str, phases: &str) -> Result<Kept> {
    let mut attempt = 1;
    loop {
        let outcome = run_profile(root, out, profile, phases)?;
        let worst = match &outcome {
            Outcome::Report(r) => worst_window(r),
            Outcome::Failed(_) => None,
        };
        match worst {
            Some(cores) if cores > DISTURBED_CORES && attempt < ATTEMPTS => {
                println!(
                    "stress: {profile}: {cores:.2} cores taken by steal and other processes in a window (over {DISTURBED_CORES}); run set aside, attempt {} of {ATTEMPTS}",
                    attempt + 1
                );
                attempt += 1;
            }
            _ => {
                return Ok(Kept {
                    outcome,
                    attempts: attempt,
                })
            }
        }
    }
}

/// The machine cell of a row: the worst window of the stress run kept, and
/// how many attempts it took.
fn machine_cell(kept: &Kept) -> String {
    let Outcome::Report(r) = &kept.outcome else {
        return "–".into();
    };
    let worst = worst_window(r).map_or("–".into(), |c| format!("{c:.2}"));
    let flag = if worst_window(r).is_some_and(|c| c > DISTURBED_CORES) {
        " (disturbed)"
    } else {
        ""
    };
    match kept.attempts {
        1 => format!("{worst}{flag}"),
        n => format!("{worst}{flag}, attempt {n}"),
    }
}

/// What one implementation's two runs measured, as table cells.
struct Row {
    protocol: &'static str,
    who: &'static str,
    rate: [String; 4],
    transfer: [String; 3],
    sweep: [String; 4],
    leak: [String; 3],
    /// The stress run's machine cell ([`machine_cell`]).
    machine: String,
}

/// The tables and the machine they ran on.
pub struct Tables {
    pub markdown: String,
    pub machine: String,
    pub load: Load,
}

/// Run every selected implementation and build the tables.
pub fn run(root: &Path, opts: &Options) -> Result<Tables> {
    opts.check()?;
    let out = root.join("target/protoprof/stress");
    let _ = std::fs::remove_dir_all(&out);
    let mut load = Load::default();
    let mut machine = String::new();
    let mut rows = Vec::new();
    let phases = stress_phases(&opts.levels, opts.transfer_bytes);
    for imp in opts.selected() {
        println!("stress: {} ({}) …", imp.protocol, imp.who);
        load.sample();
        let stress = run_undisturbed(root, &out, imp.profile, &phases)?;
        load.sample();
        let leak = run_undisturbed(root, &out, imp.profile, &leak_phases())?;
        for o in [&stress.outcome, &leak.outcome] {
            if let (Outcome::Report(r), true) = (o, machine.is_empty()) {
                machine = figures::machine_line(r);
            }
        }
        let mut row = row(
            imp,
            &stress.outcome,
            &leak.outcome,
            opts.levels.last().copied().unwrap_or(0),
        );
        row.machine = machine_cell(&stress);
        println!("{}", row_lines(&row).join("\n"));
        rows.push(row);
    }
    load.sample();
    Ok(Tables {
        markdown: tables(&rows, opts),
        machine,
        load,
    })
}

/// `cargo xtask stress`: run, then write docs/stress.md (with the options
/// it is made with) or print the tables and keep them under target/.
pub fn command(root: &Path, opts: &Options) -> Result<()> {
    let for_docs = opts.is_for_docs();
    if for_docs {
        return figures::run(
            root,
            &figures::Request {
                docs: Vec::new(),
                only: vec!["stress".into()],
                slow: true,
                soak_dir: None,
            },
        );
    }
    let t = run(root, opts)?;
    let path = root.join("target/protoprof/stress/stress.md");
    std::fs::write(&path, &t.markdown).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", t.markdown);
    println!(
        "stress: a subset or other sizes: docs/stress.md not rewritten; tables in {}",
        path.display()
    );
    Ok(())
}

/// The figure block of docs/stress.md.
pub fn figure(root: &Path) -> Result<String> {
    let t = run(root, &Options::for_docs())?;
    let stamp = figures::Stamp {
        command: "cargo xtask stress".into(),
        machine: t.machine,
        load: t.load,
    };
    Ok(format!("{}{}", stamp.line(), t.markdown))
}

fn mib_s(bytes: f64, seconds: f64) -> String {
    if seconds > 0.0 {
        format!("{:.1}", bytes / seconds / 1048576.0)
    } else {
        "–".into()
    }
}

fn ms(us: Option<f64>) -> String {
    us.map_or("too few".into(), |v| format!("{:.2} ms", v / 1e3))
}

/// A latency summary's percentile, when its interval exists.
fn percentile(summary: &Value, label: &str) -> Option<f64> {
    summary["percentiles"]
        .as_array()?
        .iter()
        .find(|p| p["label"] == label)?["estimate"]["value"]["value"]
        .as_f64()
}

/// A target's value by role: "client / server".
fn per_role(r: &Value, f: impl Fn(&Value) -> String) -> String {
    let by = |role: &str| {
        r["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["role"] == role))
            .map_or("–".to_string(), &f)
    };
    format!("{} / {}", by("client"), by("server"))
}

fn failures(churn: &Value) -> String {
    let kinds: Vec<String> = churn["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} {}",
                f["count"].as_u64().unwrap_or(0),
                f["kind"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if kinds.is_empty() {
        "0".into()
    } else {
        kinds.join(", ")
    }
}

fn row(imp: &'static Implementation, stress: &Outcome, leak: &Outcome, top: usize) -> Row {
    let failed = |why: &str| [why.to_string(), "–".into(), "–".into(), "–".into()];
    let (rate, transfer, sweep) = match stress {
        Outcome::Failed(why) => {
            let f = failed(why);
            (f.clone(), [why.to_string(), "–".into(), "–".into()], f)
        }
        Outcome::Report(r) => {
            let phases = &r["workload"]["phases"];
            let churn = &phases[0]["churn"];
            let rate = [
                format!(
                    "{:.0}",
                    churn["connections_per_s"].as_f64().unwrap_or(f64::NAN)
                ),
                format!(
                    "{} / {}",
                    ms(percentile(&churn["setup_us"], "p50")),
                    ms(percentile(&churn["setup_us"], "p99"))
                ),
                format!(
                    "{} of {}",
                    churn["completed"].as_u64().unwrap_or(0),
                    churn["started"].as_u64().unwrap_or(0)
                ),
                failures(churn),
            ];
            let bulk = &phases[1];
            let secs = bulk["measured_s"].as_f64().unwrap_or(0.0);
            let transfer = [
                format!(
                    "{} / {}",
                    mib_s(bulk["window_bytes_up"].as_f64().unwrap_or(0.0), secs),
                    mib_s(bulk["window_bytes_down"].as_f64().unwrap_or(0.0), secs)
                ),
                format!("{secs:.1}"),
                bulk["integrity"]["status"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            ];
            (rate, transfer, sweep_cells(r, top))
        }
    };
    let leak = match leak {
        Outcome::Failed(why) => [why.clone(), "–".into(), "–".into()],
        Outcome::Report(r) => leak_cells(r),
    };
    Row {
        protocol: imp.protocol,
        who: imp.who,
        rate,
        transfer,
        sweep,
        leak,
        machine: "–".into(),
    }
}

/// The sweep's outcome, and at its highest level reached: round trips per
/// second, p99, RSS and descriptors per connection by endpoint.
fn sweep_cells(r: &Value, top: usize) -> [String; 4] {
    let Some(s) = r["sweeps"].as_array().and_then(|s| s.first()) else {
        return [
            "no sweep in the report".into(),
            "–".into(),
            "–".into(),
            "–".into(),
        ];
    };
    let stop = |v: &Value| {
        format!(
            "{} ({})",
            v["connections"].as_u64().unwrap_or(0),
            v["reason"].as_str().unwrap_or("?")
        )
    };
    let outcome = if !s["first_failure"].is_null() {
        format!("failed at {}", stop(&s["first_failure"]))
    } else if !s["limited"].is_null() {
        format!("limited before {}", stop(&s["limited"]))
    } else {
        format!("all {top} held")
    };
    let Some(level) = s["levels"].as_array().and_then(|l| l.last()) else {
        return [outcome, "–".into(), "–".into(), "–".into()];
    };
    let n = level["connections"].as_u64().unwrap_or(0);
    let targets = level["targets"].as_array().cloned().unwrap_or_default();
    let by = |role: &str, f: &dyn Fn(&Value) -> String| {
        targets
            .iter()
            .find(|t| t["role"] == role)
            .map_or("–".to_string(), f)
    };
    let kib = |t: &Value| {
        format!(
            "{:.1}",
            t["rss_per_connection_bytes"].as_f64().unwrap_or(f64::NAN) / 1024.0
        )
    };
    let fds = |t: &Value| {
        format!(
            "{:.2}",
            t["fds_per_connection"].as_f64().unwrap_or(f64::NAN)
        )
    };
    [
        outcome,
        format!(
            "{n}: {:.0} rt/s, p99 {}",
            level["round_trips_per_s"].as_f64().unwrap_or(f64::NAN),
            ms(level["latency_p99_us"].as_f64())
        ),
        format!("{} / {}", by("client", &kib), by("server", &kib)),
        format!("{} / {}", by("client", &fds), by("server", &fds)),
    ]
}

/// The leak run: the `leak.*` slope verdicts, the descriptor and socket
/// baseline verdicts, and descriptors before → after, by endpoint.
fn leak_cells(r: &Value) -> [String; 3] {
    let verdicts = |ids: &[&str]| {
        per_role(r, |t| {
            let role = t["role"].as_str().unwrap_or("?");
            let got: Vec<String> = ids
                .iter()
                .map(|id| {
                    r["checklist"]
                        .as_array()
                        .and_then(|c| {
                            c.iter()
                                .find(|c| c["id"] == *id && c["target"].as_str() == Some(role))
                        })
                        .and_then(|c| c["verdict"].as_str())
                        .unwrap_or("–")
                        .to_string()
                })
                .collect();
            summarize(&got)
        })
    };
    let connections = r["targets"]
        .as_array()
        .and_then(|ts| ts.first())
        .and_then(|t| t["leak"]["connections"].as_u64())
        .map_or(String::new(), |n| format!(" ({n} connections)"));
    let held = per_role(r, |t| {
        let b = &t["leak"]["return_to_baseline"];
        match (b["before"]["fds"].as_u64(), b["after"]["fds"].as_u64()) {
            (Some(x), Some(y)) => format!("{x} → {y}"),
            _ => "–".into(),
        }
    });
    [
        format!(
            "{}{connections}",
            verdicts(&["leak.memory", "leak.fds", "leak.threads", "leak.sockets"])
        ),
        verdicts(&["leak.fds-baseline", "leak.sockets-baseline"]),
        held,
    ]
}

/// Verdicts in one word when they agree ("ok"), else each named.
fn summarize(v: &[String]) -> String {
    match v.first() {
        Some(first) if v.iter().all(|x| x == first) => first.clone(),
        _ => v.join(" "),
    }
}

fn row_lines(r: &Row) -> Vec<String> {
    vec![
        format!(
            "| {} | {} | {} | {} |",
            r.protocol,
            r.who,
            r.rate.join(" | "),
            r.machine
        ),
        format!(
            "| {} | {} | {} |",
            r.protocol,
            r.who,
            r.transfer.join(" | ")
        ),
        format!("| {} | {} | {} |", r.protocol, r.who, r.sweep.join(" | ")),
        format!("| {} | {} | {} |", r.protocol, r.who, r.leak.join(" | ")),
    ]
}

fn tables(rows: &[Row], opts: &Options) -> String {
    let top = opts.levels.last().copied().unwrap_or(0);
    let levels = opts
        .levels
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let gib = opts.transfer_bytes as f64 / (1u64 << 30) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Every probe off, no separate set-up phase; each implementation's own profile with \
         its phases replaced. One stress run (churn, the transfer, the sweep) and one leak run \
         per row, one run each: single runs, so read differences under about 10 % as noise. \
         A run in which the hypervisor (steal) and other processes took over \
         {DISTURBED_CORES} cores in a measured window was set aside and made again, up to \
         {ATTEMPTS} attempts, the last kept (the rule `protoprof compare` applies to its \
         series); the first table's last column is the stress run's worst window. Every byte \
         of every connection is BLAKE3-checked at both ends.\n"
    );
    let _ = writeln!(
        s,
        "**Connection rate**: churn (connect, SOCKS5, one 64 B request, its 1 KiB response, \
         close) as fast as {CHURN_IN_FLIGHT} connections in flight allow, {CHURN_S} s after 1 s \
         of warm-up. Set-up: TCP connect to the SOCKS5 success reply, over every connection of \
         the window (p99 only where its distribution-free interval exists).\n"
    );
    let _ = writeln!(
        s,
        "| protocol | implementation | connections/s | set-up p50 / p99 | completed of started | failed (all, by kind) | machine: steal + other, cores |\n|---|---|---:|---:|---:|---|---:|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.protocol,
            r.who,
            r.rate.join(" | "),
            r.machine
        );
    }
    let _ = writeln!(
        s,
        "\n**Large transfer**: one connection moving exactly {gib:.2} GiB each way at once, \
         closed only once both ends counted every byte (so sing-box, which relays no \
         half-close, loses nothing).\n"
    );
    let _ = writeln!(
        s,
        "| protocol | implementation | MiB/s up / down | seconds | integrity |\n|---|---|---:|---:|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            r.protocol,
            r.who,
            r.transfer.join(" | ")
        );
    }
    let _ = writeln!(
        s,
        "\n**{top} concurrent connections**: a sweep over {levels} connections held open at \
         once, closed-loop rr (64 B / 1 KiB) on each for 3 s after 1 s of warm-up; it stops at \
         the first level with a failed connection or an integrity error, or before a level a \
         limit of the machine or the protocol forbids. At the highest level reached: round \
         trips per second and p99, and each endpoint's RSS and descriptors per connection held \
         (against its reading before the sweep).\n"
    );
    let _ = writeln!(
        s,
        "| protocol | implementation | sweep | highest level | RSS per connection, KiB (client / server) | descriptors per connection (client / server) |\n|---|---|---|---|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            r.protocol,
            r.who,
            r.sweep.join(" | ")
        );
    }
    let _ = writeln!(
        s,
        "\n**Leak and descriptor checks**: {LEAK_S} s of churn at {LEAK_RATE} connections a \
         second (profiles/tcp-leak.toml's run), judged by the checklist: `leak.memory`, \
         `leak.fds`, `leak.threads`, `leak.sockets` (the lower bound of a 95 % interval of \
         growth per connection served after warm-up), then `leak.fds-baseline` and \
         `leak.sockets-baseline` (exact counts before the traffic and after its last \
         connection closed). Verdicts client / server; one word when all agree.\n"
    );
    let _ = writeln!(
        s,
        "| protocol | implementation | growth verdicts (memory, fds, threads, sockets) | back to baseline (fds, sockets) | descriptors before → after (client / server) |\n|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(s, "| {} | {} | {} |", r.protocol, r.who, r.leak.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phases the stress and leak runs set are TOML arrays of phase
    /// tables with the keys docs/profiles.md documents, and every row's
    /// profile exists. (protoprof itself validates them at the first row:
    /// bad settings exit 2, which stops the table at once.)
    #[test]
    fn every_row_has_a_profile_and_the_phases_parse() {
        let root = crate::workspace_root().expect("root");
        for imp in IMPLEMENTATIONS {
            let path = root.join("profiles").join(format!("{}.toml", imp.profile));
            assert!(path.is_file(), "{} has no profile", imp.profile);
        }
        let doc = std::fs::read_to_string(root.join("docs/profiles.md")).expect("profiles.md");
        for (phases, n) in [
            (stress_phases(LEVELS, TRANSFER_BYTES), 3),
            (leak_phases(), 1),
        ] {
            let t: toml::Table = toml::from_str(&format!("phase = {phases}")).expect("parses");
            let list = t["phase"].as_array().expect("an array");
            assert_eq!(list.len(), n);
            for p in list {
                for key in p.as_table().expect("a table").keys() {
                    assert!(
                        doc.contains(&format!("\n{key} ")),
                        "{key} is not a documented phase key"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = Options::for_docs();
        assert!(o.check().is_ok());
        o.levels = vec![10, 1];
        assert!(o.check().is_err());
        o.levels = vec![0, 1];
        assert!(o.check().is_err());
        o = Options::for_docs();
        o.only = vec!["nope".into()];
        assert!(o.check().is_err());
        o = Options::for_docs();
        o.transfer_bytes = 0;
        assert!(o.check().is_err());
    }

    /// A row from a report as the runner writes it: the cells name what
    /// the report holds.
    #[test]
    fn cells_come_from_the_report() {
        let r: Value = serde_json::json!({
            "workload": {"phases": [
                {"churn": {"connections_per_s": 812.4, "completed": 8124, "started": 8125,
                    "setup_us": {"percentiles": [
                        {"label": "p50", "estimate": {"value": {"value": 950.0}}},
                        {"label": "p99", "estimate": {"value": {"value": 4100.0}}}]},
                    "failures": [{"kind": "timeout", "count": 1, "example": "x"}]}},
                {"measured_s": 8.0, "window_bytes_up": 1073741824u64,
                 "window_bytes_down": 1073741824u64, "integrity": {"status": "ok"}}
            ]},
            "sweeps": [{"first_failure": null, "limited": null, "levels": [
                {"connections": 500, "round_trips_per_s": 9000.0, "latency_p99_us": 120000.0,
                 "targets": [
                    {"role": "client", "rss_per_connection_bytes": 10240.0, "fds_per_connection": 1.0},
                    {"role": "server", "rss_per_connection_bytes": 20480.0, "fds_per_connection": 1.0}]}]}],
            "targets": [
                {"role": "client", "leak": {"connections": 3000,
                    "return_to_baseline": {"before": {"fds": 12}, "after": {"fds": 12}}}},
                {"role": "server", "leak": {"connections": 3000,
                    "return_to_baseline": {"before": {"fds": 10}, "after": {"fds": 11}}}}],
            "checklist": [
                {"id": "leak.memory", "target": "client", "verdict": "ok"},
                {"id": "leak.fds-baseline", "target": "server", "verdict": "warn"}]
        });
        let imp = &IMPLEMENTATIONS[0];
        let row = row(
            imp,
            &Outcome::Report(Box::new(r.clone())),
            &Outcome::Report(Box::new(r)),
            500,
        );
        assert_eq!(row.rate[0], "812");
        assert_eq!(row.rate[1], "0.95 ms / 4.10 ms");
        assert_eq!(row.rate[2], "8124 of 8125");
        assert_eq!(row.rate[3], "1 timeout");
        assert_eq!(row.transfer[0], "128.0 / 128.0");
        assert_eq!(row.sweep[0], "all 500 held");
        assert_eq!(row.sweep[1], "500: 9000 rt/s, p99 120.00 ms");
        assert_eq!(row.sweep[2], "10.0 / 20.0");
        assert_eq!(row.leak[0], "ok – – – / – (3000 connections)");
        assert_eq!(row.leak[1], "– / warn –");
        assert_eq!(row.leak[2], "12 → 12 / 10 → 11");
        let failed = row_lines(&super::row(
            imp,
            &Outcome::Failed("run failed".into()),
            &Outcome::Failed("run failed".into()),
            500,
        ));
        assert!(
            failed.iter().all(|l| l.contains("run failed")),
            "{failed:?}"
        );
    }

    /// A row says how much the machine took from its stress run, and
    /// whether the run kept was still disturbed after every attempt.
    #[test]
    fn the_machine_cell_is_the_worst_main_pass_window() {
        let windows = |w: Value| serde_json::json!({"workload": {"windows": w}});
        let quiet = windows(serde_json::json!([
            {"pass": "main", "steal_cores": 0.05, "other_cores": 0.02},
            {"pass": "main", "steal_cores": 0.10, "other_cores": 0.01},
            // Not a main-pass window: not judged.
            {"pass": "per_call", "steal_cores": 0.9, "other_cores": 0.0}
        ]));
        let w = worst_window(&quiet).expect("main-pass windows");
        assert!((w - 0.11).abs() < 1e-12, "{w}");
        let kept = |r: Value, attempts| Kept {
            outcome: Outcome::Report(Box::new(r)),
            attempts,
        };
        assert_eq!(machine_cell(&kept(quiet, 1)), "0.11");
        let stolen = windows(serde_json::json!([
            {"pass": "main", "steal_cores": 0.85, "other_cores": 0.0}
        ]));
        assert_eq!(
            machine_cell(&kept(stolen, ATTEMPTS)),
            "0.85 (disturbed), attempt 3"
        );
        assert_eq!(
            machine_cell(&Kept {
                outcome: Outcome::Failed("run failed".into()),
                attempts: 1
            }),
            "–"
        );
    }
}
