//! BBR congestion control, version 1, as Linux's `net/ipv4/tcp_bbr.c` implements it
//! (Cardwell et al., "BBR: Congestion-Based Congestion Control", ACM Queue 2016; the
//! state machine of draft-cardwell-iccrg-bbr-congestion-control-00). The model is the
//! bottleneck bandwidth, the windowed maximum of delivery-rate samples over 10 round
//! trips, and the round-trip propagation delay, the minimum RTT over 10 s; the sender
//! paces at `pacing_gain * BtlBw` and keeps at most `cwnd_gain * BDP` in flight.
//!
//! States (draft section 4.3): Startup (gain 2/ln 2 until the bandwidth stops growing by
//! 25% for 3 rounds), Drain (the inverse gain until the queue Startup built is gone),
//! ProbeBW (pacing gain cycling 1.25, 0.75, 1 x 6, one phase per min RTT) and ProbeRTT
//! (4 segments in flight for 200 ms and a round trip when the min RTT is 10 s old).
//!
//! Left out from Linux: the long-term bandwidth (policer) estimate, the ACK aggregation
//! allowance and the idle-restart special case. Linux picks ProbeBW's first phase at
//! random; here it comes from the round count, so that runs replay exactly.

use super::{initial_window, CongestionControl, Window};
use crate::net::link::{Duration, Instant};
use crate::tcp::delivery::{CaState, RateSample};

/// Draft section 4.2.3 (`bbr_high_gain`): 2/ln 2, the smallest gain that doubles the
/// delivery rate each round in Startup.
const HIGH_GAIN: f64 = 2.885;
/// `bbr_drain_gain`: drains in one round the queue Startup made.
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
/// `bbr_cwnd_gain`: cwnd is twice the BDP in ProbeBW, room for delayed and stretched ACKs.
const CWND_GAIN: f64 = 2.0;
/// `bbr_pacing_gain`: ProbeBW's cycle, one phase per min RTT.
const PACING_GAIN_CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// `bbr_bw_rtts`: the bandwidth filter's window, in round trips.
const BW_WINDOW_ROUNDS: u64 = 10;
/// `bbr_min_rtt_win_sec`: the min RTT filter's window.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// `bbr_probe_rtt_mode_ms`: time at 4 segments in ProbeRTT.
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// `bbr_cwnd_min_target`: the smallest cwnd, in segments (also ProbeRTT's).
const MIN_CWND_SEGMENTS: usize = 4;
/// `bbr_full_bw_thresh` and `bbr_full_bw_cnt`: Startup ends when 3 rounds in a row do not
/// grow the bandwidth by 25%.
const FULL_BW_THRESH: f64 = 1.25;
const FULL_BW_ROUNDS: u32 = 3;
/// `bbr_pacing_margin_percent`: pace 1% below the estimate, so queues drain.
const PACING_MARGIN: f64 = 0.99;
/// The quantization budget of `bbr_quantization_budget`: 3 send quanta of (at least) 2
/// segments each beyond the BDP.
const QUANTA_SEGMENTS: usize = 6;

/// BBR's states (draft section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// Kathleen Nichols' windowed running maximum (Linux `lib/win_minmax.c`): the best, second
/// best and third best samples of the window, so the maximum is known in O(1) and
/// expires on time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowedMax {
    /// (time, value), best first.
    s: [(u64, u64); 3],
}

impl WindowedMax {
    pub(crate) fn get(&self) -> u64 {
        self.s[0].1
    }

    fn reset(&mut self, t: u64, v: u64) -> u64 {
        self.s = [(t, v); 3];
        v
    }

    /// Folds in `v` measured at `t`; samples older than `window` are forgotten.
    pub(crate) fn update(&mut self, window: u64, t: u64, v: u64) -> u64 {
        let val = (t, v);
        if v >= self.s[0].1 || t.wrapping_sub(self.s[2].0) > window {
            return self.reset(t, v);
        }
        if v >= self.s[1].1 {
            self.s[2] = val;
            self.s[1] = val;
        } else if v >= self.s[2].1 {
            self.s[2] = val;
        }
        // `minmax_subwin_update`: age the best samples out, keeping one per quarter and
        // half of the window.
        let dt = t.wrapping_sub(self.s[0].0);
        if dt > window {
            self.s = [self.s[1], self.s[2], val];
            if t.wrapping_sub(self.s[0].0) > window {
                self.s = [self.s[1], self.s[2], val];
            }
        } else if self.s[1].0 == self.s[0].0 && dt > window / 4 {
            self.s[2] = val;
            self.s[1] = val;
        } else if self.s[2].0 == self.s[1].0 && dt > window / 2 {
            self.s[2] = val;
        }
        self.s[0].1
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Bbr {
    mode: Mode,
    /// BtlBw: the windowed maximum delivery rate, bytes per second, over round counts.
    max_bw: WindowedMax,
    /// RTprop and when it was measured.
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    /// Round trips counted by delivery (draft section 4.1.1.3).
    next_rtt_delivered: u64,
    round_count: u64,
    round_start: bool,
    /// Startup's exit test.
    full_bw: u64,
    full_bw_count: u32,
    full_bw_reached: bool,
    /// ProbeBW's phase and when it began.
    cycle_index: usize,
    cycle_stamp: Instant,
    /// ProbeRTT: when it may end, and whether a round passed since inflight got low.
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    /// cwnd before loss recovery or ProbeRTT, restored after.
    prior_cwnd: usize,
    /// Packet conservation in the first round of fast recovery.
    packet_conservation: bool,
    prev_ca_state: CaState,
    pacing_gain: f64,
    cwnd_gain: f64,
    /// Bytes per second; 0 until first set.
    pacing_rate: u64,
    /// The pacing rate was set from a real SRTT (`has_seen_rtt`).
    has_seen_rtt: bool,
}

impl Bbr {
    pub(crate) fn new() -> Bbr {
        Bbr {
            mode: Mode::Startup,
            max_bw: WindowedMax::default(),
            min_rtt: None,
            min_rtt_stamp: Instant::ZERO,
            next_rtt_delivered: 0,
            round_count: 0,
            round_start: false,
            full_bw: 0,
            full_bw_count: 0,
            full_bw_reached: false,
            cycle_index: 0,
            cycle_stamp: Instant::ZERO,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            packet_conservation: false,
            prev_ca_state: CaState::Open,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            pacing_rate: 0,
            has_seen_rtt: false,
        }
    }

    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    #[cfg(test)]
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    pub(crate) fn bw(&self) -> u64 {
        self.max_bw.get()
    }

    /// `bbr_bdp`: `gain` times the estimated bandwidth-delay product, in bytes; the
    /// initial window until there is an RTT.
    fn inflight(&self, w: &Window, bw: u64, gain: f64) -> usize {
        match self.min_rtt {
            None => initial_window(w.mss),
            Some(rtt) => (bw as f64 * rtt.as_secs_f64() * gain).ceil() as usize,
        }
    }

    /// `bbr_init_pacing_rate_from_rtt`: the initial window per SRTT (1 ms before any),
    /// times the high gain.
    fn initial_pacing_rate(w: &Window, srtt: Option<Duration>) -> u64 {
        let rtt = srtt.unwrap_or(Duration::from_millis(1)).as_secs_f64();
        (w.cwnd as f64 / rtt * HIGH_GAIN * PACING_MARGIN) as u64
    }

    /// `bbr_save_cwnd`: remember cwnd before recovery or ProbeRTT cuts it.
    fn save_cwnd(&mut self, w: &Window) {
        if self.prev_ca_state < CaState::Recovery && self.mode != Mode::ProbeRtt {
            self.prior_cwnd = w.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(w.cwnd);
        }
    }

    /// `bbr_update_bw`: round counting and the bandwidth filter.
    fn update_bw(&mut self, rs: &RateSample) {
        self.round_start = false;
        if rs.newly_delivered == 0 {
            return;
        }
        if rs.prior_delivered >= self.next_rtt_delivered {
            self.next_rtt_delivered = rs.total_delivered;
            self.round_count += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        let Some(bw) = rs.rate() else {
            return;
        };
        // An application-limited sample is a lower bound: it counts only if it beats
        // the estimate.
        if !rs.is_app_limited || bw >= self.bw() {
            self.max_bw.update(BW_WINDOW_ROUNDS, self.round_count, bw);
        }
    }

    /// `bbr_is_next_cycle_phase`.
    fn is_next_cycle_phase(&self, w: &Window, now: Instant, rs: &RateSample) -> bool {
        let full_length = self.min_rtt.is_some_and(|m| now - self.cycle_stamp > m);
        if self.pacing_gain == 1.0 {
            return full_length;
        }
        let inflight = rs.prior_in_flight;
        if self.pacing_gain > 1.0 {
            // Probe until the queue is built or a loss says there is no more room.
            return full_length
                && (rs.losses > 0 || inflight >= self.inflight(w, self.bw(), self.pacing_gain));
        }
        // Drain until what the probe queued is gone.
        full_length || inflight <= self.inflight(w, self.bw(), 1.0)
    }

    fn advance_cycle_phase(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % PACING_GAIN_CYCLE.len();
        self.cycle_stamp = now;
    }

    /// `bbr_reset_probe_bw_mode`: ProbeBW from any phase but the draining one.
    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        let skip = (self.round_count % (PACING_GAIN_CYCLE.len() as u64 - 1)) as usize;
        self.cycle_index = PACING_GAIN_CYCLE.len() - 1 - skip;
        self.advance_cycle_phase(now);
    }

    fn reset_mode(&mut self, now: Instant) {
        if self.full_bw_reached {
            self.enter_probe_bw(now);
        } else {
            self.mode = Mode::Startup;
        }
    }

    /// `bbr_check_full_bw_reached`: Startup's pipe is full when three rounds did not
    /// grow the bandwidth by a quarter.
    fn check_full_bw_reached(&mut self, rs: &RateSample) {
        if self.full_bw_reached || !self.round_start || rs.is_app_limited {
            return;
        }
        if self.bw() as f64 >= self.full_bw as f64 * FULL_BW_THRESH {
            self.full_bw = self.bw();
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_ROUNDS;
    }

    /// `bbr_check_drain`.
    fn check_drain(&mut self, w: &mut Window, now: Instant, rs: &RateSample) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
            w.ssthresh = self.inflight(w, self.bw(), 1.0);
        }
        if self.mode == Mode::Drain && rs.in_flight <= self.inflight(w, self.bw(), 1.0) {
            self.enter_probe_bw(now);
        }
    }

    /// `bbr_update_min_rtt`: the 10 s min RTT filter, and ProbeRTT.
    fn update_min_rtt(&mut self, w: &mut Window, now: Instant, rs: &RateSample) {
        let expired = self.min_rtt.is_some() && now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = rs.rtt {
            if self.min_rtt.is_none_or(|m| rtt < m) || expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now;
            }
        }
        if expired && self.mode != Mode::ProbeRtt {
            self.mode = Mode::ProbeRtt;
            self.save_cwnd(w);
            self.probe_rtt_done = None;
        }
        if self.mode == Mode::ProbeRtt {
            match self.probe_rtt_done {
                None if rs.in_flight <= MIN_CWND_SEGMENTS * w.mss => {
                    self.probe_rtt_done = Some(now + PROBE_RTT_DURATION);
                    self.probe_rtt_round_done = false;
                    self.next_rtt_delivered = rs.total_delivered;
                }
                Some(done) => {
                    if self.round_start {
                        self.probe_rtt_round_done = true;
                    }
                    if self.probe_rtt_round_done && now > done {
                        // `bbr_check_probe_rtt_done`.
                        self.min_rtt_stamp = now;
                        w.cwnd = w.cwnd.max(self.prior_cwnd);
                        self.reset_mode(now);
                    }
                }
                None => {}
            }
        }
    }

    /// `bbr_update_gains`.
    fn update_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.mode {
            Mode::Startup => (HIGH_GAIN, HIGH_GAIN),
            Mode::Drain => (DRAIN_GAIN, HIGH_GAIN),
            Mode::ProbeBw => (PACING_GAIN_CYCLE[self.cycle_index], CWND_GAIN),
            Mode::ProbeRtt => (1.0, 1.0),
        };
    }

    /// `bbr_set_cwnd_to_recover_or_restore`: packet conservation in the first round of
    /// fast recovery, the old cwnd back when recovery ends. Returns the cwnd to use when
    /// conservation decides it.
    fn recover_or_restore(&mut self, w: &mut Window, rs: &RateSample) -> Option<usize> {
        let state = rs.ca_state;
        let mut cwnd = w.cwnd;
        if rs.losses > 0 {
            cwnd = cwnd.saturating_sub(rs.losses).max(w.mss);
        }
        if state == CaState::Recovery && self.prev_ca_state != CaState::Recovery {
            self.packet_conservation = true;
            self.next_rtt_delivered = rs.total_delivered;
            cwnd = rs.in_flight + rs.newly_delivered;
        } else if self.prev_ca_state >= CaState::Recovery && state < CaState::Recovery {
            cwnd = cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.prev_ca_state = state;
        if self.packet_conservation {
            return Some(cwnd.max(rs.in_flight + rs.newly_delivered));
        }
        w.cwnd = cwnd;
        None
    }

    /// `bbr_set_cwnd`.
    fn set_cwnd(&mut self, w: &mut Window, rs: &RateSample) {
        let acked = rs.newly_delivered;
        let min_cwnd = MIN_CWND_SEGMENTS * w.mss;
        if acked > 0 {
            if let Some(cwnd) = self.recover_or_restore(w, rs) {
                w.cwnd = cwnd;
            } else {
                let mut target = self.inflight(w, self.bw(), self.cwnd_gain);
                target += QUANTA_SEGMENTS * w.mss;
                if self.mode == Mode::ProbeBw && self.cycle_index == 0 {
                    target += 2 * w.mss;
                }
                if self.full_bw_reached {
                    w.cwnd = (w.cwnd + acked).min(target);
                } else if w.cwnd < target || rs.total_delivered < initial_window(w.mss) as u64 {
                    w.cwnd += acked;
                }
                w.cwnd = w.cwnd.max(min_cwnd);
            }
        }
        if self.mode == Mode::ProbeRtt {
            w.cwnd = w.cwnd.min(min_cwnd);
        }
    }
}

impl CongestionControl for Bbr {
    /// BBR moves cwnd on rate samples only.
    fn on_ack(&mut self, _w: &mut Window, _now: Instant, _acked: usize, _srtt: Option<Duration>) {}

    /// `bbr_ssthresh`: remember cwnd; the first round of recovery conserves packets
    /// (see `recover_or_restore`).
    fn on_loss(&mut self, w: &mut Window, _now: Instant, _flight: usize) {
        self.save_cwnd(w);
    }

    /// `bbr_set_state(TCP_CA_Loss)`: Startup's bandwidth test starts over, and the
    /// window falls to one segment (`tcp_enter_loss`) until recovery restores it.
    fn on_rto(&mut self, w: &mut Window, _now: Instant, _flight: usize) {
        self.save_cwnd(w);
        self.prev_ca_state = CaState::Loss;
        self.full_bw = 0;
        self.round_start = true;
        w.cwnd = w.mss;
    }

    fn on_repeated_rto(&mut self, w: &mut Window) {
        w.cwnd = w.mss;
    }

    fn wants_rate_samples(&self) -> bool {
        true
    }

    /// `bbr_set_cwnd` runs on every ACK (Linux `cong_control`, which bypasses PRR) and
    /// keeps to packet conservation in recovery.
    fn controls_recovery_window(&self) -> bool {
        true
    }

    /// `bbr_main`: update the model, then the pacing rate and cwnd from it.
    fn on_rate_sample(&mut self, w: &mut Window, now: Instant, rs: &RateSample) {
        if !self.has_seen_rtt && rs.srtt.is_some() {
            self.has_seen_rtt = true;
            self.pacing_rate = Self::initial_pacing_rate(w, rs.srtt);
        }
        self.update_bw(rs);
        if self.mode == Mode::ProbeBw && self.is_next_cycle_phase(w, now, rs) {
            self.advance_cycle_phase(now);
        }
        self.check_full_bw_reached(rs);
        self.check_drain(w, now, rs);
        self.update_min_rtt(w, now, rs);
        self.update_gains();
        // `bbr_set_pacing_rate`: never lower in Startup, before the pipe is known full.
        let rate = (self.bw() as f64 * self.pacing_gain * PACING_MARGIN) as u64;
        if rate > 0 && (self.full_bw_reached || rate > self.pacing_rate) {
            self.pacing_rate = rate;
        }
        self.set_cwnd(w, rs);
    }

    /// `bbr_update_min_rtt`: ProbeRTT's samples are application-limited, so they do not
    /// push the bandwidth estimate down (nor age it out).
    fn app_limited(&self) -> bool {
        self.mode == Mode::ProbeRtt
    }

    fn pacing_rate(&self, w: &Window, srtt: Option<Duration>) -> Option<u64> {
        if self.pacing_rate > 0 {
            Some(self.pacing_rate)
        } else {
            Some(Self::initial_pacing_rate(w, srtt))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn windowed_max_keeps_the_best_within_the_window_and_forgets_it_after() {
        let mut f = WindowedMax::default();
        assert_eq!(f.update(10, 1, 100), 100);
        assert_eq!(f.update(10, 2, 50), 100);
        assert_eq!(f.update(10, 5, 80), 100);
        assert_eq!(f.update(10, 11, 60), 100);
        // Round 12: the 100 of round 1 is older than 10 rounds; the next best (80, from
        // round 5) takes over, then 60 once that expires too.
        assert_eq!(f.update(10, 12, 10), 80);
        assert_eq!(f.update(10, 16, 10), 60);
        // A new maximum replaces everything at once.
        assert_eq!(f.update(10, 17, 500), 500);
        assert_eq!(f.update(10, 18, 20), 500);
    }

    /// A fluid model of one bottleneck: `bw` bytes per second, `rtprop` of propagation
    /// delay, an unlimited FIFO queue in front; one ACK, one rate sample per round trip.
    struct Path {
        bw: u64,
        rtprop: Duration,
        queue: usize,
        in_flight: usize,
        delivered: u64,
        now: Instant,
    }

    impl Path {
        fn new(bw: u64, rtprop: Duration) -> Path {
            Path {
                bw,
                rtprop,
                queue: 0,
                in_flight: 0,
                delivered: 0,
                now: Instant::from_secs(1),
            }
        }

        fn bdp(&self) -> usize {
            (self.bw as f64 * self.rtprop.as_secs_f64()) as usize
        }

        /// One round trip: the sender offers what pacing and cwnd allow, the bottleneck
        /// delivers at most one BDP of it, the rest queues.
        fn round(&mut self, bbr: &mut Bbr, w: &mut Window) {
            let rtt = self.rtprop + Duration::from_secs_f64(self.queue as f64 / self.bw as f64);
            let pacing = bbr.pacing_rate(w, Some(rtt)).unwrap();
            let offered = ((pacing as f64 * self.rtprop.as_secs_f64()) as usize)
                .min(w.cwnd.saturating_sub(self.queue));
            let avail = self.queue + offered;
            let delivered = avail.min(self.bdp());
            self.queue = avail - delivered;
            let prior_in_flight = self.in_flight;
            self.in_flight = self.queue + delivered;
            self.now += self.rtprop;
            let rs = RateSample {
                delivered: delivered as u64,
                interval: Some(self.rtprop),
                prior_delivered: self.delivered,
                total_delivered: self.delivered + delivered as u64,
                newly_delivered: delivered,
                rtt: Some(rtt),
                prior_in_flight,
                in_flight: self.in_flight,
                srtt: Some(rtt),
                ..RateSample::default()
            };
            self.delivered += delivered as u64;
            bbr.on_rate_sample(w, self.now, &rs);
        }
    }

    fn window() -> Window {
        Window::new(MSS)
    }

    /// Draft section 4.3: Startup doubles the sending rate each round until three rounds
    /// do not grow the bandwidth by 25%, Drain empties the queue it built, and ProbeBW
    /// then holds about one BDP in flight, cycling its pacing gain 1.25, 0.75, 1, ...
    #[test]
    fn startup_fills_the_pipe_then_drains_to_probe_bw() {
        // 10 Mbit/s, 40 ms: a BDP of 50 kB, 50 segments.
        let mut path = Path::new(1_250_000, Duration::from_millis(40));
        let (mut bbr, mut w) = (Bbr::new(), window());
        let mut modes = vec![bbr.mode()];
        for _ in 0..30 {
            path.round(&mut bbr, &mut w);
            if modes.last() != Some(&bbr.mode()) {
                modes.push(bbr.mode());
            }
            if bbr.mode() == Mode::ProbeBw {
                break;
            }
        }
        assert_eq!(modes, [Mode::Startup, Mode::Drain, Mode::ProbeBw]);
        assert_eq!(bbr.bw(), 1_250_000);
        assert_eq!(bbr.min_rtt(), Some(Duration::from_millis(40)));
        let (mut gains, mut queues) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            path.round(&mut bbr, &mut w);
            gains.push(bbr.pacing_gain);
            queues.push(path.queue);
            assert_eq!(bbr.mode(), Mode::ProbeBw);
            assert!(w.cwnd <= 2 * path.bdp() + 8 * MSS, "cwnd {}", w.cwnd);
            // The probe's queue is bounded by cwnd, and drained by the next phase.
            assert!(path.queue <= path.bdp(), "queue {}", path.queue);
        }
        let probe = gains.iter().position(|&g| g == 1.25).expect("probes");
        assert!(gains[probe..].contains(&0.75), "{gains:?}");
        // The queue Startup built (more than a BDP) is gone, and the probes' queues are
        // drained again.
        assert!(
            queues[24..].iter().any(|&q| q < path.bdp() / 10),
            "{queues:?}"
        );
    }

    /// Draft section 4.3.4: after 10 s without a lower RTT sample, ProbeRTT holds 4
    /// segments in flight for 200 ms and a round trip, then restores cwnd and goes back
    /// to ProbeBW (the pipe was already known full).
    #[test]
    fn probe_rtt_after_ten_seconds_without_a_lower_rtt() {
        let mut path = Path::new(1_250_000, Duration::from_millis(40));
        let (mut bbr, mut w) = (Bbr::new(), window());
        let start = path.now;
        while bbr.mode() != Mode::ProbeRtt {
            path.round(&mut bbr, &mut w);
            assert!(path.now - start < Duration::from_secs(12), "no ProbeRTT");
        }
        assert!(path.now - start >= MIN_RTT_WINDOW);
        // Its samples are application-limited: they keep the bandwidth estimate.
        assert!(bbr.app_limited());
        let bw = bbr.bw();
        let entered = path.now;
        while bbr.mode() == Mode::ProbeRtt {
            path.round(&mut bbr, &mut w);
            assert!(w.cwnd <= MIN_CWND_SEGMENTS * MSS || bbr.mode() != Mode::ProbeRtt);
        }
        assert!(path.now - entered >= PROBE_RTT_DURATION);
        assert!(path.now - entered < Duration::from_millis(400));
        assert_eq!(bbr.mode(), Mode::ProbeBw);
        assert!(!bbr.app_limited());
        assert_eq!(bbr.bw(), bw);
        // Back to ProbeBW's window: twice the BDP.
        assert!(w.cwnd >= 2 * path.bdp(), "cwnd {}", w.cwnd);
    }

    /// `bbr_set_cwnd_to_recover_or_restore`: entering fast recovery, cwnd becomes what
    /// is in flight plus what this ACK delivered (packet conservation), stays at least
    /// that for the first round, and the cwnd from before recovery comes back when it ends.
    #[test]
    fn fast_recovery_conserves_packets_then_restores_cwnd() {
        let mut path = Path::new(1_250_000, Duration::from_millis(40));
        let (mut bbr, mut w) = (Bbr::new(), window());
        for _ in 0..30 {
            path.round(&mut bbr, &mut w);
        }
        let before = w.cwnd;
        let rs = |state, delivered: usize, in_flight: usize| RateSample {
            newly_delivered: delivered,
            prior_delivered: path.delivered,
            total_delivered: path.delivered + delivered as u64,
            in_flight,
            prior_in_flight: in_flight,
            ca_state: state,
            ..RateSample::default()
        };
        bbr.on_loss(&mut w, path.now, before);
        bbr.on_rate_sample(&mut w, path.now, &rs(CaState::Recovery, 1000, 20_000));
        assert_eq!(w.cwnd, 21_000);
        bbr.on_rate_sample(&mut w, path.now, &rs(CaState::Recovery, 2000, 20_000));
        assert_eq!(w.cwnd, 22_000);
        bbr.on_rate_sample(&mut w, path.now, &rs(CaState::Open, 1000, 10_000));
        assert_eq!(w.cwnd, before);
    }

    /// A timeout takes cwnd to one segment; it comes back when the loss episode ends.
    #[test]
    fn timeout_collapses_cwnd_until_the_episode_ends() {
        let mut path = Path::new(1_250_000, Duration::from_millis(40));
        let (mut bbr, mut w) = (Bbr::new(), window());
        for _ in 0..30 {
            path.round(&mut bbr, &mut w);
        }
        let before = w.cwnd;
        bbr.on_rto(&mut w, path.now, before);
        assert_eq!(w.cwnd, MSS);
        let rs = RateSample {
            newly_delivered: MSS,
            total_delivered: path.delivered + MSS as u64,
            prior_delivered: path.delivered,
            ca_state: CaState::Open,
            ..RateSample::default()
        };
        bbr.on_rate_sample(&mut w, path.now, &rs);
        assert_eq!(w.cwnd, before);
    }
}
