//! `--serve ADDR`: the live figures as Prometheus text (the OpenMetrics
//! text format, which Prometheus scrapes) at `GET /metrics`, from a
//! small HTTP server on a thread of its own. Each scrape takes one
//! [`Snapshot`]; nothing is computed between scrapes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{thread_cpu, Live, Snapshot};

/// The OpenMetrics text content type that prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[error("--serve {addr}: cannot listen there ({reason}); pick a free port, e.g. 127.0.0.1:9464")]
pub struct ServeError {
    pub addr: SocketAddr,
    pub reason: String,
}

/// The running server; stopping it (or dropping it) closes the socket.
pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<Duration>>,
    addr: SocketAddr,
}

impl Server {
    /// Listens on `addr` and answers scrapes of `live`.
    pub fn start(addr: SocketAddr, live: Live) -> Result<Server, ServeError> {
        let server = tiny_http::Server::http(addr).map_err(|e| ServeError {
            addr,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let serving = server.clone();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Figures(live)));
        let thread = std::thread::Builder::new()
            .name("protoprof-serve".into())
            .spawn(move || {
                // Ends when `unblock` is called.
                for request in serving.incoming_requests() {
                    answer(request, &registry);
                }
                thread_cpu()
            })
            .map_err(|e| ServeError {
                addr,
                reason: e.to_string(),
            })?;
        Ok(Server {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }

    /// The address it listens on (the port chosen when asked for 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; returns the CPU time its thread used.
    pub fn finish(mut self) -> Duration {
        self.halt()
    }

    fn halt(&mut self) -> Duration {
        self.server.unblock();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

fn answer(request: tiny_http::Request, registry: &Registry) {
    let path = request.url().split('?').next().unwrap_or("");
    let ok_method = matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    let response = if path != "/metrics" {
        tiny_http::Response::from_string("not found: the figures are at /metrics\n")
            .with_status_code(404)
    } else if !ok_method {
        tiny_http::Response::from_string("use GET\n").with_status_code(405)
    } else {
        let mut body = String::new();
        match prometheus_client::encoding::text::encode(&mut body, registry) {
            Ok(()) => {
                let mut r = tiny_http::Response::from_string(body);
                if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE) {
                    r = r.with_header(h);
                }
                r
            }
            Err(_) => tiny_http::Response::from_string("encoding failed\n").with_status_code(500),
        }
    };
    // A scraper that hung up is not our error.
    let _ = request.respond(response);
}

/// The collector that reads a snapshot on each scrape.
struct Figures(Live);

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

type Labels = Vec<(String, String)>;

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut d = e.encode_descriptor(name, help, None, ConstGauge::new(0.0f64).metric_type())?;
    for (labels, v) in series {
        ConstGauge::new(*v).encode(d.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut d = e.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(d.encode_family(labels)?)?;
    }
    Ok(())
}

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl Collector for Figures {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.0.snapshot() else {
            return Ok(());
        };
        encode(&s, &mut e)
    }
}

/// Every figure of `s`; a figure that has no value now is left out.
fn encode(s: &Snapshot, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let profile = ("profile", s.profile.clone());
    let only: Labels = vec![("profile".into(), s.profile.clone())];
    let (pass, index, pattern, state) = match &s.phase {
        Some(p) => (
            p.pass.to_string(),
            p.index.to_string(),
            p.pattern.to_string(),
            p.state.to_string(),
        ),
        None => (
            s.stage.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    gauge(
        e,
        "protoprof_phase",
        "The stage and phase the run is in now (always 1; read the labels)",
        &[(
            labels(&[
                profile.clone(),
                ("stage", s.stage.to_string()),
                ("pass", pass),
                ("phase", index),
                ("pattern", pattern),
                ("state", state),
            ]),
            1.0,
        )],
    )?;
    gauge(
        e,
        "protoprof_elapsed_seconds",
        "Seconds since the run started",
        &[(only.clone(), s.elapsed_s)],
    )?;
    if let Some(p) = &s.phase {
        gauge(
            e,
            "protoprof_phase_window_seconds",
            "Seconds of the phase's measured window so far",
            &[(only.clone(), p.window_s)],
        )?;
    }
    if let Some(r) = s.remaining_s {
        gauge(
            e,
            "protoprof_remaining_seconds",
            "Planned seconds left: this phase's and later phases' warm-up and window",
            &[(only.clone(), r)],
        )?;
    }
    counter(
        e,
        "protoprof_bytes",
        "Payload bytes counted in measured windows so far, by direction",
        &[
            (
                labels(&[profile.clone(), ("direction", "up".into())]),
                s.bytes_up,
            ),
            (
                labels(&[profile.clone(), ("direction", "down".into())]),
                s.bytes_down,
            ),
        ],
    )?;
    counter(
        e,
        "protoprof_round_trips",
        "Round trips completed in measured windows so far",
        &[(only.clone(), s.round_trips)],
    )?;
    if let Some(t) = s.throughput_bps {
        gauge(
            e,
            "protoprof_throughput_bytes_per_second",
            "Bytes up plus down in the window's last complete second",
            &[(only.clone(), t)],
        )?;
    }
    if let Some(p) = s.p99_us {
        gauge(
            e,
            "protoprof_latency_p99_seconds",
            "The phase's 99th percentile round trip over its complete seconds so far",
            &[(only.clone(), p / 1e6)],
        )?;
    }
    let per_target = |f: &dyn Fn(&super::TargetNow) -> f64| -> Vec<(Labels, f64)> {
        s.targets
            .iter()
            .map(|t| {
                (
                    labels(&[
                        profile.clone(),
                        ("role", t.role.clone()),
                        ("pid", t.pid.to_string()),
                    ]),
                    f(t),
                )
            })
            .collect()
    };
    gauge(
        e,
        "protoprof_target_rss_bytes",
        "Each target's resident memory at the latest once-a-second reading",
        &per_target(&|t| t.rss_bytes as f64),
    )?;
    gauge(
        e,
        "protoprof_target_fds",
        "Each target's open file descriptors at the latest once-a-second reading",
        &per_target(&|t| t.fds as f64),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{PhaseNow, TargetNow};
    use super::*;

    #[test]
    fn a_snapshot_encodes_as_prometheus_text() {
        let s = Snapshot {
            profile: "tcp".into(),
            elapsed_s: 3.5,
            stage: "main",
            phase: Some(PhaseNow {
                pass: "main",
                index: 0,
                count: 2,
                pattern: "bulk",
                state: "measuring",
                window_s: 1.5,
                duration_s: 8.0,
            }),
            remaining_s: Some(11.5),
            bytes_up: 1000,
            bytes_down: 2000,
            round_trips: 0,
            throughput_bps: Some(1500.0),
            p99_us: None,
            latency_count: 0,
            targets: vec![TargetNow {
                role: "server".into(),
                pid: 7,
                rss_bytes: 4096,
                fds: 9,
            }],
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(s)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for want in [
            "protoprof_phase{profile=\"tcp\",stage=\"main\",pass=\"main\",phase=\"0\",pattern=\"bulk\",state=\"measuring\"} 1.0",
            "protoprof_bytes_total{profile=\"tcp\",direction=\"up\"} 1000",
            "protoprof_bytes_total{profile=\"tcp\",direction=\"down\"} 2000",
            "# TYPE protoprof_bytes counter",
            "protoprof_throughput_bytes_per_second{profile=\"tcp\"} 1500.0",
            "protoprof_target_rss_bytes{profile=\"tcp\",role=\"server\",pid=\"7\"} 4096.0",
            "protoprof_target_fds{profile=\"tcp\",role=\"server\",pid=\"7\"} 9.0",
            "protoprof_remaining_seconds{profile=\"tcp\"} 11.5",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
        // No latency yet: absent, not zero.
        assert!(!text.contains("protoprof_latency_p99_seconds"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[derive(Debug)]
    struct Fixed(Snapshot);

    impl Collector for Fixed {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode(&self.0, &mut e)
        }
    }

    #[test]
    fn the_server_answers_metrics_and_404_and_stops() {
        let live = Live::new("tcp", Vec::new());
        let server = Server::start("127.0.0.1:0".parse().expect("addr"), live).expect("start");
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        let get = |path: &str| {
            use std::io::{Read as _, Write as _};
            let mut c = std::net::TcpStream::connect(addr).expect("connect");
            write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
            let mut r = String::new();
            c.read_to_string(&mut r).expect("read");
            r
        };
        let r = get("/metrics");
        assert!(r.starts_with("HTTP/1.0 200"), "{r}");
        assert!(r.contains("stage=\"starting\""), "{r}");
        assert!(get("/").starts_with("HTTP/1.0 404"));
        server.finish();
        // The listener closes as the server's thread ends; on a loaded
        // machine that can trail `finish` by a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
