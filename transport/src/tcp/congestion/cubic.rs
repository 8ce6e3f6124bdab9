//! CUBIC congestion control (RFC 9438): window growth as a cubic function of the time since
//! the last congestion event, with the Reno-friendly region of section 4.3 and fast
//! convergence of section 4.7; slow start ends early by HyStart, as Linux's `tcp_cubic`
//! does by default.

use super::hystart::{HyStart, RttSample};
use super::{CongestionControl, Window};
use crate::net::link::{Duration, Instant};

/// Section 5: C = 0.4, beta_cubic = 0.7.
const C: f64 = 0.4;
const BETA: f64 = 0.7;
/// Section 4.3: alpha_cubic = 3 (1 - beta) / (1 + beta).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// Linux `bictcp_acked`: no HyStart delay samples in the first second of congestion
/// avoidance after a reduction.
const HYSTART_QUIET: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default)]
pub(crate) struct Cubic {
    /// W_max in segments: the window just before the last reduction, less after fast
    /// convergence (section 4.7).
    w_max: f64,
    /// Section 4.3 cwnd_prior, in segments: the window when ssthresh was last set.
    cwnd_prior: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch: Option<Instant>,
    /// Section 4.2: time for the cubic to reach its origin, in seconds, fixed per epoch.
    k: f64,
    /// Section 4.2: the window the cubic is centred on (W_max, or the window at the start
    /// of the epoch if that is larger), in segments, fixed per epoch.
    origin: f64,
    /// Section 4.3: the Reno-friendly estimate, in segments.
    w_est: f64,
    /// Slow-start byte counter (sub-MSS remainders).
    acked_partial: usize,
    hystart: HyStart,
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
        self.cwnd_prior = w;
        win.ssthresh = ((win.cwnd as f64 * BETA) as usize).max(2 * win.mss);
        self.epoch = None;
    }

    /// Section 4.2 eq. 1: W_cubic(t) = C (t - K)^3 + W_max, `t` in seconds since the
    /// epoch began.
    fn w_cubic(&self, t: f64) -> f64 {
        C * (t - self.k).powi(3) + self.origin
    }

    /// Sections 4.2 and 4.3 at the start of a congestion-avoidance epoch: K and the
    /// origin from W_max and cwnd_epoch, fixed until the next reduction; W_est from
    /// cwnd_epoch.
    fn start_epoch(&mut self, now: Instant, cwnd_epoch: f64) {
        if self.w_max > cwnd_epoch {
            self.k = ((self.w_max - cwnd_epoch) / C).cbrt();
            self.origin = self.w_max;
        } else {
            self.k = 0.0;
            self.origin = cwnd_epoch;
        }
        self.w_est = cwnd_epoch;
        self.epoch = Some(now);
    }
}

impl CongestionControl for Cubic {
    fn on_ack(&mut self, win: &mut Window, now: Instant, acked: usize, srtt: Option<Duration>) {
        if win.in_slow_start() {
            win.slow_start(acked);
            return;
        }
        let w = win.segments();
        let epoch = match self.epoch {
            Some(epoch) => epoch,
            None => {
                self.start_epoch(now, w);
                now
            }
        };
        let rtt = srtt.unwrap_or(Duration::from_millis(100)).as_secs_f64();
        let t = (now - epoch).as_secs_f64();
        // Section 4.3: the Reno-friendly estimate grows by alpha_cubic segments per
        // window acknowledged, and alpha_cubic becomes 1 once W_est reaches cwnd_prior.
        let acked_segments = acked as f64 / win.mss as f64;
        let alpha = if self.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA
        };
        self.w_est += alpha * acked_segments / w;
        let next = if self.w_cubic(t) < self.w_est {
            // Section 4.3: the Reno-friendly region.
            self.w_est
        } else {
            // Section 4.4 (concave) and 4.5 (convex): grow by (target - cwnd) / cwnd
            // per segment acked, target = W_cubic(t + RTT) within [cwnd, 1.5 cwnd].
            let target = self.w_cubic(t + rtt).clamp(w, 1.5 * w);
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
        self.hystart.reset();
    }

    fn on_rtt_sample(&mut self, win: &mut Window, now: Instant, s: &RttSample) {
        let in_epoch = self.epoch.is_some_and(|e| now - e < HYSTART_QUIET);
        self.hystart.on_rtt_sample(win, now, s, in_epoch);
    }

    fn on_repeated_rto(&mut self, win: &mut Window) {
        self.epoch = None;
        win.cwnd = win.mss;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, Congestion, CongestionControl, Window};
    use super::{Cubic, ALPHA, BETA, C};
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

    /// One round trip of ACKs, one per segment of the window, at `now`.
    fn ack_one_window(c: &mut Congestion, now: Instant, mss: usize, rtt: Duration) {
        for _ in 0..c.cwnd() / mss {
            c.on_ack(now, mss, Some(rtt));
        }
    }

    /// A CUBIC sender (MSS 1000) that slow-started to `w_max` segments and lost a packet
    /// at `now`.
    fn after_loss_at(w_max: usize, now: Instant) -> Congestion {
        let mut c = Congestion::new(Algorithm::Cubic, 1000);
        while c.cwnd() < w_max * 1000 {
            c.on_ack(now, 1000, None);
        }
        assert_eq!(c.cwnd(), w_max * 1000);
        c.on_loss(now, c.cwnd());
        c
    }

    /// RFC 9438 section 4.2: K = cbrt((W_max - cwnd_epoch) / C) and the origin W_max
    /// are fixed for the epoch, so the window follows W_cubic(t) = C (t - K)^3 + W_max
    /// past W_max too (the convex region, section 4.5), towards W_cubic(t + RTT) and
    /// never beyond it (section 4.4). A loss at 100 segments, RTT 200 ms (too long for
    /// the Reno-friendly estimate to matter): K = cbrt(75) = 4.22 s.
    #[test]
    fn origin_and_k_are_fixed_per_epoch_rfc9438_4_2() {
        let (mss, rtt) = (1000, Duration::from_millis(200));
        let mut now = Instant::ZERO;
        let mut c = after_loss_at(100, now);
        assert_eq!(c.cwnd(), 70_000);
        let k = (30.0f64 / C).cbrt();
        let w_cubic = |t: f64| C * (t - k).powi(3) + 100.0;
        // The epoch starts with the first ACK in congestion avoidance.
        now += rtt;
        let epoch = now;
        ack_one_window(&mut c, now, mss, rtt);
        for _ in 0..50 {
            now += rtt;
            let t = (now - epoch).as_secs_f64();
            ack_one_window(&mut c, now, mss, rtt);
            let w = c.cwnd() as f64 / mss as f64;
            assert!(
                w <= w_cubic(t + 0.2) + 0.01,
                "t {t}: {w} > W_cubic(t + RTT)"
            );
            assert!(w >= w_cubic(t) - 1.0, "t {t}: {w} < W_cubic(t)");
        }
        // 10.2 s into the epoch: W_cubic = 100 + 0.4 (10.2 - 4.22)^3 = 185.6.
        assert!((180_000..=190_000).contains(&c.cwnd()), "{}", c.cwnd());
    }

    /// RFC 9438 section 4.3: in the Reno-friendly region cwnd = W_est, which grows by
    /// alpha_cubic = 3 (1 - beta) / (1 + beta) = 0.53 segments per window acknowledged
    /// until it reaches cwnd_prior, then by 1 segment per window, as Reno would. A loss
    /// at 10 segments with a 10 ms RTT and one ACK per RTT for the whole window: W_cubic
    /// stays below 10 for 1.96 s (K), W_est goes from 7 past 10 in 6 RTTs (10.18), then
    /// gains 1 per RTT: 34.18 after 30 RTTs.
    #[test]
    fn alpha_becomes_one_past_cwnd_prior_rfc9438_4_3() {
        let rtt = Duration::from_millis(10);
        let mut now = Instant::ZERO;
        let mut c = after_loss_at(10, now);
        assert_eq!(c.cwnd(), 7000);
        for _ in 0..30 {
            now += rtt;
            c.on_ack(now, c.cwnd(), Some(rtt));
        }
        let expected = 7.0 + 6.0 * ALPHA + 24.0;
        let w = c.cwnd() as f64 / 1000.0;
        assert!(
            (w - expected).abs() < 0.01,
            "{w} segments, expected {expected}"
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
