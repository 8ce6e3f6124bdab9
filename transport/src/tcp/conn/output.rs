//! The outgoing direction: the windows we advertise, the options we put on each segment,
//! and the choice of the next segment (RSTs, SYN, data and FIN, probes, pure ACKs).

use super::{AckPending, Connection, State, TIMESTAMP_OPTION_LEN};
use crate::net::link::{Duration, Instant};
use crate::tcp::seq::SeqNumber;
use crate::tcp::timer::Timer;
use crate::tcp::wire::{
    Flags, Segment, TcpOptions, MAX_OPTIONS_LEN, MAX_SACK_BLOCKS, SACK_BLOCK_LEN,
};

/// Bytes of a SACK option before its blocks as sent: two NOPs, kind and length (RFC 2018
/// section 3).
const SACK_OPTION_OVERHEAD: usize = 4;
/// Silly-window avoidance fraction, as a divisor: Fr = Fs = 1/2 of the buffer or of the
/// largest window seen (RFC 9293 sections 3.8.6.2.1 and 3.8.6.2.2).
const SWS_FRACTION: usize = 2;
/// Longest override timeout of sender silly-window avoidance (RFC 1122 section 4.2.3.4
/// suggests 0.1 to 1 s); it is the RTO when that is shorter.
const MAX_SWS_OVERRIDE: Duration = Duration::from_secs(1);
/// Data segments a paced connection sends before pacing starts: the initial window goes
/// out at once (Linux `tcp_update_skb_after_send`: `data_segs_out >= 10`).
const UNPACED_SEGMENTS: usize = 10;
/// Linux `sk_pacing_shift` = 10: a paced sender may run ahead of its schedule by about
/// 1/1024 s of data (the TSO autosizing quantum, at least 2 segments, at most 64 KiB), so
/// that a caller whose timers fire only every millisecond still sends at the pacing rate.
const PACING_QUANTUM_SHIFT: u32 = 10;
const MAX_PACING_QUANTUM: usize = 64 * 1024;
/// The most pacing time a caller that woke late may catch up on, as a divisor of the
/// SRTT: a quarter of it, so a catch-up burst is at most a quarter of the BDP at the
/// pacing rate (BBR keeps up to two BDPs in flight).
const MAX_PACING_CREDIT: u32 = 4;

impl Connection {
    /// Free receive buffer space, measured from rcv_nxt.
    pub(super) fn window_to_advertise(&self) -> usize {
        self.rcv_space.limit().saturating_sub(self.recv_buf.len())
    }

    /// What the peer believes our window is now.
    pub(super) fn advertised(&self) -> usize {
        self.rcv_adv - self.rcv_nxt
    }

    /// RFC 9293 section 3.8.6.2.2 receiver silly-window avoidance: the right edge of the
    /// window moves only by min(Fr * RCV.BUFF, `segments` * MSS), Fr = 1/2.
    pub(super) fn receive_sws_threshold(&self, segments: usize) -> usize {
        (self.rcv_space.limit() / SWS_FRACTION).min(segments * usize::from(self.cfg.mss))
    }

    /// The window field of the next segment, never moving the right edge left.
    pub(super) fn window_field(&mut self) -> u16 {
        let free = self.window_to_advertise();
        let current = self.advertised();
        // Receiver SWS avoidance: only move the right edge by a worthwhile amount.
        let threshold = self.receive_sws_threshold(1);
        let mut window = if free >= current + threshold || free < current {
            free.max(current)
        } else {
            current
        };
        let max = usize::from(u16::MAX) << self.rcv_shift;
        window = window.min(max);
        // Round down to the scale's granularity so the edge we record is the one sent.
        let field = window >> self.rcv_shift;
        let edge = self.rcv_nxt + (field << self.rcv_shift);
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
        field as u16
    }

    /// Bytes sent and not acknowledged.
    pub(super) fn flight(&self) -> usize {
        self.snd_nxt - self.snd_una
    }

    fn options(&self, now: Instant, syn: bool) -> TcpOptions {
        let mut o = TcpOptions::default();
        if syn {
            o.mss = Some(self.cfg.mss);
            let answering = self.state == State::SynReceived;
            if self.cfg.window_scaling && (!answering || self.ws_enabled) {
                o.window_scale = Some(self.rcv_shift);
            }
            o.sack_permitted = self.cfg.sack && (!answering || self.sack_enabled);
            if self.cfg.timestamps && (!answering || self.ts_enabled) {
                o.timestamps = Some((self.ts_now(now), if answering { self.ts_recent } else { 0 }));
            }
        } else {
            if self.ts_enabled {
                o.timestamps = Some((self.ts_now(now), self.ts_recent));
            }
            if self.sack_enabled && !self.ooo.is_empty() {
                o.sack_blocks = self.ooo.sack_blocks();
            }
        }
        o
    }

    /// Bytes the SACK option will take on the next segment (with its two NOPs), given
    /// the 40-byte option space shared with timestamps.
    fn sack_option_len(&self) -> usize {
        if !self.sack_enabled || self.ooo.is_empty() {
            return 0;
        }
        let room = MAX_OPTIONS_LEN
            - if self.ts_enabled {
                TIMESTAMP_OPTION_LEN
            } else {
                0
            };
        let fit = (room - SACK_OPTION_OVERHEAD) / SACK_BLOCK_LEN;
        SACK_OPTION_OVERHEAD + SACK_BLOCK_LEN * self.ooo.blocks().min(fit).min(MAX_SACK_BLOCKS)
    }

    /// The payload chosen for the segment being built: a run of the send buffer
    /// (`tx_ring`) or, where the ring wraps, its copy in `tx_payload`.
    fn tx_data(&self) -> &[u8] {
        let Some(range) = self.tx_ring.clone() else {
            return &self.tx_payload;
        };
        let (a, b) = self.send_buf.as_slices();
        if range.end <= a.len() {
            &a[range]
        } else {
            &b[range.start - a.len()..range.end - a.len()]
        }
    }

    /// Builds a segment; its payload is [`Connection::tx_data`].
    fn segment(&mut self, now: Instant, seq: SeqNumber, mut flags: Flags) -> Segment<'_> {
        let syn = flags.syn;
        let has_ack = self.state != State::SynSent || flags.ack;
        flags.ack = has_ack;
        let window = if syn {
            // RFC 7323 section 2.2: the window in a SYN is never scaled.
            let window = self.rcv_space.limit().min(usize::from(u16::MAX));
            if self.state == State::SynReceived {
                self.rcv_adv = self.rcv_nxt + window;
            }
            window as u16
        } else {
            self.window_field()
        };
        let options = self.options(now, syn);
        if has_ack {
            self.pending.ack = AckPending::None;
            self.unacked_segments = 0;
            self.timers.stop(Timer::DelayedAck);
            self.last_ack_sent = self.rcv_nxt;
        }
        self.stats.segs_out += 1;
        Segment {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ack: if has_ack { self.rcv_nxt } else { SeqNumber(0) },
            flags,
            window,
            urgent: 0,
            options,
            payload: self.tx_data(),
        }
    }

    /// The next segment to send, if any: RSTs, SYNs, data and FIN within the windows,
    /// probes, and pure ACKs. Call until it returns `None` after every event.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment<'_>> {
        self.tx_payload.clear();
        self.tx_ring = None;
        self.tx_segment = 0;
        if let Some(rst) = self.pending.reset_reply.take() {
            self.stats.rsts_out += 1;
            self.stats.segs_out += 1;
            return Some(*rst);
        }
        if self.pending.abort_reset {
            self.pending.abort_reset = false;
            self.timers.stop_all();
            self.set_state(State::Closed);
            self.stats.rsts_out += 1;
            let seq = self.snd_max;
            let flags = Flags {
                rst: true,
                ack: true,
                ..Flags::default()
            };
            return Some(self.segment(now, seq, flags));
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    let retransmit = self.snd_max != self.iss;
                    self.snd_nxt = self.iss + 1;
                    self.snd_max = self.snd_max.max(self.snd_nxt);
                    if retransmit {
                        self.stats.retransmits += 1;
                        self.timed = None;
                        self.note_retransmission(now, self.snd_nxt);
                    } else {
                        self.timed = Some((self.snd_nxt, now));
                    }
                    if !self.timers.is_armed(Timer::Retransmit) {
                        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                    }
                    let flags = Flags {
                        syn: true,
                        ack: self.state == State::SynReceived,
                        ..Flags::default()
                    };
                    let iss = self.iss;
                    return Some(self.segment(now, iss, flags));
                }
                if self.state == State::SynSent {
                    return None;
                }
            }
            _ => {}
        }
        if self.state.sends_data() {
            if let Some(at) = self.pacing_wait(now) {
                if self.timers.get(Timer::Pacing) != Some(at) {
                    self.timers.set(Timer::Pacing, at);
                    self.stats.pacing_waits += 1;
                }
                self.pacing_release = Some(at);
            } else if let Some((seq, flags)) = self.next_data(now) {
                self.paced(now);
                return Some(self.segment(now, seq, flags));
            } else {
                self.pacing_release = None;
                self.check_app_limited();
            }
        }
        if self.pending.probe {
            self.pending.probe = false;
            let seq = self.snd_una - 1;
            return Some(self.segment(now, seq, Flags::default()));
        }
        if self.pending.ack == AckPending::Now && self.state != State::SynSent {
            // SND.NXT may have gone back for a retransmission (go-back-N); a pure ACK
            // carries the highest sequence number sent, which the peer's window accepts.
            let seq = self.snd_max;
            return Some(self.segment(now, seq, Flags::default()));
        }
        None
    }

    /// For the segment [`Connection::poll_transmit`] returned last: the payload bytes of
    /// each segment the link is to cut it into (TSO), or 0 if it is a segment of its own.
    pub fn tso_segment(&self) -> u16 {
        self.tx_segment
    }

    /// The most new data one segment may carry: one segment of `max_len` bytes, or with
    /// TSO a super-segment of whole segments (Linux `tcp_tso_autosize`): about 1 ms of
    /// data at the pacing rate (`sk_pacing_shift` 10), at least 2 segments, at most
    /// [`TcpConfig::tso_max`](crate::tcp::TcpConfig::tso_max) bytes.
    fn send_quota(&self, max_len: usize) -> usize {
        if self.cfg.tso_max <= max_len || max_len == 0 {
            return max_len;
        }
        let cap = self.cfg.tso_max / max_len;
        let segments = match self.cc.pacing_rate(self.rtt.srtt()) {
            Some(rate) => ((rate >> PACING_QUANTUM_SHIFT) as usize / max_len).max(2),
            None => cap,
        };
        segments.min(cap) * max_len
    }

    /// Pacing (draft-ietf-ccwg-bbr section 4.6.2; Linux `tcp_pacing_check`): when data
    /// is ready but must wait for its time, that time: when the schedule is no more than
    /// one quantum ahead of `now`.
    fn pacing_wait(&self, now: Instant) -> Option<Instant> {
        if self.next_send_time <= now {
            return None;
        }
        let rate = self.cc.pacing_rate(self.rtt.srtt())?.max(1);
        let quantum = ((rate >> PACING_QUANTUM_SHIFT) as usize)
            .min(MAX_PACING_QUANTUM)
            .max(2 * self.snd_mss);
        let lead = Duration::from_micros(quantum as u64 * 1_000_000 / rate);
        let release = self.next_send_time - lead;
        if release <= now {
            return None;
        }
        let unsent = self.snd_una + self.send_buf.len() > self.snd_nxt;
        let ready = (unsent && self.usable_window() > 0)
            || self.pending.retransmit_una
            || self.pending.tlp
            || self.next_hole().is_some()
            || (self.fin_queued && !self.fin_sent);
        ready.then_some(release)
    }

    /// The segment in [`Connection::tx_data`] went out at `now`: the next may leave once this one
    /// has at the pacing rate. As Linux's `tcp_update_skb_after_send`: a segment sent
    /// late shortens the next gap by up to half. Beyond that, the time the caller
    /// overslept a pacing wait (its timer fired late: a busy CPU wakes a sleeping thread
    /// milliseconds after its timeout, where Linux's hrtimer is exact) stays in the
    /// schedule, up to a quarter of the SRTT ([`MAX_PACING_CREDIT`]), so the sender
    /// catches up on it: a schedule that forgot it would send less than the pacing rate
    /// after every late wake-up, and BBR, measuring that as the path's bandwidth, would
    /// pace lower still (the spiral of issue 11).
    fn paced(&mut self, now: Instant) {
        if self.stats.bytes_out < (UNPACED_SEGMENTS * self.snd_mss) as u64 {
            return;
        }
        let Some(rate) = self.cc.pacing_rate(self.rtt.srtt()).filter(|&r| r > 0) else {
            return;
        };
        let gap = Duration::from_micros(self.tx_data().len() as u64 * 1_000_000 / rate);
        // Behind the schedule after a wait: only by what the caller overslept, since a
        // wait begins with the schedule ahead of the clock.
        let credit = match (self.pacing_release, self.rtt.srtt()) {
            (Some(release), Some(srtt)) if release < now => srtt / MAX_PACING_CREDIT,
            _ => Duration::ZERO,
        };
        let behind = now - self.next_send_time;
        let kept = behind.min(credit);
        let late = behind - kept;
        self.next_send_time = self.next_send_time.max(now - kept) + (gap - late.min(gap / 2));
        if self.next_send_time >= now {
            self.pacing_release = None;
        }
    }

    /// Draft-cheng-iccrg-delivery-rate-estimation section 3.5: nothing is left to send
    /// while cwnd has room and no loss is being repaired, so rate samples until what is
    /// in flight now is delivered measure the application, not the path.
    fn check_app_limited(&mut self) {
        if self.rate.is_none()
            || self.snd_una + self.send_buf.len() > self.snd_nxt
            || self.recovery.recover().is_some()
        {
            return;
        }
        let in_flight = self.in_flight();
        if in_flight < self.cc.cwnd() {
            if let Some(rate) = self.rate.as_mut() {
                rate.on_app_limited(in_flight);
            }
        }
    }

    /// Whether our FIN, at sequence number `at`, may go out. RFC 1122 section 4.2.2.17
    /// and RFC 9293 section 3.8.6.1: a FIN takes a sequence number, so a new one waits for
    /// room in the peer's window like data (the persist timer probes a zero window); one
    /// already sent is retransmitted like data, whatever the window.
    fn fin_fits(&self, at: SeqNumber) -> bool {
        self.fin_sent || at - self.snd_una < self.snd_wnd
    }

    /// Chooses the next data (or FIN) segment, points `tx_ring` at its payload (or copies
    /// it into `tx_payload` where the ring wraps) and advances snd_nxt. Sender SWS avoidance and Nagle (RFC 9293 section 3.8.6.2.1).
    fn next_data(&mut self, now: Instant) -> Option<(SeqNumber, Flags)> {
        let data_end = self.snd_una + self.send_buf.len();
        // RFC 6691: the MSS excludes options, so SACK blocks riding on a data segment
        // take their room from the payload (timestamps are already in snd_mss).
        let max_len = self.snd_mss - self.sack_option_len();
        let tlp = self.take_tlp(max_len);
        let (seq, len) = if let Some((seq, len)) = tlp {
            (seq, len)
        } else if let Some((start, hole_len)) = self.next_hole() {
            // RFC 6675 NextSeg rule 1: the first hole not yet retransmitted.
            let len = max_len
                .min(hole_len)
                .min(self.send_buf.len().saturating_sub(start - self.snd_una));
            self.hole_resent(start + len);
            (start, len)
        } else if self.pending.retransmit_una {
            self.pending.retransmit_una = false;
            (self.snd_una, max_len.min(self.send_buf.len()))
        } else {
            // Going back N after a timeout: skip what the peer SACKed, and stop each
            // segment at the next SACKed block.
            if self.snd_nxt < self.snd_max {
                if let Some(end) = self.scoreboard.sacked_end(self.snd_nxt) {
                    self.snd_nxt = end;
                }
            }
            let offset = self.snd_nxt - self.snd_una;
            let unsent = self.send_buf.len().saturating_sub(offset);
            let mut len = self
                .send_quota(max_len)
                .min(unsent)
                .min(self.usable_window());
            if self.snd_nxt < self.snd_max {
                if let Some(start) = self.scoreboard.next_sacked(self.snd_nxt) {
                    len = len.min(start - self.snd_nxt);
                }
            }
            if len > max_len {
                // TSO (Linux `tcp_mss_split_point`): a super-segment is whole segments,
                // and takes a shorter last one only if it ends the data and Nagle would
                // send it now; otherwise that rest goes by the rules of one segment.
                let rest = len % max_len;
                let tail_goes = len == unsent && (self.cfg.nodelay || self.flight() == 0);
                if rest > 0 && !tail_goes {
                    len -= rest;
                }
            }
            let fin_at_end =
                self.fin_queued && self.snd_nxt + len == data_end && self.snd_nxt <= data_end;
            let fin_next = fin_at_end && self.fin_fits(data_end);
            if len == 0 {
                let waiting = unsent > 0 || (fin_at_end && !fin_next);
                if waiting && self.snd_wnd == 0 && self.flight() == 0 {
                    // Zero window: probe it (RFC 9293 section 3.8.6.1).
                    if !self.timers.is_armed(Timer::ZeroWindowProbe) {
                        self.timers
                            .set(Timer::ZeroWindowProbe, now + self.rtt.rto());
                    }
                }
                if !(fin_next && unsent == 0) {
                    return None;
                }
            } else if len < max_len && !fin_next {
                let nagle_ok = self.cfg.nodelay || self.flight() == 0;
                let all_of_it = len == unsent;
                let big_enough = self.max_snd_wnd > 0 && len >= self.max_snd_wnd / SWS_FRACTION;
                if !((nagle_ok && all_of_it) || big_enough || self.pending.sws_override) {
                    // RFC 1122 section 4.2.3.4: with nothing in flight no ACK will come to
                    // send it; the override timeout (the persist timer) will.
                    if self.flight() == 0 && !self.timers.is_armed(Timer::ZeroWindowProbe) {
                        let wait = self.rtt.rto().min(MAX_SWS_OVERRIDE);
                        self.timers.set(Timer::ZeroWindowProbe, now + wait);
                    }
                    return None;
                }
            }
            self.pending.sws_override = false;
            (self.snd_nxt, len)
        };
        let offset = seq - self.snd_una;
        let fin = self.fin_queued && seq + len == data_end && self.fin_fits(data_end);
        if len == 0 && !fin {
            return None;
        }
        let (a, b) = self.send_buf.as_slices();
        let range = offset..offset + len;
        if range.end <= a.len() || range.start >= a.len() {
            self.tx_ring = Some(range);
        } else {
            self.tx_payload.extend_from_slice(&a[range.start..]);
            self.tx_payload.extend_from_slice(&b[..range.end - a.len()]);
        }
        if len > max_len {
            // The link cuts it into segments of `max_len`, each with these options.
            self.tx_segment = max_len as u16;
        }
        let end = seq + len + usize::from(fin);
        if let Some(rate) = self.rate.as_mut() {
            rate.on_send(now, seq, end, self.snd_max == self.snd_una);
        }
        let new_data = seq >= self.snd_max;
        if self.rack_enabled() {
            self.rack.on_sent(seq, end, now);
            self.prr_sent(end - seq);
        }
        if seq < self.snd_max {
            self.stats.retransmits += 1;
            self.note_retransmission(now, end);
            if self.timed.is_some_and(|(t, _)| t > seq) {
                self.timed = None;
            }
        } else if self.timed.is_none() && len > 0 {
            self.timed = Some((end, now));
        }
        if fin {
            self.fin_sent = true;
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        self.stats.bytes_out += len as u64;
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if !self.timers.is_armed(Timer::UserTimeout) {
            self.arm_user_timeout(now);
        }
        if tlp.is_some() {
            self.tlp_sent(now, self.snd_max, !new_data);
        } else if new_data {
            self.arm_tlp(now, false);
        }
        Some((
            seq,
            Flags {
                fin,
                psh: len > 0 && seq + len == data_end,
                ..Flags::default()
            },
        ))
    }
}
