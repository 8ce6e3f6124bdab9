//! Congestion control behind one trait (RFC 5681 shape): the connection reports ACKs,
//! losses and timeouts to its [`Congestion`], whose algorithm moves cwnd and ssthresh. Fast-recovery window
//! inflation (RFC 6582) stays in the connection, common to all algorithms. A model-based
//! algorithm (BBR) also gets a delivery-rate sample on every ACK and sets the pacing rate;
//! the others may be paced by cwnd / SRTT as Linux does (`TcpConfig::pacing`).

mod bbr;
mod cubic;
mod hystart;
mod newreno;

use bbr::Bbr;
use cubic::Cubic;
use newreno::NewReno;

use super::delivery::RateSample;
use super::seq::SeqNumber;
use hystart::RttSample;

use core::fmt;
use core::str::FromStr;

use crate::net::link::{Duration, Instant};

/// What every algorithm moves (RFC 5681 section 3.1): the sender MSS, the congestion
/// window and the slow-start threshold.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) mss: usize,
    pub(crate) cwnd: usize,
    pub(crate) ssthresh: usize,
}

impl Window {
    /// The RFC 6928 initial window, slow start until the first loss.
    fn new(mss: usize) -> Window {
        Window {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
        }
    }

    pub(crate) fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// Slow start: grow by the bytes acked, at most 2 MSS per ACK (RFC 3465, L = 2).
    pub(crate) fn slow_start(&mut self, acked: usize) {
        self.cwnd += acked.min(2 * self.mss);
    }

    /// cwnd in segments.
    pub(crate) fn segments(&self) -> f64 {
        self.cwnd as f64 / self.mss as f64
    }
}

/// How one algorithm moves the [`Window`]: the connection reports ACKs, losses and
/// timeouts.
pub(crate) trait CongestionControl: fmt::Debug + Send {
    /// `acked` bytes newly acknowledged by a cumulative ACK outside recovery.
    fn on_ack(&mut self, w: &mut Window, now: Instant, acked: usize, srtt: Option<Duration>);
    /// Loss detected by duplicate ACKs (RFC 5681 section 3.2 step 2), `flight` bytes
    /// outstanding.
    fn on_loss(&mut self, w: &mut Window, now: Instant, flight: usize);
    /// Retransmission timeout (RFC 5681 section 3.1): back to one segment.
    fn on_rto(&mut self, w: &mut Window, now: Instant, flight: usize);
    /// A further timeout in the same loss episode (RFC 5681 section 3.1: ssthresh is
    /// held when the segment was already resent by the timer): back to one segment,
    /// ssthresh and the algorithm's memory of the loss kept.
    fn on_repeated_rto(&mut self, w: &mut Window);

    /// An ACK measured a round trip (Linux `pkts_acked`): CUBIC's HyStart.
    fn on_rtt_sample(&mut self, _w: &mut Window, _now: Instant, _s: &RttSample) {}
    /// Whether the connection must measure delivery rates for
    /// [`CongestionControl::on_rate_sample`].
    fn wants_rate_samples(&self) -> bool {
        false
    }
    /// Whether the algorithm sets the window itself on every ACK, in recovery too (Linux
    /// `cong_control`, as BBR's packet conservation): then proportional rate reduction
    /// (RFC 6937) does not apply, and recovery sends while pipe is below cwnd.
    fn controls_recovery_window(&self) -> bool {
        false
    }
    /// Every ACK, after loss recovery has processed it, with its delivery-rate sample
    /// (draft-cheng-iccrg-delivery-rate-estimation section 3.4).
    fn on_rate_sample(&mut self, _w: &mut Window, _now: Instant, _rs: &RateSample) {}
    /// Whether the sender is to count as application-limited now (BBR in ProbeRTT:
    /// its small window says nothing about the path, draft-cheng-iccrg-delivery-rate-
    /// estimation section 3.5).
    fn app_limited(&self) -> bool {
        false
    }
    /// The algorithm's own pacing rate in bytes per second, if it paces.
    fn pacing_rate(&self, _w: &Window, _srtt: Option<Duration>) -> Option<u64> {
        None
    }
}

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    NewReno,
    #[default]
    Cubic,
    /// BBRv1 as Linux's `tcp_bbr.c` implements it.
    Bbr,
}

/// A connection's congestion state: the window and the algorithm that moves it.
#[derive(Debug)]
pub(crate) struct Congestion {
    window: Window,
    algorithm: Box<dyn CongestionControl>,
    /// Pace an algorithm that sets no pacing rate of its own (Linux's default pacing
    /// of CUBIC and Reno).
    pacing: bool,
}

impl Congestion {
    pub(crate) fn new(algorithm: Algorithm, mss: usize) -> Congestion {
        let algorithm: Box<dyn CongestionControl> = match algorithm {
            Algorithm::NewReno => Box::new(NewReno::default()),
            Algorithm::Cubic => Box::new(Cubic::default()),
            Algorithm::Bbr => Box::new(Bbr::new()),
        };
        Congestion {
            window: Window::new(mss),
            algorithm,
            pacing: false,
        }
    }

    /// Paces an algorithm without a pacing rate of its own at cwnd / SRTT, times 2 in
    /// slow start and 1.2 after (Linux `tcp_update_pacing_rate`, `tcp_pacing_ss_ratio`
    /// and `tcp_pacing_ca_ratio`).
    pub(crate) fn with_pacing(mut self, pacing: bool) -> Congestion {
        self.pacing = pacing;
        self
    }

    pub(crate) fn cwnd(&self) -> usize {
        self.window.cwnd
    }

    pub(crate) fn ssthresh(&self) -> usize {
        self.window.ssthresh
    }

    /// The sender MSS was negotiated (once, after the handshake): start over from the
    /// initial window it gives.
    pub(crate) fn set_mss(&mut self, mss: usize) {
        self.window.mss = mss;
        self.window.cwnd = initial_window(mss);
    }

    pub(crate) fn on_ack(&mut self, now: Instant, acked: usize, srtt: Option<Duration>) {
        self.algorithm.on_ack(&mut self.window, now, acked, srtt);
    }

    pub(crate) fn on_loss(&mut self, now: Instant, flight: usize) {
        self.algorithm.on_loss(&mut self.window, now, flight);
    }

    pub(crate) fn on_rto(&mut self, now: Instant, flight: usize) {
        self.algorithm.on_rto(&mut self.window, now, flight);
    }

    pub(crate) fn on_repeated_rto(&mut self) {
        self.algorithm.on_repeated_rto(&mut self.window);
    }

    /// An ACK that advanced SND.UNA to `snd_una` measured `rtt`.
    pub(crate) fn on_rtt_sample(
        &mut self,
        now: Instant,
        rtt: Duration,
        srtt: Option<Duration>,
        snd_una: SeqNumber,
        snd_nxt: SeqNumber,
    ) {
        let s = RttSample {
            rtt,
            srtt,
            snd_una,
            snd_nxt,
            paced: self.pacing,
        };
        self.algorithm.on_rtt_sample(&mut self.window, now, &s);
    }

    pub(crate) fn wants_rate_samples(&self) -> bool {
        self.algorithm.wants_rate_samples()
    }

    pub(crate) fn controls_recovery_window(&self) -> bool {
        self.algorithm.controls_recovery_window()
    }

    pub(crate) fn on_rate_sample(&mut self, now: Instant, rs: &RateSample) {
        self.algorithm.on_rate_sample(&mut self.window, now, rs);
    }

    pub(crate) fn app_limited(&self) -> bool {
        self.algorithm.app_limited()
    }

    /// Bytes per second the connection may send at, `None` when it is not paced.
    pub(crate) fn pacing_rate(&self, srtt: Option<Duration>) -> Option<u64> {
        if let Some(rate) = self.algorithm.pacing_rate(&self.window, srtt) {
            return Some(rate);
        }
        if !self.pacing {
            return None;
        }
        let srtt = srtt?.as_micros().max(1);
        let w = &self.window;
        let percent = if w.cwnd < w.ssthresh / 2 { 200 } else { 120 };
        Some((w.cwnd as u128 * 1_000_000 * percent / 100 / srtt) as u64)
    }
}

impl Algorithm {
    /// The name `FromStr` takes (Linux's `tcp_congestion_control` names).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::NewReno => "reno",
            Algorithm::Cubic => "cubic",
            Algorithm::Bbr => "bbr",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Algorithm, String> {
        match s {
            "newreno" | "reno" => Ok(Algorithm::NewReno),
            "cubic" => Ok(Algorithm::Cubic),
            "bbr" => Ok(Algorithm::Bbr),
            _ => Err(format!(
                "`{s}` is not a congestion control (newreno, cubic, bbr)"
            )),
        }
    }
}

/// RFC 6928 initial window: min(10*MSS, max(2*MSS, 14600)).
fn initial_window(mss: usize) -> usize {
    (10 * mss).min((2 * mss).max(14600))
}
