//! The relay modes (`relay.mode`: reuse, copy, pooled, splice) over real
//! loopback sockets: every byte BLAKE3-checked, half-close in the strict
//! order (the answer starts only after the request's EOF), and what each
//! mode costs in buffers and reads.

mod support;

use std::time::Duration;

use bench_proto::relay::{RelayMode, RelayOptions, RelayStats};
use bench_proto::tcp::{relay_streams, run_client, run_server, ClientOptions, ServerOptions};
use bench_proto::TargetAddr;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Odd sizes, different per direction, so that a lost, duplicated or
/// swapped chunk cannot go unnoticed.
const UP_LEN: u64 = 16 * MIB + 4099;
const DOWN_LEN: u64 = 16 * MIB + 777;
/// Small buffers: many reads, so per-read costs show in the counts.
const BUFFER_SIZE: usize = 16 * 1024;
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn options(mode: RelayMode) -> RelayOptions {
    let mut opts = RelayOptions::default();
    opts.mode = mode;
    opts.buffer_size = BUFFER_SIZE;
    opts
}

/// The fewest reads (or splices into a pipe) that can move `len` bytes in
/// pieces of at most `piece`, plus the EOF read.
fn least_reads(len: u64, piece: usize) -> u64 {
    len.div_ceil(piece as u64) + 1
}

/// Two connected loopback sockets.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let l = bind().await;
    let (connected, accepted) =
        tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

/// The near end sends `UP_LEN` bytes and shuts down; the far end reads to
/// EOF and only then sends `DOWN_LEN` bytes and shuts down; both hashed.
async fn request_then_answer(near: TcpStream, far: TcpStream) {
    let far_end = tokio::spawn(async move {
        let (r, w) = far.into_split();
        let received = receive(r).await;
        let sent = send(w, "down", DOWN_LEN).await;
        Ends { sent, received }
    });
    let (r, w) = near.into_split();
    let sent = send(w, "up", UP_LEN).await;
    let received = receive(r).await;
    let far = far_end.await.unwrap();
    assert_eq!(sent.bytes, UP_LEN);
    assert_eq!(far.received, sent, "upload differs");
    assert_eq!(received, far.sent, "download differs");
    assert_eq!(received.bytes, DOWN_LEN);
}

/// outside_a <-> a ==relay in `opts.mode`== b <-> outside_b, with
/// [`request_then_answer`] across; returns the relay's stats.
async fn relay_in_mode(opts: &RelayOptions) -> RelayStats {
    let (outside_a, a) = socket_pair().await;
    let (b, outside_b) = socket_pair().await;
    let relay = {
        let opts = opts.clone();
        tokio::spawn(async move { relay_streams(a, b, &opts).await })
    };
    request_then_answer(outside_a, outside_b).await;
    let stats = relay.await.unwrap().unwrap();
    assert_eq!((stats.a_to_b, stats.b_to_a), (UP_LEN, DOWN_LEN));
    stats
}

/// SOCKS5 client → client endpoint → server endpoint → sink, both
/// endpoints in `opts.mode` (and sharing its pool), with
/// [`request_then_answer`] end to end.
async fn chain_in_mode(opts: &RelayOptions) {
    let server_l = bind().await;
    let server = server_l.local_addr().unwrap();
    tokio::spawn(run_server(
        server_l,
        ServerOptions {
            relay: opts.clone(),
        },
    ));
    let client_l = bind().await;
    let socks = client_l.local_addr().unwrap();
    tokio::spawn(run_client(
        client_l,
        ClientOptions {
            server,
            relay: opts.clone(),
        },
    ));

    let sink = bind().await;
    let target = TargetAddr::Ip(sink.local_addr().unwrap());
    let (accepted, (stream, code)) = tokio::join!(sink.accept(), socks_connect(socks, &target));
    assert_eq!(code, 0, "CONNECT {target} failed");
    request_then_answer(stream, accepted.unwrap().0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reuse_mode_relays_16_mib_each_way_with_half_close_through_the_chain() {
    with_timeout(TEST_TIMEOUT, chain_in_mode(&options(RelayMode::Reuse))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_mode_relays_16_mib_each_way_with_half_close_through_the_chain() {
    with_timeout(TEST_TIMEOUT, chain_in_mode(&options(RelayMode::Copy))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_mode_relays_16_mib_each_way_with_half_close_through_the_chain() {
    with_timeout(TEST_TIMEOUT, async {
        let opts = options(RelayMode::Pooled);
        chain_in_mode(&opts).await;
        // Two endpoints, two directions each, one buffer per direction at
        // a time: never more than four buffers exist, whatever the timing.
        let pool = opts.pool.stats();
        assert!(pool.misses <= 4, "{pool:?}");
        // Two hops: every byte is read twice.
        let least = 2 * (least_reads(UP_LEN, BUFFER_SIZE) + least_reads(DOWN_LEN, BUFFER_SIZE));
        assert!(pool.hits + pool.misses >= least, "{pool:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splice_mode_relays_16_mib_each_way_with_half_close_through_the_chain() {
    with_timeout(TEST_TIMEOUT, chain_in_mode(&options(RelayMode::Splice))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reuse_mode_allocates_one_buffer_per_direction() {
    with_timeout(TEST_TIMEOUT, async {
        let stats = relay_in_mode(&options(RelayMode::Reuse)).await;
        assert_eq!(stats.buffers_allocated, 2, "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_mode_allocates_a_buffer_per_read() {
    with_timeout(TEST_TIMEOUT, async {
        let stats = relay_in_mode(&options(RelayMode::Copy)).await;
        let least = least_reads(UP_LEN, BUFFER_SIZE) + least_reads(DOWN_LEN, BUFFER_SIZE);
        assert!(stats.reads >= least, "{stats:?}");
        assert_eq!(stats.buffers_allocated, stats.reads, "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_mode_allocates_no_buffers_in_steady_state() {
    with_timeout(TEST_TIMEOUT, async {
        let opts = options(RelayMode::Pooled);
        let stats = relay_in_mode(&opts).await;
        let least = least_reads(UP_LEN, BUFFER_SIZE) + least_reads(DOWN_LEN, BUFFER_SIZE);
        assert!(stats.reads >= least, "{stats:?}");
        // One buffer per direction at most, however many reads.
        assert!(stats.buffers_allocated <= 2, "{stats:?}");
        let pool = opts.pool.stats();
        assert_eq!(pool.misses, stats.buffers_allocated, "{pool:?}");
        assert!(pool.hits >= stats.reads - 2, "{pool:?} {stats:?}");
        assert_eq!(pool.discarded, 0, "{pool:?}");
        // Everything went back to the pool at the end.
        assert_eq!(opts.pool.idle() as u64, stats.buffers_allocated);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splice_mode_moves_payload_without_user_space_reads() {
    with_timeout(TEST_TIMEOUT, async {
        let stats = relay_in_mode(&options(RelayMode::Splice)).await;
        assert_eq!((stats.reads, stats.buffers_allocated), (0, 0), "{stats:?}");
        // Every byte went into a pipe and out again by splice, at most one
        // pipe (of at most 64 KiB, as asked for 16 KiB) per call.
        let pipe_max = 64 * 1024;
        let least = 2 * (UP_LEN.div_ceil(pipe_max) + DOWN_LEN.div_ceil(pipe_max));
        assert!(stats.splices >= least, "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splice_mode_relays_empty_streams() {
    with_timeout(TEST_TIMEOUT, async {
        let (outside_a, a) = socket_pair().await;
        let (b, outside_b) = socket_pair().await;
        drop((outside_a, outside_b));
        let stats = relay_streams(a, b, &options(RelayMode::Splice))
            .await
            .unwrap();
        assert_eq!(stats, RelayStats::default());
    })
    .await;
}

/// The answering side closes first, without a byte: the asking side sees
/// EOF at once, and can still send afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_close_from_the_answering_side_in_every_mode() {
    with_timeout(TEST_TIMEOUT, async {
        for mode in [
            RelayMode::Reuse,
            RelayMode::Copy,
            RelayMode::Pooled,
            RelayMode::Splice,
        ] {
            let (outside_a, a) = socket_pair().await;
            let (b, outside_b) = socket_pair().await;
            let opts = options(mode);
            let relay = tokio::spawn(async move { relay_streams(a, b, &opts).await });

            let (mut far_r, far_w) = outside_b.into_split();
            drop(far_w); // shutdown(Write), the read half stays open
            let (mut near_r, near_w) = outside_a.into_split();
            let mut got = Vec::new();
            near_r.read_to_end(&mut got).await.unwrap();
            assert!(got.is_empty(), "{mode}");

            let (sent, received) = tokio::join!(send(near_w, "late", 3 * MIB + 5), async {
                let mut all = Vec::new();
                far_r.read_to_end(&mut all).await.unwrap();
                all
            });
            assert_eq!(received.len() as u64, sent.bytes, "{mode}");
            assert_eq!(blake3::hash(&received), sent.hash, "{mode}");

            let stats = relay.await.unwrap().unwrap();
            assert_eq!((stats.a_to_b, stats.b_to_a), (sent.bytes, 0), "{mode}");
        }
    })
    .await;
}
