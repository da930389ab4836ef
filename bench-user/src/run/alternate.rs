//! `probes.alternate`: while a pass runs, detach the main pass's programs
//! and attach them again at the edges of each measured window's seconds,
//! on the schedule `analyze::alternation` reads the seconds back with.
//!
//! A thread of its own, not a task on the drive's runtime: detaching a
//! tracepoint program waits for the kernel's RCU grace periods, which
//! would stall the load generator's worker for as long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::analyze::alternation::attached_in_second;
use crate::capture::Probes;
use crate::drive::LiveCounters;

/// How often the thread looks for a window to open or close between
/// seconds: the first switch comes a second after the opening, so this
/// only bounds how late it sees a window close.
const POLL: Duration = Duration::from_millis(2);

/// What the switching took, and why it stopped early if it did.
#[derive(Debug, Default)]
pub(super) struct Switching {
    /// Each detach or attach, ms.
    pub switch_ms: Vec<f64>,
    pub error: Option<String>,
}

impl Switching {
    pub(super) fn max_ms(&self) -> f64 {
        self.switch_ms.iter().copied().fold(0.0, f64::max)
    }
}

/// Switch the programs of `probes` on the schedule while `stop` is unset,
/// following the phase whose counters `counters` holds (each phase puts
/// its own there before its window opens). Outside windows the programs
/// are attached; they are attached again when this returns.
pub(super) fn run(
    probes: &Mutex<Probes>,
    counters: &Mutex<Option<LiveCounters>>,
    stop: &AtomicBool,
) -> Switching {
    let mut out = Switching::default();
    let mut attached = true;
    let set = |want: bool, attached: &mut bool, out: &mut Switching| -> bool {
        if want == *attached {
            return true;
        }
        let t = Instant::now();
        let r = match probes.lock() {
            Ok(mut p) => p.set_main_attached(want).map_err(|e| e.to_string()),
            Err(_) => Err("the probes' lock was poisoned".to_string()),
        };
        out.switch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        match r {
            Ok(()) => {
                *attached = want;
                true
            }
            Err(e) => {
                out.error = Some(format!(
                    "{} the probes: {e}",
                    if want { "attaching" } else { "detaching" }
                ));
                false
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let edges = counters
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.edges()));
        let now = Instant::now();
        match edges {
            Some((Some(opened), false)) => {
                let k = now.saturating_duration_since(opened).as_secs();
                if !set(attached_in_second(k), &mut attached, &mut out) {
                    break;
                }
                // To the next second's edge, looking at `stop` and at the
                // window's close on the way.
                let next = opened + Duration::from_secs(k + 1);
                while !stop.load(Ordering::Relaxed) {
                    let left = next.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(POLL * 10));
                    let closed = counters
                        .lock()
                        .ok()
                        .and_then(|c| c.as_ref().map(|c| c.edges().1))
                        .unwrap_or(true);
                    if closed {
                        break;
                    }
                }
            }
            _ => {
                if !set(true, &mut attached, &mut out) {
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
    }
    if !attached {
        let _ = set(true, &mut attached, &mut out);
    }
    out
}
