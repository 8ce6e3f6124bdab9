//! Reno congestion control (RFC 5681) with appropriate byte counting (RFC 3465, L = 2).
//! The NewReno part, partial ACKs in recovery (RFC 6582), is in the connection.

use super::{CongestionControl, Window};
use crate::net::link::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub(crate) struct NewReno {
    /// Bytes acked since cwnd last grew in congestion avoidance.
    acked_in_ca: usize,
}

impl CongestionControl for NewReno {
    fn on_ack(&mut self, w: &mut Window, _now: Instant, acked: usize, _srtt: Option<Duration>) {
        if w.in_slow_start() {
            w.slow_start(acked);
        } else {
            // Congestion avoidance: one MSS per cwnd of bytes acked.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= w.cwnd {
                self.acked_in_ca -= w.cwnd;
                w.cwnd += w.mss;
            }
        }
    }

    fn on_loss(&mut self, w: &mut Window, _now: Instant, flight: usize) {
        w.ssthresh = (flight / 2).max(2 * w.mss);
        w.cwnd = w.ssthresh;
        self.acked_in_ca = 0;
    }

    fn on_rto(&mut self, w: &mut Window, _now: Instant, flight: usize) {
        w.ssthresh = (flight / 2).max(2 * w.mss);
        w.cwnd = w.mss;
        self.acked_in_ca = 0;
    }

    fn on_repeated_rto(&mut self, w: &mut Window) {
        w.cwnd = w.mss;
        self.acked_in_ca = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, Congestion};
    use crate::net::link::Instant;

    #[test]
    fn slow_start_then_linear_growth_and_halving_on_loss() {
        let mut r = Congestion::new(Algorithm::NewReno, 1000);
        assert_eq!(r.cwnd(), 10_000);
        r.on_ack(Instant::ZERO, 1000, None);
        assert_eq!(r.cwnd(), 11_000);
        r.on_loss(Instant::ZERO, 20_000);
        assert_eq!((r.cwnd(), r.ssthresh()), (10_000, 10_000));
        for _ in 0..10 {
            r.on_ack(Instant::ZERO, 1000, None);
        }
        assert_eq!(r.cwnd(), 11_000);
        r.on_rto(Instant::ZERO, 11_000);
        assert_eq!((r.cwnd(), r.ssthresh()), (1000, 5500));
        // RFC 5681 section 3.1: a second timeout of the same data holds ssthresh.
        r.on_ack(Instant::ZERO, 1000, None);
        r.on_repeated_rto();
        assert_eq!((r.cwnd(), r.ssthresh()), (1000, 5500));
    }
}
