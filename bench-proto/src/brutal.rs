//! Congestion control of the Hysteria protocols (v1 and 2): quinn's BBR
//! until the handshake has settled a send rate, Brutal (a fixed rate) from
//! then on.
//!
//! quinn picks a connection's controller before the handshake, but Hysteria
//! only knows the rate afterwards (v2: the `/auth` answer; v1: the server
//! hello). So every connection gets an [`Adaptive`] controller whose rate
//! cell is shared by all its clones; [`set_rate`] reaches it through
//! `Connection::congestion_state`, which hands out such a clone.
//!
//! Hysteria's Brutal paces at the rate and caps the bytes in flight at
//! twice the bandwidth-delay product. quinn has no pacing hook: its pacer
//! runs at 1.25 × window / smoothed RTT, so a window of rate × RTT is both
//! the pacing rate and the cap, and on a path whose round trip lasts a few
//! packets (loopback: 4–8) every late acknowledgement stalls the sender —
//! that held hysteria1 at about 0.71 of its rate
//! (docs/case-studies/hysteria1.md). Here the window carries the rate
//! itself: it is the bytes in flight plus a token bucket filled at the
//! rate, capped at twice a round trip's worth, so quinn sends exactly as
//! the bucket allows and its own pacer only smooths the bursts.

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
/// Smallest cap on the bytes in flight, in packets: the cap is two round
/// trips at the rate, which on loopback is a handful of packets.
pub const MIN_WINDOW_PACKETS: u64 = 4;
/// The token bucket holds a millisecond at the send rate, at least 10
/// packets (quic-go's pacer, which Hysteria's Brutal uses, bursts 10).
/// Less loses the rate: tokio's timers fire at 1 ms granularity and a busy
/// machine runs the connection's task as late, and tokens that overflow
/// the bucket meanwhile are gone: with 10 packets hysteria1 held about
/// 0.8 of its rate, with 0.5 ms and more about 0.96
/// (docs/case-studies/hysteria1.md).
const BURST_PACKETS: f64 = 10.0;
const BURST_TIME: Duration = Duration::from_millis(1);
/// The window never goes below this many packets (see [`Brutal::window`]).
const FLOOR_PACKETS: u64 = 3;
/// Cap on the bytes in flight, in round trips at the rate (Hysteria's
/// congestion window multiplier).
const WINDOW_ROUND_TRIPS: f64 = 2.0;

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
    /// Bytes that may be sent now; below zero after bytes sent under the
    /// window's floor, a debt repaid before the bucket allows more.
    tokens: f64,
    /// When `tokens` was last filled.
    filled: Option<Instant>,
    /// Bytes in flight: quinn's figure after each batch of acks (quinn
    /// calls `on_end_acks` after the batch's `on_ack`s), plus what was sent
    /// since, less what was declared lost since (loss detection runs after
    /// the batch, or on its timer).
    in_flight: u64,
}

impl Brutal {
    fn new(mtu: u16) -> Brutal {
        Brutal {
            mtu: u64::from(mtu),
            rtt: None,
            slots: [(0, 0); SLOTS],
            slot_start: None,
            current: 0,
            tokens: 0.0,
            filled: None,
            in_flight: 0,
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

    /// The send rate in bytes per second: the agreed rate, raised by the
    /// loss being made up for.
    fn send_rate(&self, rate: u64) -> f64 {
        rate as f64 / self.ack_rate()
    }

    fn burst(&self, rate: u64) -> f64 {
        (BURST_PACKETS * self.mtu as f64).max(self.send_rate(rate) * BURST_TIME.as_secs_f64())
    }

    /// The bucket's tokens at `now`: filled at the send rate since the last
    /// fill, up to a burst.
    fn tokens_at(&self, now: Instant, rate: u64) -> f64 {
        let burst = self.burst(rate);
        match self.filled {
            None => burst,
            Some(t) => {
                let dt = now.saturating_duration_since(t).as_secs_f64();
                (self.tokens + self.send_rate(rate) * dt).min(burst)
            }
        }
    }

    fn on_sent(&mut self, now: Instant, bytes: u64, rate: u64) {
        if rate > 0 {
            // Bytes sent beyond the tokens (under the window's floor) are a
            // debt of at most one burst, so the floor cannot starve the
            // bucket for long.
            self.tokens = (self.tokens_at(now, rate) - bytes as f64).max(-self.burst(rate));
            self.filled = Some(now);
        }
        self.in_flight += bytes;
    }

    /// Most bytes in flight: two round trips at the send rate, raised by
    /// the loss being made up for, and never below a few packets.
    fn flight_cap(&self, rate: u64) -> u64 {
        let floor = MIN_WINDOW_PACKETS * self.mtu;
        let Some(rtt) = self.rtt else {
            return floor;
        };
        let w = WINDOW_ROUND_TRIPS * self.send_rate(rate) * rtt.as_secs_f64();
        (w as u64).max(floor)
    }

    /// The window quinn sends against: what is in flight plus what the
    /// bucket allows now, within the cap, and never below the floor.
    ///
    /// The floor is why the bucket works at all: quinn re-reads the window
    /// only when something happens (an acknowledgement, a write, a timer),
    /// not as tokens accrue, and a peer acknowledges at once only every
    /// second packet (otherwise after its ack delay, 25 ms). While fewer
    /// than two packets are in flight one more may always go, so an
    /// acknowledgement is always on its way to bring the next look at the
    /// bucket. On loopback that floor is the slowest Brutal can send (about
    /// two packets per round trip), as the window's 4-packet floor was
    /// before the bucket.
    fn window(&self, now: Instant, rate: u64) -> u64 {
        let tokens = self.tokens_at(now, rate).max(0.0) as u64;
        let w = (self.in_flight + tokens).min(self.flight_cap(rate));
        // quinn sends while in flight + a packet < window: 3 packets let
        // the second go.
        w.max(FLOOR_PACKETS * self.mtu)
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
        self.brutal.on_sent(now, bytes, self.rate());
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
        // quinn's count also drops packets it discards without a callback.
        self.brutal.in_flight = in_flight;
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
        self.brutal.in_flight = self.brutal.in_flight.saturating_sub(lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.bbr.on_mtu_update(new_mtu);
        self.brutal.mtu = u64::from(new_mtu);
    }

    fn window(&self) -> u64 {
        match self.rate() {
            0 => self.bbr.window(),
            // quinn asks for the window without a time; the bucket needs one.
            rate => self.brutal.window(Instant::now(), rate),
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
    fn the_window_is_what_is_in_flight_plus_the_bucket() {
        let mut b = Brutal::new(1200);
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        // No round trip measured yet: a full bucket, within the cap's floor.
        assert_eq!(b.window(t0, 1_000_000), MIN_WINDOW_PACKETS * 1200);
        b.rtt = Some(Duration::from_millis(100));
        // A full bucket: a burst of 10 packets (1 ms at 1 MB/s is less).
        assert_eq!(b.window(t0, 1_000_000), 12_000);
        b.on_sent(t0, 12_000, 1_000_000);
        assert_eq!(b.in_flight, 12_000);
        assert_eq!(b.window(t0, 1_000_000), 12_000, "nothing more to send");
        // 1 MB/s fills 1000 bytes a millisecond; the bucket stops at a burst.
        assert_eq!(b.window(t0 + ms, 1_000_000), 13_000);
        assert_eq!(b.window(t0 + 100 * ms, 1_000_000), 24_000);
        // Acknowledged bytes leave the flight; the tokens stay (1000 bytes).
        b.in_flight = 5_000;
        assert_eq!(b.window(t0 + ms, 1_000_000), 6_000);
        // Under two packets in flight one more may go whatever the bucket
        // says (the floor: 3 packets), so an acknowledgement always comes.
        b.in_flight = 0;
        assert_eq!(b.window(t0 + ms, 1_000_000), 3_600);
        b.on_sent(t0 + ms, 3_600, 1_000_000);
        assert_eq!(b.tokens, -2_600.0, "sent beyond the tokens: a debt");
        assert_eq!(b.window(t0 + ms, 1_000_000), 3_600, "nothing more to send");
        assert_eq!(
            b.window(t0 + 4 * ms, 1_000_000),
            4_000,
            "debt repaid, 400 tokens"
        );
        // The debt is at most a burst.
        b.on_sent(t0 + 4 * ms, 100_000, 1_000_000);
        assert_eq!(b.tokens, -12_000.0);
        // At 125 MB/s the bucket holds a millisecond: 125,000 bytes.
        assert_eq!(b.tokens_at(t0 + 100 * ms, 125_000_000), 125_000.0);
        // The bytes in flight stop at two round trips at the rate.
        b.in_flight = 500_000;
        assert_eq!(b.window(t0 + 2 * ms, 1_000_000), 200_000);
    }

    #[test]
    fn loss_raises_the_send_rate_down_to_a_floor() {
        let mut b = Brutal::new(1200);
        let t0 = Instant::now();
        b.rtt = Some(Duration::from_millis(100));
        b.on_sent(t0, 12_000, 10_000_000);
        b.in_flight = 0;
        let ms = Duration::from_millis(1);
        assert_eq!(b.window(t0 + ms, 10_000_000), 10_000);
        b.slot(t0).0 += 1000;
        // 10% loss: the bucket fills faster to make up for it.
        b.slot(t0).1 += 111;
        assert!(b.window(t0 + ms, 10_000_000) > 11_000);
        // Heavy loss is only made up for down to the floor (0.8): 12.5 MB/s
        // for a millisecond, which is also the bucket's size at that rate.
        b.slot(t0).1 += 100_000;
        assert_eq!(b.window(t0 + ms, 10_000_000), 12_500);
        assert_eq!(b.window(t0 + 9 * ms, 10_000_000), 12_500);
        assert_eq!(b.flight_cap(10_000_000), 2_500_000);
        // Old slots age out.
        let later = t0 + SLOT * (SLOTS as u32 + 1);
        b.slot(later);
        assert_eq!(b.ack_rate(), 1.0);
    }
}
