//! sockets: the options a target set on its sockets (keep-alive, Nagle),
//! read by borrowing each socket with pidfd_getfd(2) while traffic flows.
//! Needs the same privilege as ptrace (root here); nothing is changed.
//!
//! Also the datagrams the kernel dropped at the target's UDP sockets
//! because their receive buffer was full ([`udp_drops`]), read from
//! /proc/PID/net/udp and udp6 (the target's own network namespace) for
//! the inodes of its socket descriptors.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::report::SocketSummary;

/// Why a target's sockets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SocketsError {
    #[error("listing /proc/{pid}/fd: {source}")]
    List { pid: u32, source: std::io::Error },
    #[error("pidfd_open({pid}): {source}")]
    Open { pid: u32, source: std::io::Error },
}

/// Count the target's connected TCP sockets, which of them have
/// SO_KEEPALIVE and TCP_NODELAY, which were accepted on `listen_port` and
/// which lead to `upstream_port`, and its UDP sockets.
pub fn inspect(
    pid: u32,
    listen_port: Option<u16>,
    upstream_port: Option<u16>,
) -> Result<SocketSummary, SocketsError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|source| SocketsError::List { pid, source })?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if raw < 0 {
        return Err(SocketsError::Open {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: a fresh fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let mut out = SocketSummary::default();
    for entry in dir.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .map(|l| l.to_string_lossy().starts_with("socket:["))
            .unwrap_or(false);
        let Some(target_fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // SAFETY: pidfd_getfd duplicates the target's fd into ours, or
        // fails (the fd may have closed meanwhile).
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
        if dup < 0 {
            // A socket closed since the listing is simply gone; any other
            // failure leaves a socket we know nothing about.
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EBADF) {
                out.unreadable += 1;
            }
            continue;
        }
        // SAFETY: a fresh fd that nothing else owns; closed on drop.
        let fd = unsafe { OwnedFd::from_raw_fd(dup as RawFd) };
        match int_opt(&fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) {
            Some(p) if p == libc::IPPROTO_TCP => {
                let Some(peer) = port(&fd, libc::getpeername) else {
                    continue;
                };
                out.tcp += 1;
                if upstream_port == Some(peer) {
                    out.upstream += 1;
                }
                if listen_port.is_some() && port(&fd, libc::getsockname) == listen_port {
                    out.inbound += 1;
                }
                // An option that cannot be read is unknown, not off.
                match int_opt(&fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE) {
                    Some(0) => {}
                    Some(_) => out.keepalive += 1,
                    None => out.keepalive_unknown += 1,
                }
                match int_opt(&fd, libc::IPPROTO_TCP, libc::TCP_NODELAY) {
                    Some(0) => {}
                    Some(_) => out.nodelay += 1,
                    None => out.nodelay_unknown += 1,
                }
            }
            Some(p) if p == libc::IPPROTO_UDP => out.udp += 1,
            _ => {}
        }
    }
    Ok(out)
}

/// The name under which each window's UDP drops sit beside the perf
/// counters (report.json `phases[].counters`).
pub const UDP_DROPS: &str = "udp_receive_drops";

/// Receive-queue entries dropped so far at the UDP sockets `pid` holds
/// (the kernel's per-socket `drops`: receive buffer full, or memory). An
/// entry is a datagram, or on a socket with UDP GRO a batch of them.
/// Counts die with their socket: a socket closed between two readings
/// takes its drops with it.
pub fn udp_drops(pid: u32) -> Result<u64, SocketsError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|source| SocketsError::List { pid, source })?;
    let inodes: std::collections::HashSet<u64> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| super::resources::socket_inode(l.to_str()?)?.parse().ok())
        .collect();
    let mut drops = 0;
    for table in ["udp", "udp6"] {
        // A kernel without IPv6 has no udp6.
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            drops += udp_table_drops(&text, &inodes);
        }
    }
    Ok(drops)
}

/// Sums the `drops` column of a /proc/net/udp table over the rows whose
/// inode is in `inodes`, each inode once (the kernel writes the table in
/// pieces and may list a socket twice).
fn udp_table_drops(text: &str, inodes: &std::collections::HashSet<u64>) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut drops = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        let (Some(inode), Some(d)) = (f.get(9), f.get(12)) else {
            continue;
        };
        let (Ok(inode), Ok(d)) = (inode.parse::<u64>(), d.parse::<u64>()) else {
            continue;
        };
        if inodes.contains(&inode) && seen.insert(inode) {
            drops += d;
        }
    }
    drops
}

fn int_opt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for the call and sized for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// The port of the socket's peer (getpeername) or own address
/// (getsockname); `None` when not connected or not IP.
fn port(fd: &OwnedFd, name: NameFn) -> Option<u16> {
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr and len are valid for the call.
    let rc = unsafe {
        name(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // Both sockaddr_in and sockaddr_in6 keep the port, in network order,
    // right after the family.
    match addr.ss_family as libc::c_int {
        libc::AF_INET | libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in(6),
            // whose port field is at the same offset.
            let sin =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(u16::from_be(sin.sin_port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    /// Sets a SOL_SOCKET int option that std has no setter for.
    fn set_int_opt(socket: &impl AsRawFd, name: libc::c_int, value: libc::c_int) {
        // SAFETY: valid fd and option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt {name}");
    }

    #[test]
    fn udp_drops_are_summed_for_our_inodes_once() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 111 2 0000000000000000 147201
  124: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 222 2 0000000000000000 5
  125: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 111 2 0000000000000000 147201
  126: 0100007F:A1B4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 333 2 0000000000000000 9
";
        let ours: std::collections::HashSet<u64> = [111, 333, 444].into_iter().collect();
        assert_eq!(udp_table_drops(text, &ours), 147_201 + 9);
    }

    /// A socket with the smallest receive buffer, sent more datagrams than
    /// it can hold and never read: every datagram is either queued or
    /// dropped, and the drops read back are exactly the ones not queued.
    #[test]
    fn udp_drops_count_what_a_full_buffer_refused() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // 1 byte: the kernel raises it to its minimum.
        set_int_opt(&rx, libc::SO_RCVBUF, 1);
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = udp_drops(std::process::id()).expect("read");
        let sent = 200;
        for _ in 0..sent {
            tx.send_to(&[7u8; 1000], rx.local_addr().expect("addr"))
                .expect("send");
        }
        rx.set_nonblocking(true).expect("nonblocking");
        let mut queued = 0;
        let mut buf = [0u8; 2000];
        while rx.recv(&mut buf).is_ok() {
            queued += 1;
        }
        let dropped = udp_drops(std::process::id()).expect("read") - before;
        assert!(queued > 0 && queued < sent, "queued {queued} of {sent}");
        assert_eq!(dropped, sent - queued);
    }

    #[test]
    #[ignore = "needs root (pidfd_getfd on a process): cargo xtask test runs it as root"]
    fn counts_this_process_sockets_and_their_options() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let lport = listener.local_addr().expect("addr").port();
        let before = inspect(std::process::id(), Some(lport), Some(lport)).expect("inspect");
        let a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (b, _) = listener.accept().expect("accept");
        a.set_nodelay(true).expect("nodelay");
        // SO_KEEPALIVE on b by hand: std has no setter.
        set_int_opt(&b, libc::SO_KEEPALIVE, 1);
        let _u = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let after = inspect(std::process::id(), Some(lport), Some(lport)).expect("inspect");
        // The listener is not connected and is not counted; `a` leads to
        // the port, `b` was accepted on it.
        assert_eq!(after.tcp - before.tcp, 2);
        assert_eq!((after.upstream, after.inbound), (1, 1));
        assert_eq!(after.nodelay - before.nodelay, 1);
        assert_eq!(after.keepalive - before.keepalive, 1);
        assert_eq!(after.udp - before.udp, 1);
        assert_eq!(
            (
                after.keepalive_unknown,
                after.nodelay_unknown,
                after.unreadable
            ),
            (0, 0, 0)
        );
        drop((a, b));
    }
}
