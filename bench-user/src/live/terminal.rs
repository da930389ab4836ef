//! The live view on stderr: one redrawn status line (indicatif) on a
//! terminal; elsewhere (a pipe, a CI log) one plain line every
//! [`PLAIN_EVERY`] and one whenever the stage, phase or its state changes.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{thread_cpu, Live, Snapshot};

/// How often the view reads the figures (and redraws the terminal line):
/// the meter's and the sampler's own resolution.
pub const TICK: Duration = Duration::from_secs(1);
/// How often a plain line is written when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The view's thread; stopping it (or dropping it) clears the terminal
/// line before anything else is printed.
pub struct View {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl View {
    /// Starts the view of `live` on stderr.
    pub fn start(live: Live) -> View {
        let (stop, stopped) = mpsc::channel::<()>();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("protoprof-live".into())
            .spawn(move || {
                if tty {
                    redraw(&live, &stopped);
                } else {
                    plain(&live, &stopped, &mut std::io::stderr());
                }
                thread_cpu()
            })
            .ok();
        View { stop, thread }
    }

    /// Stops the view; returns the CPU time its thread used.
    pub fn finish(mut self) -> Duration {
        self.halt()
    }

    fn halt(&mut self) -> Duration {
        let _ = self.stop.send(());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Waits one tick; false once stopped.
fn tick(stopped: &mpsc::Receiver<()>) -> bool {
    matches!(
        stopped.recv_timeout(TICK),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

fn redraw(live: &Live, stopped: &mpsc::Receiver<()>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    loop {
        if let Some(s) = live.snapshot() {
            bar.set_message(line(&s));
            bar.tick();
        }
        if !tick(stopped) {
            break;
        }
    }
    bar.finish_and_clear();
}

fn plain(live: &Live, stopped: &mpsc::Receiver<()>, out: &mut dyn std::io::Write) {
    let mut last: Option<(std::time::Instant, String)> = None;
    loop {
        if let Some(s) = live.snapshot() {
            let key = state_key(&s);
            let due = match &last {
                None => true,
                Some((at, k)) => *k != key || at.elapsed() + TICK / 2 >= PLAIN_EVERY,
            };
            if due {
                let _ = writeln!(out, "protoprof live: {}", line(&s));
                last = Some((std::time::Instant::now(), key));
            }
        }
        if !tick(stopped) {
            break;
        }
    }
}

/// What a new plain line is written for even before its interval.
fn state_key(s: &Snapshot) -> String {
    match &s.phase {
        Some(p) => format!("{} {} {}", p.pass, p.index, p.state),
        None => s.stage.to_string(),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// One line of figures, e.g.
/// `t=4s main phase 1/2 bulk measuring 2.0/8.0s left≈15s thr=812.4Mbit/s p99=- client[123] rss=9.1MiB fds=14`.
pub fn line(s: &Snapshot) -> String {
    let mut o = format!("t={:.0}s ", s.elapsed_s);
    match &s.phase {
        Some(p) => {
            let _ = write!(
                o,
                "{} phase {}/{} {} {} {:.1}/{:.1}s",
                p.pass,
                p.index + 1,
                p.count,
                p.pattern,
                p.state,
                p.window_s,
                p.duration_s
            );
        }
        None => o.push_str(s.stage),
    }
    if let Some(r) = s.remaining_s {
        let _ = write!(o, " left≈{r:.0}s");
    }
    match s.throughput_bps {
        Some(b) => {
            let _ = write!(o, " thr={:.1}Mbit/s", b * 8.0 / 1e6);
        }
        None => o.push_str(" thr=-"),
    }
    match s.p99_us {
        Some(p) => {
            let _ = write!(o, " p99={p:.0}µs");
        }
        None => o.push_str(" p99=-"),
    }
    for t in &s.targets {
        let _ = write!(
            o,
            " {}[{}] rss={:.1}MiB fds={}",
            t.role,
            t.pid,
            mib(t.rss_bytes),
            t.fds
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::super::{PhaseNow, TargetNow};
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            profile: "tcp".into(),
            elapsed_s: 4.2,
            stage: "main",
            phase: Some(PhaseNow {
                pass: "main",
                index: 1,
                count: 2,
                pattern: "rr",
                state: "measuring",
                window_s: 2.04,
                duration_s: 4.0,
            }),
            remaining_s: Some(1.96),
            bytes_up: 1,
            bytes_down: 2,
            round_trips: 3,
            throughput_bps: Some(101_562_500.0),
            p99_us: Some(87.4),
            latency_count: 3,
            targets: vec![TargetNow {
                role: "client".into(),
                pid: 123,
                rss_bytes: 9 << 20,
                fds: 14,
            }],
        }
    }

    #[test]
    fn a_line_names_phase_time_throughput_latency_and_targets() {
        assert_eq!(
            line(&snapshot()),
            "t=4s main phase 2/2 rr measuring 2.0/4.0s left≈2s thr=812.5Mbit/s p99=87µs client[123] rss=9.0MiB fds=14"
        );
        let mut s = snapshot();
        s.phase = None;
        s.stage = "set-up";
        s.remaining_s = None;
        s.throughput_bps = None;
        s.p99_us = None;
        s.targets.clear();
        assert_eq!(line(&s), "t=4s set-up thr=- p99=-");
    }

    #[test]
    fn plain_lines_come_at_once_then_on_each_change() {
        let live = Live::new("tcp", Vec::new());
        let (stop, stopped) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let mut out = Vec::new();
            plain(&live, &stopped, &mut out);
            String::from_utf8(out).expect("utf-8")
        });
        // Stopped during the first tick: exactly the first line.
        std::thread::sleep(Duration::from_millis(300));
        stop.send(()).expect("send");
        let text = writer.join().expect("join");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(
            lines[0].starts_with("protoprof live: t=0s starting thr=- p99=-"),
            "{text}"
        );
    }
}
