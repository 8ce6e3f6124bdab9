//! Retransmission timeout per RFC 6298: SRTT and RTTVAR from round-trip samples (taken
//! from timestamps, or Karn-safe from segments sent once), clamped between a minimum and
//! a maximum, doubled on every expiry.

use crate::net::link::Duration;

/// Clock granularity G of RFC 6298 section 2 (our clock ticks in microseconds, but
/// timestamps tick in milliseconds).
const GRANULARITY: Duration = Duration::from_millis(1);

/// RFC 6298 estimator state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    /// Consecutive expiries since the last new sample (exponential backoff, section 5.5).
    backoff: u32,
}

impl RttEstimator {
    /// Section 2.1: before any sample, RTO is the initial value (1 s recommended).
    pub(crate) fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial_rto.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
            backoff: 0,
        }
    }

    /// Sections 2.2 and 2.3: fold in one measurement. K = 4, alpha = 1/8, beta = 1/4.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        let rto = srtt + (self.rttvar * 4).max(GRANULARITY);
        self.rto = rto.clamp(self.min_rto, self.max_rto);
        self.backoff = 0;
    }

    /// The timeout to arm now, with backoff applied (section 5.5), at most the maximum.
    pub(crate) fn rto(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoff.min(16)).unwrap_or(u32::MAX);
        self.rto.saturating_mul(factor).min(self.max_rto)
    }

    /// Section 5.5: the timer expired; back off.
    pub(crate) fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Forget backoff after progress without a fresh sample (e.g. new data acked).
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    #[cfg(test)]
    pub(crate) fn rttvar(&self) -> Duration {
        self.rttvar
    }

    #[cfg(test)]
    pub(crate) fn backoff(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        // 100 + 4 * 50 = 300 ms
        assert_eq!(e.rto(), Duration::from_millis(300));
    }

    #[test]
    fn later_samples_smooth_with_one_eighth_and_one_quarter() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        e.sample(Duration::from_millis(200));
        // rttvar = 3/4 * 50 + 1/4 * 100 = 62.5; srtt = 7/8 * 100 + 1/8 * 200 = 112.5
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(362_500));
    }

    #[test]
    fn rto_is_clamped_and_backs_off_to_the_maximum() {
        let mut e = est();
        e.sample(Duration::from_millis(1));
        assert_eq!(e.rto(), Duration::from_millis(200));
        for _ in 0..20 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.sample(Duration::from_millis(1));
        assert_eq!(e.backoff(), 0);
        assert_eq!(e.rto(), Duration::from_millis(200));
    }
}
