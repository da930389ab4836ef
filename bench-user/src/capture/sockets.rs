//! sockets: the options a target set on its sockets (keep-alive, Nagle),
//! read by borrowing each socket with pidfd_getfd(2) while traffic flows.
//! Needs the same privilege as ptrace (root here); nothing is changed.

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
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option value.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&b),
                libc::SOL_SOCKET,
                libc::SO_KEEPALIVE,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
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
