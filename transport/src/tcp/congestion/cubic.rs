//! CUBIC congestion control (RFC 9438): window growth as a cubic function of the time since
//! the last congestion event, with the Reno-friendly region of section 4.3 and fast
//! convergence of section 4.7.

use super::{CongestionControl, Window};
use crate::net::link::{Duration, Instant};

/// Section 5: C = 0.4, beta_cubic = 0.7.
const C: f64 = 0.4;
const BETA: f64 = 0.7;
/// Section 4.3: alpha_cubic = 3 (1 - beta) / (1 + beta).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

#[derive(Debug, Clone, Default)]
pub(crate) struct Cubic {
    /// W_max in segments: the window just before the last reduction.
    w_max: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch: Option<Instant>,
    /// Section 4.2: time for the cubic to reach W_max again, in seconds.
    k: f64,
    /// Section 4.3: the Reno-friendly estimate, in segments.
    w_est: f64,
    /// Slow-start byte counter (sub-MSS remainders).
    acked_partial: usize,
}

impl Cubic {
    fn reduce(&mut self, win: &mut Window) {
        let w = win.segments();
        // Section 4.7 fast convergence: release bandwidth to newer flows.
        self.w_max = if w < self.w_max {
            w * (1.0 + BETA) / 2.0
        } else {
            w
        };
        win.ssthresh = ((win.cwnd as f64 * BETA) as usize).max(2 * win.mss);
        self.epoch = None;
    }
}

impl CongestionControl for Cubic {
    fn on_ack(&mut self, win: &mut Window, now: Instant, acked: usize, srtt: Option<Duration>) {
        if win.in_slow_start() {
            win.slow_start(acked);
            return;
        }
        let epoch = *self.epoch.get_or_insert_with(|| {
            // Section 4.2 at the start of an epoch: K from W_max and the current window.
            let w = win.segments();
            self.k = if self.w_max > w {
                ((self.w_max - w) / C).cbrt()
            } else {
                0.0
            };
            self.w_est = w;
            now
        });
        let rtt = srtt.unwrap_or(Duration::from_millis(100)).as_secs_f64();
        let t = (now - epoch).as_secs_f64();
        let w = win.segments();
        let origin = self.w_max.max(w);
        // Section 4.2 eq. 1, evaluated one RTT ahead (section 4.4).
        let target = C * (t + rtt - self.k).powi(3) + origin;
        let target = target.clamp(w, 1.5 * w);
        // Section 4.3: Reno-friendly estimate grows by alpha segments per window acked.
        let acked_segments = acked as f64 / win.mss as f64;
        self.w_est += ALPHA * acked_segments / w;
        let next = if self.w_est > target {
            self.w_est
        } else {
            // Section 4.4: grow by (target - cwnd) / cwnd per segment acked.
            w + (target - w) / w * acked_segments
        };
        self.acked_partial = 0;
        win.cwnd = ((next * win.mss as f64) as usize).max(win.cwnd);
    }

    fn on_loss(&mut self, win: &mut Window, _now: Instant, _flight: usize) {
        self.reduce(win);
        win.cwnd = win.ssthresh;
    }

    fn on_rto(&mut self, win: &mut Window, _now: Instant, _flight: usize) {
        self.reduce(win);
        win.cwnd = win.mss;
    }

    fn on_repeated_rto(&mut self, win: &mut Window) {
        self.epoch = None;
        win.cwnd = win.mss;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, Congestion, CongestionControl, Window};
    use super::{Cubic, BETA};
    use crate::net::link::{Duration, Instant};

    #[test]
    fn reduces_by_beta_and_regrows_towards_w_max() {
        let mss = 1000;
        let mut c = Congestion::new(Algorithm::Cubic, mss);
        let rtt = Some(Duration::from_millis(50));
        let mut now = Instant::ZERO;
        // Slow start to 100 segments, then a loss.
        while c.cwnd() < 100_000 {
            c.on_ack(now, mss, rtt);
        }
        let before = c.cwnd();
        c.on_loss(now, before);
        assert_eq!(c.cwnd(), (before as f64 * BETA) as usize);
        let after_loss = c.cwnd();
        // One window's worth of ACKs per RTT: the window grows back towards W_max,
        // concave at first (slower near W_max), and passes it later.
        let mut history = Vec::new();
        for _ in 0..60 {
            now += Duration::from_millis(50);
            let acks = c.cwnd() / mss;
            for _ in 0..acks {
                c.on_ack(now, mss, rtt);
            }
            history.push(c.cwnd());
        }
        assert!(history[0] > after_loss);
        assert!(history.windows(2).all(|w| w[1] >= w[0]));
        assert!(
            *history.last().unwrap() > before,
            "never probed past W_max: {history:?}"
        );
    }

    /// RFC 5681 section 3.1 and RFC 9438 section 4.8: only the first timeout of a loss
    /// episode reduces; later ones (the window is then 1 segment) keep ssthresh and W_max.
    #[test]
    fn repeated_timeouts_keep_w_max_and_ssthresh_rfc5681_3_1() {
        let mut win = Window::new(1000);
        win.cwnd = 100_000;
        let mut cubic = Cubic::default();
        cubic.on_rto(&mut win, Instant::ZERO, 100_000);
        assert_eq!((win.cwnd, win.ssthresh, cubic.w_max), (1000, 70_000, 100.0));
        for _ in 0..3 {
            cubic.on_repeated_rto(&mut win);
            assert_eq!((win.cwnd, win.ssthresh, cubic.w_max), (1000, 70_000, 100.0));
        }
    }

    #[test]
    fn rto_collapses_to_one_segment() {
        let mut c = Congestion::new(Algorithm::Cubic, 1000);
        c.on_rto(Instant::ZERO, 10_000);
        assert_eq!(c.cwnd(), 1000);
        assert_eq!(c.ssthresh(), 7000);
    }
}
