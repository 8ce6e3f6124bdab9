//! A connection in TIME-WAIT that the application let go of, kept as the few dozen bytes
//! that recognise and answer the peer's late segments, instead of a whole [`Connection`]
//! (about 1.6 KiB): Linux's `tcp_timewait_sock`, made by `tcp_time_wait` and run by
//! `tcp_timewait_state_process`. It answers exactly as the connection it replaces would
//! (RFC 9293 section 3.10.7.4 in TIME-WAIT, RFC 7323 PAWS, RFC 5961 challenge ACKs and
//! their rate limit); the `time_wait` tests feed both the same segments and compare.
//!
//! [`Connection`]: super::conn::Connection

use std::net::SocketAddrV4;

use super::seq::SeqNumber;
use super::stats::ConnStats;
use super::wire::{Flags, Segment, TcpOptions};
use crate::net::link::{Duration, Instant};

/// RFC 5961 section 7: challenge ACKs are limited per this interval (as in `conn`).
const CHALLENGE_ACK_INTERVAL: Duration = Duration::from_secs(1);
/// Largest window any peer can announce, 2^30 bytes (RFC 7323 section 2.3).
const MAX_WINDOW: usize = 1 << 30;

/// What a segment arriving in TIME-WAIT asks of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWaitInput {
    /// Nothing to send.
    Nothing,
    /// Send [`TimeWait::ack`] before the next segment is processed (the connection's
    /// `ack_due`: a segment with data is answered at once, RFC 5681 section 4.2).
    Ack,
    /// Send [`TimeWait::ack`] once the batch of arriving segments is processed: one ACK
    /// answers every such segment of the batch, as the connection's pending ACK does.
    AckLater,
    /// An acceptable RST (RFC 9293 section 3.10.7.4): the connection is CLOSED; forget it.
    Closed,
}

/// The state of a connection in TIME-WAIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWait {
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    /// SND.NXT = SND.UNA = SND.MAX: our FIN was acknowledged.
    pub(crate) snd_nxt: SeqNumber,
    pub(crate) rcv_nxt: SeqNumber,
    /// The window field of our ACKs (nothing more is received, so it stays).
    pub(crate) window: u16,
    /// The window segments are checked against (RFC 9293 section 3.10.7.4), never 0.
    pub(crate) rcv_wnd: u32,
    /// SND.WL1, SND.WL2, the largest send window seen and the peer's window shift: what
    /// tells an ACK too old to be answered other than by a challenge (RFC 5961 section
    /// 5.2).
    pub(crate) snd_wl1: SeqNumber,
    pub(crate) snd_wl2: SeqNumber,
    pub(crate) max_snd_wnd: u32,
    pub(crate) snd_shift: u8,
    pub(crate) ts_enabled: bool,
    pub(crate) ts_recent: u32,
    pub(crate) ts_offset: u32,
    pub(crate) last_ack_sent: SeqNumber,
    /// Start of the current RFC 5961 section 7 interval and the challenge ACKs sent in it.
    pub(crate) challenge_window: (Instant, u32),
    pub(crate) challenge_ack_limit: u32,
    /// When TIME-WAIT ends (2 MSL after the last FIN).
    pub(crate) deadline: Instant,
    /// 2 MSL, restarted by a retransmitted FIN.
    pub(crate) length: Duration,
}

impl TimeWait {
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// When TIME-WAIT ends and the 4-tuple may be used again.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A segment for this 4-tuple arrived; counters go to `stats`. Mirrors
    /// `Connection::handle_segment` in TIME-WAIT step by step.
    pub fn handle_segment(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        stats: &mut ConnStats,
    ) -> TimeWaitInput {
        stats.segs_in += 1;
        let f = seg.flags;
        if f.rst {
            stats.rsts_in += 1;
        }
        // RFC 7323 section 5.3 PAWS.
        if self.ts_enabled && !f.rst {
            if let Some((tsval, _)) = seg.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    stats.paws_drops += 1;
                    return self.ack_invalid(now, seg, stats);
                }
            }
        }
        if !self.acceptable(seg) {
            if f.rst {
                return TimeWaitInput::Nothing;
            }
            stats.dup_segments += 1;
            let answer = self.ack_invalid(now, seg, stats);
            if f.fin {
                // A retransmitted FIN (below RCV.NXT) restarts the 2 MSL timeout.
                self.deadline = now + self.length;
            }
            return answer;
        }
        if f.rst {
            // RFC 5961 section 3.2: only an exact match resets; else challenge.
            if seg.seq == self.rcv_nxt {
                return TimeWaitInput::Closed;
            }
            return self.challenge_ack(now, stats);
        }
        if f.syn {
            // RFC 5961 section 4.2.
            return self.challenge_ack(now, stats);
        }
        if !f.ack {
            return TimeWaitInput::Nothing;
        }
        let mut answer = TimeWaitInput::Nothing;
        if seg.ack > self.snd_nxt {
            // Acknowledges something never sent (RFC 9293: send ACK, drop).
            return self.ack_invalid(now, seg, stats);
        }
        if seg.ack < self.snd_nxt - (self.max_snd_wnd as usize).min(MAX_WINDOW) {
            return self.challenge_ack(now, stats);
        }
        // The send window's update (RFC 9293 section 3.10.7.4, SND.WL1/SND.WL2 rule):
        // only the largest window seen matters here.
        if self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= seg.ack) {
            let wnd = usize::from(seg.window) << self.snd_shift;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd.min(u32::MAX as usize) as u32);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
        }
        // RFC 7323 section 4.3: remember the timestamp to echo.
        if let Some((tsval, _)) = seg.options.timestamps {
            if self.ts_enabled && seg.seq <= self.last_ack_sent {
                self.ts_recent = tsval;
            }
        }
        if f.fin {
            // A retransmitted FIN: ACK it and restart 2 MSL.
            self.deadline = now + self.length;
            answer = TimeWaitInput::AckLater;
        } else if seg.seq_len() > 0 {
            answer = TimeWaitInput::AckLater;
        }
        answer
    }

    /// Our ACK, as the connection would send it at `now`.
    pub fn ack(&mut self, now: Instant, stats: &mut ConnStats) -> Segment<'static> {
        stats.segs_out += 1;
        self.last_ack_sent = self.rcv_nxt;
        let mut options = TcpOptions::default();
        if self.ts_enabled {
            let ts_now = (now.total_millis() as u32).wrapping_add(self.ts_offset);
            options.timestamps = Some((ts_now, self.ts_recent));
        }
        Segment {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: self.snd_nxt,
            ack: self.rcv_nxt,
            flags: Flags {
                ack: true,
                ..Flags::default()
            },
            window: self.window,
            urgent: 0,
            options,
            payload: &[],
        }
    }

    /// RFC 9293 section 3.10.7.4 sequence number check.
    fn acceptable(&self, seg: &Segment<'_>) -> bool {
        let len = seg.seq_len();
        let wnd = self.rcv_wnd as usize;
        if len == 0 {
            seg.seq.in_window(self.rcv_nxt, wnd)
        } else {
            seg.seq.in_window(self.rcv_nxt, wnd)
                || (seg.seq + (len - 1)).in_window(self.rcv_nxt, wnd)
        }
    }

    /// RFC 5961 section 7: whether one more ACK fits this second's limit.
    fn ack_within_limit(&mut self, now: Instant) -> bool {
        let (start, _) = self.challenge_window;
        if now - start >= CHALLENGE_ACK_INTERVAL {
            self.challenge_window = (now, 0);
        }
        if self.challenge_window.1 < self.challenge_ack_limit {
            self.challenge_window.1 += 1;
            true
        } else {
            false
        }
    }

    fn challenge_ack(&mut self, now: Instant, stats: &mut ConnStats) -> TimeWaitInput {
        if self.ack_within_limit(now) {
            stats.challenge_acks += 1;
            TimeWaitInput::AckLater
        } else {
            stats.challenge_acks_suppressed += 1;
            TimeWaitInput::Nothing
        }
    }

    /// The ACK answering an invalid segment: always for one with data (not a SYN), else
    /// within the RFC 5961 section 7 limit.
    fn ack_invalid(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        stats: &mut ConnStats,
    ) -> TimeWaitInput {
        if seg.seq_len() > 0 && !seg.flags.syn {
            TimeWaitInput::Ack
        } else if self.ack_within_limit(now) {
            TimeWaitInput::AckLater
        } else {
            stats.invalid_acks_suppressed += 1;
            TimeWaitInput::Nothing
        }
    }
}
