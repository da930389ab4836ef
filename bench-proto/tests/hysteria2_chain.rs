//! The `hysteria2` chain in one process: SOCKS5 → our hysteria2 client →
//! our hysteria2 server → sink / UDP echo peer, plus refusals, bad input sent
//! by hand, Salamander and Brutal.

mod support;

use std::time::Duration;

use bench_proto::hysteria2::congestion::{self, MIN_WINDOW_PACKETS};
use bench_proto::hysteria2::wire::{encode_tcp_request, put_varint, read_tcp_response};
use bench_proto::hysteria2::{Client, Hysteria2Error, STREAM_BAD_REQUEST};
use bench_proto::quic::LinkError;
use bench_proto::TargetAddr;
use quinn::{ReadError, VarInt};
use support::hysteria2::*;
use support::*;

// ---- 1. TCP through the chain ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_64_mib_each_way_over_many_streams_of_one_connection() {
    within(300, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let (socks, client) = start_h2_client(default_h2client_options(&pki, server)).await;
        // 16 streams of 4 MiB (+ i) up and 4 MiB down: 64 MiB each way.
        bulk(socks, 16, 4 * MIB, 4 * MIB).await;
        assert_eq!(
            client.connections_opened(),
            1,
            "one QUIC connection for all"
        );
    })
    .await;
}

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

// ---- 3. Bad input ---------------------------------------------------------------

/// Sends `bytes` (then finishes) on a new stream of an authenticated
/// connection; the server must reset the stream with STREAM_BAD_REQUEST.
async fn expect_refused(raw: &Raw, bytes: &[u8], finish: bool, what: &str) {
    let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let mut buf = [0u8; 64];
    let got = within(15, recv.read(&mut buf)).await;
    assert!(
        matches!(got, Err(ReadError::Reset(code)) if code == VarInt::from_u32(STREAM_BAD_REQUEST)),
        "{what}: {got:?}"
    );
    assert!(
        raw.conn.close_reason().is_none(),
        "{what}: connection closed"
    );
}

/// A good TCPRequest on `raw`: a round trip to a sink.
async fn expect_served(raw: &Raw) {
    let (sink, mut reports) = start_sink(3000).await;
    let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
    send.write_all(&encode_tcp_request(&TargetAddr::Ip(sink), b"pad").unwrap())
        .await
        .unwrap();
    assert_eq!(read_tcp_response(&mut recv).await.unwrap(), Ok(()));
    let stream = bench_proto::hysteria2::QuicStream { send, recv };
    let (r, w) = tokio::io::split(stream);
    let (sent, received) = tokio::join!(send_tally(w, 2000), receive(r));
    let at_sink = reports.recv().await.unwrap();
    assert_eq!(at_sink.received, sent);
    assert_eq!(received, at_sink.sent);
}

async fn send_tally<W: tokio::io::AsyncWrite + Unpin>(w: W, len: u64) -> Tally {
    send(w, "raw", len).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_close_their_stream_and_the_server_keeps_serving() {
    within(120, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let mut raw = raw(&pki, server).await;
        let headers = raw.authenticate().await;
        assert_eq!(headers.get("Hysteria-UDP").unwrap(), "true");
        expect_served(&raw).await;

        let good =
            encode_tcp_request(&TargetAddr::Ip("127.0.0.1:9".parse().unwrap()), b"").unwrap();
        expect_refused(&raw, &good[..good.len() - 3], true, "truncated TCPRequest").await;
        expect_refused(&raw, &[0x44], true, "truncated request id").await;
        let mut wrong_id = Vec::new();
        put_varint(&mut wrong_id, 0x402).unwrap();
        wrong_id.extend_from_slice(&good[2..]);
        expect_refused(&raw, &wrong_id, false, "wrong request id").await;
        let mut oversized = Vec::new();
        put_varint(&mut oversized, 0x401).unwrap();
        put_varint(&mut oversized, 1 << 20).unwrap();
        expect_refused(&raw, &oversized, false, "oversized address length").await;
        let mut oversized_pad = Vec::new();
        put_varint(&mut oversized_pad, 0x401).unwrap();
        put_varint(&mut oversized_pad, 11).unwrap();
        oversized_pad.extend_from_slice(b"127.0.0.1:9");
        put_varint(&mut oversized_pad, 100_000).unwrap();
        expect_refused(&raw, &oversized_pad, false, "oversized padding length").await;
        let mut bad_addr = Vec::new();
        put_varint(&mut bad_addr, 0x401).unwrap();
        put_varint(&mut bad_addr, 7).unwrap();
        bad_addr.extend_from_slice(b"no port");
        put_varint(&mut bad_addr, 0).unwrap();
        expect_refused(&raw, &bad_addr, false, "address without a port").await;
        expect_refused(&raw, b"GET / HTTP/1.1\r\n\r\n garbage", false, "garbage").await;
        // An HTTP/3 request after authentication is no proxy request either.
        expect_refused(&raw, &[0x01, 0x02, 0x00, 0x00], false, "HTTP/3 frame").await;

        // The same connection, and a new client, are still served.
        expect_served(&raw).await;
        let (socks, _) = start_h2_client(default_h2client_options(&pki, server)).await;
        bulk(socks, 2, 100_000, 100_000).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_dropped_and_the_connection_stays() {
    within(60, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let mut raw = raw(&pki, server).await;
        raw.authenticate().await;
        for d in [
            &b""[..],
            b"\x00\x00\x00\x01\x00\x01\x00", // truncated header
            b"\x00\x00\x00\x01\x00\x01\x00\x00\x00", // zero fragments
            b"\x00\x00\x00\x01\x00\x01\x05\x02\x00", // id out of range
            b"\x00\x00\x00\x01\x00\x01\x00\x01\x7f\xff", // address length too large
        ] {
            raw.conn
                .send_datagram(bytes::Bytes::copy_from_slice(d))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(raw.conn.close_reason().is_none());
        expect_served(&raw).await;
    })
    .await;
}

// ---- 4. UDP --------------------------------------------------------------------

async fn udp_round_trips(client: &Client) {
    let (echo, _) = start_udp_echo().await;
    let target = TargetAddr::Ip(echo);
    let mut session = client.udp_session();
    let max = client
        .connection()
        .await
        .unwrap()
        .max_datagram_size()
        .unwrap();
    assert!(
        max < 3000,
        "3000 bytes must need fragments (max datagram {max})"
    );
    for (i, len) in [0usize, 1, 500, max, 3000, 20_000, 65_000]
        .into_iter()
        .enumerate()
    {
        let payload: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        // UDP may drop a packet; loopback should not, but retry a little
        // rather than fail on one loss. A broken relay fails every try.
        let mut got = None;
        for _ in 0..3 {
            session.send_to(&payload, &target).await.unwrap();
            if let Ok(r) = tokio::time::timeout(Duration::from_secs(3), session.recv_from()).await {
                got = Some(r.unwrap());
                break;
            }
        }
        let (data, from) = got.unwrap_or_else(|| panic!("no echo of {len} bytes"));
        assert_eq!(from, target, "source address");
        assert!(
            data[..] == payload[..],
            "{len} bytes came back as {}",
            data.len()
        );
    }
    assert!(matches!(
        session.send_to(&vec![0; 65_536], &target).await,
        Err(Hysteria2Error::PacketTooLarge(65_536))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_round_trips_with_fragmentation() {
    within(60, async {
        let pki = pki();
        let server = start_h2_server(&pki, h2settings(&[])).await;
        let client = Client::new(default_h2client_options(&pki, server)).unwrap();
        udp_round_trips(&client).await;
        // Two sessions get answers apart.
        let (echo, mut sources) = start_udp_echo().await;
        let target = TargetAddr::Ip(echo);
        let mut a = client.udp_session();
        let mut b = client.udp_session();
        a.send_to(b"from a", &target).await.unwrap();
        b.send_to(b"from b", &target).await.unwrap();
        assert_eq!(&within(5, a.recv_from()).await.unwrap().0[..], b"from a");
        assert_eq!(&within(5, b.recv_from()).await.unwrap().0[..], b"from b");
        let (sa, sb) = (sources.recv().await.unwrap(), sources.recv().await.unwrap());
        assert_ne!(sa, sb, "one server socket per session");
        assert_eq!(client.connections_opened(), 1);
    })
    .await;
}

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
            Err(Hysteria2Error::UdpUnsupported)
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
        udp_round_trips(&client).await;

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
                Err(Hysteria2Error::Link(LinkError::Handshake { .. }))
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
        // Brutal's window is a round trip at the rate (loss made up for at
        // most 1.25x), or its floor of a few packets on loopback.
        let most = (1_000_000.0 * conn.rtt().as_secs_f64() * 1.25) as u64;
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
