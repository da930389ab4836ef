//! The `protoprof-endpoint` binary: argument errors, and a real chain of two
//! processes that relays and exits cleanly on signals.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use support::endpoint::{
    check_reversed_echo, endpoint, run_to_exit, socks_connect_blocking, stop_both,
};
use support::Proc;

const WAIT: Duration = Duration::from_secs(20);

/// Runs a tcp server endpoint with `--set ARG` to its exit (a bad setting
/// exits at once); returns its exit code and stderr lines.
fn tcp_server_with_setting(arg: &str) -> (Option<i32>, Vec<String>) {
    run_to_exit(
        &["tcp", "server", "--listen", "127.0.0.1:0", "--set", arg],
        WAIT,
    )
}

#[test]
fn unknown_setting_exits_2_naming_the_key() {
    let (code, stderr) = tcp_server_with_setting("relay.nope=1");
    assert_eq!(code, Some(2), "{stderr:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("relay.nope"), "{stderr:?}");
    assert!(
        stderr[0].contains("relay.buffer_size"),
        "names the fix: {stderr:?}"
    );
}

#[test]
fn bad_setting_value_exits_2_naming_the_key() {
    for arg in [
        "relay.buffer_size=lots",
        "relay.buffer_size=0",
        "relay.buffer_size",
    ] {
        let (code, stderr) = tcp_server_with_setting(arg);
        assert_eq!(code, Some(2), "{arg}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{arg}: {stderr:?}");
        assert!(stderr[0].contains("relay.buffer_size"), "{arg}: {stderr:?}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    let cases: [&[&str]; 5] = [
        // --server is required for the client side...
        &["tcp", "client", "--listen", "127.0.0.1:0"],
        // ...and refused on the server side.
        &[
            "tcp",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
        ],
        // --listen has no default.
        &["tcp", "server"],
        &["carrier-pigeon", "server", "--listen", "127.0.0.1:0"],
        &["tcp", "server", "--listen", "not-an-address"],
    ];
    for args in cases {
        let (code, stderr) = run_to_exit(args, WAIT);
        assert_eq!(code, Some(2), "{args:?}: {stderr:?}");
        assert!(!stderr.is_empty(), "{args:?}");
    }
}

/// A tcp server and client endpoint, each with its extra arguments; returns
/// them and the client's SOCKS5 address.
fn tcp_chain(server_extra: &[&str], client_extra: &[&str]) -> (Proc, Proc, SocketAddr) {
    let mut args = vec!["tcp", "server", "--listen", "127.0.0.1:0"];
    args.extend(server_extra);
    let server = endpoint("endpoint", &args);
    let server_addr = server.first_line_listening_on(WAIT).to_string();
    let mut args = vec!["tcp", "client", "--listen", "127.0.0.1:0"];
    args.extend(["--server", &server_addr]);
    args.extend(client_extra);
    let client = endpoint("endpoint", &args);
    let socks = client.first_line_listening_on(WAIT);
    (server, client, socks)
}

#[test]
fn chain_of_two_processes_relays_and_exits_0_on_signals() {
    let (mut server, mut client, socks) = tcp_chain(&["--set", "relay.buffer_size=4096"], &[]);

    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    check_reversed_echo(socks, payload, WAIT);

    // A refused target through the real processes.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(socks_connect_blocking(socks, closed_addr, WAIT).1, 0x05);

    stop_both(&mut server, &mut client, WAIT);
}

#[test]
fn bad_relay_mode_exits_2_listing_the_modes() {
    let (code, stderr) = tcp_server_with_setting("relay.mode=foo");
    assert_eq!(code, Some(2), "{stderr:?}");
    assert_eq!(
        stderr,
        [
            "protoprof-endpoint: error: bad value `foo` for setting `relay.mode`: \
          expected one of reuse, copy, pooled, splice"
        ]
    );
}

#[test]
fn relay_mode_splice_is_refused_by_protocols_other_than_tcp() {
    for protocol in ["tls", "ssh", "tuic", "hysteria2"] {
        for side in ["server", "client"] {
            let mut args = vec![protocol, side, "--listen", "127.0.0.1:0"];
            if side == "client" {
                args.extend(["--server", "127.0.0.1:1"]);
            }
            args.extend(["--set", "relay.mode=splice"]);
            let (code, stderr) = run_to_exit(&args, WAIT);
            assert_eq!(code, Some(2), "{args:?}: {stderr:?}");
            assert_eq!(
                stderr,
                [format!(
                    "protoprof-endpoint: error: bad value `splice` for setting `relay.mode`: \
                     expected reuse, copy or pooled: splice is only for protocol tcp, not \
                     {protocol}"
                )],
                "{args:?}"
            );
        }
    }
}

#[test]
fn chain_of_two_processes_relays_in_every_relay_mode() {
    for mode in ["reuse", "copy", "pooled", "splice"] {
        let setting = format!("relay.mode={mode}");
        let both = ["--set", setting.as_str()];
        let (mut server, mut client, socks) = tcp_chain(&both, &both);
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 256) as u8).collect();
        check_reversed_echo(socks, payload, WAIT);
        stop_both(&mut server, &mut client, WAIT);
    }
}
