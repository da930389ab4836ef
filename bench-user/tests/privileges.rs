//! Without the privileges to probe, protoprof says in one line what it
//! needs and exits with 2 before it starts anything. The profile's endpoints
//! are shell commands that leave a marker file when they run, so a process
//! started before the check would show.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

mod support;
use support::*;

/// A profile whose two endpoints write `dir/started-<side>` when they run.
fn marker_profile(dir: &Path) -> PathBuf {
    let side = |s: &str| {
        format!(
            "[endpoints.{s}]\ncommand = [\"/bin/sh\", \"-c\", \"echo started > {}/started-{s}; exec sleep 30\"]\n",
            dir.display()
        )
    };
    let text = format!(
        "name = \"markers\"\nprotocol = \"tcp\"\n\n{}\n{}\n\
         [[phase]]\npattern = \"bulk\"\nconnections = 1\ndirection = \"up\"\nchunk_size = 65536\nwarmup_s = 1\nduration_s = 1\n",
        side("server"),
        side("client")
    );
    let path = dir.join("markers.toml");
    std::fs::write(&path, text).expect("write profile");
    path
}

/// `protoprof profile` of the marker profile, run through `wrap` (a
/// capability-dropping command line, or none).
fn run(dir: &Path, wrap: &[&str]) -> Output {
    let profile = marker_profile(dir);
    let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    argv.push(PROTOPROF.to_string());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .arg("profile")
        .arg(&profile)
        .arg("--out")
        .arg(dir.join("runs"));
    output_within(&mut cmd, COMMAND_LIMIT, Stderr::Keep)
}

fn started(dir: &Path) -> Vec<String> {
    ["server", "client"]
        .iter()
        .filter(|s| dir.join(format!("started-{s}")).exists())
        .map(|s| s.to_string())
        .collect()
}

/// Exit 2, exactly one line on stderr (returned), nothing started, no run
/// directory.
fn refused(dir: &Path, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(started(dir), Vec::<String>::new(), "{stderr}");
    assert!(!dir.join("runs").exists(), "a run directory was made");
    stderr.trim_end().to_string()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn without_capabilities_it_names_them_and_starts_nothing() {
    let dir = out_dir("no-caps");
    // As root: drop every capability for protoprof. Otherwise this process
    // has none to drop (checked, so the test cannot pass by accident).
    let wrap: &[&str] = if is_root() {
        &["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
    } else {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        assert!(
            status.contains("CapEff:\t0000000000000000"),
            "not root but holding capabilities: {status}"
        );
        &[]
    };
    let line = refused(&dir, &run(&dir, wrap));
    assert!(
        line.starts_with("protoprof: cannot probe here: missing "),
        "{line}"
    );
    for needed in [
        "CAP_BPF (loading the probes)",
        "CAP_PERFMON (perf events and uprobes on the targets; without it kernel.perf_event_paranoid=",
        "CAP_SYS_PTRACE (reading the targets' sockets)",
        "run as root, or grant them: setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep protoprof",
    ] {
        assert!(line.contains(needed), "{needed:?} not in {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root"]
fn without_cap_bpf_alone_it_names_that_one_and_with_all_it_starts_the_chain() {
    let dir = out_dir("no-bpf");
    // CAP_SYS_ADMIN would stand in for CAP_BPF: drop both.
    let out = run(
        &dir,
        &[
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-bpf,-sys_admin",
            "--",
        ],
    );
    assert_eq!(
        refused(&dir, &out),
        "protoprof: cannot probe here: missing CAP_BPF (loading the probes): run as root, \
         or grant them: setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep protoprof"
    );

    // The control: with every privilege the same profile gets as far as
    // starting its endpoints (which then never accept, so the run fails).
    let out = run(&dir, &[]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        started(&dir),
        vec!["server".to_string()],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}
