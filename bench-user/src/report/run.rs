//! The run section: what was run, on what, and how it ended.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What was run, and what defines it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunInfo {
    /// BLAKE3 (hex) of the effective spec, the endpoint binaries and the
    /// kernel release: two runs with the same id ran the same thing.
    pub id: String,
    pub profile: String,
    pub protocol: String,
    pub description: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Wall time of the whole run, start-up to report.
    pub duration_s: f64,
    /// Sum of the measured windows.
    pub measured_s: f64,
    pub kernel: String,
    pub cpus: usize,
    pub tool_version: String,
    /// The inputs hashed into the id.
    pub inputs: Vec<Input>,
    /// BLAKE3 (hex) of the effective spec alone (after overrides and
    /// duration): half of a baseline's key.
    pub spec_blake3: String,
    /// The machine it ran on: the other half.
    pub machine: Machine,
    /// "ok", "failed: …" or "interrupted".
    pub status: String,
}

/// One input of the run id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Input {
    pub what: String,
    pub path: String,
    pub blake3: String,
}

/// Identity of the machine a run measured: what makes numbers comparable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Machine {
    /// BLAKE3 (hex) of the fields below.
    pub fingerprint: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    pub kernel: String,
}
