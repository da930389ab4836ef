//! The one place where the runtime's types become report types.
//!
//! capture, drive and chain keep their own types for their own work; what
//! reaches report.json is converted here, field by field, so that a change
//! to a runtime type fails to compile here instead of silently changing
//! the schema that compare and baselines read back.

use crate::{capture, chain, drive, order_statistics};

use super::{
    AllocAttach, AllocProbeOptions, ConnectionBytes, CryptoProbeOptions, Integrity,
    IntegrityStatus, LatencySummary, Percentile, PercentileEstimate, Phase, ProbeOptions,
    ProgramCost, Reading, Role, SecondSample, SetupPhase, Throughput, WindowLoad,
};

impl From<chain::Role> for Role {
    fn from(r: chain::Role) -> Role {
        match r {
            chain::Role::Client => Role::Client,
            chain::Role::Server => Role::Server,
        }
    }
}

impl From<&capture::Reading> for Reading {
    fn from(r: &capture::Reading) -> Reading {
        match r {
            capture::Reading::Value(v) => Reading::Value(*v),
            capture::Reading::Unavailable(why) => Reading::Unavailable(why.clone()),
        }
    }
}

impl From<&capture::AllocAttach> for AllocAttach {
    fn from(a: &capture::AllocAttach) -> AllocAttach {
        AllocAttach {
            symbol: a.symbol.clone(),
            file: a.file.clone(),
            role: a.role.clone(),
            return_probe: a.return_probe,
        }
    }
}

impl From<&capture::CaptureOptions> for ProbeOptions {
    fn from(o: &capture::CaptureOptions) -> ProbeOptions {
        ProbeOptions {
            syscalls: o.syscalls,
            syscall_time: o.syscall_time,
            syscall_stack_every: o.syscall_stack_every,
            cpu_frequency_hz: o.cpu_frequency_hz,
            offcpu: o.offcpu,
            offcpu_stack_interval_us: o.offcpu_stack_interval_ns / 1000,
            counters: o.counters,
            alloc: o.alloc.as_ref().map(|a| AllocProbeOptions {
                sample_bytes: a.sample_bytes,
                live: a.live,
            }),
            crypto: o.crypto.as_ref().map(|c| CryptoProbeOptions {
                return_probes: c.return_probes,
            }),
            unwind: Some(
                match o.unwind {
                    capture::UnwindMode::Auto => "auto",
                    capture::UnwindMode::FramePointers => "frame-pointers",
                    capture::UnwindMode::Dwarf => "dwarf",
                }
                .to_string(),
            ),
            floor: o.floor,
            program_costs: o.program_stats,
            alternate: o.alternate,
        }
    }
}

impl From<&capture::ProgramCost> for ProgramCost {
    fn from(p: &capture::ProgramCost) -> ProgramCost {
        ProgramCost {
            program: p.program.clone(),
            run_count: p.run_count,
            run_time_ns: p.run_time_ns,
        }
    }
}

impl From<drive::IntegrityStatus> for IntegrityStatus {
    fn from(s: drive::IntegrityStatus) -> IntegrityStatus {
        match s {
            drive::IntegrityStatus::Ok => IntegrityStatus::Ok,
            drive::IntegrityStatus::Mismatch => IntegrityStatus::Mismatch,
        }
    }
}

impl From<&order_statistics::QuantileEstimate> for Percentile {
    fn from(e: &order_statistics::QuantileEstimate) -> Percentile {
        Percentile {
            label: order_statistics::label(e.q),
            quantile: e.q,
            samples: e.samples,
            estimate: match e.bounds {
                Some(b) => PercentileEstimate::Value {
                    value: b.value,
                    lower: b.lower,
                    upper: b.upper,
                },
                None => PercentileEstimate::TooFewSamples {
                    needed: order_statistics::samples_needed(e.q),
                },
            },
        }
    }
}

impl From<&drive::LatencySummary> for LatencySummary {
    fn from(l: &drive::LatencySummary) -> LatencySummary {
        LatencySummary {
            count: l.count,
            mean: l.mean,
            percentiles: l.percentiles.iter().map(Percentile::from).collect(),
            max: l.max,
        }
    }
}

impl From<&drive::PhaseResult> for Phase {
    fn from(p: &drive::PhaseResult) -> Phase {
        Phase {
            pattern: p.pattern.clone(),
            connections: p.connections,
            direction: p.direction.clone(),
            warmup_s: p.warmup_s,
            measured_s: p.measured_s,
            bytes_up: p.bytes_up,
            bytes_down: p.bytes_down,
            window_bytes_up: p.window_bytes_up,
            window_bytes_down: p.window_bytes_down,
            throughput: Throughput {
                up_bps_median: p.throughput.up_bps_median,
                up_bps_mean: p.throughput.up_bps_mean,
                down_bps_median: p.throughput.down_bps_median,
                down_bps_mean: p.throughput.down_bps_mean,
            },
            timeseries: p
                .timeseries
                .iter()
                .map(|s| SecondSample {
                    t_s: s.t_s,
                    span_s: s.span_s,
                    bytes_up: s.bytes_up,
                    bytes_down: s.bytes_down,
                    round_trips: s.round_trips,
                    latency_p50_us: s.latency_p50_us,
                    latency_p99_us: s.latency_p99_us,
                })
                .collect(),
            latency_us: p.latency_us.as_ref().map(LatencySummary::from),
            setup_us: LatencySummary::from(&p.setup_us),
            round_trips: p.round_trips,
            integrity: Integrity::from(&p.integrity),
            bytes_per_connection: p.bytes_per_connection,
            schedule: p.schedule.as_ref().map(Into::into),
            churn: p.churn.as_ref().map(Into::into),
            goodput: p.window_bytes_up_received.map(|up| {
                let per_s = |b: u64| {
                    if p.measured_s > 0.0 {
                        b as f64 / p.measured_s
                    } else {
                        0.0
                    }
                };
                super::Goodput {
                    up_bytes: up,
                    down_bytes: p.window_bytes_down,
                    up_bps: per_s(up),
                    down_bps: per_s(p.window_bytes_down),
                }
            }),
        }
    }
}

impl From<&drive::Integrity> for Integrity {
    fn from(i: &drive::Integrity) -> Integrity {
        Integrity {
            status: i.status.into(),
            connections_checked: i.connections_checked,
            bytes_checked: i.bytes_checked,
            mismatches: i.mismatches.clone(),
            connections: i
                .connections
                .iter()
                .map(|c| ConnectionBytes {
                    id: c.id,
                    bytes_up: c.bytes_up,
                    bytes_down: c.bytes_down,
                })
                .collect(),
        }
    }
}

impl From<&drive::SetupResult> for SetupPhase {
    fn from(s: &drive::SetupResult) -> SetupPhase {
        SetupPhase {
            planned: s.planned,
            connections: s.connections,
            request_size: s.request_size,
            response_size: s.response_size,
            elapsed_s: s.elapsed_s,
            setup_us: LatencySummary::from(&s.setup_us),
            first_response_us: LatencySummary::from(&s.first_response_us),
            integrity: Integrity::from(&s.integrity),
        }
    }
}

/// One window's load, in cores, labelled with its pass and phase.
pub fn window_load(pass: &str, phase: usize, w: &capture::machine_load::WindowLoad) -> WindowLoad {
    let cores = |s: f64| if w.seconds > 0.0 { s / w.seconds } else { 0.0 };
    WindowLoad {
        pass: pass.to_string(),
        phase,
        opened_unix_s: w.opened_unix_s,
        seconds: w.seconds,
        steal_cores: cores(w.steal_s),
        irq_cores: cores(w.irq_s),
        targets_cores: cores(w.targets_s),
        runner_cores: cores(w.runner_s),
        other_cores: cores(w.other_s),
    }
}

/// The network section from the router's counters and the delay line.
pub fn network(
    net: &chain::network::Network,
    rtt: &[f64],
    run: (
        &chain::network::impair::Snapshot,
        &chain::network::impair::Snapshot,
    ),
    windows: &[(
        String,
        usize,
        chain::network::impair::Snapshot,
        chain::network::impair::Snapshot,
    )],
) -> super::NetworkReport {
    use chain::network::{impair::Direction, Host, LossModel};
    let a = net.addresses;
    let host = |h: Host, addresses: Vec<String>| super::HostAddress {
        host: match h {
            Host::Generator => "generator",
            Host::Client => "client",
            Host::Server => "server",
            Host::Router => "router",
        }
        .to_string(),
        namespace: net.namespace(h),
        addresses,
    };
    let s = a.subnets;
    let hosts = vec![
        host(Host::Generator, vec![a.generator.to_string()]),
        host(Host::Client, vec![a.client.to_string()]),
        host(Host::Server, vec![a.server.to_string()]),
        host(
            Host::Router,
            [s.generator, s.client, s.server]
                .iter()
                .map(|n| n.host(1).to_string())
                .collect(),
        ),
    ];
    let link = |d: Direction| {
        let l = d.link(net);
        // Bursty drops come in runs: fewer independent trials than packets.
        let rho = match l.loss_model {
            LossModel::Bursty if l.loss_percent > 0.0 => {
                chain::network::delay_line::loss_correlation(
                    l.loss_percent / 100.0,
                    l.burst_packets,
                )
            }
            _ => 0.0,
        };
        super::LinkReport {
            settings: super::LinkSettings {
                delay_ms: l.delay_ms,
                jitter_ms: l.jitter_ms,
                rate_mbit: l.rate_mbit,
                loss_percent: l.loss_percent,
                loss_model: match l.loss_model {
                    LossModel::Random => "random",
                    LossModel::Bursty => "bursty",
                }
                .to_string(),
                burst_packets: (l.loss_model == LossModel::Bursty).then_some(l.burst_packets),
                queue_bytes: l.queue_limit_bytes(),
            },
            run: link_measure(run.0, run.1, d, l.rate_mbit.is_some(), rho),
            windows: windows
                .iter()
                .map(|(pass, phase, x, y)| super::LinkWindow {
                    pass: pass.clone(),
                    phase: *phase,
                    measure: link_measure(x, y, d, l.rate_mbit.is_some(), rho),
                    goodput_mbit_s: None,
                })
                .collect(),
        }
    };
    let ms = |v: Option<&f64>| v.map(|s| s * 1e3);
    let rtt_report = super::RttReport {
        set_ms: net.spec.up.delay_ms + net.spec.down.delay_ms,
        attempts: chain::network::rtt::SAMPLES,
        samples: rtt.len(),
        median_ms: ms(rtt.get(rtt.len() / 2)),
        min_ms: ms(rtt.first()),
        max_ms: ms(rtt.last()),
        method: "TCP handshake, client namespace to server namespace, idle link".into(),
    };
    let delay_line =
        net.delay_line
            .as_ref()
            .and_then(|d| d.stats())
            .map(|st| super::DelayLineReport {
                cpu_s: st.cpu_s,
                wall_s: st.wall_s,
                cpu_share: if st.wall_s > 0.0 {
                    st.cpu_s / st.wall_s
                } else {
                    0.0
                },
                packets: st.packets,
                ns_per_packet: (st.packets > 0).then(|| st.cpu_s * 1e9 / st.packets as f64),
                timing_error_p50_us: st.error_p50_us,
                timing_error_p99_us: st.error_p99_us,
                timing_error_max_us: st.error_max_us,
                write_errors: st.write_errors,
            });
    let mut notes = net.notes.clone();
    notes.push("the router's forwarding (softirq) runs on whichever CPU takes the packet, which can be a target's: it can show up in that CPU's irq/softirq time".into());
    notes.push("retransmissions inside encrypted QUIC connections cannot be counted from outside; the router counts packets, not the protocol's repairs".into());
    super::NetworkReport {
        mode: "namespaces".into(),
        hosts,
        up: link(Direction::Up),
        down: link(Direction::Down),
        rtt: rtt_report,
        delay_line,
        notes,
    }
}

/// Each main-pass link window's goodput, from its phase's result in the
/// report (the sink's received bytes up, the generator's down).
pub fn network_goodput(network: &mut super::NetworkReport, phases: &[Phase]) {
    for (link, up) in [(&mut network.up, true), (&mut network.down, false)] {
        for w in link.windows.iter_mut().filter(|w| w.pass == "main") {
            w.goodput_mbit_s = phases
                .get(w.phase)
                .and_then(|p| p.goodput)
                .map(|g| if up { g.up_bps } else { g.down_bps } * 8.0 / 1e6);
        }
    }
}

fn link_measure(
    a: &chain::network::impair::Snapshot,
    b: &chain::network::impair::Snapshot,
    d: chain::network::impair::Direction,
    limited: bool,
    rho: f64,
) -> super::LinkMeasure {
    let c = b.get(d).minus(a.get(d));
    let seconds = match (a.at, b.at) {
        (Some(x), Some(y)) => y.saturating_duration_since(x).as_secs_f64(),
        _ => 0.0,
    };
    let mbit = |bytes: u64| {
        if seconds > 0.0 {
            bytes as f64 * 8.0 / seconds / 1e6
        } else {
            0.0
        }
    };
    let lost = c.lost();
    super::LinkMeasure {
        seconds,
        packets: c.seen_packets,
        lost,
        loss: crate::analyze::binomial::clopper_pearson_correlated(
            lost,
            c.seen_packets,
            rho,
            0.95,
        )
        .map(|(low, high)| super::LossInterval {
            share: lost as f64 / c.seen_packets as f64,
            low,
            high,
            method: if rho > 0.0 {
                format!("clopper-pearson 95% over n(1-rho)/(1+rho) packets, rho = {rho:.4} (bursty loss: drops come in runs)")
            } else {
                "clopper-pearson 95%".into()
            },
        }),
        arrived_mbit_s: mbit(c.seen_bytes),
        limiter_mbit_s: limited.then(|| mbit(c.limiter_bytes)),
        queue_drops: c.limiter_drops,
        sender_tcp: Some(super::TcpSegments {
            sent: c.tcp_out_segs,
            retransmitted: c.tcp_retrans_segs,
        }),
    }
}
