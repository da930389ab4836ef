//! The `hysteria2` chain in one process: SOCKS5 → our hysteria2 client →
//! our hysteria2 server → sink / UDP echo peer, plus refusals, bad input sent
//! by hand, Salamander and Brutal.

mod support;

use std::time::Duration;

use bench_proto::hysteria2::congestion::{self, MIN_WINDOW_PACKETS};
use bench_proto::hysteria2::wire::{encode_tcp_request, read_tcp_response};
use bench_proto::hysteria2::{Client, Hysteria2Error};
use bench_proto::quic::LinkError;
use bench_proto::TargetAddr;
use support::hysteria2::*;
use support::quic::{expect_served, udp_round_trips, QuicCase};
use support::*;

// ---- 1. TCP through the chain (bulk is in quic_chain.rs) ----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_fails_the_connect_and_a_domain_target_works() {
    within(60, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let (socks, _) = start_h2_client(default_h2client_options(&pki, server)).await;
        // A port nobody listens on: the server's TCPResponse says Error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(dead)).await;
        assert_eq!(code, 0x04, "host unreachable expected");
        // A domain target is resolved by the server.
        let (sink, mut reports) = start_sink(1000).await;
        let target = TargetAddr::Domain("localhost".into(), sink.port());
        let (stream, code) = socks_connect(socks, &target).await;
        if code == 0 {
            let ends = exchange(stream, "up", 5000).await;
            let at_sink = reports.recv().await.unwrap();
            assert_eq!(at_sink.received, ends.sent);
            assert_eq!(ends.received, at_sink.sent);
        } else {
            // "localhost" may resolve to ::1 only, where the sink is not.
            assert_eq!(code, 0x04, "unexpected reply {code}");
        }
    })
    .await;
}

// ---- 2. Authentication ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_a_web_server_404_and_a_good_client_is_still_served() {
    within(60, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;

        // By hand: the server answers like a web server.
        let mut raw = raw(&pki, server).await;
        let (status, headers, body) = raw
            .request(http::Method::POST, "/auth", Some("wrong"))
            .await;
        assert_eq!(status, 404);
        assert!(headers.get("Hysteria-UDP").is_none());
        assert!(!body.is_empty());
        let (status, _, _) = raw.request(http::Method::GET, "/", None).await;
        assert_eq!(status, 404);
        let (status, _, _) = raw
            .request(http::Method::GET, "/auth", Some(PASSWORD))
            .await;
        assert_eq!(status, 404, "only POST authenticates");
        // Not authenticated: a TCPRequest stream gets no TCPResponse and the
        // sink sees no connection.
        let (sink, mut reports) = start_sink(10).await;
        let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
        send.write_all(&encode_tcp_request(&TargetAddr::Ip(sink), b"").unwrap())
            .await
            .unwrap();
        let answer =
            tokio::time::timeout(Duration::from_secs(2), read_tcp_response(&mut recv)).await;
        assert!(
            !matches!(answer, Ok(Ok(Ok(())))),
            "proxied before authentication: {answer:?}"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(500), reports.recv())
                .await
                .is_err(),
            "the sink was reached"
        );

        // Our client with the wrong password: its CONNECT fails.
        let (socks, client) =
            start_h2_client(h2client_options(&pki, server, h2settings(&[]), "wrong")).await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0x02, "not allowed expected");
        assert!(matches!(
            client.connection().await,
            Err(Hysteria2Error::AuthRejected { status: 404, .. })
        ));

        // A good client afterwards.
        let (socks, _) = start_h2_client(default_h2client_options(&pki, server)).await;
        bulk(socks, 4, 200_000, 300_000).await;
    })
    .await;
}

// ---- 3. Bad input (the request suite is in quic_chain.rs) -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_dropped_and_the_connection_stays() {
    within(60, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let (conn, _keep) = Hysteria2::raw(&pki, server).await;
        for d in [
            &b""[..],
            b"\x00\x00\x00\x01\x00\x01\x00", // truncated header
            b"\x00\x00\x00\x01\x00\x01\x00\x00\x00", // zero fragments
            b"\x00\x00\x00\x01\x00\x01\x05\x02\x00", // id out of range
            b"\x00\x00\x00\x01\x00\x01\x00\x01\x7f\xff", // address length too large
        ] {
            conn.send_datagram(bytes::Bytes::copy_from_slice(d))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(conn.close_reason().is_none());
        expect_served::<Hysteria2>(&conn).await;
    })
    .await;
}

// ---- 4. UDP (round trips are in quic_chain.rs) ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_off_is_announced_and_refused() {
    within(60, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[("udp", "false")])).await;
        let mut raw = raw(&pki, server).await;
        assert_eq!(
            raw.authenticate().await.get("Hysteria-UDP").unwrap(),
            "false"
        );
        let client = Client::new(default_h2client_options(&pki, server)).unwrap();
        let session = client.udp_session();
        let target = TargetAddr::Ip("127.0.0.1:9".parse().unwrap());
        assert!(matches!(
            session.send_to(b"x", &target).await,
            Err(Hysteria2Error::Quic(
                bench_proto::quic::Error::UdpUnsupported
            ))
        ));
    })
    .await;
}

// ---- Salamander ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salamander_moves_data_and_shuts_out_clients_without_it() {
    within(120, async {
        let pki = pki();
        let obfs = [("obfs", "salamander"), ("obfs_password", "s3cret salt")];
        let server = start_h2_server(&pki, h2settings(&obfs)).await;
        let (socks, client) =
            start_h2_client(h2client_options(&pki, server, h2settings(&obfs), PASSWORD)).await;
        bulk(socks, 4, MIB, MIB).await;
        udp_round_trips::<Hysteria2>(&client).await;

        // Without obfuscation, or with another key, no QUIC handshake gets
        // through (the server drops what it cannot deobfuscate).
        for s in [
            h2settings(&[("idle_timeout_s", "2")]),
            h2settings(&[
                ("idle_timeout_s", "2"),
                ("obfs", "salamander"),
                ("obfs_password", "another key"),
            ]),
        ] {
            let (socks, client) =
                start_h2_client(h2client_options(&pki, server, s, PASSWORD)).await;
            let (_, code) = socks_connect(socks, &TargetAddr::Ip(server)).await;
            assert_ne!(code, 0);
            assert!(matches!(
                client.connection().await,
                Err(Hysteria2Error::Quic(bench_proto::quic::Error::Link(
                    LinkError::Handshake { .. }
                )))
            ));
        }
    })
    .await;
}

// ---- Brutal --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brutal_replaces_bbr_when_rates_are_given() {
    within(120, async {
        let pki = pki();
        // The server gives no receive rate ("unlimited"): the client sends
        // at its own up_mbps, 8 Mbit/s = 1 MB/s.
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let rates = h2settings(&[("up_mbps", "8"), ("down_mbps", "8")]);
        let (socks, brutal) =
            start_h2_client(h2client_options(&pki, server, rates, PASSWORD)).await;
        bulk(socks, 2, MIB, MIB).await;
        let conn = brutal.connection().await.unwrap();
        assert_eq!(congestion::rate(&conn), Some(1_000_000));
        let cc = conn.congestion_state();
        assert_eq!(cc.metrics().pacing_rate, Some(8_000_000));
        // Brutal's window holds at most two round trips at the rate (loss
        // made up for at most 1.25x), or its floor of a few packets on
        // loopback.
        let most = (2.0 * 1_000_000.0 * conn.rtt().as_secs_f64() * 1.25) as u64;
        let floor = MIN_WINDOW_PACKETS * 1500;
        assert!(cc.window() <= most.max(floor), "window {}", cc.window());

        // A server that takes 4 Mbit/s caps the client's 8.
        let slow = start_h2_server(&pki, h2settings(&[("down_mbps", "4")])).await;
        let rates = h2settings(&[("up_mbps", "8")]);
        let capped = Client::new(h2client_options(&pki, slow, rates, PASSWORD)).unwrap();
        let conn = capped.connection().await.unwrap();
        assert_eq!(congestion::rate(&conn), Some(500_000));

        // Without rates on either side: BBR.
        let (socks, bbr) = start_h2_client(default_h2client_options(&pki, server)).await;
        bulk(socks, 2, MIB, MIB).await;
        let conn = bbr.connection().await.unwrap();
        assert_eq!(congestion::rate(&conn), None);
        assert_ne!(
            conn.congestion_state().metrics().pacing_rate,
            Some(8_000_000)
        );
    })
    .await;
}
