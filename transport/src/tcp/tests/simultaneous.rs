//! Simultaneous open and simultaneous close: two connections fed each other's segments
//! (RFC 9293 sections 3.5 and 3.6).

use super::*;

fn take_all(c: &mut Connection, now: Instant) -> Vec<Owned> {
    let mut out = Vec::new();
    while let Some(seg) = c.poll_transmit(now) {
        out.push(Owned {
            payload: seg.payload.to_vec(),
            seg: Segment {
                payload: &[],
                ..seg
            },
        });
    }
    out
}

/// Each side sends what it has; then each gets the other's. Returns the (flags, seq, ack)
/// that went a -> b and b -> a.
type Trace = Vec<(Flags, SeqNumber, SeqNumber)>;
fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) -> (Trace, Trace) {
    let from_a = take_all(a, now);
    let from_b = take_all(b, now);
    for seg in &from_a {
        b.handle_segment(now, &seg.seg());
    }
    for seg in &from_b {
        a.handle_segment(now, &seg.seg());
    }
    let trace = |v: &[Owned]| {
        v.iter()
            .map(|o| (o.seg.flags, o.seg.seq, o.seg.ack))
            .collect()
    };
    (trace(&from_a), trace(&from_b))
}

/// Two connections that connect to each other at once, in ESTABLISHED.
fn simultaneous_open() -> (Connection, Connection) {
    let mut a = Connection::connect(T0, opening(LOCAL, REMOTE, ISS), cfg());
    let mut b = Connection::connect(T0, opening(REMOTE, LOCAL, IRS), cfg());
    let zero = SeqNumber(0);
    // The SYNs cross; each side answers with SYN-ACK from SYN-RECEIVED.
    let (ab, ba) = exchange(&mut a, &mut b, T0);
    assert_eq!((ab, ba), (vec![(SYN, ISS, zero)], vec![(SYN, IRS, zero)]));
    assert_eq!(
        (a.state(), b.state()),
        (State::SynReceived, State::SynReceived)
    );
    // The SYN-ACKs cross. Their SYN sits below RCV.NXT, so each fails the sequence test
    // of RFC 9293 section 3.10.7.4 and draws an ACK, which completes the handshake.
    let (ab, ba) = exchange(&mut a, &mut b, T0);
    assert_eq!(
        (ab, ba),
        (vec![(SYN_ACK, ISS, IRS + 1)], vec![(SYN_ACK, IRS, ISS + 1)])
    );
    let (ab, ba) = exchange(&mut a, &mut b, T0);
    assert_eq!(
        (ab, ba),
        (vec![(ACK, ISS + 1, IRS + 1)], vec![(ACK, IRS + 1, ISS + 1)])
    );
    assert_eq!(
        (a.state(), b.state()),
        (State::Established, State::Established)
    );
    (a, b)
}

/// RFC 9293 section 3.5, figure 8: simultaneous open.
#[test]
fn simultaneous_open_reaches_established() {
    let (mut a, mut b) = simultaneous_open();
    assert_eq!(exchange(&mut a, &mut b, T0), (vec![], vec![]));
    a.send(b"ping").unwrap();
    b.send(b"pong").unwrap();
    exchange(&mut a, &mut b, T0);
    let mut buf = [0; 8];
    assert_eq!(a.recv(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"pong");
    assert_eq!(b.recv(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"ping");
}

/// RFC 9293 section 3.6, figure 13: both close at once; the FINs cross, both pass CLOSING
/// and reach TIME-WAIT.
#[test]
fn simultaneous_close_reaches_time_wait_on_both_sides() {
    let (mut a, mut b) = simultaneous_open();
    a.shutdown_write();
    b.shutdown_write();
    let (ab, ba) = exchange(&mut a, &mut b, T0);
    assert_eq!(
        (ab, ba),
        (
            vec![(FIN_ACK, ISS + 1, IRS + 1)],
            vec![(FIN_ACK, IRS + 1, ISS + 1)]
        )
    );
    assert_eq!((a.state(), b.state()), (State::Closing, State::Closing));
    let (ab, ba) = exchange(&mut a, &mut b, T0);
    assert_eq!(
        (ab, ba),
        (vec![(ACK, ISS + 2, IRS + 2)], vec![(ACK, IRS + 2, ISS + 2)])
    );
    assert_eq!((a.state(), b.state()), (State::TimeWait, State::TimeWait));
}
