//! The connection's timers (one [`TimerTable`](crate::tcp::timer::TimerTable)):
//! retransmission (RFC 6298), delayed ACK, zero-window probe, keep-alive, TIME-WAIT and
//! the user timeout.

use super::{AckPending, Connection, State};
use crate::net::link::Instant;
use crate::tcp::error::ConnectionError;
use crate::tcp::timer::Timer;

/// Largest exponent of the zero-window probe backoff (RFC 9293 section 3.8.6.1 leaves the
/// schedule open): the wait doubles up to RTO * 2^10, and never exceeds the maximum RTO
/// (RFC 6298 section 2.5); the cap keeps the shift from overflowing.
const MAX_PROBE_BACKOFF: u32 = 10;

impl Connection {
    /// (Re)starts the user timeout (RFC 9293 section 3.8.3, RFC 5482).
    pub(super) fn arm_user_timeout(&mut self, now: Instant) {
        self.timers
            .set(Timer::UserTimeout, now + self.cfg.user_timeout);
    }

    /// When [`Connection::on_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.expire(now) {
            match timer {
                Timer::Retransmit => self.on_retransmit_timeout(now),
                Timer::Tlp => self.on_tlp_timeout(now),
                Timer::Reorder => {
                    if self.rack_enabled() {
                        self.rack_detect_loss(now);
                    }
                }
                Timer::DelayedAck => {
                    if self.pending.ack == AckPending::Delayed {
                        self.pending.ack = AckPending::Now;
                    }
                }
                Timer::ZeroWindowProbe => {
                    let fin_waiting = self.fin_queued && !self.fin_sent;
                    let probing = self.snd_wnd == 0 && (!self.send_buf.is_empty() || fin_waiting);
                    if probing
                        && self.orphaned
                        && self.zero_window_backoff >= self.cfg.orphan_retries
                    {
                        // Linux `tcp_orphan_retries`: nobody waits for this data.
                        self.stats.orphans_timed_out += 1;
                        self.fail(ConnectionError::TimedOut);
                    } else if probing {
                        self.pending.probe = true;
                        self.stats.zero_window_probes += 1;
                        // Backoff per episode, not over the connection's lifetime.
                        self.zero_window_backoff += 1;
                        let backoff = self.zero_window_backoff.min(MAX_PROBE_BACKOFF);
                        let wait = self
                            .rtt
                            .rto()
                            .saturating_mul(1 << backoff)
                            .min(self.cfg.max_rto);
                        self.timers.set(Timer::ZeroWindowProbe, now + wait);
                    } else if self.snd_wnd > 0 && self.flight() == 0 && !self.send_buf.is_empty() {
                        // RFC 1122 section 4.2.3.4: the override timeout of sender
                        // silly-window avoidance passed with nothing in flight.
                        self.pending.sws_override = true;
                        self.stats.sws_overrides += 1;
                    }
                }
                Timer::KeepAlive => {
                    if self.keepalive_probes_sent >= self.cfg.keepalive_probes {
                        self.fail(ConnectionError::TimedOut);
                    } else {
                        self.keepalive_probes_sent += 1;
                        self.stats.keepalive_probes += 1;
                        self.pending.probe = true;
                        self.timers
                            .set(Timer::KeepAlive, now + self.cfg.keepalive_interval);
                    }
                }
                Timer::TimeWait if self.state == State::FinWait2 => {
                    self.stats.orphans_timed_out += 1;
                    self.abort_orphan(ConnectionError::TimedOut);
                }
                Timer::TimeWait => self.end_time_wait(),
                // The segment it held goes out with the next `poll_transmit`.
                Timer::Pacing => {}
                Timer::Reclaim => self.reclaim(),
                Timer::UserTimeout => {
                    let waiting = self.snd_max > self.snd_una
                        || matches!(self.state, State::SynSent | State::SynReceived);
                    if waiting {
                        self.fail(ConnectionError::TimedOut);
                    }
                }
            }
        }
    }

    /// RFC 6298 section 5.4-5.6 and RFC 5681 section 3.1: retransmit the earliest
    /// unacknowledged segment, back off, collapse the window; give up after the retry
    /// limit (RFC 9293 section 3.8.3).
    fn on_retransmit_timeout(&mut self, now: Instant) {
        let handshake = matches!(self.state, State::SynSent | State::SynReceived);
        if !handshake && self.snd_max == self.snd_una {
            return;
        }
        self.retries += 1;
        let limit = if handshake {
            self.cfg.syn_retries
        } else {
            self.cfg.data_retries
        };
        if self.retries > limit {
            self.fail(ConnectionError::TimedOut);
            return;
        }
        self.stats.timeouts += 1;
        self.rtt.on_timeout();
        self.timed = None;
        self.recovery_on_timeout(now, handshake);
        // RFC 2018 section 8: the receiver may renege on what it SACKed. The first
        // timeout keeps the scoreboard, so going back N skips SACKed data (as Linux
        // does); a second one in a row drops it and resends everything, which also
        // recovers from a receiver that did renege.
        if self.retries > 1 {
            self.scoreboard.clear();
            self.rack.forget_sacks();
        }
        // Go back N: resend from the oldest unacknowledged byte (or the SYN).
        self.snd_nxt = if handshake { self.iss } else { self.snd_una };
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// Linux `tcp_fin_timeout`: an orphan in FIN-WAIT-2 waits this long for the peer's
    /// FIN (on the TIME-WAIT timer, which TIME-WAIT then takes over).
    pub(super) fn arm_fin_wait2_timeout(&mut self, now: Instant) {
        if self.orphaned && self.state == State::FinWait2 {
            self.timers
                .set(Timer::TimeWait, now + self.cfg.fin_wait2_timeout);
        }
    }

    /// TIME-WAIT is over (its 2*MSL timer, or the stack holds too many: Linux
    /// `tcp_max_tw_buckets`): CLOSED.
    pub(crate) fn end_time_wait(&mut self) {
        if self.state == State::TimeWait {
            self.timers.stop_all();
            self.set_state(State::Closed);
        }
    }

    /// Re-arms keep-alive after traffic (call on every segment received).
    pub(super) fn touch_keepalive(&mut self, now: Instant) {
        if let Some(idle) = self.cfg.keepalive {
            if self.state == State::Established {
                self.keepalive_probes_sent = 0;
                self.timers.set(Timer::KeepAlive, now + idle);
            }
        }
    }
}
