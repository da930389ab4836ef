//! protoprof-endpoint as most proxies ship: built without frame pointers
//! (`cargo xtask test` builds this second copy into
//! target/no-frame-pointers). Its stacks are copied and unwound from
//! `.eh_frame` (capture/stack_copies.rs), so a tcp profile of it shows the
//! relay's own functions as deep as the frame-pointer build's, without
//! the shallow-stack warning. Needs root (eBPF).

use std::path::{Path, PathBuf};

mod support;
use support::*;

fn endpoint_without_frame_pointers() -> PathBuf {
    let p = workspace().join("target/no-frame-pointers/release/protoprof-endpoint");
    assert!(
        p.is_file(),
        "{} missing: `cargo xtask test` builds it (build_endpoint_without_frame_pointers in xtask)",
        p.display()
    );
    p
}

/// Share of a run's CPU samples (both endpoints) whose stack holds one of
/// bench-proto's own functions, and those samples.
fn own_function_share(dir: &Path) -> (f64, u64) {
    let folded = std::fs::read_to_string(dir.join("stacks/cpu.folded")).expect("cpu.folded");
    let (mut own, mut all) = (0u64, 0u64);
    for line in folded.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let n: u64 = n.parse().expect("a sample count");
        all += n;
        if stack.contains("bench_proto::relay") || stack.contains("bench_proto::tcp") {
            own += n;
        }
    }
    assert!(all > 0, "{}: no CPU samples", dir.display());
    (own as f64 / all as f64, own)
}

#[test]
#[ignore = "needs root"]
fn an_endpoint_without_frame_pointers_profiles_as_deep_as_one_with() {
    become_subreaper();
    let out = out_dir("no-frame-pointers");
    let (fp_dir, fp, _) = profile_ok("tcp", &out, "3");
    let (dir, report, _) = run_ok(
        profile_named_with_endpoint("tcp", &out, "3", &endpoint_without_frame_pointers()),
        &out,
        &[],
    );

    for t in &report.targets {
        let role = t.role.as_str();
        let with = fp
            .targets
            .iter()
            .find(|f| f.role == t.role)
            .and_then(|f| f.cpu.median_user_depth)
            .expect("the frame-pointer build's median depth");
        let without = t.cpu.median_user_depth.expect("a median depth");
        assert!(
            without * 10 >= with * 9,
            "{role}: median user stack depth {without} without frame pointers, {with} with"
        );
    }
    assert!(
        !report.warnings.iter().any(|w| w.contains("shallow")),
        "{:#?}",
        report.warnings
    );
    let (share_with, _) = own_function_share(&fp_dir);
    let (share, own) = own_function_share(&dir);
    assert!(
        own > 0 && share >= share_with * 0.9,
        "bench-proto's relay in {:.1} % of the samples without frame pointers, {:.1} % with",
        share * 100.0,
        share_with * 100.0
    );
    let _ = std::fs::remove_dir_all(&out);
    assert_clean();
}
