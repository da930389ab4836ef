//! resources: what a target process holds, read from /proc once a second
//! for the whole run: resident memory, descriptors by kind (from the
//! targets of /proc/PID/fd links), threads, CPU time, and its TCP sockets
//! by state.
//!
//! TCP states come from /proc/PID/net/tcp and tcp6 — the target's own
//! network namespace, which a netlink socket of the runner would not see
//! when the target runs in another — filtered by the inodes of the
//! target's socket descriptors. Sockets no descriptor holds (TIME_WAIT,
//! orphaned FIN_WAIT) are therefore not counted. The kernel writes the
//! table in pieces: a socket listed twice is counted once, and one that
//! moves while the table is read may be missed.

use std::collections::HashSet;

/// Descriptors by what they point at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdKinds {
    pub socket: u64,
    pub pipe: u64,
    pub eventfd: u64,
    pub eventpoll: u64,
    pub timerfd: u64,
    /// Other anonymous inodes (signalfd, pidfd, io_uring, bpf …).
    pub anon: u64,
    /// Regular files and devices.
    pub file: u64,
}

impl FdKinds {
    pub fn total(&self) -> u64 {
        self.socket
            + self.pipe
            + self.eventfd
            + self.eventpoll
            + self.timerfd
            + self.anon
            + self.file
    }
}

/// The target's TCP sockets by state (those it holds a descriptor to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStates {
    pub established: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    pub fin_wait1: u64,
    pub fin_wait2: u64,
    pub time_wait: u64,
    pub close: u64,
    pub close_wait: u64,
    pub last_ack: u64,
    pub listen: u64,
    pub closing: u64,
}

impl TcpStates {
    /// Sockets in any state (TIME_WAIT ones are held by no descriptor and
    /// never counted here).
    pub fn total(&self) -> u64 {
        self.established
            + self.syn_sent
            + self.syn_recv
            + self.fin_wait1
            + self.fin_wait2
            + self.time_wait
            + self.close
            + self.close_wait
            + self.last_ack
            + self.listen
            + self.closing
    }

    fn count(&mut self, state: u8) {
        // include/net/tcp_states.h
        let slot = match state {
            1 => &mut self.established,
            2 => &mut self.syn_sent,
            3 => &mut self.syn_recv,
            4 => &mut self.fin_wait1,
            5 => &mut self.fin_wait2,
            6 => &mut self.time_wait,
            7 => &mut self.close,
            8 => &mut self.close_wait,
            9 => &mut self.last_ack,
            10 => &mut self.listen,
            11 => &mut self.closing,
            _ => return,
        };
        *slot += 1;
    }
}

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceSample {
    pub rss_bytes: u64,
    pub fds: FdKinds,
    pub threads: u64,
    /// User + system CPU time since the process started, seconds.
    pub cpu_s: f64,
    pub tcp: TcpStates,
}

/// Why a process could not be read (it has exited, typically).
#[derive(Debug, thiserror::Error)]
#[error("reading /proc/{pid}/{what}: {source}")]
pub struct ResourceError {
    pub pid: u32,
    pub what: &'static str,
    pub source: std::io::Error,
}

/// Reads `pid` now.
pub fn sample(pid: u32) -> Result<ResourceSample, ResourceError> {
    let err = |what: &'static str| move |source| ResourceError { pid, what, source };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(err("status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rss_bytes = field("VmRSS:") * 1024;
    let threads = field("Threads:");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(err("stat"))?;
    let cpu_s = cpu_seconds(&stat).unwrap_or(0.0);
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(err("fd"))?;
    let mut fds = FdKinds::default();
    let mut inodes = HashSet::new();
    for entry in dir.flatten() {
        // A descriptor closed since the listing is simply gone.
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(inode) = socket_inode(&link) {
            fds.socket += 1;
            if let Ok(i) = inode.parse::<u64>() {
                inodes.insert(i);
            }
        } else if link.starts_with("pipe:[") {
            fds.pipe += 1;
        } else if link == "anon_inode:[eventfd]" {
            fds.eventfd += 1;
        } else if link == "anon_inode:[eventpoll]" {
            fds.eventpoll += 1;
        } else if link == "anon_inode:[timerfd]" {
            fds.timerfd += 1;
        } else if link.starts_with("anon_inode:") {
            fds.anon += 1;
        } else {
            fds.file += 1;
        }
    }
    let mut tcp = TcpStates::default();
    for table in ["tcp", "tcp6"] {
        // A kernel without IPv6 has no tcp6.
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            tcp_states(&text, &mut inodes, &mut tcp);
        }
    }
    Ok(ResourceSample {
        rss_bytes,
        fds,
        threads,
        cpu_s,
        tcp,
    })
}

/// The inode of a socket descriptor's /proc/PID/fd link (`socket:[123]`),
/// as written there; `None` for a descriptor that is no socket.
pub(crate) fn socket_inode(link: &str) -> Option<&str> {
    link.strip_prefix("socket:[")?.strip_suffix(']')
}

/// What a process holds that must return to its baseline once traffic
/// ends: open descriptors, and TCP sockets it holds a descriptor to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub fds: u64,
    pub tcp_sockets: u64,
}

impl Held {
    /// `pid`'s counts now; `None` once it has exited.
    pub fn read(pid: u32) -> Option<Held> {
        sample(pid).ok().map(|s| Held {
            fds: s.fds.total(),
            tcp_sockets: s.tcp.total(),
        })
    }
}

/// How often [`settle`] reads a target while it waits.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads `pid` until its counts are back at `baseline` (or below) or
/// `limit` has passed: connections close in the target a moment after the
/// last one closed in the runner. Returns the last reading and the time
/// waited; `None` once the process has exited.
pub fn settle(
    pid: u32,
    baseline: Held,
    limit: std::time::Duration,
) -> Option<(Held, std::time::Duration)> {
    let start = std::time::Instant::now();
    loop {
        let now = Held::read(pid)?;
        let back = now.fds <= baseline.fds && now.tcp_sockets <= baseline.tcp_sockets;
        if back || start.elapsed() >= limit {
            return Some((now, start.elapsed()));
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// utime + stime of a /proc/PID/stat line, in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the line, utime 14 and stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / super::machine_load::ticks_per_second())
}

/// Counts the rows of a /proc/net/tcp table whose inode is in `inodes`,
/// each inode once (taken out of the set as it is counted): the kernel
/// writes the table in pieces, and a socket that moves in its hash table
/// between two pieces is listed twice.
fn tcp_states(text: &str, inodes: &mut HashSet<u64>, out: &mut TcpStates) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(state), Some(inode)) = (f.get(3), f.get(9)) else {
            continue;
        };
        let (Ok(state), Ok(inode)) = (u8::from_str_radix(state, 16), inode.parse::<u64>()) else {
            continue;
        };
        if inodes.remove(&inode) {
            out.count(state);
        }
    }
}

/// One reading of one target during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedSample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub pid: u32,
    pub sample: ResourceSample,
    /// The connection counter's value at this reading (connections served
    /// so far), when the sampler was given one.
    pub served: Option<u64>,
}

/// Reads every target once a second on a thread of its own (so that
/// reading thousands of descriptor links never stalls the load generator)
/// until [`finish`](Sampler::finish).
pub struct Sampler {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<Vec<TimedSample>>>,
    latest: Latest,
}

/// Each live target's latest reading, replaced after every round: what the
/// live view shows, taken from the same readings the report keeps.
pub type Latest = std::sync::Arc<std::sync::Mutex<Vec<TimedSample>>>;

impl Sampler {
    /// Starts sampling `pids` now and every `every`, times counted from
    /// `origin`, each reading with `served`'s count. A target that has
    /// exited is no longer read.
    pub fn start(
        pids: Vec<u32>,
        origin: std::time::Instant,
        every: std::time::Duration,
        served: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    ) -> Sampler {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let latest = Latest::default();
        let published = latest.clone();
        let thread = std::thread::Builder::new()
            .name("protoprof-resources".into())
            .spawn(move || {
                let mut out = Vec::new();
                let mut live = pids;
                let mut next = std::time::Instant::now();
                loop {
                    let round = out.len();
                    live.retain(|&pid| match sample(pid) {
                        Ok(sample) => {
                            out.push(TimedSample {
                                t_s: origin.elapsed().as_secs_f64(),
                                pid,
                                sample,
                                served: served
                                    .as_ref()
                                    .map(|c| c.load(std::sync::atomic::Ordering::Relaxed)),
                            });
                            true
                        }
                        Err(_) => false,
                    });
                    if let Ok(mut l) = published.lock() {
                        l.clear();
                        l.extend_from_slice(&out[round..]);
                    }
                    next += every;
                    let wait = next.saturating_duration_since(std::time::Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return out,
                    }
                }
            })
            .ok();
        Sampler {
            stop,
            thread,
            latest,
        }
    }

    /// The latest reading of each target, for the live view.
    pub fn latest(&self) -> Latest {
        self.latest.clone()
    }

    /// Stops sampling and returns every reading, in time order.
    pub fn finish(mut self) -> Vec<TimedSample> {
        let _ = self.stop.send(());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_rows_are_counted_by_state_for_our_inodes_only() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:C352 06 00000000:00000000 03:00001000 00000000     0        0 0 3 0
   4: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
";
        // 222 listed twice (a table read in pieces): counted once.
        let mut inodes: HashSet<u64> = [111, 222, 444].into_iter().collect();
        let mut s = TcpStates::default();
        tcp_states(text, &mut inodes, &mut s);
        assert_eq!(
            s,
            TcpStates {
                listen: 1,
                established: 1,
                ..TcpStates::default()
            }
        );
    }

    #[test]
    fn cpu_time_skips_a_command_with_spaces() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        let tps = super::super::machine_load::ticks_per_second();
        assert_eq!(cpu_seconds(stat), Some(300.0 / tps));
    }

    #[test]
    fn the_sampler_reads_once_a_second_until_finished() {
        let origin = std::time::Instant::now();
        let s = Sampler::start(
            vec![std::process::id()],
            origin,
            std::time::Duration::from_millis(100),
            None,
        );
        std::thread::sleep(std::time::Duration::from_millis(450));
        let got = s.finish();
        // At 0, 0.1, 0.2, 0.3, 0.4 s: 5, give or take one at the edge.
        assert!((4..=6).contains(&got.len()), "{}", got.len());
        assert!(got.windows(2).all(|w| w[0].t_s < w[1].t_s));
    }

    #[test]
    fn settle_returns_at_once_at_baseline_and_waits_out_a_leak() {
        let me = std::process::id();
        let base = Held::read(me).expect("self");
        // Other tests of this binary open descriptors meanwhile: a
        // baseline far above ours is met at once.
        let high = Held {
            fds: base.fds + 1000,
            tcp_sockets: base.tcp_sockets + 1000,
        };
        let (_, waited) = settle(me, high, std::time::Duration::from_secs(5)).expect("self");
        assert!(waited < std::time::Duration::from_secs(1), "{waited:?}");
        let low = Held {
            fds: 0,
            tcp_sockets: 0,
        };
        let (now, waited) = settle(me, low, std::time::Duration::from_millis(200)).expect("self");
        assert!(now.fds >= 3, "{now:?}");
        assert!((200..1000).contains(&waited.as_millis()), "{waited:?}");
    }

    #[test]
    fn this_process_reads_back() {
        let s = sample(std::process::id()).expect("self");
        assert!(s.rss_bytes > 1 << 20, "{s:?}");
        assert!(s.threads >= 1 && s.fds.total() >= 3, "{s:?}");
        // A listening socket of ours shows as one more socket and one
        // more LISTEN row. Other tests of this process open sockets in
        // parallel, so the exact step is looked for over a few tries; a
        // reader that missed or double-counted it would never see it.
        let seen = (0..20).any(|_| {
            let before = sample(std::process::id()).expect("self");
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let after = sample(std::process::id()).expect("self");
            drop(l);
            after.fds.socket == before.fds.socket + 1 && after.tcp.listen == before.tcp.listen + 1
        });
        assert!(seen, "one listener never read back as +1 socket, +1 LISTEN");
    }
}
