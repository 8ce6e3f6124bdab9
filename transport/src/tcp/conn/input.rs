//! The incoming direction: segments (RFC 9293 section 3.10.7) and ICMP errors that
//! arrive for this connection.

use std::collections::VecDeque;

use etherparse::icmpv4::{CODE_DST_UNREACH_PORT, CODE_DST_UNREACH_PROTOCOL};

use super::{
    AckPending, Connection, State, CHALLENGE_ACK_INTERVAL, DEFAULT_MSS, MIN_SND_MSS,
    TIMESTAMP_OPTION_LEN,
};
use crate::net::link::{Duration, Instant};
use crate::tcp::autotune::send_buffer_for;
use crate::tcp::config::mss_for_mtu;
use crate::tcp::error::ConnectionError;
use crate::tcp::seq::SeqNumber;
use crate::tcp::timer::Timer;
use crate::tcp::wire::{Segment, MAX_SACK_BLOCKS, MAX_WINDOW_SCALE};

/// Largest RTT sample taken from a timestamp echo, in milliseconds: an older echo is
/// more likely a stale or forged one than a real round trip (RFC 6298 section 2.5 puts
/// 60 s as the least upper bound an RTO may have).
const MAX_TIMESTAMP_RTT_MS: u32 = 60_000;
/// RFC 1191 section 7: the table of common MTUs ("plateaus") to try when a router reports
/// no next-hop MTU, largest first.
const MTU_PLATEAUS: [u16; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];
/// The least path MTU an ICMP message can make us use. RFC 1191 section 3 allows down
/// to 68; Linux's `min_pmtu` is 552, so that a forged or broken message cannot shrink
/// our segments to a few bytes each (RFC 5927 section 7.1 discusses the attack).
const MIN_PATH_MTU: usize = 552;
/// Largest window any peer can announce, 2^30 bytes (RFC 7323 section 2.3); bounds how
/// old an acceptable ACK may be (RFC 5961 section 5.2, MAX.SND.WND).
const MAX_WINDOW: usize = 1 << 30;
/// Longest delay of a delayed ACK (RFC 9293 section 3.8.6.3 allows up to 500 ms; 200 ms
/// is what Linux uses as its maximum).
const MAX_DELAYED_ACK: Duration = Duration::from_millis(200);
/// Full-sized segments after which an ACK goes out at once (RFC 9293 section 3.8.6.3,
/// RFC 5681 section 4.2: at least every second full-sized segment).
const ACK_EVERY_FULL_SEGMENTS: u32 = 2;

impl Connection {
    pub(super) fn take_syn_options(&mut self, syn: &Segment<'_>) {
        let o = &syn.options;
        let ours = usize::from(self.cfg.mss);
        self.snd_mss = usize::from(o.mss.unwrap_or(DEFAULT_MSS as u16))
            .min(ours)
            .max(MIN_SND_MSS);
        match o.window_scale {
            Some(shift) if self.cfg.window_scaling => {
                self.ws_enabled = true;
                self.snd_shift = shift.min(MAX_WINDOW_SCALE);
            }
            _ => {
                self.ws_enabled = false;
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        if self.cfg.timestamps {
            if let Some((tsval, _)) = o.timestamps {
                self.ts_enabled = true;
                self.ts_recent = tsval;
            }
        }
        self.sack_enabled = self.cfg.sack && o.sack_permitted;
        if self.ts_enabled {
            self.snd_mss -= TIMESTAMP_OPTION_LEN;
        }
        self.cc.set_mss(self.snd_mss);
    }

    /// RFC 5961 section 7: at most `challenge_ack_limit` ACKs a second answer challenges
    /// and invalid segments; asks for the ACK and returns true if this one is within it.
    fn ack_within_limit(&mut self, now: Instant) -> bool {
        let (start, _) = self.challenge_window;
        if now - start >= CHALLENGE_ACK_INTERVAL {
            self.challenge_window = (now, 0);
        }
        if self.challenge_window.1 < self.cfg.challenge_ack_limit {
            self.challenge_window.1 += 1;
            self.pending.ack = AckPending::Now;
            true
        } else {
            false
        }
    }

    /// RFC 5961 sections 3.2, 4.2 and 7: a rate-limited challenge ACK.
    fn challenge_ack(&mut self, now: Instant) {
        if self.ack_within_limit(now) {
            self.stats.challenge_acks += 1;
        } else {
            self.stats.challenge_acks_suppressed += 1;
        }
    }

    /// The ACK answering an invalid segment: a PAWS failure (RFC 7323 section 5.3), an
    /// unacceptable segment or an ACK of data never sent (RFC 9293 section 3.10.7.4).
    /// Without data (or with a SYN) it goes through the RFC 5961 section 7 limit, so two
    /// desynchronised peers do not ACK each other forever; a segment with data is always
    /// answered, as Linux does (`tcp_oow_rate_limited`): it is no part of an ACK loop,
    /// and its duplicate ACK is what the sender's loss recovery and probes need.
    fn ack_invalid(&mut self, now: Instant, seg: &Segment<'_>) {
        if seg.seq_len() > 0 && !seg.flags.syn {
            self.pending.ack = AckPending::Now;
            self.ack_before_next = true;
        } else if !self.ack_within_limit(now) {
            self.stats.invalid_acks_suppressed += 1;
        }
    }

    /// A segment for this connection arrived (RFC 9293 section 3.10.7).
    pub fn handle_segment(&mut self, now: Instant, seg: &Segment<'_>) {
        self.stats.segs_in += 1;
        self.ack_before_next = false;
        if seg.flags.rst {
            self.stats.rsts_in += 1;
        }
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.on_syn_sent(now, seg),
            _ => self.on_synchronized(now, seg),
        }
        // After the state change, so the segment that completes a handshake arms it.
        self.touch_keepalive(now);
    }

    /// RFC 9293 section 3.10.7.3.
    fn on_syn_sent(&mut self, now: Instant, seg: &Segment<'_>) {
        let f = seg.flags;
        if f.ack && (seg.ack <= self.iss || seg.ack > self.snd_max) {
            if !f.rst {
                self.send_rst_for(seg);
            }
            return;
        }
        if f.rst {
            if f.ack {
                self.fail(ConnectionError::Refused);
            }
            return;
        }
        if !f.syn {
            return;
        }
        if f.fin {
            // SYN and FIN together only probe or fingerprint a stack: Linux drops them.
            self.stats.syn_fin_drops += 1;
            return;
        }
        self.take_syn_options(seg);
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        if f.ack {
            self.snd_una = seg.ack;
            // RFC 7323 section 2.2: the window of a SYN-ACK is never scaled.
            self.snd_wnd = usize::from(seg.window);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.sample_rtt(now, seg);
            self.retries = 0;
            self.timers.stop(Timer::Retransmit);
            // RFC 5482: the user timeout runs while data is unacknowledged; nothing is
            // now, and the first send arms it again.
            self.timers.stop(Timer::UserTimeout);
            if self.ts_enabled {
                if let Some((tsval, _)) = seg.options.timestamps {
                    self.ts_recent = tsval;
                }
            }
            self.set_state(State::Established);
            self.pending.ack = AckPending::Now;
        } else {
            // Simultaneous open: answer with SYN-ACK from SYN-RECEIVED.
            self.snd_wnd = usize::from(seg.window);
            self.snd_wl1 = seg.seq;
            self.snd_nxt = self.iss;
            self.set_state(State::SynReceived);
        }
    }

    /// RFC 9293 section 3.10.7.4 sequence number check, against the window the peer
    /// knows or the room we actually have, whichever is larger.
    fn acceptable(&self, seg: &Segment<'_>) -> bool {
        let len = seg.seq_len();
        let wnd = self.advertised().max(self.window_to_advertise());
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => seg.seq.in_window(self.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => {
                seg.seq.in_window(self.rcv_nxt, wnd)
                    || (seg.seq + (len - 1)).in_window(self.rcv_nxt, wnd)
            }
        }
    }

    /// A segment with data, at RCV.NXT and with an ACK, that is unacceptable only because
    /// our receive window is zero (RFC 9293 section 3.10.7.4).
    fn at_zero_window(&self, seg: &Segment<'_>) -> bool {
        let f = seg.flags;
        f.ack
            && !f.syn
            && self.state != State::SynReceived
            && seg.seq == self.rcv_nxt
            && self.advertised().max(self.window_to_advertise()) == 0
    }

    fn on_synchronized(&mut self, now: Instant, seg: &Segment<'_>) {
        let f = seg.flags;
        // RFC 7323 section 5.3 PAWS.
        if self.ts_enabled && !f.rst {
            if let Some((tsval, _)) = seg.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.stats.paws_drops += 1;
                    self.ack_invalid(now, seg);
                    return;
                }
            }
        }
        if f.syn && !f.ack && self.state == State::SynReceived && seg.seq == self.irs {
            // Our SYN-ACK was lost: the peer retransmitted its SYN. It sits below RCV.NXT,
            // so this comes before the window test, which would answer a bare ACK.
            self.snd_nxt = self.iss;
            return;
        }
        if !self.acceptable(seg) {
            if !f.rst {
                // An old duplicate or out of window: re-ACK (RFC 9293 3.10.7.4).
                self.stats.dup_segments += 1;
                self.ack_invalid(now, seg);
                if self.state == State::TimeWait && f.fin {
                    // RFC 9293 section 3.10.7.4, TIME-WAIT: a retransmitted FIN (always
                    // below RCV.NXT, hence here) restarts the 2 MSL timeout.
                    self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
                }
                if self.at_zero_window(seg) {
                    // RFC 9293 section 3.10.7.4: with RCV.WND zero, valid ACKs are still
                    // processed; only the data is dropped. (Never in SYN-RECEIVED, so this
                    // ACK does not cover our SYN.)
                    self.process_ack(now, seg, false);
                }
            }
            return;
        }
        if f.rst {
            // RFC 5961 section 3.2: only an exact match resets; else challenge.
            if seg.seq == self.rcv_nxt {
                let error = if self.state == State::SynReceived {
                    ConnectionError::Refused
                } else {
                    ConnectionError::Reset
                };
                self.fail(error);
            } else {
                self.challenge_ack(now);
            }
            return;
        }
        if f.syn {
            // RFC 5961 section 4.2.
            self.challenge_ack(now);
            return;
        }
        if !f.ack {
            return;
        }
        // Whether this ACK acknowledges our SYN: only the one that completes the
        // handshake from SYN-RECEIVED does (after SYN-SENT it was taken there).
        let syn_acked = self.state == State::SynReceived;
        if syn_acked {
            if seg.ack > self.snd_una && seg.ack <= self.snd_max {
                self.snd_wnd = usize::from(seg.window) << self.snd_shift;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.set_state(if self.fin_queued {
                    State::FinWait1
                } else {
                    State::Established
                });
            } else {
                self.send_rst_for(seg);
                return;
            }
        }
        if !self.process_ack(now, seg, syn_acked) {
            return;
        }
        // RFC 7323 section 4.3: remember the timestamp to echo.
        if let Some((tsval, _)) = seg.options.timestamps {
            if self.ts_enabled && seg.seq <= self.last_ack_sent {
                self.ts_recent = tsval;
            }
        }
        if matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            self.process_data(now, seg);
        } else if self.state == State::TimeWait && f.fin {
            // A retransmitted FIN: ACK it and restart 2*MSL.
            self.pending.ack = AckPending::Now;
            self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
        } else if seg.seq_len() > 0 {
            self.pending.ack = AckPending::Now;
        }
    }

    /// Sequence space up to `end` was sent again at `now` (see `retransmitted`).
    pub(super) fn note_retransmission(&mut self, now: Instant, end: SeqNumber) {
        let high = match self.retransmitted {
            Some((high, _)) => high.max(end),
            None => end,
        };
        self.retransmitted = Some((high, self.ts_now(now)));
    }

    /// One RTT sample from an ACK that acknowledges new data (RFC 6298 section 2, RFC
    /// 7323 section 4.3): from its timestamp echo, else from the segment timed (Karn).
    /// While retransmitted data is unacknowledged, an echo older than the latest
    /// retransmission is not used: the peer echoes TS.Recent, which a duplicate does not
    /// update, so when the ACK of the original was lost, the ACK that the retransmission
    /// draws echoes the original and would read as a round trip of several RTOs (Linux
    /// likewise prefers the times of data sent once).
    fn sample_rtt(&mut self, now: Instant, seg: &Segment<'_>) {
        let guard = self.retransmitted;
        if guard.is_some_and(|(high, _)| seg.ack >= high) {
            self.retransmitted = None;
        }
        if self.ts_enabled {
            if let Some((_, tsecr)) = seg.options.timestamps {
                let fresh = guard.is_none_or(|(_, rtx)| tsecr.wrapping_sub(rtx) as i32 >= 0);
                if tsecr != 0 && fresh {
                    let ms = self.ts_now(now).wrapping_sub(tsecr);
                    if ms < MAX_TIMESTAMP_RTT_MS {
                        let rtt = Duration::from_millis(u64::from(ms.max(1)));
                        self.take_rtt_sample(now, rtt);
                        return;
                    }
                }
            }
        }
        if let Some((end, sent_at)) = self.timed {
            if seg.ack >= end {
                self.take_rtt_sample(now, now - sent_at);
            }
        }
    }

    /// A round trip measured: the RTO estimator, RACK and the congestion control (CUBIC's
    /// HyStart) learn it.
    fn take_rtt_sample(&mut self, now: Instant, rtt: Duration) {
        self.rtt.sample(rtt);
        self.rack.on_rtt_sample(rtt);
        self.timed = None;
        let srtt = self.rtt.srtt();
        self.cc
            .on_rtt_sample(now, rtt, srtt, self.snd_una, self.snd_nxt);
    }

    /// ACK field processing; false if the segment is to be dropped. `syn_acked`: the ACK
    /// also covers our SYN, which takes the first sequence number (RFC 9293 section 3.4)
    /// but no byte of the send buffer. It is known from the state, never from
    /// `snd_una == iss`, which holds again after every 2^32 bytes.
    fn process_ack(&mut self, now: Instant, seg: &Segment<'_>, syn_acked: bool) -> bool {
        let ack = seg.ack;
        if ack > self.snd_max {
            // Acknowledges something never sent (RFC 9293: send ACK, drop).
            self.ack_invalid(now, seg);
            return false;
        }
        // RFC 5961 section 5.2: too old an ACK is suspicious.
        if ack < self.snd_una - self.max_snd_wnd.min(MAX_WINDOW) {
            self.challenge_ack(now);
            return false;
        }
        let snd_una_before = self.snd_una;
        // Delivery-rate sampling: what was in the network and presumed lost before.
        let before = self.rate.is_some().then(|| {
            (
                self.in_flight(),
                self.scoreboard.hole_bytes(ack.max(self.snd_una)),
            )
        });
        if ack > self.snd_una {
            let acked = ack - self.snd_una;
            // The send buffer may already hold data queued in SYN-RECEIVED.
            let data_acked = (acked - usize::from(syn_acked)).min(self.send_buf.len());
            self.send_buf.drain(..data_acked);
            if self.send_buf.is_empty() {
                // Not shrunk here: a sender the application keeps busy drains its buffer
                // with every ACK that covers all in flight and refills it at once (the
                // source service over TUN did so each round, a 4 MiB buffer shrunk and
                // regrown through mremap and page faults). Reclaimed once it stays empty.
                self.reclaim_later(now);
            }
            self.snd_una = ack;
            self.scoreboard.prune(ack);
            if self.rack_enabled() {
                self.rack.on_cumulative_ack(ack, now);
            }
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            self.stats.bytes_acked += data_acked as u64;
            self.sample_rtt(now, seg);
            self.rtt.reset_backoff();
            self.retries = 0;
            self.keepalive_probes_sent = 0;
            self.recovery_on_new_ack(now, ack, acked);
            self.tlp_on_ack(now, ack);
            if self.flight() < self.cc.cwnd() {
                // Linux `tcp_should_expand_sndbuf`: the window has room the buffer may
                // be what limits.
                self.snd_buf_limit =
                    send_buffer_for(self.snd_buf_limit, self.cc.cwnd(), self.cfg.send_buffer_max);
            }
            if self.snd_una == self.snd_max {
                self.timers.stop(Timer::Retransmit);
                self.timers.stop(Timer::UserTimeout);
            } else {
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                self.arm_user_timeout(now);
            }
        } else if ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.fin
            && self.snd_max > self.snd_una
            && usize::from(seg.window) << self.snd_shift == self.snd_wnd
        {
            self.recovery_on_dup_ack(now);
        }
        if self.sack_enabled && ack >= self.snd_una {
            let newly_sacked =
                self.scoreboard
                    .update(self.snd_una, self.snd_max, &seg.options.sack_blocks);
            if self.rack_enabled() {
                let newly_lost = self.rack_on_ack(now, seg);
                // draft-ietf-tcpm-prr-rfc6937bis safeACK (Linux `tcp_cwnd_reduction`):
                // SND.UNA advanced and nothing newly marked lost.
                let safe_ack = self.snd_una > snd_una_before && newly_lost == 0;
                self.prr_on_ack((self.snd_una - snd_una_before) + newly_sacked, safe_ack);
            } else {
                self.recovery_on_sack(now);
            }
        }
        if ack > snd_una_before {
            self.arm_tlp(now, true);
        }
        if let Some((prior_in_flight, holes_before)) = before {
            self.take_rate_sample(now, seg, prior_in_flight, holes_before);
        }
        // Window update (RFC 9293 3.10.7.4, SND.WL1/SND.WL2 rule).
        if self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack) {
            self.snd_wnd = usize::from(seg.window) << self.snd_shift;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.timers.stop(Timer::ZeroWindowProbe);
                self.zero_window_backoff = 0;
            }
        }
        // Our FIN acknowledged?
        let fin_acked = self.fin_sent && self.send_buf.is_empty() && self.snd_una == self.snd_max;
        match self.state {
            State::FinWait1 if fin_acked => {
                self.set_state(State::FinWait2);
                self.arm_fin_wait2_timeout(now);
            }
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => {
                self.timers.stop_all();
                self.set_state(State::Closed);
                return false;
            }
            _ => {}
        }
        true
    }

    /// Draft-cheng-iccrg-delivery-rate-estimation section 3.4: the rate sample of this
    /// ACK goes to the congestion control with the state it acts on. Newly presumed lost
    /// are the holes below the highest SACK that this ACK added.
    fn take_rate_sample(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        prior_in_flight: usize,
        holes_before: usize,
    ) {
        let holes = self.scoreboard.hole_bytes(self.snd_una);
        let blocks = if self.sack_enabled {
            seg.options.sack_blocks
        } else {
            [None; MAX_SACK_BLOCKS]
        };
        let Some(rate) = self.rate.as_mut() else {
            return;
        };
        let mut rs = rate.on_ack(now, self.snd_una, &blocks);
        rs.losses = holes.saturating_sub(holes_before);
        rs.prior_in_flight = prior_in_flight;
        rs.in_flight = self.in_flight();
        rs.ca_state = self.ca_state();
        rs.srtt = self.rtt.srtt();
        self.cc.on_rate_sample(now, &rs);
        if self.cc.app_limited() {
            if let Some(rate) = self.rate.as_mut() {
                rate.on_app_limited(rs.in_flight);
            }
        }
    }

    /// Receive-buffer autotuning after in-order data (Linux `tcp_rcv_rtt_measure_ts` and
    /// `tcp_rcv_space_adjust`): the echo of our timestamp on the peer's data is a
    /// receiver-side round trip (capped at the RTO, so an echo of an ACK sent before an
    /// idle spell does not count for long); without timestamps the sender-side SRTT
    /// stands in.
    fn autotune_receive(&mut self, now: Instant, seg: &Segment<'_>) {
        if self.ts_enabled {
            if let Some((_, tsecr)) = seg.options.timestamps {
                let ms = self.ts_now(now).wrapping_sub(tsecr);
                if tsecr != 0 && ms < MAX_TIMESTAMP_RTT_MS {
                    let rtt = Duration::from_millis(u64::from(ms.max(1)));
                    self.rcv_space.rtt_sample(rtt.min(self.rtt.rto()));
                }
            }
        }
        let srtt = self.rtt.srtt();
        if self
            .rcv_space
            .on_data(now, self.rcv_nxt, srtt, usize::from(self.cfg.mss))
        {
            self.stats.recv_buffer_grown += 1;
        }
    }

    /// TIME-WAIT keeps only what recognises the peer's retransmitted FIN (RFC 9293
    /// section 3.10.7.4): the send and reassembly buffers are freed, and the receive
    /// buffer too once the application has read it.
    fn enter_time_wait(&mut self, now: Instant) {
        self.timers.stop_all();
        self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
        self.set_state(State::TimeWait);
        self.send_buf = VecDeque::new();
        self.ooo.release();
        self.rack.clear();
        self.tx_payload = Vec::new();
        if self.recv_buf.is_empty() {
            self.recv_buf = VecDeque::new();
        }
    }

    /// Segment text and FIN (RFC 9293 section 3.10.7.4, eighth step).
    fn process_data(&mut self, now: Instant, seg: &Segment<'_>) {
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        // Trim what we already have.
        if seq < self.rcv_nxt {
            let dup = (self.rcv_nxt - seq).min(payload.len());
            payload = &payload[dup..];
            seq += dup;
        }
        // RFC 1122 section 4.2.2.13: new data after the application closed is answered
        // with a RST (Linux counts it as TCPAbortOnData).
        if self.orphaned && !payload.is_empty() {
            self.stats.aborts_on_data += 1;
            self.abort_orphan(ConnectionError::Aborted);
            return;
        }
        // Trim what does not fit the window.
        let room = self.window_to_advertise().max(self.advertised());
        let offset = seq - self.rcv_nxt;
        let mut fin = seg.flags.fin;
        if offset + payload.len() > room {
            payload = &payload[..room.saturating_sub(offset).min(payload.len())];
            fin = false;
        }
        if fin {
            self.fin_seq = Some(seg.seq + seg.payload.len());
        }
        if !payload.is_empty() {
            if seq == self.rcv_nxt {
                self.recv_buf.extend(payload);
                self.rcv_nxt += payload.len();
                self.stats.bytes_in += payload.len() as u64;
                let filled_hole = !self.ooo.is_empty();
                while let Some(data) = self.ooo.pop_ready(self.rcv_nxt) {
                    self.stats.bytes_in += data.len() as u64;
                    self.rcv_nxt += data.len();
                    self.recv_buf.extend(data);
                }
                self.autotune_receive(now, seg);
                if filled_hole {
                    self.pending.ack = AckPending::Now;
                    self.ack_before_next = true;
                } else {
                    // RFC 9293 section 3.8.6.3: full-sized as the peer's segments go, so
                    // a smaller path MTU on its side still gets an ACK every second one.
                    // A segment longer than our MSS is a GRO super-segment, which says
                    // nothing of the peer's segment size (Linux takes its gso_size).
                    if payload.len() > self.rcv_mss && payload.len() <= usize::from(self.cfg.mss) {
                        self.rcv_mss = payload.len();
                    }
                    // A GRO super-segment counts as the segments it carries, as Linux
                    // counts bytes beyond rcv_mss (`__tcp_ack_snd_check`).
                    if payload.len() >= self.rcv_mss {
                        self.unacked_segments += (payload.len() / self.rcv_mss) as u32;
                    }
                    if self.unacked_segments >= ACK_EVERY_FULL_SEGMENTS
                        || self.cfg.delayed_ack.is_zero()
                    {
                        self.pending.ack = AckPending::Now;
                    } else if self.pending.ack == AckPending::None {
                        self.pending.ack = AckPending::Delayed;
                        self.timers.set(
                            Timer::DelayedAck,
                            now + self.cfg.delayed_ack.min(MAX_DELAYED_ACK),
                        );
                    }
                }
            } else {
                self.stats.out_of_order += 1;
                match self.ooo.insert(seq, payload) {
                    Ok(0) => self.stats.dup_segments += 1,
                    Ok(_) => {}
                    Err(_) => self.stats.ooo_dropped += 1,
                }
                // RFC 5681 section 4.2: out-of-order data is acknowledged at once.
                self.pending.ack = AckPending::Now;
                self.ack_before_next = true;
            }
        } else if seg.seq_len() > 0 && !fin {
            // A duplicate: its duplicate ACK goes out at once too.
            self.pending.ack = AckPending::Now;
            self.ack_before_next = true;
        }
        if let Some(fin_seq) = self.fin_seq {
            if fin_seq == self.rcv_nxt && !self.fin_received {
                self.rcv_nxt += 1;
                self.fin_received = true;
                self.pending.ack = AckPending::Now;
                match self.state {
                    State::Established => self.set_state(State::CloseWait),
                    State::FinWait1 => self.set_state(State::Closing),
                    State::FinWait2 => self.enter_time_wait(now),
                    _ => {}
                }
            }
        }
    }

    /// An ICMP error quoting one of our segments with sequence number `seq` arrived
    /// (`code`: destination unreachable code, `None` for time exceeded). RFC 5927: only
    /// errors quoting data in flight count, so a blind attacker cannot forge them. RFC
    /// 1122 section 4.2.3.9 and RFC 5461: protocol and port unreachable are hard errors
    /// that abort a connection still in SYN-SENT (ECONNREFUSED, as Linux does); every
    /// other error is soft: counted, and the retransmission timer keeps trying.
    pub(crate) fn on_icmp_error(&mut self, seq: SeqNumber, code: Option<u8>) {
        if !self.quotes_in_flight(seq) {
            self.stats.icmp_errors_ignored += 1;
            return;
        }
        self.stats.icmp_errors += 1;
        let hard = matches!(
            code,
            Some(CODE_DST_UNREACH_PROTOCOL | CODE_DST_UNREACH_PORT)
        );
        if hard && self.state == State::SynSent {
            self.fail(ConnectionError::Refused);
        }
    }

    /// RFC 5927 section 4.1: an ICMP error must quote a sequence number we have in
    /// flight.
    fn quotes_in_flight(&self, seq: SeqNumber) -> bool {
        seq >= self.snd_una && seq < self.snd_max.max(self.snd_una + 1)
    }

    /// ICMP destination unreachable, fragmentation needed (type 3 code 4), quoting our
    /// segment at `seq` in a datagram of `quoted_len` bytes: path MTU discovery, RFC 1191
    /// section 6.1. Only a sequence number in flight counts (RFC 5927 section 4.1). The
    /// new path MTU is the next-hop MTU the router reports or, from a router that leaves
    /// it 0, the plateau below the quoted length (RFC 1191 section 5 and 7), never below
    /// [`MIN_PATH_MTU`]; then [`Connection::on_path_mtu`] lowers the MSS and resends.
    pub(crate) fn on_fragmentation_needed(
        &mut self,
        seq: SeqNumber,
        next_hop_mtu: u16,
        quoted_len: u16,
    ) {
        if !self.quotes_in_flight(seq) {
            self.stats.icmp_errors_ignored += 1;
            return;
        }
        self.stats.icmp_errors += 1;
        let mtu = match next_hop_mtu {
            0 => MTU_PLATEAUS
                .into_iter()
                .find(|&p| p < quoted_len)
                .unwrap_or(0),
            mtu => mtu,
        };
        self.on_path_mtu(usize::from(mtu).max(MIN_PATH_MTU));
    }

    /// RFC 1191 section 3 and RFC 1122 section 4.2.2.6: datagrams larger than `mtu`
    /// bytes do not get through (the interface refused one with Don't Fragment set, or
    /// a router said so). Lowers the send MSS to fit, never raises it, and resends what
    /// is in flight at the new size (go back N from SND.UNA; a lost-in-the-path packet
    /// is no sign of congestion, so cwnd and ssthresh are left alone, as Linux's
    /// `tcp_simple_retransmit`). Before the handshake's MSS is settled nothing changes.
    /// Returns whether the MSS went down.
    pub(crate) fn on_path_mtu(&mut self, mtu: usize) -> bool {
        if !(self.state.is_synchronized() || self.state == State::SynReceived) {
            return false;
        }
        let options = if self.ts_enabled {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        };
        let mss = mss_for_mtu(mtu).saturating_sub(options).max(MIN_SND_MSS);
        if mss >= self.snd_mss {
            return false;
        }
        self.snd_mss = mss;
        self.stats.path_mtu_reductions += 1;
        if self.snd_nxt > self.snd_una {
            self.snd_nxt = self.snd_una;
            // Karn: what is resent is not timed.
            self.timed = None;
        }
        true
    }

    /// RFC 9293 section 3.10.7.1-style reset for an unacceptable segment.
    fn send_rst_for(&mut self, seg: &Segment<'_>) {
        self.pending.reset_reply = Some(Box::new(seg.reset_reply()));
    }
}
