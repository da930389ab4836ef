//! The accept loop every endpoint side runs: one task per connection, one
//! stderr line per failed connection, and a listener that outlives them all.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Pause after an accept error such as EMFILE, which would otherwise repeat
/// at once in a busy loop until some connection closes.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections forever and runs `handle` for each in its own task.
///
/// `who` prefixes every log line (e.g. `tcp server`). Returns only when the
/// listener itself is unusable.
pub(crate) async fn serve<F, Fut, E>(
    listener: TcpListener,
    who: &'static str,
    handle: F,
) -> io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if listener_is_broken(&e) => return Err(e),
            // A client that gave up while queued; nothing to report.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                eprintln!("{who}: accept: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Proxied traffic includes small request/response exchanges; Nagle
        // would add delay to them and to every protocol handshake.
        if let Err(e) = stream.set_nodelay(true) {
            log_failure(who, peer, format_args!("setting TCP_NODELAY: {e}"));
            continue;
        }
        let conn = handle(stream);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log_failure(who, peer, e);
            }
        });
    }
}

fn log_failure(who: &str, peer: SocketAddr, what: impl Display) {
    eprintln!("{who}: connection from {peer}: {what}");
}

/// Errors after which accept() would fail forever.
fn listener_is_broken(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
    )
}
