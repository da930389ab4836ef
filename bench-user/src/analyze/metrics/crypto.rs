//! Crypto metrics, from the crypto probe's calls and the CPU samples in
//! crypto code.

use std::collections::BTreeMap;

use super::{ratio, un, Evidence, MetricInputs, PerCallScope};
use crate::report::{Metric, MetricEvidence, Target};

/// The crypto family: software share, record size, full handshakes per
/// stream, crypto ns/B and its ratio to the calibration.
pub(super) fn insert(
    t: &Target,
    inp: &MetricInputs,
    scope: &PerCallScope,
    m: &mut BTreeMap<String, Metric>,
    ev: &mut Evidence,
) {
    let all_rows = t.crypto.as_ref().map(|c| c.symbols.as_slice());
    // Rows counted at connection set-up (handshake markers, HPKE) are not
    // the windows' record ciphers.
    let cipher_rows: Option<Vec<crate::report::CryptoSymbolRow>> =
        all_rows.map(|r| r.iter().filter(|s| !s.connection_setup).cloned().collect());
    let rows = cipher_rows.as_deref();
    // Calls of the scope's phases where the report splits them by phase.
    let calls: u64 = match &scope.crypto {
        Some(c) => c.calls,
        None => rows.map_or(0, |r| r.iter().map(|s| s.calls).sum()),
    };
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
            let (software, kb, kc) = match &scope.crypto {
                Some(c) => (c.software_calls, c.length_bytes, c.length_calls),
                None => {
                    // Only record-carrying rows whose length is known;
                    // connection set-up (ECH's HPKE) carries no records,
                    // and rows saved before capture said so still claim one.
                    let known: Vec<_> = rows
                        .iter()
                        .filter(|s| s.bytes.is_some() && s.record && !s.connection_setup)
                        .collect();
                    (
                        rows.iter()
                            .filter(|s| s.accel == "software")
                            .map(|s| s.calls)
                            .sum(),
                        known.iter().filter_map(|s| s.bytes).sum(),
                        known.iter().map(|s| s.calls).sum(),
                    )
                }
            };
            m.insert(
                "crypto_software_share".into(),
                Metric::Value(software as f64 / calls as f64),
            );
            ev.insert(
                "crypto_software_share".into(),
                MetricEvidence {
                    samples: calls,
                    interval: None,
                },
            );
            m.insert(
                "crypto_record_bytes".into(),
                ratio(
                    kb as f64,
                    kc as f64,
                    "no probed crypto function that carries whole records and has a known length argument was called",
                ),
            );
        }
    }
    m.insert(
        "full_handshakes_per_stream".into(),
        match all_rows {
            None => un("the crypto probe was off (probes.crypto.enabled)"),
            Some(_) if t.role != crate::report::Role::Client => un("counted on the client endpoint only"),
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
    // The crypto category of the target's costs, over the costs' own bytes:
    // the same figure as `cost.crypto.ns_per_byte`.
    let costs = t.costs.as_ref().filter(|c| c.samples > 0);
    let bytes = costs.map_or(0.0, |c| c.bytes as f64);
    let crypto_ns = costs
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
