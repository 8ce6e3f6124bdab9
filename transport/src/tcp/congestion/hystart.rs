//! HyStart (Ha and Rhee, "Taming the elephants: New TCP slow start", 2011), as Linux's
//! `tcp_cubic.c` runs it by default (`hystart=1`, `hystart_detect=3`): slow start ends
//! before the first loss when either the ACKs of one round keep arriving back to back for
//! longer than half the minimum RTT (the ACK train spans the path's BDP: the pipe is
//! full), or the smallest RTT of a round's first 8 samples exceeds the minimum RTT by an
//! eighth of it, clamped to 4-16 ms (a queue is building). Either sets ssthresh to cwnd.

use super::Window;
use crate::net::link::{Duration, Instant};
use crate::tcp::seq::SeqNumber;

/// `hystart_low_window`: HyStart runs only from 16 segments on.
const LOW_WINDOW_SEGMENTS: usize = 16;
/// `hystart_ack_delta_us`: ACKs at most this far apart belong to one train.
const ACK_DELTA: Duration = Duration::from_millis(2);
/// `HYSTART_MIN_SAMPLES`: RTT samples per round before the delay test.
const MIN_SAMPLES: u32 = 8;
/// `HYSTART_DELAY_MIN` and `HYSTART_DELAY_MAX`: the delay threshold's clamp.
const DELAY_MIN: Duration = Duration::from_millis(4);
const DELAY_MAX: Duration = Duration::from_millis(16);
/// `hystart_ack_delay`: the ACK train may end up to 4 GSO-sized (64 KiB) bursts at the
/// pacing rate late, at most 1 ms.
const ACK_DELAY_BYTES: u128 = 4 * 64 * 1024;
const MAX_ACK_DELAY: Duration = Duration::from_millis(1);

/// What HyStart learns from an ACK that measured a round trip (Linux `bictcp_acked`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttSample {
    pub(crate) rtt: Duration,
    pub(crate) srtt: Option<Duration>,
    pub(crate) snd_una: SeqNumber,
    pub(crate) snd_nxt: SeqNumber,
    /// The connection paces its data (Linux: `sk_pacing_status` not `SK_PACING_NONE`).
    pub(crate) paced: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct HyStart {
    /// `ca->found`: slow start was ended; no more tests until the next timeout.
    found: bool,
    /// `ca->delay_min`: the smallest RTT seen.
    delay_min: Option<Duration>,
    /// `ca->end_seq`: the round ends when SND.UNA passes it.
    end_seq: Option<SeqNumber>,
    /// `ca->round_start` and `ca->last_ack`: the ACK train's start and latest ACK.
    round_start: Instant,
    last_ack: Instant,
    /// `ca->curr_rtt` and `ca->sample_cnt`: the round's smallest RTT and its samples.
    curr_rtt: Option<Duration>,
    samples: u32,
}

impl HyStart {
    /// `bictcp_hystart_reset`: a new round starts at `now`, ending at `snd_nxt`.
    fn new_round(&mut self, now: Instant, snd_nxt: SeqNumber) {
        self.round_start = now;
        self.last_ack = now;
        self.end_seq = Some(snd_nxt);
        self.curr_rtt = None;
        self.samples = 0;
    }

    /// `bictcp_state(TCP_CA_Loss)`: after a timeout slow start runs again, tested anew.
    pub(crate) fn reset(&mut self) {
        *self = HyStart::default();
    }

    /// `bictcp_acked` and `hystart_update`: whether this sample ended slow start (then
    /// ssthresh is cwnd). `in_epoch`: congestion avoidance began less than a second ago
    /// (Linux discards delay samples right after fast recovery).
    pub(crate) fn on_rtt_sample(
        &mut self,
        w: &mut Window,
        now: Instant,
        s: &RttSample,
        in_epoch: bool,
    ) -> bool {
        if in_epoch {
            return false;
        }
        let delay = s.rtt.max(Duration::from_micros(1));
        let delay_min = *self
            .delay_min
            .insert(self.delay_min.map_or(delay, |m| m.min(delay)));
        if self.found || !w.in_slow_start() || w.cwnd < LOW_WINDOW_SEGMENTS * w.mss {
            return false;
        }
        if self.end_seq.is_none_or(|end| s.snd_una > end) {
            self.new_round(now, s.snd_nxt);
        }
        // The ACK train: back-to-back ACKs of one round spanning half the min RTT.
        if now - self.last_ack <= ACK_DELTA {
            self.last_ack = now;
            let mut threshold = delay_min + Self::ack_delay(w, s.srtt);
            if !s.paced {
                threshold /= 2;
            }
            if now - self.round_start > threshold {
                self.found = true;
            }
        }
        // The delay increase: the round's smallest of 8 RTTs against the min RTT.
        let curr = *self
            .curr_rtt
            .insert(self.curr_rtt.map_or(delay, |c| c.min(delay)));
        if self.samples < MIN_SAMPLES {
            self.samples += 1;
        } else if curr > delay_min + (delay_min / 8).clamp(DELAY_MIN, DELAY_MAX) {
            self.found = true;
        }
        if self.found {
            w.ssthresh = w.cwnd;
        }
        self.found
    }

    /// `hystart_ack_delay`: 4 GSO bursts at Linux's slow-start pacing rate (2 cwnd per
    /// SRTT, `tcp_update_pacing_rate`), at most 1 ms; 0 before there is a rate.
    fn ack_delay(w: &Window, srtt: Option<Duration>) -> Duration {
        let Some(srtt) = srtt else {
            return Duration::ZERO;
        };
        let rate = 2 * w.cwnd as u128 * 1_000_000 / srtt.as_micros().max(1);
        if rate == 0 {
            return Duration::ZERO;
        }
        let micros = ACK_DELAY_BYTES * 1_000_000 / rate;
        Duration::from_micros(micros.min(u128::from(u64::MAX)) as u64).min(MAX_ACK_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A window of `segments` in slow start.
    fn window(segments: usize) -> Window {
        let mut w = Window::new(MSS);
        w.cwnd = segments * MSS;
        w
    }

    fn sample(rtt: Duration, una: u32, nxt: u32) -> RttSample {
        RttSample {
            rtt,
            srtt: Some(ms(20)),
            snd_una: SeqNumber(una),
            snd_nxt: SeqNumber(nxt),
            paced: false,
        }
    }

    /// One round: `n` ACKs `gap` apart from `start`, each measuring `rtt`, each acking a
    /// segment of the `n` that were in flight when it began. Returns the ACK that ended
    /// slow start.
    fn round(
        h: &mut HyStart,
        w: &mut Window,
        start: Instant,
        una: &mut u32,
        n: usize,
        gap: Duration,
        rtt: Duration,
    ) -> Option<usize> {
        let nxt = *una + (n * MSS) as u32;
        for i in 0..n {
            *una += MSS as u32;
            let now = start + gap * i as u32;
            if h.on_rtt_sample(w, now, &sample(rtt, *una, nxt), false) {
                return Some(i);
            }
        }
        None
    }

    /// Linux `hystart_update`, HYSTART_DELAY: the smallest of a round's first 8 RTTs
    /// more than max(4 ms, min RTT / 8) above the min RTT ends slow start (ssthresh =
    /// cwnd). ACKs 5 ms apart are no train. 20 ms min RTT: 24 ms is within the
    /// threshold, 25 ms is not, from the 9th sample of the round on.
    #[test]
    fn a_round_of_rtts_above_the_threshold_ends_slow_start() {
        let (mut h, mut w) = (HyStart::default(), window(20));
        let mut una = 0;
        let t = Instant::from_secs(1);
        assert_eq!(round(&mut h, &mut w, t, &mut una, 20, ms(5), ms(20)), None);
        let t = t + ms(100);
        assert_eq!(round(&mut h, &mut w, t, &mut una, 20, ms(5), ms(24)), None);
        assert!(w.in_slow_start());
        let t = t + ms(100);
        assert_eq!(
            round(&mut h, &mut w, t, &mut una, 20, ms(5), ms(25)),
            Some(8)
        );
        assert_eq!(w.ssthresh, w.cwnd);
        assert!(!w.in_slow_start());
    }

    /// Linux `hystart_update`, HYSTART_ACK_TRAIN: ACKs of one round no more than 2 ms
    /// apart for longer than half of (min RTT + the ACK delay allowance, here 1 ms): the
    /// train spans the BDP. 20 ms min RTT, ACKs 1 ms apart: the one 11 ms after the round
    /// began ends slow start (10.5 ms); paced (no halving), the one 22 ms after.
    #[test]
    fn an_ack_train_of_half_the_min_rtt_ends_slow_start() {
        let (mut h, mut w) = (HyStart::default(), window(40));
        let mut una = 0;
        let t = Instant::from_secs(1);
        assert_eq!(
            round(&mut h, &mut w, t, &mut una, 30, ms(1), ms(20)),
            Some(11)
        );
        assert_eq!(w.ssthresh, 40 * MSS);

        let (mut h, mut w) = (HyStart::default(), window(40));
        let mut una = 0;
        let nxt = 80 * MSS as u32;
        let mut ended = None;
        for i in 0..30u32 {
            una += MSS as u32;
            let s = RttSample {
                paced: true,
                ..sample(ms(20), una, nxt)
            };
            if h.on_rtt_sample(&mut w, t + ms(i.into()), &s, false) {
                ended = Some(i);
                break;
            }
        }
        assert_eq!(ended, Some(22));
    }

    /// `hystart_low_window`: below 16 segments nothing ends slow start; outside slow
    /// start, nor in the first second of congestion avoidance.
    #[test]
    fn small_windows_and_congestion_avoidance_are_left_alone() {
        let (mut h, mut w) = (HyStart::default(), window(15));
        let mut una = 0;
        let t = Instant::from_secs(1);
        assert_eq!(round(&mut h, &mut w, t, &mut una, 30, ms(1), ms(20)), None);
        assert_eq!(
            round(&mut h, &mut w, t + ms(50), &mut una, 30, ms(5), ms(40)),
            None
        );
        let mut w = window(40);
        w.ssthresh = 30 * MSS;
        assert_eq!(
            round(&mut h, &mut w, t + ms(100), &mut una, 30, ms(1), ms(20)),
            None
        );
        let mut w = window(40);
        let s = sample(ms(40), una + MSS as u32, una + 100 * MSS as u32);
        assert!(!h.on_rtt_sample(&mut w, t + ms(200), &s, true));
    }

    /// Once slow start ended, HyStart stays quiet until a timeout resets it
    /// (`bictcp_state(TCP_CA_Loss)`), which also forgets the min RTT.
    #[test]
    fn found_holds_until_a_timeout() {
        let (mut h, mut w) = (HyStart::default(), window(40));
        let mut una = 0;
        let t = Instant::from_secs(1);
        assert!(round(&mut h, &mut w, t, &mut una, 30, ms(1), ms(20)).is_some());
        let mut w = window(40);
        assert_eq!(
            round(&mut h, &mut w, t + ms(50), &mut una, 30, ms(1), ms(20)),
            None
        );
        h.reset();
        assert_eq!(h.delay_min, None);
        assert!(round(&mut h, &mut w, t + ms(100), &mut una, 30, ms(1), ms(20)).is_some());
    }
}
