//! The receiving side: delivery, reordering, duplicates, windows, delayed ACKs, PAWS.

use super::*;

/// RFC 9293 section 3.10.7.4 (segment text): in-order data goes to the application.
#[test]
fn in_order_data_is_delivered() {
    let mut s = established(cfg());
    send!(s, peer_data(IRS + 1, b"abc"));
    send!(s, peer_data(IRS + 4, b"def"));
    assert_eq!(s.read_all(), b"abcdef");
    assert_eq!(s.stats().bytes_in, 6);
}

/// RFC 863 (discard): dropping received bytes takes them in order, as reading them
/// would, and reports the end of the stream the same way.
#[test]
fn discarded_bytes_are_taken_in_order() {
    let mut s = established(cfg());
    send!(s, peer_data(IRS + 1, b"abcdef"));
    assert_eq!(s.conn.discard(4), Ok(4));
    assert_eq!(s.read_all(), b"ef");
    assert_eq!(s.conn.discard(10), Ok(0));
    send!(
        s,
        Segment {
            seq: IRS + 7,
            flags: FIN_ACK,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.conn.discard(10), Err(RecvError::Finished));
}

/// RFC 5681 section 4.2 and RFC 2018 section 4: a segment beyond a hole is acknowledged at
/// once (a duplicate ACK) with SACK blocks, the most recent first; the segment filling a
/// hole is acknowledged at once too.
#[test]
fn out_of_order_data_gets_an_immediate_ack_with_sack_blocks() {
    let mut s = established(TcpConfig {
        sack: true,
        ..cfg()
    });
    send!(s, peer_data(IRS + 4, b"def"));
    recv!(
        s,
        [Segment {
            options: sack(&[(IRS + 4, IRS + 7)]),
            ..RECV_TEMPL
        }]
    );
    send!(s, peer_data(IRS + 10, b"jkl"));
    recv!(
        s,
        [Segment {
            options: sack(&[(IRS + 10, IRS + 13), (IRS + 4, IRS + 7)]),
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.stats().out_of_order, 2);

    // The first hole fills: "abcdef" is delivered, one block is left.
    send!(s, peer_data(IRS + 1, b"abc"));
    recv!(
        s,
        [Segment {
            ack: IRS + 7,
            window: WINDOW - 6,
            options: sack(&[(IRS + 10, IRS + 13)]),
            ..RECV_TEMPL
        }]
    );
    // The last hole fills.
    send!(s, peer_data(IRS + 7, b"ghi"));
    recv!(s, [our_ack(IRS + 13, WINDOW - 12)]);
    assert_eq!(s.read_all(), b"abcdefghijkl");
}

/// Without SACK the duplicate ACK for out-of-order data carries no blocks (RFC 2018
/// section 2: only when SACK-permitted was exchanged).
#[test]
fn out_of_order_data_without_sack_gets_a_plain_duplicate_ack() {
    let mut s = established(cfg());
    send!(s, peer_data(IRS + 4, b"def"));
    recv!(s, [RECV_TEMPL]);
}

/// RFC 9293 section 3.10.7.4: a segment wholly before RCV.NXT (an old duplicate) is
/// acknowledged and dropped.
#[test]
fn old_duplicate_is_reacked_and_counted() {
    let mut s = established(cfg());
    let abc = peer_data(IRS + 1, b"abc");
    send!(s, abc);
    recv_nothing!(s);
    send!(s, abc);
    recv!(s, [our_ack(IRS + 4, WINDOW - 3)]);
    assert_eq!(s.stats().dup_segments, 1);
    assert_eq!(s.read_all(), b"abc");
}

/// RFC 9293 section 3.10.7.4: of a segment that starts before RCV.NXT only the new part is
/// kept.
#[test]
fn partial_overlap_is_trimmed() {
    let mut s = established(cfg());
    send!(s, peer_data(IRS + 1, b"abc"));
    send!(s, peer_data(IRS + 1, b"abcdef"));
    assert_eq!(s.read_all(), b"abcdef");
    assert_eq!(s.stats().dup_segments, 0);
}

/// RFC 9293 section 3.10.7.4: data past the receive window is cut off; a segment wholly
/// past it is dropped and acknowledged.
#[test]
fn data_beyond_the_window_is_trimmed_or_dropped() {
    let mut s = established(TcpConfig {
        recv_buffer: 1000,
        ..cfg()
    });
    let data = pattern(1200, 0);
    send!(s, peer_data(IRS + 1, &data));
    assert_eq!(s.recv_queue(), 1000);
    send!(s, peer_data(IRS + 1001, &data[1000..]));
    recv!(s, [our_ack(IRS + 1001, 0)]);
    assert_eq!(s.stats().dup_segments, 1);
    assert_eq!(s.read_all(), &data[..1000]);
}

/// RFC 9293 section 3.8.6.3 (delayed ACK): one segment is acknowledged when the delayed
/// ACK timer (40 ms here) runs out.
#[test]
fn one_segment_is_acked_after_the_delayed_ack_timer() {
    let mut s = established(cfg());
    send!(s, peer_data(IRS + 1, b"abcdef"));
    recv_nothing!(s);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(40)));
    s.advance(ms(39));
    recv_nothing!(s);
    s.advance(ms(1));
    recv!(s, [our_ack(IRS + 7, WINDOW - 6)]);
}

/// RFC 9293 section 3.8.6.3: the delay MUST be less than 0.5 s; this stack caps it at
/// 200 ms whatever the configuration says.
#[test]
fn delayed_ack_is_capped_at_200_ms() {
    let mut s = established(TcpConfig {
        delayed_ack: ms(500),
        ..cfg()
    });
    send!(s, peer_data(IRS + 1, b"abc"));
    assert_eq!(s.poll_timeout(), Some(s.now + ms(200)));
    s.advance(ms(200));
    recv!(s, [our_ack(IRS + 4, WINDOW - 3)]);
}

/// RFC 9293 section 3.8.6.3: an ACK at least every second full-sized segment.
#[test]
fn two_full_sized_segments_are_acked_at_once() {
    let mut s = established(cfg());
    let data = pattern(2920, 0);
    send!(s, peer_data(IRS + 1, &data[..1460]));
    recv_nothing!(s);
    send!(s, peer_data(IRS + 1461, &data[1460..]));
    recv!(s, [our_ack(IRS + 2921, WINDOW - 2920)]);
}

/// RFC 9293 section 3.8.6.2.2: after the window closed, reading the buffer empty opens it
/// again and a window update goes out at once.
#[test]
fn reading_a_full_buffer_sends_a_window_update() {
    let mut s = established(TcpConfig {
        recv_buffer: 4000,
        ..cfg()
    });
    let data = pattern(4000, 0);
    send!(s, peer_data(IRS + 1, &data[..1460]));
    send!(s, peer_data(IRS + 1461, &data[1460..2920]));
    recv!(s, [our_ack(IRS + 2921, 1080)]);
    send!(s, peer_data(IRS + 2921, &data[2920..]));
    s.advance(ms(40));
    recv!(s, [our_ack(IRS + 4001, 0)]);
    assert_eq!(s.read_all(), data);
    recv!(s, [our_ack(IRS + 4001, 4000)]);
    assert_eq!(s.stats().window_updates, 1);
}

/// RFC 7323 section 5.3 (PAWS): a segment whose TSval is older than TS.Recent is dropped
/// and acknowledged; the ACK echoes TS.Recent.
#[test]
fn paws_drops_a_segment_with_an_old_timestamp() {
    let mut s = established(TcpConfig {
        timestamps: true,
        ..cfg()
    });
    let now_ts = TS0 + 100;
    send!(
        s,
        Segment {
            payload: b"abc",
            options: ts(PEER_TS + 100, now_ts),
            ..SEND_TEMPL
        }
    );
    send!(
        s,
        Segment {
            seq: IRS + 4,
            payload: b"def",
            options: ts(PEER_TS + 50, now_ts),
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            ack: IRS + 4,
            window: WINDOW - 3,
            options: ts(now_ts, PEER_TS + 100),
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.stats().paws_drops, 1);
    assert_eq!(s.read_all(), b"abc");
}

/// A receive buffer read empty keeps its memory for the next segments (no reallocation
/// per read); once everything queued is acknowledged and the buffers stayed empty for
/// the reclaim delay (`Timer::Reclaim`, 200 ms), both give all of it back, and so does
/// the outgoing payload (issue 12: an idle connection holds no buffer memory).
#[test]
fn drained_buffers_shrink() {
    let mut s = established(cfg());
    let data = pattern(40_000, 2);
    for (i, chunk) in data.chunks(usize::from(MSS)).enumerate() {
        send!(s, peer_data(IRS + 1 + i * usize::from(MSS), chunk));
    }
    assert!(s.buffer_capacity() >= data.len());
    assert_eq!(s.read_all(), data);
    assert!(s.buffer_capacity() >= data.len(), "{}", s.buffer_capacity());
    assert_eq!(s.send(&data), Ok(data.len()));
    ack_all_until(&mut s, IRS + 1 + data.len(), |c| c.send_queue() == 0);
    let until = s.now + ms(200);
    run_until(&mut s, until);
    assert_eq!(s.buffer_capacity(), 0);
}

/// RFC 1122 section 4.2.3.3 and RFC 9293 section 3.8.6.2.2 (receiver silly-window
/// avoidance): a window update goes out once the window we would advertise exceeds the
/// one last advertised by min(buffer / 2, 2 * MSS), whatever the sizes of the reads that
/// freed it: after a full window, 1 KiB reads reopen it.
#[test]
fn window_update_after_small_reads_rfc1122_4_2_3_3() {
    let mut s = established(TcpConfig {
        recv_buffer: 6 * 1460,
        ..cfg()
    });
    let data = pattern(6 * 1460, 0);
    for (i, chunk) in data.chunks(1460).enumerate() {
        send!(s, peer_data(IRS + 1 + i * 1460, chunk));
    }
    let end = IRS + 1 + data.len();
    recv!(s, [our_ack(end, 0)]);
    let mut read = Vec::new();
    let mut updates = Vec::new();
    for i in 1..=6 {
        let mut buf = [0; 1024];
        let n = s.recv(&mut buf).unwrap();
        read.extend_from_slice(&buf[..n]);
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            assert_eq!(seg, our_ack(end, seg.window));
            updates.push((i, seg.window));
        }
    }
    // Threshold 2 * 1460 = 2920: the third read frees 3072 bytes beyond the zero window
    // advertised, the sixth 6144 beyond 3072 (the field moves the edge by at least an MSS).
    assert_eq!(updates, [(3, 3072), (6, 6144)]);
    assert_eq!(s.stats().window_updates, 2);
    assert_eq!(read, data[..6 * 1024]);
}

/// Linux `tcp_cleanup_rbuf`: a read sends a window update only if the window then at
/// least doubles what the peer has left (and moves the edge by the RFC 1122 section
/// 4.2.3.3 threshold). With 6 of 10 segments' room left, reading 4 segments (10 free) is
/// no update: the peer is still sending, and the ACK of its next data carries the window.
/// With 4 left, reading 6 (10 free, more than 2 * 4) is one.
#[test]
fn window_update_only_when_the_window_doubles() {
    let mut s = established(TcpConfig {
        recv_buffer: 10 * 1460,
        ..cfg()
    });
    let data = pattern(10 * 1460, 0);
    let seg = |i: usize| peer_data(IRS + 1 + i * 1460, &data[i * 1460..(i + 1) * 1460]);
    send!(s, seg(0));
    send!(s, seg(1));
    recv!(s, [our_ack(IRS + 1 + 2 * 1460, 8 * 1460)]);
    send!(s, seg(2));
    send!(s, seg(3));
    recv!(s, [our_ack(IRS + 1 + 4 * 1460, 6 * 1460)]);
    assert_eq!(s.read_all(), data[..4 * 1460]);
    recv_nothing!(s);
    assert_eq!(s.stats().window_updates, 0);
    // The ACK of the next two segments carries the whole free space.
    send!(s, seg(4));
    send!(s, seg(5));
    recv!(s, [our_ack(IRS + 1 + 6 * 1460, 8 * 1460)]);
    for i in 6..10 {
        send!(s, seg(i));
    }
    let end = IRS + 1 + data.len();
    recv!(s, [our_ack(end, 4 * 1460)]);
    assert_eq!(s.read_all(), data[4 * 1460..]);
    recv!(s, [our_ack(end, 10 * 1460)]);
    assert_eq!(s.stats().window_updates, 1);
}

/// RFC 9293 section 3.10.7.4: with RCV.WND zero no segment with data is acceptable, but
/// its ACK field and window are still processed. The peer's zero-window probe, one new
/// byte that also acknowledges our data, frees our send buffer and stops our timers; the
/// byte is dropped and acknowledged.
#[test]
fn zero_receive_window_still_processes_acks_rfc9293_3_10_7_4() {
    let mut s = established(TcpConfig {
        recv_buffer: 1460,
        ..cfg()
    });
    let data = pattern(1461, 0);
    send!(s, peer_data(IRS + 1, &data[..1460]));
    s.send(b"hello").unwrap();
    recv!(
        s,
        [Segment {
            ack: IRS + 1461,
            window: 0,
            flags: PSH_ACK,
            payload: b"hello",
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            seq: IRS + 1461,
            ack: ISS + 6,
            window: 1000,
            payload: &data[1460..],
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            seq: ISS + 6,
            ack: IRS + 1461,
            window: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!((s.send_queue(), s.send_window()), (0, 1000));
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.recv_queue(), 1460);
}

/// RFC 9293 section 3.8.6.3 and RFC 5681 section 4.2 (an ACK at least every second
/// full-sized segment): "full-sized" is measured against the segments the peer sends, the
/// largest received so far (Linux's rcv_mss), not against our MSS. A peer whose path
/// carries 1200-byte segments gets an ACK for every second one.
#[test]
fn delayed_ack_full_size_is_the_peers_segment_size_rfc9293_3_8_6_3() {
    let mut s = established(cfg());
    let data = pattern(3600, 0);
    send!(s, peer_data(IRS + 1, &data[..1200]));
    recv_nothing!(s);
    send!(s, peer_data(IRS + 1201, &data[1200..2400]));
    recv!(s, [our_ack(IRS + 2401, WINDOW - 2400)]);
    // A smaller segment than the largest one seen is not full-sized: its ACK is delayed.
    send!(s, peer_data(IRS + 2401, &data[2400..3000]));
    recv_nothing!(s);
    send!(s, peer_data(IRS + 3001, &data[3000..]));
    recv_nothing!(s);
    s.advance(ms(40));
    recv!(s, [our_ack(IRS + 3601, WINDOW - 3600)]);
}

/// Receive-buffer autotuning (Linux `tcp_rcv_space_adjust`): a peer in slow start
/// doubles what it sends every 20 ms round trip, the application reads everything, and
/// the window we advertise (scaled by the shift chosen for the 6 MiB maximum) grows from
/// 64 KiB past 1 MiB, each round trip's data fitting the window of the last.
#[test]
fn the_advertised_window_grows_with_the_receive_rate() {
    let mut s = established(TcpConfig {
        window_scaling: true,
        timestamps: true,
        recv_buffer: 64 * 1024,
        recv_buffer_max: 6 << 20,
        ..cfg()
    });
    // RFC 7323 section 2.2: 65535 << 7 is the least that covers 6 MiB.
    let shift = 7;
    let payload = [7u8; 1448];
    let mut seq = IRS + 1;
    let mut window = usize::from(u16::MAX);
    let mut our_ts = TS0 + 100;
    let mut segments = 10;
    let mut windows = Vec::new();
    for round in 0..10u32 {
        let n = segments.min(window / payload.len());
        for _ in 0..n {
            send!(
                s,
                Segment {
                    seq,
                    options: ts(PEER_TS + round, our_ts),
                    ..peer_data(seq, &payload)
                }
            );
            seq += payload.len();
        }
        assert_eq!(s.read_all().len(), n * payload.len());
        let mut last = None;
        while let Some(ack) = s.conn.poll_transmit(s.now) {
            assert_eq!(ack.ack, seq.min(ack.ack));
            last = Some((ack.window, ack.options.timestamps));
        }
        let (field, stamps) = last.expect("an ACK");
        window = usize::from(field) << shift;
        our_ts = stamps.expect("timestamps").0;
        windows.push(window);
        segments *= 2;
        s.now += ms(20);
    }
    assert!(
        windows.iter().any(|&w| w > 1 << 20),
        "windows advertised: {windows:?}"
    );
    assert!(windows.windows(2).all(|w| w[1] >= w[0]), "{windows:?}");
    assert!(s.stats().recv_buffer_grown > 0);
    assert!(s.recv_buffer_size() > 1 << 20);
}
