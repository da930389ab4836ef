//! `protoprof-endpoint tuic`: two processes relay a few MiB; bad settings
//! exit 2 with one line.

mod support;

use std::time::Duration;

use support::endpoint::{check_reversed_echo, endpoint, run_to_exit, stop_both};
use support::pki;
use support::tuic::{PASSWORD, UUID};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn two_processes_relay_and_exit_0_on_signals() {
    let pki = pki();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    let mut server = endpoint(
        "endpoint",
        &[
            "tuic",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
            "--user",
            UUID,
            "--password",
            PASSWORD,
            "--set",
            "tuic.congestion_control=cubic",
        ],
    );
    let server_addr = server.first_line_listening_on(WAIT).to_string();
    let mut client = endpoint(
        "endpoint",
        &[
            "tuic",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--ca",
            cert,
            "--user",
            UUID,
            "--password",
            PASSWORD,
            "--set",
            "tuic.udp_relay_mode=quic",
            "--set",
            "tuic.heartbeat_s=5",
        ],
    );
    let socks = client.first_line_listening_on(WAIT);

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    check_reversed_echo(socks, payload, WAIT);

    stop_both(&mut server, &mut client, WAIT);
}

#[test]
fn bad_tuic_settings_exit_2_with_one_line() {
    let pki = pki();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    for (set, names) in [
        ("tuic.x=1", "tuic.x"),
        ("tuic.udp_relay_mode=tcp", "tuic.udp_relay_mode"),
        ("tuic.congestion_control=vegas", "tuic.congestion_control"),
        ("tuic.heartbeat_s=0", "tuic.heartbeat_s"),
    ] {
        let (code, lines) = run_to_exit(
            &[
                "tuic",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--cert",
                cert,
                "--key",
                key,
                "--user",
                UUID,
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
    // A user that is not a UUID, and a missing --ca, are usage errors too.
    for args in [
        &[
            "tuic",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
            "--user",
            "bob",
            "--password",
            PASSWORD,
        ][..],
        &[
            "tuic",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--user",
            UUID,
            "--password",
            PASSWORD,
        ][..],
    ] {
        let (code, lines) = run_to_exit(args, WAIT);
        assert_eq!(code, Some(2), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    }
}
