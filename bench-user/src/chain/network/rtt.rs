//! The round-trip time between the client and server hosts, measured as
//! the time of a TCP handshake (SYN out, SYN-ACK back: one round trip)
//! from the client namespace to a listener in the server namespace, with
//! the link idle.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use super::{run_in, Host, Network, NetworkError};

/// Handshakes timed per measurement.
pub const SAMPLES: usize = 21;

/// Round-trip times in seconds, sorted; lost handshakes (connect timeouts)
/// are left out.
pub fn measure(net: &Network) -> Result<Vec<f64>, NetworkError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| NetworkError::Io { what, source }
    };
    let server = SocketAddr::from((net.addresses.server, 0));
    let listener: TcpListener = run_in(&net.path(Host::Server), || TcpListener::bind(server))
        .and_then(|r| r)
        .map_err(io("binding the RTT listener in the server namespace"))?;
    let addr = listener.local_addr().map_err(io("RTT listener address"))?;
    listener.set_nonblocking(true).map_err(io("RTT listener"))?;
    let rtts = run_in(&net.path(Host::Client), || {
        let mut rtts = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let t = Instant::now();
            if TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok() {
                rtts.push(t.elapsed().as_secs_f64());
            }
            // Accepted and closed at once: the backlog stays empty.
            while listener.accept().is_ok() {}
            std::thread::sleep(Duration::from_millis(5));
        }
        rtts
    })
    .map_err(io("timing handshakes from the client namespace"))?;
    let mut rtts = rtts;
    rtts.sort_by(f64::total_cmp);
    Ok(rtts)
}
