//! The machine's load around a measured window, from /proc: steal time and
//! the CPU of processes other than the targets and the runner, so that a
//! window a neighbour disturbed can be recognised.
//!
//! /proc/stat gives the machine's CPU time by kind (all CPUs summed);
//! /proc/PID/stat a process's user and system time (all its threads,
//! exited ones included). Both count in clock ticks. Other processes' CPU
//! is the machine's busy time (user + nice + system + irq + softirq) minus
//! the targets' and the runner's. Interrupt and softirq time is also given
//! on its own, as a part of the busy time, not beside it: softirq work done
//! in a process's context may be charged to that process as well (measured
//! on this kernel: targets + runner + irq came to 2.4 cores on 2), so
//! leaving it out of the busy time under-counted the other processes.

use std::time::Instant;

/// The machine-wide CPU times of /proc/stat's `cpu` line, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

/// The aggregate `cpu` line of /proc/stat's text. `guest` time is already
/// inside `user`, so it is not read.
pub fn parse_proc_stat(text: &str) -> Option<MachineTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // Kernels before 2.6.11 had no steal column; none of ours.
    if v.len() < 8 {
        return None;
    }
    Some(MachineTimes {
        user: v[0],
        nice: v[1],
        system: v[2],
        idle: v[3],
        iowait: v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
    })
}

/// utime + stime (ticks) from a /proc/PID/stat line. The command name in
/// parentheses may hold spaces and parentheses, so fields are counted from
/// the last `)`: utime and stime are fields 14 and 15 of the line.
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": field 3 (state) is the first; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The readings at one edge of a window.
#[derive(Debug, Clone)]
pub struct LoadSnapshot {
    at: Instant,
    /// The same moment in Unix time, to place the window for a reader.
    unix_s: f64,
    machine: MachineTimes,
    /// The targets' CPU ticks, in the order asked; `None` for a process
    /// that is gone (its CPU then shows as other processes').
    targets: Vec<Option<u64>>,
    runner: u64,
}

/// What a window's load was, in CPU seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLoad {
    /// When the window opened, seconds since the Unix epoch.
    pub opened_unix_s: f64,
    /// Wall-clock seconds between the two readings.
    pub seconds: f64,
    /// Time the hypervisor ran something else while a CPU of ours wanted
    /// to run.
    pub steal_s: f64,
    /// Hard and soft interrupt time, charged to no process.
    pub irq_s: f64,
    /// The targets' user + system time.
    pub targets_s: f64,
    /// The runner's (load generator, sink, probe reading).
    pub runner_s: f64,
    /// Every other process's: the machine's user + nice + system time less
    /// the targets' and the runner's (never below 0; ticks round).
    pub other_s: f64,
}

impl LoadSnapshot {
    /// Reads /proc now for the targets `pids` and this process.
    pub fn read(pids: &[u32]) -> std::io::Result<LoadSnapshot> {
        let at = Instant::now();
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let stat = std::fs::read_to_string("/proc/stat")?;
        let machine = parse_proc_stat(&stat).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "/proc/stat has no aggregate cpu line with a steal column",
            )
        })?;
        let targets = pids
            .iter()
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|t| parse_pid_stat(&t))
            })
            .collect();
        let own = std::fs::read_to_string("/proc/self/stat")?;
        let runner = parse_pid_stat(&own).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "/proc/self/stat has no utime/stime",
            )
        })?;
        Ok(LoadSnapshot {
            at,
            unix_s,
            machine,
            targets,
            runner,
        })
    }

    /// The load between `self` (the window's opening) and `end`, with
    /// `ticks_per_s` clock ticks a second.
    pub fn until(&self, end: &LoadSnapshot, ticks_per_s: f64) -> WindowLoad {
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / ticks_per_s;
        let (a, b) = (&self.machine, &end.machine);
        let busy = d(
            a.user + a.nice + a.system + a.irq + a.softirq,
            b.user + b.nice + b.system + b.irq + b.softirq,
        );
        let targets: f64 = self
            .targets
            .iter()
            .zip(&end.targets)
            .filter_map(|(x, y)| Some(d((*x)?, (*y)?)))
            .sum();
        let runner = d(self.runner, end.runner);
        WindowLoad {
            opened_unix_s: self.unix_s,
            seconds: end.at.saturating_duration_since(self.at).as_secs_f64(),
            steal_s: d(a.steal, b.steal),
            irq_s: d(a.irq + a.softirq, b.irq + b.softirq),
            targets_s: targets,
            runner_s: runner,
            other_s: (busy - targets - runner).max(0.0),
        }
    }
}

/// Clock ticks per second of /proc's times (USER_HZ).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux ABI we build for; sysconf failing
    // (-1) would otherwise divide by a negative.
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_A: &str = "cpu  1000 20 300 50000 40 5 60 7 0 0\n\
cpu0 500 10 150 25000 20 2 30 3 0 0\n\
cpu1 500 10 150 25000 20 3 30 4 0 0\n\
intr 123 0 0\nctxt 456\nbtime 1700000000\n";
    const STAT_B: &str = "cpu  1400 30 420 50150 41 6 90 19 0 0\n\
cpu0 700 15 210 25075 20 3 45 9 0 0\n";

    #[test]
    fn reads_the_aggregate_cpu_line() {
        assert_eq!(
            parse_proc_stat(STAT_A),
            Some(MachineTimes {
                user: 1000,
                nice: 20,
                system: 300,
                idle: 50000,
                iowait: 40,
                irq: 5,
                softirq: 60,
                steal: 7,
            })
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn reads_utime_and_stime_past_a_name_with_spaces_and_parens() {
        // Fields 14 and 15 are utime 1234 and stime 567.
        let line = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 5 0 100 200000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_pid_stat(line), Some(1801));
        assert_eq!(parse_pid_stat("4242 (short) S 1 2"), None);
        assert_eq!(parse_pid_stat("no parenthesis"), None);
    }

    #[test]
    fn other_processes_are_the_busy_time_less_targets_and_runner() {
        let t0 = Instant::now();
        let a = LoadSnapshot {
            at: t0,
            unix_s: 1.7e9,
            machine: parse_proc_stat(STAT_A).expect("a"),
            targets: vec![Some(100), Some(50), Some(10)],
            runner: 40,
        };
        let b = LoadSnapshot {
            at: t0 + std::time::Duration::from_millis(1500),
            unix_s: 1.7e9 + 1.5,
            machine: parse_proc_stat(STAT_B).expect("b"),
            // The third target exited: its CPU is not subtracted.
            targets: vec![Some(220), Some(110), None],
            runner: 90,
        };
        let w = a.until(&b, 100.0);
        assert!((w.seconds - 1.5).abs() < 1e-9);
        assert_eq!(w.opened_unix_s, 1.7e9);
        // busy: (1400+30+420) − (1000+20+300) = 530 ticks, and 31 of irq
        // and softirq; targets 120 + 60; runner 50: other 331 ticks.
        assert!((w.targets_s - 1.8).abs() < 1e-9, "{w:?}");
        assert!((w.runner_s - 0.5).abs() < 1e-9, "{w:?}");
        assert!((w.other_s - 3.31).abs() < 1e-9, "{w:?}");
        assert!((w.steal_s - 0.12).abs() < 1e-9, "{w:?}");
        assert!((w.irq_s - 0.31).abs() < 1e-9, "{w:?}");
        // Rounding can make the processes' ticks exceed the machine's.
        let c = LoadSnapshot {
            runner: 600,
            ..b.clone()
        };
        assert_eq!(a.until(&c, 100.0).other_s, 0.0);
    }

    #[test]
    fn reads_this_machine() {
        let me = std::process::id();
        let a = LoadSnapshot::read(&[me, u32::MAX]).expect("read /proc");
        assert!(a.targets[0].is_some() && a.targets[1].is_none());
        // Burn 100 ms of this thread's CPU (however long the machine's other
        // load makes that take): the runner's (our) time must show it,
        // within a tick.
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: ts is a valid timespec for the call to fill.
            let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            assert_eq!(rc, 0);
            ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
        };
        let from = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - from < 0.1 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = LoadSnapshot::read(&[me, u32::MAX]).expect("read /proc");
        let w = a.until(&b, ticks_per_second());
        // Other test threads of this process may run too: at most every
        // CPU for the whole time.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(w.runner_s >= 0.09, "{w:?}");
        assert!(w.runner_s <= w.seconds * cpus + 0.02, "{w:?}");
        // The same process as a target, read a moment apart: a tick at most.
        assert!((w.targets_s - w.runner_s).abs() <= 0.011, "{w:?}");
    }
}
