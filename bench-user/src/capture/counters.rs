//! perf counters per target process, through perf-event2.
//!
//! A counter follows one thread, and `inherit` extends it to the threads that
//! thread creates later. The targets are already running when they are
//! added (their runtime threads exist), so one counter is opened per existing
//! thread and the readings are summed.

use perf_event::{
    events::{Event, Hardware, Software},
    Builder, Counter,
};
use serde::{Deserialize, Serialize};

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

pub(super) struct TargetCounters {
    /// The threads the counters were opened on, in the order of each
    /// event's counter list.
    threads: Vec<u32>,
    counters: Vec<(&'static str, Result<Vec<Counter>, String>)>,
}

fn event_for(name: &str) -> Box<dyn Fn() -> Builder<'static>> {
    fn b<E: Event + Clone + 'static>(e: E) -> Box<dyn Fn() -> Builder<'static>> {
        Box::new(move || Builder::new(e.clone()))
    }
    match name {
        "task_clock_ns" => b(Software::TASK_CLOCK),
        "context_switches" => b(Software::CONTEXT_SWITCHES),
        "cpu_migrations" => b(Software::CPU_MIGRATIONS),
        "page_faults" => b(Software::PAGE_FAULTS),
        "cycles" => b(Hardware::CPU_CYCLES),
        "instructions" => b(Hardware::INSTRUCTIONS),
        _ => b(Hardware::CACHE_MISSES),
    }
}

impl TargetCounters {
    pub(super) fn open(pid: u32) -> TargetCounters {
        let threads = threads_of(pid);
        let counters = COUNTER_NAMES
            .iter()
            .map(|&name| {
                let make = event_for(name);
                let mut opened = Vec::new();
                for &tid in &threads {
                    let mut builder = make();
                    builder
                        .observe_pid(tid as i32)
                        .any_cpu()
                        .inherit(true)
                        .include_kernel()
                        .enabled(false);
                    match builder.build() {
                        Ok(c) => opened.push(c),
                        Err(e) => {
                            let why = match e.raw_os_error() {
                                Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
                                    format!("the kernel has no such event here ({e}); this machine exposes no hardware PMU")
                                }
                                _ => format!("perf_event_open failed: {e}"),
                            };
                            return (name, Err(why));
                        }
                    }
                }
                if opened.is_empty() {
                    return (name, Err(format!("process {pid} has no threads left")));
                }
                (name, Ok(opened))
            })
            .collect();
        TargetCounters { threads, counters }
    }

    pub(super) fn enable(&mut self) {
        for (_, c) in &mut self.counters {
            if let Ok(cs) = c {
                for c in cs {
                    let _ = c.enable();
                }
            }
        }
    }

    pub(super) fn disable(&mut self) {
        for (_, c) in &mut self.counters {
            if let Ok(cs) = c {
                for c in cs {
                    let _ = c.disable();
                }
            }
        }
    }

    /// Per thread the counters were opened on: (tid, counter, value). A
    /// thread's counter also holds the threads it created later.
    pub(super) fn read_by_thread(&mut self) -> Vec<(u32, &'static str, u64)> {
        let mut out = Vec::new();
        for (name, c) in &mut self.counters {
            if let Ok(cs) = c {
                for (tid, c) in self.threads.iter().zip(cs.iter_mut()) {
                    if let Ok(v) = c.read() {
                        out.push((*tid, *name, v));
                    }
                }
            }
        }
        out
    }

    pub(super) fn read(&mut self) -> Vec<CounterReading> {
        self.counters
            .iter_mut()
            .map(|(name, c)| match c {
                Ok(cs) => {
                    let mut sum = 0u64;
                    for c in cs.iter_mut() {
                        match c.read() {
                            Ok(v) => sum += v,
                            Err(e) => {
                                return (
                                    *name,
                                    Reading::Unavailable(format!(
                                        "reading the counter failed: {e}"
                                    )),
                                )
                            }
                        }
                    }
                    (*name, Reading::Value(sum))
                }
                Err(reason) => (*name, Reading::Unavailable(reason.clone())),
            })
            .collect()
    }
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
