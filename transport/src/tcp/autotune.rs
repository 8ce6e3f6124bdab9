//! Buffer autotuning, as Linux does it: the receive buffer (the most we advertise) grows
//! with the rate data arrives at per round trip (`tcp_rcv_space_adjust`, the dynamic
//! right-sizing of Fisk and Feng), and the send buffer with the congestion window
//! (`tcp_sndbuf_expand`). Both start small and only grow, up to a configured maximum; they
//! are limits, and memory is taken only as data is queued.

use super::seq::SeqNumber;
use crate::net::link::{Duration, Instant};

/// Segments of slack Linux adds to twice the bytes of a round trip (`16 * advmss`).
const SLACK_SEGMENTS: usize = 16;
/// Initial congestion window in segments the first measurement is compared against
/// (Linux `TCP_INIT_CWND`).
const INITIAL_SEGMENTS: usize = 10;

/// The receive buffer's size and the measurement that grows it (Linux `rcvq_space`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvAutotune {
    /// The receive buffer now: the most we advertise.
    limit: usize,
    max: usize,
    /// Bytes delivered in the best round trip measured so far (`rcvq_space.space`).
    space: usize,
    /// Start of the current measurement: the time and RCV.NXT then.
    mark: Option<(Instant, SeqNumber)>,
    /// The receiver's RTT estimate, from the timestamps the peer echoes on its data
    /// (Linux `rcv_rtt_est`), smoothed by 1/8.
    rtt: Option<Duration>,
}

impl RecvAutotune {
    /// A buffer of `initial` bytes growing up to `max` (at least `initial`).
    pub(crate) fn new(initial: usize, max: usize, mss: usize) -> RecvAutotune {
        RecvAutotune {
            limit: initial,
            max: max.max(initial),
            space: initial.min(INITIAL_SEGMENTS * mss).max(mss).max(1),
            mark: None,
            rtt: None,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The most the buffer may become: what the window scale is chosen for.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// One receiver-side round trip: now less the echo of our timestamp on in-order data.
    pub(crate) fn rtt_sample(&mut self, rtt: Duration) {
        self.rtt = Some(match self.rtt {
            None => rtt,
            Some(old) => (old * 7 + rtt) / 8,
        });
    }

    /// In-order data moved RCV.NXT to `rcv_nxt` at `now`. Once a round trip (the
    /// receiver's estimate, else `fallback_rtt`) has passed since the measurement began,
    /// the bytes delivered in it are compared with the best so far; more means the
    /// sender is growing, and the buffer becomes twice that plus slack, plus twice the
    /// growth (Linux `tcp_rcv_space_adjust`), at most the maximum. Returns whether it grew.
    pub(crate) fn on_data(
        &mut self,
        now: Instant,
        rcv_nxt: SeqNumber,
        fallback_rtt: Option<Duration>,
        mss: usize,
    ) -> bool {
        let Some((start, seq)) = self.mark else {
            self.mark = Some((now, rcv_nxt));
            return false;
        };
        let Some(rtt) = self.rtt.or(fallback_rtt) else {
            return false;
        };
        if now - start < rtt {
            return false;
        }
        self.mark = Some((now, rcv_nxt));
        let copied = rcv_nxt - seq;
        if copied <= self.space || self.limit >= self.max {
            self.space = self.space.max(copied);
            return false;
        }
        let mut window = copied.saturating_mul(2) + SLACK_SEGMENTS * mss;
        let grow = window.saturating_mul(copied - self.space) / self.space;
        window = window.saturating_add(grow.saturating_mul(2));
        self.space = copied;
        let limit = window.min(self.max);
        if limit > self.limit {
            self.limit = limit;
            true
        } else {
            false
        }
    }
}

/// Linux `tcp_sndbuf_expand`: the send buffer holds twice the congestion window (what is
/// in flight and what the next round trip sends), never less than it is, at most `max`.
pub(crate) fn send_buffer_for(current: usize, cwnd: usize, max: usize) -> usize {
    current.max(cwnd.saturating_mul(2).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_buffer_grows_with_the_bytes_of_a_round_trip_up_to_the_maximum() {
        let mss = 1000;
        let mut a = RecvAutotune::new(64 * 1024, 6 << 20, mss);
        let t0 = Instant::from_secs(1);
        let mut seq = SeqNumber(0);
        assert!(!a.on_data(t0, seq, Some(ms(20)), mss));
        // Within the round trip: no measurement.
        seq += 50_000;
        assert!(!a.on_data(t0 + ms(10), seq, Some(ms(20)), mss));
        // 100 kB in one round trip, the base being 10 segments: 2 * 100 kB + 16 segments,
        // plus twice the growth.
        seq += 50_000;
        assert!(a.on_data(t0 + ms(20), seq, Some(ms(20)), mss));
        let window: usize = 216_000;
        assert_eq!(a.limit(), window + 2 * (window * 90_000 / 10_000));
        // The same rate again: no growth.
        let limit = a.limit();
        seq += 100_000;
        assert!(!a.on_data(t0 + ms(40), seq, Some(ms(20)), mss));
        assert_eq!(a.limit(), limit);
        // A far higher rate reaches the maximum and stops there.
        seq += 10_000_000;
        assert!(a.on_data(t0 + ms(60), seq, Some(ms(20)), mss));
        assert_eq!(a.limit(), 6 << 20);
    }

    #[test]
    fn without_a_round_trip_estimate_nothing_grows() {
        let mut a = RecvAutotune::new(64 * 1024, 6 << 20, 1000);
        let t0 = Instant::from_secs(1);
        a.on_data(t0, SeqNumber(0), None, 1000);
        assert!(!a.on_data(t0 + ms(500), SeqNumber(1_000_000), None, 1000));
        a.rtt_sample(ms(20));
        assert!(a.on_data(t0 + ms(520), SeqNumber(2_000_000), None, 1000));
    }

    #[test]
    fn the_send_buffer_follows_twice_the_window() {
        assert_eq!(send_buffer_for(64 * 1024, 10_000, 4 << 20), 64 * 1024);
        assert_eq!(send_buffer_for(64 * 1024, 100_000, 4 << 20), 200_000);
        assert_eq!(send_buffer_for(64 * 1024, 10 << 20, 4 << 20), 4 << 20);
    }
}
