//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation-02, as Linux's
//! `tcp_rate.c` implements it): every data segment records, when it is sent, how much had
//! been delivered by then and when (section 3.2); every ACK that newly acknowledges or
//! SACKs segments turns the newest of them into one rate sample: bytes delivered between
//! that segment's send and this ACK, over the longer of the send and ACK intervals
//! (sections 3.3 and 3.4). BBR's bandwidth model is built from these samples.

use std::collections::VecDeque;

use super::seq::SeqNumber;
use crate::net::link::{Duration, Instant};

/// The connection's loss-recovery state as a congestion controller sees it (Linux's
/// `TCP_CA_Open`, `TCP_CA_Recovery`, `TCP_CA_Loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum CaState {
    #[default]
    Open,
    /// Fast recovery (RFC 5681 section 3.2, RFC 6675).
    Recovery,
    /// After a retransmission timeout, until SND.MAX of the timeout is acknowledged.
    Loss,
}

/// Section 3.2: what a segment remembers from the moment it was (last) sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    start: SeqNumber,
    end: SeqNumber,
    sent_time: Instant,
    /// C.delivered, C.delivered_time and C.first_sent_time when it was sent.
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    is_app_limited: bool,
    /// Sent more than once: no RTT sample from it (Karn).
    retransmitted: bool,
    /// Delivered by a SACK already; the cumulative ACK does not count it again.
    sacked: bool,
}

/// One rate sample and the ACK it came with: what a congestion controller learns from
/// each ACK (Linux's `struct rate_sample` with the `tcp_sock` fields BBR reads).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct RateSample {
    /// Bytes delivered over `interval` (section 3.4 rs.delivered).
    pub(crate) delivered: u64,
    /// Section 3.4 rs.interval: `None` when no segment was newly delivered or the
    /// interval is shorter than the minimum RTT (the sample would overestimate).
    pub(crate) interval: Option<Duration>,
    /// C.delivered when the newest delivered segment was sent.
    pub(crate) prior_delivered: u64,
    /// C.delivered after this ACK: bytes delivered over the connection's life.
    pub(crate) total_delivered: u64,
    /// Bytes newly acknowledged or SACKed by this ACK (Linux `acked_sacked`).
    pub(crate) newly_delivered: usize,
    /// Bytes newly presumed lost on this ACK (holes below the highest SACK).
    pub(crate) losses: usize,
    /// The newest delivered segment was sent while the sender was application-limited.
    pub(crate) is_app_limited: bool,
    /// Round trip of the newest delivered segment sent only once.
    pub(crate) rtt: Option<Duration>,
    /// Bytes in the network before and after this ACK.
    pub(crate) prior_in_flight: usize,
    pub(crate) in_flight: usize,
    pub(crate) ca_state: CaState,
    pub(crate) srtt: Option<Duration>,
}

impl RateSample {
    /// The delivery rate in bytes per second, if this sample has one.
    pub(crate) fn rate(&self) -> Option<u64> {
        let interval = self.interval?.as_micros();
        if interval == 0 {
            return None;
        }
        Some((u128::from(self.delivered) * 1_000_000 / interval) as u64)
    }
}

/// The sender's delivery-rate state (section 2.2: C.delivered, C.delivered_time,
/// C.first_sent_time, C.app_limited) and the per-segment records.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeliveryRate {
    sent: VecDeque<Sent>,
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// Section 3.5: C.app_limited, the C.delivered at which the sender stops being
    /// application-limited; 0 when it is not.
    app_limited: u64,
    /// The smallest RTT seen (Linux's `tcp_min_rtt`): shorter intervals give no sample.
    min_rtt: Option<Duration>,
    /// The sample this ACK is building: the newest delivered segment so far.
    newest: Option<Sent>,
    newly_delivered: usize,
}

impl DeliveryRate {
    /// Gives back the memory of an empty list of segments in flight (an idle
    /// connection's reclaim).
    pub(crate) fn release_if_empty(&mut self) {
        if self.sent.is_empty() {
            self.sent = VecDeque::new();
        }
    }

    /// Section 3.2: `[start, end)` goes out at `now`; `idle`: nothing was in flight.
    /// A retransmission takes fresh values for every segment it overlaps.
    pub(crate) fn on_send(&mut self, now: Instant, start: SeqNumber, end: SeqNumber, idle: bool) {
        if idle {
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        let snapshot = Sent {
            start,
            end,
            sent_time: now,
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            is_app_limited: self.app_limited != 0,
            retransmitted: false,
            sacked: false,
        };
        let high = self.sent.back().map(|s| s.end);
        if high.is_none_or(|high| start >= high) {
            self.sent.push_back(snapshot);
            return;
        }
        let first = self.sent.partition_point(|s| s.end <= start);
        for s in self.sent.iter_mut().skip(first) {
            if s.start >= end {
                break;
            }
            *s = Sent {
                start: s.start,
                end: s.end,
                retransmitted: true,
                sacked: s.sacked,
                ..snapshot
            };
        }
        if let Some(high) = high.filter(|&h| end > h) {
            self.sent.push_back(Sent {
                start: high,
                ..snapshot
            });
        }
    }

    /// Section 3.5: the application has nothing more to send while the windows have
    /// room; samples until `in_flight` more bytes are delivered say so.
    pub(crate) fn on_app_limited(&mut self, in_flight: usize) {
        self.app_limited = (self.delivered + in_flight as u64).max(1);
    }

    /// Section 3.3 UpdateRateSample for one delivered segment.
    fn deliver(&mut self, now: Instant, s: Sent) {
        let len = s.end - s.start;
        self.delivered += len as u64;
        self.delivered_time = now;
        self.newly_delivered += len;
        let newer = self.newest.is_none_or(|n| {
            s.sent_time > n.sent_time || (s.sent_time == n.sent_time && s.end > n.end)
        });
        if newer {
            self.newest = Some(s);
            self.first_sent_time = s.sent_time;
        }
    }

    /// An ACK arrived: everything below `una` and within the `sacked` ranges is
    /// delivered. Returns the sample (section 3.4 GenerateRateSample); the fields about
    /// the connection's state are the caller's to fill.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        una: SeqNumber,
        sacked: &[Option<(SeqNumber, SeqNumber)>],
    ) -> RateSample {
        self.newest = None;
        self.newly_delivered = 0;
        while let Some(&s) = self.sent.front() {
            if s.end > una {
                break;
            }
            self.sent.pop_front();
            if !s.sacked {
                self.deliver(now, s);
            }
        }
        for &(left, right) in sacked.iter().flatten() {
            if right <= left || right <= una {
                continue;
            }
            let first = self.sent.partition_point(|s| s.start < left);
            let mut i = first;
            while let Some(s) = self.sent.get_mut(i) {
                if s.end > right {
                    break;
                }
                if !s.sacked {
                    s.sacked = true;
                    let s = *s;
                    self.deliver(now, s);
                }
                i += 1;
            }
        }
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        let mut rs = RateSample {
            total_delivered: self.delivered,
            newly_delivered: self.newly_delivered,
            ..RateSample::default()
        };
        let Some(newest) = self.newest else {
            return rs;
        };
        if !newest.retransmitted {
            let rtt = now - newest.sent_time;
            rs.rtt = Some(rtt);
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        rs.prior_delivered = newest.delivered;
        rs.is_app_limited = newest.is_app_limited;
        rs.delivered = self.delivered - newest.delivered;
        let send_elapsed = newest.sent_time - newest.first_sent_time;
        let ack_elapsed = self.delivered_time - newest.delivered_time;
        let interval = send_elapsed.max(ack_elapsed);
        // Section 3.4: an interval shorter than the minimum RTT is an artefact of ACK
        // compression or of a sender that went idle; the sample would be too high.
        if self.min_rtt.is_none_or(|m| interval >= m) {
            rs.interval = Some(interval);
        }
        rs
    }

    /// Segments remembered (sent and neither cumulatively acknowledged nor forgotten).
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Ten 1000-byte segments sent back to back at t = 0 and acknowledged one by one
    /// over the next 100 ms (a 100 ms RTT, 10 ms apart): each sample measures 1000
    /// bytes per 10 ms from the first ACK on, 100 kB/s.
    #[test]
    fn steady_acks_give_the_delivery_rate_section_3() {
        let mut d = DeliveryRate::default();
        for i in 0..10 {
            d.on_send(ms(0), s(i * 1000), s(i * 1000 + 1000), i == 0);
        }
        let first = d.on_ack(ms(100), s(1000), &[]);
        assert_eq!(first.rtt, Some(Duration::from_millis(100)));
        assert_eq!(first.newly_delivered, 1000);
        // The first sample spans the whole round trip: 1000 bytes over 100 ms.
        assert_eq!(first.rate(), Some(10_000));
        // The next segments go out as ACKs come back; their samples measure the ACK
        // rate from the moment they were sent.
        d.on_send(ms(100), s(10_000), s(11_000), false);
        for i in 2..=10 {
            d.on_ack(ms(90 + 10 * i as u64), s(i * 1000), &[]);
        }
        let rs = d.on_ack(ms(200), s(11_000), &[]);
        // Sent at 100 ms when 1000 bytes had been delivered; 10 000 more by 200 ms.
        assert_eq!(
            (rs.delivered, rs.interval),
            (10_000, Some(Duration::from_millis(100)))
        );
        assert_eq!(rs.rate(), Some(100_000));
        assert_eq!(rs.total_delivered, 11_000);
        assert_eq!(d.outstanding(), 0);
    }

    /// Section 3.3: SACKed segments are delivered when SACKed, once; the cumulative ACK
    /// that later covers them adds only the hole.
    #[test]
    fn sacked_segments_count_once() {
        let mut d = DeliveryRate::default();
        for i in 0..4 {
            d.on_send(ms(0), s(i * 1000), s(i * 1000 + 1000), i == 0);
        }
        let rs = d.on_ack(ms(50), s(0), &[Some((s(1000), s(4000)))]);
        assert_eq!((rs.newly_delivered, rs.total_delivered), (3000, 3000));
        // The hole is resent at 50 ms and acknowledged at 100 ms: a retransmission, so
        // no RTT sample, but still delivery.
        d.on_send(ms(50), s(0), s(1000), false);
        let rs = d.on_ack(ms(100), s(4000), &[]);
        assert_eq!((rs.newly_delivered, rs.total_delivered), (1000, 4000));
        assert_eq!(rs.rtt, None);
        assert_eq!(rs.prior_delivered, 3000);
    }

    /// Section 3.5: samples taken while the sender had nothing to send are marked, until
    /// what was in flight then is delivered.
    #[test]
    fn app_limited_marks_samples_until_the_bubble_is_delivered() {
        let mut d = DeliveryRate::default();
        d.on_send(ms(0), s(0), s(1000), true);
        d.on_app_limited(1000);
        d.on_send(ms(10), s(1000), s(2000), false);
        let rs = d.on_ack(ms(100), s(1000), &[]);
        assert!(!rs.is_app_limited);
        let rs = d.on_ack(ms(110), s(2000), &[]);
        assert!(rs.is_app_limited);
        d.on_send(ms(110), s(2000), s(3000), true);
        let rs = d.on_ack(ms(210), s(3000), &[]);
        assert!(!rs.is_app_limited);
    }

    /// Section 3.4: the interval is the longer of the send phase and the ACK phase, so
    /// that a burst sent at once and ACKs that arrive compressed cannot read as a rate
    /// higher than the path's. Two segments sent together after an idle period, ACKed
    /// 1 ms apart 100 ms later: the second sample still spans 101 ms.
    #[test]
    fn interval_is_the_longer_of_send_and_ack_phases() {
        let mut d = DeliveryRate::default();
        d.on_send(ms(0), s(0), s(1000), true);
        assert!(d.on_ack(ms(100), s(1000), &[]).rate().is_some());
        d.on_send(ms(500), s(1000), s(2000), true);
        d.on_send(ms(500), s(2000), s(3000), false);
        assert!(d.on_ack(ms(600), s(2000), &[]).rate().is_some());
        let rs = d.on_ack(ms(601), s(3000), &[]);
        assert_eq!(rs.interval, Some(Duration::from_millis(101)));
        assert_eq!(rs.delivered, 2000);
    }
}
