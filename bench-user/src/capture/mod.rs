//! capture: attach the probes (aya) and counters (perf-event), switch them on
//! for the measured window, read them out.
//!
//! The eBPF object is embedded at build time (see `build.rs`). Programs are
//! attached once at load; they record nothing until the runner both lists a
//! process in `TARGETS` and opens the window through `CONFIG`. Dropping
//! [`Probes`] detaches every program and closes every map and counter.

mod counters;
mod cpu;
mod syscalls;

use std::{collections::BTreeMap, os::fd::OwnedFd};

use aya::{
    maps::{Array, HashMap, MapData},
    Ebpf,
};
use bench_common::{StackKey, SyscallHistKey, SyscallKey, SyscallStats, CONFIG_ENABLED};
use serde::{Deserialize, Serialize};

pub use counters::{CounterReading, Reading, COUNTER_NAMES};

/// The probe object, built by `build.rs` from `bench-ebpf`.
static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-ebpf.o"));

/// Names of every BPF program in the object; they share the `pp_` prefix so
/// that tests can check none is left loaded.
pub const PROGRAM_NAMES: &[&str] = &["pp_sys_enter", "pp_sys_exit", "pp_cpu_sample"];

/// Which probes to attach.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureOptions {
    pub syscalls: bool,
    /// Samples per second per CPU; `None` = cpu probe off.
    pub cpu_frequency_hz: Option<u64>,
    pub counters: bool,
}

/// Errors of loading, attaching or reading the probes.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("loading the eBPF object: {0} (protoprof needs root, or CAP_BPF and CAP_PERFMON)")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("listing online CPUs: {0}")]
    Cpus(String),
}

/// Loaded and attached probes plus the per-target counters.
pub struct Probes {
    ebpf: Ebpf,
    options: CaptureOptions,
    config: Array<MapData, u64>,
    targets: HashMap<MapData, u32, u32>,
    counters: BTreeMap<u32, counters::TargetCounters>,
    /// Keeps the kernel's BPF run-time statistics on while we hold it.
    _stats: Option<OwnedFd>,
    windows: u32,
}

/// One syscall of one process, summed over CPUs.
#[derive(Debug, Clone)]
pub struct SyscallRecord {
    pub tgid: u32,
    pub nr: u32,
    pub name: String,
    pub stats: SyscallStats,
    /// Calls per log2 latency bucket (see `bench_common::latency_bucket`).
    pub histogram: Vec<u64>,
}

/// On-CPU samples of one (thread, user stack, kernel stack).
#[derive(Debug, Clone)]
pub struct CpuRecord {
    pub tgid: u32,
    pub tid: u32,
    pub thread_name: String,
    /// Innermost frame first; empty when the stack was not captured.
    pub user: Vec<u64>,
    pub kernel: Vec<u64>,
    pub user_error: Option<i32>,
    pub count: u64,
}

/// Run time and run count the kernel kept for one BPF program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramCost {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Everything the probes saw in the measured windows.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub syscalls: Vec<SyscallRecord>,
    pub cpu: Vec<CpuRecord>,
    /// Per target pid.
    pub counters: BTreeMap<u32, Vec<CounterReading>>,
    pub program_costs: Vec<ProgramCost>,
}

impl Probes {
    /// Load the object, attach the selected programs (recording nothing yet).
    pub fn load(options: &CaptureOptions) -> Result<Probes, CaptureError> {
        // Raising RLIMIT_MEMLOCK matters only on kernels before 5.11; on
        // newer ones BPF memory is charged to the cgroup and this is a no-op.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain setrlimit(2) with a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };

        let mut ebpf = Ebpf::load(PROBES_OBJECT)?;
        let config = take_map(&mut ebpf, "CONFIG")?;
        let config: Array<MapData, u64> =
            Array::try_from(config).map_err(|source| CaptureError::Map {
                name: "CONFIG",
                source,
            })?;
        let targets = take_map(&mut ebpf, "TARGETS")?;
        let targets = HashMap::try_from(targets).map_err(|source| CaptureError::Map {
            name: "TARGETS",
            source,
        })?;
        // Program statistics cost two clock reads per program run; they are
        // what lets the report say what measuring cost.
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
        if options.syscalls {
            syscalls::attach(&mut ebpf)?;
        }
        if let Some(hz) = options.cpu_frequency_hz {
            cpu::attach(&mut ebpf, hz)?;
        }
        Ok(Probes {
            ebpf,
            options: options.clone(),
            config,
            targets,
            counters: BTreeMap::new(),
            _stats: stats,
            windows: 0,
        })
    }

    /// Record process `pid` (all its threads) from now on.
    pub fn add_target(&mut self, pid: u32, role: u32) -> Result<(), CaptureError> {
        self.targets
            .insert(pid, role, 0)
            .map_err(|source| CaptureError::Map {
                name: "TARGETS",
                source,
            })?;
        if self.options.counters {
            self.counters
                .insert(pid, counters::TargetCounters::open(pid));
        }
        Ok(())
    }

    /// Open the measured window.
    pub fn start(&mut self) -> Result<(), CaptureError> {
        for c in self.counters.values_mut() {
            c.enable();
        }
        self.config
            .set(CONFIG_ENABLED, 1, 0)
            .map_err(|source| CaptureError::Map {
                name: "CONFIG",
                source,
            })?;
        self.windows += 1;
        Ok(())
    }

    /// Close the measured window.
    pub fn stop(&mut self) -> Result<(), CaptureError> {
        self.config
            .set(CONFIG_ENABLED, 0, 0)
            .map_err(|source| CaptureError::Map {
                name: "CONFIG",
                source,
            })?;
        for c in self.counters.values_mut() {
            c.disable();
        }
        Ok(())
    }

    /// How many windows were opened.
    pub fn windows(&self) -> u32 {
        self.windows
    }

    /// Read everything recorded so far. Call while the targets still run:
    /// thread names come from /proc.
    pub fn read(&mut self) -> Result<Capture, CaptureError> {
        let mut capture = Capture::default();
        if self.options.syscalls {
            capture.syscalls = syscalls::read(&mut self.ebpf)?;
        }
        if self.options.cpu_frequency_hz.is_some() {
            capture.cpu = cpu::read(&mut self.ebpf)?;
        }
        for (pid, c) in &mut self.counters {
            capture.counters.insert(*pid, c.read());
        }
        capture.program_costs = self.program_costs();
        Ok(capture)
    }

    fn program_costs(&self) -> Vec<ProgramCost> {
        let mut out = Vec::new();
        for (name, program) in self.ebpf.programs() {
            if let Ok(info) = program.info() {
                out.push(ProgramCost {
                    program: name.to_string(),
                    run_count: info.run_count(),
                    run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                });
            }
        }
        out.sort_by(|a, b| a.program.cmp(&b.program));
        out
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::Missing(name))
}

/// Loaded BPF programs whose names are ours (for leak checks).
pub fn loaded_program_names() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| {
            PROGRAM_NAMES
                .iter()
                .any(|ours| ours.starts_with(n.as_str()) && n.starts_with("pp_"))
        })
        .collect()
}

// Keys are read back through these types; keep them linked to the object.
#[allow(dead_code)]
type Keys = (SyscallKey, SyscallHistKey, StackKey);
