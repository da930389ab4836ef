//! The `[network]` section of a profile: where the hosts live and what the
//! client–server link does to packets, each direction on its own.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where the chain's hosts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Everything on 127.0.0.1 in the runner's own namespace.
    #[default]
    Loopback,
    /// Load generator and sink, client endpoint and server endpoint each in
    /// a network namespace of its own, joined through a router namespace.
    Namespaces,
}

/// `[network]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub mode: NetworkMode,
    #[serde(default)]
    pub addresses: AddressesSpec,
    /// The client → server direction of the client–server link.
    #[serde(default)]
    pub up: LinkSpec,
    /// The server → client direction.
    #[serde(default)]
    pub down: LinkSpec,
}

/// One subnet per host link, all inside 198.18.0.0/15 (RFC 2544's
/// benchmarking range); the router takes the first address, the host the
/// second.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddressesSpec {
    #[serde(default = "default_generator")]
    pub generator: String,
    #[serde(default = "default_client")]
    pub client: String,
    #[serde(default = "default_server")]
    pub server: String,
}

impl Default for AddressesSpec {
    fn default() -> Self {
        AddressesSpec {
            generator: default_generator(),
            client: default_client(),
            server: default_server(),
        }
    }
}

fn default_generator() -> String {
    "198.18.1.0/24".into()
}
fn default_client() -> String {
    "198.18.2.0/24".into()
}
fn default_server() -> String {
    "198.18.3.0/24".into()
}

/// How random loss is spread over packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LossModel {
    /// Each packet dropped on its own with the set probability (nftables).
    #[default]
    Random,
    /// Gilbert–Elliott: a good state that drops nothing and a bad state
    /// that drops everything, with mean bad-run `burst_packets` (delay line).
    Bursty,
}

/// What one direction of the client–server link does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One-way delay added by the delay line, milliseconds.
    #[serde(default)]
    pub delay_ms: f64,
    /// Each packet's delay drawn uniformly from delay ± jitter (packets
    /// are never reordered: a packet leaves no earlier than the one before).
    #[serde(default)]
    pub jitter_ms: f64,
    /// Token-bucket rate limit, Mbit/s (10^6 bit/s) of IP packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_mbit: Option<f64>,
    /// Share of packets dropped, percent.
    #[serde(default)]
    pub loss_percent: f64,
    #[serde(default)]
    pub loss_model: LossModel,
    /// Bursty loss: mean length of a run of lost packets.
    #[serde(default = "default_burst")]
    pub burst_packets: f64,
    /// The rate limiter's queue, bytes (default: 100 ms at the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_bytes: Option<u64>,
}

fn default_burst() -> f64 {
    4.0
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            delay_ms: 0.0,
            jitter_ms: 0.0,
            rate_mbit: None,
            loss_percent: 0.0,
            loss_model: LossModel::Random,
            burst_packets: default_burst(),
            queue_bytes: None,
        }
    }
}

impl LinkSpec {
    /// Whether this direction changes anything.
    pub fn impaired(&self) -> bool {
        *self != LinkSpec::default()
    }

    /// Whether packets of this direction pass through the delay line.
    pub fn needs_delay_line(&self) -> bool {
        self.delay_ms > 0.0
            || self.jitter_ms > 0.0
            || (self.loss_model == LossModel::Bursty && self.loss_percent > 0.0)
    }

    /// The tbf queue: as set, or 100 ms at the rate (at least 64 KiB).
    pub fn queue_limit_bytes(&self) -> Option<u64> {
        let rate = self.rate_mbit?;
        Some(
            self.queue_bytes
                .unwrap_or_else(|| ((rate * 1e6 / 8.0 * 0.1) as u64).max(64 * 1024)),
        )
    }
}

/// An IPv4 subnet written `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The `n`th address of the subnet (1: the router's, 2: the host's).
    pub fn host(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    pub fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network)
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a subnet; write e.g. \"198.18.2.0/24\"");
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = addr.trim().parse().map_err(|_| bad())?;
        let prefix: u8 = len.trim().parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let subnet = Subnet { network, prefix };
        if u32::from(network) & !subnet.mask() != 0 {
            return Err(format!(
                "{s:?} has host bits set; write its network address, e.g. \"{}/{prefix}\"",
                Ipv4Addr::from(u32::from(network) & subnet.mask())
            ));
        }
        Ok(subnet)
    }
}

/// RFC 2544's benchmarking range.
pub const BENCHMARK_RANGE: Subnet = Subnet {
    network: Ipv4Addr::new(198, 18, 0, 0),
    prefix: 15,
};

/// The three host subnets, parsed.
#[derive(Debug, Clone, Copy)]
pub struct Subnets {
    pub generator: Subnet,
    pub client: Subnet,
    pub server: Subnet,
}

impl NetworkSpec {
    /// The host subnets; only valid after [`NetworkSpec::validate`].
    pub fn subnets(&self) -> Result<Subnets, (String, String)> {
        let parse = |name: &str, text: &str| -> Result<Subnet, (String, String)> {
            let field = format!("network.addresses.{name}");
            let s: Subnet = text.parse().map_err(|m| (field.clone(), m))?;
            if !(15..=30).contains(&s.prefix) || !BENCHMARK_RANGE.contains(s.network) {
                return Err((
                    field,
                    format!("{s} is outside 198.18.0.0/15 or not /15 to /30; use a subnet of the benchmarking range, e.g. \"198.18.2.0/24\""),
                ));
            }
            Ok(s)
        };
        let a = &self.addresses;
        Ok(Subnets {
            generator: parse("generator", &a.generator)?,
            client: parse("client", &a.client)?,
            server: parse("server", &a.server)?,
        })
    }

    /// Refuse impossible settings: (field, what to write instead).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let s = self.subnets()?;
        let pairs = [
            ("generator", s.generator, "client", s.client),
            ("generator", s.generator, "server", s.server),
            ("client", s.client, "server", s.server),
        ];
        for (an, a, bn, b) in pairs {
            if a.overlaps(b) {
                return Err((
                    format!("network.addresses.{bn}"),
                    format!("{b} overlaps network.addresses.{an} ({a}); give each host a subnet of its own"),
                ));
            }
        }
        for (dir, link) in [("up", &self.up), ("down", &self.down)] {
            let f = |name: &str| format!("network.{dir}.{name}");
            if !(0.0..=10_000.0).contains(&link.delay_ms) {
                return Err((f("delay_ms"), "use 0 to 10000 milliseconds".into()));
            }
            if !(0.0..=link.delay_ms).contains(&link.jitter_ms) {
                return Err((
                    f("jitter_ms"),
                    "use 0 up to delay_ms (a packet's delay is delay ± jitter, never negative)"
                        .into(),
                ));
            }
            if let Some(rate) = link.rate_mbit {
                if !(0.1..=100_000.0).contains(&rate) {
                    return Err((
                        f("rate_mbit"),
                        "use 0.1 to 100000 Mbit/s (leave it out for no limit)".into(),
                    ));
                }
            }
            if !(0.0..=100.0).contains(&link.loss_percent) {
                return Err((f("loss_percent"), "use 0 to 100 percent".into()));
            }
            if link.loss_model == LossModel::Bursty
                && !(1.0..=10_000.0).contains(&link.burst_packets)
            {
                return Err((
                    f("burst_packets"),
                    "use a mean burst of 1 to 10000 packets".into(),
                ));
            }
            if link.loss_model == LossModel::Bursty && link.loss_percent >= 100.0 {
                return Err((
                    f("loss_percent"),
                    "bursty loss needs a share below 100 percent".into(),
                ));
            }
            if let Some(q) = link.queue_bytes {
                if link.rate_mbit.is_none() {
                    return Err((
                        f("queue_bytes"),
                        "the queue belongs to the rate limit; set rate_mbit too or remove it"
                            .into(),
                    ));
                }
                if !(1514..=1 << 30).contains(&q) {
                    return Err((f("queue_bytes"), "use 1514 to 1073741824 bytes".into()));
                }
            }
            if self.mode == NetworkMode::Loopback && link.impaired() {
                return Err((
                    format!("network.{dir}"),
                    "impairments need separate hosts; set network.mode = \"namespaces\"".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let a: Subnet = "198.18.2.0/24".parse().expect("subnet");
        assert_eq!(a.host(1), Ipv4Addr::new(198, 18, 2, 1));
        assert_eq!(a.host(2), Ipv4Addr::new(198, 18, 2, 2));
        let b: Subnet = "198.18.0.0/16".parse().expect("subnet");
        assert!(a.overlaps(b) && b.overlaps(a));
        let c: Subnet = "198.18.3.0/24".parse().expect("subnet");
        assert!(!a.overlaps(c));
        assert!("198.18.2.1/24"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("\"198.18.2.0/24\""));
        assert!("nope".parse::<Subnet>().is_err());
    }

    #[test]
    fn default_queue_is_100_ms_at_the_rate() {
        let l = LinkSpec {
            rate_mbit: Some(100.0),
            ..LinkSpec::default()
        };
        assert_eq!(l.queue_limit_bytes(), Some(1_250_000));
        assert_eq!(LinkSpec::default().queue_limit_bytes(), None);
    }
}
