//! Loss recovery: fast retransmit and fast recovery (RFC 5681 section 3.2), NewReno's
//! partial acknowledgements (RFC 6582) and SACK-based recovery (RFC 6675). With SACK and
//! RACK on, RACK-TLP (RFC 8985) decides what is lost: time-based detection with a
//! reordering window instead of three duplicate ACKs (as Linux), and the tail loss probe.
//! Without SACK, NewReno's duplicate ACKs remain the trigger.

use super::Connection;
use crate::net::link::{Duration, Instant};
use crate::tcp::delivery::CaState;
use crate::tcp::seq::SeqNumber;
use crate::tcp::timer::Timer;
use crate::tcp::wire::Segment;

/// Duplicate ACKs that trigger fast retransmit (RFC 5681 section 3.2).
const DUPACK_THRESHOLD: u32 = 3;
/// RFC 8985 section 7.2 WCDelAckT: the longest a receiver may delay the ACK of a lone
/// segment, added to the probe timeout when one segment is in flight.
const WORST_CASE_DELAYED_ACK: Duration = Duration::from_millis(200);

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
        /// RFC 6937 proportional rate reduction, with RACK (as Linux pairs them).
        prr: Option<Prr>,
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

/// RFC 6937 section 3 proportional rate reduction: in recovery, what is sent follows
/// what the peer reports delivered, so the window comes down to ssthresh smoothly instead
/// of sending a burst into the queue that just overflowed (or sending nothing for half a
/// round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prr {
    /// RecoverFS: the flight when recovery began.
    recover_fs: usize,
    /// prr_delivered: bytes delivered (acknowledged or SACKed) since then.
    delivered: usize,
    /// prr_out: bytes sent since then.
    out: usize,
    /// What the latest ACK allows sending (sndcnt), less what was sent since.
    allowance: usize,
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
        if let Recovery::Sack { prr, .. } = self.recovery {
            // RFC 6675 section 5: send while pipe < cwnd (RFC 6937: what PRR allows);
            // the peer's window still bounds new data beyond snd_una.
            let by_cwnd = match prr {
                Some(prr) => prr.allowance,
                None => self.cc.cwnd().saturating_sub(self.pipe()),
            };
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
        if self.rack_enabled() {
            // RFC 8985 section 6.2: what RACK marked lost is out of the network.
            return self.rack.pipe();
        }
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
            Recovery::Sack { prr: Some(prr), .. } if prr.allowance > 0 => self.rack.next_lost(),
            Recovery::Sack { prr: Some(_), .. } => None,
            // RACK without PRR (a congestion control that sets its own window): resend
            // what RACK marked lost while pipe is below cwnd.
            Recovery::Sack { .. } if self.rack_enabled() => {
                (self.pipe() < self.cc.cwnd()).then(|| self.rack.next_lost())?
            }
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
        // The recovery's reduction stands for the probe's too (RFC 8985 section 7.4).
        self.tlp_probe = None;
        self.timers.stop(Timer::Tlp);
        if self.rack_enabled() || (self.sack_enabled && !self.scoreboard.is_empty()) {
            // PRR only for RACK's recovery, and not for a congestion control that sets
            // its window in recovery itself (BBR), as Linux's `cong_control` bypasses it.
            let prr = (self.rack_enabled() && !self.cc.controls_recovery_window()).then_some(Prr {
                recover_fs: self.flight(),
                delivered: 0,
                out: 0,
                // The fast retransmit goes out whatever the ACK delivered.
                allowance: self.snd_mss,
            });
            self.recovery = Recovery::Sack {
                recover,
                high_rxt: self.snd_una,
                prr,
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
        let sack_decides = self.rack_enabled() && !self.scoreboard.is_empty();
        match &mut self.recovery {
            // With RACK, SACK information decides (RFC 8985 section 6); duplicate ACKs
            // without any stay the trigger.
            Recovery::Open if self.dupacks == DUPACK_THRESHOLD && !sack_decides => {
                self.enter_recovery(now)
            }
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
        self.pending.tlp = false;
        self.tlp_probe = None;
        self.timers.stop(Timer::Tlp);
        self.timers.stop(Timer::Reorder);
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

    /// RACK-TLP is on: SACK was negotiated and the configuration asks for RACK.
    pub(super) fn rack_enabled(&self) -> bool {
        self.sack_enabled && self.cfg.rack
    }

    /// RFC 8985 section 6.2: the SACK blocks of an ACK (its cumulative part already
    /// taken) update RACK, then loss detection runs. Returns the segments newly marked
    /// lost.
    pub(super) fn rack_on_ack(&mut self, now: Instant, seg: &Segment<'_>) -> usize {
        let mut blocks = [(self.snd_una, self.snd_una); 4];
        for (slot, &(left, right)) in blocks
            .iter_mut()
            .zip(seg.options.sack_blocks.iter().flatten())
        {
            *slot = (left.max(self.snd_una), right.min(self.snd_max));
        }
        self.rack.on_sack(&blocks, now);
        if !self.scoreboard.is_empty() {
            // RFC 8985 section 7.2: with SACKed data the reordering timer takes over.
            self.timers.stop(Timer::Tlp);
        }
        self.rack_detect_loss(now)
    }

    /// RFC 8985 section 6.2 step 5 (also when the reordering timer fires): marks losses,
    /// starts recovery when something is lost, and arms the reordering timer for the
    /// segments still within the window. Returns the segments newly marked lost.
    pub(super) fn rack_detect_loss(&mut self, now: Instant) -> usize {
        let in_recovery = self.recovery != Recovery::Open;
        let found = self.rack.detect_loss(now, in_recovery, self.rtt.srtt());
        self.stats.rack_lost += found.lost as u64;
        match found.timeout {
            Some(wait) => self.timers.set(Timer::Reorder, now + wait),
            None => self.timers.stop(Timer::Reorder),
        }
        if found.any_lost && self.recovery == Recovery::Open {
            self.enter_recovery(now);
        }
        found.lost
    }

    /// RFC 8985 section 7.2: (re)arms the probe timeout after new data went out or an ACK
    /// advanced SND.UNA (`advancing`). PTO = 2 * SRTT, plus WCDelAckT with one segment in
    /// flight, and never later than the retransmission timer. As Linux's
    /// `tcp_schedule_loss_probe`: after an ACK that restarted the RTO that is the RTO
    /// from now; after new data, one RTO after the oldest outstanding segment was (last)
    /// sent (`tcp_rto_delta_us`), when that is still ahead. Only in the open state, with
    /// nothing SACKed (the reordering timer covers that) and no probe outstanding.
    pub(super) fn arm_tlp(&mut self, now: Instant, advancing: bool) {
        let srtt = self.rtt.srtt();
        let flight = self.snd_max - self.snd_una;
        let eligible = self.rack_enabled()
            && self.cfg.tlp
            && self.recovery == Recovery::Open
            && self.scoreboard.is_empty()
            && self.tlp_probe.is_none()
            && flight > 0
            && self.state.sends_data();
        let Some(srtt) = srtt.filter(|_| eligible) else {
            self.timers.stop(Timer::Tlp);
            return;
        };
        let mut pto = srtt * 2;
        if flight <= self.snd_mss {
            pto += WORST_CASE_DELAYED_ACK;
        }
        let mut at = now + pto;
        if let Some(rto_at) = self.timers.get(Timer::Retransmit) {
            at = at.min(rto_at);
        }
        if !advancing {
            if let Some(head_rto) = self.rack.oldest_sent().map(|t| t + self.rtt.rto()) {
                if head_rto > now {
                    at = at.min(head_rto);
                }
            }
        }
        self.timers.set(Timer::Tlp, at);
    }

    /// RFC 8985 section 7.3: the probe timeout passed without an ACK; the next transmit
    /// sends the probe, and the retransmission timer restarts from now (so a probe due
    /// with the RTO goes out in its place).
    pub(super) fn on_tlp_timeout(&mut self, now: Instant) {
        if self.recovery == Recovery::Open
            && self.snd_max > self.snd_una
            && self.scoreboard.is_empty()
            && self.tlp_probe.is_none()
        {
            self.pending.tlp = true;
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
    }

    /// RFC 8985 section 7.3: what the probe sends, as `(seq, len)`: one new segment if
    /// there is data and the peer's window allows it, else the last segment sent again.
    pub(super) fn take_tlp(&mut self, max_len: usize) -> Option<(SeqNumber, usize)> {
        if !std::mem::take(&mut self.pending.tlp) {
            return None;
        }
        let data_end = self.snd_una + self.send_buf.len();
        if self.snd_nxt == self.snd_max {
            let unsent = self.send_buf.len().saturating_sub(self.flight());
            let room = self.snd_wnd.saturating_sub(self.flight());
            let len = max_len.min(unsent).min(room);
            if len > 0 {
                return Some((self.snd_nxt, len));
            }
        }
        let (start, end) = self.rack.last_unsacked()?;
        let stop = end.min(data_end);
        let start = if stop - start > max_len {
            stop - max_len
        } else {
            start
        };
        Some((start, stop - start))
    }

    /// The probe ending at `end` went out (`retransmission`: it resent old data).
    pub(super) fn tlp_sent(&mut self, now: Instant, end: SeqNumber, retransmission: bool) {
        self.tlp_probe = Some((end, retransmission));
        self.stats.tlp_probes += 1;
        self.timers.stop(Timer::Tlp);
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// RFC 8985 section 7.4: an ACK covering the probe ends its episode. Without D-SACK
    /// the sender cannot tell that the original arrived, so a probe that resent data is
    /// taken to have repaired a loss, and the window is reduced once.
    pub(super) fn tlp_on_ack(&mut self, now: Instant, ack: SeqNumber) {
        if let Some((end, retransmission)) = self.tlp_probe {
            if ack >= end {
                self.tlp_probe = None;
                if retransmission && self.recovery == Recovery::Open {
                    self.stats.tlp_recoveries += 1;
                    self.cc.on_loss(now, self.flight());
                }
            }
        }
    }

    /// RFC 6937 section 3, on every ACK in recovery: `delivered` bytes were newly
    /// acknowledged or SACKed; sets what may be sent until the next ACK (sndcnt). Below
    /// ssthresh, slow start reduction bound (PRR-SSRB), with the extra segment only on a
    /// `safe_ack` (SND.UNA advanced and nothing newly lost), as
    /// draft-ietf-tcpm-prr-rfc6937bis section 5 and Linux `tcp_cwnd_reduction`: RFC 6937's
    /// unconditional `+ MSS` grows pipe by one segment per SACK-only ACK, slow start in
    /// recovery, into the queue that just overflowed. As in Linux, the first ACK of
    /// recovery always lets the fast retransmit out.
    pub(super) fn prr_on_ack(&mut self, delivered: usize, safe_ack: bool) {
        if !matches!(self.recovery, Recovery::Sack { prr: Some(_), .. }) {
            // Outside PRR there is nothing to set; pipe walks the window.
            return;
        }
        let pipe = self.pipe();
        let ssthresh = self.cc.ssthresh();
        let mss = self.snd_mss;
        if let Recovery::Sack { prr: Some(p), .. } = &mut self.recovery {
            p.delivered += delivered;
            let sndcnt = if pipe > ssthresh {
                (p.delivered * ssthresh)
                    .div_ceil(p.recover_fs.max(1))
                    .saturating_sub(p.out)
            } else {
                let limit = p.delivered.saturating_sub(p.out).max(delivered)
                    + if safe_ack { mss } else { 0 };
                (ssthresh - pipe).min(limit)
            };
            p.allowance = if p.out == 0 { sndcnt.max(mss) } else { sndcnt };
        }
    }

    /// RFC 6937 prr_out: `len` bytes (data or FIN) went out in recovery.
    pub(super) fn prr_sent(&mut self, len: usize) {
        if let Recovery::Sack { prr: Some(p), .. } = &mut self.recovery {
            p.out += len;
            p.allowance = p.allowance.saturating_sub(len);
        }
    }
}
