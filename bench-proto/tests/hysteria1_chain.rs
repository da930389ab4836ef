//! The `hysteria1` chain in one process: SOCKS5 → our hysteria1 client →
//! our hysteria1 server → sink / UDP echo peer, plus the refusal, bad input
//! sent by hand, XPlus and Brutal.

mod support;

use std::time::Duration;

use bench_proto::brutal;
use bench_proto::hysteria1::wire::{ClientHello, UdpHeader};
use bench_proto::hysteria1::{
    Client, Hysteria1Error, CLOSE_AUTH_ERROR, CLOSE_PROTOCOL_ERROR, UDP_DISABLED, WRONG_PASSWORD,
};
use bench_proto::quic::LinkError;
use bench_proto::TargetAddr;
use quinn::{ConnectionError, VarInt};
use support::hysteria1::*;
use support::quic::{expect_served, udp_round_trips, QuicCase};
use support::*;

// ---- 1. TCP through the chain (bulk is in quic_chain.rs) ----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_fails_the_connect_with_the_servers_message() {
    within(60, async {
        let pki = pki();
        let server = start_h1_server(&pki, h1settings(&[])).await;
        let (socks, client) =
            start_h1_client(h1client_options(&pki, server, h1settings(&[]), PASSWORD)).await;
        let dead = closed_port().await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(dead)).await;
        assert_eq!(code, 0x04, "host unreachable expected");
        match client.open_tcp(&TargetAddr::Ip(dead)).await {
            Err(Hysteria1Error::Quic(bench_proto::quic::Error::TargetRefused {
                message, ..
            })) => {
                assert!(message.contains("refused"), "{message}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a closed port was connected"),
        }
    })
    .await;
}

// ---- 2. The hello and authentication ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_auth_gets_a_refusing_hello_and_close_code_2_and_others_are_served() {
    within(60, async {
        let pki = pki();
        let server =
            start_h1_server(&pki, h1settings(&[("up_mbps", "80"), ("down_mbps", "40")])).await;

        // By hand: the refusing hello, then the close with code 2.
        let conn = raw_h1(&pki, server).await;
        let mut wrong = good_hello();
        wrong.auth = b"wrong".to_vec();
        let (answer, _control) = hello(&conn, &wrong).await;
        let answer = answer.unwrap();
        assert!(!answer.ok);
        assert_eq!(answer.message, WRONG_PASSWORD);
        let closed = within(10, conn.closed()).await;
        assert!(
            matches!(&closed, ConnectionError::ApplicationClosed(c)
                if c.error_code == VarInt::from_u32(CLOSE_AUTH_ERROR)),
            "{closed:?}"
        );

        // The right hello gets the server's rates.
        let conn = raw_h1(&pki, server).await;
        let (answer, _control) = hello(&conn, &good_hello()).await;
        let answer = answer.unwrap();
        assert!(answer.ok);
        assert_eq!((answer.send_bps, answer.recv_bps), (10_000_000, 5_000_000));

        // Our client with the wrong auth: its CONNECT fails, not allowed.
        let (sink, mut reports) = start_sink(10).await;
        let (socks, client) =
            start_h1_client(h1client_options(&pki, server, h1settings(&[]), "wrong")).await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0x02, "not allowed expected");
        assert!(matches!(
            client.connection().await,
            Err(Hysteria1Error::AuthRejected { .. })
        ));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), reports.recv())
                .await
                .is_err(),
            "the sink was reached"
        );

        let (socks, _) =
            start_h1_client(h1client_options(&pki, server, h1settings(&[]), PASSWORD)).await;
        bulk(socks, 4, 200_000, 300_000).await;
    })
    .await;
}

/// Sends `bytes` as the client hello (finishing the stream if `finish`);
/// the server must close the connection with code 1.
async fn expect_protocol_error(
    pki: &Pki,
    server: std::net::SocketAddr,
    bytes: &[u8],
    finish: bool,
    what: &str,
) {
    let conn = raw_h1(pki, server).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let closed = within(15, conn.closed()).await;
    assert!(
        matches!(&closed, ConnectionError::ApplicationClosed(c)
            if c.error_code == VarInt::from_u32(CLOSE_PROTOCOL_ERROR)),
        "{what}: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hellos_close_with_code_1_and_the_server_keeps_serving() {
    within(120, async {
        let pki = pki();
        let server = start_h1_server(&pki, h1settings(&[])).await;
        let good = good_hello().encode().unwrap();
        expect_protocol_error(&pki, server, &good[..10], true, "truncated hello").await;
        let mut v2 = good.clone();
        v2[0] = 2;
        expect_protocol_error(&pki, server, &v2, false, "version 2").await;
        let mut zero = good.clone();
        zero[9..17].fill(0);
        expect_protocol_error(&pki, server, &zero, false, "receive rate 0").await;
        let mut oversized = good[..17].to_vec();
        oversized.extend_from_slice(&[0xff, 0xff]);
        expect_protocol_error(&pki, server, &oversized, false, "auth length 65535").await;
        expect_protocol_error(&pki, server, b"GET / HTTP/1.1\r\n\r\n", false, "garbage").await;

        let (socks, _) =
            start_h1_client(h1client_options(&pki, server, h1settings(&[]), PASSWORD)).await;
        bulk(socks, 2, 100_000, 100_000).await;
    })
    .await;
}

// ---- 3. Bad input after the handshake (the request suite is in quic_chain.rs) --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_dropped_and_the_connection_stays() {
    within(60, async {
        let pki = pki();
        let server = start_h1_server(&pki, h1settings(&[])).await;
        let (conn, _keep) = Hysteria1::raw(&pki, server).await;
        let h = UdpHeader {
            session_id: 1,
            addr: TargetAddr::Ip("127.0.0.1:9".parse().unwrap()),
            msg_id: 1,
            frag_id: 0,
            frag_count: 1,
        };
        let mut good = Vec::new();
        h.encode(2, &mut good).unwrap();
        good.extend_from_slice(b"hi");
        let mut zero_frags = good.clone();
        zero_frags[h.encoded_len() - 3] = 0;
        let mut oversized = good[..4].to_vec();
        oversized.extend_from_slice(&[0xff, 0xff]);
        for d in [
            Vec::new(),
            good[..10].to_vec(),             // truncated header
            good[..good.len() - 1].to_vec(), // data shorter than its length
            [&good[..], b"x"].concat(),      // data longer than its length
            zero_frags,                      // zero fragments
            oversized,                       // host length 65535
            good.clone(),                    // a session never opened
        ] {
            conn.send_datagram(bytes::Bytes::from(d)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(conn.close_reason().is_none());
        expect_served::<Hysteria1>(&conn).await;
    })
    .await;
}

// ---- 4. UDP (round trips are in quic_chain.rs) ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_off_refuses_the_session_with_sing_box_words() {
    within(60, async {
        let pki = pki();
        let server = start_h1_server(&pki, h1settings(&[("udp", "false")])).await;
        let client =
            Client::new(h1client_options(&pki, server, h1settings(&[]), PASSWORD)).unwrap();
        let target = TargetAddr::Ip("127.0.0.1:9".parse().unwrap());
        match client.udp_session(&target).await {
            Err(Hysteria1Error::Quic(bench_proto::quic::Error::TargetRefused {
                message, ..
            })) => assert_eq!(message, UDP_DISABLED),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a UDP session with UDP off"),
        }
    })
    .await;
}

// ---- XPlus ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xplus_moves_data_and_shuts_out_clients_without_it() {
    within(120, async {
        let pki = pki();
        let obfs = [("obfs", "s3cret salt")];
        let server = start_h1_server(&pki, h1settings(&obfs)).await;
        let (socks, client) =
            start_h1_client(h1client_options(&pki, server, h1settings(&obfs), PASSWORD)).await;
        bulk(socks, 4, MIB, MIB).await;
        udp_round_trips::<Hysteria1>(&client).await;

        // Without obfuscation, or with another key, no QUIC handshake gets
        // through (the server drops what it cannot deobfuscate).
        for s in [
            h1settings(&[("idle_timeout_s", "2")]),
            h1settings(&[("idle_timeout_s", "2"), ("obfs", "another key")]),
        ] {
            let client = Client::new(h1client_options(&pki, server, s, PASSWORD)).unwrap();
            assert!(matches!(
                client.connection().await,
                Err(Hysteria1Error::Quic(bench_proto::quic::Error::Link(
                    LinkError::Handshake { .. }
                )))
            ));
        }
    })
    .await;
}

// ---- Brutal --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brutal_sends_at_the_agreed_rates() {
    within(60, async {
        let pki = pki();
        // Server: up 80 Mbit/s, down 4 Mbit/s. Client: up 8, down 16.
        let server =
            start_h1_server(&pki, h1settings(&[("up_mbps", "80"), ("down_mbps", "4")])).await;
        let rates = h1settings(&[("up_mbps", "8"), ("down_mbps", "16")]);
        let client = Client::new(h1client_options(&pki, server, rates, PASSWORD)).unwrap();
        let conn = client.connection().await.unwrap();
        // The client sends at its 8 capped by the server's 4: 500 kB/s.
        assert_eq!(brutal::rate(&conn), Some(500_000));
        assert_eq!(
            conn.congestion_state().metrics().pacing_rate,
            Some(4_000_000)
        );
        // The server's side is seen from a raw client: it announced its
        // rates, and sends at its 80 capped by the client's 16 (checked in
        // the hello's numbers; the server's controller is not reachable
        // from here).
        let raw = raw_h1(&pki, server).await;
        let (answer, _control) = hello(&raw, &good_hello()).await;
        let answer = answer.unwrap();
        assert_eq!((answer.send_bps, answer.recv_bps), (10_000_000, 500_000));
    })
    .await;
}

#[test]
fn an_oversized_auth_is_refused_before_sending() {
    let mut h: ClientHello = good_hello();
    h.auth = vec![0; 5000];
    assert!(h.encode().is_err());
}
