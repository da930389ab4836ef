//! The `hysteria1` chain profiled end to end with the crypto probe: QUIC's
//! AEAD (ring AES-GCM, as for tuic and hysteria2) is found and counted on
//! both sides, and the workload's integrity holds. Needs root.

use protoprof::report::IntegrityStatus;

mod support;
use support::*;

#[test]
#[ignore = "needs root"]
fn hysteria1_profile_counts_quic_aead_and_keeps_integrity() {
    become_subreaper();
    let out = out_dir("hysteria1");
    // One pass: the crypto counts then come from the pass whose bytes the
    // workload reports, so they can be checked against each other.
    let (dir, report, _) = profile_ok_with("hysteria1", &out, "3", &["probes.per_call_pass=false"]);
    assert_eq!(report.workload.integrity, IntegrityStatus::Ok);
    // Every QUIC packet is sealed once by its sender and opened once by its
    // receiver, each with at least one call into ring's AES-GCM, and a
    // packet holds at most 1452 bytes of payload (quinn's largest UDP
    // payload on loopback): each side, which sends one direction's bytes and
    // receives the other's, makes at least one call per 1452 bytes moved.
    // The probes count inside the measured windows only.
    let moved: u64 = report
        .workload
        .phases
        .iter()
        .map(|p| p.window_bytes_up + p.window_bytes_down)
        .sum();
    for t in &report.targets {
        let crypto = t.crypto.as_ref().expect("crypto");
        let calls: u64 = crypto
            .symbols
            .iter()
            .filter(|s| s.family.starts_with("ring AES-GCM"))
            .map(|s| s.calls)
            .sum();
        assert!(
            calls >= moved / 1452,
            "{}: {calls} AEAD calls for {moved} bytes: {:?}",
            t.role,
            crypto.symbols
        );
    }
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    assert!(
        folded.contains("bench_proto::hysteria1"),
        "the hysteria1 endpoint's functions are not in the flame graph"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
