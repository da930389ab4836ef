//! The optimization workflow end to end: the tcp endpoint's relay modes,
//! profiled as a user would, must show what each optimization changes —
//! allocations per MiB for `pooled`, user-space copying and splice use for
//! `splice` — and the checklist must say so. Needs root (eBPF).

use protoprof::report::{Metric, Report, Verdict};

mod support;
use support::*;

fn metric(report: &Report, role: &str, name: &str) -> f64 {
    let t = report
        .targets
        .iter()
        .find(|t| t.role.as_str() == role)
        .expect("target");
    match t.metrics.get(name) {
        Some(Metric::Value(v)) => *v,
        other => panic!("{role} {name}: {other:?}"),
    }
}

fn verdict(report: &Report, role: &str, id: &str) -> Verdict {
    report
        .checklist
        .iter()
        .find(|r| r.target.as_str() == role && r.id == id)
        .map(|r| r.verdict)
        .unwrap_or_else(|| panic!("rule {id} for {role} not judged"))
}

#[test]
#[ignore = "needs root"]
fn relay_modes_change_what_the_profile_measures() {
    become_subreaper();
    let out = out_dir("relay-modes");
    let run = |mode: &str| {
        let set = format!("relay.mode={mode}");
        let (_, report, _) = profile_ok_with("tcp", &out, "4", &[&set]);
        report
    };
    let copy = run("copy");
    let pooled = run("pooled");
    let splice = run("splice");
    for role in ["client", "server"] {
        // copy: a fresh 64 KiB buffer for every read, and no read returns
        // more than the buffer: 16 per MiB of what the relay read. The
        // denominator is the generator's count inside the window, not the
        // relay's: between them sit two directions of four connections'
        // socket buffers, autotuned to several MiB each, whose fill moves
        // with scheduling, so in a short window the ratio strays from 16 by
        // what those buffers gained or lost: 15.2–17.4 in 3 runs here of
        // 2-s profiles beside two busy loops, and 13.96 once in CI. The 4-s
        // profile doubles the window (15.7–16.4 in 4 runs beside a cargo
        // build); 12 still sees one buffer per read, far from pooled's 0
        // and above the rule's fail line of 8.
        let fresh = metric(&copy, role, "buffer_allocs_per_mib");
        assert!(fresh >= 12.0, "copy: {fresh} buffer allocations per MiB");
        assert_eq!(verdict(&copy, role, "buffers.pool"), Verdict::Fail);
        // pooled: the pool's buffers come back; steady state allocates none.
        let reused = metric(&pooled, role, "buffer_allocs_per_mib");
        assert!(reused < 1.0, "pooled: {reused} buffer allocations per MiB");
        assert_eq!(verdict(&pooled, role, "buffers.pool"), Verdict::Ok);
        // splice: bytes move socket → pipe → socket inside the kernel.
        let zero = metric(&splice, role, "zero_copy_share");
        assert!(zero > 0.9, "splice: zero-copy share {zero}");
        assert_eq!(verdict(&splice, role, "buffers.zero-copy"), Verdict::Ok);
        assert_eq!(verdict(&copy, role, "buffers.zero-copy"), Verdict::Warn);
        let copy_share = metric(&splice, role, "copy_share");
        assert!(
            copy_share < 0.02,
            "splice: {copy_share} of CPU in user copies"
        );
    }
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
