//! live: a run's figures while it runs — stage and phase, elapsed and
//! remaining time, throughput, p99 so far, each target's RSS and FDs —
//! for the terminal ([`terminal`]) and for Prometheus scrapes
//! ([`serve`]).
//!
//! Nothing here measures anew: the figures are read from the phase's
//! per-second meter (the counters behind the report's time series) and
//! from the resource sampler's latest once-a-second /proc reading. Reads
//! happen on the view's and the server's own threads, once a second and
//! once a scrape; the traffic's path gains nothing but the one call that
//! hands the meter over when a phase starts.

pub mod serve;
pub mod terminal;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::capture::resources::Latest;
use crate::drive::{LiveCounters, PhaseOptions, Window, WindowState};

/// What the user asked for: the terminal view and the metrics server.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// No terminal view (`--no-live`).
    pub quiet: bool,
    /// Serve the figures as Prometheus text on this address (`--serve`).
    pub serve: Option<SocketAddr>,
    /// Allow `serve` on an address other than loopback
    /// (`--serve-non-loopback`).
    pub serve_non_loopback: bool,
}

impl LiveOptions {
    /// A non-loopback `--serve` without the flag that allows it: one line
    /// naming the fix.
    pub fn check(&self) -> Result<(), String> {
        match self.serve {
            Some(a) if !a.ip().is_loopback() && !self.serve_non_loopback => Err(format!(
                "--serve {a}: not a loopback address; the figures would be open to the network: \
                 use 127.0.0.1:PORT, or add --serve-non-loopback to mean it"
            )),
            _ => Ok(()),
        }
    }
}

/// A phase the run will drive, for the remaining time.
#[derive(Debug, Clone)]
pub struct Planned {
    pub pass: &'static str,
    pub index: usize,
    /// Warm-up plus measured seconds (exact-length phases: their bound).
    pub seconds: f64,
}

impl Planned {
    /// Every phase of `phases` in pass `pass`.
    pub fn pass(pass: &'static str, phases: &[PhaseOptions]) -> Vec<Planned> {
        phases
            .iter()
            .enumerate()
            .map(|(index, p)| Planned {
                pass,
                index,
                seconds: p.warmup.as_secs_f64() + p.duration.as_secs_f64(),
            })
            .collect()
    }
}

/// The shared state a run updates and the view and server read.
#[derive(Clone)]
pub struct Live {
    inner: Arc<Mutex<State>>,
    started: Instant,
    profile: Arc<str>,
}

struct State {
    plan: Vec<Planned>,
    stage: &'static str,
    phase: Option<Current>,
    /// Window totals of the phases that have ended: up, down, round trips.
    done: (u64, u64, u64),
    targets: Vec<(String, u32)>,
    resources: Option<Latest>,
}

struct Current {
    pass: &'static str,
    index: usize,
    count: usize,
    pattern: &'static str,
    begun: Instant,
    warmup_s: f64,
    duration_s: f64,
    counters: Option<LiveCounters>,
    /// Round-trip latency (ns) of the window's complete seconds so far.
    latency: Option<Histogram<u64>>,
    merged_seconds: usize,
}

/// A phase as it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseNow {
    pub pass: &'static str,
    pub index: usize,
    pub count: usize,
    pub pattern: &'static str,
    /// `starting` (connecting, warming up), `measuring` or `draining`.
    pub state: &'static str,
    /// Seconds in the measured window so far.
    pub window_s: f64,
    /// The window's length (an exact-length phase's bound).
    pub duration_s: f64,
}

/// One target's latest resource reading.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetNow {
    pub role: String,
    pub pid: u32,
    pub rss_bytes: u64,
    pub fds: u64,
}

/// The figures at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub profile: String,
    pub elapsed_s: f64,
    /// `starting`, `control`, `set-up`, `main`, `per-call`, `observe` or
    /// `finishing`.
    pub stage: &'static str,
    pub phase: Option<PhaseNow>,
    /// Planned seconds left: this phase's rest and every later phase's
    /// warm-up and window (not probe loading, drains or report writing).
    pub remaining_s: Option<f64>,
    /// Bytes counted in measured windows so far, this run.
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub round_trips: u64,
    /// Bytes up and down in the window's last complete second.
    pub throughput_bps: Option<f64>,
    /// This phase's p99 round trip over its complete seconds, and how many
    /// round trips that covers.
    pub p99_us: Option<f64>,
    pub latency_count: u64,
    pub targets: Vec<TargetNow>,
}

/// The shortest part of a window's first second whose bytes make a rate.
const FIRST_SECOND_FROM_S: f64 = 0.2;

/// Per-second histograms of the meter: 2 significant digits, up to 10 s.
fn latency_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_max(10_000_000_000, 2).ok()
}

impl Live {
    pub fn new(profile: &str, plan: Vec<Planned>) -> Live {
        Live {
            inner: Arc::new(Mutex::new(State {
                plan,
                stage: "starting",
                phase: None,
                done: (0, 0, 0),
                targets: Vec::new(),
                resources: None,
            })),
            started: Instant::now(),
            profile: profile.into(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.inner.lock().ok().map(|mut s| f(&mut s))
    }

    /// The targets, by role and pid, and where their readings appear.
    pub fn targets(&self, targets: Vec<(String, u32)>, resources: Latest) {
        self.with(|s| {
            s.targets = targets;
            s.resources = Some(resources);
        });
    }

    /// A stage without phases of its own (set-up, finishing).
    pub fn stage(&self, stage: &'static str) {
        self.with(|s| {
            s.end_phase();
            s.stage = stage;
        });
    }

    /// Phase `index` of `count` of pass `pass` starts now.
    pub fn phase(&self, pass: &'static str, index: usize, count: usize, p: &PhaseOptions) {
        self.begin(
            pass,
            index,
            count,
            p.pattern.name(),
            p.warmup.as_secs_f64(),
            p.duration.as_secs_f64(),
        );
    }

    /// Observing without traffic for `seconds`.
    pub fn observe(&self, seconds: f64) {
        self.begin("observe", 0, 1, "observe", 0.0, seconds);
    }

    fn begin(
        &self,
        pass: &'static str,
        index: usize,
        count: usize,
        pattern: &'static str,
        warmup_s: f64,
        duration_s: f64,
    ) {
        self.with(|s| {
            s.end_phase();
            s.stage = pass;
            s.phase = Some(Current {
                pass,
                index,
                count,
                pattern,
                begun: Instant::now(),
                warmup_s,
                duration_s,
                counters: None,
                latency: latency_histogram(),
                merged_seconds: 0,
            });
        });
    }

    /// The figures now.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let now = Instant::now();
        let elapsed_s = now.duration_since(self.started).as_secs_f64();
        self.with(|s| s.snapshot(&self.profile, elapsed_s, now))
    }
}

impl State {
    /// Keeps an ending phase's window totals in the run's.
    fn end_phase(&mut self) {
        if let Some(c) = self.phase.take().and_then(|p| p.counters) {
            let (u, d, r) = c.totals();
            self.done = (self.done.0 + u, self.done.1 + d, self.done.2 + r);
        }
    }

    fn snapshot(&mut self, profile: &str, elapsed_s: f64, now: Instant) -> Snapshot {
        let (mut up, mut down, mut rt) = self.done;
        let mut throughput_bps = None;
        let mut p99_us = None;
        let mut latency_count = 0;
        let mut phase = None;
        let mut remaining_s = None;
        if let Some(c) = self.phase.as_mut() {
            let window = c
                .counters
                .as_ref()
                .map_or(WindowState::NotOpen, |m| m.window(now));
            let (state, window_s, left) = match window {
                WindowState::NotOpen => {
                    let since = now.duration_since(c.begun).as_secs_f64();
                    (
                        "starting",
                        0.0,
                        (c.warmup_s - since).max(0.0) + c.duration_s,
                    )
                }
                WindowState::Open { elapsed_s } => {
                    ("measuring", elapsed_s, (c.duration_s - elapsed_s).max(0.0))
                }
                WindowState::Closed { measured_s } => ("draining", measured_s, 0.0),
            };
            if let Some(m) = &c.counters {
                let (u, d, r) = m.totals();
                (up, down, rt) = (up + u, down + d, rt + r);
                let complete = m.complete_seconds(now);
                if state == "measuring" {
                    // The last complete second; in the first, what the
                    // window has counted so far over its length.
                    throughput_bps = match complete {
                        0 if window_s >= FIRST_SECOND_FROM_S => Some((u + d) as f64 / window_s),
                        0 => None,
                        n => m.second_bytes(n - 1).map(|b| b as f64),
                    };
                }
                // Each complete second is added once: its lock is taken
                // once, not once a scrape.
                if let Some(h) = c.latency.as_mut() {
                    while c.merged_seconds < complete {
                        m.add_second_latency(c.merged_seconds, h);
                        c.merged_seconds += 1;
                    }
                    latency_count = h.len();
                    if latency_count > 0 {
                        p99_us = Some(h.value_at_quantile(0.99) as f64 / 1e3);
                    }
                }
            }
            let later: f64 = self
                .plan
                .iter()
                .skip_while(|p| !(p.pass == c.pass && p.index == c.index))
                .skip(1)
                .map(|p| p.seconds)
                .sum();
            remaining_s = Some(left + later);
            phase = Some(PhaseNow {
                pass: c.pass,
                index: c.index,
                count: c.count,
                pattern: c.pattern,
                state,
                window_s,
                duration_s: c.duration_s,
            });
        }
        let readings = self
            .resources
            .as_ref()
            .and_then(|r| r.lock().ok().map(|v| v.clone()))
            .unwrap_or_default();
        let targets = self
            .targets
            .iter()
            .filter_map(|(role, pid)| {
                let r = readings.iter().find(|r| r.pid == *pid)?;
                Some(TargetNow {
                    role: role.clone(),
                    pid: *pid,
                    rss_bytes: r.sample.rss_bytes,
                    fds: r.sample.fds.total(),
                })
            })
            .collect();
        Snapshot {
            profile: profile.to_string(),
            elapsed_s,
            stage: self.stage,
            phase,
            remaining_s,
            bytes_up: up,
            bytes_down: down,
            round_trips: rt,
            throughput_bps,
            p99_us,
            latency_count,
            targets,
        }
    }
}

/// The live view's hook into a phase: it takes the phase's counters; the
/// window's edges are the probes' business, not its own.
impl Window for Live {
    fn open(&self) {}
    fn close(&self) {}
    fn counting(&self, counters: &LiveCounters) {
        self.with(|s| {
            if let Some(c) = s.phase.as_mut() {
                c.counters = Some(counters.clone());
            }
        });
    }
}

/// CPU time this thread has used, for what the view and server cost.
pub(crate) fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The view and the server of one run, as asked for; both stop when this
/// is finished or dropped (on every way out of the run).
pub struct Running {
    pub live: Live,
    view: Option<terminal::View>,
    server: Option<serve::Server>,
}

impl Running {
    /// Starts what `opts` asks for around `live`.
    pub fn start(opts: &LiveOptions, live: Live) -> Result<Running, serve::ServeError> {
        let server = opts
            .serve
            .map(|addr| serve::Server::start(addr, live.clone()))
            .transpose()?;
        let view = (!opts.quiet).then(|| terminal::View::start(live.clone()));
        Ok(Running { live, view, server })
    }

    /// Stops both; returns a line for run.log with what they cost.
    pub fn finish(mut self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.view.take() {
            parts.push(format!("view {:.1} ms", v.finish().as_secs_f64() * 1e3));
        }
        if let Some(s) = self.server.take() {
            let addr = s.addr();
            parts.push(format!(
                "server on {addr} {:.1} ms",
                s.finish().as_secs_f64() * 1e3
            ));
        }
        if parts.is_empty() {
            return "live view off".into();
        }
        format!(
            "live view CPU over {:.1} s: {}",
            self.live.started.elapsed().as_secs_f64(),
            parts.join(", ")
        )
    }
}
