//! The `tuic` chain in one process: SOCKS5 → our tuic client → our tuic
//! server → sink / UDP echo peer, plus refusals and bad input sent by hand.

mod support;

use std::time::Duration;

use bench_proto::tuic::{
    self, Command, PacketHeader, TuicError, CLOSE_AUTH_FAILED, CLOSE_AUTH_TIMEOUT,
    CLOSE_PROTOCOL_ERROR, STREAM_BAD_COMMAND,
};
use bench_proto::TargetAddr;
use quinn::{ConnectionError, VarInt};
use support::quic::{expect_served, udp_round_trips, QuicCase};
use support::tuic::*;
use support::*;
use tokio::io::AsyncReadExt;

// ---- 1. TCP through the chain (bulk is in quic_chain.rs) ----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_congestion_controller_and_a_domain_target() {
    within(120, async {
        for cc in ["bbr", "cubic", "new_reno"] {
            let pki = pki();
            let s = settings(&[("congestion_control", cc)]);
            let server = start_server(&pki, s.clone()).await;
            let (socks, _) = start_client(client_options(&pki, server, s, uuid(), PASSWORD)).await;
            bulk(socks, 3, MIB, MIB).await;
        }
        // A domain target is resolved by the server.
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let (socks, _) = start_client(default_client_options(&pki, server)).await;
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
            assert_eq!(code, 0x01, "unexpected reply {code}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_the_connection_idles_out() {
    within(60, async {
        let pki = pki();
        let s = settings(&[("idle_timeout_s", "1")]);
        let server = start_server(&pki, s.clone()).await;
        let (socks, client) = start_client(client_options(&pki, server, s, uuid(), PASSWORD)).await;
        bulk(socks, 2, 100_000, 100_000).await;
        let first = client.connection().await.unwrap();
        // Nothing relayed, no heartbeats: the idle timeout closes it.
        let reason = within(10, first.closed()).await;
        assert!(matches!(reason, ConnectionError::TimedOut), "{reason:?}");
        bulk(socks, 2, 100_000, 100_000).await;
        assert_eq!(client.connections_opened(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_quiet_relay_alive() {
    within(60, async {
        let pki = pki();
        let s = settings(&[("idle_timeout_s", "2"), ("heartbeat_s", "1")]);
        let server = start_server(&pki, s.clone()).await;
        let (socks, client) = start_client(client_options(&pki, server, s, uuid(), PASSWORD)).await;
        let (sink, mut reports) = start_sink(777).await;
        let (stream, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0);
        // Quiet for twice the idle timeout: only heartbeats keep it open.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let ends = exchange(stream, "late", 1234).await;
        let at_sink = reports.recv().await.unwrap();
        assert_eq!(at_sink.received, ends.sent);
        assert_eq!(ends.received.bytes, 777);
        assert_eq!(client.connections_opened(), 1);
    })
    .await;
}

// ---- 2. UDP relay (native-mode round trips are in quic_chain.rs) ---------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_quic_mode_round_trips_and_dissociates() {
    within(60, async {
        let pki = pki();
        let s = settings(&[("udp_relay_mode", "quic")]);
        let server = start_server(&pki, s.clone()).await;
        let client = tuic::Client::new(client_options(&pki, server, s, uuid(), PASSWORD)).unwrap();
        udp_round_trips::<Tuic>(&client).await;
        client.udp_session().unwrap().dissociate().await.unwrap();
        assert_eq!(client.connections_opened(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sessions_stay_apart_and_dissociate_frees_the_socket() {
    within(60, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let (echo, mut sources) = start_udp_echo().await;
        let target = TargetAddr::Ip(echo);
        let conn = raw_connection(&pki, server).await;
        authenticate(&conn).await;

        // Sends packet `pkt` of session 7 in quic mode and checks the answer
        // on the server's stream; the echo peer reports the source it saw.
        // Whether an answer came back: the caller says when it must.
        let round = |pkt: u16| {
            let conn = conn.clone();
            let target = target.clone();
            async move {
                let payload = format!("packet {pkt}").into_bytes();
                let mut bytes = Command::Packet(PacketHeader {
                    assoc_id: 7,
                    pkt_id: pkt,
                    frag_total: 1,
                    frag_id: 0,
                    size: payload.len() as u16,
                    addr: Some(target),
                })
                .to_bytes()
                .unwrap();
                bytes.extend_from_slice(&payload);
                send_uni(&conn, &bytes).await;
                // The answer to a packet in flight while the session is
                // dissociated is lost, as UDP would lose it.
                let Ok(back) =
                    tokio::time::timeout(Duration::from_secs(3), conn.accept_uni()).await
                else {
                    return false;
                };
                let mut back = back.unwrap();
                let Command::Packet(h) = Command::read_from(&mut back).await.unwrap() else {
                    panic!("not a Packet")
                };
                assert_eq!((h.assoc_id, h.frag_total), (7, 1));
                let mut data = vec![0u8; h.size as usize];
                AsyncReadExt::read_exact(&mut back, &mut data)
                    .await
                    .unwrap();
                assert_eq!(data, payload);
                true
            }
        };
        assert!(round(0).await, "packet 0 got no answer");
        let first = sources.recv().await.unwrap();
        assert!(round(1).await, "packet 1 got no answer");
        assert_eq!(
            sources.recv().await.unwrap(),
            first,
            "same session, same socket"
        );

        let dissociate = Command::Dissociate { assoc_id: 7 }.to_bytes().unwrap();
        send_uni(&conn, &dissociate).await;
        // The Dissociate and the next Packet travel on separate streams, so
        // try until the server has handled it: then a new socket answers.
        let mut pkt = 2;
        let mut lost = 0;
        loop {
            let answered = round(pkt).await;
            if sources.recv().await.unwrap() != first {
                // The new socket is open and bound to this session: its
                // answer must arrive.
                assert!(answered, "packet {pkt} left by a new socket got no answer");
                break;
            }
            // Only a packet that raced the Dissociate may lose its answer.
            if !answered {
                lost += 1;
                assert!(lost <= 1, "{lost} answers lost on the old socket");
            }
            assert!(pkt < 50, "Dissociate had no effect");
            pkt += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

// ---- 3. Refusal -----------------------------------------------------------------

fn closed_with(e: &ConnectionError, code: u32) -> bool {
    matches!(e, ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_or_unknown_uuid_is_refused_and_the_server_goes_on() {
    within(60, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let (sink, mut reports) = start_sink(1000).await;
        let unknown: tuic::Uuid = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        for (who, id, password) in [
            ("wrong password", uuid(), "not the password"),
            ("unknown uuid", unknown, PASSWORD),
        ] {
            let opts = client_options(&pki, server, settings(&[]), id, password);
            let (socks, client) = start_client(opts).await;
            let (_, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
            assert_eq!(code, 0x02, "{who}: CONNECT must fail with 'not allowed'");
            match client.connection().await {
                Err(TuicError::AuthRejected { source, .. }) => {
                    assert!(closed_with(&source, CLOSE_AUTH_FAILED), "{who}: {source:?}")
                }
                other => panic!("{who}: {:?}", other.map(|_| ())),
            }
        }
        assert!(reports.try_recv().is_err(), "nothing reached the sink");

        // A good client is still served.
        let opts = default_client_options(&pki, server);
        let (socks, _) = start_client(opts).await;
        let (stream, code) = socks_connect(socks, &TargetAddr::Ip(sink)).await;
        assert_eq!(code, 0);
        let ends = exchange(stream, "up", 3000).await;
        assert_eq!(reports.recv().await.unwrap().received, ends.sent);
        assert_eq!(ends.received.bytes, 1000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_authenticate_in_time_closes_the_connection() {
    within(30, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[("auth_timeout_s", "1")])).await;
        let conn = raw_connection(&pki, server).await;
        let started = std::time::Instant::now();
        let reason = within(10, conn.closed()).await;
        assert!(closed_with(&reason, CLOSE_AUTH_TIMEOUT), "{reason:?}");
        assert!(started.elapsed() >= Duration::from_millis(800));

        // A wrong version byte on the Authenticate stream: that stream is
        // refused, and without a valid Authenticate the timeout closes.
        let conn = raw_connection(&pki, server).await;
        let token = tuic::auth_token(&conn, &uuid(), PASSWORD.as_bytes()).unwrap();
        let mut auth = Command::Authenticate {
            uuid: uuid(),
            token,
        }
        .to_bytes()
        .unwrap();
        auth[0] = 4;
        let s = send_uni(&conn, &auth).await;
        let stopped = s.stopped().await;
        assert!(
            matches!(stopped, Ok(Some(c)) if c == VarInt::from_u32(STREAM_BAD_COMMAND))
                || matches!(stopped, Ok(None)),
            "{stopped:?}"
        );
        let reason = within(10, conn.closed()).await;
        assert!(closed_with(&reason, CLOSE_AUTH_TIMEOUT), "{reason:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_before_authenticate_wait_for_it() {
    within(30, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let (sink, mut reports) = start_sink(500).await;
        let conn = raw_connection(&pki, server).await;
        // Connect and payload first...
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut bytes = Command::Connect {
            addr: TargetAddr::Ip(sink),
        }
        .to_bytes()
        .unwrap();
        bytes.extend_from_slice(b"early bytes");
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(reports.try_recv().is_err(), "served before authentication");
        // ...then Authenticate: the paused stream goes on.
        authenticate(&conn).await;
        let down = recv.read_to_end(10_000).await.unwrap();
        assert_eq!(down.len(), 500);
        let at_sink = reports.recv().await.unwrap();
        assert_eq!(at_sink.received.bytes, 11);
        assert_eq!(at_sink.received.hash, blake3::hash(b"early bytes"));
    })
    .await;
}

// ---- 4. Bad input (the bidirectional-stream suite is in quic_chain.rs) ---------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_unidirectional_streams_are_stopped_and_the_connection_goes_on() {
    within(60, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let (sink, _) = start_sink(100).await;
        let (conn, _) = Tuic::raw(&pki, server).await;
        expect_served::<Tuic>(&conn).await;

        // Garbage and a bad fragment count on unidirectional streams: the
        // server stops them.
        let bad_frag = Command::Packet(PacketHeader {
            assoc_id: 1,
            pkt_id: 1,
            frag_total: 200,
            frag_id: 0,
            size: 0,
            addr: Some(TargetAddr::Ip(sink)),
        })
        .to_bytes()
        .unwrap();
        for bad in [
            &b"\xde\xad\xbe\xef garbage"[..],
            &[5, 1, 1, 127, 0, 0, 1, 0, 80],
            &bad_frag,
        ] {
            let mut s = conn.open_uni().await.unwrap();
            s.write_all(bad).await.unwrap();
            // Not finished: only the server's STOP_SENDING ends it.
            let stopped = within(15, s.stopped()).await;
            assert!(
                matches!(stopped, Ok(Some(c)) if c == VarInt::from_u32(STREAM_BAD_COMMAND)),
                "{bad:02x?}: {stopped:?}"
            );
        }

        // The same connection still serves.
        expect_served::<Tuic>(&conn).await;
        assert!(conn.close_reason().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_close_the_connection_and_the_server_goes_on() {
    within(60, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let (sink, _) = start_sink(100).await;
        let (echo, _) = start_udp_echo().await;
        let packet = |frag_total: u8, frag_id: u8| {
            Command::Packet(PacketHeader {
                assoc_id: 1,
                pkt_id: 1,
                frag_total,
                frag_id,
                size: 2,
                addr: Some(TargetAddr::Ip(echo)),
            })
            .to_bytes()
            .map(|mut b| {
                b.extend_from_slice(b"hi");
                b
            })
            .unwrap()
        };
        let mut short_size = packet(1, 0);
        short_size.pop(); // SIZE says 2, 1 byte follows
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("oversized fragment count", packet(200, 0)),
            ("fragment id beyond the count", packet(2, 2)),
            ("zero fragments", packet(0, 0)),
            ("SIZE mismatch", short_size),
            ("wrong version", vec![4, 4]),
            ("unknown command type", vec![5, 0x42]),
            ("Connect in a datagram", {
                Command::Connect {
                    addr: TargetAddr::Ip(sink),
                }
                .to_bytes()
                .unwrap()
            }),
            ("truncated", vec![5, 2, 0, 1]),
        ];
        for (what, bytes) in cases {
            let conn = raw_connection(&pki, server).await;
            authenticate(&conn).await;
            conn.send_datagram(bytes.into()).unwrap();
            let reason = within(15, conn.closed()).await;
            assert!(
                closed_with(&reason, CLOSE_PROTOCOL_ERROR),
                "{what}: {reason:?}"
            );
        }
        // Another client is served.
        let (conn, _) = Tuic::raw(&pki, server).await;
        expect_served::<Tuic>(&conn).await;
        // And a good native-mode packet is relayed and answered.
        conn.send_datagram(packet(1, 0).into()).unwrap();
        let back = within(15, conn.read_datagram()).await.unwrap();
        let (cmd, payload) = tuic::udp::parse_datagram(&back).await.unwrap();
        // The server's confirming heartbeat may come first.
        let (cmd, payload) = if cmd == Command::Heartbeat {
            let back = within(15, conn.read_datagram()).await.unwrap();
            tuic::udp::parse_datagram(&back).await.unwrap()
        } else {
            (cmd, payload)
        };
        assert!(
            matches!(cmd, Command::Packet(ref h) if h.addr == Some(TargetAddr::Ip(echo))),
            "{cmd:?}"
        );
        assert_eq!(&payload[..], b"hi");
    })
    .await;
}
