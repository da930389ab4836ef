//! metrics: the named numbers the checklist judges and `compare` tests,
//! computed per target from the rest of the report.
//!
//! Every metric has one definition here ([`CATALOGUE`]): its unit and which
//! direction is better. A metric that could not be measured in a run is
//! [`Metric::Unavailable`] with the reason, never a guess.

use std::collections::BTreeMap;

use crate::report::{Metric, ProbesInfo, Target, Workload};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One metric's definition.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    unit: &'static str,
    better: Better,
    doc: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        unit,
        better,
        doc,
    }
}

/// The cost categories, in the order of profiles/attribution.toml. Each has
/// the metrics `cost.<name>.ns_per_byte` and `cost.<name>.share`.
pub const CATEGORIES: &[&str] = &[
    "crypto",
    "copy",
    "alloc",
    "kernel_io",
    "runtime",
    "protocol",
    "profiler",
    "other",
];

/// Every per-target metric. Cost metrics (`cost.<category>.…`) are listed by
/// [`cost_metric`].
pub const CATALOGUE: &[MetricDef] = &[
    def(
        "cpu_ns_per_byte",
        "ns/B",
        Better::Lower,
        "CPU time of the target per payload byte moved",
    ),
    def(
        "copy_share",
        "share",
        Better::Lower,
        "share of CPU samples copying payload: memcpy/memmove in user space and the kernel's copies to and from user memory",
    ),
    def(
        "zero_copy_share",
        "share",
        Better::Higher,
        "share of bytes moved by splice/sendfile/tee/vmsplice/copy_file_range",
    ),
    def(
        "vectored_share",
        "share",
        Better::Higher,
        "share of read/write syscalls that are vectored (readv/writev/sendmsg/recvmsg…)",
    ),
    def(
        "bytes_per_read",
        "B",
        Better::Higher,
        "payload bytes per read-family syscall",
    ),
    def(
        "bytes_per_write",
        "B",
        Better::Higher,
        "payload bytes per write-family syscall",
    ),
    def(
        "syscalls_per_mib",
        "1/MiB",
        Better::Lower,
        "syscalls per MiB moved",
    ),
    def(
        "wakeups_per_mib",
        "1/MiB",
        Better::Lower,
        "epoll/poll/futex calls per MiB moved",
    ),
    def(
        "context_switches_per_mib",
        "1/MiB",
        Better::Lower,
        "context switches per MiB moved (perf software counter)",
    ),
    def(
        "allocs_per_mib",
        "1/MiB",
        Better::Lower,
        "allocator calls per MiB moved",
    ),
    def(
        "buffer_allocs_per_mib",
        "1/MiB",
        Better::Lower,
        "allocations of 4 KiB or more per MiB moved",
    ),
    def(
        "alloc_bytes_per_byte",
        "B/B",
        Better::Lower,
        "bytes allocated per payload byte moved",
    ),
    def(
        "peak_rss_mib",
        "MiB",
        Better::Lower,
        "peak resident set size (VmHWM)",
    ),
    def(
        "live_heap_growth_mib_per_s",
        "MiB/s",
        Better::Lower,
        "slope of live sampled heap bytes over the run",
    ),
    def(
        "crypto_software_share",
        "share",
        Better::Lower,
        "share of crypto calls in software fallbacks",
    ),
    def(
        "crypto_ns_per_byte",
        "ns/B",
        Better::Lower,
        "crypto CPU time per payload byte moved",
    ),
    def(
        "crypto_vs_calibration",
        "ratio",
        Better::Lower,
        "crypto ns/byte over the same primitive's micro-benchmark on this machine",
    ),
    def(
        "crypto_record_bytes",
        "B",
        Better::Higher,
        "mean bytes per seal/open call",
    ),
    def(
        "full_handshakes_per_stream",
        "ratio",
        Better::Lower,
        "full TLS handshakes (server signature checks by the client) per stream driven",
    ),
    def(
        "upstream_connections",
        "",
        Better::Lower,
        "the client endpoint's open TCP connections to the server, mid-run",
    ),
    def(
        "setup_p50_us",
        "µs",
        Better::Lower,
        "connection setup, TCP connect to SOCKS5 success: the phases' medians weighted by connections",
    ),
    def(
        "setup_p99_us",
        "µs",
        Better::Lower,
        "99th percentile connection setup: the worst phase's",
    ),
    def(
        "upstream_connections_per_stream",
        "ratio",
        Better::Lower,
        "the client endpoint's TCP connections to the server per stream it accepted",
    ),
    def(
        "keepalive_share",
        "share",
        Better::Higher,
        "share of the target's TCP sockets with SO_KEEPALIVE",
    ),
    def(
        "nodelay_share",
        "share",
        Better::Higher,
        "share of the target's TCP sockets with TCP_NODELAY",
    ),
    def(
        "runtime_share",
        "share",
        Better::Lower,
        "share of CPU samples in the async runtime and scheduler",
    ),
    def(
        "kernel_io_share",
        "share",
        Better::Lower,
        "share of CPU samples in syscalls and the network stack",
    ),
];

/// Run-level metrics of the workload (per phase `p<i>.`): the ones
/// `compare` tests besides the per-target ones.
pub const WORKLOAD: &[MetricDef] = &[
    def(
        "throughput_bps",
        "B/s",
        Better::Higher,
        "median bytes/s of the phase, up + down",
    ),
    def(
        "rr_per_s",
        "1/s",
        Better::Higher,
        "round trips per second (rr)",
    ),
    def(
        "latency_p50_us",
        "µs",
        Better::Lower,
        "median round-trip latency (rr)",
    ),
    def(
        "latency_p99_us",
        "µs",
        Better::Lower,
        "99th percentile round-trip latency (rr)",
    ),
];

/// The definition of a metric by name, cost metrics included.
pub fn lookup(name: &str) -> Option<MetricDef> {
    if let Some(d) = CATALOGUE.iter().find(|d| d.name == name) {
        return Some(*d);
    }
    cost_metric(name)
}

/// `cost.<category>.ns_per_byte` or `cost.<category>.share`.
pub fn cost_metric(name: &str) -> Option<MetricDef> {
    let rest = name.strip_prefix("cost.")?;
    let (cat, what) = rest.rsplit_once('.')?;
    CATEGORIES.contains(&cat).then_some(())?;
    match what {
        "ns_per_byte" => Some(def(
            "cost",
            "ns/B",
            Better::Lower,
            "CPU ns per byte in the category",
        )),
        "share" => Some(def(
            "cost",
            "share",
            Better::Lower,
            "share of CPU samples in the category",
        )),
        _ => None,
    }
}

/// Run-level workload metrics, keyed `p<i>.<name>` by phase index.
pub fn workload_metrics(w: &Workload) -> BTreeMap<String, Metric> {
    let mut m = BTreeMap::new();
    for (i, p) in w.phases.iter().enumerate() {
        let t = &p.throughput;
        m.insert(
            format!("p{i}.throughput_bps"),
            Metric::Value(t.up_bps_median + t.down_bps_median),
        );
        if let Some(l) = &p.latency_us {
            m.insert(
                format!("p{i}.rr_per_s"),
                Metric::Value(p.round_trips as f64 / p.measured_s.max(1e-9)),
            );
            m.insert(format!("p{i}.latency_p50_us"), Metric::Value(l.p50));
            m.insert(format!("p{i}.latency_p99_us"), Metric::Value(l.p99));
        }
    }
    m
}

/// The definition of a `p<i>.<name>` workload metric.
pub fn workload_def(name: &str) -> Option<MetricDef> {
    let (phase, rest) = name.split_once('.')?;
    phase.strip_prefix('p')?.parse::<usize>().ok()?;
    WORKLOAD.iter().find(|d| d.name == rest).copied()
}

/// Payload bytes moved in the measured windows of a workload.
pub fn window_bytes(w: &Workload) -> u64 {
    w.phases.iter().map(|p| p.window_bytes()).sum()
}

const MIB: f64 = 1024.0 * 1024.0;

/// Syscalls that wait for readiness or for another thread.
const WAKEUP_SYSCALLS: &[&str] = &[
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "futex",
    "futex_waitv",
];
const ZERO_COPY_SYSCALLS: &[&str] = &["splice", "sendfile", "tee", "vmsplice", "copy_file_range"];
const READ_SYSCALLS: &[&str] = &[
    "read", "pread64", "readv", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg",
];
const WRITE_SYSCALLS: &[&str] = &[
    "write", "pwrite64", "writev", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg",
];
const VECTORED_SYSCALLS: &[&str] = &[
    "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2", "recvmsg", "sendmsg",
    "recvmmsg", "sendmmsg",
];

/// What [`target_metrics`] reads beyond the target.
pub struct MetricInputs<'a> {
    pub workload: &'a Workload,
    pub probes: &'a ProbesInfo,
    pub calibration: &'a [crate::report::CipherBench],
    /// Streams the generator opened in the main pass.
    pub streams: u64,
}

fn ratio(num: f64, den: f64, why_zero: &str) -> Metric {
    if den > 0.0 {
        Metric::Value(num / den)
    } else {
        Metric::Unavailable(why_zero.to_string())
    }
}

/// Every catalogue metric of one target.
pub fn target_metrics(t: &Target, inp: &MetricInputs) -> BTreeMap<String, Metric> {
    let mut m = BTreeMap::new();
    let bytes = window_bytes(inp.workload) as f64;
    let no_bytes = "no payload moved in the measured windows";
    let un = |why: &str| Metric::Unavailable(why.to_string());
    let scope = Scope::of(t, inp.workload);
    let mib = scope.bytes / MIB;

    // CPU and its categories.
    match &t.costs {
        Some(c) if c.samples > 0 => {
            let cpu_ns = scope.task_clock_ns.map_or(c.cpu_ns, |ns| ns as f64);
            m.insert(
                "cpu_ns_per_byte".into(),
                ratio(cpu_ns, scope.bytes, no_bytes),
            );
            for cat in &c.categories {
                m.insert(
                    format!("cost.{}.share", cat.category),
                    Metric::Value(cat.share),
                );
                m.insert(
                    format!("cost.{}.ns_per_byte", cat.category),
                    ratio(cat.cpu_ns, bytes, no_bytes),
                );
            }
            let share = |name: &str| {
                c.categories
                    .iter()
                    .find(|k| k.category == name)
                    .map(|k| Metric::Value(k.share))
                    .unwrap_or_else(|| un("category missing from profiles/attribution.toml"))
            };
            m.insert("copy_share".into(), share("copy"));
            m.insert("runtime_share".into(), share("runtime"));
            m.insert("kernel_io_share".into(), share("kernel_io"));
        }
        Some(_) => {
            let why = "the cpu probe took no samples of this target";
            for name in [
                "cpu_ns_per_byte",
                "copy_share",
                "runtime_share",
                "kernel_io_share",
            ] {
                m.insert(name.into(), un(why));
            }
        }
        None => {
            let why = "the cpu probe was off (probes.cpu.enabled)";
            for name in [
                "cpu_ns_per_byte",
                "copy_share",
                "runtime_share",
                "kernel_io_share",
            ] {
                m.insert(name.into(), un(why));
            }
        }
    }

    // Syscalls.
    if inp.probes.options.syscalls {
        let sum = |names: &[&str], f: &dyn Fn(&crate::report::SyscallCount) -> u64| -> u64 {
            scope
                .syscalls
                .iter()
                .filter(|r| names.contains(&r.name.as_str()))
                .map(f)
                .sum()
        };
        let all: u64 = scope.syscalls.iter().map(|r| r.count).sum();
        m.insert("syscalls_per_mib".into(), ratio(all as f64, mib, no_bytes));
        m.insert(
            "wakeups_per_mib".into(),
            ratio(sum(WAKEUP_SYSCALLS, &|r| r.count) as f64, mib, no_bytes),
        );
        let reads = sum(READ_SYSCALLS, &|r| r.count - r.errors);
        let writes = sum(WRITE_SYSCALLS, &|r| r.count - r.errors);
        let read_bytes = sum(READ_SYSCALLS, &|r| r.bytes);
        let write_bytes = sum(WRITE_SYSCALLS, &|r| r.bytes);
        let zero_copy_bytes = sum(ZERO_COPY_SYSCALLS, &|r| r.bytes);
        // When splice/sendfile carried the payload, the reads and writes
        // left are control traffic (SOCKS5, headers): their sizes say
        // nothing about the data path.
        let spliced = zero_copy_bytes > 0 && zero_copy_bytes >= read_bytes + write_bytes;
        let by_splice = |what: &str| {
            un(&format!(
                "the payload moved by splice/sendfile ({}); the {what} left carry control traffic only",
                crate::render::bytes(zero_copy_bytes as f64)
            ))
        };
        m.insert(
            "bytes_per_read".into(),
            if spliced {
                by_splice("reads")
            } else {
                ratio(
                    read_bytes as f64,
                    reads as f64,
                    "no successful read-family syscall",
                )
            },
        );
        m.insert(
            "bytes_per_write".into(),
            if spliced {
                by_splice("writes")
            } else {
                ratio(
                    write_bytes as f64,
                    writes as f64,
                    "no successful write-family syscall",
                )
            },
        );
        m.insert(
            "vectored_share".into(),
            if spliced {
                by_splice("reads and writes")
            } else {
                ratio(
                    sum(VECTORED_SYSCALLS, &|r| r.count) as f64,
                    (sum(READ_SYSCALLS, &|r| r.count) + sum(WRITE_SYSCALLS, &|r| r.count)) as f64,
                    "no read- or write-family syscall",
                )
            },
        );
        // Splice moves each byte twice (socket → pipe → socket), read+write
        // once each: both count a byte per call that touches it.
        m.insert(
            "zero_copy_share".into(),
            ratio(
                zero_copy_bytes as f64,
                (zero_copy_bytes + read_bytes + write_bytes) as f64,
                "no bytes moved by any syscall",
            ),
        );
    } else {
        let why = "the syscalls probe was off (probes.syscalls)";
        for name in [
            "syscalls_per_mib",
            "wakeups_per_mib",
            "bytes_per_read",
            "bytes_per_write",
            "vectored_share",
            "zero_copy_share",
        ] {
            m.insert(name.into(), un(why));
        }
    }

    m.insert(
        "context_switches_per_mib".into(),
        match scope.counters.get("context_switches") {
            Some(crate::capture::Reading::Value(v)) => ratio(*v as f64, mib, no_bytes),
            Some(crate::capture::Reading::Unavailable(why)) => un(why),
            None => un("perf counters were off (probes.counters)"),
        },
    );

    // Memory.
    let per_call_mib = inp.probes.per_call_window_bytes.unwrap_or(bytes as u64) as f64 / MIB;
    match &t.alloc {
        Some(a) if a.attached.is_empty() => {
            let why = "no allocator entry point was found to probe";
            for name in [
                "allocs_per_mib",
                "buffer_allocs_per_mib",
                "alloc_bytes_per_byte",
            ] {
                m.insert(name.into(), un(why));
            }
        }
        Some(a) => {
            m.insert(
                "allocs_per_mib".into(),
                ratio(a.calls as f64, per_call_mib, no_bytes),
            );
            let big: u64 = a
                .size_histogram
                .iter()
                .filter(|b| b.ge_ns >= 4096)
                .map(|b| b.count)
                .sum();
            m.insert(
                "buffer_allocs_per_mib".into(),
                ratio(big as f64, per_call_mib, no_bytes),
            );
            m.insert(
                "alloc_bytes_per_byte".into(),
                ratio(a.bytes as f64, per_call_mib * MIB, no_bytes),
            );
        }
        None => {
            let why = "the alloc probe was off (probes.alloc.enabled)";
            for name in [
                "allocs_per_mib",
                "buffer_allocs_per_mib",
                "alloc_bytes_per_byte",
            ] {
                m.insert(name.into(), un(why));
            }
        }
    }
    m.insert(
        "live_heap_growth_mib_per_s".into(),
        match &t.alloc {
            Some(a) if a.live_bytes.len() >= 3 => Metric::Value(slope(&a.live_bytes) / MIB),
            Some(_) => un("live heap not followed (probes.alloc.live) or too few samples"),
            None => un("the alloc probe was off (probes.alloc.enabled)"),
        },
    );
    m.insert(
        "peak_rss_mib".into(),
        match t.peak_rss_bytes {
            Some(b) => Metric::Value(b as f64 / MIB),
            None => un("VmHWM could not be read from /proc"),
        },
    );

    // Crypto.
    crypto_metrics(t, inp, bytes, &mut m);

    // Connections.
    let setups: Vec<_> = inp.workload.phases.iter().map(|p| p.setup_us).collect();
    if setups.iter().any(|s| s.count > 0) {
        // Phases keep percentiles, not samples: the p50 is their
        // connection-weighted mean, the p99 the worst phase's (an upper bound).
        let n: u64 = setups.iter().map(|s| s.count).sum();
        let p50 = setups.iter().map(|s| s.p50 * s.count as f64).sum::<f64>() / n as f64;
        let p99 = setups
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.p99)
            .fold(0.0, f64::max);
        m.insert("setup_p50_us".into(), Metric::Value(p50));
        m.insert("setup_p99_us".into(), Metric::Value(p99));
    } else {
        m.insert("setup_p50_us".into(), un("no connection was set up"));
        m.insert("setup_p99_us".into(), un("no connection was set up"));
    }
    m.insert(
        "upstream_connections".into(),
        match &t.sockets {
            _ if t.role != "client" => un("measured on the client endpoint only"),
            None => un("the target's sockets could not be inspected"),
            Some(s) if s.upstream == 0 && s.udp > 0 => un(
                "the client reaches the server over UDP (QUIC): connections share one socket, so the kernel cannot count them",
            ),
            Some(s) => Metric::Value(s.upstream as f64),
        },
    );
    m.insert(
        "upstream_connections_per_stream".into(),
        match &t.sockets {
            _ if t.role != "client" => un("measured on the client endpoint only"),
            None => un("the target's sockets could not be inspected"),
            Some(s) if s.upstream == 0 && s.udp > 0 => un(
                "the client reaches the server over UDP (QUIC): connections share one socket, so the kernel cannot count them",
            ),
            Some(s) => ratio(
                s.upstream as f64,
                s.inbound as f64,
                "no stream was open when the sockets were inspected",
            ),
        },
    );
    match &t.sockets {
        Some(s) if s.tcp > 0 => {
            m.insert(
                "keepalive_share".into(),
                Metric::Value(s.keepalive as f64 / s.tcp as f64),
            );
            m.insert(
                "nodelay_share".into(),
                Metric::Value(s.nodelay as f64 / s.tcp as f64),
            );
        }
        Some(s) => {
            let why = if s.udp > 0 {
                "no TCP socket: the target speaks QUIC, whose keep-alive and pacing live in the protocol"
            } else {
                "no connected TCP socket when the sockets were inspected"
            };
            m.insert("keepalive_share".into(), un(why));
            m.insert("nodelay_share".into(), un(why));
        }
        None => {
            let why = "the target's sockets could not be inspected";
            m.insert("keepalive_share".into(), un(why));
            m.insert("nodelay_share".into(), un(why));
        }
    }
    m
}

fn crypto_metrics(t: &Target, inp: &MetricInputs, bytes: f64, m: &mut BTreeMap<String, Metric>) {
    let un = |why: &str| Metric::Unavailable(why.to_string());
    let all_rows = t.crypto.as_ref().map(|c| c.symbols.as_slice());
    // Handshake markers are not ciphers: they count handshakes.
    let cipher_rows: Option<Vec<crate::report::CryptoSymbolRow>> = all_rows.map(|r| {
        r.iter()
            .filter(|s| s.primitive != "handshake")
            .cloned()
            .collect()
    });
    let rows = cipher_rows.as_deref();
    let calls: u64 = rows.map_or(0, |r| r.iter().map(|s| s.calls).sum());
    match rows {
        None => {
            let why = "the crypto probe was off (probes.crypto.enabled)";
            for name in ["crypto_software_share", "crypto_record_bytes"] {
                m.insert(name.into(), un(why));
            }
        }
        Some(_) if calls == 0 => {
            let why = "no probed crypto function was called";
            for name in ["crypto_software_share", "crypto_record_bytes"] {
                m.insert(name.into(), un(why));
            }
        }
        Some(rows) => {
            let software: u64 = rows
                .iter()
                .filter(|s| s.accel == "software")
                .map(|s| s.calls)
                .sum();
            m.insert(
                "crypto_software_share".into(),
                Metric::Value(software as f64 / calls as f64),
            );
            // Only rows whose length is known and that run once per record.
            let known: Vec<_> = rows.iter().filter(|s| s.bytes.is_some()).collect();
            let kb: u64 = known.iter().filter_map(|s| s.bytes).sum();
            let kc: u64 = known.iter().map(|s| s.calls).sum();
            m.insert(
                "crypto_record_bytes".into(),
                ratio(
                    kb as f64,
                    kc as f64,
                    "no probed crypto function with a known length argument was called",
                ),
            );
        }
    }
    m.insert(
        "full_handshakes_per_stream".into(),
        match all_rows {
            None => un("the crypto probe was off (probes.crypto.enabled)"),
            Some(_) if t.role != "client" => un("counted on the client endpoint only"),
            Some(_) => {
                let marks: Vec<_> = all_rows
                    .into_iter()
                    .flatten().filter(|s| s.primitive == "handshake").collect();
                if marks.is_empty() {
                    un("no full-handshake marker function was found in the target (profiles/crypto.toml, primitive \"handshake\")")
                } else {
                    let n: u64 = marks.iter().map(|s| s.calls).sum();
                    ratio(n as f64, inp.streams as f64, "no stream was driven")
                }
            }
        },
    );
    let crypto_ns = t
        .costs
        .as_ref()
        .filter(|c| c.samples > 0)
        .and_then(|c| c.categories.iter().find(|k| k.category == "crypto"))
        .map(|k| k.cpu_ns);
    match crypto_ns {
        Some(ns) if ns > 0.0 && bytes > 0.0 => {
            let per_byte = ns / bytes;
            m.insert("crypto_ns_per_byte".into(), Metric::Value(per_byte));
            // The primitive the probe saw most; the calibration of it.
            let primitive = rows.and_then(|r| {
                r.iter()
                    .filter(|s| s.calls > 0)
                    .max_by_key(|s| s.calls)
                    .map(|s| s.primitive.clone())
            });
            m.insert(
                "crypto_vs_calibration".into(),
                match primitive {
                    None if rows.is_none() => un("the crypto probe was off (probes.crypto.enabled), so the primitive is unknown"),
                    None => un("the crypto probe saw no call, so the primitive is unknown"),
                    Some(p) => match inp
                        .calibration
                        .iter()
                        .find(|c| p.starts_with(&c.primitive) || c.primitive.starts_with(&p))
                    {
                        Some(c) if c.ns_per_byte > 0.0 => Metric::Value(per_byte / c.ns_per_byte),
                        _ => un(&format!("no micro-benchmark of {p} on this machine")),
                    },
                },
            );
        }
        Some(_) if bytes > 0.0 => {
            m.insert("crypto_ns_per_byte".into(), Metric::Value(0.0));
            m.insert(
                "crypto_vs_calibration".into(),
                un("no CPU sample fell in crypto code"),
            );
        }
        _ => {
            let why = "needs CPU samples of the target and payload bytes";
            m.insert("crypto_ns_per_byte".into(), un(why));
            m.insert("crypto_vs_calibration".into(), un(why));
        }
    }
}

/// The figures the data-path metrics read: the phases in
/// `Target::metrics_phases` when they are fewer than all (the bulk ones),
/// else the whole run's totals.
struct Scope {
    syscalls: Vec<crate::report::SyscallCount>,
    counters: BTreeMap<String, crate::capture::Reading>,
    /// CPU time of the scoped phases, when they are a subset and the
    /// task-clock counter ran.
    task_clock_ns: Option<u64>,
    bytes: f64,
}

impl Scope {
    fn of(t: &Target, w: &Workload) -> Scope {
        use crate::capture::Reading;
        let subset = !t.metrics_phases.is_empty() && t.metrics_phases.len() < w.phases.len();
        if !subset {
            return Scope {
                syscalls: t
                    .syscalls
                    .iter()
                    .map(|r| crate::report::SyscallCount {
                        name: r.name.clone(),
                        count: r.count,
                        errors: r.errors,
                        bytes: r.bytes,
                    })
                    .collect(),
                counters: t.counters.clone(),
                task_clock_ns: None,
                bytes: window_bytes(w) as f64,
            };
        }
        let mut syscalls: BTreeMap<String, crate::report::SyscallCount> = BTreeMap::new();
        let mut counters: BTreeMap<String, Reading> = BTreeMap::new();
        for f in t
            .phases
            .iter()
            .filter(|f| t.metrics_phases.contains(&f.phase))
        {
            for c in &f.syscalls {
                let e =
                    syscalls
                        .entry(c.name.clone())
                        .or_insert_with(|| crate::report::SyscallCount {
                            name: c.name.clone(),
                            count: 0,
                            errors: 0,
                            bytes: 0,
                        });
                e.count += c.count;
                e.errors += c.errors;
                e.bytes += c.bytes;
            }
            for (name, r) in &f.counters {
                let merged = match (counters.get(name), r) {
                    (None, r) => r.clone(),
                    (Some(Reading::Value(a)), Reading::Value(b)) => Reading::Value(a + b),
                    (Some(Reading::Unavailable(why)), _) | (_, Reading::Unavailable(why)) => {
                        Reading::Unavailable(why.clone())
                    }
                };
                counters.insert(name.clone(), merged);
            }
        }
        let task_clock_ns = match counters.get("task_clock_ns") {
            Some(Reading::Value(v)) => Some(*v),
            _ => None,
        };
        let bytes = t
            .metrics_phases
            .iter()
            .filter_map(|&i| w.phases.get(i))
            .map(|p| p.window_bytes())
            .sum::<u64>() as f64;
        Scope {
            syscalls: syscalls.into_values().collect(),
            counters,
            task_clock_ns,
            bytes,
        }
    }
}

/// Least-squares slope of live bytes over time, bytes per second.
fn slope(points: &[crate::report::LiveSample]) -> f64 {
    let n = points.len() as f64;
    let mt = points.iter().map(|p| p.t_s).sum::<f64>() / n;
    let mb = points.iter().map(|p| p.bytes as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in points {
        num += (p.t_s - mt) * (p.bytes as f64 - mb);
        den += (p.t_s - mt) * (p.t_s - mt);
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LiveSample;

    #[test]
    fn lookup_knows_cost_and_catalogue_metrics() {
        assert_eq!(
            lookup("allocs_per_mib").map(|d| d.better),
            Some(Better::Lower)
        );
        assert_eq!(
            lookup("cost.copy.ns_per_byte").map(|d| d.unit),
            Some("ns/B")
        );
        assert!(lookup("cost.nonsense.share").is_none());
        assert_eq!(
            workload_def("p1.throughput_bps").map(|d| d.better),
            Some(Better::Higher)
        );
        assert!(workload_def("px.throughput_bps").is_none());
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<LiveSample> = (0..5)
            .map(|i| LiveSample {
                t_s: i as f64,
                bytes: 1000 + 250 * i,
            })
            .collect();
        assert!((slope(&pts) - 250.0).abs() < 1e-9);
    }
}
