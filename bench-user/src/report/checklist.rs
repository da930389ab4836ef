//! The checklist section: rule verdicts per target, and the cipher
//! calibration that is the crypto rule's yardstick.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Role;

/// How one checklist rule judged one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct RuleResult {
    pub id: String,
    pub area: String,
    pub title: String,
    /// The target the rule judged.
    pub target: Role,
    pub verdict: Verdict,
    pub metric: String,
    /// The measured value, when there is one.
    pub value: Option<f64>,
    pub unit: String,
    /// The measured numbers behind the verdict, or why it was not
    /// evaluated.
    pub evidence: String,
    /// What to change; empty when the verdict is ok.
    pub recommendation: String,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    NotEvaluated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::NotEvaluated => "not evaluated",
        }
    }
}

/// A cipher's speed on this machine, measured by protoprof in-process.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CipherBench {
    /// As the crypto families name it ("aes-gcm", "chacha20-poly1305").
    pub primitive: String,
    /// The exact algorithm and implementation timed.
    pub implementation: String,
    pub record_bytes: u64,
    pub ns_per_byte: f64,
}
