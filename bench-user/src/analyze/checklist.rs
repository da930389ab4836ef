//! checklist: the optimization rules of `profiles/checklist.toml`, each
//! judged per target against one measured metric (see `metrics`).
//!
//! A verdict is ok, warn or fail with the numbers behind it; a rule whose
//! metric was not measured is "not evaluated" with the reason, never a guess.

use serde::Deserialize;

use super::metrics;
use crate::report::{Metric, RuleResult, Target, Verdict};

/// The shipped rules, used when a profiles directory has none.
pub const DEFAULT_CHECKLIST: &str = include_str!("../../../profiles/checklist.toml");

/// Why a checklist file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChecklistError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: rule `{rule}`: {message}")]
    Rule {
        path: String,
        rule: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    rule: Vec<Rule>,
}

/// One rule as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub area: String,
    pub title: String,
    pub metric: String,
    pub warn_above: Option<f64>,
    pub fail_above: Option<f64>,
    pub warn_below: Option<f64>,
    pub fail_below: Option<f64>,
    /// Roles the rule judges (default: every target).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Protocols the rule applies to (default: all), and why not others.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Protocols the rule does not apply to (a rule for all protocols but
    /// a few names those few, so that a new protocol is judged by default);
    /// the reason is `protocols_why` too.
    #[serde(default)]
    pub except_protocols: Vec<String>,
    #[serde(default)]
    pub protocols_why: String,
    /// The rule matters only while another metric is on one side of a
    /// bound; otherwise it is ok, saying so.
    pub only_if: Option<Condition>,
    /// Metrics shown beside the judged one as evidence.
    #[serde(default)]
    pub context: Vec<String>,
    pub recommendation: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub metric: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
}

/// The rules, checked.
#[derive(Debug, Clone)]
pub struct Checklist {
    pub rules: Vec<Rule>,
}

impl Checklist {
    /// Parse a checklist's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Checklist, ChecklistError> {
        let file: File = toml::from_str(text).map_err(|e| ChecklistError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let bad = |rule: &Rule, message: String| ChecklistError::Rule {
            path: path.to_string(),
            rule: rule.id.clone(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for r in &file.rule {
            if !seen.insert(r.id.clone()) {
                return Err(bad(
                    r,
                    "the id is used twice; give each rule its own".into(),
                ));
            }
            for m in std::iter::once(&r.metric)
                .chain(&r.context)
                .chain(r.only_if.as_ref().map(|c| &c.metric))
            {
                if metrics::lookup(m).is_none() {
                    return Err(bad(
                        r,
                        format!("unknown metric `{m}`; use one of analyze::metrics::CATALOGUE (docs/checklist.md lists them)"),
                    ));
                }
            }
            let out_of_order = matches!((r.warn_above, r.fail_above), (Some(w), Some(f)) if w > f)
                || matches!((r.warn_below, r.fail_below), (Some(w), Some(f)) if w < f);
            if out_of_order {
                return Err(bad(
                    r,
                    "the warn threshold is stricter than the fail one; put warn between ok and fail".into(),
                ));
            }
            let above = r.warn_above.is_some() || r.fail_above.is_some();
            let below = r.warn_below.is_some() || r.fail_below.is_some();
            if above == below {
                return Err(bad(
                    r,
                    "give thresholds on one side: warn_above/fail_above or warn_below/fail_below"
                        .into(),
                ));
            }
        }
        Ok(Checklist { rules: file.rule })
    }

    /// `DIR/checklist.toml` when it exists, else the shipped file.
    pub fn load(profiles_dir: &std::path::Path) -> Result<Checklist, ChecklistError> {
        let path = profiles_dir.join("checklist.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Checklist::parse(&text, &path.display().to_string()),
            Err(_) => Checklist::parse(DEFAULT_CHECKLIST, "profiles/checklist.toml"),
        }
    }

    /// Judge every target by every rule that concerns it.
    pub fn evaluate(&self, targets: &[Target], protocol: &str) -> Vec<RuleResult> {
        let mut out = Vec::new();
        for rule in &self.rules {
            for t in targets {
                if rule.roles.is_empty() || rule.roles.iter().any(|r| r == t.role.as_str()) {
                    out.push(judge(rule, t, protocol));
                }
            }
        }
        out
    }
}

fn metric_of<'a>(t: &'a Target, name: &str) -> Option<&'a Metric> {
    t.metrics.get(name)
}

/// A metric's value for people: shares as percentages, the rest with its
/// unit.
pub fn format_value(name: &str, v: f64) -> String {
    let unit = metrics::lookup(name).map_or("", |d| d.unit);
    match unit {
        "share" => format!("{:.1}%", v * 100.0),
        "B" => crate::units::bytes(v),
        "µs" => crate::units::duration_ns(v * 1e3),
        "ns/B" => format!("{v:.3} ns/B"),
        "ratio" => format!("{v:.2}×"),
        "" => format!("{v:.0}"),
        u => {
            if v.abs() >= 100.0 {
                format!("{v:.0} {u}")
            } else {
                format!("{v:.2} {u}")
            }
        }
    }
}

fn judge(rule: &Rule, t: &Target, protocol: &str) -> RuleResult {
    let unit = metrics::lookup(&rule.metric).map_or("", |d| d.unit);
    let mut result = RuleResult {
        id: rule.id.clone(),
        area: rule.area.clone(),
        title: rule.title.clone(),
        target: t.role,
        verdict: Verdict::NotEvaluated,
        metric: rule.metric.clone(),
        value: None,
        unit: unit.to_string(),
        evidence: String::new(),
        recommendation: String::new(),
    };
    let listed_out = !rule.protocols.is_empty() && !rule.protocols.iter().any(|p| p == protocol);
    let excepted = rule.except_protocols.iter().any(|p| p == protocol);
    if listed_out || excepted {
        let why = match (rule.protocols_why.is_empty(), excepted) {
            (false, _) => rule.protocols_why.clone(),
            (true, true) => format!("the rule leaves out {}", rule.except_protocols.join(", ")),
            (true, false) => format!("the rule is for {}", rule.protocols.join(", ")),
        };
        result.evidence = format!("does not apply to protocol {protocol}: {why}");
        return result;
    }
    let value = match metric_of(t, &rule.metric) {
        Some(Metric::Value(v)) => *v,
        Some(Metric::Unavailable(why)) => {
            result.evidence = format!("{} not measured: {why}", rule.metric);
            return result;
        }
        None => {
            result.evidence = format!("{} not measured in this run", rule.metric);
            return result;
        }
    };
    result.value = Some(value);
    let mut evidence = format!("{} = {}", rule.metric, format_value(&rule.metric, value));
    let thresholds = thresholds_text(rule);
    if !thresholds.is_empty() {
        evidence.push_str(&format!(" ({thresholds})"));
    }
    for c in &rule.context {
        match metric_of(t, c) {
            Some(Metric::Value(v)) => {
                evidence.push_str(&format!("; {c} = {}", format_value(c, *v)))
            }
            Some(Metric::Unavailable(_)) | None => {
                evidence.push_str(&format!("; {c} not measured"))
            }
        }
    }
    if let Some(cond) = &rule.only_if {
        match metric_of(t, &cond.metric) {
            Some(Metric::Value(v)) => {
                let holds = cond.above.is_none_or(|a| *v > a) && cond.below.is_none_or(|b| *v < b);
                if !holds {
                    result.verdict = Verdict::Ok;
                    result.evidence = format!(
                        "{evidence}; matters only while {} is {}: it is {}",
                        cond.metric,
                        condition_text(cond),
                        format_value(&cond.metric, *v)
                    );
                    return result;
                }
            }
            Some(Metric::Unavailable(why)) => {
                result.value = None;
                result.evidence = format!(
                    "needs {} to decide whether the rule applies, which was not measured: {why}",
                    cond.metric
                );
                return result;
            }
            None => {
                result.value = None;
                result.evidence = format!("needs {}, not measured in this run", cond.metric);
                return result;
            }
        }
    }
    let over = |limit: Option<f64>| limit.is_some_and(|l| value > l);
    let under = |limit: Option<f64>| limit.is_some_and(|l| value < l);
    result.verdict = if over(rule.fail_above) || under(rule.fail_below) {
        Verdict::Fail
    } else if over(rule.warn_above) || under(rule.warn_below) {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    if result.verdict != Verdict::Ok {
        result.recommendation = rule.recommendation.trim().to_string();
    }
    result.evidence = evidence;
    result
}

fn thresholds_text(rule: &Rule) -> String {
    let f = |what: &str, side: &str, v: Option<f64>| {
        v.map(|v| format!("{what} {side} {}", format_value(&rule.metric, v)))
    };
    [
        f("warn", "above", rule.warn_above),
        f("fail", "above", rule.fail_above),
        f("warn", "below", rule.warn_below),
        f("fail", "below", rule.fail_below),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

fn condition_text(c: &Condition) -> String {
    match (c.above, c.below) {
        (Some(a), Some(b)) => format!(
            "between {} and {}",
            format_value(&c.metric, a),
            format_value(&c.metric, b)
        ),
        (Some(a), None) => format!("above {}", format_value(&c.metric, a)),
        (None, Some(b)) => format!("below {}", format_value(&c.metric, b)),
        (None, None) => "anything".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(role: &str, metrics: &[(&str, Metric)]) -> Target {
        let mut t: Target = serde_json::from_value(serde_json::json!({
            "role": role, "pid": 1, "exe": "x", "command": [], "peak_rss_bytes": null,
            "exited": null, "counters": {}, "syscalls": [],
            "cpu": {"samples": 0, "missed_user_stacks": 0, "median_user_depth": null,
                    "top_functions": [], "threads": {}},
            "offcpu": null, "alloc": null, "crypto": null, "threads": [],
            "binary": {"is_go": false, "has_symbols": true, "notes": []},
            "costs": null, "metrics": {}, "sockets": null
        }))
        .expect("target json");
        t.metrics = metrics
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        t
    }

    #[test]
    fn shipped_checklist_parses_with_twenty_rules_over_every_area() {
        let c = Checklist::parse(DEFAULT_CHECKLIST, "checklist.toml").expect("parses");
        assert!(c.rules.len() >= 20, "{} rules", c.rules.len());
        let areas: std::collections::BTreeSet<_> =
            c.rules.iter().map(|r| r.area.as_str()).collect();
        for a in [
            "buffer management",
            "crypto",
            "connections",
            "memory",
            "syscalls",
            "cpu",
        ] {
            assert!(areas.contains(a), "no rule in {a}");
        }
    }

    #[test]
    fn verdicts_from_thresholds_and_reasons_when_unmeasured() {
        let c = Checklist::parse(DEFAULT_CHECKLIST, "checklist.toml").expect("parses");
        let pool = |v: f64| {
            let t = target("client", &[("buffer_allocs_per_mib", Metric::Value(v))]);
            c.evaluate(&[t], "tcp")
                .into_iter()
                .find(|r| r.id == "buffers.pool")
                .expect("rule buffers.pool")
        };
        assert_eq!(pool(0.0).verdict, Verdict::Ok);
        assert!(pool(0.0).recommendation.is_empty());
        let warn = pool(4.0);
        assert_eq!(warn.verdict, Verdict::Warn);
        assert!(
            warn.evidence.contains("buffer_allocs_per_mib = 4.00"),
            "{}",
            warn.evidence
        );
        assert!(!warn.recommendation.is_empty());
        assert_eq!(pool(1000.0).verdict, Verdict::Fail);

        let t = target(
            "server",
            &[(
                "buffer_allocs_per_mib",
                Metric::Unavailable("the alloc probe was off".into()),
            )],
        );
        let r = c
            .evaluate(&[t], "tcp")
            .into_iter()
            .find(|r| r.id == "buffers.pool")
            .expect("rule");
        assert_eq!(r.verdict, Verdict::NotEvaluated);
        assert!(r.evidence.contains("the alloc probe was off"));
        assert_eq!(r.value, None);
    }

    #[test]
    fn protocol_scoped_and_conditional_rules() {
        let c = Checklist::parse(DEFAULT_CHECKLIST, "checklist.toml").expect("parses");
        let t = target("client", &[("zero_copy_share", Metric::Value(0.0))]);
        let find =
            |res: Vec<RuleResult>, id: &str| res.into_iter().find(|r| r.id == id).expect("rule");
        assert_eq!(
            find(
                c.evaluate(std::slice::from_ref(&t), "tcp"),
                "buffers.zero-copy"
            )
            .verdict,
            Verdict::Warn
        );
        let tls = find(c.evaluate(&[t], "tls"), "buffers.zero-copy");
        assert_eq!(tls.verdict, Verdict::NotEvaluated);
        assert!(tls.evidence.contains("does not apply"), "{}", tls.evidence);

        // REALITY cannot resume: the resumption rule leaves it out by name
        // and judges every other protocol, a new one included.
        let fresh = target(
            "client",
            &[("full_handshakes_per_stream", Metric::Value(1.0))],
        );
        let reality = find(
            c.evaluate(std::slice::from_ref(&fresh), "reality"),
            "crypto.resumption",
        );
        assert_eq!(reality.verdict, Verdict::NotEvaluated);
        assert!(
            reality.evidence.contains("does not apply"),
            "{}",
            reality.evidence
        );
        for protocol in ["tls", "a-protocol-added-later"] {
            assert_eq!(
                find(
                    c.evaluate(std::slice::from_ref(&fresh), protocol),
                    "crypto.resumption"
                )
                .verdict,
                Verdict::Fail,
                "{protocol}"
            );
        }

        // Vectored I/O matters only while writes are small.
        let big = target(
            "client",
            &[
                ("vectored_share", Metric::Value(0.0)),
                ("bytes_per_write", Metric::Value(65536.0)),
            ],
        );
        let r = find(c.evaluate(&[big], "tcp"), "buffers.vectored-io");
        assert_eq!(r.verdict, Verdict::Ok);
        assert!(r.evidence.contains("matters only while"), "{}", r.evidence);
        let small = target(
            "client",
            &[
                ("vectored_share", Metric::Value(0.0)),
                ("bytes_per_write", Metric::Value(200.0)),
            ],
        );
        assert_eq!(
            find(c.evaluate(&[small], "tcp"), "buffers.vectored-io").verdict,
            Verdict::Warn
        );
    }

    /// The shipped checklist's verdict of `rule` on a `role` target whose
    /// only metric is `metric` = `value`, in a run of `protocol`.
    fn shipped_verdict(
        rule: &str,
        role: &str,
        metric: &str,
        value: f64,
        protocol: &str,
    ) -> Verdict {
        let c = Checklist::parse(DEFAULT_CHECKLIST, "checklist.toml").expect("parses");
        let t = target(role, &[(metric, Metric::Value(value))]);
        c.evaluate(&[t], protocol)
            .into_iter()
            .find(|r| r.id == rule)
            .unwrap_or_else(|| panic!("rule {rule}"))
            .verdict
    }

    /// The client's `rate_held_share` in the comparison of
    /// docs/case-studies/hysteria1.md (bulk windows of its report.json
    /// files): the median of 6 runs of the build before the token bucket
    /// (0.682–0.722) and of 6 runs after it (0.965–0.973).
    const RATE_HELD_BEFORE: f64 = 0.712;
    const RATE_HELD_AFTER: f64 = 0.967;

    #[test]
    fn rate_held_fires_on_hysteria1_before_the_bucket_and_not_after() {
        let judge = |share: f64, protocol: &str| {
            shipped_verdict(
                "congestion.rate-held",
                "client",
                "rate_held_share",
                share,
                protocol,
            )
        };
        // Before and after the bucket, and sing-box's Hysteria v1.
        assert_eq!(judge(RATE_HELD_BEFORE, "hysteria1"), Verdict::Fail);
        assert_eq!(judge(RATE_HELD_AFTER, "hysteria1"), Verdict::Ok);
        assert_eq!(judge(0.98, "hysteria1"), Verdict::Ok);
        assert_eq!(judge(0.85, "hysteria2"), Verdict::Warn);
        // Other protocols' congestion control follows the path.
        assert_eq!(judge(0.5, "tuic"), Verdict::NotEvaluated);
    }

    /// Bytes per read of the ech server, medians of the comparison's 6
    /// runs a side (docs/case-studies/ech.md): BoringSSL reading header and
    /// body apart, then through a 64-KiB buffer.
    const ECH_SERVER_BYTES_PER_READ_BEFORE: f64 = 10_949.0;
    const ECH_SERVER_BYTES_PER_READ_AFTER: f64 = 64_786.0;

    #[test]
    fn record_reads_fire_on_ech_before_the_buffer_and_not_after() {
        let judge = |bytes: f64, protocol: &str, id: &str| {
            shipped_verdict(id, "server", "bytes_per_read", bytes, protocol)
        };
        let rule = "buffers.record-reads";
        assert_eq!(
            judge(ECH_SERVER_BYTES_PER_READ_BEFORE, "ech", rule),
            Verdict::Warn
        );
        assert_eq!(
            judge(ECH_SERVER_BYTES_PER_READ_AFTER, "ech", rule),
            Verdict::Ok
        );
        // The general read-size rule passed the same reads: why this rule exists.
        assert_eq!(
            judge(ECH_SERVER_BYTES_PER_READ_BEFORE, "ech", "buffers.read-size"),
            Verdict::Ok
        );
        assert_eq!(judge(2_000.0, "reality", rule), Verdict::Fail);
        // QUIC reads datagrams; plain TCP has no records.
        assert_eq!(judge(1_400.0, "tuic", rule), Verdict::NotEvaluated);
        assert_eq!(judge(10_000.0, "tcp", rule), Verdict::NotEvaluated);
    }

    /// UDP datagrams dropped per MiB at the hysteria2 client's socket,
    /// medians of the comparison's 6 runs a side
    /// (docs/case-studies/hysteria2.md): the kernel's default receive
    /// buffer, then 4 MiB asked for (no drop in any of the 6 runs).
    const HYSTERIA2_CLIENT_DROPS_PER_MIB_BEFORE: f64 = 38.084;
    const HYSTERIA2_CLIENT_DROPS_PER_MIB_AFTER: f64 = 0.0;

    #[test]
    fn udp_drops_fire_on_hysteria2_before_the_buffer_and_not_after() {
        let judge = |drops: f64, protocol: &str| {
            shipped_verdict(
                "congestion.udp-drops",
                "client",
                "udp_drops_per_mib",
                drops,
                protocol,
            )
        };
        assert_eq!(
            judge(HYSTERIA2_CLIENT_DROPS_PER_MIB_BEFORE, "hysteria2"),
            Verdict::Fail
        );
        assert_eq!(
            judge(HYSTERIA2_CLIENT_DROPS_PER_MIB_AFTER, "hysteria2"),
            Verdict::Ok
        );
        // Two drops in a MiB (750-odd full-size packets) warn already.
        assert_eq!(judge(2.0, "tuic"), Verdict::Warn);
        // TCP's receive window keeps a sender from overrunning the buffer.
        assert_eq!(judge(40.0, "tls"), Verdict::NotEvaluated);
    }

    #[test]
    fn bad_rules_are_refused_with_the_rule_named() {
        let text = "[[rule]]\nid='a'\narea='x'\ntitle='t'\nmetric='nope'\nwarn_above=1\nrecommendation='r'\n";
        let e = Checklist::parse(text, "c.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("rule `a`") && e.contains("unknown metric `nope`"),
            "{e}"
        );
        let text = "[[rule]]\nid='a'\narea='x'\ntitle='t'\nmetric='copy_share'\nwarn_above=1\nwarn_below=0\nrecommendation='r'\n";
        let e = Checklist::parse(text, "c.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("one side"), "{e}");
    }
}
