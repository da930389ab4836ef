//! The `protoprof-endpoint` binary: argument errors, and a real chain of two
//! processes that relays and exits cleanly on signals.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::endpoint::{
    check_reversed_echo, endpoint, run_to_exit, socks_connect_blocking, stop_both,
};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn unknown_setting_exits_2_naming_the_key() {
    let (code, stderr) = run_to_exit(
        &[
            "tcp",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--set",
            "relay.nope=1",
        ],
        WAIT,
    );
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
        let (code, stderr) = run_to_exit(
            &["tcp", "server", "--listen", "127.0.0.1:0", "--set", arg],
            WAIT,
        );
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

#[test]
fn chain_of_two_processes_relays_and_exits_0_on_signals() {
    let mut server = endpoint(
        "endpoint",
        &[
            "tcp",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--set",
            "relay.buffer_size=4096",
        ],
    );
    let server_addr = server.first_line_listening_on(WAIT).to_string();
    let mut client = endpoint(
        "endpoint",
        &[
            "tcp",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
        ],
    );
    let socks = client.first_line_listening_on(WAIT);

    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    check_reversed_echo(socks, payload, WAIT);

    // A refused target through the real processes.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(socks_connect_blocking(socks, closed_addr, WAIT).1, 0x05);

    stop_both(&mut server, &mut client, WAIT);
}
