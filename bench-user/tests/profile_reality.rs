//! The `reality` chain profiled, ours and shoes's: every byte arrives, the
//! crypto probe counts one REALITY handshake per connection on each side
//! (the client's certificate check, the server's HMAC certificate) and
//! the record AEAD calls of each implementation's library (ring for ours,
//! aws-lc for shoes), and shoes's jemalloc is found by its own prefix.
//! Needs root; the shoes test needs shoes (`cargo xtask setup`).

use protoprof::report::{IntegrityStatus, Report, Role};

mod support;
use support::*;

/// Calls of the crypto probe's symbols in `role` that `pick` selects.
fn calls_where(report: &Report, role: Role, pick: impl Fn(&str, &str) -> bool) -> u64 {
    report
        .targets
        .iter()
        .filter(|t| t.role == role)
        .flat_map(|t| t.crypto.as_ref().expect("crypto").symbols.iter())
        .filter(|s| pick(&s.family, &s.symbol))
        .map(|s| s.calls)
        .sum()
}

/// Calls of `symbol` in `role`'s crypto probe.
fn calls(report: &Report, role: Role, symbol: &str) -> u64 {
    calls_where(report, role, |_, s| s == symbol)
}

/// Runs `profile` and checks the handshake markers and record AEAD.
fn check(profile: &str, client_marker: &str, server_marker: &str, aead_family: &str) -> Report {
    become_subreaper();
    let out = out_dir(profile);
    let (_, report, _) = profile_ok(profile, &out, "2");
    assert_eq!(report.workload.integrity, IntegrityStatus::Ok);
    assert_eq!(report.run.status, "ok");
    // One handshake per connection of every phase, counted over the whole
    // run (`connection_setup` in crypto.toml).
    let connections = phase_connections(&report);
    assert_eq!(
        calls(&report, Role::Client, client_marker),
        connections,
        "{client_marker}"
    );
    assert_eq!(
        calls(&report, Role::Server, server_marker),
        connections,
        "{server_marker}"
    );
    for role in [Role::Client, Role::Server] {
        // Finished, the VLESS request and response, the payload both ways.
        let records = calls_where(&report, role, |f, _| f == aead_family);
        assert!(
            records > 4 * connections,
            "{role}: {records} {aead_family} calls for {connections} connections"
        );
    }
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
    report
}

#[test]
#[ignore = "needs root"]
fn reality_profile_counts_one_handshake_per_connection_and_ring_records() {
    check(
        "reality",
        "bench_proto::reality::cert::check",
        "bench_proto::reality::cert::TemporaryCertificate::for_connection",
        "ring AES-GCM",
    );
}

#[test]
#[ignore = "needs root and shoes (cargo xtask setup)"]
fn shoes_reality_profile_counts_handshakes_aws_lc_records_and_jemalloc() {
    if let Err(e) = protoprof::peers::shoes() {
        panic!("{e}");
    }
    let report = check(
        "shoes-reality",
        "shoes::reality::reality_client_verify::verify_certificate_hmac",
        "shoes::reality::reality_certificate::generate_hmac_certificate",
        "aws-lc AEAD",
    );
    for t in &report.targets {
        let alloc = t.alloc.as_ref().expect("alloc");
        assert!(
            alloc.attached.iter().any(|a| a.symbol == "_rjem_malloc"),
            "{}: {:?}",
            t.role,
            alloc.attached
        );
    }
}
