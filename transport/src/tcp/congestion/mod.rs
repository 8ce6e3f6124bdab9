//! Congestion control behind one trait (RFC 5681 shape): the connection reports ACKs,
//! losses and timeouts to its [`Congestion`], whose algorithm moves cwnd and ssthresh. Fast-recovery window
//! inflation (RFC 6582) stays in the connection, common to all algorithms.

mod cubic;
mod newreno;

use cubic::Cubic;
use newreno::NewReno;

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
}

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    NewReno,
    #[default]
    Cubic,
}

/// A connection's congestion state: the window and the algorithm that moves it.
#[derive(Debug)]
pub(crate) struct Congestion {
    window: Window,
    algorithm: Box<dyn CongestionControl>,
}

impl Congestion {
    pub(crate) fn new(algorithm: Algorithm, mss: usize) -> Congestion {
        let algorithm: Box<dyn CongestionControl> = match algorithm {
            Algorithm::NewReno => Box::new(NewReno::default()),
            Algorithm::Cubic => Box::new(Cubic::default()),
        };
        Congestion {
            window: Window::new(mss),
            algorithm,
        }
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
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Algorithm, String> {
        match s {
            "newreno" | "reno" => Ok(Algorithm::NewReno),
            "cubic" => Ok(Algorithm::Cubic),
            _ => Err(format!(
                "`{s}` is not a congestion control (newreno, cubic)"
            )),
        }
    }
}

/// RFC 6928 initial window: min(10*MSS, max(2*MSS, 14600)).
fn initial_window(mss: usize) -> usize {
    (10 * mss).min((2 * mss).max(14600))
}
