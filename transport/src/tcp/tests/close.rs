//! The orders in which a connection can close (RFC 9293 section 3.6).

use super::*;

/// RFC 9293 section 3.6, case 1: FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT -> CLOSED after
/// 2*MSL.
#[test]
fn active_close() {
    let mut s = established(cfg());
    s.shutdown_write();
    assert_eq!(s.state(), State::FinWait1);
    assert_eq!(s.send(b"late"), Err(SendError::Closed));
    recv!(
        s,
        [Segment {
            flags: FIN_ACK,
            ..RECV_TEMPL
        }]
    );
    send!(s, peer_ack(ISS + 2));
    assert_eq!(s.state(), State::FinWait2);
    recv_nothing!(s);
    send!(
        s,
        Segment {
            ack: ISS + 2,
            flags: FIN_ACK,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::TimeWait);
    recv!(
        s,
        [Segment {
            seq: ISS + 2,
            ack: IRS + 2,
            window: WINDOW - 1,
            ..RECV_TEMPL
        }]
    );
    assert!(s.at_eof());
    assert_eq!(s.poll_timeout(), Some(s.now + secs(60)));
    s.advance(secs(60) - ms(1));
    assert_eq!(s.state(), State::TimeWait);
    s.advance(ms(1));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), None);
}

/// RFC 9293 section 3.6, case 1 seen from the other end: CLOSE-WAIT -> LAST-ACK -> CLOSED
/// as soon as our FIN is acknowledged.
#[test]
fn passive_close() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            flags: FIN_ACK,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::CloseWait);
    recv!(s, [our_ack(IRS + 2, WINDOW - 1)]);
    let mut buf = [0; 4];
    assert_eq!(s.recv(&mut buf), Err(RecvError::Finished));
    assert!(s.at_eof());
    s.send(b"bye").unwrap();
    s.shutdown_write();
    assert_eq!(s.state(), State::LastAck);
    recv!(
        s,
        [Segment {
            ack: IRS + 2,
            window: WINDOW - 1,
            flags: Flags {
                fin: true,
                psh: true,
                ack: true,
                ..NO_FLAGS
            },
            payload: b"bye",
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            seq: IRS + 2,
            ack: ISS + 5,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), None);
    recv_nothing!(s);
}

/// RFC 9293 section 3.6: a FIN that arrives in FIN-WAIT-1 before the ACK of ours leads
/// to CLOSING, then TIME-WAIT on that ACK.
#[test]
fn crossing_fins_pass_through_closing() {
    let mut s = established(cfg());
    s.shutdown_write();
    recv!(
        s,
        [Segment {
            flags: FIN_ACK,
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            flags: FIN_ACK,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Closing);
    recv!(
        s,
        [Segment {
            seq: ISS + 2,
            ack: IRS + 2,
            window: WINDOW - 1,
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            seq: IRS + 2,
            ack: ISS + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::TimeWait);
}

/// RFC 9293 section 3.10.7.4 (TIME-WAIT): the only thing that can arrive is the peer's FIN
/// again; it is acknowledged and the 2*MSL timeout restarts.
#[test]
fn time_wait_reacks_a_retransmitted_fin_and_restarts_the_timer() {
    let mut s = established(cfg());
    s.shutdown_write();
    recv!(
        s,
        [Segment {
            flags: FIN_ACK,
            ..RECV_TEMPL
        }]
    );
    let fin = Segment {
        ack: ISS + 2,
        flags: FIN_ACK,
        ..SEND_TEMPL
    };
    send!(s, fin);
    let ack = Segment {
        seq: ISS + 2,
        ack: IRS + 2,
        window: WINDOW - 1,
        ..RECV_TEMPL
    };
    recv!(s, [ack]);
    assert_eq!(s.state(), State::TimeWait);
    s.advance(secs(30));
    send!(s, fin);
    recv!(s, [ack]);
    assert_eq!(s.poll_timeout(), Some(s.now + secs(60)));
    s.advance(secs(59));
    assert_eq!(s.state(), State::TimeWait);
    s.advance(secs(1));
    assert_eq!(s.state(), State::Closed);
}

/// Issue 8 item 11: TIME-WAIT only remembers the connection's sequence numbers (RFC 9293
/// section 3.10.7.4 lets nothing but a FIN retransmission arrive); the send, receive and
/// reassembly buffers of a connection that moved data both ways are freed on entering it.
#[test]
fn time_wait_holds_no_buffers() {
    let mut s = established(cfg());
    let data = pattern(20_000, 1);
    for (i, chunk) in data.chunks(usize::from(MSS)).enumerate() {
        send!(s, peer_data(IRS + 1 + i * usize::from(MSS), chunk));
    }
    assert_eq!(s.read_all(), data);
    assert_eq!(s.send(&data), Ok(data.len()));
    s.shutdown_write();
    ack_all_until(&mut s, IRS + 1 + data.len(), |c| {
        c.state() == State::FinWait2
    });
    send!(
        s,
        Segment {
            seq: IRS + 1 + data.len(),
            ack: ISS + 2 + data.len(),
            flags: FIN_ACK,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::TimeWait);
    assert_eq!(s.buffer_capacity(), 0);
}

/// RFC 1122 section 4.2.2.13: data that arrives after the application closed the
/// connection (RFC 2525 section 2.17, "data after close") is answered with a RST and the
/// connection is gone; what was already acknowledged, or a bare ACK, changes nothing.
#[test]
fn data_after_close_is_reset_rfc1122_4_2_2_13() {
    let mut s = established(cfg());
    s.shutdown_write();
    let now = s.now;
    s.orphan(now);
    recv!(
        s,
        [Segment {
            flags: FIN_ACK,
            ..RECV_TEMPL
        }]
    );
    send!(s, peer_ack(ISS + 2));
    assert_eq!(s.state(), State::FinWait2);
    recv_nothing!(s);
    send!(s, peer_data(IRS + 1, b"late"));
    recv!(
        s,
        [Segment {
            seq: ISS + 2,
            flags: RST_ACK,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.stats().aborts_on_data, 1);
}

/// Linux `tcp_fin_timeout`: a closed connection whose peer never sends its FIN leaves
/// FIN-WAIT-2 after 60 s with a RST; one the application still holds (half-closed) waits
/// as long as the peer likes.
#[test]
fn orphan_leaves_fin_wait_2_after_the_fin_timeout() {
    for orphan in [false, true] {
        let mut s = established(cfg());
        s.shutdown_write();
        if orphan {
            let now = s.now;
            s.orphan(now);
        }
        recv!(
            s,
            [Segment {
                flags: FIN_ACK,
                ..RECV_TEMPL
            }]
        );
        send!(s, peer_ack(ISS + 2));
        assert_eq!(s.state(), State::FinWait2);
        if !orphan {
            assert_eq!(s.poll_timeout(), None);
            continue;
        }
        assert_eq!(s.poll_timeout(), Some(s.now + secs(60)));
        s.advance(secs(60));
        recv!(
            s,
            [Segment {
                seq: ISS + 2,
                flags: RST_ACK,
                ..RECV_TEMPL
            }]
        );
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.error(), Some(ConnectionError::TimedOut));
        assert_eq!(s.stats().orphans_timed_out, 1);
    }
}

/// Linux `tcp_orphan_retries`: a closed connection whose peer answers every zero-window
/// probe with a zero window gives up after 8 probes instead of probing forever.
#[test]
fn orphan_zero_window_probes_are_capped() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            window: 0,
            ..SEND_TEMPL
        }
    );
    s.send(b"hello").unwrap();
    s.shutdown_write();
    let now = s.now;
    s.orphan(now);
    recv_nothing!(s);
    let mut probes = 0;
    while s.state() != State::Closed && probes < 100 {
        let at = s.poll_timeout().expect("the persist timer");
        s.advance(at - s.now);
        while s.conn.poll_transmit(s.now).is_some() {
            probes += 1;
        }
        send!(
            s,
            Segment {
                window: 0,
                ..SEND_TEMPL
            }
        );
    }
    assert_eq!(probes, 8);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), Some(ConnectionError::TimedOut));
    assert_eq!(s.stats().orphans_timed_out, 1);
}
