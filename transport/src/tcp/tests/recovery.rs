//! Recovery from timeouts and the RTT samples taken around retransmissions.

use super::*;

/// RFC 7323 section 4.3 and RFC 6298 section 3 (Karn): a retransmitted segment that the
/// peer already has draws an ACK echoing the TSval of an older copy (a duplicate does
/// not update TS.Recent), so the time since that echo is not a round trip. Here the
/// original arrives but its ACK is lost, the first retransmission is lost, and the ACK
/// for the second echoes the original: no sample (it would read 1 s against a 100 ms
/// path). A later ACK echoing data sent once is sampled as usual.
#[test]
fn no_rtt_sample_from_an_echo_older_than_the_retransmission_rfc7323_4_3() {
    let mut s = established(TcpConfig {
        timestamps: true,
        ..cfg()
    });
    assert_eq!(s.srtt(), Some(RTT));
    let with_ts = |tsval: u32, seg: Segment<'static>| Segment {
        options: ts(tsval, PEER_TS),
        ..seg
    };
    let sent = TS0 + 100;
    s.send(b"hello").unwrap();
    let hello = our_data(ISS + 1, PSH_ACK, b"hello");
    recv!(s, [with_ts(sent, hello)]);
    s.advance(ms(300));
    recv!(s, [with_ts(sent + 300, hello)]);
    s.advance(ms(600));
    recv!(s, [with_ts(sent + 900, hello)]);
    s.now += ms(100);
    send!(
        s,
        Segment {
            ack: ISS + 6,
            options: ts(PEER_TS + 1000, sent),
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_queue(), 0);
    assert_eq!(
        s.srtt(),
        Some(RTT),
        "a stale echo was taken as a round trip"
    );
    s.send(b"world").unwrap();
    let world = our_data(ISS + 6, PSH_ACK, b"world");
    recv!(
        s,
        [Segment {
            options: ts(sent + 1000, PEER_TS + 1000),
            ..world
        }]
    );
    s.now += ms(200);
    send!(
        s,
        Segment {
            ack: ISS + 11,
            options: ts(PEER_TS + 1200, sent + 1000),
            ..SEND_TEMPL
        }
    );
    // SRTT = 7/8 * 100 + 1/8 * 200.
    assert_eq!(s.srtt(), Some(Duration::from_micros(112_500)));
}

/// Segment `i` of `data` in 1460-byte segments from ISS + 1: the tenth (the last of
/// what the initial window of [`cfg`] sends at once) and the last are pushed.
fn segments_of<'a>(data: &'a [u8]) -> impl Fn(usize) -> Segment<'a> + 'a {
    move |i: usize| {
        let flags = if i == 9 || (i + 1) * 1460 == data.len() {
            PSH_ACK
        } else {
            ACK
        };
        our_data(at(i), flags, &data[i * 1460..(i + 1) * 1460])
    }
}

/// Sequence number of segment `i` of 1460-byte segments from ISS + 1.
fn at(i: usize) -> SeqNumber {
    ISS + 1 + i * 1460
}

/// A duplicate ACK of `at(una)` SACKing segments `from..to`.
fn dup_sack(una: usize, from: usize, to: usize) -> Segment<'static> {
    Segment {
        ack: at(una),
        options: sack(&[(at(from), at(to))]),
        ..SEND_TEMPL
    }
}

/// RFC 6582 section 3.2 step 4 and RFC 6675 section 5.1: a retransmission timeout sets
/// `recover` to SND.MAX, and no fast recovery starts until an ACK covers it. After the
/// timeout, the retransmission of segment 1 is lost and segments 2-4 are SACKed by
/// three duplicate ACKs: the sender goes on going back N in slow start (segment 5), and
/// keeps the ssthresh of the timeout (CUBIC: 0.7 of 10 segments) instead of cutting it
/// again from a 2-segment window. Only a second timeout resends segment 1. Once
/// everything up to the old SND.MAX is acknowledged, the next loss starts fast recovery
/// as usual.
#[test]
fn no_fast_recovery_until_the_timeout_recovery_point_is_acked_rfc6675_5_1() {
    let mut s = established(TcpConfig {
        sack: true,
        ..cfg()
    });
    let data = pattern(15 * 1460, 0);
    let seg = segments_of(&data);
    s.send(&data[..10 * 1460]).unwrap();
    recv!(
        s,
        [
            seg(0),
            seg(1),
            seg(2),
            seg(3),
            seg(4),
            seg(5),
            seg(6),
            seg(7),
            seg(8),
            seg(9)
        ]
    );
    // Everything is lost: the timeout resends segment 0 with a 1-segment window.
    s.advance(ms(300));
    recv!(s, [seg(0)]);
    assert_eq!((s.cwnd(), s.ssthresh()), (1460, 10_220));
    s.now += ms(100);
    send!(s, peer_ack(at(1)));
    recv!(s, [seg(1), seg(2)]);
    // Segment 1 is lost again; 2, 3 and 4 arrive.
    send!(s, dup_sack(1, 2, 3));
    recv!(s, [seg(3)]);
    send!(s, dup_sack(1, 2, 4));
    recv!(s, [seg(4)]);
    send!(s, dup_sack(1, 2, 5));
    recv!(s, [seg(5)]);
    assert_eq!(s.stats().fast_retransmits, 0);
    assert_eq!((s.cwnd(), s.ssthresh()), (2920, 10_220));
    // The second timeout of this loss episode keeps ssthresh; going back N skips 2-4.
    s.advance(ms(300));
    recv!(s, [seg(1)]);
    assert_eq!((s.cwnd(), s.ssthresh()), (1460, 10_220));
    s.now += ms(100);
    send!(s, peer_ack(at(6)));
    recv!(s, [seg(6), seg(7), seg(8)]);
    send!(s, peer_ack(at(8)));
    recv!(s, [seg(9)]);
    send!(s, peer_ack(at(10)));
    recv_nothing!(s);
    // Past the recovery point: the next loss (segment 10) is a fast retransmit again.
    s.send(&data[10 * 1460..]).unwrap();
    recv!(s, [seg(10), seg(11), seg(12), seg(13), seg(14)]);
    send!(s, dup_sack(10, 11, 12));
    send!(s, dup_sack(10, 11, 13));
    recv_nothing!(s);
    send!(s, dup_sack(10, 11, 14));
    recv!(s, [seg(10)]);
    assert_eq!(s.stats().fast_retransmits, 1);
}

/// RFC 5681 section 3.1: when the segment was already resent by the retransmission timer,
/// ssthresh is held constant; only the first timeout of a loss episode reduces it (and
/// CUBIC's W_max, RFC 9438 section 4.8). Three timeouts in a row during an outage leave
/// ssthresh at 0.7 of the window before the loss, not at 2 segments.
#[test]
fn repeated_timeouts_keep_ssthresh_rfc5681_3_1() {
    let mut s = established(cfg());
    let data = pattern(10 * 1460, 0);
    let seg = segments_of(&data);
    s.send(&data).unwrap();
    recv!(
        s,
        [
            seg(0),
            seg(1),
            seg(2),
            seg(3),
            seg(4),
            seg(5),
            seg(6),
            seg(7),
            seg(8),
            seg(9)
        ]
    );
    for (n, wait) in [300, 600, 1200].into_iter().enumerate() {
        s.advance(ms(wait));
        recv!(s, [seg(0)]);
        assert_eq!(
            (s.cwnd(), s.ssthresh()),
            (1460, 10_220),
            "timeout {}",
            n + 1
        );
    }
    s.now += ms(100);
    send!(s, peer_ack(at(1)));
    assert_eq!((s.cwnd(), s.ssthresh()), (2920, 10_220));
}

/// RFC 6675 section 3: the scoreboard records every block the receiver SACKed, however
/// many holes a burst of tail drops leaves. 80 segments of 200 bytes in flight, every
/// other one lost: the peer SACKs 40 blocks. The holes resent in SACK recovery are lost
/// too; after the timeout, going back N skips each of the 40 SACKed segments (a
/// scoreboard that forgot the lowest blocks would resend data the peer holds).
#[test]
fn scoreboard_remembers_forty_sacked_blocks_rfc6675_3() {
    const SMSS: usize = 200;
    let mut s = established(TcpConfig {
        mss: SMSS as u16,
        sack: true,
        nodelay: true,
        ..cfg()
    });
    let data = pattern(150 * SMSS, 0);
    s.send(&data).unwrap();
    let seq = |i: usize| ISS + 1 + i * SMSS;
    let drain = |s: &mut TestConn| {
        let mut sent = Vec::new();
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            sent.push((seg.seq - (ISS + 1)) / SMSS);
        }
        sent
    };
    // Slow start from 10 to 80 segments, every segment acknowledged.
    let mut next = 0;
    for round in [10, 20, 40] {
        assert_eq!(drain(&mut s), (next..next + round).collect::<Vec<_>>());
        for i in next..next + round {
            send!(s, peer_ack(seq(i + 1)));
        }
        next += round;
    }
    assert_eq!(s.cwnd(), 80 * SMSS);
    let flight = drain(&mut s);
    assert_eq!(flight, (70..150).collect::<Vec<_>>());
    // Segments 70, 72, ..., 148 are lost; each odd one draws a duplicate ACK with the
    // newest blocks first (RFC 2018 section 4). What recovery resends is lost as well.
    for odd in (71..150).step_by(2) {
        let blocks: Vec<_> = (0..4)
            .map(|b| odd - 2 * b)
            .filter(|&i| i > 70)
            .map(|i| (seq(i), seq(i + 1)))
            .collect();
        send!(
            s,
            Segment {
                ack: seq(70),
                options: sack(&blocks),
                ..SEND_TEMPL
            }
        );
        drain(&mut s);
    }
    let rto = s.poll_timeout().unwrap();
    s.now = rto;
    s.conn.on_timeout(rto);
    assert_eq!(drain(&mut s), [70]);
    // Each resent hole arrives; the peer acknowledges up to the next hole, and going
    // back N sends only holes.
    let mut resent = vec![70];
    while let Some(&last) = resent.last() {
        if last == 148 {
            break;
        }
        send!(s, peer_ack(seq(last + 2)));
        let sent = drain(&mut s);
        assert!(
            sent.iter().all(|i| i % 2 == 0),
            "resent SACKed segments: {sent:?}"
        );
        resent.extend(sent);
    }
    assert_eq!(resent, (70..150).step_by(2).collect::<Vec<_>>());
}

/// RFC 5681 section 3.1: a timeout during fast recovery is the first timeout of that
/// loss, so it sets ssthresh again (CUBIC: 0.7 of the recovery's window); the next
/// timeout of the same data keeps it.
#[test]
fn a_timeout_in_fast_recovery_reduces_once_rfc5681_3_1() {
    let mut s = established(TcpConfig {
        sack: true,
        ..cfg()
    });
    let data = pattern(10 * 1460, 0);
    let seg = segments_of(&data);
    s.send(&data).unwrap();
    recv!(
        s,
        [
            seg(0),
            seg(1),
            seg(2),
            seg(3),
            seg(4),
            seg(5),
            seg(6),
            seg(7),
            seg(8),
            seg(9)
        ]
    );
    send!(s, dup_sack(0, 1, 2));
    send!(s, dup_sack(0, 1, 3));
    send!(s, dup_sack(0, 1, 4));
    recv!(s, [seg(0)]);
    assert_eq!((s.cwnd(), s.ssthresh()), (10_220, 10_220));
    // The resent segment 0 is lost too.
    s.advance(ms(300));
    recv!(s, [seg(0)]);
    assert_eq!((s.cwnd(), s.ssthresh()), (1460, 7154));
    s.advance(ms(600));
    recv!(s, [seg(0)]);
    assert_eq!((s.cwnd(), s.ssthresh()), (1460, 7154));
}

/// BBR in SACK recovery (Linux `bbr_set_cwnd_to_recover_or_restore`): the ACK that
/// starts recovery sets cwnd to what is in flight plus what it delivered (packet
/// conservation), so the hole is resent at once; the ACK that ends recovery gives back
/// the cwnd from before. Ten segments, the first lost, the other nine SACKed in one ACK:
/// nothing is left in the network, nine were delivered, cwnd = 9 segments.
#[test]
fn bbr_conserves_packets_in_recovery_then_restores_cwnd() {
    let mut s = established(TcpConfig {
        sack: true,
        congestion: crate::tcp::Algorithm::Bbr,
        ..cfg()
    });
    let seg = usize::from(MSS);
    let data = pattern(20 * seg, 4);
    s.send(&data).unwrap();
    for _ in 0..10 {
        assert!(s.conn.poll_transmit(s.now).is_some());
    }
    recv_nothing!(s);
    let before = s.cwnd();
    assert_eq!(before, 10 * seg);
    s.now += RTT;
    send!(
        s,
        Segment {
            options: sack(&[(ISS + 1 + seg, ISS + 1 + 10 * seg)]),
            ..peer_ack(ISS + 1)
        }
    );
    assert_eq!(s.cwnd(), 9 * seg);
    let first = s.conn.poll_transmit(s.now).expect("the hole");
    assert_eq!((first.seq, first.payload.len()), (ISS + 1, seg));
    while s.conn.poll_transmit(s.now).is_some() {}
    s.now += RTT;
    send!(s, peer_ack(ISS + 1 + 10 * seg));
    assert!(s.cwnd() >= before, "{}", s.cwnd());
}
