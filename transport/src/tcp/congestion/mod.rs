//! Congestion control behind one trait (RFC 5681 shape): the connection reports ACKs,
//! losses and timeouts; the algorithm owns cwnd and ssthresh. Fast-recovery window
//! inflation (RFC 6582) stays in the connection, common to all algorithms.

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

use core::fmt;
use core::str::FromStr;

use crate::net::link::{Duration, Instant};

/// An algorithm that decides how much may be in flight.
pub trait CongestionControl: fmt::Debug + Send {
    fn name(&self) -> &'static str;
    /// `acked` bytes newly acknowledged by a cumulative ACK outside recovery.
    fn on_ack(&mut self, now: Instant, acked: usize, srtt: Option<Duration>);
    /// Loss detected by duplicate ACKs (RFC 5681 section 3.2 step 2), `flight` bytes
    /// outstanding.
    fn on_loss(&mut self, now: Instant, flight: usize);
    /// Retransmission timeout (RFC 5681 section 3.1): back to one segment.
    fn on_rto(&mut self, now: Instant, flight: usize);
    fn cwnd(&self) -> usize;
    fn ssthresh(&self) -> usize;
    /// The sender MSS changed (set once, after the handshake).
    fn set_mss(&mut self, mss: usize);
}

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    NewReno,
    #[default]
    Cubic,
}

impl Algorithm {
    pub fn build(self, mss: usize) -> Box<dyn CongestionControl> {
        match self {
            Algorithm::NewReno => Box::new(NewReno::new(mss)),
            Algorithm::Cubic => Box::new(Cubic::new(mss)),
        }
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
pub fn initial_window(mss: usize) -> usize {
    (10 * mss).min((2 * mss).max(14600))
}
