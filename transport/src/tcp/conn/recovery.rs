//! Loss recovery: fast retransmit and fast recovery (RFC 5681 section 3.2), NewReno's
//! partial acknowledgements (RFC 6582) and SACK-based recovery (RFC 6675).

use super::Connection;
use crate::net::link::Instant;
use crate::tcp::delivery::CaState;
use crate::tcp::seq::SeqNumber;

/// Duplicate ACKs that trigger fast retransmit (RFC 5681 section 3.2).
const DUPACK_THRESHOLD: u32 = 3;

/// The loss-recovery mode; each variant holds what that mode needs, so no combination of
/// loose fields can contradict another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
    /// No loss being repaired: new ACKs grow the congestion window.
    Open,
    /// RFC 5681 section 3.2 fast recovery with RFC 6582's partial ACKs.
    NewReno {
        /// RFC 6582 `recover`: recovery ends when this is acknowledged.
        recover: SeqNumber,
        /// Window inflation (RFC 5681 section 3.2 steps 3 and 4), deflated by partial
        /// ACKs.
        inflation: usize,
    },
    /// RFC 6675: the scoreboard says which holes to resend.
    Sack {
        /// RFC 6582 `recover` (RFC 6675 RecoveryPoint).
        recover: SeqNumber,
        /// RFC 6675 HighRxt: the highest sequence number retransmitted in this recovery.
        high_rxt: SeqNumber,
    },
    /// After a retransmission timeout: going back N in slow start (RFC 5681 section 3.1).
    /// RFC 6582 section 3.2 step 4 and RFC 6675 section 5.1: no fast recovery starts
    /// until `recover` is acknowledged, and further timeouts before that belong to the
    /// same loss episode (they keep ssthresh, RFC 5681 section 3.1).
    Timeout {
        /// SND.MAX at the latest timeout.
        recover: SeqNumber,
    },
}

impl Recovery {
    /// Where the current recovery ends, if one is running.
    pub(super) fn recover(self) -> Option<SeqNumber> {
        match self {
            Recovery::Open => None,
            Recovery::NewReno { recover, .. }
            | Recovery::Sack { recover, .. }
            | Recovery::Timeout { recover } => Some(recover),
        }
    }

    /// Bytes added to cwnd by NewReno's window inflation (0 outside NewReno).
    pub(super) fn inflation(self) -> usize {
        match self {
            Recovery::NewReno { inflation, .. } => inflation,
            _ => 0,
        }
    }
}

impl Connection {
    /// Bytes the congestion and peer windows let us send now.
    pub(super) fn usable_window(&self) -> usize {
        if let Recovery::Sack { .. } = self.recovery {
            // RFC 6675 section 5: send while pipe < cwnd; the peer's window still
            // bounds new data beyond snd_una.
            let by_cwnd = self.cc.cwnd().saturating_sub(self.pipe());
            return by_cwnd.min(self.snd_wnd.saturating_sub(self.flight()));
        }
        let cwnd = self.cc.cwnd() + self.recovery.inflation();
        // Data the peer SACKed is not in the network, even below SND.NXT, so it does not
        // count against cwnd; the peer's window still counts from SND.UNA.
        let in_network = self
            .flight()
            .saturating_sub(self.scoreboard.sacked_below(self.snd_nxt));
        let by_cwnd = cwnd.saturating_sub(in_network);
        by_cwnd.min(self.snd_wnd.saturating_sub(self.flight()))
    }

    /// Bytes in the network as the congestion control sees them (Linux
    /// `tcp_packets_in_flight`): RFC 6675 pipe in SACK recovery, else what was sent and
    /// is neither acknowledged nor SACKed.
    pub(super) fn in_flight(&self) -> usize {
        if let Recovery::Sack { .. } = self.recovery {
            return self.pipe();
        }
        self.flight()
            .saturating_sub(self.scoreboard.sacked_below(self.snd_nxt))
    }

    /// The recovery mode as a congestion control sees it.
    pub(super) fn ca_state(&self) -> CaState {
        match self.recovery {
            Recovery::Open => CaState::Open,
            Recovery::NewReno { .. } | Recovery::Sack { .. } => CaState::Recovery,
            Recovery::Timeout { .. } => CaState::Loss,
        }
    }

    /// RFC 6675 section 4 SetPipe, simplified: bytes in flight are those sent and not
    /// acknowledged, less those SACKed, less the holes below the highest SACK that were
    /// not yet retransmitted (presumed lost). Only meaningful in SACK recovery.
    fn pipe(&self) -> usize {
        let high_rxt = match self.recovery {
            Recovery::Sack { high_rxt, .. } => high_rxt,
            _ => self.snd_una,
        };
        let lost = self.scoreboard.hole_bytes(high_rxt.max(self.snd_una));
        self.flight()
            .saturating_sub(self.scoreboard.sacked_bytes())
            .saturating_sub(lost)
    }

    /// RFC 6675 NextSeg rule 1: in SACK recovery with room under cwnd, the first hole
    /// not yet retransmitted, as `(start, length)`.
    pub(super) fn next_hole(&self) -> Option<(SeqNumber, usize)> {
        match self.recovery {
            Recovery::Sack { high_rxt, .. } if self.pipe() < self.cc.cwnd() => {
                self.scoreboard.next_hole(high_rxt.max(self.snd_una))
            }
            _ => None,
        }
    }

    /// A hole was resent up to `end` (RFC 6675 HighRxt).
    pub(super) fn hole_resent(&mut self, end: SeqNumber) {
        if let Recovery::Sack { high_rxt, .. } = &mut self.recovery {
            *high_rxt = end;
        }
    }

    /// Enters loss recovery (RFC 5681 section 3.2 / RFC 6675 section 5).
    fn enter_recovery(&mut self, now: Instant) {
        let recover = self.snd_max;
        self.cc.on_loss(now, self.flight());
        self.stats.fast_retransmits += 1;
        if self.sack_enabled && !self.scoreboard.is_empty() {
            self.recovery = Recovery::Sack {
                recover,
                high_rxt: self.snd_una,
            };
        } else {
            self.recovery = Recovery::NewReno {
                recover,
                inflation: DUPACK_THRESHOLD as usize * self.snd_mss,
            };
            self.pending.retransmit_una = true;
        }
    }

    /// `acked` new bytes were acknowledged up to `ack`: end recovery on a full ACK
    /// (RFC 6582 section 3.2 step 3), resend the next hole on a partial one, or let the
    /// congestion window grow.
    pub(super) fn recovery_on_new_ack(&mut self, now: Instant, ack: SeqNumber, acked: usize) {
        match &mut self.recovery {
            Recovery::Open => self.cc.on_ack(now, acked, self.rtt.srtt()),
            Recovery::Timeout { recover } => {
                if ack >= *recover {
                    self.recovery = Recovery::Open;
                }
                self.cc.on_ack(now, acked, self.rtt.srtt());
            }
            Recovery::NewReno { recover, .. } | Recovery::Sack { recover, .. }
                if ack >= *recover =>
            {
                self.recovery = Recovery::Open;
            }
            Recovery::Sack { .. } => {
                // RFC 6675: the scoreboard drives retransmission; nothing to inflate.
            }
            Recovery::NewReno { inflation, .. } => {
                // Partial acknowledgement: retransmit the next hole, deflate.
                *inflation = inflation.saturating_sub(acked) + self.snd_mss;
                self.pending.retransmit_una = true;
            }
        }
        self.dupacks = 0;
    }

    /// RFC 5681 section 2 duplicate ACK: the third starts recovery, later ones inflate
    /// NewReno's window.
    pub(super) fn recovery_on_dup_ack(&mut self, now: Instant) {
        self.stats.dup_acks_in += 1;
        self.dupacks += 1;
        match &mut self.recovery {
            Recovery::Open if self.dupacks == DUPACK_THRESHOLD => self.enter_recovery(now),
            Recovery::NewReno { inflation, .. } if self.dupacks > DUPACK_THRESHOLD => {
                *inflation += self.snd_mss;
            }
            _ => {}
        }
    }

    /// RFC 6675 section 5 IsLost(SND.UNA): more than (DupThresh - 1) * SMSS bytes SACKed
    /// above it also starts recovery, without waiting for three duplicates.
    pub(super) fn recovery_on_sack(&mut self, now: Instant) {
        let threshold = (DUPACK_THRESHOLD as usize - 1) * self.snd_mss;
        if self.recovery == Recovery::Open && self.scoreboard.sacked_bytes() > threshold {
            self.enter_recovery(now);
        }
    }

    /// RFC 6298 section 5.4-5.6: a retransmission timeout ends any fast recovery and
    /// starts (or extends) a timeout recovery up to SND.MAX (RFC 6582 section 3.2 step 4,
    /// RFC 6675 section 5.1). Only the first timeout of a loss episode reduces ssthresh
    /// (RFC 5681 section 3.1: ssthresh is held when the segment was already resent by the
    /// timer); later ones, before `recover` is acknowledged, keep it. `handshake`: a SYN
    /// timed out, which touches no congestion state.
    pub(super) fn recovery_on_timeout(&mut self, now: Instant, handshake: bool) {
        self.dupacks = 0;
        self.pending.retransmit_una = false;
        if handshake {
            self.recovery = Recovery::Open;
            return;
        }
        if let Recovery::Timeout { .. } = self.recovery {
            self.cc.on_repeated_rto();
        } else {
            self.cc.on_rto(now, self.flight());
        }
        self.recovery = Recovery::Timeout {
            recover: self.snd_max,
        };
    }
}
