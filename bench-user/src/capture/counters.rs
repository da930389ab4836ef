//! Counters per target: CPU time, context switches, CPU migrations and page
//! faults of every thread of the target's process tree over the measured
//! windows, and hardware counters where the machine has a PMU.
//!
//! The software counters are read from /proc at each window's edges, not
//! through perf events: a perf event on a thread is switched out and in
//! with it at every context switch, which cost a closed-loop rr phase
//! about a fifth of its rate (docs/probes.md, "probes-main"); /proc costs
//! nothing while the window is open. A thread that ends inside a window is
//! gone from /proc at its close; its totals come from the process tree
//! probe's exit event instead. Hardware counters have no /proc source, so
//! they stay perf events (one per thread, `inherit` covering the threads
//! created later), with that cost, where a PMU exists.

use std::collections::{BTreeMap, HashMap};

use bench_common::ThreadTotals;
use perf_event::{events::Hardware, Builder, Counter};
use serde::{Deserialize, Serialize};

use super::process_tree::{ProcessTree, ThreadExit};

/// Every counter we try, in report order.
pub const COUNTER_NAMES: &[&str] = &[
    "task_clock_ns",
    "context_switches",
    "cpu_migrations",
    "page_faults",
    "cycles",
    "instructions",
    "cache_misses",
];

/// The counters read from /proc, in [`COUNTER_NAMES`] order.
const SOFTWARE: [&str; 4] = [
    "task_clock_ns",
    "context_switches",
    "cpu_migrations",
    "page_faults",
];

/// One counter's value over the measured windows, or why there is none
/// (serialized as `{"value": N}` or `{"unavailable": "reason"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    Value(u64),
    Unavailable(String),
}

/// A named counter reading.
pub type CounterReading = (&'static str, Reading);

/// A software counter's value in a thread's totals.
fn software_value(t: &ThreadTotals, name: &str) -> u64 {
    match name {
        "task_clock_ns" => t.runtime_ns,
        "context_switches" => t.context_switches,
        "cpu_migrations" => t.migrations,
        _ => t.page_faults,
    }
}

fn add(sum: &mut ThreadTotals, t: &ThreadTotals) {
    sum.runtime_ns += t.runtime_ns;
    sum.context_switches += t.context_switches;
    sum.page_faults += t.page_faults;
    sum.migrations += t.migrations;
}

/// `end - start`, field by field; 0 where a reused thread id went back.
fn since(end: &ThreadTotals, start: &ThreadTotals) -> ThreadTotals {
    ThreadTotals {
        runtime_ns: end.runtime_ns.saturating_sub(start.runtime_ns),
        context_switches: end.context_switches.saturating_sub(start.context_switches),
        page_faults: end.page_faults.saturating_sub(start.page_faults),
        migrations: end.migrations.saturating_sub(start.migrations),
    }
}

/// Every live thread of a target's tree at one instant: tid → totals.
pub(super) type Edge = HashMap<u32, ThreadTotals>;

/// Why a software counter has no value, if it has none.
#[derive(Debug, Clone, Default)]
struct Missing {
    /// The kernel shows no `se.nr_migrations` (`/proc/PID/sched` needs
    /// CONFIG_SCHED_DEBUG).
    migrations: Option<String>,
    /// The kernel's BTF lacks a field an exit event reads.
    exits: Option<String>,
}

pub(super) struct TargetCounters {
    pid: u32,
    /// Summed over the closed windows, per thread.
    by_thread: BTreeMap<u32, ThreadTotals>,
    /// The open window's first edge.
    open: Option<Edge>,
    missing: Missing,
    /// The threads the hardware counters were opened on, in the order of
    /// each counter's list.
    hardware_threads: Vec<u32>,
    hardware: Vec<(&'static str, Result<Vec<Counter>, String>)>,
}

fn hardware_event(name: &str) -> Hardware {
    match name {
        "cycles" => Hardware::CPU_CYCLES,
        "instructions" => Hardware::INSTRUCTIONS,
        _ => Hardware::CACHE_MISSES,
    }
}

impl TargetCounters {
    /// Counters for target `pid`; `exits_unavailable` says why exit events
    /// carry no totals on this kernel, if they do not.
    pub(super) fn open(pid: u32, exits_unavailable: Option<String>) -> TargetCounters {
        let threads = threads_of(pid);
        let hardware = COUNTER_NAMES
            .iter()
            .filter(|n| !SOFTWARE.contains(n))
            .map(|&name| (name, open_hardware(name, pid, &threads)))
            .collect();
        let migrations =
            (!std::path::Path::new(&format!("/proc/{pid}/sched")).exists()).then(|| {
                "the kernel shows no se.nr_migrations (/proc/PID/sched needs CONFIG_SCHED_DEBUG)"
                    .to_string()
            });
        TargetCounters {
            pid,
            by_thread: BTreeMap::new(),
            open: None,
            missing: Missing {
                migrations,
                exits: exits_unavailable,
            },
            hardware_threads: threads,
            hardware,
        }
    }

    /// A window opens: remember every live thread's totals.
    pub(super) fn start(&mut self, tree: &ProcessTree) {
        self.open = Some(self.edge(tree));
        for (_, c) in &mut self.hardware {
            if let Ok(cs) = c {
                for c in cs {
                    let _ = c.enable();
                }
            }
        }
    }

    /// The window closed: add what each thread did in it, from `end` (an
    /// [`edge`](Self::edge) taken as it closed) for those still alive and
    /// from their exit events for those that ended between the edges.
    /// `start_ns` is taken just after the opening edge, `end_ns` just after
    /// the closing one and before the exits were taken: a thread that ends
    /// while an edge is read is counted once, from one side.
    pub(super) fn stop(
        &mut self,
        end: Edge,
        tree: &ProcessTree,
        exits: &[ThreadExit],
        start_ns: u64,
        end_ns: u64,
    ) {
        for (_, c) in &mut self.hardware {
            if let Ok(cs) = c {
                for c in cs {
                    let _ = c.disable();
                }
            }
        }
        let Some(start) = self.open.take() else {
            return;
        };
        let zero = ThreadTotals::default();
        let mut add_thread = |tid: u32, t: &ThreadTotals| {
            let before = start.get(&tid).unwrap_or(&zero);
            add(self.by_thread.entry(tid).or_default(), &since(t, before));
        };
        for (&tid, t) in &end {
            add_thread(tid, t);
        }
        let in_tree = |tgid: u32| tree.root_of(tgid).unwrap_or(tgid) == self.pid;
        for e in exits {
            let inside = (start_ns..=end_ns).contains(&e.time_ns);
            if inside && in_tree(e.tgid) && !end.contains_key(&e.tid) {
                add_thread(e.tid, &e.totals);
            }
        }
    }

    /// Every live thread of the target's tree now.
    pub(super) fn edge(&self, tree: &ProcessTree) -> Edge {
        let mut pids = vec![self.pid];
        pids.extend(
            tree.processes()
                .filter(|p| p.root == self.pid && p.pid != self.pid && !p.exited)
                .map(|p| p.pid),
        );
        let mut edge = Edge::new();
        for pid in pids {
            for tid in threads_of(pid) {
                if let Some(t) = read_thread(pid, tid) {
                    edge.insert(tid, t);
                }
            }
        }
        edge
    }

    /// Per thread: (tid, counter, value) over the closed windows.
    pub(super) fn read_by_thread(&mut self) -> Vec<(u32, &'static str, u64)> {
        let mut out = Vec::new();
        for (&tid, t) in &self.by_thread {
            for name in SOFTWARE {
                if self.software_reason(name).is_none() {
                    out.push((tid, name, software_value(t, name)));
                }
            }
        }
        for (name, c) in &mut self.hardware {
            if let Ok(cs) = c {
                for (tid, c) in self.hardware_threads.iter().zip(cs.iter_mut()) {
                    if let Ok(v) = c.read() {
                        out.push((*tid, *name, v));
                    }
                }
            }
        }
        out
    }

    fn software_reason(&self, name: &str) -> Option<&String> {
        match name {
            "cpu_migrations" => self.missing.migrations.as_ref(),
            _ => None,
        }
        .or(self.missing.exits.as_ref())
    }

    /// Every counter over the closed windows.
    pub(super) fn read(&mut self) -> Vec<CounterReading> {
        let mut sum = ThreadTotals::default();
        for t in self.by_thread.values() {
            add(&mut sum, t);
        }
        let mut out: Vec<CounterReading> = SOFTWARE
            .iter()
            .map(|&name| match self.software_reason(name) {
                Some(why) => (name, Reading::Unavailable(why.clone())),
                None => (name, Reading::Value(software_value(&sum, name))),
            })
            .collect();
        out.extend(self.hardware.iter_mut().map(|(name, c)| match c {
            Ok(cs) => {
                let mut sum = 0u64;
                for c in cs.iter_mut() {
                    match c.read() {
                        Ok(v) => sum += v,
                        Err(e) => {
                            let why = format!("reading the counter failed: {e}");
                            return (*name, Reading::Unavailable(why));
                        }
                    }
                }
                (*name, Reading::Value(sum))
            }
            Err(reason) => (*name, Reading::Unavailable(reason.clone())),
        }));
        out
    }
}

fn open_hardware(name: &str, pid: u32, threads: &[u32]) -> Result<Vec<Counter>, String> {
    let mut opened = Vec::new();
    for &tid in threads {
        let mut builder = Builder::new(hardware_event(name));
        builder
            .observe_pid(tid as i32)
            .any_cpu()
            .inherit(true)
            .include_kernel()
            .enabled(false);
        match builder.build() {
            Ok(c) => opened.push(c),
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => format!(
                        "the kernel has no such event here ({e}); this machine exposes no \
                         hardware PMU"
                    ),
                    _ => format!("perf_event_open failed: {e}"),
                })
            }
        }
    }
    if opened.is_empty() {
        return Err(format!("process {pid} has no threads left"));
    }
    Ok(opened)
}

fn threads_of(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// One thread's totals from /proc; `None` if it has gone (its exit event
/// then counts it).
fn read_thread(pid: u32, tid: u32) -> Option<ThreadTotals> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let schedstat = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Absent without CONFIG_SCHED_DEBUG: the counter says so instead.
    let sched = std::fs::read_to_string(format!("{dir}/sched")).unwrap_or_default();
    parse_thread(&schedstat, &status, &stat, &sched)
}

/// Totals from the texts of a thread's `schedstat`, `status`, `stat` and
/// `sched` files.
fn parse_thread(schedstat: &str, status: &str, stat: &str, sched: &str) -> Option<ThreadTotals> {
    let runtime_ns = schedstat.split_whitespace().next()?.parse().ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let context_switches =
        field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?;
    // The name in parentheses may hold spaces and parentheses: the fields
    // counted from after its last ')' are state (3), ..., minflt (10),
    // cminflt (11), majflt (12).
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let page_faults = fields.get(7)?.parse::<u64>().ok()? + fields.get(9)?.parse::<u64>().ok()?;
    let migrations = sched
        .lines()
        .find_map(|l| l.strip_prefix("se.nr_migrations"))
        .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
        .unwrap_or(0);
    Some(ThreadTotals {
        runtime_ns,
        context_switches,
        page_faults,
        migrations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_files_parse_to_its_totals() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 117 0 3 0 5 6 0 0 20 0 2";
        let status = "Name:\ta\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t5\n";
        let sched = "a (4242, #threads: 2)\n---\nse.sum_exec_runtime : 1.5\n\
                     se.nr_migrations                             :                    7\n";
        let t = parse_thread("123456 789 12\n", status, stat, sched).expect("parses");
        assert_eq!(
            t,
            ThreadTotals {
                runtime_ns: 123_456,
                context_switches: 15,
                page_faults: 120,
                migrations: 7,
            }
        );
        assert_eq!(parse_thread("x", status, stat, sched), None);
        assert_eq!(parse_thread("1 2 3", "", stat, sched), None);
    }

    #[test]
    fn this_threads_totals_grow_with_its_work() {
        let (pid, tid) = (std::process::id(), unsafe { libc::gettid() } as u32);
        let thread_cpu_ns = || {
            let mut t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime with a valid struct.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
            t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
        };
        let before = read_thread(pid, tid).expect("own thread");
        let cpu_before = thread_cpu_ns();
        // 50 ms of this thread's CPU, however long that takes on a busy
        // machine.
        let mut x = 0u64;
        while thread_cpu_ns() - cpu_before < 50_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        // 1000 sleeps: at least that many voluntary switches.
        for _ in 0..1000 {
            std::thread::sleep(std::time::Duration::from_micros(1));
        }
        // Touching 64 fresh pages faults each in. A mapping of its own:
        // the allocator may hand out pages another test touched already.
        let len = 64 * 4096;
        // SAFETY: a private anonymous mapping, written within its length
        // and unmapped here.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            for i in 0..64 {
                std::ptr::write_volatile((p as *mut u8).add(i * 4096), 1);
            }
            libc::munmap(p, len);
        }
        let after = read_thread(pid, tid).expect("own thread");
        let cpu = thread_cpu_ns() - cpu_before;
        let d = since(&after, &before);
        // The thread's own CPU clock, less at most a scheduler tick of lag
        // at each edge (10 ms covers HZ ≥ 200).
        assert!(
            d.runtime_ns <= cpu + 10_000_000 && d.runtime_ns + 20_000_000 >= cpu,
            "{d:?} against {cpu} ns"
        );
        assert!(d.context_switches >= 1000, "{d:?}");
        assert!(d.page_faults >= 64, "{d:?}");
    }

    #[test]
    fn a_thread_that_ends_inside_the_window_counts_from_its_exit_event() {
        let me = std::process::id();
        let mut tree = ProcessTree::default();
        tree.add_root(me);
        let mut c = TargetCounters::open(me, None);
        c.start(&tree);
        let start = c.open.clone().expect("open window");
        let gone = 4_000_000_000;
        let exit = |tgid, time_ns| ThreadExit {
            tgid,
            tid: gone,
            time_ns,
            totals: ThreadTotals {
                runtime_ns: 5_000_000,
                context_switches: 30,
                page_faults: 2,
                migrations: 1,
            },
        };
        // One exit in the window; one after it; one of another process.
        let exits = [exit(me, 100), exit(me, 300), exit(1, 100)];
        let end = c.edge(&tree);
        c.stop(end, &tree, &exits, 50, 200);
        let by_thread = c.read_by_thread();
        let of_gone: Vec<_> = by_thread.iter().filter(|r| r.0 == gone).collect();
        assert_eq!(
            of_gone,
            [
                &(gone, "task_clock_ns", 5_000_000),
                &(gone, "context_switches", 30),
                &(gone, "cpu_migrations", 1),
                &(gone, "page_faults", 2)
            ]
        );
        // This test's own threads were at the start edge and are counted
        // from it.
        assert!(by_thread.iter().any(|r| start.contains_key(&r.0)));
        let readings = c.read();
        let Reading::Value(switches) = &readings[1].1 else {
            panic!("{readings:?}");
        };
        assert!(*switches >= 30, "{readings:?}");
    }
}
