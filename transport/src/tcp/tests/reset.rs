//! Resets and challenge ACKs (RFC 9293 section 3.10.7, RFC 5961).

use super::*;

/// RFC 9293 section 3.10.7.3: in SYN-SENT a RST whose ACK acknowledges our SYN means
/// "connection refused".
#[test]
fn rst_acking_our_syn_refuses_the_connection() {
    let mut s = syn_sent(cfg());
    send!(
        s,
        Segment {
            seq: SeqNumber(0),
            ack: ISS + 1,
            flags: RST_ACK,
            window: 0,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), Some(ConnectionError::Refused));
    recv_nothing!(s);
    assert_eq!(
        s.recv(&mut [0; 4]),
        Err(RecvError::Connection(ConnectionError::Refused))
    );
}

/// RFC 9293 section 3.10.7.3: in SYN-SENT a RST with an unacceptable ACK, or with no ACK,
/// is dropped without a reply.
#[test]
fn rst_in_syn_sent_without_an_acceptable_ack_is_ignored() {
    let mut s = syn_sent(cfg());
    for (ack, flags) in [(ISS, RST_ACK), (ISS + 2, RST_ACK), (SeqNumber(0), RST)] {
        send!(
            s,
            Segment {
                seq: SeqNumber(0),
                ack,
                flags,
                window: 0,
                ..SEND_TEMPL
            }
        );
        assert_eq!(s.state(), State::SynSent);
        recv_nothing!(s);
    }
    assert_eq!(s.error(), None);
}

/// RFC 5961 section 3.2: a RST exactly at RCV.NXT resets the connection.
#[test]
fn rst_at_rcv_nxt_resets() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            flags: RST,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), Some(ConnectionError::Reset));
    recv_nothing!(s);
    assert_eq!(
        s.send(b"x"),
        Err(SendError::Connection(ConnectionError::Reset))
    );
    assert_eq!(
        s.recv(&mut [0; 4]),
        Err(RecvError::Connection(ConnectionError::Reset))
    );
}

/// RFC 5961 section 3.2: a RST inside the window but not at RCV.NXT draws a challenge ACK;
/// one outside the window is dropped silently.
#[test]
fn rst_in_window_but_not_at_rcv_nxt_draws_a_challenge_ack() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            seq: IRS + 100,
            flags: RST,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    recv!(s, [RECV_TEMPL]);
    assert_eq!(s.stats().challenge_acks, 1);
    send!(
        s,
        Segment {
            seq: IRS + 100_000,
            flags: RST,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    recv_nothing!(s);
}

/// RFC 5961 section 4.2: a SYN in a synchronized state draws a challenge ACK and changes
/// nothing.
#[test]
fn syn_in_established_draws_a_challenge_ack() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            ack: SeqNumber(0),
            flags: SYN,
            options: mss(MSS),
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    recv!(s, [RECV_TEMPL]);
    assert_eq!(s.stats().challenge_acks, 1);
}

/// RFC 5961 section 7: at most `challenge_ack_limit` challenge ACKs a second.
#[test]
fn challenge_acks_are_rate_limited() {
    let mut s = established(cfg());
    let bad_rst = Segment {
        seq: IRS + 100,
        flags: RST,
        ..SEND_TEMPL
    };
    for _ in 0..10 {
        send!(s, bad_rst);
        recv!(s, [RECV_TEMPL]);
    }
    send!(s, bad_rst);
    recv_nothing!(s);
    assert_eq!(s.stats().challenge_acks, 10);
    assert_eq!(s.stats().challenge_acks_suppressed, 1);
    s.advance(secs(1));
    send!(s, bad_rst);
    recv!(s, [RECV_TEMPL]);
}

/// RFC 9293 section 3.10.7.4 (ACK field): an ACK of something not yet sent is answered
/// with an ACK and the segment dropped, its data too.
#[test]
fn ack_of_unsent_data_is_acked_and_dropped() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            ack: ISS + 100,
            payload: b"abc",
            ..SEND_TEMPL
        }
    );
    recv!(s, [RECV_TEMPL]);
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.state(), State::Established);
}

/// Abort (RFC 9293 section 3.10.5): a RST at SND.NXT, and the connection is gone.
#[test]
fn abort_sends_a_reset() {
    let mut s = established(cfg());
    s.abort();
    recv!(
        s,
        [Segment {
            flags: RST_ACK,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), Some(ConnectionError::Aborted));
}

/// RFC 5961 section 7 (and RFC 9293 section 3.10.7.4): every immediate ACK answering an
/// invalid segment without data (PAWS failure, out of window, an out-of-window SYN, an ACK
/// of data never sent) goes through the per-connection limit, so two desynchronised peers
/// do not ACK each other forever: 40 of them in one second draw `challenge_ack_limit` ACKs.
/// A duplicate data segment is still answered (as Linux does): it is no part of an ACK
/// loop, and its duplicate ACK is what the sender's recovery needs.
#[test]
fn acks_to_invalid_segments_are_rate_limited_rfc5961_7() {
    let mut s = established(TcpConfig {
        timestamps: true,
        ..cfg()
    });
    let fresh = ts(PEER_TS + 10, TS0 + 100);
    let invalid = [
        // PAWS: an older TSval than TS.Recent.
        Segment {
            options: ts(PEER_TS - 10, TS0 + 100),
            ..SEND_TEMPL
        },
        // Beyond the window.
        Segment {
            seq: IRS + 100_000,
            options: fresh,
            ..SEND_TEMPL
        },
        // A SYN beyond the window.
        Segment {
            seq: IRS + 100_000,
            ack: SeqNumber(0),
            flags: SYN,
            options: fresh,
            ..SEND_TEMPL
        },
        // An ACK of data never sent.
        Segment {
            ack: ISS + 100,
            options: fresh,
            ..SEND_TEMPL
        },
    ];
    let mut acks = 0;
    for i in 0..40 {
        send!(s, invalid[i % invalid.len()]);
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            assert_eq!((seg.flags, seg.seq, seg.ack), (ACK, ISS + 1, IRS + 1));
            acks += 1;
        }
        s.now += ms(20);
    }
    assert_eq!(acks, cfg().challenge_ack_limit);
    assert_eq!(s.stats().invalid_acks_suppressed, 30);
    // Duplicate data is still acknowledged.
    send!(
        s,
        Segment {
            seq: IRS,
            payload: b"x",
            options: fresh,
            ..SEND_TEMPL
        }
    );
    assert!(s.conn.poll_transmit(s.now).is_some());
    // A new second, a new allowance.
    s.now += secs(1);
    send!(s, invalid[0]);
    assert!(s.conn.poll_transmit(s.now).is_some());
    assert_eq!(s.state(), State::Established);
}
