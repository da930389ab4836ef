//! A small bounded pool of relay buffers, for relay mode `pooled`.
//!
//! Why our own type and not a crate: the pool must be bounded, keyed by the
//! buffer size in use, and must count its hits and misses so that tests and
//! profiles can show that steady state allocates nothing. A `Mutex<Vec<_>>`
//! does all of that in a few lines; the lock is held for one push or pop per
//! read, and it keeps the crate free of another dependency.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many idle buffers a pool keeps; more are dropped when returned. At the
/// default 64 KiB that is 4 MiB, enough for 32 connections both ways.
pub const DEFAULT_POOL_CAPACITY: usize = 64;

/// Idle buffers shared by the relays of one endpoint.
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    discarded: AtomicU64,
}

/// What a [`BufferPool`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Takes served by an idle buffer.
    pub hits: u64,
    /// Takes that found no idle buffer of the size asked for: the caller
    /// allocated one.
    pub misses: u64,
    /// Buffers dropped on return: the pool was full, or the size was stale.
    pub discarded: u64,
}

impl BufferPool {
    /// An empty pool that keeps at most `capacity` idle buffers.
    pub fn new(capacity: usize) -> BufferPool {
        BufferPool {
            idle: Mutex::new(Vec::new()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// An idle buffer of exactly `size` bytes, or `None` (a miss) when there
    /// is none; the caller then allocates one and may [`put`](Self::put) it
    /// back later.
    #[inline(never)]
    pub fn take(&self, size: usize) -> Option<Vec<u8>> {
        let found = self.lock().pop();
        match found {
            Some(buf) if buf.len() == size => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(buf)
            }
            stale => {
                // A buffer of another size is left from before a change of
                // relay.buffer_size; it is not worth keeping.
                if stale.is_some() {
                    self.discarded.fetch_add(1, Ordering::Relaxed);
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Returns `buf` for reuse, or drops it when the pool is full.
    #[inline(never)]
    pub fn put(&self, buf: Vec<u8>) {
        let mut idle = self.lock();
        if idle.len() < self.capacity {
            idle.push(buf);
        } else {
            drop(idle);
            self.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counters since the pool was made.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }

    /// Idle buffers held now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while holding the lock cannot leave the Vec half-changed
        // (push and pop are the only operations), so poison is harmless.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(DEFAULT_POOL_CAPACITY)
    }
}

// By hand: the derived Debug would print every idle buffer's bytes.
impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("capacity", &self.capacity)
            .field("idle", &self.idle())
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_bounded_and_counts() {
        let pool = BufferPool::new(2);
        assert_eq!(pool.take(8), None);
        pool.put(vec![1; 8]);
        pool.put(vec![2; 8]);
        pool.put(vec![3; 8]); // over capacity: dropped
        assert_eq!(pool.idle(), 2);
        assert_eq!(pool.take(8).map(|b| b.len()), Some(8));
        // A stale size is dropped, not handed out.
        assert_eq!(pool.take(16), None);
        assert_eq!(pool.idle(), 0);
        assert_eq!(
            pool.stats(),
            PoolStats {
                hits: 1,
                misses: 2,
                discarded: 2
            }
        );
    }
}
