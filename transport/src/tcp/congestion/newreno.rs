//! Reno congestion control (RFC 5681) with appropriate byte counting (RFC 3465, L = 2).
//! The NewReno part, partial ACKs in recovery (RFC 6582), is in the connection.

use super::{initial_window, CongestionControl};
use crate::net::link::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acked since cwnd last grew in congestion avoidance.
    acked_in_ca: usize,
}

impl NewReno {
    pub fn new(mss: usize) -> NewReno {
        NewReno {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            acked_in_ca: 0,
        }
    }
}

impl CongestionControl for NewReno {
    fn name(&self) -> &'static str {
        "newreno"
    }

    fn on_ack(&mut self, _now: Instant, acked: usize, _srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            // Slow start: grow by the bytes acked, at most 2 MSS per ACK (RFC 3465).
            self.cwnd += acked.min(2 * self.mss);
        } else {
            // Congestion avoidance: one MSS per cwnd of bytes acked.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
    }

    fn on_loss(&mut self, _now: Instant, flight: usize) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
    }

    fn on_rto(&mut self, _now: Instant, flight: usize) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.acked_in_ca = 0;
    }

    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
        self.cwnd = initial_window(mss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_linear_growth_and_halving_on_loss() {
        let mut r = NewReno::new(1000);
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
    }
}
