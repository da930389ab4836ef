//! REALITY's destination: the TLS 1.3 server a REALITY server poses as.
//!
//! A REALITY server hands every ClientHello that does not authenticate to
//! its destination, and shoes's server also forwards the authenticated
//! ones and waits for the destination's ServerHello before it answers
//! them itself. In a real deployment that is some web site across the
//! network; here the runner serves it, beside the sink, so that its
//! handshakes are not charged to the profiled server. It completes a TLS
//! 1.3 handshake (rustls on ring, the run's certificate for localhost) and
//! closes with close_notify.
//!
//! Like a web site, it sends a chain: the run's certificate and an
//! intermediate (a second, unrelated self-signed certificate made at
//! start). shoes's server takes a destination's flight as complete only
//! with six records or a first encrypted record over 512 bytes; rustls
//! sends one encrypted record, which with the run's lone P-256
//! certificate stays under 512 bytes, and shoes then falls back.
//!
//! Loopback only: in `network.mode = "namespaces"` the server's
//! `localhost` is its own namespace's, where this listener is not.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long one destination connection may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the destination could not start.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("REALITY destination: binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("REALITY destination: the run's certificate: {0}")]
    Tls(String),
}

/// A running destination; stopped (listener closed, thread joined) when
/// dropped.
#[derive(Debug)]
pub struct Destination {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Destination {
    /// Serves TLS 1.3 with `cert`/`key` (PEM) on `addr`.
    pub fn start(
        addr: SocketAddr,
        cert: &Path,
        key: &Path,
    ) -> Result<Destination, DestinationError> {
        let config = Arc::new(server_config(cert, key)?);
        let listener =
            TcpListener::bind(addr).map_err(|source| DestinationError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| DestinationError::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("reality-dest".into())
            .spawn(move || accept_loop(listener, config, flag))
            .map_err(|source| DestinationError::Bind { addr, source })?;
        Ok(Destination {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// TLS 1.3 with the run's certificate and key, and an intermediate.
fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, DestinationError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: &dyn std::fmt::Display| DestinationError::Tls(e.to_string());
    let mut chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let intermediate =
        bench_proto::pki::self_signed(&["intermediate.protoprof.test"]).map_err(|e| tls(&e))?;
    chain.push(
        CertificateDer::from_pem_slice(intermediate.cert_pem.as_bytes()).map_err(|e| tls(&e))?,
    );
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(&e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))
}

fn accept_loop(listener: TcpListener, config: Arc<rustls::ServerConfig>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((tcp, _)) => {
                let config = Arc::clone(&config);
                // Short-lived and few (one per REALITY handshake): a thread
                // each keeps this simple; they end within the timeout.
                let _ = thread::Builder::new()
                    .name("reality-dest-conn".into())
                    .spawn(move || {
                        let _ = serve(tcp, config);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// One connection: the handshake, then close_notify.
fn serve(mut tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(CONNECTION_TIMEOUT))?;
    tcp.set_write_timeout(Some(CONNECTION_TIMEOUT))?;
    let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    tcp.flush()
}

impl Drop for Destination {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rustls client trusting the run's certificate completes a
    /// handshake with the destination and reads its close_notify.
    #[test]
    fn a_tls_client_completes_a_handshake() {
        let secrets = crate::chain::secrets::Secrets::create().expect("secrets");
        let port = crate::chain::free_port().expect("port");
        let dest = Destination::start(port, &secrets.cert, &secrets.key).expect("starts");
        let config = bench_proto::pki::client_config(&secrets.cert, &[]).expect("client config");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut tcp = TcpStream::connect(dest.addr()).expect("connects");
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).expect("handshake");
        }
        let mut rest = Vec::new();
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        io::Read::read_to_end(&mut stream, &mut rest).expect("clean close");
        assert!(rest.is_empty());
        drop(dest);
        assert!(
            TcpStream::connect(port).is_err(),
            "the listener outlived its handle"
        );
    }
}
