//! RACK-TLP loss detection (RFC 8985): the sender remembers when each segment in flight
//! was last sent, and a segment is lost once a segment sent after it has been delivered
//! and a reordering window has passed (section 6), instead of after three duplicate ACKs.
//! The tail loss probe (section 7) lives in the connection; this file keeps the per-segment
//! transmit times and the RACK variables.
//!
//! Memory is one entry per segment in flight (a range of sequence numbers, not bytes).

use std::collections::VecDeque;

use super::seq::SeqNumber;
use crate::net::link::{Duration, Instant};

/// RFC 8985 section 6.2 step 4: the reordering window is 0 once this many segments are
/// SACKed (DupThresh), unless reordering was seen.
const DUP_THRESH: usize = 3;
/// Entries whose memory an emptied list keeps.
const RETAINED_ENTRIES: usize = 64;

/// One segment in flight, as last sent (RFC 8985 section 5.2, per-segment variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    start: SeqNumber,
    end: SeqNumber,
    /// Segment.xmit_ts: when it was last (re)transmitted.
    xmit_ts: Instant,
    /// Sent more than once.
    retransmitted: bool,
    /// Segment.lost: marked lost and not sent again since (its xmit_ts counts as
    /// infinite, RFC 8985 section 6.2 step 5).
    lost: bool,
    /// Selectively acknowledged.
    sacked: bool,
}

/// What [`Rack::detect_loss`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Detection {
    /// Segments newly marked lost.
    pub(crate) lost: usize,
    /// When the reordering timer must fire for the segments not yet lost (RFC 8985
    /// section 6.2 step 5: the largest remaining time).
    pub(crate) timeout: Option<Duration>,
    /// Whether any segment is marked lost and waits for its retransmission (newly or
    /// before): recovery must run (Linux `tcp_time_to_recover` on `lost_out`).
    pub(crate) any_lost: bool,
}

/// RFC 8985 section 5.2 connection variables and the segments in flight.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rack {
    /// Segments from SND.UNA on, sorted by sequence number and disjoint.
    sent: VecDeque<Sent>,
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent segment delivered.
    latest: Option<(Instant, SeqNumber)>,
    /// RACK.rtt: the round trip of that segment.
    rtt: Duration,
    /// RACK.min_RTT, from the connection's RTT samples (a lifetime minimum).
    min_rtt: Option<Duration>,
    /// RACK.fack: the highest sequence number delivered (cumulatively or selectively).
    fack: Option<SeqNumber>,
    /// RACK.reordering_seen.
    reordering_seen: bool,
    /// Bytes of `sent` neither SACKed nor lost, and segments lost and not SACKed: kept
    /// as the flags change, so that pipe and "is anything lost" cost no walk of the
    /// list on every segment sent (a list of thousands in a large window).
    pipe: usize,
    lost_unsacked: usize,
}

/// RFC 8985 section 6.2 RACK_sent_after(t1, seq1, t2, seq2).
fn sent_after(t1: Instant, seq1: SeqNumber, t2: Instant, seq2: SeqNumber) -> bool {
    t1 > t2 || (t1 == t2 && seq1 > seq2)
}

impl Rack {
    pub(crate) fn clear(&mut self) {
        self.sent = VecDeque::new();
        self.pipe = 0;
        self.lost_unsacked = 0;
    }

    /// Takes `s` out of the counters (before its flags or bounds change).
    fn uncount(&mut self, s: &Sent) {
        if !s.sacked {
            if s.lost {
                self.lost_unsacked -= 1;
            } else {
                self.pipe -= s.end - s.start;
            }
        }
    }

    /// Puts `s` into the counters (after its flags or bounds changed).
    fn count(&mut self, s: &Sent) {
        if !s.sacked {
            if s.lost {
                self.lost_unsacked += 1;
            } else {
                self.pipe += s.end - s.start;
            }
        }
    }

    /// Gives back the memory of an empty list of segments in flight (an idle
    /// connection's reclaim).
    pub(crate) fn release_if_empty(&mut self) {
        if self.sent.is_empty() {
            self.sent = VecDeque::new();
        }
    }

    /// One RTT sample of the connection (RFC 6298): RACK.min_RTT follows it.
    pub(crate) fn on_rtt_sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
    }

    /// Splits the entry holding `seq` strictly inside it, so that an entry starts there.
    fn split_at(&mut self, seq: SeqNumber) {
        let i = self.sent.partition_point(|s| s.end <= seq);
        if let Some(s) = self.sent.get(i).copied() {
            if s.start < seq && seq < s.end {
                self.sent[i].end = seq;
                let tail = Sent { start: seq, ..s };
                self.sent.insert(i + 1, tail);
                // The bytes stay counted; a lost segment became two.
                if s.lost && !s.sacked {
                    self.lost_unsacked += 1;
                }
            }
        }
    }

    /// `[start, end)` went out at `now` (RFC 8985 section 6.1): new data is appended,
    /// what was sent before takes the new time and counts as retransmitted.
    pub(crate) fn on_sent(&mut self, start: SeqNumber, end: SeqNumber, now: Instant) {
        if end <= start {
            return;
        }
        let last_end = self.sent.back().map(|s| s.end);
        if let Some(last_end) = last_end.filter(|&e| start < e) {
            self.split_at(start);
            self.split_at(end);
            let first = self.sent.partition_point(|s| s.end <= start);
            for i in first..self.sent.len() {
                let before = self.sent[i];
                if before.start >= end {
                    break;
                }
                let after = Sent {
                    xmit_ts: now,
                    retransmitted: true,
                    lost: false,
                    ..before
                };
                self.uncount(&before);
                self.count(&after);
                self.sent[i] = after;
            }
            if end > last_end {
                self.push(last_end, end, now);
            }
        } else {
            self.push(start, end, now);
        }
    }

    fn push(&mut self, start: SeqNumber, end: SeqNumber, now: Instant) {
        let s = Sent {
            start,
            end,
            xmit_ts: now,
            retransmitted: false,
            lost: false,
            sacked: false,
        };
        self.count(&s);
        self.sent.push_back(s);
    }

    /// RFC 8985 section 6.2 steps 2 and 3 for one segment newly delivered at `now`.
    /// `fack`: RACK.fack before this ACK.
    fn delivered(&mut self, s: Sent, now: Instant, fack: Option<SeqNumber>) {
        if !s.retransmitted && fack.is_some_and(|f| s.end < f) {
            self.reordering_seen = true;
        }
        let rtt = now - s.xmit_ts;
        // Step 2: an ACK for a retransmission faster than the path may answer the
        // original; its time is ambiguous.
        if s.retransmitted && self.min_rtt.is_some_and(|m| rtt < m) {
            return;
        }
        let newer = match self.latest {
            None => true,
            Some((t, seq)) => sent_after(s.xmit_ts, s.end, t, seq),
        };
        if newer {
            self.latest = Some((s.xmit_ts, s.end));
            self.rtt = rtt;
        }
    }

    fn advance_fack(&mut self, end: SeqNumber) {
        if self.fack.is_none_or(|f| end > f) {
            self.fack = Some(end);
        }
    }

    /// The cumulative ACK moved SND.UNA to `una`.
    pub(crate) fn on_cumulative_ack(&mut self, una: SeqNumber, now: Instant) {
        let fack = self.fack;
        while let Some(s) = self.sent.front().copied() {
            if s.end > una {
                if s.start < una {
                    let trimmed = Sent { start: una, ..s };
                    self.uncount(&s);
                    self.count(&trimmed);
                    self.sent[0] = trimmed;
                }
                break;
            }
            self.uncount(&s);
            self.sent.pop_front();
            if self.sent.is_empty() && self.sent.capacity() > RETAINED_ENTRIES {
                self.sent = VecDeque::new();
            }
            if !s.sacked {
                self.delivered(s, now, fack);
            }
            self.advance_fack(s.end);
        }
    }

    /// The SACK blocks of one ACK (already clipped to what is in flight).
    pub(crate) fn on_sack(&mut self, blocks: &[(SeqNumber, SeqNumber)], now: Instant) {
        let fack = self.fack;
        for &(left, right) in blocks {
            if right <= left {
                continue;
            }
            self.split_at(left);
            self.split_at(right);
            let first = self.sent.partition_point(|s| s.end <= left);
            let mut newly = Vec::new();
            for i in first..self.sent.len() {
                let s = self.sent[i];
                if s.start >= right {
                    break;
                }
                if !s.sacked {
                    self.uncount(&s);
                    self.sent[i].sacked = true;
                    newly.push(self.sent[i]);
                }
            }
            for s in newly {
                self.delivered(s, now, fack);
                self.advance_fack(s.end);
            }
        }
    }

    /// RFC 2018 section 8: the receiver reneged (the scoreboard was dropped).
    pub(crate) fn forget_sacks(&mut self) {
        for i in 0..self.sent.len() {
            if self.sent[i].sacked {
                self.sent[i].sacked = false;
                let s = self.sent[i];
                self.count(&s);
            }
        }
    }

    /// RFC 8985 section 6.2 step 4 without D-SACK (the multiplier stays 1): no window
    /// in recovery or once DupThresh segments are SACKed, unless reordering was seen;
    /// else min_RTT / 4, at most SRTT.
    fn reo_wnd(&self, in_recovery: bool, srtt: Option<Duration>) -> Duration {
        if !self.reordering_seen {
            let sacked = || {
                self.sent
                    .iter()
                    .filter(|s| s.sacked)
                    .take(DUP_THRESH)
                    .count()
            };
            if in_recovery || sacked() >= DUP_THRESH {
                return Duration::ZERO;
            }
        }
        let quarter = self.min_rtt.unwrap_or(Duration::ZERO) / 4;
        match srtt {
            Some(srtt) => quarter.min(srtt),
            None => quarter,
        }
    }

    /// RFC 8985 section 6.2 step 5: marks lost every segment sent before the latest one
    /// delivered, once RACK.rtt and the reordering window have passed since it was sent.
    pub(crate) fn detect_loss(
        &mut self,
        now: Instant,
        in_recovery: bool,
        srtt: Option<Duration>,
    ) -> Detection {
        let mut found = Detection::default();
        let Some((xmit_ts, end_seq)) = self.latest else {
            return found;
        };
        // The reordering window counts the SACKed entries: computed once, and only if
        // some segment was sent before the latest one delivered.
        let mut wait = None;
        for i in 0..self.sent.len() {
            let s = self.sent[i];
            if s.sacked {
                continue;
            }
            if s.lost {
                found.any_lost = true;
                continue;
            }
            if !sent_after(xmit_ts, end_seq, s.xmit_ts, s.end) {
                if !s.retransmitted {
                    // Entries are first sent in sequence order and a retransmission
                    // only moves an entry's time later, so every entry after a never
                    // retransmitted one was sent after it: not before the latest one
                    // delivered either, and not marked lost (RACK.xmit_ts only moves
                    // forward). Linux `tcp_rack_detect_loss` ends its walk of the
                    // time-ordered list likewise; without this every ACK walked the
                    // whole window.
                    break;
                }
                continue;
            }
            let wait = *wait.get_or_insert_with(|| self.rtt + self.reo_wnd(in_recovery, srtt));
            let due = s.xmit_ts + wait;
            if due <= now {
                self.sent[i].lost = true;
                self.pipe -= s.end - s.start;
                self.lost_unsacked += 1;
                found.lost += 1;
                found.any_lost = true;
            } else {
                let remaining = due - now;
                found.timeout = Some(found.timeout.map_or(remaining, |t| t.max(remaining)));
            }
        }
        found
    }

    /// The first run of adjacent lost segments, as `(start, len)`: what SACK recovery
    /// resends next.
    pub(crate) fn next_lost(&self) -> Option<(SeqNumber, usize)> {
        if self.lost_unsacked == 0 {
            return None;
        }
        let i = self.sent.iter().position(|s| s.lost && !s.sacked)?;
        let start = self.sent[i].start;
        let mut end = start;
        for s in self.sent.iter().skip(i) {
            if !s.lost || s.sacked || s.start != end {
                break;
            }
            end = s.end;
        }
        Some((start, end - start))
    }

    /// RFC 8985 section 6.2 / RFC 6675 pipe: bytes in flight that are neither SACKed
    /// nor marked lost.
    pub(crate) fn pipe(&self) -> usize {
        debug_assert_eq!(
            self.pipe,
            self.sent
                .iter()
                .filter(|s| !s.sacked && !s.lost)
                .map(|s| s.end - s.start)
                .sum::<usize>()
        );
        debug_assert_eq!(
            self.lost_unsacked,
            self.sent.iter().filter(|s| s.lost && !s.sacked).count()
        );
        self.pipe
    }

    /// When the oldest segment in flight (the one at SND.UNA) was last sent (Linux
    /// `tcp_skb_timestamp_us` of the retransmission queue's head).
    pub(crate) fn oldest_sent(&self) -> Option<Instant> {
        self.sent.front().map(|s| s.xmit_ts)
    }

    /// The last segment sent, not SACKed, as `(start, end)`: what a tail loss probe
    /// resends when there is no new data (RFC 8985 section 7.3).
    pub(crate) fn last_unsacked(&self) -> Option<(SeqNumber, SeqNumber)> {
        self.sent
            .iter()
            .rev()
            .find(|s| !s.sacked)
            .map(|s| (s.start, s.end))
    }

    #[cfg(test)]
    pub(crate) fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_segment_sent_before_a_delivered_one_is_lost_after_the_reordering_window() {
        let t0 = Instant::from_secs(1);
        let mut r = Rack::default();
        r.on_rtt_sample(ms(100));
        for i in 0..4 {
            r.on_sent(s(i * 100), s(i * 100 + 100), t0);
        }
        let t1 = t0 + ms(100);
        r.on_sack(&[(s(100), s(200))], t1);
        // One SACKed segment: the window is min_RTT / 4.
        let d = r.detect_loss(t1, false, Some(ms(100)));
        assert_eq!(
            d,
            Detection {
                lost: 0,
                timeout: Some(ms(25)),
                any_lost: false
            }
        );
        let d = r.detect_loss(t1 + ms(25), false, Some(ms(100)));
        assert_eq!(d.lost, 1);
        assert_eq!(r.next_lost(), Some((s(0), 100)));
        assert_eq!(r.pipe(), 200);
        r.on_sent(s(0), s(100), t1 + ms(25));
        assert_eq!(r.next_lost(), None);
        assert_eq!(r.pipe(), 300);
    }

    #[test]
    fn retransmissions_split_entries_and_cumulative_acks_trim_them() {
        let t0 = Instant::from_secs(1);
        let mut r = Rack::default();
        r.on_sent(s(0), s(300), t0);
        r.on_sent(s(100), s(400), t0 + ms(10));
        assert_eq!(r.sent.len(), 3);
        assert!(!r.sent[0].retransmitted && r.sent[1].retransmitted);
        assert!(!r.sent[2].retransmitted);
        r.on_cumulative_ack(s(50), t0 + ms(20));
        assert_eq!(r.sent[0].start, s(50));
        r.on_cumulative_ack(s(400), t0 + ms(20));
        assert!(r.sent.is_empty());
        assert_eq!(r.pipe(), 0);
    }

    /// RFC 8985 section 6.2 step 5 as written: every segment in flight is checked. What
    /// [`Rack::detect_loss`] must equal, whatever walk it takes.
    fn detect_loss_full_walk(
        r: &mut Rack,
        now: Instant,
        in_recovery: bool,
        srtt: Option<Duration>,
    ) -> Detection {
        let mut found = Detection::default();
        let Some((xmit_ts, end_seq)) = r.latest else {
            return found;
        };
        let wait = r.rtt + r.reo_wnd(in_recovery, srtt);
        for s in &mut r.sent {
            if s.sacked {
                continue;
            }
            if s.lost {
                found.any_lost = true;
                continue;
            }
            if !sent_after(xmit_ts, end_seq, s.xmit_ts, s.end) {
                continue;
            }
            let due = s.xmit_ts + wait;
            if due <= now {
                s.lost = true;
                found.lost += 1;
                found.any_lost = true;
            } else {
                let remaining = due - now;
                found.timeout = Some(found.timeout.map_or(remaining, |t| t.max(remaining)));
            }
        }
        found
    }

    /// One event of a sender's life as RACK sees it, on 100-byte segments.
    #[derive(Debug, Clone)]
    enum Event {
        /// New segments at SND.MAX.
        Send(u8),
        /// A retransmission of segment `.0` (modulo what is in flight), `.1` long.
        Resend(u8, u8),
        /// A SACK of segments `[.0, .0 + .1)` above SND.UNA.
        Sack(u8, u8),
        /// SND.UNA moves up by `.0` segments.
        Ack(u8),
        Detect(bool),
        /// The clock moves on by `.0` ms.
        Wait(u8),
    }

    fn event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        prop_oneof![
            (1u8..8).prop_map(Event::Send),
            (any::<u8>(), 1u8..4).prop_map(|(a, b)| Event::Resend(a, b)),
            (any::<u8>(), 1u8..4).prop_map(|(a, b)| Event::Sack(a, b)),
            (0u8..4).prop_map(Event::Ack),
            any::<bool>().prop_map(Event::Detect),
            (0u8..60).prop_map(Event::Wait),
        ]
    }

    proptest::proptest! {
        /// The walk that stops at the first segment sent after the latest delivered one
        /// marks the same segments lost and asks for the same timer as the full walk,
        /// under any schedule of sends, retransmissions, SACKs and ACKs.
        #[test]
        fn detect_loss_stops_early_with_the_full_walks_result(
            events in proptest::collection::vec(event(), 1..200)
        ) {
            const SEG: u32 = 100;
            let mut r = Rack::default();
            let mut now = Instant::from_secs(1);
            let (mut una, mut max) = (0u32, 0u32);
            r.on_rtt_sample(ms(20));
            for e in events {
                let flight = (max - una) / SEG;
                match e {
                    Event::Send(n) => {
                        let end = max + u32::from(n) * SEG;
                        r.on_sent(s(max), s(end), now);
                        max = end;
                    }
                    Event::Resend(at, n) if flight > 0 => {
                        let start = una + (u32::from(at) % flight) * SEG;
                        let end = (start + u32::from(n) * SEG).min(max);
                        r.on_sent(s(start), s(end), now);
                    }
                    Event::Sack(at, n) if flight > 0 => {
                        let left = una + (u32::from(at) % flight) * SEG;
                        let right = (left + u32::from(n) * SEG).min(max);
                        r.on_sack(&[(s(left), s(right))], now);
                    }
                    Event::Ack(n) => {
                        una = (una + u32::from(n) * SEG).min(max);
                        r.on_cumulative_ack(s(una), now);
                    }
                    Event::Detect(in_recovery) => {
                        let mut full = r.clone();
                        let expected =
                            detect_loss_full_walk(&mut full, now, in_recovery, Some(ms(20)));
                        let got = r.detect_loss(now, in_recovery, Some(ms(20)));
                        proptest::prop_assert_eq!(got, expected);
                        proptest::prop_assert_eq!(&r.sent, &full.sent);
                    }
                    Event::Wait(n) => now += ms(u64::from(n)),
                    Event::Resend(..) | Event::Sack(..) => {}
                }
            }
        }
    }

    #[test]
    fn delivery_below_the_highest_delivered_is_reordering() {
        let t0 = Instant::from_secs(1);
        let mut r = Rack::default();
        r.on_rtt_sample(ms(100));
        r.on_sent(s(0), s(100), t0);
        r.on_sent(s(100), s(200), t0);
        r.on_sack(&[(s(100), s(200))], t0 + ms(100));
        assert!(!r.reordering_seen());
        r.on_cumulative_ack(s(200), t0 + ms(110));
        assert!(r.reordering_seen());
    }
}
