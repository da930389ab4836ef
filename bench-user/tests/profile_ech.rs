//! The `ech` chain profiled with the crypto probe: BoringSSL's HPKE (the
//! ECH seal and open) and TLS record AEAD families, linked statically into
//! protoprof-endpoint, are found by symbol, HPKE is counted once per
//! handshake and the record AEAD calls are counted. Needs root.

use protoprof::report::IntegrityStatus;

mod support;
use support::*;

#[test]
#[ignore = "needs root"]
fn ech_profile_counts_hpke_per_handshake_and_record_aead() {
    become_subreaper();
    let out = out_dir("ech");
    let (_, report, _) = profile_ok("ech", &out, "2");
    assert_eq!(report.workload.integrity, IntegrityStatus::Ok);
    for t in &report.targets {
        let crypto = t.crypto.as_ref().expect("crypto");
        let calls = |symbol: &str| -> u64 {
            crypto
                .symbols
                .iter()
                .filter(|s| s.symbol == symbol)
                .map(|s| s.calls)
                .sum()
        };
        let families: Vec<&str> = crypto.symbols.iter().map(|s| s.family.as_str()).collect();
        assert!(
            families.contains(&"BoringSSL HPKE (ECH)")
                && families.contains(&"BoringSSL TLS record AEAD"),
            "{}: {families:?}",
            t.role
        );
        // Every connection of every phase made one handshake.
        let connections = phase_connections(&report);
        // ECH's HPKE runs once per handshake: the client sets up a sender
        // context and seals the inner ClientHello, the server sets up a
        // recipient context and opens it. Handshakes happen while the
        // connections are set up, before a window opens; the family is
        // counted over the whole run (`connection_setup` in crypto.toml).
        let (setup, once) = match t.role {
            protoprof::report::Role::Client => ("EVP_HPKE_CTX_setup_sender", "EVP_HPKE_CTX_seal"),
            _ => ("EVP_HPKE_CTX_setup_recipient", "EVP_HPKE_CTX_open"),
        };
        assert_eq!(calls(setup), connections, "{}: {setup}", t.role);
        assert_eq!(calls(once), connections, "{}: {once}", t.role);
        // The record layer seals and opens more than once per connection
        // (Finished, the request, the payload both ways).
        let records = calls("EVP_AEAD_CTX_seal_scatter") + calls("EVP_AEAD_CTX_open");
        assert!(
            records > 4 * connections,
            "{}: {records} record calls for {connections} connections",
            t.role
        );
    }
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
