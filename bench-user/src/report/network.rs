//! The `network` section: where the hosts ran, what the client–server link
//! was set to do, and what it measurably did.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Present when the profile ran its hosts in namespaces.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NetworkReport {
    /// `namespaces`.
    pub mode: String,
    pub hosts: Vec<HostAddress>,
    /// Client → server: settings and measurements.
    pub up: LinkReport,
    /// Server → client.
    pub down: LinkReport,
    /// Round-trip time between the client and server hosts, idle link.
    pub rtt: RttReport,
    /// The delay line's own cost and timing, when it ran.
    pub delay_line: Option<DelayLineReport>,
    /// What the reader should know about these numbers.
    pub notes: Vec<String>,
}

/// One host's namespace and address.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HostAddress {
    /// `generator` (load generator and sink), `client`, `server`, `router`.
    pub host: String,
    pub namespace: String,
    /// Its address on its link (the router's: one per link).
    pub addresses: Vec<String>,
}

/// One direction of the client–server link.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LinkReport {
    pub settings: LinkSettings,
    /// Over the whole run, from the link's creation to the endpoints' stop.
    pub run: LinkMeasure,
    /// Per measured window (pass and phase).
    pub windows: Vec<LinkWindow>,
}

/// The impairments as set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LinkSettings {
    pub delay_ms: f64,
    pub jitter_ms: f64,
    /// Absent: no rate limit.
    pub rate_mbit: Option<f64>,
    pub loss_percent: f64,
    /// `random` (nftables) or `bursty` (Gilbert–Elliott in the delay line).
    pub loss_model: String,
    /// Bursty loss only: mean packets per loss burst.
    pub burst_packets: Option<f64>,
    /// The rate limiter's queue, bytes (absent without a rate limit).
    pub queue_bytes: Option<u64>,
}

/// What the router counted in a span of time.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LinkMeasure {
    pub seconds: f64,
    /// Packets that reached the router in this direction.
    pub packets: u64,
    /// Of these, dropped by the loss impairment.
    pub lost: u64,
    /// lost / packets with its 95 % Clopper–Pearson interval; absent with
    /// no packets.
    pub loss: Option<LossInterval>,
    /// IP bytes that reached the router in this direction, Mbit/s
    /// (10^6 bit/s), before loss.
    pub arrived_mbit_s: f64,
    /// Link-layer bytes the rate limiter sent (IP + 14-byte Ethernet
    /// header, what its rate counts), Mbit/s; absent without a limit.
    pub limiter_mbit_s: Option<f64>,
    /// Packets the rate limiter dropped at its full queue.
    pub queue_drops: u64,
    /// The sending host's TCP segments (its namespace's counters: the
    /// link's connections and those towards the generator alike); absent
    /// in reports written before they were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_tcp: Option<TcpSegments>,
}

/// TCP segments a host sent and retransmitted in a span, from its
/// namespace's /proc/net/snmp (OutSegs, RetransSegs). Encrypted QUIC
/// repairs are not among them: those are UDP.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TcpSegments {
    pub sent: u64,
    pub retransmitted: u64,
}

/// A binomial share with its interval.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LossInterval {
    pub share: f64,
    pub low: f64,
    pub high: f64,
    /// `clopper-pearson 95%`; for bursty loss over the effective count of
    /// independent packets, n·(1−ρ)/(1+ρ) with ρ the loss chain's lag-1
    /// correlation (the method names ρ).
    pub method: String,
}

/// The link during one measured window.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LinkWindow {
    /// `main` or `per_call`.
    pub pass: String,
    pub phase: usize,
    pub measure: LinkMeasure,
    /// Payload this direction delivered at its receiving end in the
    /// window (up: the sink's received bytes, down: the generator's),
    /// Mbit/s (10^6 bit/s): the phase's goodput beside the rate set and
    /// the limiter's. Absent for the per-call pass, whose phase results
    /// the report does not keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_mbit_s: Option<f64>,
}

/// Handshake times between the client and server hosts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RttReport {
    /// delay_ms up + down.
    pub set_ms: f64,
    pub attempts: usize,
    /// Handshakes that completed (a lost SYN or SYN-ACK times out).
    pub samples: usize,
    pub median_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// `TCP handshake, client namespace → server namespace, idle link`.
    pub method: String,
}

/// The delay line's cost and timing error over the run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DelayLineReport {
    pub cpu_s: f64,
    pub wall_s: f64,
    /// cpu_s / wall_s: cores it took.
    pub cpu_share: f64,
    pub packets: u64,
    /// CPU nanoseconds per packet.
    pub ns_per_packet: Option<f64>,
    /// How late packets left against their release time, microseconds.
    pub timing_error_p50_us: f64,
    pub timing_error_p99_us: f64,
    pub timing_error_max_us: f64,
    pub write_errors: u64,
}
