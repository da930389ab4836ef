//! What the machine lets the load generator hold: descriptors and local
//! ports. A level it cannot reach is reported with its reason before it is
//! tried, not discovered as a crash halfway.

/// Descriptors the runner keeps besides its connections (runtime, probes,
/// files, the sink's listener), a generous allowance.
pub const FD_HEADROOM: u64 = 256;

/// Local ports the kernel hands out to outgoing connections
/// (`net.ipv4.ip_local_port_range`; Linux's default range when unreadable).
pub fn local_port_count() -> usize {
    let (lo, hi) = crate::chain::ephemeral_ports();
    usize::from(hi - lo) + 1
}

/// The descriptor limit after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// Soft limit before.
    pub was: u64,
    /// Soft limit now (the hard limit, when the raise worked).
    pub now: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit.
/// Processes started afterwards (the endpoints) inherit it.
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(FdLimit {
        was,
        now: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Why `connections` held at once cannot be reached here, if they cannot:
/// the runner holds two descriptors per connection (generator and sink
/// ends), each relaying endpoint two (its two sockets); every connection
/// to the SOCKS5 port needs a local port of its own; a QUIC protocol
/// carries each connection as a stream, at most `stream_limit` at once.
pub fn level_limit(
    connections: usize,
    fd_soft_limit: u64,
    ports: usize,
    stream_limit: Option<(u64, &str)>,
) -> Option<String> {
    let n = connections as u64;
    let fds = 2 * n + FD_HEADROOM;
    if fds > fd_soft_limit {
        return Some(format!(
            "FD limit: {connections} connections need about {fds} descriptors in the runner and in each endpoint; RLIMIT_NOFILE is {fd_soft_limit} (raised to the hard limit)"
        ));
    }
    if connections > ports {
        return Some(format!(
            "port exhaustion: {connections} connections need more than the {ports} local ports of net.ipv4.ip_local_port_range"
        ));
    }
    if let Some((limit, what)) = stream_limit {
        if n > limit {
            return Some(format!(
                "stream limit: {connections} connections are more than the {limit} concurrent streams {what} allows"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_beyond_a_limit_name_it() {
        assert_eq!(level_limit(100, 1024, 28232, None), None);
        // 2 × 400 + 256 = 1056 > 1024.
        let e = level_limit(400, 1024, 28232, None).expect("over");
        assert!(
            e.starts_with("FD limit: 400 connections need about 1056"),
            "{e}"
        );
        let e = level_limit(30_000, 1 << 20, 28232, None).expect("over");
        assert!(e.starts_with("port exhaustion"), "{e}");
        let e =
            level_limit(2000, 1 << 20, 28232, Some((1024, "the endpoints' QUIC"))).expect("over");
        assert!(e.starts_with("stream limit: 2000"), "{e}");
        assert_eq!(level_limit(1024, 1 << 20, 28232, Some((1024, "x"))), None);
    }

    #[test]
    fn the_port_range_is_read() {
        let n = local_port_count();
        assert!((1..=65536).contains(&n), "{n}");
    }
}
