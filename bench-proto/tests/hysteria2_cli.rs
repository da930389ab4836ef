//! `protoprof-endpoint hysteria2`: two processes relay a few MiB (with and
//! without Salamander); bad settings exit 2 with one line.

mod support;

use std::time::Duration;

use support::endpoint::{check_reversed_echo, endpoint, run_to_exit, stop_both};
use support::hysteria2::PASSWORD;
use support::pki;

const WAIT: Duration = Duration::from_secs(30);

/// Server and client processes with `extra` settings on both; 4 MiB go to a
/// sink that answers with them reversed.
fn relay_through_two_processes(extra: &[&str]) {
    let pki = pki();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    let mut args = vec![
        "hysteria2",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        cert,
        "--key",
        key,
        "--password",
        PASSWORD,
    ];
    args.extend_from_slice(extra);
    let mut server = endpoint("endpoint", &args);
    let server_addr = server.first_line_listening_on(WAIT).to_string();
    let mut args = vec![
        "hysteria2",
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
        PASSWORD,
    ];
    args.extend_from_slice(extra);
    let mut client = endpoint("endpoint", &args);
    let socks = client.first_line_listening_on(WAIT);

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    check_reversed_echo(socks, payload, WAIT);

    stop_both(&mut server, &mut client, WAIT);
}

#[test]
fn two_processes_relay_and_exit_0_on_signals() {
    relay_through_two_processes(&[]);
}

#[test]
fn two_processes_relay_with_salamander_and_brutal() {
    relay_through_two_processes(&[
        "--set",
        "hysteria2.obfs=salamander",
        "--set",
        "hysteria2.obfs_password=pass the salt",
        "--set",
        "hysteria2.up_mbps=1000",
        "--set",
        "hysteria2.down_mbps=1000",
    ]);
}

#[test]
fn bad_hysteria2_settings_exit_2_with_one_line() {
    let pki = pki();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    for (set, names) in [
        ("hysteria2.x=1", "hysteria2.x"),
        ("hysteria2.obfs=xor", "hysteria2.obfs"),
        ("hysteria2.obfs=salamander", "hysteria2.obfs_password"),
        ("hysteria2.up_mbps=fast", "hysteria2.up_mbps"),
        ("hysteria2.udp=maybe", "hysteria2.udp"),
    ] {
        let (code, lines) = run_to_exit(
            &[
                "hysteria2",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--cert",
                cert,
                "--key",
                key,
                "--password",
                PASSWORD,
                "--set",
                set,
            ],
            WAIT,
        );
        assert_eq!(code, Some(2), "{set}: {lines:?}");
        assert_eq!(lines.len(), 1, "{set}: {lines:?}");
        assert!(lines[0].contains(names), "{set}: {lines:?}");
    }
    // A missing --ca or --password is a usage error too.
    for args in [
        &[
            "hysteria2",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--password",
            PASSWORD,
        ][..],
        &[
            "hysteria2",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
        ][..],
    ] {
        let (code, lines) = run_to_exit(args, WAIT);
        assert_eq!(code, Some(2), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    }
}
