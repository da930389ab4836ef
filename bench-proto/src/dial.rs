//! The server side's way out: resolving a target and connecting to it, as
//! the QUIC protocols' servers (tuic, hysteria2) do for TCP and UDP relays.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::addr::TargetAddr;

/// The first address `target` resolves to.
pub(crate) async fn resolve(target: &TargetAddr) -> std::io::Result<SocketAddr> {
    match target {
        TargetAddr::Ip(sa) => Ok(*sa),
        TargetAddr::Domain(name, port) => tokio::net::lookup_host((name.as_str(), *port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::HostUnreachable, "no address")),
    }
}

/// Connects to `target`, trying each resolved address in turn.
pub(crate) async fn connect(target: &TargetAddr) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match target {
        TargetAddr::Ip(sa) => vec![*sa],
        TargetAddr::Domain(name, port) => tokio::net::lookup_host((name.as_str(), *port))
            .await?
            .collect(),
    };
    let mut last = std::io::Error::new(
        std::io::ErrorKind::HostUnreachable,
        "name resolved to no address",
    );
    for sa in addrs {
        match TcpStream::connect(sa).await {
            Ok(s) => {
                // Small request/response exchanges go through the chain too.
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
