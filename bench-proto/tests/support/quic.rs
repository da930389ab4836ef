//! The one chain harness of the QUIC protocols (tuic, hysteria2,
//! hysteria1): each is a [`QuicCase`] (how to start its endpoints in
//! process, how to speak its stream header by hand, which headers are bad)
//! and the suites here run on every one of them, from `quic_chain.rs`. A
//! protocol's own checks (its refusal, its UDP modes, obfuscation, Brutal)
//! stay in its `*_chain.rs` and call these suites where they share them.

use std::any::Any;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use bench_proto::quic::client::{Client, StreamClient};
use bench_proto::quic::QuicStream;
use bench_proto::TargetAddr;
use bytes::Bytes;
use quinn::{ReadError, VarInt};
use tokio::net::TcpListener;

use super::*;

/// A QUIC protocol as the suites see it.
#[allow(async_fn_in_trait)] // single-threaded test code: no Send needed
pub trait QuicCase {
    /// The protocol's part of our client.
    type Protocol: StreamClient;
    /// One UDP session of our client.
    type Session: UdpSession;
    /// The code the server resets a stream with a bad request with.
    const BAD_REQUEST: u32;

    /// Starts our server on 127.0.0.1 with default settings; its address.
    async fn start_server(pki: &Pki) -> SocketAddr;

    /// Our client for `server` with default settings and the right
    /// credentials.
    fn client(pki: &Pki, server: SocketAddr) -> Client<Self::Protocol>;

    /// A raw connection to `server` through the protocol's handshake,
    /// ready for proxy streams, and what must be kept for it to stay so.
    async fn raw(pki: &Pki, server: SocketAddr) -> (quinn::Connection, Box<dyn Any>);

    /// Opens a proxy stream to `target` on `conn` by hand: the request
    /// written, the server's answer (if the protocol has one) read and
    /// checked to be a success.
    async fn open_raw(conn: &quinn::Connection, target: &TargetAddr) -> QuicStream;

    /// Bad request headers: what each is, its bytes, and whether the
    /// stream is finished after them.
    fn bad_requests() -> Vec<(&'static str, Vec<u8>, bool)>;

    /// A new UDP session of `client` (its first packet goes to `target`).
    async fn udp_session(client: &Client<Self::Protocol>, target: &TargetAddr) -> Self::Session;
}

/// One UDP session of a protocol's client.
#[allow(async_fn_in_trait)]
pub trait UdpSession {
    /// Why a packet could not be sent.
    type Error: Debug;
    /// Sends one packet to `target`.
    async fn send_to(&self, payload: &[u8], target: &TargetAddr) -> Result<(), Self::Error>;
    /// The next packet that came back, with its source.
    async fn recv_from(&mut self) -> (Bytes, TargetAddr);
    /// Whether `e` says the packet is larger than UDP can carry.
    fn too_large(e: &Self::Error) -> bool;
}

/// Starts our client for `server` with a SOCKS5 listener on 127.0.0.1.
pub async fn start_client<C: QuicCase>(
    client: Client<C::Protocol>,
) -> (SocketAddr, Client<C::Protocol>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socks = l.local_addr().unwrap();
    tokio::spawn(client.clone().serve(l));
    (socks, client)
}

/// 64 MiB each way over 16 streams of one QUIC connection.
pub async fn bulk_over_one_connection<C: QuicCase>() {
    within(300, async {
        let pki = pki();
        let server = C::start_server(&pki).await;
        let (socks, client) = start_client::<C>(C::client(&pki, server)).await;
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

/// Sends `bytes` on a new stream of `conn` (then finishes it if `finish`);
/// the server must reset the stream with the protocol's bad-request code
/// and keep the connection.
pub async fn expect_refused<C: QuicCase>(
    conn: &quinn::Connection,
    bytes: &[u8],
    finish: bool,
    what: &str,
) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let mut buf = [0u8; 64];
    let got = within(15, recv.read(&mut buf)).await;
    assert!(
        matches!(got, Err(ReadError::Reset(code)) if code == VarInt::from_u32(C::BAD_REQUEST)),
        "{what}: {got:?}"
    );
    assert!(conn.close_reason().is_none(), "{what}: connection closed");
}

/// A good request on `conn`: a round trip to a sink, the payload sent
/// right behind the request.
pub async fn expect_served<C: QuicCase>(conn: &quinn::Connection) {
    let (sink, mut reports) = start_sink(3000).await;
    let stream = C::open_raw(conn, &TargetAddr::Ip(sink)).await;
    let (r, w) = tokio::io::split(stream);
    let (sent, received) = tokio::join!(send(w, "raw", 2000), receive(r));
    let at_sink = reports.recv().await.unwrap();
    assert_eq!(at_sink.received, sent);
    assert_eq!(received, at_sink.sent);
}

/// Every bad request header resets its stream; the connection, and a new
/// client, are served on.
pub async fn bad_requests_reset_their_stream<C: QuicCase>() {
    within(120, async {
        let pki = pki();
        let server = C::start_server(&pki).await;
        let (conn, _keep) = C::raw(&pki, server).await;
        expect_served::<C>(&conn).await;
        for (what, bytes, finish) in C::bad_requests() {
            expect_refused::<C>(&conn, &bytes, finish, what).await;
        }
        // The same connection, and a new client, are still served.
        expect_served::<C>(&conn).await;
        let (socks, _) = start_client::<C>(C::client(&pki, server)).await;
        bulk(socks, 2, 100_000, 100_000).await;
    })
    .await;
}

/// UDP packets of every size up to 65000 bytes (fragmented where they do
/// not fit a datagram) come back whole from an echo peer; one larger than
/// UDP carries is refused before sending.
pub async fn udp_round_trips<C: QuicCase>(client: &Client<C::Protocol>) {
    let (echo, _) = start_udp_echo().await;
    let target = TargetAddr::Ip(echo);
    let mut session = C::udp_session(client, &target).await;
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
                got = Some(r);
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
    // Larger than UDP can carry: refused before anything is sent.
    let refused = session.send_to(&vec![0; 65_536], &target).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(<C::Session as UdpSession>::too_large),
        "{refused:?}"
    );
}

/// [`udp_round_trips`], then two sessions that get their answers apart,
/// from one server socket each, all over one connection.
pub async fn udp_sessions_stay_apart<C: QuicCase>() {
    within(60, async {
        let pki = pki();
        let server = C::start_server(&pki).await;
        let client = C::client(&pki, server);
        udp_round_trips::<C>(&client).await;
        let (echo, mut sources) = start_udp_echo().await;
        let target = TargetAddr::Ip(echo);
        let mut a = C::udp_session(&client, &target).await;
        let mut b = C::udp_session(&client, &target).await;
        a.send_to(b"from a", &target).await.unwrap();
        b.send_to(b"from b", &target).await.unwrap();
        assert_eq!(&within(5, a.recv_from()).await.0[..], b"from a");
        assert_eq!(&within(5, b.recv_from()).await.0[..], b"from b");
        let (sa, sb) = (sources.recv().await.unwrap(), sources.recv().await.unwrap());
        assert_ne!(sa, sb, "one server socket per session");
        assert_eq!(client.connections_opened(), 1);
    })
    .await;
}
