//! The ways a phase can fail.

use std::io;
use std::time::Duration;

use super::result::PhaseResult;
use super::socks5::Socks5Error;

/// Why [`run_phase`](super::run_phase) did not return a clean result.
///
/// Every variant except [`DriveError::Integrity`] means the phase produced no
/// measurement. `Integrity` carries the complete result, so that the caller can
/// still write the report before failing the run.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The phase options are out of range.
    #[error("invalid phase options: {0}")]
    InvalidOptions(String),
    /// The SOCKS5 server refused or botched the handshake.
    #[error("{context}: {source}")]
    Socks5 {
        /// Which connection and which step.
        context: String,
        /// What the server did.
        source: Socks5Error,
    },
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// Which connection and which step.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A network wait made no progress for `io_timeout`.
    #[error("{context}: no progress for {after:?} (io_timeout)")]
    Timeout {
        /// Which connection and which step.
        context: String,
        /// The `io_timeout` that ran out.
        after: Duration,
    },
    /// The far side broke the traffic protocol (for example, closed the
    /// connection before the end of the phase).
    #[error("{context}: {message}")]
    Protocol {
        /// Which connection and which step.
        context: String,
        /// What went wrong.
        message: String,
    },
    /// The cancellation token fired; all connections were closed.
    #[error("phase cancelled")]
    Cancelled,
    /// Payload was lost, added or corrupted on at least one connection. The
    /// result is complete, with `integrity.status == Mismatch` and one line per
    /// bad connection in `integrity.mismatches`.
    #[error("{}", integrity_message(.0))]
    Integrity(Box<PhaseResult>),
    /// A bug in the driver itself (a task panicked, a histogram could not be
    /// built).
    #[error("internal error: {0}")]
    Internal(String),
}

fn integrity_message(r: &PhaseResult) -> String {
    let n = r.integrity.mismatches.len();
    let first = r
        .integrity
        .mismatches
        .first()
        .map(String::as_str)
        .unwrap_or("(no detail)");
    format!(
        "integrity check failed on {n} of {} connections: {first}{}",
        r.integrity.connections_checked,
        if n > 1 { " (and more)" } else { "" }
    )
}

impl DriveError {
    /// Prefixes the context of the error, e.g. with `connection 3`.
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        match &mut self {
            DriveError::Socks5 { context, .. }
            | DriveError::Io { context, .. }
            | DriveError::Timeout { context, .. }
            | DriveError::Protocol { context, .. } => {
                *context = format!("{prefix}: {context}");
            }
            _ => {}
        }
        self
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        DriveError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn protocol(context: impl Into<String>, message: impl Into<String>) -> Self {
        DriveError::Protocol {
            context: context.into(),
            message: message.into(),
        }
    }
}
