//! The `protoprof-endpoint` binary with protocol `tls`: two processes relay
//! hashed traffic, and bad options exit 2 with one line.

mod support;

use std::time::Duration;

use bench_proto::pki;
use support::endpoint::{endpoint, run_to_exit, stop_both};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_relay_and_exit_0_on_signals() {
    let dir = TempDir::new("tls-endpoint");
    let (cert, key) = pki::self_signed(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut server = endpoint(
        "tls server",
        &[
            "tls",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
            "--password",
            "pw",
            "--set",
            "tls.alpn=h2",
            "--set",
            "relay.buffer_size=16384",
        ],
    );
    let server_addr = server.listening_on().to_string();
    let mut client = endpoint(
        "tls client",
        &[
            "tls",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--ca",
            cert,
            "--server-name",
            "localhost",
            "--password",
            "pw",
            "--set",
            "tls.alpn=h2",
        ],
    );
    let socks = client.listening_on();

    with_timeout(Duration::from_secs(120), async {
        bulk_through(socks, 4 * MIB + 1, 3 * MIB + 5).await;
        concurrent_through(socks, 8, 100_000).await;
    })
    .await;

    stop_both(&mut server, &mut client, WAIT);
}

#[test]
fn bad_options_exit_2_with_one_line() {
    let dir = TempDir::new("tls-endpoint-bad");
    let (cert, key) = pki::self_signed(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = ["tls", "server", "--listen", "127.0.0.1:0"];
    let with_certs = [
        &server[..],
        &["--cert", cert, "--key", key, "--password", "pw"],
    ]
    .concat();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [&with_certs[..], &["--set", "tls.nope=1"]].concat(),
            "tls.nope",
        ),
        (
            [&with_certs[..], &["--set", "tls.fallback=nowhere"]].concat(),
            "tls.fallback",
        ),
        (
            [&with_certs[..], &["--set", "tls.alpn=a,,b"]].concat(),
            "tls.alpn",
        ),
        (
            [&with_certs[..], &["--set", "nope.x=1"]].concat(),
            "tls.fallback",
        ),
        (
            [&server[..], &["--key", key, "--password", "pw"]].concat(),
            "--cert",
        ),
        (
            [
                &server[..],
                &["--cert", cert, "--key", cert, "--password", "pw"],
            ]
            .concat(),
            cert,
        ),
        (
            [&server[..], &["--cert", cert, "--key", key]].concat(),
            "--password",
        ),
        (
            vec![
                "tls",
                "client",
                "--listen",
                "127.0.0.1:0",
                "--server",
                "127.0.0.1:1",
                "--password",
                "pw",
            ],
            "--ca",
        ),
        (
            vec![
                "tls",
                "client",
                "--listen",
                "127.0.0.1:0",
                "--server",
                "127.0.0.1:1",
                "--password",
                "pw",
                "--ca",
                key,
            ],
            "certificate",
        ),
        (
            vec![
                "tls",
                "client",
                "--listen",
                "127.0.0.1:0",
                "--server",
                "127.0.0.1:1",
                "--password",
                "pw",
                "--ca",
                cert,
                "--server-name",
                "no name",
            ],
            "server name",
        ),
    ];
    for (args, needle) in cases {
        let (code, stderr) = run_to_exit(&args, WAIT);
        assert_eq!(code, Some(2), "{args:?}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{args:?}: {stderr:?}");
        assert!(stderr[0].contains(needle), "{args:?}: {stderr:?}");
    }
}
