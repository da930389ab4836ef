//! The `ech` chain in one process: SOCKS5 → ech client → ech server →
//! sink, BLAKE3 on both ends; refusals and bad input to the server, as for
//! `tls` (the Trojan layer is the same code).

mod support;

use std::time::Duration;

use bench_proto::ech::{self, client};
use bench_proto::TargetAddr;
use support::ech::*;
use support::trojan::{self, header};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIMIT: Duration = Duration::from_secs(300);
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_64_mib_both_ways_and_many_connections() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        let server = start_server(pki.server_options(&ech::Settings::default())).await;
        let socks = start_client(pki.client_options(server, PASSWORD, false)).await;
        bulk_through(socks, BULK_UP, BULK_DOWN).await;
        concurrent_through(socks, 32, 256 * 1024 + 3).await;
    })
    .await;
}

/// `ech.io_buffer` changes only how bytes reach the socket: buffered or not
/// at either end, data arrives whole, and a request-response exchange of
/// small writes goes on (a buffered end that did not flush would stall it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unbuffered_and_buffered_ends_move_the_same_bytes() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        for (client_buffer, server_buffer) in [
            ("0", "65536"),
            ("65536", "0"),
            ("0", "0"),
            ("65536", "65536"),
        ] {
            let mut server_settings = ech::Settings::default();
            server_settings.set("io_buffer", server_buffer).unwrap();
            let server = start_server(pki.server_options(&server_settings)).await;
            let mut opts = pki.client_options(server, PASSWORD, false);
            opts.io_buffer = client_buffer.parse().unwrap();
            let socks = start_client(opts).await;
            bulk_through(socks, 8 << 20, 8 << 20).await;
            concurrent_through(socks, 8, 64 * 1024 + 3).await;
            ping_pong_through(socks, 200).await;
        }
    })
    .await;
}

/// An end that closes while its socket is full still sends everything its
/// `ech.io_buffer` holds, then close_notify and FIN, whichever end writes.
/// (tokio-boring's shutdown, polled again after the socket's flush was
/// pending, waits to read the peer's close_notify instead of flushing: the
/// buffered bytes never left, and a relay through it hung for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_end_closing_on_a_full_socket_sends_what_it_holds() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        for server_writes in [true, false] {
            close_on_a_full_socket(&pki, server_writes).await;
        }
    })
    .await;
}

/// What the writing end sends before it closes: more than the two small
/// socket buffers below take, less than the 64-KiB `ech.io_buffer`, so at
/// the close most of it is still in that buffer.
const HELD: usize = 48 * 1024;
/// SO_SNDBUF and SO_RCVBUF of both sockets.
const SOCKET_BUFFER: u32 = 4096;

async fn close_on_a_full_socket(pki: &EchPki, server_writes: bool) {
    let small_socket = || {
        let s = TcpSocket::new_v4().unwrap();
        s.set_send_buffer_size(SOCKET_BUFFER).unwrap();
        s.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
        s
    };
    let listening = small_socket();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listening.listen(1).unwrap();
    let server = listener.local_addr().unwrap();
    let server_opts = pki.server_options(&ech::Settings::default());
    let accepting = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ech::server::accept(&server_opts, tcp).await.unwrap()
    });
    let tcp = small_socket().connect(server).await.unwrap();
    let client_end = client::handshake(&pki.client_options(server, PASSWORD, false), tcp)
        .await
        .unwrap();
    let server_end = accepting.await.unwrap();
    let (mut writer, mut reader) = match server_writes {
        true => (server_end, client_end),
        false => (client_end, server_end),
    };
    let data: Vec<u8> = (0..HELD).map(|i| (i % 251) as u8).collect();
    let sent = blake3::hash(&data);
    let writing = tokio::spawn(async move {
        writer.write_all(&data).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    // The writer reaches its close before anything is read: its socket is
    // full then.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut got = Vec::new();
    tokio::time::timeout(CLOSE_WITHIN, reader.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "server_writes={server_writes}: {} of {HELD} bytes, then nothing for {CLOSE_WITHIN:?}",
                got.len()
            )
        })
        .unwrap();
    assert_eq!(got.len(), HELD, "server_writes={server_writes}");
    assert_eq!(blake3::hash(&got), sent, "server_writes={server_writes}");
    tokio::time::timeout(CLOSE_WITHIN, writing)
        .await
        .expect("the writer's close did not end")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_goes_to_the_fallback_or_is_closed() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        let (fallback, mut recorded) = start_recorder(b"HTTP/1.1 200 OK\r\n\r\nfallback").await;
        let mut settings = ech::Settings::default();
        settings.set("fallback", &fallback.to_string()).unwrap();
        let server = start_server(pki.server_options(&settings)).await;
        let (sink, mut sink_reports) = start_sink(10).await;
        let target = TargetAddr::Ip(sink);

        let socks = start_client(pki.client_options(server, "wrong password", false)).await;
        let (mut stream, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0, "Trojan has no refusal to pass on");
        stream.write_all(b"client payload").await.unwrap();
        stream.shutdown().await.unwrap();
        let answer = expect_closed(&mut stream, CLOSE_WITHIN).await;
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\nfallback");
        let mut want = header("wrong password", 1, &target);
        want.extend_from_slice(b"client payload");
        assert_eq!(recorded.recv().await.unwrap(), want);

        // Without a fallback the server just closes.
        let server = start_server(pki.server_options(&ech::Settings::default())).await;
        let socks = start_client(pki.client_options(server, "wrong password", false)).await;
        let (mut stream, code) = socks_connect(socks, &target).await;
        assert_eq!(code, 0);
        stream.write_all(b"client payload").await.unwrap();
        let got = expect_closed(&mut stream, CLOSE_WITHIN).await;
        assert!(got.is_empty(), "{got:?}");
        assert!(sink_reports.try_recv().is_err(), "the target was reached");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_closes_that_connection_and_others_go_on() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        let server = start_server(pki.server_options(&ech::Settings::default())).await;
        let socks = start_client(pki.client_options(server, PASSWORD, false)).await;
        let good = Midway::start(socks).await;
        let target = TargetAddr::Ip(good.sink);
        let cases = trojan::bad_requests(PASSWORD, &target);
        let opts = pki.client_options(server, PASSWORD, false);
        for (what, bytes) in cases {
            let tcp = TcpStream::connect(server).await.unwrap();
            let mut s = client::handshake(&opts, tcp).await.unwrap();
            assert!(s.ssl().ech_accepted(), "{what}");
            s.write_all(&bytes).await.unwrap();
            s.shutdown().await.unwrap();
            let got = expect_closed(&mut s, CLOSE_WITHIN).await;
            assert!(got.is_empty(), "{what}: got {got:?}");
        }
        // Not TLS at all, and a truncated ClientHello.
        for bytes in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00][..],
        ] {
            let mut s = TcpStream::connect(server).await.unwrap();
            s.write_all(bytes).await.unwrap();
            s.shutdown().await.unwrap();
            expect_closed(&mut s, CLOSE_WITHIN).await;
        }
        good.finish().await;
        bulk_through(socks, MIB, MIB).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_and_untrusted_server() {
    with_timeout(LIMIT, async {
        let pki = ech_pki();
        let server = start_server(pki.server_options(&ech::Settings::default())).await;
        let socks = start_client(pki.client_options(server, PASSWORD, false)).await;
        let (mut stream, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0, "Trojan has no refusal to pass on");
        assert!(expect_closed(&mut stream, CLOSE_WITHIN).await.is_empty());

        // A client trusting other certificates (with the right ECH config).
        let other = ech_pki();
        let opts = ech::ClientOptions::new(
            server,
            &other.ca,
            INNER_NAME,
            PASSWORD,
            Some(&pki.ech_config),
            &ech::Settings::default(),
        )
        .unwrap();
        let socks = start_client(opts).await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0x01);
        // Server endpoint down.
        let socks = start_client(pki.client_options(closed_port().await, PASSWORD, false)).await;
        let (_, code) = socks_connect(socks, &TargetAddr::Ip(closed_port().await)).await;
        assert_eq!(code, 0x05);
    })
    .await;
}

/// `rounds` request-response rounds through `socks` to an echo target, one
/// 64-byte request in flight at a time: each request reaches the target and
/// each answer the client only if both ends pass small writes on at once.
async fn ping_pong_through(socks: std::net::SocketAddr, rounds: u32) {
    let echo = bind().await;
    let target = TargetAddr::Ip(echo.local_addr().unwrap());
    let echoing = tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..rounds {
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        }
    });
    let (mut stream, code) = socks_connect(socks, &target).await;
    assert_eq!(code, 0);
    let mut back = [0u8; 64];
    for round in 0..rounds {
        let request = [round as u8; 64];
        stream.write_all(&request).await.unwrap();
        tokio::time::timeout(CLOSE_WITHIN, stream.read_exact(&mut back))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no answer within {CLOSE_WITHIN:?}"))
            .unwrap();
        assert_eq!(back, request, "round {round}");
    }
    echoing.await.unwrap();
}
