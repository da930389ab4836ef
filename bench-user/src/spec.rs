//! spec: load and validate a profile (TOML) into typed settings.
//!
//! A profile names the protocol, how each endpoint is started, the traffic
//! phases to drive and the probes to attach. Every error names the file, the
//! field and the fix on one line.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    capture::{AllocOptions, CaptureOptions, CryptoOptions, UnwindMode},
    chain::Ready,
    drive::{BulkOptions, ChurnOptions, Direction, Pattern, PhaseOptions, RrOptions, SetupOptions},
};

/// A profile as written in `profiles/<name>.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Short name; names the run directory.
    pub name: String,
    /// Protocol of the reference endpoints (`tcp`, …).
    pub protocol: String,
    #[serde(default)]
    pub description: String,
    /// Protocol options passed to both reference endpoints as
    /// `--set relay.KEY=VALUE` (e.g. `buffer_size`).
    #[serde(default)]
    pub relay: BTreeMap<String, toml::Value>,
    /// Options of the protocol itself, passed to both reference endpoints
    /// as `--set <protocol>.KEY=VALUE` (e.g. hysteria2's `up_mbps`).
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// Outside implementations to run instead of the reference endpoints,
    /// per side (see `chain::launch` for the placeholders).
    #[serde(default)]
    pub endpoints: EndpointsSpec,
    /// Traffic phases, driven in order.
    #[serde(rename = "phase")]
    pub phases: Vec<PhaseSpec>,
    /// The set-up phase, before the traffic phases of the main pass.
    #[serde(default)]
    pub setup: SetupSpec,
    #[serde(default)]
    pub probes: ProbeSpec,
    /// Where the hosts run and what the client–server link does.
    #[serde(default)]
    pub network: crate::chain::network::NetworkSpec,
    /// The send rate the chain is set to hold, when its congestion control
    /// sends at a fixed rate (Hysteria's Brutal): the checklist's
    /// `throughput.rate-held` judges bulk throughput against it.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
}

/// `[rate_limit]`: the fixed send rate of each direction, in Mbit/s as the
/// endpoints are configured (the rate that direction's sender holds:
/// `up_mbps` the client's, `down_mbps` the server's).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub up_mbps: Option<f64>,
    pub down_mbps: Option<f64>,
}

/// The set-up phase: `connections` short connections, one after another,
/// each timed from TCP connect to the SOCKS5 reply and to the end of its
/// one response, outside any measured window. On by default: 300
/// connections bound set-up's p50, p90 and p99 (p99 needs 299).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetupSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_setup_connections")]
    pub connections: usize,
    /// Bytes of each connection's one request.
    #[serde(default = "default_request_size")]
    pub request_size: usize,
    /// Bytes of its response.
    #[serde(default = "default_response_size")]
    pub response_size: usize,
    /// No connection starts after this many seconds; fewer connections
    /// then leave the higher percentiles "too few samples".
    #[serde(default = "default_setup_max_s")]
    pub max_s: f64,
    /// Seconds without progress before a connection counts as hung.
    #[serde(default = "default_io_timeout")]
    pub io_timeout_s: f64,
}

impl Default for SetupSpec {
    fn default() -> Self {
        SetupSpec {
            enabled: true,
            connections: default_setup_connections(),
            request_size: default_request_size(),
            response_size: default_response_size(),
            max_s: default_setup_max_s(),
            io_timeout_s: default_io_timeout(),
        }
    }
}

impl SetupSpec {
    /// The drive options, or `None` when the phase is off.
    pub fn options(&self) -> Option<SetupOptions> {
        self.enabled.then(|| SetupOptions {
            connections: self.connections,
            request_size: self.request_size,
            response_size: self.response_size,
            max_duration: Duration::from_secs_f64(self.max_s),
            io_timeout: Duration::from_secs_f64(self.io_timeout_s),
        })
    }
}

/// Which sides run something other than protoprof-endpoint, and which
/// build of protoprof-endpoint the others run.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsSpec {
    /// The protoprof-endpoint program of the sides without a `command`
    /// (default: the one beside protoprof). Set per variant, it compares
    /// two builds run by run, interleaved:
    /// `--compare endpoints.binary=OLD,endpoints.binary=NEW`.
    #[serde(default)]
    pub binary: Option<PathBuf>,
    pub client: Option<EndpointSpec>,
    pub server: Option<EndpointSpec>,
}

/// An outside implementation as one side of the chain.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Program and arguments, with placeholders.
    pub command: Vec<String>,
    /// How to tell it has started: `tcp` (accepts on its port) or `udp`
    /// (its port is bound: QUIC servers).
    #[serde(default)]
    pub ready: Ready,
    /// Client side: the SOCKS5 address to drive (default
    /// `127.0.0.1:{client_port}`).
    pub socks: Option<String>,
}

/// One traffic phase.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub pattern: PatternName,
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// bulk: `up`, `down` or `both`.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// bulk: bytes per write.
    #[serde(default)]
    pub chunk_size: Option<usize>,
    /// rr, churn, concurrency: bytes per request.
    #[serde(default)]
    pub request_size: Option<usize>,
    /// rr, churn, concurrency: bytes per response.
    #[serde(default)]
    pub response_size: Option<usize>,
    /// bulk: exact-length mode, bytes each connection moves each way it
    /// carries; the phase lasts until every transfer is done (`duration_s`
    /// bounds it, `warmup_s` is not used).
    #[serde(default)]
    pub bytes_per_connection: Option<u64>,
    /// rr: open loop, requests per second on each connection (absent:
    /// closed loop).
    #[serde(default)]
    pub rate_per_connection: Option<f64>,
    /// churn: connections started per second (absent: as fast as
    /// `connections` in flight allow).
    #[serde(default)]
    pub rate: Option<f64>,
    /// concurrency: the numbers of connections to hold open at once, one
    /// level after another, each for `warmup_s` + `duration_s`.
    #[serde(default)]
    pub levels: Option<Vec<usize>>,
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Seconds without progress before a connection counts as hung.
    #[serde(default = "default_io_timeout")]
    pub io_timeout_s: f64,
}

/// Traffic pattern names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternName {
    Bulk,
    Rr,
    /// Short connections: open, one request and response, close.
    Churn,
    /// A sweep of levels of connections held open at once, each driven
    /// closed-loop rr.
    Concurrency,
}

impl PatternName {
    fn as_str(self) -> &'static str {
        match self {
            PatternName::Bulk => "bulk",
            PatternName::Rr => "rr",
            PatternName::Churn => "churn",
            PatternName::Concurrency => "concurrency",
        }
    }
}

/// Which phase and level of a concurrency sweep an expanded phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepLevel {
    /// Index of the `[[phase]]` table with `pattern = "concurrency"`.
    pub spec_phase: usize,
    /// Connections held open at this level.
    pub level: usize,
}

/// Most connections one concurrency level may ask for (the port range
/// usually stops it first).
pub const MAX_LEVEL: usize = 100_000;
/// Highest rate (per second) a schedule may ask for.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Largest exact-length transfer per connection and direction (1 PiB).
pub const MAX_EXACT_BYTES: u64 = 1 << 50;

/// Which probes to attach. Every probe can be switched off; what each
/// costs is in docs/probes.md and in the report (`probes.program_costs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    #[serde(default = "yes")]
    pub syscalls: bool,
    /// Time every syscall (count, bytes and errors are always recorded):
    /// a second program, at each syscall's entry, for every syscall on the
    /// machine, which costs a closed-loop rr phase a few per cent of its
    /// rate (docs/probes.md). Off by default.
    #[serde(default)]
    pub syscall_time: bool,
    #[serde(default = "yes")]
    pub counters: bool,
    #[serde(default = "yes")]
    pub offcpu: bool,
    /// The off-CPU probe walks a thread's user and kernel stacks at a
    /// switch-out only when its last walk is this old, and charges the
    /// switch-outs between to that walk's stacks; 0 walks at every one.
    /// The walks are most of the probe's cost and lie on the targets'
    /// critical path (docs/probes.md).
    #[serde(default = "default_offcpu_stack_interval_us")]
    pub offcpu_stack_interval_us: u64,
    /// How user stacks are taken: `auto` copies them where the code lacks
    /// frame pointers and has unwind tables and unwinds the copies from
    /// `.eh_frame` (docs/probes.md), `frame-pointers` walks every stack,
    /// `dwarf` copies every stack.
    #[serde(default)]
    pub unwind: UnwindMode,
    #[serde(default)]
    pub cpu: CpuSpec,
    #[serde(default)]
    pub alloc: AllocSpec,
    #[serde(default)]
    pub crypto: CryptoSpec,
    #[serde(default)]
    pub syscall_stacks: SyscallStacksSpec,
    /// Run every phase once without any probe first, and report
    /// profiled / unprofiled throughput.
    #[serde(default)]
    pub control: bool,
    /// Measure the per-call probes (alloc, crypto uprobes) in a second pass
    /// of the phases, so that their cost — a trap per call — does not
    /// distort the flame graphs and throughput of the first. With `false`
    /// everything runs in one pass.
    #[serde(default = "yes")]
    pub per_call_pass: bool,
    /// Attach empty programs where the syscalls, cpu and offcpu probes go:
    /// nothing is recorded; what remains is the cost of any program on
    /// those points (`cargo xtask bench probes` measures it).
    #[serde(default)]
    pub floor: bool,
    /// Have the kernel time every run of every probe program and report it
    /// (`probes.program_costs` in report.json). Off by default: the timing
    /// itself costs two clock reads per run, about 65 ns here.
    #[serde(default)]
    pub program_costs: bool,
    /// Measure what the syscalls, cpu and offcpu programs cost side by
    /// side: detach them and attach them again second by second in every
    /// measured window (attached, detached, detached, attached, …) and set
    /// each phase's seconds with them against the adjacent seconds without
    /// (`probes.alternating` in report.json; `cargo xtask bench probes
    /// --alternate`). Their records then cover only the attached seconds:
    /// a run for the probes' cost, not the targets'.
    #[serde(default)]
    pub alternate: bool,
}

/// The cpu sampling probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Samples per second per CPU.
    #[serde(default = "default_frequency")]
    pub frequency_hz: u64,
}

/// The allocation probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllocSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Mean bytes allocated between two stack samples.
    #[serde(default = "default_sample_bytes")]
    pub sample_bytes: u64,
    /// Follow sampled allocations to their free (return probes; not on Go).
    #[serde(default = "yes")]
    pub live: bool,
}

/// The crypto probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time each call with a return probe (not on Go).
    #[serde(default = "yes")]
    pub return_probes: bool,
}

/// Sampled user stacks at syscall entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallStacksSpec {
    #[serde(default)]
    pub enabled: bool,
    /// One stack per this many syscalls (randomly chosen).
    #[serde(default = "default_every")]
    pub every: u64,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            syscalls: true,
            syscall_time: false,
            counters: true,
            offcpu: true,
            offcpu_stack_interval_us: default_offcpu_stack_interval_us(),
            unwind: UnwindMode::Auto,
            cpu: CpuSpec::default(),
            alloc: AllocSpec::default(),
            crypto: CryptoSpec::default(),
            syscall_stacks: SyscallStacksSpec::default(),
            control: false,
            per_call_pass: true,
            floor: false,
            program_costs: false,
            alternate: false,
        }
    }
}

impl Default for CpuSpec {
    fn default() -> Self {
        CpuSpec {
            enabled: true,
            frequency_hz: default_frequency(),
        }
    }
}

impl Default for AllocSpec {
    fn default() -> Self {
        AllocSpec {
            enabled: true,
            sample_bytes: default_sample_bytes(),
            live: true,
        }
    }
}

impl Default for CryptoSpec {
    fn default() -> Self {
        CryptoSpec {
            enabled: true,
            return_probes: true,
        }
    }
}

impl Default for SyscallStacksSpec {
    fn default() -> Self {
        SyscallStacksSpec {
            enabled: false,
            every: default_every(),
        }
    }
}

impl ProbeSpec {
    /// The capture options these settings ask for.
    pub fn capture_options(&self) -> CaptureOptions {
        CaptureOptions {
            syscalls: self.syscalls,
            syscall_time: self.syscalls && self.syscall_time,
            syscall_stack_every: if self.syscalls && self.syscall_stacks.enabled {
                self.syscall_stacks.every
            } else {
                0
            },
            cpu_frequency_hz: self.cpu.enabled.then_some(self.cpu.frequency_hz),
            offcpu: self.offcpu,
            offcpu_stack_interval_ns: self.offcpu_stack_interval_us.saturating_mul(1000),
            counters: self.counters,
            alloc: self.alloc.enabled.then_some(AllocOptions {
                sample_bytes: self.alloc.sample_bytes,
                live: self.alloc.live,
            }),
            crypto: self.crypto.enabled.then_some(CryptoOptions {
                return_probes: self.crypto.return_probes,
            }),
            floor: self.floor,
            program_stats: self.program_costs,
            alternate: self.alternate,
            // Sized for the pass by the runner, which knows its length.
            cpu_sample_entries: 0,
            unwind: self.unwind,
            inflight_slots: 0,
        }
    }
}

fn default_offcpu_stack_interval_us() -> u64 {
    1000
}

fn default_sample_bytes() -> u64 {
    512 * 1024
}
fn default_every() -> u64 {
    64
}
fn default_setup_connections() -> usize {
    300
}

fn default_request_size() -> usize {
    64
}

fn default_response_size() -> usize {
    1024
}

fn default_setup_max_s() -> f64 {
    10.0
}

fn yes() -> bool {
    true
}
fn default_connections() -> usize {
    1
}
fn default_warmup() -> f64 {
    1.0
}
fn default_io_timeout() -> f64 {
    10.0
}
fn default_frequency() -> u64 {
    99
}

/// A profile that could not be used. Displays as one line: file, field, fix.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

/// Protocols whose reference endpoints exist.
pub const PROTOCOLS: &[&str] = &[
    "tcp",
    "tls",
    "tuic",
    "ssh",
    "hysteria1",
    "hysteria2",
    "ech",
    "reality",
];
/// Protocol names a profile may use when both sides are outside
/// implementations (the name then only labels the report).
pub const LABELS: &[&str] = &["shadowsocks", "vless", "vmess"];

impl ProfileSpec {
    /// Read and validate a profile file.
    pub fn load(path: &Path) -> Result<ProfileSpec, SpecError> {
        Self::load_with(path, &[])
    }

    /// Parse and validate profile text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ProfileSpec, SpecError> {
        Self::parse_with(text, path, &[])
    }

    /// Read a profile file with `KEY=VALUE` overrides applied (dotted keys
    /// into the TOML, e.g. `probes.alloc.enabled=false`; the value is read
    /// as TOML where it parses, as a string otherwise).
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<ProfileSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.to_path_buf(),
            field: String::new(),
            message: format!("cannot read the profile: {e}"),
        })?;
        Self::parse_with(&text, path, overrides)
    }

    /// [`ProfileSpec::parse`] with overrides.
    pub fn parse_with(
        text: &str,
        path: &Path,
        overrides: &[String],
    ) -> Result<ProfileSpec, SpecError> {
        let err = |field: String, message: String| SpecError {
            file: path.to_path_buf(),
            field,
            message,
        };
        // Without overrides the text is parsed as written, so that errors
        // carry its line numbers.
        let rewritten;
        let text = if overrides.is_empty() {
            text
        } else {
            let mut table: toml::Table = toml::from_str(text).map_err(|e: toml::de::Error| {
                err(String::new(), one_line(e.message(), text, e.span()))
            })?;
            for o in overrides {
                apply_override(&mut table, o)
                    .map_err(|m| err(o.split('=').next().unwrap_or_default().to_string(), m))?;
            }
            rewritten = toml::to_string(&table).map_err(|e| err(String::new(), e.to_string()))?;
            rewritten.as_str()
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| err(String::new(), one_line(e.message(), text, e.span())))?;
        let spec: ProfileSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            err(
                if field == "." { String::new() } else { field },
                one_line(inner.message(), text, inner.span()),
            )
        })?;
        spec.validate().map_err(|(f, m)| err(f, m))?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                "name".into(),
                "use letters, digits, '-' and '_' only (it names the run directory)".into(),
            ));
        }
        if !PROTOCOLS.contains(&self.protocol.as_str()) {
            return Err((
                "protocol".into(),
                format!(
                    "unknown protocol {:?}; use one of: {}",
                    self.protocol,
                    PROTOCOLS.join(", ")
                ),
            ));
        }
        if let Some(binary) = &self.endpoints.binary {
            if !binary.is_file() {
                return Err((
                    "endpoints.binary".into(),
                    format!(
                        "no file at {}; give the path of a protoprof-endpoint build",
                        binary.display()
                    ),
                ));
            }
        }
        if let Some(r) = &self.rate_limit {
            for (field, mbps) in [
                ("rate_limit.up_mbps", r.up_mbps),
                ("rate_limit.down_mbps", r.down_mbps),
            ] {
                if mbps.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                    return Err((
                        field.into(),
                        "give the send rate in Mbit/s, above 0, as the endpoints are configured"
                            .into(),
                    ));
                }
            }
        }
        if self.phases.is_empty() {
            return Err(("phase".into(), "add at least one [[phase]] table".into()));
        }
        for (i, p) in self.phases.iter().enumerate() {
            let f = |name: &str| format!("phase[{i}].{name}");
            if p.connections == 0 || p.connections > 10_000 {
                return Err((f("connections"), "use 1 to 10000".into()));
            }
            validate_stress(p, &f)?;
            if !(p.duration_s > 0.0 && p.duration_s <= 86_400.0) {
                return Err((
                    f("duration_s"),
                    "use a number of seconds above 0 (at most 86400)".into(),
                ));
            }
            if !(p.warmup_s >= 0.0 && p.warmup_s <= 3_600.0) {
                return Err((f("warmup_s"), "use 0 to 3600 seconds".into()));
            }
            if !(p.io_timeout_s > 0.0 && p.io_timeout_s <= 3_600.0) {
                return Err((
                    f("io_timeout_s"),
                    "use a number of seconds above 0 (at most 3600)".into(),
                ));
            }
            let sizes = [
                ("chunk_size", p.chunk_size),
                ("request_size", p.request_size),
                ("response_size", p.response_size),
            ];
            for (name, size) in sizes {
                if let Some(s) = size {
                    if s == 0 || s > 64 << 20 {
                        return Err((f(name), "use 1 byte to 64 MiB".into()));
                    }
                }
            }
            match p.pattern {
                PatternName::Bulk => {
                    if p.request_size.is_some() || p.response_size.is_some() {
                        return Err((
                            f("request_size"),
                            "request_size/response_size are for pattern = \"rr\"; remove them"
                                .into(),
                        ));
                    }
                }
                PatternName::Rr | PatternName::Churn | PatternName::Concurrency => {
                    if p.direction.is_some() || p.chunk_size.is_some() {
                        return Err((
                            f("direction"),
                            "direction/chunk_size are for pattern = \"bulk\"; remove them".into(),
                        ));
                    }
                }
            }
        }
        let setup = &self.setup;
        if setup.enabled {
            if setup.connections == 0 || setup.connections > crate::drive::MAX_SETUP_CONNECTIONS {
                return Err((
                    "setup.connections".into(),
                    format!(
                        "use 1 to {} (or setup.enabled = false)",
                        crate::drive::MAX_SETUP_CONNECTIONS
                    ),
                ));
            }
            for (name, size) in [
                ("setup.request_size", setup.request_size),
                ("setup.response_size", setup.response_size),
            ] {
                if size == 0 || size > 64 << 20 {
                    return Err((name.into(), "use 1 byte to 64 MiB".into()));
                }
            }
            if !(setup.max_s > 0.0 && setup.max_s <= 3_600.0) {
                return Err((
                    "setup.max_s".into(),
                    "use a number of seconds above 0 (at most 3600)".into(),
                ));
            }
            if !(setup.io_timeout_s > 0.0 && setup.io_timeout_s <= 3_600.0) {
                return Err((
                    "setup.io_timeout_s".into(),
                    "use a number of seconds above 0 (at most 3600)".into(),
                ));
            }
        }
        if self.probes.alloc.enabled && !(4096..=1 << 32).contains(&self.probes.alloc.sample_bytes)
        {
            return Err((
                "probes.alloc.sample_bytes".into(),
                "use 4096 to 4294967296 bytes".into(),
            ));
        }
        if self.probes.syscall_stacks.enabled
            && !(1..=1_000_000).contains(&self.probes.syscall_stacks.every)
        {
            return Err((
                "probes.syscall_stacks.every".into(),
                "use 1 to 1000000".into(),
            ));
        }
        if self.probes.cpu.enabled && !(1..=10_000).contains(&self.probes.cpu.frequency_hz) {
            return Err((
                "probes.cpu.frequency_hz".into(),
                "use 1 to 10000 samples per second".into(),
            ));
        }
        self.network.validate()?;
        for (section, table) in [("relay", &self.relay), ("options", &self.options)] {
            for (k, v) in table {
                if relay_value(v).is_none() {
                    return Err((
                        format!("{section}.{k}"),
                        "use a string, integer or boolean".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Scale the phase durations so that their measured time adds up to
    /// `total` (the `--duration` override), keeping their proportions.
    pub fn set_total_duration(&mut self, total: f64) -> Result<(), String> {
        if !(total > 0.0 && total <= 86_400.0) {
            return Err("--duration: use a number of seconds above 0".into());
        }
        let sum: f64 = self.phases.iter().map(|p| p.duration_s).sum();
        for p in &mut self.phases {
            p.duration_s = total * p.duration_s / sum;
            // Warm-up never longer than the phase it prepares.
            p.warmup_s = p.warmup_s.min(p.duration_s);
        }
        Ok(())
    }

    /// The drive options of every phase, a concurrency phase expanded
    /// into one closed-loop rr phase per level.
    pub fn phase_options(&self) -> Vec<PhaseOptions> {
        self.phases.iter().flat_map(PhaseSpec::expand).collect()
    }

    /// Parallel to [`phase_options`](Self::phase_options): which sweep and
    /// level each expanded phase is, if any.
    pub fn sweep_levels(&self) -> Vec<Option<SweepLevel>> {
        self.phases
            .iter()
            .enumerate()
            .flat_map(|(i, p)| match (&p.pattern, &p.levels) {
                (PatternName::Concurrency, Some(levels)) => levels
                    .iter()
                    .map(|&level| {
                        Some(SweepLevel {
                            spec_phase: i,
                            level,
                        })
                    })
                    .collect(),
                _ => vec![None],
            })
            .collect()
    }

    /// `--set relay.KEY=VALUE` and `--set <protocol>.KEY=VALUE` arguments
    /// for the reference endpoints.
    pub fn endpoint_settings(&self) -> Vec<String> {
        let relay = self
            .relay
            .iter()
            .filter_map(|(k, v)| relay_value(v).map(|v| format!("relay.{k}={v}")));
        let options = self
            .options
            .iter()
            .filter_map(|(k, v)| relay_value(v).map(|v| format!("{}.{k}={v}", self.protocol)));
        relay.chain(options).collect()
    }

    /// The spec as canonical TOML (after overrides): what the run id hashes.
    pub fn canonical(&self) -> String {
        toml::to_string(self).unwrap_or_else(|_| format!("{self:?}"))
    }
}

impl PhaseSpec {
    fn expand(&self) -> Vec<PhaseOptions> {
        let request_size = self.request_size.unwrap_or_else(default_request_size);
        let response_size = self.response_size.unwrap_or_else(default_response_size);
        let every = |rate: Option<f64>| rate.map(|r| Duration::from_secs_f64(1.0 / r));
        let patterns = match self.pattern {
            PatternName::Bulk => vec![Pattern::Bulk(BulkOptions {
                connections: self.connections,
                direction: self.direction.unwrap_or(Direction::Both),
                chunk_size: self.chunk_size.unwrap_or(64 * 1024),
                bytes_per_connection: self.bytes_per_connection,
            })],
            PatternName::Rr => vec![Pattern::Rr(RrOptions {
                connections: self.connections,
                request_size,
                response_size,
                interval: every(self.rate_per_connection),
            })],
            PatternName::Churn => vec![Pattern::Churn(ChurnOptions {
                concurrency: self.connections,
                interval: every(self.rate),
                request_size,
                response_size,
            })],
            PatternName::Concurrency => self
                .levels
                .iter()
                .flatten()
                .map(|&connections| {
                    Pattern::Rr(RrOptions {
                        connections,
                        request_size,
                        response_size,
                        interval: None,
                    })
                })
                .collect(),
        };
        // Exact-length transfers start with the window: no warm-up.
        let warmup = if self.bytes_per_connection.is_some() {
            0.0
        } else {
            self.warmup_s
        };
        patterns
            .into_iter()
            .map(|pattern| PhaseOptions {
                pattern,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(self.duration_s),
                io_timeout: Duration::from_secs_f64(self.io_timeout_s),
            })
            .collect()
    }
}

/// The stress settings of one phase: each only with its pattern, and
/// within what the machine can do.
fn validate_stress(p: &PhaseSpec, f: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
    let only = |name: &str, set: bool, pattern: PatternName| -> Result<(), (String, String)> {
        if set && p.pattern != pattern {
            return Err((
                f(name),
                format!(
                    "{name} is for pattern = \"{}\"; remove it",
                    pattern.as_str()
                ),
            ));
        }
        Ok(())
    };
    only(
        "bytes_per_connection",
        p.bytes_per_connection.is_some(),
        PatternName::Bulk,
    )?;
    only(
        "rate_per_connection",
        p.rate_per_connection.is_some(),
        PatternName::Rr,
    )?;
    only("rate", p.rate.is_some(), PatternName::Churn)?;
    only("levels", p.levels.is_some(), PatternName::Concurrency)?;
    if let Some(b) = p.bytes_per_connection {
        if b == 0 || b > MAX_EXACT_BYTES {
            return Err((
                f("bytes_per_connection"),
                format!("use 1 to {MAX_EXACT_BYTES} bytes"),
            ));
        }
    }
    for (name, rate) in [
        ("rate_per_connection", p.rate_per_connection),
        ("rate", p.rate),
    ] {
        if let Some(r) = rate {
            if !(r > 0.0 && r <= MAX_RATE) {
                return Err((
                    f(name),
                    format!("use a rate above 0 and at most {MAX_RATE} per second"),
                ));
            }
        }
    }
    let ports = crate::drive::local_port_count();
    if p.connections > ports {
        return Err((
            f("connections"),
            format!("{} connections need more local ports than the {ports} of net.ipv4.ip_local_port_range; use at most {ports}", p.connections),
        ));
    }
    if p.pattern == PatternName::Concurrency {
        if p.connections != 1 {
            return Err((
                f("connections"),
                "a concurrency phase takes its connections from levels; remove connections".into(),
            ));
        }
        let Some(levels) = p.levels.as_ref().filter(|l| !l.is_empty()) else {
            return Err((
                f("levels"),
                "give the levels to sweep, e.g. levels = [1, 10, 100]".into(),
            ));
        };
        if levels.windows(2).any(|w| w[0] >= w[1]) {
            return Err((
                f("levels"),
                "list the levels in increasing order, each once".into(),
            ));
        }
        for &l in levels {
            if l == 0 || l > MAX_LEVEL {
                return Err((f("levels"), format!("use levels of 1 to {MAX_LEVEL}")));
            }
            if l > ports {
                return Err((
                    f("levels"),
                    format!("level {l} needs more local ports than the {ports} of net.ipv4.ip_local_port_range; use at most {ports}"),
                ));
            }
        }
    }
    Ok(())
}

/// Set `a.b.c=value` in a TOML table, creating tables on the way; a
/// number indexes an array of tables (`phase.0.direction=up`).
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, value) = assignment.split_once('=').ok_or_else(|| {
        format!("{assignment:?} is not KEY=VALUE; write e.g. probes.alloc.enabled=false")
    })?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("an empty key part; write e.g. probes.cpu.frequency_hz=199".into());
    }
    let value = value.trim();
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, path) = parts.split_last().ok_or("an empty key")?;
    let mut cur = table;
    let mut i = 0;
    while i < path.len() {
        let p = path[i];
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let index: usize = path
                    .get(i + 1)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("{p} is a list; give an index, e.g. {p}.0.KEY"))?;
                i += 1;
                items
                    .get_mut(index)
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| format!("{p}.{index}: no such entry"))?
            }
            _ => return Err(format!("{p} is not a table; override a key inside it")),
        };
        i += 1;
    }
    cur.insert(last.to_string(), parsed);
    Ok(())
}

fn relay_value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A TOML error message on one line, with the line number where known.
fn one_line(message: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let msg = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match span {
        Some(s) => {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "tcp"
protocol = "tcp"
[relay]
buffer_size = 16384
[[phase]]
pattern = "bulk"
connections = 2
direction = "up"
duration_s = 4
[[phase]]
pattern = "rr"
duration_s = 2
"#;

    fn parse(text: &str) -> Result<ProfileSpec, SpecError> {
        ProfileSpec::parse(text, Path::new("p.toml"))
    }

    #[test]
    fn parses_a_profile() {
        let spec = parse(GOOD).expect("valid");
        assert_eq!(spec.phases.len(), 2);
        assert_eq!(spec.endpoint_settings(), vec!["relay.buffer_size=16384"]);
        assert!(spec.probes.cpu.enabled && spec.probes.syscalls);
        assert_eq!(spec.probes.cpu.frequency_hz, 99);
    }

    #[test]
    fn the_setup_phase_is_on_by_default_and_checked() {
        let spec = parse(GOOD).expect("valid");
        let o = spec.setup.options().expect("on by default");
        assert_eq!(
            (o.connections, o.request_size, o.response_size),
            (300, 64, 1024)
        );
        assert_eq!(o.max_duration, Duration::from_secs(10));
        let off = ProfileSpec::parse_with(
            GOOD,
            Path::new("p.toml"),
            &["setup.enabled=false".to_string()],
        )
        .expect("valid");
        assert!(off.setup.options().is_none());
        let e = ProfileSpec::parse_with(
            GOOD,
            Path::new("p.toml"),
            &["setup.connections=0".to_string()],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "p.toml: setup.connections: use 1 to 100000 (or setup.enabled = false)"
        );
        let e = parse(&format!("{GOOD}[setup]\nmax_s = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml: setup.max_s: "), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = GOOD.replace("\"up\"", "\"sideways\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("p.toml: phase[0].direction: "), "{e}");
        assert!(e.contains("sideways") && !e.contains('\n'), "{e}");

        let bad = GOOD.replace("connections = 2", "connections = 0");
        let e = parse(&bad).unwrap_err().to_string();
        assert_eq!(e, "p.toml: phase[0].connections: use 1 to 10000");

        let bad = GOOD.replace("protocol = \"tcp\"", "protocol = \"carrier-pigeon\"");
        assert!(parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("p.toml: protocol: unknown protocol"));

        let e = ProfileSpec::parse_with(
            GOOD,
            Path::new("p.toml"),
            &["endpoints.binary=/nonexistent/protoprof-endpoint".to_string()],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "p.toml: endpoints.binary: no file at /nonexistent/protoprof-endpoint; give the \
             path of a protoprof-endpoint build"
        );

        let bad = GOOD.replace("duration_s = 2", "duration_s = 2\nburst = 3");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("burst"), "{e}");
    }

    #[test]
    fn overrides_set_nested_keys() {
        let o = |s: &str| s.to_string();
        let spec = ProfileSpec::parse_with(
            GOOD,
            Path::new("p.toml"),
            &[
                o("probes.alloc.enabled=false"),
                o("probes.cpu.frequency_hz=199"),
                o("relay.mode=pooled"),
            ],
        )
        .expect("valid");
        assert!(!spec.probes.alloc.enabled);
        assert_eq!(spec.probes.cpu.frequency_hz, 199);
        assert!(spec
            .endpoint_settings()
            .contains(&"relay.mode=pooled".to_string()));
        let e = ProfileSpec::parse_with(GOOD, Path::new("p.toml"), &[o("probes.cpu.nope=1")])
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(ProfileSpec::parse_with(GOOD, Path::new("p.toml"), &[o("probes")]).is_err());
        let spec =
            ProfileSpec::parse_with(GOOD, Path::new("p.toml"), &[o("phase.1.connections=3")])
                .expect("valid");
        assert_eq!(spec.phases[1].connections, 3);
        let e = ProfileSpec::parse_with(GOOD, Path::new("p.toml"), &[o("phase.5.connections=3")])
            .unwrap_err();
        assert!(e.to_string().contains("phase.5: no such entry"), "{e}");
        let spec = ProfileSpec::parse_with(GOOD, Path::new("p.toml"), &[o("probes.unwind=dwarf")])
            .expect("valid");
        assert_eq!(spec.probes.unwind, UnwindMode::Dwarf);
        assert_eq!(spec.probes.capture_options().unwind, UnwindMode::Dwarf);
        let e = ProfileSpec::parse_with(GOOD, Path::new("p.toml"), &[o("probes.unwind=sometimes")])
            .unwrap_err();
        assert!(e.to_string().contains("probes.unwind"), "{e}");
    }

    const STRESS: &str = r#"
name = "s"
protocol = "tcp"
[[phase]]
pattern = "churn"
connections = 4
rate = 200
duration_s = 2
[[phase]]
pattern = "rr"
connections = 2
rate_per_connection = 50
duration_s = 2
[[phase]]
pattern = "bulk"
bytes_per_connection = 5000000000
duration_s = 60
[[phase]]
pattern = "concurrency"
levels = [1, 10, 100]
duration_s = 1
"#;

    fn stress_err(set: &str) -> String {
        ProfileSpec::parse_with(STRESS, Path::new("p.toml"), &[set.to_string()])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn stress_patterns_expand_into_phases() {
        let spec = parse(STRESS).expect("valid");
        let phases = spec.phase_options();
        // churn, rr, bulk, and one rr phase per level.
        assert_eq!(phases.len(), 6);
        match &phases[0].pattern {
            Pattern::Churn(c) => {
                assert_eq!(c.concurrency, 4);
                assert_eq!(c.interval, Some(Duration::from_millis(5)));
            }
            other => panic!("{other:?}"),
        }
        match &phases[1].pattern {
            Pattern::Rr(r) => assert_eq!(r.interval, Some(Duration::from_millis(20))),
            other => panic!("{other:?}"),
        }
        match &phases[2].pattern {
            // Past 4 GiB: no 32-bit count anywhere on the way.
            Pattern::Bulk(b) => assert_eq!(b.bytes_per_connection, Some(5_000_000_000)),
            other => panic!("{other:?}"),
        }
        // Exact-length transfers start with their window.
        assert_eq!(phases[2].warmup, Duration::ZERO);
        let levels: Vec<usize> = phases[3..]
            .iter()
            .map(|p| p.pattern.connections())
            .collect();
        assert_eq!(levels, [1, 10, 100]);
        let tags = spec.sweep_levels();
        assert_eq!(tags.len(), phases.len());
        assert_eq!(&tags[..3], &[None, None, None]);
        assert_eq!(
            tags[5],
            Some(SweepLevel {
                spec_phase: 3,
                level: 100
            })
        );
        for p in &phases {
            p.validate().expect("drive accepts what spec accepts");
        }
    }

    #[test]
    fn nonsensical_stress_settings_are_refused_naming_the_field() {
        assert_eq!(
            stress_err("phase.0.rate=0"),
            "p.toml: phase[0].rate: use a rate above 0 and at most 1000000 per second"
        );
        assert_eq!(
            stress_err("phase.1.rate_per_connection=-3"),
            "p.toml: phase[1].rate_per_connection: use a rate above 0 and at most 1000000 per second"
        );
        assert_eq!(
            stress_err("phase.2.bytes_per_connection=0"),
            "p.toml: phase[2].bytes_per_connection: use 1 to 1125899906842624 bytes"
        );
        // A negative size does not even parse as one.
        let e = stress_err("phase.2.bytes_per_connection=-5");
        assert!(
            e.starts_with("p.toml: phase[2].bytes_per_connection: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        assert_eq!(
            stress_err("phase.3.levels=[10, 1]"),
            "p.toml: phase[3].levels: list the levels in increasing order, each once"
        );
        assert_eq!(
            stress_err("phase.3.levels=[]"),
            "p.toml: phase[3].levels: give the levels to sweep, e.g. levels = [1, 10, 100]"
        );
        let ports = crate::drive::local_port_count();
        let e = stress_err(&format!("phase.3.levels=[1, {}]", ports + 1));
        assert!(
            e.starts_with(&format!(
                "p.toml: phase[3].levels: level {} needs more local ports",
                ports + 1
            )),
            "{e}"
        );
        assert_eq!(
            stress_err("phase.2.rate=5"),
            "p.toml: phase[2].rate: rate is for pattern = \"churn\"; remove it"
        );
        assert_eq!(
            stress_err("phase.0.levels=[1]"),
            "p.toml: phase[0].levels: levels is for pattern = \"concurrency\"; remove it"
        );
        assert_eq!(
            stress_err("phase.3.connections=5"),
            "p.toml: phase[3].connections: a concurrency phase takes its connections from levels; remove connections"
        );
    }

    #[test]
    fn a_rate_limit_that_is_no_rate_is_refused_naming_the_field() {
        for (set, field) in [
            ("rate_limit.up_mbps=0", "rate_limit.up_mbps"),
            ("rate_limit.down_mbps=-100", "rate_limit.down_mbps"),
        ] {
            assert_eq!(
                stress_err(set),
                format!("p.toml: {field}: give the send rate in Mbit/s, above 0, as the endpoints are configured")
            );
        }
        let ok = ProfileSpec::parse_with(
            STRESS,
            Path::new("p.toml"),
            &["rate_limit.up_mbps=1000".to_string()],
        )
        .expect("a positive rate is taken");
        assert_eq!(ok.rate_limit.and_then(|r| r.up_mbps), Some(1000.0));
    }

    #[test]
    fn the_shipped_stress_profile_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/tcp-stress.toml");
        let spec = ProfileSpec::load(&path).expect("profiles/tcp-stress.toml");
        assert_eq!(spec.phase_options().len(), 6);
    }

    #[test]
    fn total_duration_keeps_proportions() {
        let mut spec = parse(GOOD).expect("valid");
        spec.set_total_duration(3.0).expect("ok");
        assert!((spec.phases[0].duration_s - 2.0).abs() < 1e-9);
        assert!((spec.phases[1].duration_s - 1.0).abs() < 1e-9);
        assert!(spec.phases[1].warmup_s <= 1.0);
    }
}
