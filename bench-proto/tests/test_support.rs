//! The test helpers' own checks, where a helper's failure would hide a
//! failing test's cause.

mod support;

use support::*;

/// A timed-out test names its sockets: an open connection of this process
/// shows up, with its ports and its TCP info, and other processes' do not.
#[tokio::test]
async fn sockets_of_this_test_lists_this_process_s_connections() {
    let listener = bind().await;
    let server = listener.local_addr().unwrap();
    let client = tokio::net::TcpStream::connect(server).await.unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();
    let local = client.local_addr().unwrap();
    let listed = sockets_of_this_test();
    let lines: Vec<&str> = listed.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(&local.to_string()) && l.contains(&server.to_string()))
        .unwrap_or_else(|| panic!("no entry for {local} -> {server} in:\n{listed}"));
    assert!(lines[at].starts_with("ESTAB"), "{}", lines[at]);
    assert!(
        lines[at].contains(&format!("pid={},", std::process::id())),
        "{}",
        lines[at]
    );
    assert!(
        lines
            .get(at + 1)
            .is_some_and(|l| l.contains("bytes_acked") || l.contains("rtt:")),
        "no TCP info line after {}:\n{listed}",
        lines[at]
    );
    assert!(
        lines
            .iter()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .all(|l| l.contains(&format!("pid={},", std::process::id()))),
        "another process's socket:\n{listed}"
    );
}

/// Running out of time fails the test with the socket listing.
#[tokio::test]
#[should_panic(expected = "test timed out after 10ms; its TCP sockets then:")]
async fn with_timeout_fails_with_the_sockets() {
    with_timeout(std::time::Duration::from_millis(10), std::future::pending()).await;
}
