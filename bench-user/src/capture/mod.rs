//! capture: attach the probes (aya) and counters (perf-event), switch them on
//! for the measured window, read them out.
//!
//! The eBPF object is embedded at build time (see `build.rs`). Programs are
//! attached when loaded (tracepoints, perf events) or when a target is added
//! (uprobes on its allocator and crypto); they record nothing until the
//! runner both lists a process in `TARGETS` and opens the window through
//! `CONFIG`. Dropping [`Probes`] detaches every program and closes every map
//! and counter.

pub mod alloc;
mod counters;
mod cpu;
pub mod crypto;
pub mod machine_load;
mod offcpu;
mod per_call;
pub mod privileges;
pub mod probe_frames;
pub mod process_tree;
mod program_links;
pub mod resources;
mod ring_reader;
pub mod sockets;
mod stack_copies;
mod stacks;
mod syscalls;
mod uprobe_multi;
mod uprobes;

// The binary readers live in their own crate, which the fuzz targets link.
use bench_binfmt::btf;
pub use bench_binfmt::{elf, gopclntab};

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    os::fd::OwnedFd,
    sync::{Arc, Mutex},
};

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::UProbe,
    Ebpf,
};
use bench_common::{
    OffCpuKey, SyscallStats, CONFIG_ALLOC_LIVE, CONFIG_ALLOC_SAMPLE_BYTES, CONFIG_ENABLED,
    CONFIG_INFLIGHT_SLOTS, CONFIG_OFFCPU_STACK_INTERVAL_NS, CONFIG_SYSCALL_STACK_EVERY,
    CONFIG_TASK_PID_OFFSET, CONFIG_TASK_TGID_OFFSET, CONFIG_TASK_TOTALS_OFFSETS,
    CONFIG_WINDOW_INDEX, CONFIG_WINDOW_START_NS, INFLIGHT_SLOTS, INFLIGHT_SLOTS_MAX,
    OUTSIDE_WINDOWS, TARGET_FOLLOWED,
};
use serde::{Deserialize, Serialize};

pub use alloc::{AllocAttach, AllocCapture, AllocRecord};
pub use counters::{CounterReading, Reading, COUNTER_NAMES};
pub use crypto::{CryptoRecord, CryptoSymbol, Families};
pub use stack_copies::{CopyStats, UnwindMode};
pub use stacks::{Graph, StackRecord};
pub use syscalls::syscall_name;

/// The probe object, built by `build.rs` from `bench-ebpf`.
static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-ebpf.o"));

/// Names of every BPF program in the object; they share the `pp_` prefix so
/// that tests can check none is left loaded.
pub const PROGRAM_NAMES: &[&str] = &[
    "pp_sys_enter",
    "pp_sys_exit",
    "pp_sys_exit_count",
    "pp_cpu_sample",
    "pp_sched_switch",
    "pp_alloc",
    "pp_alloc_ret",
    "pp_free",
    "pp_crypto",
    "pp_crypto_ret",
    "pp_floor_sys_enter",
    "pp_floor_sys_exit",
    "pp_floor_sched_switch",
    "pp_floor_cpu_sample",
    "pp_process_fork",
    "pp_process_exec",
    "pp_process_exit",
];

/// Which probes to attach, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureOptions {
    pub syscalls: bool,
    /// Time each syscall (a program at its entry too, for the clock read);
    /// otherwise syscalls are counted at exit alone, with no time or
    /// latency histogram. Needs `syscalls`.
    #[serde(default)]
    pub syscall_time: bool,
    /// Record the user stack of one syscall in N (0 = off). Needs `syscalls`.
    pub syscall_stack_every: u64,
    /// Samples per second per CPU; `None` = cpu probe off.
    pub cpu_frequency_hz: Option<u64>,
    pub offcpu: bool,
    /// The off-CPU probe walks a thread's stacks at most once per this
    /// many ns and charges the switch-outs between to that walk's stacks
    /// (0 = at every switch-out).
    #[serde(default)]
    pub offcpu_stack_interval_ns: u64,
    pub counters: bool,
    pub alloc: Option<AllocOptions>,
    pub crypto: Option<CryptoOptions>,
    /// Attach empty programs in place of the syscalls, cpu and offcpu
    /// probes: they record nothing, and what they cost is the floor of
    /// measuring on those attach points (`cargo xtask bench probes`).
    #[serde(default)]
    pub floor: bool,
    /// Have the kernel time every program run (BPF_ENABLE_STATS) for
    /// `Capture::program_costs`. Off by default: the two clock reads it adds
    /// to every run cost about as much as an empty program's whole dispatch
    /// (docs/probes.md).
    #[serde(default)]
    pub program_stats: bool,
    /// Detach the syscalls, cpu and offcpu programs and attach them again
    /// second by second in every measured window, to measure their cost
    /// side by side (`probes.alternate`; the runner does the switching
    /// through [`Probes::set_main_attached`]).
    #[serde(default)]
    pub alternate: bool,
    /// Entries of the CPU sample map (0: the probe object's own, 65536).
    /// A key is (thread, stacks, window, 100-ms slot), so a long pass
    /// needs more: see [`CaptureOptions::sized_for`].
    #[serde(default)]
    pub cpu_sample_entries: u32,
    /// How user stacks are taken: walked by frame pointer, or copied and
    /// unwound from the binaries' tables where the code lacks frame
    /// pointers (capture/stack_copies.rs).
    #[serde(default)]
    pub unwind: UnwindMode,
    /// Slots of the syscall probe's in-flight array (0: as many as the
    /// machine's `pid_max`, up to `INFLIGHT_SLOTS_MAX`). Threads whose
    /// slot another holds go to a hash map: the tests make them collide.
    #[serde(default)]
    pub inflight_slots: u32,
}

/// The alloc probe's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocOptions {
    /// Mean bytes allocated between two stack samples.
    pub sample_bytes: u64,
    /// Follow sampled allocations to their free (return probes on the
    /// allocator; never on Go).
    pub live: bool,
}

/// The crypto probe's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CryptoOptions {
    /// Time each call with a return probe (never on Go).
    pub return_probes: bool,
}

impl CaptureOptions {
    /// Nothing attached: for control phases.
    pub fn none() -> CaptureOptions {
        CaptureOptions {
            syscalls: false,
            syscall_time: false,
            syscall_stack_every: 0,
            cpu_frequency_hz: None,
            offcpu: false,
            offcpu_stack_interval_ns: 0,
            counters: false,
            alloc: None,
            crypto: None,
            floor: false,
            program_stats: false,
            alternate: false,
            cpu_sample_entries: 0,
            unwind: UnwindMode::Auto,
            inflight_slots: 0,
        }
    }

    /// These options with the CPU sample map sized for `measured_s`
    /// seconds of measured windows on this machine's CPUs: at most one key
    /// per sample, at the sampling rate on every CPU, a quarter more for
    /// timer jitter. Never below the object's own size; at most
    /// [`CPU_SAMPLE_ENTRIES_MAX`], past which the map can fill and the
    /// samples it could not hold are counted ([`Capture::full_maps`]).
    pub fn sized_for(mut self, measured_s: f64) -> CaptureOptions {
        if let Some(hz) = self.cpu_frequency_hz {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let samples = measured_s.max(0.0) * hz as f64 * cpus as f64 * 1.25;
            self.cpu_sample_entries = (samples.ceil() as u64)
                .clamp(CPU_SAMPLE_ENTRIES_MIN, CPU_SAMPLE_ENTRIES_MAX)
                as u32;
        }
        self
    }

    /// The per-call probes (alloc, crypto) only.
    pub fn per_call_only(&self) -> CaptureOptions {
        CaptureOptions {
            alloc: self.alloc.clone(),
            crypto: self.crypto.clone(),
            unwind: self.unwind,
            ..CaptureOptions::none()
        }
    }

    /// Everything but the per-call probes.
    pub fn without_per_call(&self) -> CaptureOptions {
        CaptureOptions {
            alloc: None,
            crypto: None,
            ..self.clone()
        }
    }

    /// Whether any per-call probe is on.
    pub fn has_per_call(&self) -> bool {
        self.alloc.is_some() || self.crypto.is_some()
    }
}

/// The CPU sample map's size in the probe object.
pub const CPU_SAMPLE_ENTRIES_MIN: u64 = 65536;
/// The most entries the CPU sample map is given: the kernel allocates a
/// hash map's entries when it is created, roughly 80 bytes each (an
/// estimate from the key, value and element header, not measured), so
/// about 80 MiB of kernel memory: 2^20 / (99 Hz x 2 CPUs x 1.25) is 70
/// minutes of windows.
pub const CPU_SAMPLE_ENTRIES_MAX: u64 = 1 << 20;

/// A probe map that was full while recording: `lost` records found no
/// room and were not kept, so every figure drawn from the map misses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullMap {
    /// The map's name in the probe object (bench-common's `FULL_MAPS`).
    pub map: &'static str,
    /// Its entries (0 when the kernel could not be asked).
    pub capacity: u32,
    pub lost: u64,
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
    #[error("offcpu probe: {0}")]
    Btf(#[from] btf::BtfError),
    #[error("crypto families: {0}")]
    Families(String),
    #[error("starting the process tree watcher: {0}")]
    Watcher(std::io::Error),
}

/// What the probes found and attached to in one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetProbes {
    pub exe: String,
    pub is_go: bool,
    /// The executable has a symbol table (or, for Go, a function table).
    pub has_symbols: bool,
    pub alloc: Vec<AllocAttach>,
    pub crypto: Vec<CryptoSymbol>,
    /// Why something was not attached.
    pub notes: Vec<String>,
}

/// Loaded and attached probes plus the per-target counters.
pub struct Probes {
    ebpf: Ebpf,
    /// The syscalls, cpu and offcpu programs' links (or their floor's),
    /// detached and attached again by [`Probes::set_main_attached`].
    main_links: Vec<program_links::ProgramLink>,
    options: CaptureOptions,
    config: Array<MapData, u64>,
    targets: HashMap<MapData, u32, u32>,
    target_filter: Array<MapData, u32>,
    /// How each target's user stacks are taken (`UnwindRanges` by tgid),
    /// shared with the watcher, which writes it again after an exec.
    unwind: stack_copies::UnwindMap,
    counters: BTreeMap<u32, counters::TargetCounters>,
    /// Why thread exit events carry no totals here, if they do not (the
    /// counters then say so).
    exit_totals_unavailable: Option<String>,
    attached: BTreeMap<u32, TargetProbes>,
    /// The per-call probes' points and links, shared with the watcher,
    /// which attaches them in the targets' children.
    per_call: per_call::Shared,
    /// Keeps the kernel's BPF run-time statistics on while we hold it.
    stats: Option<OwnedFd>,
    windows: u32,
    /// When the current (or last) window opened, CLOCK_MONOTONIC ns.
    window_start_ns: u64,
    /// When the counters' opening edge had been read, CLOCK_MONOTONIC ns.
    counters_start_ns: u64,
    /// Off-CPU time of intervals still open as each window closed.
    offcpu_tails: StdHashMap<OffCpuKey, u64>,
    /// The targets' process trees, followed as they fork and exec.
    watcher: process_tree::Watcher,
    /// Stack copies, unwound as they arrive.
    stack_copies: stack_copies::StackCopies,
}

/// One syscall of one thread, summed over CPUs.
#[derive(Debug, Clone)]
pub struct SyscallRecord {
    pub tgid: u32,
    pub tid: u32,
    pub nr: u32,
    pub name: String,
    pub stats: SyscallStats,
}

/// Run time and run count the kernel kept for one BPF program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramCost {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Running totals as one measured window closed: the difference between
/// two consecutive snapshots is what one phase did.
#[derive(Debug, Clone, Default)]
pub struct WindowSnapshot {
    pub syscalls: Vec<SyscallRecord>,
    /// pid → counters.
    pub counters: BTreeMap<u32, Vec<CounterReading>>,
}

/// Everything the probes saw in the measured windows.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Per (thread, syscall).
    pub syscalls: Vec<SyscallRecord>,
    /// (tgid, syscall nr) → calls per log2 latency bucket.
    pub syscall_histograms: StdHashMap<(u32, u32), Vec<u64>>,
    /// Every weighted stack of every graph.
    pub stacks: Vec<StackRecord>,
    pub alloc: AllocCapture,
    pub crypto: Vec<CryptoRecord>,
    /// Per target pid.
    pub counters: BTreeMap<u32, Vec<CounterReading>>,
    /// Thread names by tid.
    pub thread_names: StdHashMap<u32, String>,
    /// (pid, tid, counter) → value, for the threads counters were opened on
    /// (each also counts the threads it created after).
    pub thread_counters: BTreeMap<(u32, u32, String), u64>,
    pub program_costs: Vec<ProgramCost>,
    /// The targets and the processes they forked. Every other field counts
    /// a child's records as its target's; `stacks` keep the child's own
    /// pid, to be named from its own mappings (`resolve`).
    pub tree: process_tree::ProcessTree,
    /// Per process (targets and children): syscalls made and CPU samples
    /// taken in the measured windows.
    pub process_counts: BTreeMap<u32, process_tree::ProcessCounts>,
    /// The maps that were full at some point since the probes were loaded,
    /// with the records they could not hold.
    pub full_maps: Vec<FullMap>,
    /// The stack copies unwound since the probes were loaded.
    pub stack_copies: CopyStats,
}

fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), CaptureError> {
    let p: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(CaptureError::Missing(name))?
        .try_into()
        .map_err(|source| CaptureError::Program { name, source })?;
    p.load()
        .map_err(|source| CaptureError::Program { name, source })
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

        let mut loader = aya::EbpfLoader::new();
        let btf = aya::Btf::from_sys_fs().ok();
        loader.btf(btf.as_ref());
        if options.cpu_sample_entries > 0 {
            loader.map_max_entries("CPU_SAMPLES", options.cpu_sample_entries);
        }
        let inflight_slots = match options.inflight_slots {
            0 => inflight_slots_for_pid_max(),
            n => n,
        };
        loader.map_max_entries("INFLIGHT", inflight_slots);
        let mut ebpf = loader.load(PROBES_OBJECT)?;
        // Before any map is taken out of `ebpf`: it needs them all.
        let multi = if options.has_per_call() {
            uprobe_multi::MultiPrograms::new(PROBES_OBJECT, &ebpf).map_err(|e| e.to_string())
        } else {
            Err("no per-call probes".to_string())
        };
        let config = take_map(&mut ebpf, "CONFIG")?;
        let mut config: Array<MapData, u64> =
            Array::try_from(config).map_err(|source| CaptureError::Map {
                name: "CONFIG",
                source,
            })?;
        let targets = take_map(&mut ebpf, "TARGETS")?;
        let targets = HashMap::try_from(targets).map_err(|source| CaptureError::Map {
            name: "TARGETS",
            source,
        })?;
        let unwind = take_map(&mut ebpf, "UNWIND")?;
        let unwind = HashMap::try_from(unwind).map_err(|source| CaptureError::Map {
            name: "UNWIND",
            source,
        })?;
        let unwind = Arc::new(Mutex::new(unwind));
        let target_filter = take_map(&mut ebpf, "TARGET_FILTER")?;
        let target_filter = Array::try_from(target_filter).map_err(|source| CaptureError::Map {
            name: "TARGET_FILTER",
            source,
        })?;
        let mut set = |index: u32, value: u64| {
            config
                .set(index, value, 0)
                .map_err(|source| CaptureError::Map {
                    name: "CONFIG",
                    source,
                })
        };
        // Program statistics cost two clock reads per program run: only
        // when asked for.
        let stats = if options.program_stats {
            aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()
        } else {
            None
        };
        let mut main_links = Vec::new();
        if options.syscalls {
            set(CONFIG_INFLIGHT_SLOTS, u64::from(inflight_slots))?;
            set(CONFIG_SYSCALL_STACK_EVERY, options.syscall_stack_every)?;
            main_links.extend(syscalls::attach(
                &mut ebpf,
                options.floor,
                options.syscall_time,
            )?);
        }
        if let Some(hz) = options.cpu_frequency_hz {
            main_links.push(cpu::attach(&mut ebpf, hz, options.floor)?);
        }
        // The fork probe reads the child's pid and tgid, as the offcpu
        // probe reads the next task's.
        let (pid, tgid) = btf::task_pid_tgid_offsets()?;
        set(CONFIG_TASK_PID_OFFSET, pid)?;
        set(CONFIG_TASK_TGID_OFFSET, tgid)?;
        // The exit probe sends an ending thread's totals for the counters.
        let exit_totals_unavailable = match btf::task_totals_offsets() {
            Ok(offsets) => {
                for (i, offset) in (0u32..).zip(offsets) {
                    set(CONFIG_TASK_TOTALS_OFFSETS + i, offset)?;
                }
                None
            }
            Err(e) => Some(format!(
                "threads that end inside a window could not be counted: {e}"
            )),
        };
        if options.offcpu {
            set(
                CONFIG_OFFCPU_STACK_INTERVAL_NS,
                options.offcpu_stack_interval_ns,
            )?;
            main_links.push(offcpu::attach(&mut ebpf, options.floor)?);
        }
        let watcher = process_tree::attach(&mut ebpf)?;
        let stack_copies = stack_copies::start(&mut ebpf, watcher.shared_tree())?;
        if let Some(a) = &options.alloc {
            set(CONFIG_ALLOC_SAMPLE_BYTES, a.sample_bytes)?;
            set(CONFIG_ALLOC_LIVE, u64::from(a.live))?;
            for p in ["pp_alloc", "pp_free", "pp_alloc_ret"] {
                load_program(&mut ebpf, p)?;
            }
        }
        if options.crypto.is_some() {
            for p in ["pp_crypto", "pp_crypto_ret"] {
                load_program(&mut ebpf, p)?;
            }
        }
        let per_call = Arc::new(Mutex::new(per_call::PerCall::new(
            uprobes::UprobeSet::new(multi),
            options.alloc.clone(),
            options.crypto.clone(),
            Families::shipped().map_err(CaptureError::Families)?,
        )));
        if options.has_per_call() {
            watcher.follow_with(per_call.clone());
        }
        if options.unwind != UnwindMode::FramePointers {
            watcher.unwind_after_exec(stack_copies.after_exec(options.unwind, unwind.clone()));
        }
        Ok(Probes {
            ebpf,
            main_links,
            options: options.clone(),
            config,
            targets,
            target_filter,
            unwind,
            counters: BTreeMap::new(),
            exit_totals_unavailable,
            attached: BTreeMap::new(),
            per_call,
            stats,
            windows: 0,
            window_start_ns: 0,
            counters_start_ns: 0,
            offcpu_tails: StdHashMap::new(),
            watcher,
            stack_copies,
        })
    }

    /// Record process `pid` (all its threads) from now on, attaching the
    /// per-process probes (allocator, crypto) to the files it has mapped.
    ///
    /// Its descendants are followed too: those it has already forked from
    /// now on, those it forks later from their first instruction.
    pub fn add_target(&mut self, pid: u32, role: u32) -> Result<(), CaptureError> {
        self.list_target(pid, role)?;
        let descendants = self.watcher.tree().add_root(pid);
        for child in &descendants {
            self.list_target(*child, role | TARGET_FOLLOWED)?;
        }
        for p in std::iter::once(pid).chain(descendants.iter().copied()) {
            self.set_unwind(p)?;
        }
        if self.options.counters {
            let c = counters::TargetCounters::open(pid, self.exit_totals_unavailable.clone());
            self.counters.insert(pid, c);
        }
        let mut info = TargetProbes::default();
        let mut per_call = per_call::lock(&self.per_call);
        if per_call.on() {
            let read = |pid: u32, info: &mut TargetProbes| {
                let mut files = Vec::new();
                for path in elf::mapped_files(pid) {
                    match elf::ElfFile::read(&path) {
                        Ok(mut f) => {
                            // Parts of the file that could not be read: the
                            // profile goes on without them, and says so.
                            info.notes.append(&mut f.notes);
                            files.push(f);
                        }
                        Err(e) => info.notes.push(format!("not probed: {e}")),
                    }
                }
                files
            };
            let files = read(pid, &mut info);
            if let Some(main) = files.first() {
                info.exe = main.path.display().to_string();
                info.is_go = main.is_go;
                info.has_symbols = !main.functions.is_empty();
            }
            per_call.add_files(pid, &files, &mut info);
            if self.options.alloc.is_some() && info.alloc.is_empty() {
                info.notes
                    .push("no known allocator entry point found: allocations not counted".into());
            }
            // Children it forked before now: probed as the watcher would
            // have at their fork.
            for child in &descendants {
                let files = read(*child, &mut info);
                per_call.add_files(*child, &files, &mut info);
            }
        }
        // Attached now, not at the first window: handshake markers count
        // the connection set-up that happens before a window opens.
        let attached = per_call.attach(&mut self.ebpf);
        if self.options.has_per_call() {
            if let Some(why) = &per_call.set.multi_unavailable {
                info.notes.push(format!(
                    "uprobe_multi links unavailable ({why}): one link per probe, each slow to detach"
                ));
            }
        }
        drop(per_call);
        self.attached.insert(pid, info);
        attached
    }

    /// Write how `pid`'s user stacks are taken, from the files it has
    /// mapped now (its children inherit it in the kernel as they fork).
    fn set_unwind(&mut self, pid: u32) -> Result<(), CaptureError> {
        let Some(ranges) = self.stack_copies.prepare(pid, self.options.unwind) else {
            return Ok(());
        };
        self.unwind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, ranges, 0)
            .map_err(|source| CaptureError::Map {
                name: "UNWIND",
                source,
            })
    }

    /// Put `pid` in the probes' target filter.
    fn list_target(&mut self, pid: u32, value: u32) -> Result<(), CaptureError> {
        let filter_err = |source| CaptureError::Map {
            name: "TARGET_FILTER",
            source,
        };
        let slot = bench_common::target_slot(pid);
        // Counted before TARGETS is written: a slot never reads empty for a
        // listed target.
        if self.targets.get(&pid, 0).is_err() {
            let n = self.target_filter.get(&slot, 0).map_err(filter_err)?;
            self.target_filter.set(slot, n + 1, 0).map_err(filter_err)?;
        }
        self.targets
            .insert(pid, value, 0)
            .map_err(|source| CaptureError::Map {
                name: "TARGETS",
                source,
            })
    }

    /// The targets' process trees as followed so far.
    pub fn process_tree(&self) -> process_tree::ProcessTree {
        self.watcher.tree().clone()
    }

    /// Open uprobe links (one per program, file and process with
    /// uprobe_multi; one per probe without).
    pub fn uprobe_links(&self) -> usize {
        per_call::lock(&self.per_call).set.link_count()
    }

    /// What was found and attached per target pid, its children's images
    /// included.
    pub fn attached(&self) -> BTreeMap<u32, TargetProbes> {
        let mut out = self.attached.clone();
        for (root, found) in per_call::lock(&self.per_call).found() {
            let info = out.entry(*root).or_default();
            for a in &found.alloc {
                if !info.alloc.contains(a) {
                    info.alloc.push(a.clone());
                }
            }
            info.crypto.extend(found.crypto.iter().cloned());
            for n in &found.notes {
                if !info.notes.contains(n) {
                    info.notes.push(n.clone());
                }
            }
        }
        let tree = self.process_tree();
        for (root, info) in &mut out {
            let mut after: Vec<u64> = tree
                .processes()
                .filter(|p| p.root == *root && p.parent.is_some())
                .filter_map(|p| p.per_call_after_us)
                .collect();
            if after.is_empty() {
                continue;
            }
            after.sort_unstable();
            info.notes.push(format!(
                "the per-call probes (alloc, crypto) were attached in {} forked or exec'd \
                 children {} µs (median; longest {} µs) after their fork or exec: their \
                 calls before then are not counted",
                after.len(),
                after[after.len() / 2],
                after[after.len() - 1]
            ));
        }
        out
    }

    /// Detach (`false`) or attach again (`true`) the syscalls, cpu and
    /// offcpu programs, which stay loaded with their maps: for
    /// `probes.alternate`, which measures their cost by taking them off the
    /// machine and back while the traffic runs. Records made while they are
    /// detached are missing, so a run that alternates measures the probes'
    /// cost, not the targets'. The process tree and per-call probes stay.
    pub fn set_main_attached(&mut self, attached: bool) -> Result<(), CaptureError> {
        for link in &mut self.main_links {
            if attached {
                link.attach(&mut self.ebpf)?;
            } else {
                link.detach(&mut self.ebpf)?;
            }
        }
        Ok(())
    }

    /// Open the next measured window: its index (the phase, counted from
    /// 0) goes into every record until it closes.
    pub fn start(&mut self) -> Result<(), CaptureError> {
        if !self.counters.is_empty() {
            let mut tree = self.watcher.tree();
            // Exits between windows are no window's.
            tree.take_exits();
            for c in self.counters.values_mut() {
                c.start(&tree);
            }
        }
        self.counters_start_ns = monotonic_ns();
        // Children's points that could not get uprobe_multi links.
        per_call::lock(&self.per_call).attach(&mut self.ebpf)?;
        let index = self.windows.min(OUTSIDE_WINDOWS - 1);
        self.set_config(CONFIG_WINDOW_INDEX, u64::from(index))?;
        self.window_start_ns = monotonic_ns();
        self.set_config(CONFIG_WINDOW_START_NS, self.window_start_ns)?;
        self.set_config(CONFIG_ENABLED, 1)?;
        self.windows += 1;
        Ok(())
    }

    /// Close the measured window, counting the off-CPU intervals still open
    /// at its edge.
    pub fn stop(&mut self) -> Result<(), CaptureError> {
        self.set_config(CONFIG_ENABLED, 0)?;
        let end_ns = monotonic_ns();
        if !self.counters.is_empty() {
            let ends: Vec<counters::Edge> = {
                let tree = self.watcher.tree();
                self.counters.values().map(|c| c.edge(&tree)).collect()
            };
            let edges_ns = monotonic_ns();
            // Taken again: drains the exits sent while the edges were read.
            let mut tree = self.watcher.tree();
            let exits = tree.take_exits();
            for (c, end) in self.counters.values_mut().zip(ends) {
                c.stop(end, &tree, &exits, self.counters_start_ns, edges_ns);
            }
        }
        self.set_config(CONFIG_WINDOW_INDEX, u64::from(OUTSIDE_WINDOWS))?;
        if self.options.offcpu && !self.options.floor && self.windows > 0 {
            let closed = offcpu::ClosedWindow {
                index: (self.windows - 1).min(OUTSIDE_WINDOWS - 1),
                start_ns: self.window_start_ns,
                end_ns,
            };
            offcpu::count_open_intervals(&self.ebpf, closed, &mut self.offcpu_tails)?;
        }
        Ok(())
    }

    fn set_config(&mut self, index: u32, value: u64) -> Result<(), CaptureError> {
        self.config
            .set(index, value, 0)
            .map_err(|source| CaptureError::Map {
                name: "CONFIG",
                source,
            })
    }

    /// How many windows were opened.
    pub fn windows(&self) -> u32 {
        self.windows
    }

    /// Live sampled allocation bytes per tgid (alloc probe with `live`).
    pub fn live_bytes(&self) -> Result<BTreeMap<u32, i64>, CaptureError> {
        if self.options.alloc.as_ref().is_some_and(|a| a.live) {
            let roots = self.watcher.tree().roots();
            let mut out = BTreeMap::new();
            for (tgid, bytes) in alloc::live_bytes(&self.ebpf)? {
                *out.entry(*roots.get(&tgid).unwrap_or(&tgid)).or_insert(0) += bytes;
            }
            Ok(out)
        } else {
            Ok(BTreeMap::new())
        }
    }

    /// Read everything recorded so far. Call while the targets still run:
    /// names of threads the probes did not name come from /proc.
    /// The syscall table and counters so far (cheap: tens of rows), taken
    /// as each window closes.
    pub fn snapshot(&mut self) -> Result<WindowSnapshot, CaptureError> {
        let mut syscalls = if self.options.syscalls {
            syscalls::read(&self.ebpf)?
        } else {
            Vec::new()
        };
        let roots = self.watcher.tree().roots();
        for r in &mut syscalls {
            r.tgid = *roots.get(&r.tgid).unwrap_or(&r.tgid);
        }
        let counters = self
            .counters
            .iter_mut()
            .map(|(pid, c)| (*pid, c.read()))
            .collect();
        Ok(WindowSnapshot { syscalls, counters })
    }

    pub fn read(&mut self) -> Result<Capture, CaptureError> {
        let mut capture = Capture::default();
        {
            let ebpf = &self.ebpf;
            let mut stacks = stacks::StackReader::new(ebpf, self.stack_copies.frames())?;
            if self.options.syscalls {
                capture.syscalls = syscalls::read(ebpf)?;
                capture.syscall_histograms = syscalls::read_histograms(ebpf)?;
                if self.options.syscall_stack_every > 0 {
                    capture
                        .stacks
                        .extend(syscalls::read_stacks(ebpf, &mut stacks)?);
                }
            }
            if self.options.cpu_frequency_hz.is_some() {
                capture.stacks.extend(cpu::read(ebpf, &mut stacks)?);
            }
            if self.options.offcpu {
                capture
                    .stacks
                    .extend(offcpu::read(ebpf, &mut stacks, &self.offcpu_tails)?);
            }
            if self.options.alloc.is_some() {
                let mut a = alloc::read(ebpf, &mut stacks)?;
                capture.stacks.append(&mut a.stacks);
                capture.alloc = a;
            }
            if self.options.crypto.is_some() {
                capture.crypto = crypto::read(ebpf)?;
            }
        }

        capture.stacks = stacks::merge_same(std::mem::take(&mut capture.stacks));
        for (pid, c) in &mut self.counters {
            capture.counters.insert(*pid, c.read());
            for (tid, name, value) in c.read_by_thread() {
                capture
                    .thread_counters
                    .insert((*pid, tid, name.to_string()), value);
            }
        }
        capture.thread_names = self.thread_names()?;
        let mut tids: Vec<(u32, u32)> = capture.stacks.iter().map(|s| (s.tgid, s.tid)).collect();
        tids.extend(capture.syscalls.iter().map(|s| (s.tgid, s.tid)));
        tids.extend(capture.alloc.records.iter().map(|s| (s.tgid, s.tid)));
        for (tgid, tid) in tids {
            capture
                .thread_names
                .entry(tid)
                .or_insert_with(|| proc_thread_name(tgid, tid));
        }
        capture.program_costs = self.program_costs();
        capture.full_maps = self.full_maps()?;
        capture.stack_copies = self.stack_copies.stats();
        capture.tree = self.process_tree();
        // Files whose stacks could not be unwound: said with their target.
        for (pid, note) in self.stack_copies.take_notes() {
            let root = capture.tree.root_of(pid).unwrap_or(pid);
            let notes = &mut self.attached.entry(root).or_default().notes;
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        process_tree::fold_into_targets(&mut capture);
        Ok(capture)
    }

    fn thread_names(&self) -> Result<StdHashMap<u32, String>, CaptureError> {
        let map: HashMap<&MapData, u32, [u8; 16]> = HashMap::try_from(
            self.ebpf
                .map("THREAD_NAMES")
                .ok_or(CaptureError::Missing("THREAD_NAMES"))?,
        )
        .map_err(|source| CaptureError::Map {
            name: "THREAD_NAMES",
            source,
        })?;
        let mut out = StdHashMap::new();
        for entry in map.iter() {
            let (tid, comm) = entry.map_err(|source| CaptureError::Map {
                name: "THREAD_NAMES",
                source,
            })?;
            let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
            out.insert(tid, String::from_utf8_lossy(&comm[..end]).into_owned());
        }
        Ok(out)
    }

    /// The records each map could not hold, from the probes' `FULL`
    /// counters; only the maps with any.
    fn full_maps(&self) -> Result<Vec<FullMap>, CaptureError> {
        let err = |source| CaptureError::Map {
            name: "FULL",
            source,
        };
        let full: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("FULL").ok_or(CaptureError::Missing("FULL"))?)
                .map_err(err)?;
        let mut out = Vec::new();
        for (index, map) in (0u32..).zip(bench_common::FULL_MAPS) {
            let lost: u64 = full.get(&index, 0).map_err(err)?.iter().sum();
            if lost == 0 {
                continue;
            }
            let capacity = match self.ebpf.map(map) {
                Some(
                    Map::HashMap(d)
                    | Map::PerCpuHashMap(d)
                    | Map::LruHashMap(d)
                    | Map::PerCpuLruHashMap(d),
                ) => d.info().map_or(0, |i| i.max_entries()),
                _ => 0,
            };
            out.push(FullMap {
                map,
                capacity,
                lost,
            });
        }
        Ok(out)
    }

    fn program_costs(&self) -> Vec<ProgramCost> {
        let mut out = Vec::new();
        if self.stats.is_none() {
            // Not timed: the kernel's zeros are no measurement.
            return out;
        }
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

impl Drop for Probes {
    fn drop(&mut self) {
        // Close the per-call probes in parallel, then wait for them: no
        // link outlives the Probes (and the watcher makes none after).
        self.watcher.stop_following();
        per_call::lock(&self.per_call).set.close(&mut self.ebpf);
    }
}

/// CLOCK_MONOTONIC now, ns: the clock of `bpf_ktime_get_ns`.
pub(super) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Slots for the syscall probe's in-flight array: one per thread id the
/// kernel hands out (`kernel.pid_max`, a power of two or rounded up to
/// one), at most `INFLIGHT_SLOTS_MAX`; the probe object's own count when
/// `pid_max` cannot be read.
fn inflight_slots_for_pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(INFLIGHT_SLOTS, |max| {
            max.checked_next_power_of_two()
                .unwrap_or(INFLIGHT_SLOTS_MAX)
                .clamp(1, INFLIGHT_SLOTS_MAX)
        })
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::Missing(name))
}

/// The thread's name from /proc, or its tid once it has exited.
fn proc_thread_name(tgid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| format!("tid-{tid}"))
}

/// Loaded BPF programs whose names are ours (for leak checks). A listing
/// that fails is an error, not an empty list: a leak check must not pass
/// because it could not look.
pub fn loaded_program_names() -> Result<Vec<String>, aya::programs::ProgramError> {
    let mut ours = Vec::new();
    for p in aya::programs::loaded_programs() {
        let p = match p {
            Ok(p) => p,
            // Freed between its id being listed and opened: not loaded.
            Err(aya::programs::ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let Some(n) = p.name_as_str().map(str::to_string) else {
            continue;
        };
        if n.starts_with("pp_") && PROGRAM_NAMES.iter().any(|o| o.starts_with(n.as_str())) {
            ours.push(n);
        }
    }
    Ok(ours)
}
