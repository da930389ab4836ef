//! A thread that waits on a probe's ring buffer and drains it as records
//! arrive: for the records the runner must act on while the targets live
//! (a child's mappings are read at its fork; stack copies are unwound
//! against the mappings of the moment). Dropping the reader stops the
//! thread and joins it.

use std::{
    os::fd::RawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

pub(super) struct RingReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RingReader {
    /// Start thread `name`: it waits until ring `fd` has records (or
    /// `poll_ms` pass), then calls `drain`. `drain` must own the ring (an
    /// `Arc` of it), so that `fd` stays open as long as the thread runs.
    pub(super) fn start(
        name: &str,
        fd: RawFd,
        poll_ms: i32,
        mut drain: impl FnMut() + Send + 'static,
    ) -> std::io::Result<RingReader> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut pfd = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; `drain` holds the ring,
                        // and with it `fd`, for as long as this thread runs.
                        unsafe { libc::poll(&mut pfd, 1, poll_ms) };
                        drain();
                    }
                })?
        };
        Ok(RingReader {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
