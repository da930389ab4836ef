//! The deadlines of the end-to-end tests' commands (support::output_within):
//! a command that hangs, or that exits leaving a process that holds its
//! output open, fails its test with what the processes were doing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

mod support;
use support::*;

/// The failure `output_within` gives for `sh -c script` under `limit`;
/// the test fails if there is none.
fn failure_of(script: &str, limit: Duration) -> String {
    let failed = std::panic::catch_unwind(|| {
        output_within(Command::new("sh").args(["-c", script]), limit, Stderr::Keep)
    });
    let e = failed.expect_err("the command passed");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_command_past_its_limit_fails_naming_its_threads_and_is_stopped() {
    become_subreaper();
    let started = Instant::now();
    let text = failure_of("echo started >&2; exec sleep 60", Duration::from_secs(1));
    assert!(text.contains("still running after 1s"), "{text}");
    // The process and its thread, by name, and what it printed.
    assert!(text.contains("sleep 60"), "{text}");
    assert!(text.contains("tid "), "{text}");
    assert!(text.contains("started"), "{text}");
    // With gdb, each thread's user backtrace.
    if Command::new("gdb").arg("--version").output().is_ok() {
        assert!(text.contains("#0 "), "{text}");
    }
    // Stopped, not left behind: the SIGTERM ends a sleep at once.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(my_children().is_empty(), "{:?}", my_children());
}

#[test]
fn a_process_left_holding_the_output_fails_the_command_and_is_killed() {
    become_subreaper();
    let text = failure_of("sleep 60 & echo left", Duration::from_secs(30));
    assert!(
        text.contains("left processes holding its output open"),
        "{text}"
    );
    assert!(text.contains("sleep 60"), "{text}");
    // Killed; reaped here, as the orphan's new parent.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !my_children().is_empty() {
        assert!(Instant::now() < deadline, "{:?}", my_children());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_command_within_its_limit_gives_its_output() {
    let o = output_within(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(30),
        Stderr::Keep,
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(o.stdout, b"out\n");
    assert_eq!(o.stderr, b"err\n");
}
