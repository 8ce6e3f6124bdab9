//! Pacing a sender at iperf3's `-b` bitrate: a token bucket that says when the next
//! datagram or write may go; the senders sleep that long on the wall clock.

use crate::link::{Duration, Instant};

/// Credit a [`Pacer`] keeps at most: the longest burst a late sender sends at once.
const BURST: Duration = Duration::from_millis(5);

/// Paces a sender at a bitrate with a token bucket: credit accrues at the rate, each
/// datagram or write spends its length, and credit beyond [`BURST`] worth of sending (or
/// one datagram, if more) is forgotten, so a sender that fell behind catches up in
/// bounded bursts and never floods the path.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Bytes per second; `None` sends as fast as the stack takes the data.
    rate: Option<f64>,
    cap: f64,
    credit: f64,
    last: Instant,
}

impl Pacer {
    /// A pacer for `rate` bits/s (0: unlimited) and datagrams of `len` bytes; the first
    /// may go at once.
    pub fn new(now: Instant, rate: u64, len: usize) -> Pacer {
        let rate = (rate > 0).then(|| rate as f64 / 8.0);
        let len = len as f64;
        Pacer {
            rate,
            cap: rate.map_or(len, |r| (r * BURST.as_secs_f64()).max(len)),
            credit: len,
            last: now,
        }
    }

    /// `Ok` if a datagram of `len` bytes may go now (its credit is spent), else how long
    /// until it may.
    pub fn poll(&mut self, now: Instant, len: usize) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let len = len as f64;
        let earned = (now - self.last).as_secs_f64() * rate;
        self.credit = (self.credit + earned).min(self.cap.max(len));
        self.last = now;
        if self.credit >= len {
            self.credit -= len;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((len - self.credit) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 Mbit/s of 1250-byte datagrams is one every 10 ms; a sender asleep for a second
    /// catches up with at most a 5 ms burst, not the whole second.
    #[test]
    fn the_pacer_keeps_the_rate_and_bounds_the_burst() {
        let t0 = Instant::from_secs(1);
        let mut p = Pacer::new(t0, 1_000_000, 1250);
        assert_eq!(p.poll(t0, 1250), Ok(()));
        let wait = p.poll(t0, 1250).unwrap_err();
        assert!(wait.abs_diff(Duration::from_millis(10)) < Duration::from_micros(1));
        let mut sent = 1;
        let mut t = t0;
        while t < t0 + Duration::from_secs(1) {
            t += Duration::from_micros(500);
            while p.poll(t, 1250).is_ok() {
                sent += 1;
            }
        }
        assert!((100..=101).contains(&sent), "{sent}");
        // 40 Mbit/s: 5 ms of credit is 25000 bytes, 20 datagrams, after a long sleep.
        let mut p = Pacer::new(t0, 40_000_000, 1250);
        let later = t0 + Duration::from_secs(1);
        let burst = std::iter::from_fn(|| p.poll(later, 1250).ok()).count();
        assert_eq!(burst, 20);
        let mut unlimited = Pacer::new(t0, 0, 1250);
        assert!((0..1000).all(|_| unlimited.poll(t0, 1250).is_ok()));
    }
}
