//! The measurement window hooks.

use super::meter::LiveCounters;

/// Told when the measured window of a phase opens and closes.
///
/// The runner uses it to switch probes on for exactly the traffic that is
/// counted. [`run_phase`](super::run_phase) calls `open` once when the warm-up
/// has ended (before it starts counting) and `close` once when the measured
/// window has ended (after it stops counting, before the connections are
/// drained). If a phase fails or is cancelled after `open`, `close` is still
/// called, once; if it fails before, neither is. Both are called from the task
/// that runs the phase, so they should return quickly.
pub trait Window: Send + Sync {
    /// The measured window starts now.
    fn open(&self);
    /// The measured window has ended.
    fn close(&self);
    /// The phase's counters, once, before the window opens: for the live
    /// view, which reads them while the phase runs.
    fn counting(&self, _counters: &LiveCounters) {}
}

/// A [`Window`] that does nothing, for phases without probes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWindow;

impl Window for NoWindow {
    fn open(&self) {}
    fn close(&self) {}
}

/// The one place that calls a phase's [`Window`]: `open` at most once, `close`
/// only after `open` and at most once, also when the phase is dropped midway.
pub(crate) struct WindowCalls<'a> {
    window: &'a dyn Window,
    opened: bool,
    closed: bool,
}

impl<'a> WindowCalls<'a> {
    pub(crate) fn new(window: &'a dyn Window) -> Self {
        WindowCalls {
            window,
            opened: false,
            closed: false,
        }
    }

    pub(crate) fn open(&mut self) {
        if !self.opened {
            self.opened = true;
            self.window.open();
        }
    }

    pub(crate) fn close(&mut self) {
        if self.opened && !self.closed {
            self.closed = true;
            self.window.close();
        }
    }
}

impl Drop for WindowCalls<'_> {
    fn drop(&mut self) {
        self.close();
    }
}
