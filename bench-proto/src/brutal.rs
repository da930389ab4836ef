//! Congestion control of the Hysteria protocols (v1 and 2): quinn's BBR
//! until the handshake has settled a send rate, Brutal (a fixed rate) from
//! then on.
//!
//! quinn picks a connection's controller before the handshake, but Hysteria
//! only knows the rate afterwards (v2: the `/auth` answer; v1: the server
//! hello). So every connection gets an [`Adaptive`] controller whose rate
//! cell is shared by all its clones; [`set_rate`] reaches it through
//! `Connection::congestion_state`, which hands out such a clone.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{BbrConfig, Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;

/// Length of one slot of the acknowledgement-rate window.
const SLOT: Duration = Duration::from_secs(1);
/// Slots kept: the ack rate is over the last few seconds.
const SLOTS: usize = 5;
/// Lowest ack rate compensated for: more loss than this is not made up by
/// sending faster (Hysteria's Brutal uses the same floor).
const MIN_ACK_RATE: f64 = 0.8;
/// Smallest window Brutal uses, in packets: quinn sends nothing while the
/// window is below one packet. quinn paces at about 1.25 × window / RTT, so
/// on paths where rate × RTT is below this (loopback) the floor, not the
/// rate, limits: a fixed rate below 4 packets per RTT cannot be kept.
pub const MIN_WINDOW_PACKETS: u64 = 4;

/// Builds [`Adaptive`] controllers.
#[derive(Debug, Default)]
pub struct AdaptiveFactory {
    bbr: Arc<BbrConfig>,
}

impl ControllerFactory for AdaptiveFactory {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Adaptive {
            bbr: Arc::clone(&self.bbr).build(now, current_mtu),
            rate: Arc::new(AtomicU64::new(0)),
            brutal: Brutal::new(current_mtu),
        })
    }
}

/// BBR while the shared rate is 0, Brutal at that rate (bytes per second)
/// once it is set.
pub struct Adaptive {
    bbr: Box<dyn Controller>,
    rate: Arc<AtomicU64>,
    brutal: Brutal,
}

#[derive(Clone)]
struct Brutal {
    mtu: u64,
    rtt: Option<Duration>,
    /// (acked, lost) bytes per slot, ring buffer.
    slots: [(u64, u64); SLOTS],
    slot_start: Option<Instant>,
    current: usize,
}

impl Brutal {
    fn new(mtu: u16) -> Brutal {
        Brutal {
            mtu: u64::from(mtu),
            rtt: None,
            slots: [(0, 0); SLOTS],
            slot_start: None,
            current: 0,
        }
    }

    fn slot(&mut self, now: Instant) -> &mut (u64, u64) {
        let start = *self.slot_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= SLOT {
            let steps = (elapsed.as_secs() as usize).min(SLOTS);
            for _ in 0..steps {
                self.current = (self.current + 1) % SLOTS;
                self.slots[self.current] = (0, 0);
            }
            self.slot_start = Some(now);
        }
        &mut self.slots[self.current]
    }

    fn ack_rate(&self) -> f64 {
        let (acked, lost) = self
            .slots
            .iter()
            .fold((0u64, 0u64), |(a, l), s| (a + s.0, l + s.1));
        if acked + lost == 0 {
            return 1.0;
        }
        (acked as f64 / (acked + lost) as f64).max(MIN_ACK_RATE)
    }

    /// Bytes in flight allowed: a round trip's worth of the rate, raised by
    /// the loss being made up for. quinn paces at about window / RTT.
    fn window(&self, rate: u64) -> u64 {
        let floor = MIN_WINDOW_PACKETS * self.mtu;
        let Some(rtt) = self.rtt else {
            return floor;
        };
        let w = rate as f64 * rtt.as_secs_f64() / self.ack_rate();
        (w as u64).max(floor)
    }
}

impl Adaptive {
    fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }
}

impl Controller for Adaptive {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.bbr.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.bbr.on_ack(now, sent, bytes, app_limited, rtt);
        self.brutal.rtt = Some(rtt.get());
        self.brutal.slot(now).0 += bytes;
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.bbr
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.bbr
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        self.brutal.slot(now).1 += lost_bytes;
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.bbr.on_mtu_update(new_mtu);
        self.brutal.mtu = u64::from(new_mtu);
    }

    fn window(&self) -> u64 {
        match self.rate() {
            0 => self.bbr.window(),
            rate => self.brutal.window(rate),
        }
    }

    fn metrics(&self) -> ControllerMetrics {
        match self.rate() {
            0 => self.bbr.metrics(),
            rate => {
                let mut m = ControllerMetrics::default();
                m.congestion_window = self.window();
                // What Brutal aims at, in bits per second as quinn reports.
                m.pacing_rate = Some(rate.saturating_mul(8));
                m
            }
        }
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Adaptive {
            bbr: self.bbr.clone_box(),
            rate: Arc::clone(&self.rate),
            brutal: self.brutal.clone(),
        })
    }

    fn initial_window(&self) -> u64 {
        self.bbr.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The Brutal rate of `conn` in bytes per second; `None` while it uses BBR
/// (or a controller that is not [`Adaptive`]).
pub fn rate(conn: &quinn::Connection) -> Option<u64> {
    match conn.congestion_state().into_any().downcast::<Adaptive>() {
        Ok(a) => Some(a.rate()).filter(|r| *r > 0),
        Err(_) => None,
    }
}

/// Switches `conn` to Brutal at `bytes_per_sec` (0: back to BBR). Returns
/// false if the connection does not use an [`Adaptive`] controller.
pub fn set_rate(conn: &quinn::Connection, bytes_per_sec: u64) -> bool {
    match conn.congestion_state().into_any().downcast::<Adaptive>() {
        Ok(a) => {
            a.rate.store(bytes_per_sec, Ordering::Relaxed);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brutal_window_follows_rate_rtt_and_loss() {
        let mut b = Brutal::new(1200);
        assert_eq!(b.window(1_000_000), MIN_WINDOW_PACKETS * 1200);
        b.rtt = Some(Duration::from_millis(100));
        let now = Instant::now();
        b.slot(now).0 += 1000;
        assert_eq!(b.window(10_000_000), 1_000_000);
        // 10% loss: the window grows to make up for it.
        b.slot(now).1 += 111;
        assert!(b.window(10_000_000) > 1_100_000);
        // Heavy loss is only made up for down to the floor.
        b.slot(now).1 += 100_000;
        assert_eq!(b.window(10_000_000), 1_250_000);
        // Old slots age out.
        let later = now + SLOT * (SLOTS as u32 + 1);
        b.slot(later);
        assert_eq!(b.ack_rate(), 1.0);
    }
}
