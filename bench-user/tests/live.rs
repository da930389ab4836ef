//! End to end: the live view of a real run — `/metrics` scraped while the
//! tcp profile runs (`--serve`), and the plain lines on a stderr that is
//! not a terminal. Needs root (eBPF); see tests/probes.rs.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// `GET /metrics` from `addr`; None while nothing listens.
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(c, "GET /metrics HTTP/1.0\r\nHost: protoprof\r\n\r\n").ok()?;
    let mut r = String::new();
    c.read_to_string(&mut r).ok()?;
    r.starts_with("HTTP/1.0 200").then_some(r)
}

/// The value of the one sample of `metric` whose labels contain `labels`.
fn value(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(labels))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// The label `key` of the `protoprof_phase` sample.
fn phase_label(text: &str, key: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("protoprof_phase{"))?;
    let from = line.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &line[from..];
    Some(rest[..rest.find('"')?].to_string())
}

fn bytes(text: &str) -> f64 {
    value(text, "protoprof_bytes_total", "direction=\"up\"").unwrap_or(-1.0)
        + value(text, "protoprof_bytes_total", "direction=\"down\"").unwrap_or(-1.0)
}

/// Scrapes until the run is in pass `pass`, pattern `pattern`, measuring.
fn scrape_until(addr: SocketAddr, pass: &str, pattern: &str, within: Duration) -> String {
    let end = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < end {
        if let Some(t) = scrape(addr) {
            if phase_label(&t, "pass").as_deref() == Some(pass)
                && phase_label(&t, "pattern").as_deref() == Some(pattern)
                && phase_label(&t, "state").as_deref() == Some("measuring")
            {
                return t;
            }
            last = t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never saw {pass} {pattern} measuring within {within:?}; last scrape:\n{last}");
}

#[test]
#[ignore = "needs root"]
fn metrics_move_during_a_run_and_plain_lines_follow_the_phases() {
    become_subreaper();
    let out = out_dir("live");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let stderr_path = out.join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    // tcp: bulk (8 of 12 s) then rr (4 of 12 s), main then per-call pass;
    // --duration 9 gives bulk a 6-s window.
    let run = profile_cmd(&out, "9")
        .arg("--serve")
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start protoprof");

    let first = scrape_until(addr, "main", "bulk", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let second = scrape(addr).expect("a second scrape");
    assert_eq!(
        phase_label(&second, "pattern").as_deref(),
        Some("bulk"),
        "{second}"
    );
    assert_eq!(phase_label(&second, "stage").as_deref(), Some("main"));
    // 1.5 s of bulk both ways through loopback moves far more than 1 MB.
    let moved = bytes(&second) - bytes(&first);
    assert!(
        moved > 1e6,
        "bytes {} then {}",
        bytes(&first),
        bytes(&second)
    );
    assert!(
        value(
            &second,
            "protoprof_throughput_bytes_per_second",
            "profile=\"tcp\""
        )
        .is_some_and(|t| t > 1e6),
        "{second}"
    );
    for role in ["client", "server"] {
        let rss = value(
            &second,
            "protoprof_target_rss_bytes",
            &format!("role=\"{role}\""),
        );
        let fds = value(&second, "protoprof_target_fds", &format!("role=\"{role}\""));
        // An endpoint holds at least its runtime and 4 connections' sockets.
        assert!(rss.is_some_and(|r| r > 1e6), "{role} rss {rss:?}");
        assert!(fds.is_some_and(|f| f >= 8.0), "{role} fds {fds:?}");
    }
    let remaining = value(&second, "protoprof_remaining_seconds", "").expect("remaining");
    assert!(remaining > 0.0 && remaining < 20.0, "remaining {remaining}");
    // No round trip in bulk: no latency figure, rather than a zero.
    assert!(
        !second.contains("protoprof_latency_p99_seconds"),
        "{second}"
    );

    // rr's window is 3 s: 1.2 s in, one complete second has round trips.
    scrape_until(addr, "main", "rr", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1200));
    let rr = scrape(addr).expect("a scrape in rr");
    assert_eq!(phase_label(&rr, "pattern").as_deref(), Some("rr"), "{rr}");
    assert!(bytes(&rr) >= bytes(&second), "counters went back");
    let p99 = value(&rr, "protoprof_latency_p99_seconds", "").expect("p99 in rr");
    assert!(p99 > 0.0 && p99 < 1.0, "p99 {p99} s");
    assert!(value(&rr, "protoprof_round_trips_total", "").is_some_and(|n| n >= 1.0));

    let done = finish_within(run, COMMAND_LIMIT, Stderr::Keep);
    let text = std::fs::read_to_string(&stderr_path).expect("stderr");
    assert!(done.status.success(), "{text}");
    // The server is gone with the run.
    assert!(scrape(addr).is_none());

    // Not a terminal: plain lines, each at most 5 s (+1 tick) after the
    // last, a new one at each change of phase or state.
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("protoprof live: "))
        .collect();
    let times: Vec<f64> = lines
        .iter()
        .map(|l| {
            l.strip_prefix("t=")
                .and_then(|r| r.split_once('s'))
                .and_then(|(t, _)| t.parse().ok())
                .unwrap_or_else(|| panic!("no t= in {l}"))
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1] && w[1] - w[0] <= 6.5),
        "{text}"
    );
    for want in [
        "main phase 1/2 bulk starting",
        "main phase 1/2 bulk measuring",
        "main phase 2/2 rr measuring",
        "per-call phase 1/2 bulk",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "no {want:?} in:\n{text}"
        );
    }
    // Every line once the targets run names both with RSS and FDs.
    for l in lines.iter().filter(|l| l.contains("phase ")) {
        assert!(
            l.contains(" client[")
                && l.contains(" server[")
                && l.matches(" rss=").count() == 2
                && l.matches(" fds=").count() == 2,
            "{l}"
        );
    }
    assert_clean();
}

#[test]
fn a_non_loopback_serve_address_is_refused_before_anything_runs() {
    let out = out_dir("live-refused");
    let o = profile_cmd(&out, "1")
        .args(["--serve", "0.0.0.0:9464"])
        .output()
        .expect("run protoprof");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--serve-non-loopback"), "{stderr}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(&out).map(|d| d.count()).ok(), Some(0));
}
