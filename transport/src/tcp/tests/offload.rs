//! Segmentation offload: TSO super-segments we send (whole MSS-sized segments within the
//! windows, the link told their size) and GRO super-segments we receive (ACKed as the
//! segments they carry).

use super::*;

/// A connection whose link segments (TSO) up to 64000 bytes.
fn tso_cfg() -> TcpConfig {
    TcpConfig {
        tso_max: 64000,
        ..cfg()
    }
}

/// The next segment we send, with the segment size the link is told to cut it into.
fn next(s: &mut TestConn) -> Option<(Owned, u16)> {
    let now = s.now;
    let seg = s.conn.poll_transmit(now)?;
    let owned = Owned {
        payload: seg.payload.to_vec(),
        seg: Segment {
            payload: &[],
            ..seg
        },
    };
    Some((owned, s.conn.tso_segment()))
}

/// Linux `tcp_write_xmit` with TSO: the initial window (RFC 6928, 10 segments) goes as
/// one super-segment of whole segments, the link told to cut it at the MSS; the data
/// beyond waits for the window like single segments would.
#[test]
fn the_initial_window_goes_as_one_super_segment() {
    let mut s = established(tso_cfg());
    let data = pattern(20_000, 1);
    s.send(&data).unwrap();
    let (seg, size) = next(&mut s).expect("a super-segment");
    assert_eq!(size, MSS);
    assert_eq!(seg.seg(), our_data(ISS + 1, ACK, &data[..14_600]));
    recv_nothing!(s);
    // The ACK of it opens the window: the rest (5400 bytes, 3 whole segments and a
    // short last one ending the data, Nagle satisfied by nothing in flight) in one.
    send!(s, peer_ack(ISS + 1 + 14_600));
    let (seg, size) = next(&mut s).expect("the rest");
    assert_eq!(size, MSS);
    assert_eq!(seg.seg(), our_data(ISS + 14_601, PSH_ACK, &data[14_600..]));
    recv_nothing!(s);
}

/// RFC 9293 section 3.7.4 and Linux `tcp_mss_split_point`: a super-segment takes a short
/// last segment only when Nagle would send it; with a small segment unacknowledged the
/// whole segments go and the short rest waits for the ACK, as without TSO.
#[test]
fn nagle_holds_the_short_tail_of_a_super_segment() {
    let mut s = established(tso_cfg());
    s.send(b"a").unwrap();
    recv!(s, our_data(ISS + 1, PSH_ACK, b"a"));
    assert_eq!(s.tso_segment(), 0, "one segment is not cut");
    let data = pattern(3000, 2);
    s.send(&data).unwrap();
    let (seg, size) = next(&mut s).expect("two whole segments");
    assert_eq!(size, MSS);
    assert_eq!(seg.seg(), our_data(ISS + 2, ACK, &data[..2920]));
    recv_nothing!(s);
    send!(s, peer_ack(ISS + 2 + 2920));
    recv!(s, [our_data(ISS + 2922, PSH_ACK, &data[2920..])]);
}

/// Without TSO (`tso_max` 0, every simulated link) nothing changes: one MSS a segment.
#[test]
fn without_tso_every_segment_is_one_mss() {
    let mut s = established(cfg());
    let data = pattern(4000, 3);
    s.send(&data).unwrap();
    for (start, end) in [(0, 1460), (1460, 2920)] {
        let (seg, size) = next(&mut s).unwrap();
        assert_eq!(size, 0);
        assert_eq!(seg.payload, &data[start..end]);
    }
    // Nagle holds the short rest while the two are in flight.
    recv_nothing!(s);
    send!(s, peer_ack(ISS + 1 + 2920));
    recv!(s, [our_data(ISS + 2921, PSH_ACK, &data[2920..])]);
}

/// RFC 6298 section 5.4 after a lost super-segment: the retransmission is the first MSS
/// of it (cwnd is one segment after the timeout, RFC 5681 section 3.1), the sequence
/// space being what counts, not how the data went out; slow start then resends the
/// rest in growing super-segments, byte for byte the original data.
#[test]
fn a_lost_super_segment_is_retransmitted_by_sequence_number() {
    let mut s = established(tso_cfg());
    let data = pattern(14_600, 4);
    s.send(&data).unwrap();
    let (seg, _) = next(&mut s).unwrap();
    assert_eq!(seg.payload.len(), 14_600);
    s.advance(ms(300));
    let (seg, size) = next(&mut s).expect("the retransmission");
    assert_eq!(size, 0);
    assert_eq!(seg.seg(), our_data(ISS + 1, ACK, &data[..1460]));
    recv_nothing!(s);
    assert_eq!(s.stats().retransmits, 1);
    let mut acked = ISS + 1 + 1460;
    let mut resent = data[..1460].to_vec();
    for _ in 0..10 {
        s.now += RTT;
        send!(s, peer_ack(acked));
        while let Some((seg, size)) = next(&mut s) {
            assert_eq!(seg.seg.seq, acked + (resent.len() - (acked - (ISS + 1))));
            if seg.payload.len() > 1460 {
                assert_eq!(size, MSS);
            }
            resent.extend_from_slice(&seg.payload);
        }
        acked = ISS + 1 + resent.len();
        if resent.len() == data.len() {
            break;
        }
    }
    assert_eq!(resent, data);
}

/// RFC 6675 with SACK: the peer holds all of a super-segment but its first MSS (SACKed
/// above the hole, three duplicate ACKs): the scoreboard, kept by sequence number, finds
/// the one hole and fast retransmit resends exactly that MSS, not the super-segment.
#[test]
fn a_hole_in_a_sacked_super_segment_is_resent_alone_rfc6675() {
    let mut s = established(TcpConfig {
        sack: true,
        ..tso_cfg()
    });
    let data = pattern(14_600, 5);
    s.send(&data).unwrap();
    let (seg, size) = next(&mut s).unwrap();
    assert_eq!((seg.payload.len(), size), (14_600, MSS));
    s.now += RTT;
    for k in 1..=3 {
        let end = ISS + 1 + 1460 * (1 + k);
        send!(
            s,
            Segment {
                options: sack(&[(ISS + 1 + 1460, end)]),
                ..peer_ack(ISS + 1)
            }
        );
    }
    let (seg, size) = next(&mut s).expect("the fast retransmission");
    assert_eq!(size, 0);
    assert_eq!(seg.seg(), our_data(ISS + 1, ACK, &data[..1460]));
    assert_eq!(s.stats().retransmits, 1);
}

/// Linux `__tcp_ack_snd_check`: more than one full-sized segment's worth of data
/// unacknowledged is ACKed at once. A GRO super-segment of ten segments is ACKed at once
/// (it counts as the segments it carries, not as one), and the data is all delivered.
#[test]
fn a_gro_super_segment_is_acked_at_once() {
    let mut s = established(cfg());
    let big = pattern(14_600, 7);
    send!(s, peer_data(IRS + 1, &big));
    recv!(s, [our_ack(IRS + 1 + 14_600, WINDOW - 14_600)]);
    assert_eq!(s.read_all(), big);
}

/// RFC 9293 section 3.8.6.3 with GRO: a super-segment does not teach us the peer's
/// segment size (Linux `tcp_measure_rcv_mss` takes the GRO packet's gso_size), so the
/// peer's full segments smaller than our MSS (1448 bytes beside timestamps) still count
/// as full after one, and every second one is ACKed at once.
#[test]
fn a_gro_super_segment_leaves_the_full_segment_size_alone() {
    let mut s = established(cfg());
    let full = pattern(1448, 8);
    send!(s, peer_data(IRS + 1, &full));
    send!(s, peer_data(IRS + 1 + 1448, &full));
    recv!(s, [our_ack(IRS + 1 + 2 * 1448, WINDOW - 2 * 1448)]);
    let big = pattern(14_480, 9);
    let mut at = IRS + 1 + 2 * 1448;
    send!(s, peer_data(at, &big));
    at += big.len();
    recv!(s, [our_ack(at, WINDOW - 2 * 1448 - 14_480)]);
    send!(s, peer_data(at, &full));
    recv_nothing!(s);
    send!(s, peer_data(at + 1448, &full));
    at += 2 * 1448;
    recv!(s, [our_ack(at, WINDOW - 4 * 1448 - 14_480)]);
}
