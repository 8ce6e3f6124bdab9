//! The compact TIME-WAIT (`tcp::time_wait`, Linux's `tcp_timewait_sock`) answers every
//! late segment exactly as the connection it replaces: the same ACKs, at the same urgency
//! (`Connection::ack_due`), the same counters, the same 2 MSL deadline, the same end.

use super::*;
use crate::tcp::stats::ConnStats;
use crate::tcp::time_wait::{TimeWait, TimeWaitInput};

/// The peer's timestamp option (if `cfg` has timestamps on) with `tsval`.
fn peer_ts(cfg: &TcpConfig, tsval: u32) -> TcpOptions {
    if cfg.timestamps {
        ts(tsval, 0)
    } else {
        NO_OPTIONS
    }
}

/// An active close through to TIME-WAIT: our FIN acknowledged, then the peer's FIN.
fn in_time_wait(cfg: &TcpConfig) -> TestConn {
    let mut s = established(cfg.clone());
    s.shutdown_write();
    while s.conn.poll_transmit(s.now).is_some() {}
    s.now += ms(50);
    send!(
        s,
        Segment {
            ack: ISS + 2,
            options: peer_ts(cfg, PEER_TS + 50),
            ..SEND_TEMPL
        }
    );
    s.now += ms(10);
    send!(
        s,
        Segment {
            ack: ISS + 2,
            flags: FIN_ACK,
            options: peer_ts(cfg, PEER_TS + 60),
            ..SEND_TEMPL
        }
    );
    while s.conn.poll_transmit(s.now).is_some() {}
    assert_eq!(s.state(), State::TimeWait);
    s
}

/// The counters TIME-WAIT touches.
fn counters(s: &ConnStats) -> [u64; 8] {
    [
        s.segs_in,
        s.segs_out,
        s.rsts_in,
        s.paws_drops,
        s.dup_segments,
        s.challenge_acks,
        s.challenge_acks_suppressed,
        s.invalid_acks_suppressed,
    ]
}

/// Feeds `script` (a wait, then a segment) to a connection in TIME-WAIT and to its
/// compact form, and checks that they answer alike after each segment.
fn compare(cfg: TcpConfig, script: &[(Duration, Segment<'_>)]) {
    let mut conn = in_time_wait(&cfg);
    let mut twin = in_time_wait(&cfg);
    let mut tw: TimeWait = twin.conn.time_wait().expect("quiet in TIME-WAIT");
    let before = counters(conn.stats());
    let mut stats = ConnStats::default();
    let mut tw_closed = false;
    for (i, (wait, seg)) in script.iter().enumerate() {
        conn.advance(*wait);
        let now = conn.now;
        if now >= tw.deadline() {
            tw_closed = true;
        }
        assert_eq!(conn.state() == State::Closed, tw_closed, "step {i}: closed");
        if tw_closed {
            return;
        }
        conn.conn.handle_segment(now, seg);
        let input = tw.handle_segment(now, seg, &mut stats);
        assert_eq!(
            conn.conn.ack_due(),
            input == TimeWaitInput::Ack,
            "step {i}: {seg:?} -> {input:?}"
        );
        let mut sent = Vec::new();
        while let Some(out) = conn.conn.poll_transmit(now) {
            sent.push(format!("{out:?}"));
        }
        let mut tw_sent = Vec::new();
        match input {
            TimeWaitInput::Ack | TimeWaitInput::AckLater => {
                tw_sent.push(format!("{:?}", tw.ack(now, &mut stats)))
            }
            TimeWaitInput::Closed => tw_closed = true,
            TimeWaitInput::Nothing => {}
        }
        assert_eq!(sent, tw_sent, "step {i}: {seg:?}");
        assert_eq!(conn.state() == State::Closed, tw_closed, "step {i}: closed");
        let delta: Vec<u64> = counters(conn.stats())
            .iter()
            .zip(before)
            .map(|(a, b)| a - b)
            .collect();
        assert_eq!(delta, counters(&stats), "step {i}: counters");
        if !tw_closed {
            assert_eq!(
                conn.poll_timeout(),
                Some(tw.deadline()),
                "step {i}: deadline"
            );
        }
    }
}

/// Late segments of every kind RFC 9293 section 3.10.7.4 and RFC 5961 name, in order,
/// then the 2 MSL timeout (or an exact RST, `rst_at_end`).
fn script(cfg: &TcpConfig, rst_at_end: bool) -> Vec<(Duration, Segment<'static>)> {
    let o = |tsval| peer_ts(cfg, tsval);
    let peer = |seq: SeqNumber, ack: SeqNumber, flags: Flags, tsval: u32| Segment {
        seq,
        ack,
        flags,
        options: o(tsval),
        ..SEND_TEMPL
    };
    let mut s = vec![
        // The peer's FIN again (our ACK was lost): re-ACKed at once, 2 MSL restarts.
        (secs(5), peer(IRS + 1, ISS + 2, FIN_ACK, PEER_TS + 5000)),
        // A plain ACK in the window: nothing.
        (ms(10), peer(IRS + 2, ISS + 2, ACK, PEER_TS + 5010)),
        // An old duplicate with data: a duplicate ACK at once.
        (
            ms(10),
            Segment {
                payload: b"old data",
                ..peer(IRS + 1 - 100, ISS + 2, ACK, PEER_TS + 5020)
            },
        ),
        // New data after the FIN: acknowledged.
        (
            ms(10),
            Segment {
                payload: b"x",
                ..peer(IRS + 2, ISS + 2, PSH_ACK, PEER_TS + 5030)
            },
        ),
        // ACKs of data never sent, and too old to be real.
        (ms(10), peer(IRS + 2, ISS + 500, ACK, PEER_TS + 5040)),
        (
            ms(10),
            peer(IRS + 2, ISS + 2 - 200_000, ACK, PEER_TS + 5050),
        ),
        // A SYN in the window (challenge ACK) and one below it.
        (ms(10), peer(IRS + 2, SeqNumber(0), SYN, PEER_TS + 5060)),
        (ms(10), peer(IRS - 9000, SeqNumber(0), SYN, PEER_TS + 5070)),
        // RSTs that do not match exactly: challenged, or ignored out of the window.
        (ms(10), peer(IRS + 3, ISS + 2, RST, PEER_TS + 5080)),
        (ms(10), peer(IRS + 900_000, ISS + 2, RST, PEER_TS + 5090)),
        // No ACK flag: dropped.
        (
            ms(10),
            peer(IRS + 2, SeqNumber(0), NO_FLAGS, PEER_TS + 5100),
        ),
        // A new FIN at RCV.NXT: acknowledged, 2 MSL restarts.
        (ms(10), peer(IRS + 2, ISS + 2, FIN_ACK, PEER_TS + 5110)),
    ];
    // Enough invalid ACKs within one second to pass the RFC 5961 section 7 limit.
    for k in 0..12 {
        s.push((ms(1), peer(IRS + 2, ISS + 600, ACK, PEER_TS + 5120 + k)));
    }
    // A second later the limit starts over.
    s.push((secs(1), peer(IRS + 2, ISS + 600, ACK, PEER_TS + 6200)));
    if cfg.timestamps {
        // RFC 7323 section 5.3: an old timestamp fails PAWS (a duplicate ACK).
        s.push((ms(10), peer(IRS + 2, ISS + 2, ACK, PEER_TS)));
        s.push((
            ms(10),
            Segment {
                payload: b"y",
                ..peer(IRS + 2, ISS + 2, ACK, PEER_TS)
            },
        ));
    }
    if rst_at_end {
        s.push((ms(10), peer(IRS + 2, ISS + 2, RST, PEER_TS + 6300)));
    } else {
        s.push((secs(59), peer(IRS + 2, ISS + 2, ACK, PEER_TS + 6400)));
        s.push((secs(2), peer(IRS + 2, ISS + 2, ACK, PEER_TS + 6500)));
    }
    s
}

#[test]
fn compact_time_wait_answers_as_the_connection_without_options() {
    for rst in [false, true] {
        compare(cfg(), &script(&cfg(), rst));
    }
}

#[test]
fn compact_time_wait_answers_as_the_connection_with_timestamps_sack_and_scaling() {
    let cfg = TcpConfig {
        timestamps: true,
        sack: true,
        window_scaling: true,
        recv_buffer_max: 4 << 20,
        ..cfg()
    };
    for rst in [false, true] {
        compare(cfg.clone(), &script(&cfg, rst));
    }
}

/// A connection in TIME-WAIT with unread data, or not in TIME-WAIT, has no compact form.
#[test]
fn only_a_quiet_time_wait_is_made_compact() {
    let mut s = established(cfg());
    assert_eq!(s.conn.time_wait(), None);
    s.shutdown_write();
    assert_eq!(s.conn.time_wait(), None);
}
