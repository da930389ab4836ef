//! metrics: the named numbers the checklist judges and `compare` tests,
//! computed per target from the rest of the report.
//!
//! Every metric has one definition here ([`CATALOGUE`]): its unit and which
//! direction is better. A metric that could not be measured in a run is
//! [`Metric::Unavailable`] with the reason, never a guess.

mod connections;
mod cpu;
mod crypto;
mod memory;
mod syscalls;

use std::collections::BTreeMap;

use crate::report::{Metric, ProbesInfo, Target, Workload};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// The smallest change of a metric that matters: `compare` calls a metric
/// better or worse only when the whole interval of its change lies beyond
/// it (docs/compare.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// This fraction of A's value (0.02 = 2 %).
    Relative(f64),
    /// This much in the metric's unit (for counts, their resolution).
    Absolute(f64),
    /// A share of CPU samples: judged through its category's
    /// `cost.<category>.ns_per_byte`, since one category falling raises
    /// every other category's share.
    CpuShare,
}

/// One metric's definition.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub min_effect: Effect,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    unit: &'static str,
    better: Better,
    min_effect: Effect,
    doc: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        unit,
        better,
        min_effect,
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
        Effect::Relative(0.02),
        "CPU time of the target per payload byte moved",
    ),
    def(
        "copy_share",
        "share",
        Better::Lower,
        Effect::CpuShare,
        "share of CPU samples copying payload: memcpy/memmove in user space and the kernel's copies to and from user memory",
    ),
    def(
        "zero_copy_share",
        "share",
        Better::Higher,
        Effect::Absolute(0.05),
        "share of bytes moved by splice/sendfile/tee/vmsplice/copy_file_range",
    ),
    def(
        "vectored_share",
        "share",
        Better::Higher,
        Effect::Absolute(0.05),
        "share of read/write syscalls that are vectored (readv/writev/sendmsg/recvmsg…)",
    ),
    def(
        "bytes_per_read",
        "B",
        Better::Higher,
        Effect::Relative(0.05),
        "payload bytes per read-family syscall",
    ),
    def(
        "bytes_per_write",
        "B",
        Better::Higher,
        Effect::Relative(0.05),
        "payload bytes per write-family syscall",
    ),
    def(
        "syscalls_per_mib",
        "1/MiB",
        Better::Lower,
        Effect::Relative(0.05),
        "syscalls per MiB moved",
    ),
    def(
        "wakeups_per_mib",
        "1/MiB",
        Better::Lower,
        Effect::Relative(0.05),
        "epoll/poll/futex calls per MiB moved",
    ),
    def(
        "context_switches_per_mib",
        "1/MiB",
        Better::Lower,
        Effect::Relative(0.05),
        "context switches per MiB moved (perf software counter)",
    ),
    def(
        "allocs_per_mib",
        "1/MiB",
        Better::Lower,
        Effect::Relative(0.05),
        "allocator calls per MiB moved",
    ),
    def(
        "buffer_allocs_per_mib",
        "1/MiB",
        Better::Lower,
        Effect::Relative(0.05),
        "allocations of 4 KiB or more per MiB moved",
    ),
    def(
        "alloc_bytes_per_byte",
        "B/B",
        Better::Lower,
        Effect::Relative(0.05),
        "bytes allocated per payload byte moved",
    ),
    def(
        "peak_rss_mib",
        "MiB",
        Better::Lower,
        Effect::Relative(0.05),
        "peak resident set size (VmHWM)",
    ),
    def(
        "live_heap_growth_mib_per_s",
        "MiB/s",
        Better::Lower,
        Effect::Absolute(0.01),
        "slope of live sampled heap bytes over the run",
    ),
    def(
        "crypto_software_share",
        "share",
        Better::Lower,
        Effect::Absolute(0.05),
        "share of crypto calls in software fallbacks",
    ),
    def(
        "crypto_ns_per_byte",
        "ns/B",
        Better::Lower,
        Effect::Relative(0.02),
        "crypto CPU time per payload byte moved",
    ),
    def(
        "crypto_vs_calibration",
        "ratio",
        Better::Lower,
        Effect::Relative(0.05),
        "crypto ns/byte over the same primitive's micro-benchmark on this machine",
    ),
    def(
        "crypto_record_bytes",
        "B",
        Better::Higher,
        Effect::Relative(0.05),
        "mean bytes per seal/open call",
    ),
    def(
        "full_handshakes_per_stream",
        "ratio",
        Better::Lower,
        Effect::Absolute(0.05),
        "full TLS handshakes (server signature checks by the client) per stream driven",
    ),
    def(
        "upstream_connections",
        "",
        Better::Lower,
        Effect::Absolute(1.0),
        "the client endpoint's open TCP connections to the server, mid-run",
    ),
    def(
        "setup_p50_us",
        "µs",
        Better::Lower,
        Effect::Relative(0.05),
        "median connection set-up, TCP connect to SOCKS5 success, over the set-up phase's connections (without one: the traffic phases' medians weighted by connections)",
    ),
    def(
        "setup_p99_us",
        "µs",
        Better::Lower,
        Effect::Relative(0.10),
        "99th percentile connection set-up over the set-up phase's connections (needs 299; without the phase: the worst traffic phase's)",
    ),
    def(
        "upstream_connections_per_stream",
        "ratio",
        Better::Lower,
        Effect::Absolute(0.05),
        "the client endpoint's TCP connections to the server per stream it accepted",
    ),
    def(
        "keepalive_share",
        "share",
        Better::Higher,
        Effect::Absolute(0.05),
        "share of the target's TCP sockets with SO_KEEPALIVE",
    ),
    def(
        "nodelay_share",
        "share",
        Better::Higher,
        Effect::Absolute(0.05),
        "share of the target's TCP sockets with TCP_NODELAY",
    ),
    def(
        "runtime_share",
        "share",
        Better::Lower,
        Effect::CpuShare,
        "share of CPU samples in the async runtime and scheduler",
    ),
    def(
        "kernel_io_share",
        "share",
        Better::Lower,
        Effect::CpuShare,
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
        Effect::Relative(0.02),
        "median bytes/s of the phase, up + down",
    ),
    def(
        "rr_per_s",
        "1/s",
        Better::Higher,
        Effect::Relative(0.02),
        "round trips per second (rr)",
    ),
    def(
        "latency_p50_us",
        "µs",
        Better::Lower,
        Effect::Relative(0.03),
        "median round-trip latency (rr)",
    ),
    def(
        "latency_p99_us",
        "µs",
        Better::Lower,
        Effect::Relative(0.05),
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
            Effect::Relative(0.05),
            "CPU ns per byte in the category",
        )),
        "share" => Some(def(
            "cost",
            "share",
            Better::Lower,
            Effect::CpuShare,
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
            m.insert(format!("p{i}.latency_p50_us"), percentile(l, "p50"));
            m.insert(format!("p{i}.latency_p99_us"), percentile(l, "p99"));
        }
    }
    m
}

/// A percentile as a metric: its value, or "too few samples" so that no
/// rule or gate judges it.
fn percentile(l: &crate::report::LatencySummary, label: &str) -> Metric {
    match l.percentile(label) {
        Some(p) => match (p.value(), p.too_few()) {
            (Some(v), _) => Metric::Value(v),
            (None, why) => Metric::Unavailable(why.unwrap_or_default()),
        },
        None => un(&format!("{label} is not in the latency summary")),
    }
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

/// The reason of every per-byte metric of a run that moved nothing.
const NO_BYTES: &str = "no payload moved in the measured windows";

fn un(why: &str) -> Metric {
    Metric::Unavailable(why.to_string())
}

fn ratio(num: f64, den: f64, why_zero: &str) -> Metric {
    if den > 0.0 {
        Metric::Value(num / den)
    } else {
        Metric::Unavailable(why_zero.to_string())
    }
}

/// Every catalogue metric of one target, family by family.
pub fn target_metrics(t: &Target, inp: &MetricInputs) -> BTreeMap<String, Metric> {
    let mut m = BTreeMap::new();
    let bytes = window_bytes(inp.workload) as f64;
    let scope = Scope::of(t, inp.workload);
    cpu::insert(t, &scope, bytes, &mut m);
    syscalls::insert(inp, &scope, &mut m);
    memory::insert(t, inp, bytes, &mut m);
    crypto::insert(t, inp, bytes, &mut m);
    connections::insert(t, inp, &mut m);
    m
}

/// The figures the data-path metrics read: the phases in
/// `Target::metrics_phases` when they are fewer than all (the bulk ones),
/// else the whole run's totals.
struct Scope {
    syscalls: Vec<crate::report::SyscallCount>,
    counters: BTreeMap<String, crate::report::Reading>,
    /// CPU time of the scoped phases, when they are a subset and the
    /// task-clock counter ran.
    task_clock_ns: Option<u64>,
    bytes: f64,
}

impl Scope {
    fn of(t: &Target, w: &Workload) -> Scope {
        use crate::report::Reading;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_metrics_only_with_samples_enough() {
        let r = fixture();
        let m = workload_metrics(&r.workload);
        // 5498 round trips in the rr phase: p50 and p99 both bounded.
        assert_eq!(value(&m, "p1.latency_p50_us"), 218.111);
        assert_eq!(value(&m, "p1.latency_p99_us"), 5_451.775);
        let mut few = r.workload.clone();
        if let Some(l) = few.phases[1].latency_us.as_mut() {
            for p in &mut l.percentiles {
                p.samples = 298;
                if p.quantile > 0.95 {
                    p.estimate = crate::report::PercentileEstimate::TooFewSamples {
                        needed: crate::order_statistics::samples_needed(p.quantile),
                    };
                }
            }
        }
        let m = workload_metrics(&few);
        assert_eq!(value(&m, "p1.latency_p50_us"), 218.111);
        assert_eq!(
            why(&m, "p1.latency_p99_us"),
            "too few samples (n=298; p99 needs 299)"
        );
    }

    #[test]
    fn setup_percentiles_come_from_the_setup_phase() {
        use crate::{order_statistics, report};
        let r = fixture();
        let summary = |n: u64| report::LatencySummary {
            count: n,
            mean: n as f64 / 2.0,
            percentiles: order_statistics::REPORTED
                .iter()
                .map(|&q| report::Percentile::from(&order_statistics::estimate(q, n, |k| k as f64)))
                .collect(),
            max: n as f64,
        };
        let phase = |n: u64| report::SetupPhase {
            planned: 300,
            connections: n as usize,
            request_size: 64,
            response_size: 1024,
            elapsed_s: 0.5,
            setup_us: summary(n),
            first_response_us: summary(n),
            integrity: r.workload.phases[0].integrity.clone(),
        };
        let metrics_with = |n: u64| {
            let mut w = r.workload.clone();
            w.setup = Some(phase(n));
            let inputs = MetricInputs {
                workload: &w,
                probes: &r.probes,
                calibration: &r.calibration,
                streams: 8,
            };
            target_metrics(&r.targets[1], &inputs)
        };
        let m = metrics_with(300);
        // The ⌈0.5·300⌉-th and ⌈0.99·300⌉-th of samples 1, 2, … 300.
        assert_eq!(value(&m, "setup_p50_us"), 150.0);
        assert_eq!(value(&m, "setup_p99_us"), 297.0);
        // Cut short by its time bound at 298 connections: p99 unjudged.
        let m = metrics_with(298);
        assert_eq!(value(&m, "setup_p50_us"), 149.0);
        assert_eq!(
            why(&m, "setup_p99_us"),
            "too few samples (n=298; p99 needs 299)"
        );
    }

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

    /// The trimmed real tcp run the render tests use.
    fn fixture() -> crate::report::Report {
        serde_json::from_str(include_str!("../../../tests/data/run-tcp/report.json"))
            .expect("fixture report")
    }

    fn metrics_of(r: &crate::report::Report, t: &Target) -> BTreeMap<String, Metric> {
        target_metrics(
            t,
            &MetricInputs {
                workload: &r.workload,
                probes: &r.probes,
                calibration: &r.calibration,
                streams: 8,
            },
        )
    }

    fn value(m: &BTreeMap<String, Metric>, name: &str) -> f64 {
        match m.get(name) {
            Some(Metric::Value(v)) => *v,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn why<'a>(m: &'a BTreeMap<String, Metric>, name: &str) -> &'a str {
        match m.get(name) {
            Some(Metric::Unavailable(why)) => why,
            other => panic!("{name} should be unavailable: {other:?}"),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// Window bytes of the fixture's two phases: 174128834 + 161125395
    /// (bulk) + 351872 + 5629952 (rr).
    const FIXTURE_MIB: f64 = 341_236_053.0 / MIB;

    #[test]
    fn every_catalogue_metric_is_there_for_every_fixture_target() {
        let r = fixture();
        for t in &r.targets {
            let m = metrics_of(&r, t);
            for d in CATALOGUE {
                assert!(m.contains_key(d.name), "{} {}", t.role, d.name);
            }
        }
    }

    #[test]
    fn syscall_family_of_the_fixture_server() {
        let r = fixture();
        let server = &r.targets[0];
        assert_eq!(server.role, crate::report::Role::Server);
        let m = metrics_of(&r, server);
        // futex 6355 + epoll_wait 5184 + sendto 16186 + recvfrom 16122 +
        // write 599 over the whole run's windows (no metric phases recorded).
        assert!(close(value(&m, "syscalls_per_mib"), 44_446.0 / FIXTURE_MIB));
        assert!(close(value(&m, "wakeups_per_mib"), 11_539.0 / FIXTURE_MIB));
        // recvfrom: 16122 calls of which 29 failed.
        assert!(close(value(&m, "bytes_per_read"), 337_342_005.0 / 16_093.0));
        assert!(close(
            value(&m, "bytes_per_write"),
            (337_362_869.0 + 4_792.0) / (16_186.0 + 599.0)
        ));
        assert_eq!(value(&m, "vectored_share"), 0.0);
        assert_eq!(value(&m, "zero_copy_share"), 0.0);
        assert!(close(
            value(&m, "context_switches_per_mib"),
            9_266.0 / FIXTURE_MIB
        ));
    }

    #[test]
    fn memory_crypto_and_connection_families_of_the_fixture_client() {
        let r = fixture();
        let client = &r.targets[1];
        assert_eq!(client.role, crate::report::Role::Client);
        let m = metrics_of(&r, client);
        // Allocations are per byte of the per-call pass (468778144 bytes);
        // the tcp endpoint made none in it.
        assert_eq!(value(&m, "allocs_per_mib"), 0.0);
        assert_eq!(value(&m, "buffer_allocs_per_mib"), 0.0);
        assert_eq!(value(&m, "peak_rss_mib"), 6_475_776.0 / MIB);
        assert!(why(&m, "live_heap_growth_mib_per_s").contains("too few samples"));
        assert_eq!(
            why(&m, "crypto_software_share"),
            "no probed crypto function was called"
        );
        assert!(why(&m, "cpu_ns_per_byte").contains("cpu probe was off"));
        // Set-up: 4 connections per phase bound no percentile, so neither is
        // a number a rule or gate could judge.
        assert_eq!(
            why(&m, "setup_p50_us"),
            "too few samples (n=4; p50 needs 5)"
        );
        assert_eq!(
            why(&m, "setup_p99_us"),
            "too few samples (n=4; p99 needs 299)"
        );
        let c = crate::analyze::checklist::Checklist::parse(
            crate::analyze::checklist::DEFAULT_CHECKLIST,
            "checklist.toml",
        )
        .expect("shipped checklist");
        let mut judged = client.clone();
        judged.metrics = m.clone();
        let handshake = c
            .evaluate(&[judged], "tcp")
            .into_iter()
            .find(|r| r.id == "crypto.handshake")
            .expect("rule crypto.handshake");
        assert_eq!(handshake.verdict, crate::report::Verdict::NotEvaluated);
        assert_eq!(handshake.value, None);
        assert!(
            handshake
                .evidence
                .contains("too few samples (n=4; p50 needs 5)"),
            "{}",
            handshake.evidence
        );
        assert!(why(&m, "keepalive_share").contains("could not be inspected"));
        assert!(why(&m, "upstream_connections").contains("could not be inspected"));
        // On the server the same metric is not the server's to measure.
        let s = metrics_of(&r, &r.targets[0]);
        assert!(why(&s, "upstream_connections").contains("client endpoint only"));
    }

    #[test]
    fn metric_phases_scope_the_data_path_and_cpu_metrics() {
        use crate::report::{
            CategoryCost, CostAttribution, PhaseFigures, Reading, SocketSummary, SyscallCount,
        };
        let r = fixture();
        let mut t = r.targets[1].clone();
        let count = |name: &str, count, bytes| SyscallCount {
            name: name.into(),
            count,
            errors: 0,
            bytes,
        };
        let bulk_bytes = 174_128_834u64 + 161_125_395;
        t.phases = vec![
            PhaseFigures {
                phase: 0,
                syscalls: vec![
                    count("recvfrom", 200, 100 << 20),
                    count("sendto", 100, 100 << 20),
                ],
                counters: BTreeMap::from([
                    ("context_switches".to_string(), Reading::Value(64)),
                    ("task_clock_ns".to_string(), Reading::Value(bulk_bytes)),
                ]),
            },
            PhaseFigures {
                phase: 1,
                syscalls: vec![count("recvfrom", 5000, 1000)],
                counters: BTreeMap::from([("context_switches".to_string(), Reading::Value(9000))]),
            },
        ];
        t.metrics_phases = vec![0];
        t.costs = Some(CostAttribution {
            samples: 100,
            cpu_ns: 4e9,
            cpu_ns_source: "task-clock counter".into(),
            bytes: 341_236_053,
            categories: vec![CategoryCost {
                category: "crypto".into(),
                samples: 25,
                share: 0.25,
                cpu_ns: 1e9,
                ns_per_byte: None,
                interval: crate::report::ShareInterval::Unavailable("not computed here".into()),
                measuring: false,
            }],
            unclassified: Vec::new(),
        });
        t.sockets = Some(SocketSummary {
            tcp: 8,
            keepalive: 2,
            nodelay: 8,
            udp: 0,
            inbound: 4,
            upstream: 4,
            ..SocketSummary::default()
        });
        let m = metrics_of(&r, &t);
        let bulk_mib = bulk_bytes as f64 / MIB;
        // Only the bulk phase: its 300 calls, not the rr phase's 5000.
        assert!(close(value(&m, "syscalls_per_mib"), 300.0 / bulk_mib));
        assert_eq!(value(&m, "bytes_per_read"), 524_288.0);
        assert_eq!(value(&m, "bytes_per_write"), 1_048_576.0);
        assert!(close(
            value(&m, "context_switches_per_mib"),
            64.0 / bulk_mib
        ));
        // The bulk phase's task clock over its bytes.
        assert_eq!(value(&m, "cpu_ns_per_byte"), 1.0);
        assert_eq!(value(&m, "cost.crypto.share"), 0.25);
        assert!(close(
            value(&m, "cost.crypto.ns_per_byte"),
            1e9 / 341_236_053.0
        ));
        assert!(why(&m, "copy_share").contains("missing from profiles/attribution.toml"));
        assert_eq!(value(&m, "keepalive_share"), 0.25);
        assert_eq!(value(&m, "nodelay_share"), 1.0);
        assert_eq!(value(&m, "upstream_connections"), 4.0);
        assert_eq!(value(&m, "upstream_connections_per_stream"), 1.0);
    }

    /// A socket option that could not be read is unknown, never "off":
    /// the share is over the sockets where it was read, and with none
    /// read, or a socket that could not be borrowed, not evaluated.
    #[test]
    fn unreadable_socket_options_are_unknown_not_off() {
        let r = fixture();
        let mut t = r.targets[1].clone();
        use crate::report::SocketSummary;
        let sockets = |keepalive_unknown, nodelay_unknown, unreadable| SocketSummary {
            tcp: 8,
            keepalive: 2,
            nodelay: 4,
            keepalive_unknown,
            nodelay_unknown,
            unreadable,
            inbound: 4,
            upstream: 4,
            ..SocketSummary::default()
        };
        t.sockets = Some(sockets(4, 8, 0));
        let m = metrics_of(&r, &t);
        assert_eq!(value(&m, "keepalive_share"), 0.5);
        assert!(why(&m, "nodelay_share").contains("TCP_NODELAY could not be read on any"));
        t.sockets = Some(sockets(0, 0, 1));
        let m = metrics_of(&r, &t);
        for name in ["keepalive_share", "nodelay_share"] {
            assert!(why(&m, name).contains("1 of the target's sockets could not be borrowed"));
        }
    }

    #[test]
    fn splice_leaves_read_and_write_sizes_unjudged() {
        use crate::report::SyscallRow;
        let r = fixture();
        let mut t = r.targets[0].clone();
        let row = |name: &str, count, bytes| SyscallRow {
            name: name.into(),
            nr: 0,
            count,
            errors: 0,
            total_ns: 0,
            mean_ns: 0.0,
            max_ns: 0,
            bytes,
            latency: Vec::new(),
        };
        t.syscalls = vec![
            row("splice", 400, 3_000_000),
            row("recvfrom", 10, 600),
            row("writev", 10, 400),
        ];
        let m = metrics_of(&r, &t);
        assert!(why(&m, "bytes_per_read").contains("splice"));
        assert!(why(&m, "vectored_share").contains("splice"));
        assert_eq!(value(&m, "zero_copy_share"), 3_000_000.0 / 3_001_000.0);
        // With the probe off, every syscall metric says so.
        let mut off = r.clone();
        off.probes.options.syscalls = false;
        let m = metrics_of(&off, &t);
        for name in ["syscalls_per_mib", "bytes_per_read", "zero_copy_share"] {
            assert!(why(&m, name).contains("probes.syscalls"), "{name}");
        }
    }
}
