//! Timeouts: every network wait is bounded by `io_timeout` of no progress.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::error::DriveError;

/// One bounded wait: `fut` must finish within `limit`.
pub(crate) async fn timed<T>(
    limit: Duration,
    context: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T, DriveError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(DriveError::io(context, e)),
        Err(_) => Err(DriveError::Timeout {
            context: context.to_string(),
            after: limit,
        }),
    }
}

/// The last time a connection moved a byte, in either direction. Readers and
/// writers of one connection share it, so a connection that is legitimately
/// idle one way (the reader of an `up` stream) is not timed out as long as the
/// other way moves.
pub(crate) struct Progress {
    base: Instant,
    last_ns: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
        }
    }

    /// Notes progress now.
    pub(crate) fn touch(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Resolves once nothing has progressed for `limit`.
    pub(crate) async fn stalled(&self, limit: Duration) {
        loop {
            let last = self.base + Duration::from_nanos(self.last_ns.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Runs `fut` until it finishes or `progress` stalls for `limit`.
pub(crate) async fn guarded<T, E>(
    progress: &Progress,
    limit: Duration,
    context: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    E: From<StallError>,
{
    tokio::select! {
        r = fut => r,
        _ = progress.stalled(limit) => Err(E::from(StallError {
            context: context.to_string(),
            after: limit,
        })),
    }
}

/// A stall seen by [`guarded`].
#[derive(Debug)]
pub(crate) struct StallError {
    pub(crate) context: String,
    pub(crate) after: Duration,
}

impl From<StallError> for DriveError {
    fn from(s: StallError) -> Self {
        DriveError::Timeout {
            context: s.context,
            after: s.after,
        }
    }
}

impl From<StallError> for String {
    fn from(s: StallError) -> Self {
        format!("{}: no progress for {:?}", s.context, s.after)
    }
}
