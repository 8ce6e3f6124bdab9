//! RACK-TLP (RFC 8985): time-based loss detection with a reordering window, and the tail
//! loss probe.

use super::*;

/// SACK with RACK and TLP on, as the defaults have them.
fn rack_cfg() -> TcpConfig {
    TcpConfig {
        sack: true,
        rack: true,
        tlp: true,
        ..cfg()
    }
}

/// Sequence number of segment `i` of 1460-byte segments from ISS + 1.
fn at(i: usize) -> SeqNumber {
    ISS + 1 + i * 1460
}

/// Segment `i` of `data` in 1460-byte segments from ISS + 1; the last one is pushed.
fn segments_of<'a>(data: &'a [u8]) -> impl Fn(usize) -> Segment<'a> + 'a {
    move |i: usize| {
        let flags = if (i + 1) * 1460 == data.len() {
            PSH_ACK
        } else {
            ACK
        };
        our_data(at(i), flags, &data[i * 1460..(i + 1) * 1460])
    }
}

/// A duplicate ACK of `at(una)` SACKing segments `from..to`.
fn dup_sack(una: usize, from: usize, to: usize) -> Segment<'static> {
    Segment {
        ack: at(una),
        options: sack(&[(at(from), at(to))]),
        ..SEND_TEMPL
    }
}

/// Sends `n` segments of fresh data at once and checks they all go out.
fn send_segments(s: &mut TestConn, data: &[u8]) {
    s.send(data).unwrap();
    let seg = segments_of(data);
    for i in 0..data.len() / 1460 {
        recv!(s, seg(i));
    }
    recv_nothing!(s);
}

/// RFC 8985 section 7: the last two segments of a flight are lost, so no ACK would ever
/// trigger recovery. The probe timeout (PTO = 2 * SRTT = 200 ms, earlier than the 250 ms
/// RTO) resends the last segment; its SACK lets RACK mark segment 8 lost (section 6.2),
/// and fast recovery repairs it. No retransmission timeout, no window collapse.
#[test]
fn tail_loss_is_repaired_by_a_probe_before_the_rto_rfc8985_7() {
    let mut s = established(rack_cfg());
    let data = pattern(10 * 1460, 0);
    let seg = segments_of(&data);
    send_segments(&mut s, &data);
    s.now += RTT;
    send!(s, peer_ack(at(8)));
    recv_nothing!(s);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(200)));
    s.advance(ms(200));
    recv!(s, [seg(9)]);
    assert_eq!(s.stats().tlp_probes, 1);
    s.now += RTT;
    send!(s, dup_sack(8, 9, 10));
    recv!(s, [seg(8)]);
    assert_eq!(s.stats().rack_lost, 1);
    assert_eq!(s.stats().fast_retransmits, 1);
    s.now += RTT;
    send!(s, peer_ack(at(10)));
    recv_nothing!(s);
    assert_eq!(s.send_queue(), 0);
    assert_eq!(s.stats().timeouts, 0);
    assert!(s.cwnd() > 1460, "the window collapsed: {}", s.cwnd());
}

/// RFC 8985 section 7.2: with one segment in flight the PTO adds the worst-case delayed
/// ACK (2 * SRTT + 200 ms), but never waits past the RTO: the probe goes out at the RTO's
/// time in its place (as Linux), so a lost last segment costs no timeout and no backoff.
#[test]
fn a_lone_lost_segment_is_probed_at_most_at_the_rto_rfc8985_7_2() {
    let mut s = established(rack_cfg());
    let data = pattern(2 * 1460, 0);
    let seg = segments_of(&data);
    send_segments(&mut s, &data);
    s.now += RTT;
    send!(s, peer_ack(at(1)));
    // RTO: SRTT 100 ms + 4 * RTTVAR 37.5 ms = 250 ms, before 2 * SRTT + 200 ms.
    assert_eq!(s.poll_timeout(), Some(s.now + ms(250)));
    s.advance(ms(250));
    recv!(s, [seg(1)]);
    assert_eq!((s.stats().tlp_probes, s.stats().timeouts), (1, 0));
    s.now += RTT;
    send!(s, peer_ack(at(2)));
    recv_nothing!(s);
    assert_eq!(s.send_queue(), 0);
    assert_eq!(s.stats().tlp_recoveries, 1);
    assert_eq!(s.stats().timeouts, 0);
}

/// Linux `tcp_schedule_loss_probe` after new data (`tcp_rto_delta_us`): the PTO is no
/// later than one RTO after the oldest outstanding segment was sent, which may be earlier
/// than the retransmission timer restarted by the last ACK. Segments 0 and 1 leave at
/// t0, the ACK of segment 0 comes at t0 + 100 ms (RTO 250 ms), segment 2 leaves at
/// t0 + 150 ms: the probe is due at t0 + 250 ms (segment 1's RTO), not at t0 + 350 ms
/// (2 * SRTT after segment 2, and the RTO timer). Once sent, the RTO restarts from now
/// (`tcp_send_loss_probe`).
#[test]
fn a_probe_after_new_data_is_due_one_rto_after_the_oldest_segment_was_sent() {
    let mut s = established(rack_cfg());
    let data = pattern(3 * 1460, 0);
    let seg = segments_of(&data);
    let t0 = s.now;
    s.send(&data[..2 * 1460]).unwrap();
    recv!(s, [seg(0), our_data(at(1), PSH_ACK, &data[1460..2 * 1460])]);
    s.now += RTT;
    send!(s, peer_ack(at(1)));
    recv_nothing!(s);
    s.now += ms(50);
    s.send(&data[2 * 1460..]).unwrap();
    recv!(s, [seg(2)]);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(250)));
    s.advance(t0 + ms(250) - s.now);
    recv!(s, [seg(2)]);
    assert_eq!((s.stats().tlp_probes, s.stats().timeouts), (1, 0));
    assert_eq!(s.poll_timeout(), Some(s.now + ms(250)));
}

/// RFC 8985 section 6.2: segment 0 is missing when segment 1 is SACKed. With one segment
/// SACKed the reordering window is min_RTT / 4 = 25 ms, so segment 0 is lost once RACK.rtt
/// (100 ms) plus 25 ms have passed since it was sent: the reordering timer fires then,
/// after one duplicate ACK, and fast recovery resends it.
#[test]
fn a_segment_is_lost_by_time_after_a_later_one_is_sacked_rfc8985_6_2() {
    let mut s = established(rack_cfg());
    let data = pattern(4 * 1460, 0);
    let seg = segments_of(&data);
    send_segments(&mut s, &data);
    s.now += RTT;
    send!(s, dup_sack(0, 1, 2));
    recv_nothing!(s);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(25)));
    s.advance(ms(24));
    recv_nothing!(s);
    s.advance(ms(1));
    recv!(s, [seg(0)]);
    assert_eq!(s.stats().rack_lost, 1);
    assert_eq!(s.stats().fast_retransmits, 1);
    assert_eq!(s.stats().dup_acks_in, 1);
    s.now += RTT;
    send!(s, peer_ack(at(4)));
    recv_nothing!(s);
    assert_eq!(s.stats().timeouts, 0);
}

/// RFC 8985 section 6.2: reordering within the window is no loss. Segment 0 arrives
/// 10 ms after segment 1 was SACKed, within the 25 ms window: nothing is resent, not
/// even when the reordering deadline passes, and the window is not reduced.
#[test]
fn reordering_within_the_window_is_not_loss_rfc8985_6_2() {
    let mut s = established(rack_cfg());
    let data = pattern(4 * 1460, 0);
    send_segments(&mut s, &data);
    s.now += RTT;
    send!(s, dup_sack(0, 1, 2));
    recv_nothing!(s);
    let cwnd = s.cwnd();
    s.advance(ms(10));
    send!(s, peer_ack(at(2)));
    recv_nothing!(s);
    s.advance(ms(30));
    recv_nothing!(s);
    assert_eq!(s.stats().rack_lost, 0);
    assert_eq!(s.stats().retransmits, 0);
    assert_eq!(s.stats().fast_retransmits, 0);
    assert!(s.cwnd() >= cwnd);
    s.now += ms(60);
    send!(s, peer_ack(at(4)));
    recv_nothing!(s);
    assert_eq!(s.send_queue(), 0);
}

/// RFC 8985 section 6.2: a retransmission lost again is found by time as well (the
/// RFC 6675 scoreboard alone waits for the RTO). Segment 0 of five is lost; three SACKed
/// segments make the reordering window 0, so it is resent at once, and lost again. That
/// ACK marked a loss, so PRR sends only what it delivered (the retransmission); the SACK
/// of segment 4 lets new data (segment 5) out after the retransmission, and its SACK a
/// round trip later shows the retransmission lost too: resent a second time without a
/// timeout.
#[test]
fn a_lost_retransmission_is_detected_without_a_timeout_rfc8985_6_2() {
    let mut s = established(TcpConfig {
        nodelay: true,
        ..rack_cfg()
    });
    let data = pattern(6 * 1460, 0);
    let seg = segments_of(&data);
    send_segments(&mut s, &data[..5 * 1460]);
    s.now += RTT;
    send!(s, dup_sack(0, 1, 2));
    send!(s, dup_sack(0, 1, 3));
    send!(s, dup_sack(0, 1, 4));
    let first = our_data(at(0), ACK, &data[..1460]);
    recv!(s, [first]);
    assert_eq!(s.stats().rack_lost, 1);
    s.send(&data[5 * 1460..]).unwrap();
    recv_nothing!(s);
    send!(s, dup_sack(0, 1, 5));
    recv!(s, [seg(5)]);
    s.now += RTT;
    send!(
        s,
        Segment {
            ack: at(0),
            options: sack(&[(at(5), at(6)), (at(1), at(5))]),
            ..SEND_TEMPL
        }
    );
    recv!(s, [first]);
    assert_eq!(s.stats().rack_lost, 2);
    assert_eq!(s.stats().retransmits, 2);
    s.now += RTT;
    send!(s, peer_ack(at(6)));
    recv_nothing!(s);
    assert_eq!(s.stats().timeouts, 0);
}

/// Segments sent in the 50 ms after segment 0 of ten is lost (segments 1 to 9 SACKed, so
/// RACK marks it at once), with ten more segments queued and no further ACK.
fn sent_after_rack_loss(congestion: crate::tcp::Algorithm) -> Vec<SeqNumber> {
    let mut s = established(TcpConfig {
        congestion,
        ..rack_cfg()
    });
    let data = pattern(20 * 1460, 0);
    s.send(&data).unwrap();
    for _ in 0..10 {
        assert!(s.conn.poll_transmit(s.now).is_some());
    }
    recv_nothing!(s);
    s.now += RTT;
    send!(s, dup_sack(0, 1, 10));
    let mut sent = Vec::new();
    for _ in 0..50 {
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            if !seg.payload.is_empty() {
                sent.push(seg.seq);
            }
        }
        s.advance(ms(1));
    }
    assert_eq!(s.stats().rack_lost, 1);
    sent
}

/// PRR (RFC 6937) in RACK's recovery: the ACK that SACKs nine segments and lets RACK
/// mark the first lost delivered nine, with pipe at zero below ssthresh (7 segments from
/// CUBIC's 0.7), so the slow start reduction bound sends ssthresh's worth: the hole and
/// six new segments. BBR bypasses PRR (as Linux's `cong_control`) and sets cwnd itself:
/// packet conservation, in flight (nothing) plus the nine delivered, so the hole and
/// eight new segments.
#[test]
fn prr_applies_to_rack_recovery_but_bbr_sets_its_own_window() {
    let new = |n: usize| (10..10 + n).map(at);
    let cubic: Vec<_> = std::iter::once(at(0)).chain(new(6)).collect();
    assert_eq!(sent_after_rack_loss(crate::tcp::Algorithm::Cubic), cubic);
    let bbr: Vec<_> = std::iter::once(at(0)).chain(new(8)).collect();
    assert_eq!(sent_after_rack_loss(crate::tcp::Algorithm::Bbr), bbr);
}

/// The sequence numbers of the data segments the connection sends now.
fn data_sent(s: &mut TestConn) -> Vec<SeqNumber> {
    let mut sent = Vec::new();
    while let Some(seg) = s.conn.poll_transmit(s.now) {
        if !seg.payload.is_empty() {
            sent.push(seg.seq);
        }
    }
    sent
}

/// PRR's slow start reduction bound (pipe below ssthresh) adds one segment beyond what
/// was delivered only on an ACK that advances SND.UNA and marks nothing newly lost
/// (draft-ietf-tcpm-prr-rfc6937bis section 5 safeACK, Linux `tcp_cwnd_reduction`):
/// RFC 6937's unconditional `+ MSS` turns every SACK-only ACK of a recovery into slow
/// start (two segments out for one delivered) and overflowed the demo's drop-tail queue.
/// Ten segments out, 0..6 lost: the ACK SACKing 6..10 delivers four and marks six lost
/// (pipe 0, ssthresh 7): four retransmissions, not five. The next ACK delivers the
/// first retransmission and advances SND.UNA, nothing newly lost: what was delivered
/// and not yet matched (one) plus one, the next two holes.
#[test]
fn prr_slow_start_bound_adds_a_segment_only_on_a_safe_ack() {
    let mut s = established(rack_cfg());
    let data = pattern(20 * 1460, 0);
    s.send(&data).unwrap();
    for _ in 0..10 {
        assert!(s.conn.poll_transmit(s.now).is_some());
    }
    recv_nothing!(s);
    s.now += RTT;
    send!(s, dup_sack(0, 6, 10));
    assert_eq!(s.stats().rack_lost, 6);
    assert_eq!(data_sent(&mut s), (0..4).map(at).collect::<Vec<_>>());
    s.now += RTT;
    send!(
        s,
        Segment {
            ack: at(1),
            options: sack(&[(at(6), at(10))]),
            ..SEND_TEMPL
        }
    );
    assert_eq!(data_sent(&mut s), vec![at(4), at(5)]);
}
