//! Tests of the whole module through a SOCKS5 relay stub, plus unit tests of
//! its parts.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use super::header::{Header, Work, HEADER_LEN};
use super::integrity::{check, thin_connections, Expected, GeneratorSide, SinkRecord, Tally};
use super::meter::Buckets;
use super::payload::{seed, PayloadStream, POOL_LEN};
use super::result::SecondSample;
use super::stats::fold_samples;
use super::test_relay::{Mode, Relay};
use super::*;

/// Records the order and time of window calls.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(&'static str, Instant)>>,
}

impl Window for Recorder {
    fn open(&self) {
        self.events.lock().unwrap().push(("open", Instant::now()));
    }
    fn close(&self) {
        self.events.lock().unwrap().push(("close", Instant::now()));
    }
}

impl Recorder {
    fn names(&self) -> Vec<&'static str> {
        self.events.lock().unwrap().iter().map(|e| e.0).collect()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn bulk(connections: usize, direction: Direction) -> PhaseOptions {
    PhaseOptions {
        pattern: Pattern::Bulk(BulkOptions {
            connections,
            direction,
            chunk_size: DEFAULT_CHUNK_SIZE,
            bytes_per_connection: None,
        }),
        warmup: ms(200),
        duration: ms(800),
        io_timeout: ms(2000),
    }
}

fn rr(connections: usize, request_size: usize, response_size: usize) -> PhaseOptions {
    PhaseOptions {
        pattern: Pattern::Rr(RrOptions {
            connections,
            request_size,
            response_size,
            interval: None,
        }),
        warmup: ms(200),
        duration: ms(800),
        io_timeout: ms(2000),
    }
}

struct Run {
    result: Result<PhaseResult, DriveError>,
    relay: Relay,
    window: Recorder,
    elapsed: Duration,
}

async fn run(mode: Mode, opts: &PhaseOptions) -> Run {
    let relay = Relay::start(mode).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let window = Recorder::default();
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let result = run_phase(opts, relay.addr, &sink, &window, &cancel).await;
    let elapsed = t0.elapsed();
    sink.stop().await;
    Run {
        result,
        relay,
        window,
        elapsed,
    }
}

/// Integrity ok, and every byte accounted: what the generator counts matches
/// what passed the relay, and the per-second series adds up to the window.
fn assert_accounted(run: &Run, opts: &PhaseOptions) -> PhaseResult {
    let r = match &run.result {
        Ok(r) => r.clone(),
        Err(e) => panic!("phase failed: {e}"),
    };
    let n = opts.pattern.connections();
    assert_eq!(r.integrity.status, IntegrityStatus::Ok);
    assert!(r.integrity.mismatches.is_empty());
    assert_eq!(r.integrity.connections_checked, n);
    assert_eq!(r.integrity.bytes_checked, r.bytes_up + r.bytes_down);
    let ids: Vec<u32> = r.integrity.connections.iter().map(|c| c.id).collect();
    assert_eq!(ids, (0..n as u32).collect::<Vec<_>>());
    let conn_up: u64 = r.integrity.connections.iter().map(|c| c.bytes_up).sum();
    let conn_down: u64 = r.integrity.connections.iter().map(|c| c.bytes_down).sum();
    assert_eq!((conn_up, conn_down), (r.bytes_up, r.bytes_down));
    assert_eq!(
        run.relay.up.load(Ordering::SeqCst),
        r.bytes_up + (n * HEADER_LEN) as u64
    );
    assert_eq!(run.relay.down.load(Ordering::SeqCst), r.bytes_down);
    assert!(r.window_bytes_up <= r.bytes_up);
    assert!(r.window_bytes_down <= r.bytes_down);
    let ts_up: u64 = r.timeseries.iter().map(|s| s.bytes_up).sum();
    let ts_down: u64 = r.timeseries.iter().map(|s| s.bytes_down).sum();
    let ts_rt: u64 = r.timeseries.iter().map(|s| s.round_trips).sum();
    assert_eq!(ts_up, r.window_bytes_up);
    assert_eq!(ts_down, r.window_bytes_down);
    assert_eq!(ts_rt, r.round_trips);
    assert!(!r.timeseries.is_empty());
    let span: f64 = r.timeseries.iter().map(|s| s.span_s).sum();
    assert!((span - r.measured_s).abs() < 1e-9);
    assert_eq!(r.setup_us.count, n as u64);
    // Each set-up is a TCP connect and a SOCKS5 exchange on loopback.
    assert!(
        r.setup_us.max > 0.0 && r.setup_us.max < 5e6,
        "set-up max {} µs",
        r.setup_us.max
    );
    // The means are window bytes over the window's real length.
    for (bytes, mean) in [
        (r.window_bytes_up, r.throughput.up_bps_mean),
        (r.window_bytes_down, r.throughput.down_bps_mean),
    ] {
        let want = bytes as f64 / r.measured_s;
        assert!(
            (mean - want).abs() <= want * 1e-9,
            "mean {mean}, want {want}"
        );
    }
    // The medians lie among the per-second rates they are the median of.
    for (median, rate) in [
        (
            r.throughput.up_bps_median,
            (|s: &SecondSample| s.bytes_up as f64 / s.span_s) as fn(&SecondSample) -> f64,
        ),
        (r.throughput.down_bps_median, |s: &SecondSample| {
            s.bytes_down as f64 / s.span_s
        }),
    ] {
        let rates: Vec<f64> = r.timeseries.iter().map(rate).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            (lo..=hi).contains(&median),
            "median {median} outside [{lo}, {hi}]"
        );
    }
    let d = opts.duration.as_secs_f64();
    assert!(
        r.measured_s >= d && r.measured_s < d + 0.3,
        "measured {}",
        r.measured_s
    );
    assert!(r.warmup_s >= opts.warmup.as_secs_f64());
    assert_eq!(r.connections, n);
    assert_eq!(run.window.names(), ["open", "close"]);
    r
}

fn mismatch(run: &Run) -> &PhaseResult {
    match &run.result {
        Err(DriveError::Integrity(r)) => {
            assert_eq!(r.integrity.status, IntegrityStatus::Mismatch);
            assert!(!r.integrity.mismatches.is_empty());
            r
        }
        Ok(r) => panic!("expected a mismatch, got {:?}", r.integrity),
        Err(e) => panic!("expected a mismatch, got {e}"),
    }
}

#[tokio::test]
async fn bulk_up_accounts_every_byte() {
    let opts = bulk(2, Direction::Up);
    let run = run(Mode::Relay, &opts).await;
    let r = assert_accounted(&run, &opts);
    assert_eq!(r.pattern, "bulk");
    assert_eq!(r.direction.as_deref(), Some("up"));
    // 800 ms of an in-process loopback relay carry many chunks.
    assert!(
        r.window_bytes_up >= 4 * DEFAULT_CHUNK_SIZE as u64,
        "{}",
        r.window_bytes_up
    );
    assert_eq!(r.bytes_down, 0);
    assert_eq!(r.throughput.down_bps_mean, 0.0);
    assert!(r.latency_us.is_none());
    assert_eq!(r.round_trips, 0);
}

#[tokio::test]
async fn bulk_down_accounts_every_byte() {
    let opts = bulk(2, Direction::Down);
    let run = run(Mode::Relay, &opts).await;
    let r = assert_accounted(&run, &opts);
    assert_eq!(r.bytes_up, 0);
    assert!(
        r.window_bytes_down >= 4 * DEFAULT_CHUNK_SIZE as u64,
        "{}",
        r.window_bytes_down
    );
    assert_eq!(r.throughput.up_bps_mean, 0.0);
}

#[tokio::test]
async fn bulk_both_accounts_every_byte() {
    let mut opts = bulk(3, Direction::Both);
    if let Pattern::Bulk(b) = &mut opts.pattern {
        b.chunk_size = 10_000;
    }
    let run = run(Mode::Relay, &opts).await;
    let r = assert_accounted(&run, &opts);
    assert!(
        r.window_bytes_up >= 40_000 && r.window_bytes_down >= 40_000,
        "{} up, {} down",
        r.window_bytes_up,
        r.window_bytes_down
    );
    assert_eq!(r.direction.as_deref(), Some("both"));
}

#[tokio::test]
async fn rr_counts_round_trips_and_latency() {
    let opts = rr(2, 300, 5000);
    let run = run(Mode::Relay, &opts).await;
    let r = assert_accounted(&run, &opts);
    // Closed loop on 2 connections: the window's bytes are its round
    // trips', give or take one request per connection at each edge.
    assert!(r.round_trips >= 10, "{} round trips", r.round_trips);
    assert!(
        r.window_bytes_up.abs_diff(300 * r.round_trips) <= 300 * 4,
        "{} bytes up for {} round trips",
        r.window_bytes_up,
        r.round_trips
    );
    let lat = r.latency_us.expect("rr has a latency summary");
    assert_eq!(lat.count, r.round_trips);
    // Every round trip of the window is a sample: each reported percentile
    // has bounds exactly when its sample count allows them.
    assert_eq!(lat.percentiles.len(), 4);
    for p in &lat.percentiles {
        assert_eq!(p.samples, lat.count);
        let needed = crate::order_statistics::samples_needed(p.q);
        assert_eq!(p.bounds.is_some(), lat.count >= needed, "q {}", p.q);
        if let Some(b) = p.bounds {
            assert!(b.value > 0.0 && b.value <= b.upper && b.upper <= lat.max);
            assert!(b.lower.is_none_or(|l| l <= b.value));
        }
    }
    let p50 = lat.percentiles[0]
        .bounds
        .expect("a median of this many round trips");
    // Each connection's round trips run one after another, so their mean
    // is at most window × 2 connections / round trips (plus the edges),
    // and a median is at most twice the mean (Markov).
    let most_us = r.measured_s * 1e6 * 2.0 / r.round_trips as f64 * 2.0 * 1.5;
    assert!(
        p50.value > 0.0 && p50.value <= most_us,
        "p50 {} µs (at most {most_us})",
        p50.value
    );
    assert_eq!(r.bytes_up % 300, 0);
    assert_eq!(r.bytes_down % 5000, 0);
    assert_eq!(r.bytes_up / 300, r.bytes_down / 5000);
    assert!(r.direction.is_none());
}

#[tokio::test]
async fn corrupted_upstream_byte_is_a_mismatch() {
    let opts = bulk(1, Direction::Up);
    let run = run(Mode::CorruptUp { at: 100_000 }, &opts).await;
    let r = mismatch(&run);
    // The counts agree: only the hash can tell.
    assert_eq!(
        r.integrity.mismatches.len(),
        1,
        "{:?}",
        r.integrity.mismatches
    );
    let m = &r.integrity.mismatches[0];
    assert!(m.contains("connection 0 up"), "{m}");
    assert!(m.contains("same byte count, different content"), "{m}");
    assert_eq!(run.window.names(), ["open", "close"]);
}

#[tokio::test]
async fn corrupted_rr_response_is_a_mismatch() {
    let opts = rr(1, 100, 1000);
    let run = run(Mode::CorruptDown { at: 4321 }, &opts).await;
    let r = mismatch(&run);
    let m = &r.integrity.mismatches[0];
    assert!(m.contains("connection 0 down"), "{m}");
    assert!(m.contains("same byte count, different content"), "{m}");
}

#[tokio::test]
async fn dropped_downstream_bytes_are_a_mismatch() {
    let opts = bulk(1, Direction::Down);
    let run = run(
        Mode::DropDown {
            at: 70_000,
            len: 1000,
        },
        &opts,
    )
    .await;
    let r = mismatch(&run);
    let m = &r.integrity.mismatches[0];
    assert!(m.contains("connection 0 down: bytes lost"), "{m}");
    assert!(
        m.contains(&format!("generator received {} bytes", r.bytes_down)),
        "{m}"
    );
    assert!(
        m.contains(&format!("sink sent {} bytes", r.bytes_down + 1000)),
        "{m}"
    );
}

#[tokio::test]
async fn dropped_upstream_bytes_are_a_mismatch() {
    let opts = bulk(2, Direction::Both);
    let run = run(Mode::DropUp { at: 50_000, len: 1 }, &opts).await;
    let r = mismatch(&run);
    assert_eq!(
        r.integrity.mismatches.len(),
        2,
        "{:?}",
        r.integrity.mismatches
    );
    for m in &r.integrity.mismatches {
        assert!(m.contains(" up: bytes lost"), "{m}");
    }
    // The error itself says what failed.
    let text = run.result.as_ref().unwrap_err().to_string();
    assert!(text.contains("integrity check failed on 2 of 2"), "{text}");
}

#[tokio::test]
async fn socks5_refusal_names_the_reply() {
    let opts = bulk(1, Direction::Up);
    let run = run(Mode::Refuse(0x05), &opts).await;
    match &run.result {
        Err(e @ DriveError::Socks5 { source, .. }) => {
            assert_eq!(*source, Socks5Error::Reply { code: 5 });
            let text = e.to_string();
            assert!(text.contains("connection refused"), "{text}");
            assert!(text.contains("connection 0"), "{text}");
        }
        other => panic!("expected a SOCKS5 error, got {other:?}"),
    }
    // Failed before the window: neither hook was called.
    assert!(run.window.names().is_empty());
}

#[tokio::test]
async fn stall_in_handshake_times_out() {
    let mut opts = bulk(1, Direction::Up);
    opts.io_timeout = ms(300);
    let run = run(Mode::StallHandshake, &opts).await;
    match &run.result {
        Err(DriveError::Timeout { context, after }) => {
            assert_eq!(*after, ms(300));
            assert!(context.contains("SOCKS5"), "{context}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(run.elapsed < ms(800), "took {:?}", run.elapsed);
}

#[tokio::test]
async fn stall_after_connect_times_out() {
    let mut opts = bulk(1, Direction::Up);
    opts.warmup = Duration::ZERO;
    opts.duration = ms(5000);
    opts.io_timeout = ms(300);
    let run = run(Mode::StallAfterConnect, &opts).await;
    match &run.result {
        Err(DriveError::Timeout { context, .. }) => {
            assert!(context.contains("connection 0: bulk up"), "{context}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(run.elapsed < ms(1500), "took {:?}", run.elapsed);
    // The window had opened: it is closed exactly once.
    assert_eq!(run.window.names(), ["open", "close"]);
}

#[tokio::test]
async fn cancellation_is_prompt_and_closes_connections() {
    let relay = Relay::start(Mode::Relay).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut opts = bulk(2, Direction::Both);
    opts.warmup = ms(100);
    opts.duration = ms(10_000);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(ms(500)).await;
        trigger.cancel();
        Instant::now()
    });
    let window = Recorder::default();
    let result = run_phase(&opts, relay.addr, &sink, &window, &cancel).await;
    let returned = Instant::now();
    let cancelled_at = canceller.await.unwrap();
    assert!(matches!(result, Err(DriveError::Cancelled)), "{result:?}");
    // Prompt against the phase's 10 s: a bound wide enough for a loaded
    // machine's scheduling delays (200 ms failed there now and then).
    assert!(
        returned.duration_since(cancelled_at) < ms(2000),
        "returned {:?} after cancel",
        returned.duration_since(cancelled_at)
    );
    assert_eq!(window.names(), ["open", "close"]);
    // The generator's sockets are closed, so the relay's connections end.
    let deadline = Instant::now() + ms(1000);
    while relay.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(ms(10)).await;
    }
    assert_eq!(relay.open.load(Ordering::SeqCst), 0);
    sink.stop().await;
}

#[tokio::test]
async fn window_opens_after_warmup_and_closes_after_duration() {
    let mut opts = bulk(1, Direction::Up);
    opts.warmup = ms(300);
    opts.duration = ms(600);
    let relay = Relay::start(Mode::Relay).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let window = Recorder::default();
    let t0 = Instant::now();
    let r = run_phase(&opts, relay.addr, &sink, &window, &CancellationToken::new())
        .await
        .unwrap();
    let done = Instant::now();
    let events = window.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    let (open, close) = (events[0], events[1]);
    assert_eq!((open.0, close.0), ("open", "close"));
    assert!(open.1 - t0 >= ms(300));
    assert!(close.1 - open.1 >= ms(600));
    assert!((r.measured_s - (close.1 - open.1).as_secs_f64()).abs() < 0.01);
    assert!(close.1 <= done);
    sink.stop().await;
}

#[tokio::test]
async fn phases_share_one_sink() {
    let relay = Relay::start(Mode::Relay).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut a = bulk(1, Direction::Up);
    a.warmup = ms(50);
    a.duration = ms(300);
    let mut b = rr(1, 10, 10);
    b.warmup = ms(50);
    b.duration = ms(300);
    let cancel = CancellationToken::new();
    let (ra, rb) = tokio::join!(
        run_phase(&a, relay.addr, &sink, &NoWindow, &cancel),
        run_phase(&b, relay.addr, &sink, &NoWindow, &cancel)
    );
    assert_eq!(ra.unwrap().integrity.status, IntegrityStatus::Ok);
    assert_eq!(rb.unwrap().integrity.status, IntegrityStatus::Ok);
    sink.stop().await;
}

#[tokio::test]
async fn invalid_options_are_rejected() {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let addr = sink.addr();
    for opts in [bulk(0, Direction::Up), rr(1, 0, 10), {
        let mut o = bulk(1, Direction::Up);
        o.duration = Duration::ZERO;
        o
    }] {
        let r = run_phase(&opts, addr, &sink, &NoWindow, &cancel).await;
        assert!(matches!(r, Err(DriveError::InvalidOptions(_))), "{r:?}");
    }
    sink.stop().await;
}

#[test]
fn direction_parses_and_names_itself() {
    assert_eq!("up".parse::<Direction>(), Ok(Direction::Up));
    assert_eq!(" Down ".parse::<Direction>(), Ok(Direction::Down));
    assert_eq!("both".parse::<Direction>(), Ok(Direction::Both));
    let e = "sideways".parse::<Direction>().unwrap_err();
    assert!(e.to_string().contains("\"sideways\""));
    assert!(e.to_string().contains("up"));
    assert_eq!(Direction::Both.to_string(), "both");
}

#[test]
fn header_round_trips_and_rejects_corruption() {
    let h = Header {
        nonce: 0x0123_4567_89ab_cdef,
        conn_id: 7,
        work: Work::Rr {
            request_size: 100,
            response_size: 2000,
        },
        io_timeout_ms: 1500,
    };
    let raw = h.encode();
    assert_eq!(&raw[..4], b"PPDR");
    assert_eq!(Header::decode(&raw), Ok(h));
    let b = Header {
        work: Work::Bulk {
            direction: Direction::Down,
            chunk_size: 65536,
            exact: None,
        },
        ..h
    };
    assert_eq!(Header::decode(&b.encode()), Ok(b));
    // Exact lengths past 4 GiB survive the trip (a u64 on the wire).
    let e = Header {
        work: Work::Bulk {
            direction: Direction::Both,
            chunk_size: 65536,
            exact: Some((5 << 32) + 3),
        },
        ..h
    };
    assert_eq!(Header::decode(&e.encode()), Ok(e));
    for i in 0..HEADER_LEN {
        let mut bad = raw;
        bad[i] ^= 0x10;
        assert!(Header::decode(&bad).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn payload_chunks_rotate_and_differ() {
    let chunk = 64 * 1024;
    let mut s = PayloadStream::new(seed(1, 0, false), chunk);
    let mut starts = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    for _ in 0..64 {
        let mut h = blake3::Hasher::new();
        let mut left = chunk;
        let mut first = true;
        while left > 0 {
            let slice = s.next_slice();
            assert!(!slice.is_empty() && slice.len() <= left);
            if first {
                // The slice's offset in the pool is where the chunk starts.
                starts.insert(slice.as_ptr() as usize);
                first = false;
            }
            h.update(slice);
            left -= slice.len();
            s.advance(slice.len());
        }
        hashes.insert(h.finalize());
    }
    assert_eq!(hashes.len(), 64, "a chunk repeats");
    assert_eq!(starts.len(), 64);
    // Two connections start at different offsets.
    let a = PayloadStream::new(seed(1, 0, false), chunk)
        .next_slice()
        .as_ptr();
    let b = PayloadStream::new(seed(1, 1, false), chunk)
        .next_slice()
        .as_ptr();
    assert_ne!(a, b);
    assert!(POOL_LEN >= chunk);
}

#[test]
fn samples_fold_a_short_tail() {
    let b = Buckets {
        up: vec![10, 20, 5, 0],
        down: vec![1, 2, 3, 0],
        round_trips: vec![0, 0, 0, 0],
        latency: vec![None, None, None, None],
    };
    // 2.2 s: two samples, the last spanning 1.2 s.
    let s = fold_samples(&b, 2.2);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].bytes_up, s[1].bytes_up), (10, 25));
    assert!((s[1].span_s - 1.2).abs() < 1e-9);
    // 2.6 s: three samples, the last spanning 0.6 s.
    let s = fold_samples(&b, 2.6);
    assert_eq!(s.len(), 3);
    assert!((s[2].span_s - 0.6).abs() < 1e-9);
    // 0.4 s: one partial sample.
    let s = fold_samples(&b, 0.4);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].bytes_up, 35);
    let t = super::stats::throughput(&fold_samples(&b, 3.0), 3.0);
    assert_eq!(t.up_bps_median, 10.0);
    assert!((t.up_bps_mean - 35.0 / 3.0).abs() < 1e-9);
    assert!(s.iter().all(|s| s.latency_p50_us.is_none()));
}

#[test]
fn samples_carry_each_seconds_latency_and_merge_a_folded_tail() {
    let meter = super::meter::Meter::new(std::time::Duration::from_secs(2));
    let open = tokio::time::Instant::now();
    meter.open_at(open);
    let at = |s: f64| open + std::time::Duration::from_secs_f64(s);
    // Second 0: 100 µs round trips; second 1: 200 µs; the 0.2 s tail: 1 ms.
    // 300 a second: enough for a p99 bound (299).
    for _ in 0..299 {
        assert!(meter.round_trip(at(0.5), 100_000));
        assert!(meter.round_trip(at(1.5), 200_000));
    }
    assert!(meter.round_trip(at(0.6), 900_000));
    assert!(meter.round_trip(at(2.1), 1_000_000));
    let s = fold_samples(&meter.buckets(), 2.2);
    assert_eq!(s.len(), 2);
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= want * 0.03);
    assert!(near(s[0].latency_p50_us, 100.0), "{:?}", s[0]);
    assert!(near(s[0].latency_p99_us, 100.0), "{:?}", s[0]);
    // The tail folds into the last sample: 299 × 200 µs and one 1 ms.
    assert_eq!(s[1].round_trips, 300);
    assert!(near(s[1].latency_p50_us, 200.0), "{:?}", s[1]);
    assert!(near(s[1].latency_p99_us, 200.0), "{:?}", s[1]);
}

#[test]
fn a_second_with_too_few_round_trips_has_no_p99() {
    let meter = super::meter::Meter::new(std::time::Duration::from_secs(1));
    let open = tokio::time::Instant::now();
    meter.open_at(open);
    let at = open + std::time::Duration::from_millis(500);
    for _ in 0..298 {
        assert!(meter.round_trip(at, 100_000));
    }
    let s = fold_samples(&meter.buckets(), 1.0);
    assert_eq!(s[0].round_trips, 298);
    assert!(s[0]
        .latency_p50_us
        .is_some_and(|v| (v - 100.0).abs() <= 3.0));
    assert_eq!(s[0].latency_p99_us, None);
}

#[tokio::test]
async fn socks5_client_reads_any_bound_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (bound, reply_tail) in [
        (
            TargetAddr::Domain("example.test".into(), 443),
            [&[3u8, 12][..], b"example.test", &443u16.to_be_bytes()].concat(),
        ),
        (
            TargetAddr::Ip("[::1]:8080".parse().unwrap()),
            [&[4u8][..], &[0; 15], &[1], &8080u16.to_be_bytes()].concat(),
        ),
    ] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let target = TargetAddr::Domain("sink.test".into(), 9);
        let server_side = tokio::spawn(async move {
            let mut greet = [0u8; 3];
            server.read_exact(&mut greet).await.unwrap();
            assert_eq!(greet, [5, 1, 0]);
            server.write_all(&[5, 0]).await.unwrap();
            let mut req = vec![0u8; 4 + 1 + 9 + 2];
            server.read_exact(&mut req).await.unwrap();
            assert_eq!(&req[..5], &[5, 1, 0, 3, 9]);
            assert_eq!(&req[5..14], b"sink.test");
            assert_eq!(&req[14..], &9u16.to_be_bytes());
            server.write_all(&[5, 0, 0]).await.unwrap();
            server.write_all(&reply_tail).await.unwrap();
            server
        });
        let got = socks5_connect(&mut client, &target, ms(1000))
            .await
            .unwrap();
        assert_eq!(got, bound);
        server_side.await.unwrap();
    }
}

#[tokio::test]
async fn socks5_client_rejects_other_methods() {
    use tokio::io::AsyncWriteExt;
    let (mut client, mut server) = tokio::io::duplex(64);
    server.write_all(&[5, 0xff]).await.unwrap();
    let target = TargetAddr::Ip("127.0.0.1:1".parse().unwrap());
    let e = socks5_connect(&mut client, &target, ms(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DriveError::Socks5 {
                source: Socks5Error::NoAcceptableMethod,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(reply_meaning(0x02), "connection not allowed by ruleset");
}

/// A connection's two views, both having seen `up` bytes up and `down`
/// bytes down: they agree.
fn agreeing(id: u32, up: &[u8], down: &[u8]) -> (GeneratorSide, SinkRecord) {
    let (mut u, mut d) = (Tally::default(), Tally::default());
    u.add(up);
    d.add(down);
    (
        GeneratorSide {
            conn_id: id,
            up: u.digest(),
            down: d.digest(),
        },
        SinkRecord {
            up: u.digest(),
            down: d.digest(),
            error: None,
        },
    )
}

fn check_views(views: &[(GeneratorSide, SinkRecord)], expected: Expected) -> Integrity {
    let gen: Vec<_> = views.iter().map(|v| v.0).collect();
    let sink: HashMap<_, _> = views.iter().map(|v| (v.0.conn_id, v.1.clone())).collect();
    check(&gen, sink, &[], expected)
}

const BOTH: Expected = Expected {
    up: true,
    down: true,
};

#[test]
fn a_direction_asked_for_payload_that_carried_none_fails() {
    // Connection 1's down direction is empty on both sides: the hashes agree,
    // the direction still failed.
    let views = [agreeing(0, b"abc", b"defg"), agreeing(1, b"xyz", b"")];
    let i = check_views(&views, BOTH);
    assert_eq!(i.status, IntegrityStatus::Mismatch);
    assert_eq!(
        i.mismatches,
        ["connection 1 down: asked to carry payload, carried none"]
    );
    assert_eq!(i.bytes_checked, 3 + 4 + 3);

    // A whole connection that carried nothing fails both ways.
    let i = check_views(&[agreeing(7, b"", b"")], BOTH);
    assert_eq!(
        i.mismatches,
        [
            "connection 7 up: asked to carry payload, carried none",
            "connection 7 down: asked to carry payload, carried none",
        ]
    );

    // A direction the pattern does not use may stay empty.
    let up_only = Expected {
        up: true,
        down: false,
    };
    let i = check_views(&[agreeing(0, b"abc", b"")], up_only);
    assert_eq!(i.status, IntegrityStatus::Ok, "{:?}", i.mismatches);
    assert_eq!(
        i.connections,
        [ConnectionBytes {
            id: 0,
            bytes_up: 3,
            bytes_down: 0
        }]
    );
}

fn conn(id: u32, bytes_up: u64, bytes_down: u64) -> ConnectionBytes {
    ConnectionBytes {
        id,
        bytes_up,
        bytes_down,
    }
}

#[test]
fn a_connection_under_a_tenth_of_the_median_is_warned_about() {
    // Totals 1000, 1000, 1000, 99, 100: median 1000, floor 100.
    let conns = [
        conn(0, 500, 500),
        conn(1, 1000, 0),
        conn(2, 0, 1000),
        conn(3, 99, 0),
        conn(4, 50, 50),
    ];
    assert_eq!(
        thin_connections(&conns),
        ["connection 3 moved 99 bytes, under 10 % of the median connection's 1000 bytes"]
    );
    // Even count: the upper median (here 1000) is the reference.
    assert_eq!(
        thin_connections(&[conn(0, 99, 0), conn(1, 1000, 0)]).len(),
        1
    );
    assert!(thin_connections(&[conn(0, 10, 0)]).is_empty());
    assert!(thin_connections(&[]).is_empty());
}

#[test]
fn thin_connection_warnings_reach_the_phase_result() {
    let views = [
        agreeing(0, &[1u8; 1000], b"x"),
        agreeing(1, &[2u8; 1000], b"y"),
        agreeing(2, &[3u8; 50], b"z"),
    ];
    let i = check_views(&views, BOTH);
    assert_eq!(i.status, IntegrityStatus::Ok);
    assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
    assert!(
        i.warnings[0].starts_with("connection 2 moved 51 bytes"),
        "{:?}",
        i.warnings
    );
}

fn setup_opts(connections: usize, max_duration: Duration) -> SetupOptions {
    SetupOptions {
        connections,
        request_size: 64,
        response_size: 1024,
        max_duration,
        io_timeout: ms(2000),
    }
}

#[tokio::test]
async fn setup_phase_times_every_connection_and_checks_its_bytes() {
    let relay = Relay::start(Mode::Relay).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let r = run_setup(
        &setup_opts(300, Duration::from_secs(60)),
        relay.addr,
        &sink,
        &cancel,
    )
    .await
    .expect("setup phase");
    sink.stop().await;
    assert_eq!((r.planned, r.connections), (300, 300));
    assert_eq!(r.setup_us.count, 300);
    assert_eq!(r.first_response_us.count, 300);
    assert_eq!(r.integrity.status, IntegrityStatus::Ok);
    assert_eq!(r.integrity.connections_checked, 300);
    // One request and one response per connection, header besides.
    assert_eq!(r.integrity.bytes_checked, 300 * (64 + 1024));
    assert_eq!(
        relay.up.load(Ordering::SeqCst),
        (300 * (64 + HEADER_LEN)) as u64
    );
    assert_eq!(relay.down.load(Ordering::SeqCst), 300 * 1024);
    // 300 samples bound p50, p90 and p99 (299 needed), not p99.9.
    let labels: Vec<bool> = r
        .setup_us
        .percentiles
        .iter()
        .map(|p| p.bounds.is_some())
        .collect();
    assert_eq!(labels, [true, true, true, false]);
    // The first response comes after the SOCKS5 reply of the same
    // connection, so every percentile of it is at least set-up's.
    for (s, f) in r
        .setup_us
        .percentiles
        .iter()
        .zip(&r.first_response_us.percentiles)
    {
        if let (Some(s), Some(f)) = (s.bounds, f.bounds) {
            assert!(f.value >= s.value, "{s:?} {f:?}");
        }
    }
    assert!(r.first_response_us.max >= r.setup_us.max * 0.99);
}

#[tokio::test]
async fn setup_phase_stops_at_its_time_bound() {
    let relay = Relay::start(Mode::Relay).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let r = run_setup(&setup_opts(100_000, ms(300)), relay.addr, &sink, &cancel)
        .await
        .expect("setup phase");
    let took = t0.elapsed();
    sink.stop().await;
    assert_eq!(r.planned, 100_000);
    // A connection through the stub takes tens of µs at least, so 100000
    // cannot fit in 300 ms: the time bound stopped the phase.
    assert!(
        r.connections >= 1 && r.connections < 100_000,
        "{}",
        r.connections
    );
    assert_eq!(r.setup_us.count, r.connections as u64);
    assert_eq!(r.integrity.connections_checked, r.connections);
    assert!(
        r.elapsed_s >= 0.3 && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn setup_phase_rejects_bad_options_by_name() {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let addr = sink.addr();
    for (opts, field) in [
        (setup_opts(0, ms(100)), "setup connections"),
        (
            SetupOptions {
                request_size: 0,
                ..setup_opts(1, ms(100))
            },
            "setup request_size",
        ),
        (setup_opts(1, Duration::ZERO), "setup max_duration"),
    ] {
        match run_setup(&opts, addr, &sink, &cancel).await {
            Err(DriveError::InvalidOptions(m)) => assert!(m.starts_with(field), "{m}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    sink.stop().await;
}
