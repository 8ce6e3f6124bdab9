//! The sending side: Nagle, retransmission, RTT, loss recovery, probes and timeouts.

use super::*;

/// RFC 9293 section 3.7.4 (Nagle): while a small segment is unacknowledged, the next
/// small write waits for the ACK.
#[test]
fn nagle_holds_a_small_write_until_the_ack() {
    let mut s = established(cfg());
    s.send(b"a").unwrap();
    recv!(s, [our_data(ISS + 1, PSH_ACK, b"a")]);
    s.send(b"b").unwrap();
    recv_nothing!(s);
    send!(s, peer_ack(ISS + 2));
    recv!(s, [our_data(ISS + 2, PSH_ACK, b"b")]);
}

/// RFC 9293 section 3.7.4: with Nagle off, small writes go out at once.
#[test]
fn nodelay_sends_small_writes_at_once() {
    let mut s = established(TcpConfig {
        nodelay: true,
        ..cfg()
    });
    s.send(b"a").unwrap();
    recv!(s, our_data(ISS + 1, PSH_ACK, b"a"));
    s.send(b"b").unwrap();
    recv!(s, [our_data(ISS + 2, PSH_ACK, b"b")]);
}

/// RFC 6298 section 2.1 and 5.5, RFC 9293 section 3.8.3: the SYN is retransmitted after
/// the initial RTO of 1 s, the timeout doubling each time; after `syn_retries`
/// retransmissions the connection times out.
#[test]
fn syn_is_retransmitted_with_backoff_then_times_out() {
    let mut s = syn_sent(TcpConfig {
        syn_retries: 3,
        ..cfg()
    });
    let syn = Segment {
        seq: ISS,
        ack: SeqNumber(0),
        flags: SYN,
        options: mss(MSS),
        ..RECV_TEMPL
    };
    for wait in [1, 2, 4] {
        assert_eq!(s.poll_timeout(), Some(s.now + secs(wait)));
        s.advance(secs(wait) - ms(1));
        recv_nothing!(s);
        s.advance(ms(1));
        recv!(s, [syn]);
    }
    assert_eq!(s.stats().retransmits, 3);
    s.advance(secs(8));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), Some(ConnectionError::TimedOut));
    recv_nothing!(s);
}

/// RFC 6298 section 5.4 and RFC 5681 section 3.1: on a timeout the oldest unacknowledged
/// segment goes again, cwnd drops to one segment, the RTO doubles; the rest follows as
/// ACKs come.
#[test]
fn data_rto_retransmits_from_snd_una() {
    let mut s = established(cfg());
    let data = pattern(2920, 0);
    s.send(&data).unwrap();
    let first = Segment {
        payload: &data[..1460],
        ..RECV_TEMPL
    };
    let second = our_data(ISS + 1461, PSH_ACK, &data[1460..]);
    recv!(s, [first, second]);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(300)));
    s.advance(ms(300));
    recv!(s, [first]);
    assert_eq!(s.cwnd(), 1460);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(600)));
    send!(s, peer_ack(ISS + 1461));
    recv!(s, [second]);
    assert_eq!((s.stats().timeouts, s.stats().retransmits), (1, 2));
}

/// RFC 6298 section 2.2 and 2.3: the first sample (the handshake's 100 ms) sets SRTT = R,
/// RTTVAR = R/2, RTO = SRTT + 4*RTTVAR; the next one folds in with alpha 1/8, beta 1/4.
#[test]
fn rtt_samples_set_the_rto() {
    let mut s = established(cfg());
    assert_eq!((s.srtt(), s.rto()), (Some(ms(100)), ms(300)));
    s.send(b"abc").unwrap();
    assert!(s.conn.poll_transmit(s.now).is_some());
    s.now += ms(200);
    send!(s, peer_ack(ISS + 4));
    // SRTT = 7/8 * 100 + 1/8 * 200; RTTVAR = 3/4 * 50 + 1/4 * |100 - 200|.
    assert_eq!(s.srtt(), Some(Duration::from_micros(112_500)));
    assert_eq!(s.rto(), Duration::from_micros(112_500 + 4 * 62_500));
}

/// RFC 5681 section 3.2 and RFC 6582 section 3.2: the third duplicate ACK retransmits the
/// first unacknowledged segment; in recovery a partial ACK retransmits the next one.
#[test]
fn fast_retransmit_and_newreno_partial_ack() {
    let mut s = established(cfg());
    let data = pattern(5 * 1460, 0);
    s.send(&data).unwrap();
    let seg = |i: usize| {
        our_data(
            ISS + 1 + i * 1460,
            if i == 4 { PSH_ACK } else { ACK },
            &data[i * 1460..(i + 1) * 1460],
        )
    };
    recv!(s, [seg(0), seg(1), seg(2), seg(3), seg(4)]);
    for _ in 0..2 {
        send!(s, SEND_TEMPL);
        recv_nothing!(s);
    }
    send!(s, SEND_TEMPL);
    recv!(s, [seg(0)]);
    assert_eq!(s.stats().fast_retransmits, 1);
    // Segments 0 and 1 arrived; 2 was lost too.
    send!(s, peer_ack(ISS + 1 + 2 * 1460));
    recv!(s, [seg(2)]);
    send!(s, peer_ack(ISS + 1 + 5 * 1460));
    recv_nothing!(s);
    assert_eq!(s.stats().retransmits, 2);
    assert_eq!(s.send_queue(), 0);
}

/// RFC 5927: an ICMP error must quote a sequence number in flight; a forged one is
/// ignored. A real soft error (host unreachable) on an established connection is only
/// counted: the retransmission timer keeps trying (RFC 5461).
#[test]
fn icmp_errors_must_quote_data_in_flight_and_soft_ones_do_not_abort() {
    let mut s = established(cfg());
    s.send(b"hello").unwrap();
    recv!(s, [our_data(ISS + 1, PSH_ACK, b"hello")]);
    s.conn.on_icmp_error(ISS + 500, Some(3));
    assert_eq!(s.stats().icmp_errors_ignored, 1);
    s.conn.on_icmp_error(ISS + 1, Some(1));
    assert_eq!(s.stats().icmp_errors, 1);
    s.conn.on_icmp_error(ISS + 1, Some(3));
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.error(), None);
}

/// After a timeout, going back N skips what the peer SACKed (the scoreboard survives
/// the first RTO): segment 2 was SACKed, so only 0, 1 and 3 are sent again.
#[test]
fn going_back_n_after_a_timeout_skips_sacked_segments() {
    let mut s = established(TcpConfig {
        sack: true,
        ..cfg()
    });
    let data = pattern(4 * 1460, 0);
    s.send(&data).unwrap();
    let seg = |i: usize| {
        our_data(
            ISS + 1 + i * 1460,
            if i == 3 { PSH_ACK } else { ACK },
            &data[i * 1460..(i + 1) * 1460],
        )
    };
    let at = |i: usize| ISS + 1 + i * 1460;
    recv!(s, [seg(0), seg(1), seg(2), seg(3)]);
    // Only segment 2 arrived: one duplicate ACK, not enough for fast retransmit.
    send!(
        s,
        Segment {
            ack: at(0),
            options: sack(&[(at(2), at(3))]),
            ..SEND_TEMPL
        }
    );
    recv_nothing!(s);
    let rto = s.conn.poll_timeout().unwrap();
    s.now = rto;
    s.conn.on_timeout(rto);
    recv!(s, [seg(0)]);
    s.now += ms(100);
    send!(
        s,
        Segment {
            ack: at(1),
            options: sack(&[(at(2), at(3))]),
            ..SEND_TEMPL
        }
    );
    recv!(s, [seg(1), seg(3)]);
    assert_eq!(s.stats().retransmits, 3);
}

/// RFC 9293 section 3.8.4: after `keepalive` idle, probes with SEG.SEQ = SND.NXT - 1 and
/// no data draw an ACK; an answer restarts the idle timer, `keepalive_probes` unanswered
/// probes end the connection with TimedOut.
#[test]
fn keepalive_probes_an_idle_connection_and_gives_up() {
    let mut s = established(TcpConfig {
        keepalive: Some(secs(10)),
        keepalive_interval: secs(1),
        keepalive_probes: 3,
        ..cfg()
    });
    let start = s.now;
    let probe = Segment {
        seq: ISS,
        ..RECV_TEMPL
    };
    run_until(&mut s, start + secs(10) - ms(1));
    recv_nothing!(s);
    s.now = start + secs(10);
    s.conn.on_timeout(s.now);
    recv!(s, [probe]);
    // The peer answers: idle again for 10 s before the next probe.
    send!(s, SEND_TEMPL);
    s.now += secs(9);
    s.conn.on_timeout(s.now);
    recv_nothing!(s);
    assert_eq!(s.stats().keepalive_probes, 1);
    // Now nobody answers: probes at +10, +11, +12 s, then the connection is dead.
    let until = s.now + secs(5);
    let sent = run_until(&mut s, until);
    assert_eq!(sent, 3);
    assert_eq!(s.stats().keepalive_probes, 4);
    assert_eq!(s.error(), Some(ConnectionError::TimedOut));
}

/// RFC 6675: with SACK, two holes in one window are both resent in the first round trip
/// of recovery, without waiting for a partial ACK (NewReno needs one RTT per hole).
#[test]
fn sack_recovery_resends_every_hole_in_one_round_trip() {
    let mut s = established(TcpConfig {
        sack: true,
        ..cfg()
    });
    let data = pattern(8 * 1460, 0);
    s.send(&data).unwrap();
    let seg = |i: usize| {
        our_data(
            ISS + 1 + i * 1460,
            if i == 7 { PSH_ACK } else { ACK },
            &data[i * 1460..(i + 1) * 1460],
        )
    };
    // Initial window: 10 segments, so all eight go out.
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
            seg(7)
        ]
    );
    // Segments 1 and 4 are lost: the peer ACKs 0 and SACKs 2-3, then 2-3 and 5-7.
    let at = |i: usize| ISS + 1 + i * 1460;
    send!(s, peer_ack(at(1)));
    send!(
        s,
        Segment {
            ack: at(1),
            options: sack(&[(at(2), at(3))]),
            ..SEND_TEMPL
        }
    );
    recv_nothing!(s);
    send!(
        s,
        Segment {
            ack: at(1),
            options: sack(&[(at(5), at(6)), (at(2), at(4))]),
            ..SEND_TEMPL
        }
    );
    // More than 2 MSS SACKed above SND.UNA (with only two duplicate ACKs so far):
    // recovery starts, and both holes go out at once since pipe (3 segments) is below
    // the reduced window (CUBIC: 7 of 10).
    recv!(s, [seg(1), seg(4)]);
    assert_eq!(s.stats().fast_retransmits, 1);
    send!(
        s,
        Segment {
            ack: at(1),
            options: sack(&[(at(5), at(8)), (at(2), at(4))]),
            ..SEND_TEMPL
        }
    );
    recv_nothing!(s);
    send!(s, peer_ack(at(8)));
    recv_nothing!(s);
    assert_eq!(s.stats().retransmits, 2);
    assert_eq!(s.send_queue(), 0);
}

/// RFC 9293 section 3.8.3 and RFC 5482: data unacknowledged for the user timeout ends
/// the connection; send and recv then report TimedOut.
#[test]
fn user_timeout_fails_send_and_recv() {
    let mut s = established(TcpConfig {
        user_timeout: secs(2),
        ..cfg()
    });
    s.send(b"hello").unwrap();
    let start = s.now;
    run_until(&mut s, start + secs(10));
    assert_eq!(s.error(), Some(ConnectionError::TimedOut));
    assert_eq!(
        s.send(b"x"),
        Err(SendError::Connection(ConnectionError::TimedOut))
    );
    assert_eq!(
        s.recv(&mut [0; 4]),
        Err(RecvError::Connection(ConnectionError::TimedOut))
    );
    assert!(s.stats().timeouts >= 2);
}

/// RFC 5482 section 3: the user timeout measures how long data stays unacknowledged, so
/// it starts when data goes out, not at the handshake.
#[test]
fn user_timeout_counts_from_the_first_unacknowledged_send() {
    let mut s = established(TcpConfig {
        user_timeout: secs(2),
        ..cfg()
    });
    s.now += ms(1500);
    s.send(b"hello").unwrap();
    let sent = s.now;
    run_until(&mut s, sent + secs(2) - ms(1));
    assert_eq!(s.error(), None, "timed out early");
    run_until(&mut s, sent + secs(2));
    assert_eq!(s.error(), Some(ConnectionError::TimedOut));
}

/// RFC 9293 section 3.8.6.1: against a zero window the persist timer sends probes, backing
/// off exponentially; a window update resumes sending. This stack probes as Linux does,
/// with an empty segment at SND.UNA - 1.
#[test]
fn zero_window_is_probed_with_backoff_until_it_opens() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            window: 0,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_window(), 0);
    s.send(b"hello").unwrap();
    recv_nothing!(s);
    let probe = Segment {
        seq: ISS,
        ..RECV_TEMPL
    };
    for wait in [300, 600, 1200] {
        assert_eq!(s.poll_timeout(), Some(s.now + ms(wait)));
        s.advance(ms(wait));
        recv!(s, [probe]);
        send!(
            s,
            Segment {
                window: 0,
                ..SEND_TEMPL
            }
        );
        recv_nothing!(s);
    }
    assert_eq!(s.stats().zero_window_probes, 3);
    send!(s, SEND_TEMPL);
    recv!(s, [our_data(ISS + 1, PSH_ACK, b"hello")]);
}

/// RFC 9293 section 3.8.6.1: the probes' backoff belongs to one zero-window episode; once
/// the window has opened, the next episode probes at the RTO again and backs off from there.
#[test]
fn zero_window_backoff_starts_over_after_the_window_opens() {
    let mut s = established(cfg());
    for episode in 0..2usize {
        let sent = 5 * episode;
        send!(
            s,
            Segment {
                ack: ISS + 1 + sent,
                window: 0,
                ..SEND_TEMPL
            }
        );
        s.send(b"hello").unwrap();
        recv_nothing!(s);
        let rto = s.rto();
        for wait in [rto, 2 * rto, 4 * rto] {
            assert_eq!(s.poll_timeout(), Some(s.now + wait), "episode {episode}");
            s.advance(wait);
            recv!(
                s,
                [Segment {
                    seq: ISS + sent,
                    ..RECV_TEMPL
                }]
            );
        }
        send!(s, peer_ack(ISS + 1 + sent));
        recv!(s, [our_data(ISS + 1 + sent, PSH_ACK, b"hello")]);
    }
}

/// RFC 1191 sections 3 and 6.1, RFC 5927 section 4.1: ICMP "fragmentation needed" quoting
/// a sequence number in flight lowers the send MSS to the next-hop MTU less 40 bytes, and
/// what is in flight goes again at once at the new size, with no congestion response
/// (cwnd stays, no timeout or fast retransmit). One quoting data not in flight is
/// ignored (a forgery cannot shrink our segments).
#[test]
fn fragmentation_needed_lowers_the_mss_and_resends_rfc1191_3() {
    // Nagle off, so that the partial last segments go at once and the trace is short.
    let mut s = established(TcpConfig {
        nodelay: true,
        ..cfg()
    });
    let data = pattern(3720, 0);
    s.send(&data).unwrap();
    recv!(
        s,
        [
            our_data(ISS + 1, ACK, &data[..1460]),
            our_data(ISS + 1461, ACK, &data[1460..2920]),
            our_data(ISS + 2921, PSH_ACK, &data[2920..]),
        ]
    );
    let cwnd = s.cwnd();
    s.conn.on_fragmentation_needed(ISS + 5000, 1280, 1500);
    assert_eq!(s.stats().icmp_errors_ignored, 1);
    recv_nothing!(s);
    s.conn.on_fragmentation_needed(ISS + 1461, 1280, 1500);
    recv!(
        s,
        [
            our_data(ISS + 1, ACK, &data[..1240]),
            our_data(ISS + 1241, ACK, &data[1240..2480]),
            our_data(ISS + 2481, PSH_ACK, &data[2480..]),
        ]
    );
    assert_eq!(s.effective_mss(), 1240);
    assert_eq!(s.cwnd(), cwnd);
    send!(s, peer_ack(ISS + 3721));
    recv_nothing!(s);
    let st = s.stats();
    assert_eq!((st.timeouts, st.fast_retransmits), (0, 0));
    assert_eq!(st.path_mtu_reductions, 1);
    // A larger MTU later does not raise it (RFC 1191 section 6.3: increases are probed
    // for, never taken from an ICMP message).
    s.send(&data[..10]).unwrap();
    recv!(s, [our_data(ISS + 3721, PSH_ACK, &data[..10])]);
    s.conn.on_fragmentation_needed(ISS + 3721, 1500, 1500);
    assert_eq!(s.effective_mss(), 1240);
}

/// RFC 1191 section 5: a router that leaves the next-hop MTU field 0 gets the next
/// plateau below the quoted datagram's length (section 7's table: 1500 -> 1492); and the
/// estimate never goes below a floor, here Linux's `min_pmtu` of 552 (RFC 1191 section
/// 3 allows 68; a floor that high keeps a forged message from shrinking segments to
/// almost nothing).
#[test]
fn fragmentation_needed_without_mtu_takes_the_plateau_below_rfc1191_5() {
    // Nagle off, so that the partial last segments go at once and the trace is short.
    let mut s = established(TcpConfig {
        nodelay: true,
        ..cfg()
    });
    let data = pattern(1460, 0);
    s.send(&data).unwrap();
    recv!(s, [our_data(ISS + 1, PSH_ACK, &data)]);
    s.conn.on_fragmentation_needed(ISS + 1, 0, 1500);
    assert_eq!(s.effective_mss(), 1452);
    recv!(
        s,
        [
            our_data(ISS + 1, ACK, &data[..1452]),
            our_data(ISS + 1453, PSH_ACK, &data[1452..]),
        ]
    );
    s.conn.on_fragmentation_needed(ISS + 1, 0, 1492);
    assert_eq!(s.effective_mss(), 1006 - 40);
    s.conn.on_fragmentation_needed(ISS + 1, 68, 1006);
    assert_eq!(s.effective_mss(), 552 - 40);
    s.conn.on_fragmentation_needed(ISS + 1, 0, 552);
    assert_eq!(s.effective_mss(), 552 - 40);
}

/// RFC 1122 section 4.2.2.17 (and RFC 9293 section 3.8.6.1): a FIN takes a sequence
/// number, so one that does not fit the peer's window waits like data: the persist timer
/// probes the window for as long as the peer answers, past the user timeout, and the FIN
/// goes out once the window opens.
#[test]
fn fin_waits_for_window_rfc1122_4_2_2_17() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            window: 5,
            ..SEND_TEMPL
        }
    );
    s.send(b"hello").unwrap();
    s.shutdown_write();
    // The data fills the window: the FIN stays behind.
    recv!(s, [our_data(ISS + 1, PSH_ACK, b"hello")]);
    let closed = Segment {
        ack: ISS + 6,
        window: 0,
        ..SEND_TEMPL
    };
    send!(s, closed);
    recv_nothing!(s);
    let start = s.now;
    let probe = Segment {
        seq: ISS + 5,
        ..RECV_TEMPL
    };
    while s.now < start + 3 * cfg().user_timeout {
        let at = s.poll_timeout().expect("the persist timer");
        s.now = at;
        s.conn.on_timeout(at);
        recv!(s, [probe]);
        send!(s, closed);
        recv_nothing!(s);
    }
    assert_eq!(s.state(), State::FinWait1);
    assert_eq!(s.error(), None);
    send!(
        s,
        Segment {
            ack: ISS + 6,
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            seq: ISS + 6,
            flags: FIN_ACK,
            ..RECV_TEMPL
        }]
    );
    send!(s, peer_ack(ISS + 7));
    assert_eq!(s.state(), State::FinWait2);
}

/// RFC 1122 section 4.2.3.4 (sender silly-window avoidance): data held back because the
/// peer's window is small but not zero, with nothing in flight to bring an ACK, goes out
/// when the override timeout passes (here the persist timer, at the RTO, as Linux
/// does), as much as the window takes.
#[test]
fn sws_override_timer_sends_into_a_small_window_rfc1122_4_2_3_4() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            window: 100,
            ..SEND_TEMPL
        }
    );
    let data = pattern(5000, 0);
    s.send(&data).unwrap();
    recv_nothing!(s);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(300)));
    s.advance(ms(299));
    recv_nothing!(s);
    s.advance(ms(1));
    recv!(s, [our_data(ISS + 1, ACK, &data[..100])]);
    assert_eq!(s.stats().sws_overrides, 1);
    // The next window is a full segment: sent at once.
    send!(
        s,
        Segment {
            ack: ISS + 101,
            window: 1460,
            ..SEND_TEMPL
        }
    );
    recv!(s, [our_data(ISS + 101, ACK, &data[100..1560])]);
}

/// A send buffer the application refills as fast as the peer acknowledges keeps its
/// memory: drained by an ACK and refilled before the reclaim delay, it is neither shrunk
/// nor regrown; left empty for the delay, it goes back to the retained 16 KiB.
#[test]
fn a_busy_send_buffer_keeps_its_memory_and_an_idle_one_gives_it_back() {
    let mut s = established(cfg());
    let data = pattern(40_000, 3);
    for round in 0..3 {
        assert_eq!(s.send(&data), Ok(data.len()), "round {round}");
        ack_all_until(&mut s, IRS + 1, |c| c.send_queue() == 0);
        assert!(
            s.buffer_capacity() >= data.len(),
            "round {round}: shrunk to {} as soon as it drained",
            s.buffer_capacity()
        );
        s.advance(ms(100));
    }
    let until = s.now + ms(200);
    run_until(&mut s, until);
    assert!(
        s.buffer_capacity() <= 2 * 16 * 1024 + usize::from(MSS),
        "{}",
        s.buffer_capacity()
    );
}

/// RFC 9293 section 3.8.6: the segments carry the application's bytes in order. Segments
/// are cut straight out of the send buffer's ring, so they must also do so where the
/// ring wraps (one segment then takes the end of the ring and its start): writes of
/// uneven sizes, each acknowledged piecemeal, move the ring's head around its buffer.
#[test]
fn segments_carry_the_stream_wherever_the_send_buffer_wraps() {
    let mut s = established(TcpConfig {
        nodelay: true,
        ..cfg()
    });
    let stream = pattern(400_000, 3);
    let (mut queued, mut sent) = (0, Vec::new());
    for round in 0..200 {
        let want = (round * 7919 % 30_000) + 1;
        let end = (queued + want).min(stream.len());
        queued += s.send(&stream[queued..end]).unwrap();
        let mut acks = Vec::new();
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            assert_eq!(seg.seq, ISS + 1 + sent.len(), "in order, no retransmission");
            sent.extend_from_slice(seg.payload);
            acks.push(seg.seq + seg.payload.len());
        }
        // Every other segment acknowledged, as Linux does; the last one of a round is
        // left in flight, so the buffer never drains (a drained ring starts over at
        // the front of its memory).
        for ack in acks.iter().skip(1).step_by(2) {
            send!(s, peer_ack(*ack));
        }
        s.now += ms(1);
    }
    assert!(sent.len() > 2 * usize::from(WINDOW), "{} bytes", sent.len());
    assert_eq!(sent, stream[..sent.len()]);
}
