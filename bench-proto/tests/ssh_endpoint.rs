//! The `protoprof-endpoint` binary with protocol `ssh`: two processes relay
//! hashed traffic (password and key clients), and bad options exit 2 with
//! one line.

mod support;

use std::time::Duration;

use bench_proto::ssh;
use support::endpoint::{endpoint, run_to_exit};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_relay_and_exit_0_on_signals() {
    let dir = TempDir::new("ssh-endpoint");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    ssh::generate_key(&dir.join("host_key")).unwrap();
    ssh::generate_key(&dir.join("id")).unwrap();
    let mut server = endpoint(
        "ssh server",
        &[
            "ssh",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--host-key",
            &p("host_key"),
            "--user",
            "bench",
            "--password",
            "pw",
            "--authorized-keys",
            &p("id.pub"),
        ],
    );
    let server_addr = server.listening_on().to_string();
    let known = format!("ssh.known_host_key={}", p("host_key.pub"));
    let mut by_password = endpoint(
        "ssh client (password)",
        &[
            "ssh",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--user",
            "bench",
            "--password",
            "pw",
            "--set",
            &known,
        ],
    );
    let mut by_key = endpoint(
        "ssh client (key)",
        &[
            "ssh",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--user",
            "bench",
            "--identity",
            &p("id"),
            "--set",
            &known,
            "--set",
            "relay.buffer_size=16384",
        ],
    );
    let socks_password = by_password.listening_on();
    let socks_key = by_key.listening_on();

    with_timeout(Duration::from_secs(120), async {
        bulk_through(socks_password, 4 * MIB + 1, 3 * MIB + 5).await;
        bulk_through(socks_key, 3 * MIB + 1, 4 * MIB + 5).await;
        concurrent_through(socks_key, 8, 100_000).await;
    })
    .await;

    server.signal(libc::SIGTERM);
    by_password.signal(libc::SIGINT);
    by_key.signal(libc::SIGTERM);
    assert!(server.wait(WAIT).success());
    assert!(by_password.wait(WAIT).success());
    assert!(by_key.wait(WAIT).success());
}

#[test]
fn bad_options_exit_2_with_one_line() {
    let dir = TempDir::new("ssh-endpoint-bad");
    ssh::generate_key(&dir.join("host_key")).unwrap();
    let host_key = dir.join("host_key").to_str().unwrap().to_owned();
    let host_pub = format!("{host_key}.pub");
    let known = format!("ssh.known_host_key={host_pub}");
    let server = ["ssh", "server", "--listen", "127.0.0.1:0"];
    let client = [
        "ssh",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        "127.0.0.1:1",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &server[..],
                &[
                    "--host-key",
                    &host_key,
                    "--user",
                    "u",
                    "--password",
                    "p",
                    "--set",
                    "ssh.nope=1",
                ],
            ]
            .concat(),
            "ssh.nope",
        ),
        (
            [&server[..], &["--user", "u", "--password", "p"]].concat(),
            "--host-key",
        ),
        (
            [&server[..], &["--host-key", &host_key]].concat(),
            "--authorized-keys",
        ),
        (
            [&server[..], &["--host-key", &host_key, "--password", "p"]].concat(),
            "--user",
        ),
        (
            [
                &server[..],
                &["--host-key", &host_pub, "--user", "u", "--password", "p"],
            ]
            .concat(),
            &host_pub,
        ),
        (
            [
                &server[..],
                &["--host-key", &host_key, "--authorized-keys", &host_key],
            ]
            .concat(),
            &host_key,
        ),
        (
            [&client[..], &["--user", "u", "--password", "p"]].concat(),
            "ssh.known_host_key",
        ),
        (
            [
                &client[..],
                &[
                    "--user",
                    "u",
                    "--password",
                    "p",
                    "--set",
                    "ssh.accept_any_host_key=maybe",
                ],
            ]
            .concat(),
            "ssh.accept_any_host_key",
        ),
        (
            [&client[..], &["--password", "p", "--set", &known]].concat(),
            "--user",
        ),
        (
            [&client[..], &["--user", "u", "--set", &known]].concat(),
            "--identity",
        ),
        (
            [
                &client[..],
                &["--user", "u", "--identity", &host_pub, "--set", &known],
            ]
            .concat(),
            &host_pub,
        ),
    ];
    for (args, needle) in cases {
        let (code, stderr) = run_to_exit(&args, WAIT);
        assert_eq!(code, Some(2), "{args:?}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{args:?}: {stderr:?}");
        assert!(stderr[0].contains(needle), "{args:?}: {stderr:?}");
    }
}
