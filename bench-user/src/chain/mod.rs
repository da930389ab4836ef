//! chain: start, watch and stop the endpoint processes.
//!
//! `launch` turns a profile into command lines (reference endpoints, or any
//! other implementation with placeholders), `secrets` makes the run's
//! certificates and credentials; this file runs the processes.
//!
//! The endpoints are the profiled targets. Each runs in its own process
//! group (a Ctrl-C at the terminal reaches the runner only, which then stops
//! them in order) and dies with the runner if the runner is killed
//! (`PR_SET_PDEATHSIG`). Stopping is by process id: SIGTERM, a grace period,
//! then SIGKILL, and always a reap.

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

pub mod destination;
pub mod launch;
pub mod network;
pub mod secrets;

/// Which side of the chain an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SOCKS5 in, protocol out.
    Client,
    /// Protocol in, TCP out.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// How to tell that an endpoint has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ready {
    /// A TCP connect to its address succeeds.
    #[default]
    Tcp,
    /// Its UDP port is bound (our own bind of it fails with EADDRINUSE):
    /// QUIC servers, which answer nothing a plain probe could send.
    Udp,
}

/// How to start one endpoint.
#[derive(Debug, Clone)]
pub struct Launch {
    pub role: Role,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The address it listens on; started means accepting here.
    pub listen: SocketAddr,
    pub ready: Ready,
    /// The network namespace to run in (a file under /run/netns); `None`:
    /// the runner's own.
    pub netns: Option<PathBuf>,
}

/// A running endpoint.
#[derive(Debug)]
pub struct Endpoint {
    pub role: Role,
    pub pid: u32,
    pub program: PathBuf,
    pub listen: SocketAddr,
    pub ready: Ready,
    pub netns: Option<PathBuf>,
    pub log: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

/// Errors of starting or watching the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot start the {role} endpoint {program}: {source}")]
    Spawn {
        role: &'static str,
        program: String,
        source: io::Error,
    },
    #[error(
        "the {role} endpoint exited during start-up ({status}); its log {log} ends with: {tail}"
    )]
    ExitedAtStart {
        role: &'static str,
        status: String,
        log: String,
        tail: String,
    },
    #[error("the {role} endpoint did not accept on {addr} within {secs} s; see {log}")]
    NotAccepting {
        role: &'static str,
        addr: SocketAddr,
        secs: u64,
        log: String,
    },
    #[error("no free loopback port: {0}")]
    NoPort(io::Error),
    #[error("cannot create the log {path}: {source}")]
    Log { path: String, source: io::Error },
    #[error(transparent)]
    Destination(#[from] destination::DestinationError),
}

/// The endpoint processes of one run, stopped on drop.
#[derive(Debug, Default)]
pub struct Chain {
    endpoints: Vec<Endpoint>,
    /// REALITY's destination, served by the runner (protocol reality).
    destination: Option<destination::Destination>,
}

/// The ports the kernel hands out as source ports of outgoing connections
/// (`net.ipv4.ip_local_port_range`, inclusive; Linux's default when
/// unreadable).
pub fn ephemeral_ports() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let range: Option<(u16, u16)> = text.and_then(|t| {
        let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some((it.next()??, it.next()??))
    });
    match range {
        Some((lo, hi)) if hi >= lo => (lo, hi),
        _ => (32768, 60999),
    }
}

/// The lowest port [`free_port`] picks from.
const LISTEN_PORTS_FROM: u16 = 10_000;

/// A port on 127.0.0.1 free for both TCP and UDP; the sockets are closed
/// again, so the endpoint can bind it a moment later. Picked at random below
/// the ephemeral range: a port in it, freed again, can be taken as the
/// source port of any connect() on the machine before the endpoint binds it
/// (CI saw an endpoint fail with "Address already in use" while a parallel
/// test's load generator opened connections); below it, only another
/// explicit bind can. The kernel's pick when that range starts too low.
pub fn free_port() -> Result<SocketAddr, ChainError> {
    let (ephemeral_from, _) = ephemeral_ports();
    if ephemeral_from > LISTEN_PORTS_FROM {
        for _ in 0..64 {
            let port = rand::random_range(LISTEN_PORTS_FROM..ephemeral_from);
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let tcp = TcpListener::bind(addr);
            let udp = std::net::UdpSocket::bind(addr);
            if tcp.is_ok() && udp.is_ok() {
                return Ok(addr);
            }
        }
    }
    for _ in 0..32 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ChainError::NoPort)?;
        let addr = l.local_addr().map_err(ChainError::NoPort)?;
        if std::net::UdpSocket::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err(ChainError::NoPort(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both TCP and UDP",
    )))
}

impl Chain {
    pub fn new() -> Chain {
        Chain::default()
    }

    /// Serves REALITY's destination (a TLS 1.3 server with the run's
    /// certificate) on `addr` until the chain is dropped.
    pub fn serve_destination(
        &mut self,
        addr: SocketAddr,
        cert: &Path,
        key: &Path,
    ) -> Result<(), ChainError> {
        self.destination = Some(destination::Destination::start(addr, cert, key)?);
        Ok(())
    }

    /// Start one endpoint and wait until it accepts connections.
    /// Must be called from a thread that outlives the run: the death signal
    /// fires when the spawning *thread* exits.
    pub fn start(
        &mut self,
        launch: &Launch,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<&Endpoint, ChainError> {
        let log = log_dir.join(format!("{}.log", launch.role.as_str()));
        let log_err = |source| ChainError::Log {
            path: log.display().to_string(),
            source,
        };
        let out = File::create(&log).map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Opened here, entered in the child: open(2) is not for between
        // fork and exec, setns(2) is a plain syscall.
        let netns = match &launch.netns {
            Some(path) => Some(File::open(path).map_err(|source| ChainError::Spawn {
                role: launch.role.as_str(),
                program: format!(
                    "{} (namespace {})",
                    launch.program.display(),
                    path.display()
                ),
                source,
            })?),
            None => None,
        };
        let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| ChainError::Spawn {
            role: launch.role.as_str(),
            program: launch.program.display().to_string(),
            source,
        })?;
        drop(netns);
        self.endpoints.push(Endpoint {
            role: launch.role,
            pid: child.id(),
            program: launch.program.clone(),
            listen: launch.listen,
            ready: launch.ready,
            netns: launch.netns.clone(),
            log: log.clone(),
            child,
            exit: None,
        });
        let idx = self.endpoints.len() - 1;
        self.wait_accepting(idx, timeout)?;
        Ok(&self.endpoints[idx])
    }

    fn wait_accepting(&mut self, idx: usize, timeout: Duration) -> Result<(), ChainError> {
        let deadline = Instant::now() + timeout;
        loop {
            let ep = &mut self.endpoints[idx];
            if let Ok(Some(status)) = ep.child.try_wait() {
                ep.exit = Some(status);
                return Err(ChainError::ExitedAtStart {
                    role: ep.role.as_str(),
                    status: describe_exit(status),
                    log: ep.log.display().to_string(),
                    tail: log_tail(&ep.log),
                });
            }
            let (ready, listen) = (ep.ready, ep.listen);
            let check = move || match ready {
                Ready::Tcp => {
                    TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok()
                }
                Ready::Udp => std::net::UdpSocket::bind(listen)
                    .err()
                    .is_some_and(|e| e.kind() == io::ErrorKind::AddrInUse),
            };
            // Checked from inside the endpoint's namespace, where its
            // address is local and the link's impairments play no part.
            let up = match &ep.netns {
                Some(path) => network::run_in(path, check).unwrap_or(false),
                None => check(),
            };
            if up {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ChainError::NotAccepting {
                    role: ep.role.as_str(),
                    addr: ep.listen,
                    secs: timeout.as_secs(),
                    log: ep.log.display().to_string(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Endpoints that have exited on their own, with how they ended.
    pub fn exited(&mut self) -> Vec<(Role, u32, String)> {
        let mut out = Vec::new();
        for ep in &mut self.endpoints {
            if ep.exit.is_none() {
                if let Ok(Some(status)) = ep.child.try_wait() {
                    ep.exit = Some(status);
                }
            }
            if let Some(status) = ep.exit {
                out.push((ep.role, ep.pid, describe_exit(status)));
            }
        }
        out
    }

    /// The first endpoint that has exited on its own, with how it ended:
    /// what a pass polls to stop early.
    pub fn first_exited(&mut self) -> Option<(Role, String)> {
        self.exited()
            .into_iter()
            .next()
            .map(|(role, _, how)| (role, how))
    }

    /// Stop every endpoint (client first, so no new traffic reaches the
    /// server) and reap it. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        for ep in self.endpoints.iter_mut().rev() {
            if ep.exit.is_some() {
                continue;
            }
            if let Ok(Some(status)) = ep.child.try_wait() {
                ep.exit = Some(status);
                continue;
            }
            // pid_t is i32; our children's pids always fit.
            let pid = ep.pid as libc::pid_t;
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            loop {
                match ep.child.try_wait() {
                    Ok(Some(status)) => {
                        ep.exit = Some(status);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = ep.child.kill();
                        ep.exit = ep.child.wait().ok();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// "exit status 3" or "killed by signal 11 (SIGSEGV)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => format!("killed by signal {sig} ({})", signal_name(sig)),
        None => status.to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGINT => "SIGINT",
        libc::SIGTRAP => "SIGTRAP",
        _ => "signal",
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    if tail.is_empty() {
        "(nothing)".into()
    } else {
        tail.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoints' ports lie outside the range connect() draws source
    /// ports from, and are free for TCP and UDP when handed out.
    #[test]
    fn free_ports_lie_below_the_ephemeral_range() {
        let (from, to) = ephemeral_ports();
        assert!(from <= to);
        for _ in 0..100 {
            let addr = free_port().expect("port");
            if from > LISTEN_PORTS_FROM {
                assert!(
                    (LISTEN_PORTS_FROM..from).contains(&addr.port()),
                    "{addr} is not below {from}"
                );
            }
            let tcp = TcpListener::bind(addr);
            assert!(tcp.is_ok(), "{addr}: {tcp:?}");
            drop(tcp);
            assert!(std::net::UdpSocket::bind(addr).is_ok(), "{addr}");
        }
    }
}
