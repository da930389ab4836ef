//! Rate, queue and random loss on the client–server link, in the router,
//! and the router's counters that tell what the link really did.
//!
//! Rate: a tbf under one class of an htb qdisc (used only to sort, its
//! classes far above any rate) on the router's device towards the
//! receiving host, with a u32 filter that sends only the other endpoint's
//! packets to it (the generator's and sink's traffic passes
//! unlimited). Random loss: nftables `numgen random mod 1000000` (10⁻⁶
//! resolution) in the router's forward hook, with named counters of the
//! packets seen and dropped per direction.

use std::{io::Write as _, process::Stdio};

use super::{router_device, run, Host, LinkSpec, LossModel, Network, NetworkError};

/// nftables table in the router namespace.
pub const TABLE: &str = "pp_impair";
/// numgen modulus: loss resolution 10⁻⁴ percent.
const LOSS_SCALE: f64 = 1_000_000.0;

/// One direction of the client–server link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Up, Direction::Down];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    /// (sending host, receiving host).
    pub fn hosts(self) -> (Host, Host) {
        match self {
            Direction::Up => (Host::Client, Host::Server),
            Direction::Down => (Host::Server, Host::Client),
        }
    }

    pub fn link(self, net: &Network) -> &LinkSpec {
        match self {
            Direction::Up => &net.spec.up,
            Direction::Down => &net.spec.down,
        }
    }
}

/// tbf's bucket: 2 ms at the rate, at least two full frames.
fn burst_bytes(rate_mbit: f64) -> u64 {
    ((rate_mbit * 1e6 / 8.0 * 0.002) as u64).max(2 * 1514)
}

/// Set the rate limits and the nftables table.
pub fn apply(net: &Network) -> Result<(), NetworkError> {
    let rtr = net.namespace(Host::Router);
    let a = net.addresses;
    let mut rules = format!("table ip {TABLE} {{\n");
    for d in Direction::BOTH {
        let n = d.as_str();
        rules.push_str(&format!(
            "  counter {n}_seen {{ }}\n  counter {n}_dropped {{ }}\n"
        ));
    }
    rules.push_str("  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    for d in Direction::BOTH {
        let link = d.link(net);
        let (from, to) = d.hosts();
        let dst = match to {
            Host::Server => a.subnets.server,
            _ => a.subnets.client,
        };
        let src = match from {
            Host::Server => a.subnets.server,
            _ => a.subnets.client,
        };
        let n = d.as_str();
        let m = format!("iifname \"{}\" ip daddr {dst}", router_device(from));
        rules.push_str(&format!("    {m} counter name \"{n}_seen\"\n"));
        if link.loss_model == LossModel::Random && link.loss_percent > 0.0 {
            let below = (link.loss_percent / 100.0 * LOSS_SCALE).round() as u64;
            rules.push_str(&format!(
                "    {m} numgen random mod {} < {below} counter name \"{n}_dropped\" drop\n",
                LOSS_SCALE as u64
            ));
        }
        if let (Some(rate), Some(limit)) = (link.rate_mbit, link.queue_limit_bytes()) {
            let dev = router_device(to);
            // htb only sorts: both classes far above any rate here; the
            // tbf under class 1:1 is the limit. (This kernel has no prio.)
            run(
                "tc",
                &[
                    "-n", &rtr, "qdisc", "add", "dev", &dev, "root", "handle", "1:", "htb",
                    "default", "2",
                ],
            )?;
            for class in ["1:1", "1:2"] {
                run(
                    "tc",
                    &[
                        "-n", &rtr, "class", "add", "dev", &dev, "parent", "1:", "classid", class,
                        "htb", "rate", "100gbit", "quantum", "60000",
                    ],
                )?;
            }
            let rate_bits = format!("{}bit", (rate * 1e6).round() as u64);
            let burst = burst_bytes(rate).to_string();
            let limit = limit.to_string();
            run(
                "tc",
                &[
                    "-n", &rtr, "qdisc", "add", "dev", &dev, "parent", "1:1", "handle", "10:",
                    "tbf", "rate", &rate_bits, "burst", &burst, "limit", &limit,
                ],
            )?;
            let src = src.to_string();
            run(
                "tc",
                &[
                    "-n", &rtr, "filter", "add", "dev", &dev, "parent", "1:", "protocol", "ip",
                    "prio", "1", "u32", "match", "ip", "src", &src, "flowid", "1:1",
                ],
            )?;
        }
    }
    rules.push_str("  }\n}\n");
    nft_script(&rtr, &rules)
}

fn nft_script(ns: &str, script: &str) -> Result<(), NetworkError> {
    let command = format!("ip netns exec {ns} nft -f -");
    let fail = |message: String| NetworkError::Command {
        command: command.clone(),
        message,
    };
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    Ok(())
}

/// What the router counted for one direction, since the link was built.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Packets and IP bytes that entered the router towards the receiver.
    pub seen_packets: u64,
    pub seen_bytes: u64,
    /// Dropped by the random-loss rule.
    pub dropped_packets: u64,
    /// Dropped by the delay line's bursty loss.
    pub burst_dropped_packets: u64,
    /// Passed through the delay line.
    pub delayed_packets: u64,
    /// Sent by the rate limiter (link-layer bytes: IP + 14-byte Ethernet
    /// header, what tbf's rate counts) and dropped at its full queue.
    pub limiter_bytes: u64,
    pub limiter_packets: u64,
    pub limiter_drops: u64,
    /// The sending host's TCP segments sent and retransmitted (its
    /// namespace's /proc/net/snmp: every TCP connection of that host).
    pub tcp_out_segs: u64,
    pub tcp_retrans_segs: u64,
}

impl Counters {
    pub fn minus(&self, earlier: &Counters) -> Counters {
        Counters {
            seen_packets: self.seen_packets.saturating_sub(earlier.seen_packets),
            seen_bytes: self.seen_bytes.saturating_sub(earlier.seen_bytes),
            dropped_packets: self.dropped_packets.saturating_sub(earlier.dropped_packets),
            burst_dropped_packets: self
                .burst_dropped_packets
                .saturating_sub(earlier.burst_dropped_packets),
            delayed_packets: self.delayed_packets.saturating_sub(earlier.delayed_packets),
            limiter_bytes: self.limiter_bytes.saturating_sub(earlier.limiter_bytes),
            limiter_packets: self.limiter_packets.saturating_sub(earlier.limiter_packets),
            limiter_drops: self.limiter_drops.saturating_sub(earlier.limiter_drops),
            tcp_out_segs: self.tcp_out_segs.saturating_sub(earlier.tcp_out_segs),
            tcp_retrans_segs: self
                .tcp_retrans_segs
                .saturating_sub(earlier.tcp_retrans_segs),
        }
    }

    /// Packets the impairment dropped on purpose (random or bursty).
    pub fn lost(&self) -> u64 {
        self.dropped_packets + self.burst_dropped_packets
    }
}

/// Both directions' counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub at: Option<std::time::Instant>,
    pub up: Counters,
    pub down: Counters,
}

impl Snapshot {
    pub fn get(&self, d: Direction) -> &Counters {
        match d {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }
}

/// Read the router's counters now.
pub fn read(net: &Network) -> Result<Snapshot, NetworkError> {
    let rtr = net.namespace(Host::Router);
    let at = std::time::Instant::now();
    let text = run(
        "ip",
        &[
            "netns", "exec", &rtr, "nft", "-j", "list", "counters", "table", "ip", TABLE,
        ],
    )?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| NetworkError::Other(format!("nft -j output: {e}")))?;
    let counter = |name: &str| -> (u64, u64) {
        json["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("counter"))
            .find(|c| c["name"] == name)
            .map(|c| {
                (
                    c["packets"].as_u64().unwrap_or(0),
                    c["bytes"].as_u64().unwrap_or(0),
                )
            })
            .unwrap_or((0, 0))
    };
    let mut snap = Snapshot {
        at: Some(at),
        ..Snapshot::default()
    };
    for d in Direction::BOTH {
        let n = d.as_str();
        let (seen_packets, seen_bytes) = counter(&format!("{n}_seen"));
        let (dropped_packets, _) = counter(&format!("{n}_dropped"));
        let mut c = Counters {
            seen_packets,
            seen_bytes,
            dropped_packets,
            ..Counters::default()
        };
        if d.link(net).rate_mbit.is_some() {
            let dev = router_device(d.hosts().1);
            let text = run(
                "tc",
                &["-n", &rtr, "-s", "-j", "qdisc", "show", "dev", &dev],
            )?;
            let q: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| NetworkError::Other(format!("tc -j output: {e}")))?;
            if let Some(tbf) = q
                .as_array()
                .into_iter()
                .flatten()
                .find(|q| q["kind"] == "tbf")
            {
                c.limiter_bytes = tbf["bytes"].as_u64().unwrap_or(0);
                c.limiter_packets = tbf["packets"].as_u64().unwrap_or(0);
                c.limiter_drops = tbf["drops"].as_u64().unwrap_or(0);
            }
        }
        let snmp = super::run_in(&net.path(d.hosts().0), || {
            std::fs::read_to_string("/proc/thread-self/net/snmp")
        })
        .and_then(|r| r)
        .map_err(|source| NetworkError::Io {
            what: format!("reading the {} host's TCP counters", d.as_str()),
            source,
        })?;
        (c.tcp_out_segs, c.tcp_retrans_segs) = tcp_segments(&snmp);
        if let Some(dl) = &net.delay_line {
            let s = dl.counts(d);
            c.burst_dropped_packets = s.dropped;
            c.delayed_packets = s.passed;
        }
        match d {
            Direction::Up => snap.up = c,
            Direction::Down => snap.down = c,
        }
    }
    Ok(snap)
}

/// TCP's OutSegs and RetransSegs from /proc/net/snmp (a `Tcp:` line of
/// names, then one of values); zero where absent.
pub fn tcp_segments(snmp: &str) -> (u64, u64) {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return (0, 0);
    };
    let field = |want: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == want)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    (field("OutSegs"), field("RetransSegs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_segments_from_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
                    Tcp: 1 200 120000 -1 25 3 0 0 2 81234 90211 37 0 4 0\n\
                    Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(tcp_segments(snmp), (90211, 37));
        assert_eq!(tcp_segments("Udp: InDatagrams\nUdp: 5\n"), (0, 0));
    }
}
