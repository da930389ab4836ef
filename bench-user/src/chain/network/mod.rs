//! chain::network: the chain's hosts in network namespaces of their own.
//!
//! Four namespaces per run, named `pp-<runner pid>-<host>`: `gen` (the load
//! generator and the sink, i.e. the runner's traffic threads), `cli` (the
//! client endpoint), `srv` (the server endpoint) and `rtr`, the router
//! joined to each of the other three by a veth pair. Nothing is created in
//! the runner's own namespace and no namespace has a route out of the
//! four, so the 198.18.0.0/15 addresses never leave them. Every device,
//! qdisc and nftables table lives inside a namespace and goes with it.
//!
//! Links, addresses, qdiscs and nftables rules are set with iproute2 (`ip`,
//! `tc`) and `nft`: the Rust netlink crates cover links and addresses but
//! not tbf/htb qdiscs or u32 filters, and nftables' own netlink
//! messages have no maintained builder; one set of tools for all of it
//! keeps each step readable as the command a person would type. The
//! namespace switches themselves are setns(2) on our own threads and, for
//! the endpoints, in the child before exec.
//!
//! Clean-up: [`Network`] deletes its namespaces on drop (success, error,
//! Ctrl-C); a run that was killed leaves namespaces whose pid no longer
//! runs, and [`sweep_stale`] removes them at the next start.

use std::{
    fs::File,
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
};

pub mod delay_line;
pub mod impair;
pub mod rtt;
pub mod settings;

pub use settings::{LinkSpec, LossModel, NetworkMode, NetworkSpec, Subnet, Subnets};

/// Prefix of every namespace (and the name of every device) we create.
pub const PREFIX: &str = "pp-";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The hosts of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Generator,
    Client,
    Server,
    Router,
}

impl Host {
    pub fn short(self) -> &'static str {
        match self {
            Host::Generator => "gen",
            Host::Client => "cli",
            Host::Server => "srv",
            Host::Router => "rtr",
        }
    }
}

/// Errors of building or tearing down the namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network: `{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("network: {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("network: {0}")]
    Other(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// Run one command of iproute2 or nft; its stderr is the error.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, NetworkError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetworkError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespace name of `host` for the runner with process id `pid`.
pub fn namespace_name(pid: u32, host: Host) -> String {
    format!("{PREFIX}{pid}-{}", host.short())
}

/// The path of a named namespace, for setns.
pub fn namespace_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Move the calling thread into the namespace at `path`.
pub fn enter(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    setns(&f)
}

fn setns(f: &File) -> io::Result<()> {
    // SAFETY: setns(2) on an open namespace file; it changes only the
    // calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run `f` on a thread of its own inside the namespace at `path`: sockets
/// it opens stay in that namespace after it returns.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<T> {
            enter(path)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread in namespace panicked")))
    })
}

/// The calling thread inside a namespace until dropped, then back where it
/// was (threads it starts meanwhile stay inside).
pub struct Entered {
    home: File,
}

impl Entered {
    pub fn new(path: &Path) -> io::Result<Entered> {
        let home = File::open("/proc/thread-self/ns/net")?;
        enter(path)?;
        Ok(Entered { home })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = setns(&self.home);
    }
}

/// Where each host is reached.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub subnets: Subnets,
    pub generator: Ipv4Addr,
    pub client: Ipv4Addr,
    pub server: Ipv4Addr,
}

impl Addresses {
    pub fn new(subnets: Subnets) -> Addresses {
        Addresses {
            subnets,
            generator: subnets.generator.host(2),
            client: subnets.client.host(2),
            server: subnets.server.host(2),
        }
    }
}

/// Namespaces of runners that no longer run (a killed run's), removed.
/// Returns their names.
pub fn sweep_stale() -> Result<Vec<String>, NetworkError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err(format!("reading {NETNS_DIR}"))(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        run("ip", &["netns", "delete", &name])?;
        removed.push(name);
    }
    Ok(removed)
}

/// The names of every namespace of ours that exists now.
pub fn ours() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// The router's device towards `host`.
pub fn router_device(host: Host) -> String {
    format!("{PREFIX}{}", host.short())
}

/// Every host's device towards the router.
pub const HOST_DEVICE: &str = "pp0";

/// One run's namespaces, links and impairments; removed on drop.
pub struct Network {
    pid: u32,
    pub addresses: Addresses,
    pub spec: NetworkSpec,
    created: Vec<String>,
    pub delay_line: Option<delay_line::DelayLine>,
    /// Notes for the report (e.g. stale namespaces removed at start).
    pub notes: Vec<String>,
}

impl Network {
    /// Build the namespaces for `spec` (validated) for this runner.
    pub fn create(spec: &NetworkSpec) -> Result<Network, NetworkError> {
        let subnets = spec
            .subnets()
            .map_err(|(f, m)| NetworkError::Other(format!("{f}: {m}")))?;
        let mut net = Network {
            pid: std::process::id(),
            addresses: Addresses::new(subnets),
            spec: spec.clone(),
            created: Vec::new(),
            delay_line: None,
            notes: Vec::new(),
        };
        for name in sweep_stale()? {
            net.notes
                .push(format!("removed namespace {name} left by a killed run"));
        }
        net.build()?;
        Ok(net)
    }

    pub fn namespace(&self, host: Host) -> String {
        namespace_name(self.pid, host)
    }

    pub fn path(&self, host: Host) -> PathBuf {
        namespace_path(&self.namespace(host))
    }

    fn build(&mut self) -> Result<(), NetworkError> {
        let rtr = self.namespace(Host::Router);
        for host in [Host::Router, Host::Generator, Host::Client, Host::Server] {
            let name = self.namespace(host);
            run("ip", &["netns", "add", &name])?;
            self.created.push(name.clone());
            run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        }
        // Forwarding on, and no reverse-path filter: packets the delay line
        // writes back arrive on its TUN device, not where their source is.
        run_in(&self.path(Host::Router), || -> io::Result<()> {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            std::fs::write("/proc/sys/net/ipv4/conf/all/rp_filter", "0")?;
            std::fs::write("/proc/sys/net/ipv4/conf/default/rp_filter", "0")
        })
        .and_then(|r| r)
        .map_err(io_err("enabling forwarding in the router"))?;
        let a = self.addresses;
        for (host, subnet) in [
            (Host::Generator, a.subnets.generator),
            (Host::Client, a.subnets.client),
            (Host::Server, a.subnets.server),
        ] {
            let ns = self.namespace(host);
            let dev = router_device(host);
            run(
                "ip",
                &[
                    "-n",
                    &rtr,
                    "link",
                    "add",
                    "name",
                    &dev,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    HOST_DEVICE,
                    "netns",
                    &ns,
                ],
            )?;
            let router_ip = format!("{}/{}", subnet.host(1), subnet.prefix);
            let host_ip = format!("{}/{}", subnet.host(2), subnet.prefix);
            run("ip", &["-n", &rtr, "addr", "add", &router_ip, "dev", &dev])?;
            run(
                "ip",
                &["-n", &ns, "addr", "add", &host_ip, "dev", HOST_DEVICE],
            )?;
            run("ip", &["-n", &rtr, "link", "set", &dev, "up"])?;
            run("ip", &["-n", &ns, "link", "set", HOST_DEVICE, "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &subnet.host(1).to_string(),
                ],
            )?;
            // Real packets on the client–server link, not 64 KB TCP or UDP
            // (QUIC's UDP_SEGMENT) super-packets: tbf holds a rate packet
            // by packet, and loss drops one packet, not a burst of 40.
            if host != Host::Generator {
                for (n, d) in [(&rtr, dev.as_str()), (&ns, HOST_DEVICE)] {
                    run(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            n,
                            "ethtool",
                            "-K",
                            d,
                            "tso",
                            "off",
                            "gso",
                            "off",
                            "gro",
                            "off",
                            "tx-udp-segmentation",
                            "off",
                            "tx-gso-list",
                            "off",
                        ],
                    )?;
                }
            }
        }
        impair::apply(self)?;
        if self.spec.up.needs_delay_line() || self.spec.down.needs_delay_line() {
            self.delay_line = Some(delay_line::DelayLine::start(self)?);
        }
        Ok(())
    }

    /// Remove everything: stop the delay line, delete the namespaces (their
    /// devices, qdiscs and tables go with them). Idempotent.
    pub fn teardown(&mut self) -> Result<(), NetworkError> {
        if let Some(d) = self.delay_line.as_mut() {
            d.stop();
        }
        let mut first_error = None;
        while let Some(name) = self.created.pop() {
            if let Err(e) = run("ip", &["netns", "delete", &name]) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
