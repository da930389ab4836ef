//! The delay line: this kernel has no netem, so delay, jitter and bursty
//! loss come from a thread of ours in the router namespace.
//!
//! The router sends client↔server packets (policy routing: by the device
//! they came in on and their destination) to a TUN device, `pp-delay`. The
//! thread reads each packet, holds it in a FIFO per direction until its
//! release time (delay ± uniform jitter, never before the packet ahead of
//! it, so nothing is reordered) and writes it back into the TUN device,
//! from where the router forwards it on. Bursty loss (Gilbert–Elliott)
//! drops packets here. The thread measures its own cost every run: CPU
//! time (its thread clock) and timing error (write time − release time).

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, RngExt, SeedableRng};

use super::{
    impair::Direction, router_device, run, Host, LinkSpec, LossModel, Network, NetworkError, Subnet,
};

/// The TUN device in the router namespace.
pub const DEVICE: &str = "pp-delay";
/// Routing table of the packets to delay.
const TABLE: &str = "100";
/// Packets held per direction at most; more are dropped and counted.
const MAX_HELD: usize = 200_000;
/// The thread checks for stop at least this often.
const MAX_WAIT: Duration = Duration::from_millis(5);

/// Packets through one direction so far.
#[derive(Debug, Default)]
struct Counts {
    passed: AtomicU64,
    dropped: AtomicU64,
    overflow: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectionCounts {
    pub passed: u64,
    pub dropped: u64,
    pub overflow: u64,
}

/// What the delay line cost and how well it kept time, for the report.
#[derive(Debug, Clone, Default)]
pub struct DelayLineStats {
    /// CPU seconds of its thread, and the wall seconds it ran.
    pub cpu_s: f64,
    pub wall_s: f64,
    pub packets: u64,
    /// Write time minus release time, microseconds.
    pub error_p50_us: f64,
    pub error_p99_us: f64,
    pub error_max_us: f64,
    pub write_errors: u64,
}

/// The running delay line; stopped by [`DelayLine::stop`] or on drop.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    counts: Arc<[Counts; 2]>,
    thread: Option<JoinHandle<DelayLineStats>>,
    stats: Option<DelayLineStats>,
}

/// One direction's settings, as the thread uses them.
#[derive(Debug, Clone, Copy)]
struct Line {
    delay: f64,
    jitter: f64,
    /// Gilbert–Elliott transition probabilities (good → bad, bad → good);
    /// none for no bursty loss.
    burst: Option<(f64, f64)>,
}

impl Line {
    fn new(link: &LinkSpec) -> Line {
        let burst = (link.loss_model == LossModel::Bursty && link.loss_percent > 0.0)
            .then(|| transitions(link.loss_percent / 100.0, link.burst_packets));
        Line {
            delay: link.delay_ms / 1e3,
            jitter: link.jitter_ms / 1e3,
            burst,
        }
    }
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

fn open_tun() -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..DEVICE.len()].copy_from_slice(DEVICE.as_bytes());
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

impl DelayLine {
    /// Start the thread in the router and route the impaired directions
    /// through it.
    pub fn start(net: &Network) -> Result<DelayLine, NetworkError> {
        let lines = [Line::new(&net.spec.up), Line::new(&net.spec.down)];
        let server = net.addresses.subnets.server;
        let router = net.path(Host::Router);
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[Counts; 2]> = Arc::new([Counts::default(), Counts::default()]);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let counts = counts.clone();
            std::thread::Builder::new()
                .name("protoprof-delay".into())
                .spawn(move || {
                    let tun = super::enter(&router).and_then(|()| open_tun());
                    match tun {
                        Ok(tun) => {
                            let _ = ready_tx.send(Ok(()));
                            forward(tun, lines, server, &stop, &counts)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            DelayLineStats::default()
                        }
                    }
                })
                .map_err(|e| NetworkError::Io {
                    what: "starting the delay line".into(),
                    source: e,
                })?
        };
        let mut line = DelayLine {
            stop,
            counts,
            thread: Some(thread),
            stats: None,
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                line.stop();
                return Err(NetworkError::Io {
                    what: format!("opening the TUN device {DEVICE}"),
                    source: e,
                });
            }
            Err(_) => {
                line.stop();
                return Err(NetworkError::Other("the delay line thread ended".into()));
            }
        }
        let rtr = net.namespace(Host::Router);
        run("ip", &["-n", &rtr, "link", "set", DEVICE, "up"])?;
        run(
            "ip",
            &[
                "-n", &rtr, "route", "add", "default", "dev", DEVICE, "table", TABLE,
            ],
        )?;
        for d in Direction::BOTH {
            if !d.link(net).needs_delay_line() {
                continue;
            }
            let (from, to) = d.hosts();
            let dst = match to {
                Host::Server => net.addresses.subnets.server,
                _ => net.addresses.subnets.client,
            };
            run(
                "ip",
                &[
                    "-n",
                    &rtr,
                    "rule",
                    "add",
                    "iif",
                    &router_device(from),
                    "to",
                    &dst.to_string(),
                    "lookup",
                    TABLE,
                    "pref",
                    "100",
                ],
            )?;
        }
        Ok(line)
    }

    pub fn counts(&self, d: Direction) -> DirectionCounts {
        let c = &self.counts[d as usize];
        DirectionCounts {
            passed: c.passed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            overflow: c.overflow.load(Ordering::Relaxed),
        }
    }

    /// Stop the thread and keep its figures. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            self.stats = t.join().ok();
        }
    }

    /// The figures, once stopped.
    pub fn stats(&self) -> Option<&DelayLineStats> {
        self.stats.as_ref()
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Gilbert–Elliott chain's transition probabilities (good → bad
/// `p`, bad → good `r`) for a long-run loss share `loss` in bursts of mean
/// `burst` packets: r = 1/burst, and the stationary share p/(p+r) = loss.
pub fn transitions(loss: f64, burst: f64) -> (f64, f64) {
    let r = 1.0 / burst;
    (r * loss / (1.0 - loss), r)
}

/// The lag-1 correlation of successive packets' fates under bursty loss,
/// 1 − p − r: how much fewer independent trials a count of packets is
/// worth (see `analyze::binomial::clopper_pearson_correlated`).
pub fn loss_correlation(loss: f64, burst: f64) -> f64 {
    let (p, r) = transitions(loss, burst);
    (1.0 - p - r).max(0.0)
}

/// One step of the Gilbert–Elliott chain for a packet, `u` uniform in
/// [0, 1): whether the packet is lost (the chain is in its bad state).
fn gilbert_elliott(bad: &mut bool, (p, r): (f64, f64), u: f64) -> bool {
    *bad = if *bad { u >= r } else { u < p };
    *bad
}

struct Held {
    release: Instant,
    packet: Vec<u8>,
}

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The thread's loop: read, hold, release; returns its own figures.
fn forward(
    mut tun: File,
    lines: [Line; 2],
    server: Subnet,
    stop: &AtomicBool,
    counts: &[Counts; 2],
) -> DelayLineStats {
    // Wake-ups as close to the release time as the timer allows.
    // SAFETY: prctl on the calling thread only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let started = Instant::now();
    let cpu_at_start = thread_cpu_s();
    let mut rng = StdRng::seed_from_u64(0x5eed_de1a);
    let mut queues: [VecDeque<Held>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut bad = [false; 2];
    let mut last = [started; 2];
    let mut errors = hdrhistogram::Histogram::<u64>::new(3).ok();
    let mut write_errors = 0u64;
    let mut packets = 0u64;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        // Release what is due.
        let now = Instant::now();
        for q in &mut queues {
            while q.front().is_some_and(|h| h.release <= now) {
                let Some(h) = q.pop_front() else { break };
                // A TUN write takes the whole packet or none of it.
                match tun.write(&h.packet) {
                    Ok(n) if n == h.packet.len() => {
                        let late = Instant::now().saturating_duration_since(h.release);
                        if let Some(hist) = errors.as_mut() {
                            let _ = hist.record(late.as_nanos() as u64);
                        }
                    }
                    _ => write_errors += 1,
                }
            }
        }
        let next = queues
            .iter()
            .filter_map(|q| q.front())
            .map(|h| h.release)
            .min();
        let wait = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT);
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        let mut pfd = libc::pollfd {
            fd: tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a valid timeout, no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        loop {
            let n = match tun.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            packets += 1;
            // Only IPv4 is routed here; anything else passes at once.
            if n < 20 || buf[0] >> 4 != 4 {
                let _ = tun.write(&buf[..n]);
                continue;
            }
            let arrived = Instant::now();
            let dst = std::net::Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
            let d = if server.contains(dst) { 0 } else { 1 };
            let line = lines[d];
            if let Some(burst) = line.burst {
                if gilbert_elliott(&mut bad[d], burst, rng.random_range(0.0..1.0)) {
                    counts[d].dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            if queues[d].len() >= MAX_HELD {
                counts[d].overflow.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let jitter = if line.jitter > 0.0 {
                rng.random_range(-line.jitter..=line.jitter)
            } else {
                0.0
            };
            let delay = Duration::from_secs_f64((line.delay + jitter).max(0.0));
            let release = (arrived + delay).max(last[d]);
            last[d] = release;
            queues[d].push_back(Held {
                release,
                packet: buf[..n].to_vec(),
            });
            counts[d].passed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let us = |q: f64| {
        errors
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1e3)
    };
    DelayLineStats {
        cpu_s: thread_cpu_s() - cpu_at_start,
        wall_s: started.elapsed().as_secs_f64(),
        packets,
        error_p50_us: us(0.5),
        error_p99_us: us(0.99),
        error_max_us: errors.as_ref().map_or(0.0, |h| h.max() as f64 / 1e3),
        write_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursty_loss_has_the_set_share_and_burst_length() {
        let link = LinkSpec {
            loss_percent: 5.0,
            loss_model: LossModel::Bursty,
            burst_packets: 4.0,
            ..LinkSpec::default()
        };
        let burst = Line::new(&link).burst.expect("bursty");
        let mut rng = StdRng::seed_from_u64(7);
        let (mut bad, mut lost, mut bursts) = (false, 0u64, 0u64);
        let n = 2_000_000u64;
        for _ in 0..n {
            let was = bad;
            if gilbert_elliott(&mut bad, burst, rng.random_range(0.0..1.0)) {
                lost += 1;
                if !was {
                    bursts += 1;
                }
            }
        }
        let share = lost as f64 / n as f64;
        let mean_burst = lost as f64 / bursts as f64;
        // 2e6 packets in bursts of ~4: ~25 000 bursts, so the share's
        // standard error is about 0.06 % and the mean burst's about 0.03.
        assert!((share - 0.05).abs() < 0.003, "share {share}");
        assert!((mean_burst - 4.0).abs() < 0.15, "mean burst {mean_burst}");
    }
}
