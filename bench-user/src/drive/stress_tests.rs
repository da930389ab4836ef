//! The stress patterns against the in-process relay stub: churn counts,
//! open-loop schedules, exact-length transfers (also through a relay that
//! closes both ways at the first FIN).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::generator::due_time;
use super::header::HEADER_LEN;
use super::test_relay::{Mode, Relay};
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn run(mode: Mode, opts: &PhaseOptions) -> (Result<PhaseResult, DriveError>, Relay) {
    let relay = Relay::start(mode).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let r = run_phase(
        opts,
        relay.addr,
        &sink,
        &NoWindow,
        &CancellationToken::new(),
    )
    .await;
    sink.stop().await;
    (r, relay)
}

fn churn(
    concurrency: usize,
    interval: Option<Duration>,
    warmup: u64,
    duration: u64,
) -> PhaseOptions {
    PhaseOptions {
        pattern: Pattern::Churn(ChurnOptions {
            concurrency,
            interval,
            request_size: 64,
            response_size: 1024,
        }),
        warmup: ms(warmup),
        duration: ms(duration),
        io_timeout: ms(2000),
    }
}

fn exact(connections: usize, direction: Direction, n: u64) -> PhaseOptions {
    PhaseOptions {
        pattern: Pattern::Bulk(BulkOptions {
            connections,
            direction,
            chunk_size: 16 * 1024,
            bytes_per_connection: Some(n),
        }),
        warmup: Duration::ZERO,
        duration: Duration::from_secs(20),
        io_timeout: ms(2000),
    }
}

#[test]
fn due_times_do_not_accumulate_rounding() {
    let o = Instant::now();
    // 1/3 s is not a whole number of nanoseconds' worth of thirds.
    let every = Duration::from_nanos(333_333_333);
    assert_eq!(due_time(o, every, 0), o);
    assert_eq!(due_time(o, every, 3), o + Duration::from_nanos(999_999_999));
    assert_eq!(
        due_time(o, every, 3_000_000),
        o + Duration::from_nanos(999_999_999_000_000)
    );
    // Far past any run's length it saturates instead of wrapping.
    assert!(due_time(o, Duration::from_secs(1 << 40), u64::MAX) > o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_checks_every_connection_and_counts_them_exactly() {
    let opts = churn(3, None, 200, 600);
    let (r, relay) = run(Mode::Relay, &opts).await;
    let r = r.expect("churn through a faithful relay");
    let c = r.churn.as_ref().expect("churn figures");
    assert_eq!(r.integrity.status, IntegrityStatus::Ok);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    assert_eq!(c.failed, 0);
    // Every connection started, warm-up included, was checked both ways.
    assert_eq!(r.integrity.connections_checked as u64, c.all_started);
    assert_eq!(c.completed, c.started);
    assert_eq!(c.setup_us.count, c.completed);
    assert_eq!(c.first_response_us.count, c.completed);
    let n = c.all_started;
    assert_eq!(r.bytes_up, 64 * n);
    assert_eq!(r.bytes_down, 1024 * n);
    assert_eq!(
        relay.up.load(Ordering::SeqCst),
        (64 + HEADER_LEN as u64) * n
    );
    assert_eq!(relay.down.load(Ordering::SeqCst), 1024 * n);
    // Completions counted by time of completion differ from starts counted
    // by time of start by at most those in flight at each window edge.
    assert!(
        r.round_trips.abs_diff(c.completed) <= 2 * 3,
        "{} round trips in the window, {} started",
        r.round_trips,
        c.completed
    );
    assert!((c.connections_per_s - c.completed as f64 / r.measured_s).abs() < 1e-9);
    // A loopback relay turns a short connection around in well under
    // 10 ms: far more than 10 complete in 0.6 s.
    assert!(c.completed >= 10, "{} completed", c.completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_at_a_rate_starts_on_schedule() {
    // 100 a second for 1 s, no warm-up: due times 0, 10, …, 990 ms.
    let opts = churn(8, Some(ms(10)), 0, 1000);
    let (r, _relay) = run(Mode::Relay, &opts).await;
    let r = r.expect("churn at a rate");
    let c = r.churn.as_ref().expect("churn figures");
    assert_eq!(c.target_per_s, Some(100.0));
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    let lag = c.start_lag_us.as_ref().expect("lag");
    assert_eq!(lag.count, c.started);
    // 100 due in the window, one more or less where a due time meets an
    // edge; those the generator could not start in time count as behind.
    assert!(c.started <= 101, "{} started", c.started);
    assert!(
        c.started + c.behind >= 99,
        "{} started, {} behind",
        c.started,
        c.behind
    );
    if c.behind == 0 {
        assert!((99..=101).contains(&c.started), "{} started", c.started);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_refused_everywhere_fails_with_the_first_reason() {
    let opts = churn(2, None, 0, 300);
    let (r, _relay) = run(Mode::Refuse(5), &opts).await;
    match r {
        Err(DriveError::Protocol { message, .. }) => {
            assert!(message.starts_with("no connection completed"), "{message}");
            assert!(
                message.contains("SOCKS5") || message.contains("refused"),
                "{message}"
            );
        }
        other => panic!("expected no completed connection, got {other:?}"),
    }
}

#[test]
fn failure_kinds_name_limits_apart() {
    let io = |code| DriveError::Io {
        context: "connection 1: TCP connect to the SOCKS5 server 127.0.0.1:1".into(),
        source: std::io::Error::from_raw_os_error(code),
    };
    assert_eq!(super::churn::failure_kind(&io(libc::EMFILE)), "fd_limit");
    assert_eq!(
        super::churn::failure_kind(&io(libc::EADDRNOTAVAIL)),
        "port_exhaustion"
    );
    assert_eq!(
        super::churn::failure_kind(&io(libc::ECONNREFUSED)),
        "connect"
    );
    assert_eq!(
        super::churn::failure_kind(&DriveError::Timeout {
            context: "x".into(),
            after: ms(1)
        }),
        "timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_rr_sends_rate_times_duration() {
    let (conns, rate) = (3u64, 50.0);
    let opts = PhaseOptions {
        pattern: Pattern::Rr(RrOptions {
            connections: conns as usize,
            request_size: 64,
            response_size: 512,
            interval: Some(ms(20)),
        }),
        warmup: ms(200),
        duration: ms(1000),
        io_timeout: ms(2000),
    };
    let (r, _relay) = run(Mode::Relay, &opts).await;
    let r = r.expect("open-loop rr");
    let s = r.schedule.as_ref().expect("schedule figures");
    assert_eq!(s.rate_per_connection, rate);
    // Per connection, due times in a window of T seconds number T × rate,
    // ± 1 where a due time meets an edge. Completions in the window differ
    // from due times in it by at most the one request in flight at each
    // edge.
    let want = conns as f64 * rate * r.measured_s;
    let slack = conns as f64;
    // Due times in the window: T × rate per connection, ± 1 where one
    // meets an edge, however busy the machine (a request never sent is
    // still due, and behind).
    assert!(
        (s.due as f64 - want).abs() <= slack,
        "{} due, want {want}",
        s.due
    );
    assert!(s.behind <= s.due && s.lag_us.count <= s.due);
    assert!(
        s.due - s.lag_us.count <= s.behind,
        "unsent requests are behind"
    );
    assert_eq!(r.latency_us.as_ref().expect("latency").count, r.round_trips);
    assert!(
        r.round_trips as f64 <= want + 3.0 * slack,
        "{} round trips, want {want}",
        r.round_trips
    );
    if s.behind == 0 {
        // Kept up: completions in the window differ from due times in it
        // by at most the one request in flight at each edge.
        assert!(
            (r.round_trips as f64 - want).abs() <= 3.0 * slack,
            "{} round trips, want {want}",
            r.round_trips
        );
    } else {
        assert!(
            s.lag_us.max * 1e3 > 20e6 || s.lag_us.count < s.due,
            "{:?}",
            s.lag_us
        );
        eprintln!(
            "generator behind on {} of {} requests (machine busy)",
            s.behind, s.due
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_length_bulk_moves_exactly_n_each_way() {
    let n = 3 * 1024 * 1024 + 7;
    for mode in [Mode::Relay, Mode::NoHalfClose] {
        for direction in [Direction::Both, Direction::Up, Direction::Down] {
            let opts = exact(2, direction, n);
            let (r, relay) = run(mode, &opts).await;
            let r = r.unwrap_or_else(|e| panic!("{mode:?} {direction}: {e}"));
            assert_eq!(r.integrity.status, IntegrityStatus::Ok);
            assert_eq!(r.bytes_per_connection, Some(n));
            let up = if direction.sends_up() { n } else { 0 };
            let down = if direction.sends_down() { n } else { 0 };
            for c in &r.integrity.connections {
                assert_eq!(
                    (c.bytes_up, c.bytes_down),
                    (up, down),
                    "{mode:?} {direction}"
                );
            }
            // Every byte moved inside the window.
            assert_eq!((r.window_bytes_up, r.window_bytes_down), (2 * up, 2 * down));
            assert_eq!(
                relay.up.load(Ordering::SeqCst),
                2 * (up + HEADER_LEN as u64)
            );
            assert_eq!(relay.down.load(Ordering::SeqCst), 2 * down);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_bulk_loses_its_tail_through_a_relay_without_half_close() {
    // What exact-length mode exists for: the timed stream ends with the
    // generator's FIN, which this relay turns into a full close while the
    // downstream is still in flight.
    let opts = PhaseOptions {
        pattern: Pattern::Bulk(BulkOptions {
            connections: 1,
            direction: Direction::Down,
            chunk_size: 64 * 1024,
            bytes_per_connection: None,
        }),
        warmup: ms(100),
        duration: ms(300),
        io_timeout: ms(2000),
    };
    let (r, _relay) = run(Mode::NoHalfClose, &opts).await;
    assert!(
        !matches!(&r, Ok(r) if r.integrity.status == IntegrityStatus::Ok),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves 4 GiB + 1 byte through the relay stub: tens of seconds"]
async fn exact_length_bulk_past_4_gib_on_one_connection() {
    let n = (1u64 << 32) + 1;
    let mut opts = exact(1, Direction::Up, n);
    if let Pattern::Bulk(b) = &mut opts.pattern {
        b.chunk_size = 1 << 20;
    }
    opts.duration = Duration::from_secs(600);
    let (r, relay) = run(Mode::Relay, &opts).await;
    let r = r.expect("4 GiB + 1 up");
    assert_eq!(r.integrity.status, IntegrityStatus::Ok);
    assert_eq!(r.integrity.connections[0].bytes_up, n);
    assert_eq!(r.bytes_up, n);
    assert_eq!(relay.up.load(Ordering::SeqCst), n + HEADER_LEN as u64);
}
