//! The three-way handshake and the options it negotiates (RFC 9293 section 3.5, RFC 7323,
//! RFC 2018).

use super::*;

/// RFC 9293 section 3.5, RFC 7323 sections 2.2 and 3.2, RFC 2018 section 2: our SYN offers
/// MSS, window scale, SACK-permitted and timestamps (TSecr 0) with an unscaled window;
/// the ACK of the SYN-ACK echoes the peer's TSval and scales our window.
#[test]
fn active_open_offers_every_option() {
    let cfg = TcpConfig {
        window_scaling: true,
        sack: true,
        timestamps: true,
        recv_buffer: 256 * 1024,
        ..cfg()
    };
    let mut s = TestConn {
        conn: Connection::connect(T0, opening(LOCAL, REMOTE, ISS), cfg),
        now: T0,
    };
    assert_eq!(s.state(), State::SynSent);
    recv!(
        s,
        [Segment {
            seq: ISS,
            ack: SeqNumber(0),
            flags: SYN,
            window: 65535,
            options: TcpOptions {
                mss: Some(MSS),
                window_scale: Some(3),
                sack_permitted: true,
                timestamps: Some((TS0, 0)),
                ..NO_OPTIONS
            },
            ..RECV_TEMPL
        }]
    );
    s.now += RTT;
    send!(
        s,
        Segment {
            seq: IRS,
            ack: ISS + 1,
            flags: SYN_ACK,
            window: 65535,
            options: TcpOptions {
                mss: Some(1400),
                window_scale: Some(2),
                sack_permitted: true,
                timestamps: Some((PEER_TS, TS0)),
                ..NO_OPTIONS
            },
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    recv!(
        s,
        [Segment {
            window: 32768, // 256 KiB >> 3
            options: ts(TS0 + 100, PEER_TS),
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.effective_mss(), 1400 - 12);
}

/// RFC 9293 section 3.10.7.2, RFC 7323 sections 1.3 and 2.2, RFC 2018 section 2: a
/// SYN-ACK carries window scale, SACK-permitted and timestamps only if the SYN did.
#[test]
fn passive_open_echoes_only_the_options_offered() {
    let all = TcpConfig {
        window_scaling: true,
        sack: true,
        timestamps: true,
        recv_buffer: 256 * 1024,
        ..cfg()
    };
    let mut s = syn_received(all.clone(), mss(1200));
    assert_eq!(s.state(), State::SynReceived);
    recv!(
        s,
        [Segment {
            seq: ISS,
            ack: IRS + 1,
            flags: SYN_ACK,
            window: 65535,
            options: mss(MSS),
            ..RECV_TEMPL
        }]
    );
    s.now += RTT;
    send!(
        s,
        Segment {
            window: 1000,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    assert_eq!((s.effective_mss(), s.send_window()), (1200, 1000));
    recv_nothing!(s);

    // Everything offered: everything echoed, the peer's TSval in TSecr.
    let offered = TcpOptions {
        mss: Some(MSS),
        window_scale: Some(2),
        sack_permitted: true,
        timestamps: Some((PEER_TS, 0)),
        ..NO_OPTIONS
    };
    let mut s = syn_received(all, offered);
    recv!(
        s,
        [Segment {
            seq: ISS,
            ack: IRS + 1,
            flags: SYN_ACK,
            window: 65535,
            options: TcpOptions {
                mss: Some(MSS),
                window_scale: Some(3),
                sack_permitted: true,
                timestamps: Some((TS0, PEER_TS)),
                ..NO_OPTIONS
            },
            ..RECV_TEMPL
        }]
    );
    s.now += RTT;
    send!(
        s,
        Segment {
            window: 1000,
            options: ts(PEER_TS + 100, TS0),
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.send_window(), 4000);
}

/// RFC 9293 section 3.7.1, RFC 6691: we send at most the smaller of the two MSS values
/// (536 if the peer gave none), less the 12 bytes every timestamps option takes (RFC 7323
/// section 3.2).
#[test]
fn effective_mss_is_the_smaller_one_less_timestamps() {
    for (peer_mss, timestamps, want) in [
        (Some(1200), false, 1200),
        (None, false, 536),
        (Some(9000), false, 1460),
        (Some(1200), true, 1188),
    ] {
        let cfg = TcpConfig {
            timestamps,
            ..cfg()
        };
        let options = TcpOptions {
            mss: peer_mss,
            timestamps: timestamps.then_some((PEER_TS, 0)),
            ..NO_OPTIONS
        };
        let mut s = syn_received(cfg, options);
        assert!(s.conn.poll_transmit(T0).is_some_and(|s| s.flags == SYN_ACK));
        send!(
            s,
            Segment {
                options: if timestamps {
                    ts(PEER_TS, TS0)
                } else {
                    NO_OPTIONS
                },
                ..SEND_TEMPL
            }
        );
        assert_eq!(s.effective_mss(), want, "peer MSS {peer_mss:?}");
        s.send(&pattern(3000, 0)).unwrap();
        let first = s.conn.poll_transmit(T0).expect("data");
        assert_eq!(first.payload.len(), want);
    }
}

/// RFC 7323 section 2.2: the window field of a SYN or SYN-ACK is never scaled; windows
/// after it are, by the shift the sender announced.
#[test]
fn window_scaling_when_both_offer() {
    let cfg = TcpConfig {
        window_scaling: true,
        recv_buffer: 256 * 1024,
        ..cfg()
    };
    let mut s = syn_sent(cfg);
    send!(
        s,
        Segment {
            seq: IRS,
            ack: ISS + 1,
            flags: SYN_ACK,
            window: 1000,
            options: TcpOptions {
                mss: Some(MSS),
                window_scale: Some(2),
                ..NO_OPTIONS
            },
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_window(), 1000, "SYN-ACK window taken unscaled");
    recv!(
        s,
        [Segment {
            window: 32768,
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            window: 1000,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_window(), 4000);
}

/// RFC 7323 section 2.2: scaling needs the option on both SYNs; offered by one side only,
/// neither side scales, and our window field stops at 65535.
#[test]
fn window_scaling_offered_by_one_side_only() {
    // We offer, the peer does not.
    let cfg_ws = TcpConfig {
        window_scaling: true,
        recv_buffer: 256 * 1024,
        ..cfg()
    };
    let mut s = syn_sent(cfg_ws);
    send!(
        s,
        Segment {
            seq: IRS,
            ack: ISS + 1,
            flags: SYN_ACK,
            window: 1000,
            options: mss(MSS),
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            window: 65535,
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            window: 1000,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_window(), 1000);

    // The peer offers, we do not: the SYN-ACK has no window scale.
    let cfg_plain = TcpConfig {
        recv_buffer: 256 * 1024,
        ..cfg()
    };
    let offered = TcpOptions {
        mss: Some(MSS),
        window_scale: Some(2),
        ..NO_OPTIONS
    };
    let mut s = syn_received(cfg_plain, offered);
    recv!(
        s,
        [Segment {
            seq: ISS,
            ack: IRS + 1,
            flags: SYN_ACK,
            window: 65535,
            options: mss(MSS),
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            window: 1000,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_window(), 1000);
    s.send(b"x").unwrap();
    recv!(
        s,
        [Segment {
            window: 65535,
            flags: PSH_ACK,
            payload: b"x",
            ..RECV_TEMPL
        }]
    );
}

/// RFC 9293 section 3.10.7.4 (SYN-RECEIVED, duplicate SYN): the peer's retransmitted SYN
/// means our SYN-ACK was lost, and the SYN-ACK goes out again.
#[test]
fn retransmitted_syn_in_syn_received_gets_the_syn_ack_again() {
    let mut s = syn_received(cfg(), mss(MSS));
    let syn_ack = Segment {
        seq: ISS,
        ack: IRS + 1,
        flags: SYN_ACK,
        options: mss(MSS),
        ..RECV_TEMPL
    };
    recv!(s, [syn_ack]);
    s.now += ms(500);
    send!(
        s,
        Segment {
            seq: IRS,
            ack: SeqNumber(0),
            flags: SYN,
            options: mss(MSS),
            ..SEND_TEMPL
        }
    );
    recv!(s, [syn_ack]);
    assert_eq!(s.state(), State::SynReceived);
}

/// RFC 9293 section 3.10.7.4 (SYN-RECEIVED): an ACK outside SND.UNA..SND.NXT draws a
/// reset <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn bad_ack_in_syn_received_is_reset() {
    let mut s = syn_received(cfg(), mss(MSS));
    assert!(s.conn.poll_transmit(T0).is_some());
    send!(s, peer_ack(ISS + 7));
    recv!(
        s,
        [Segment {
            seq: ISS + 7,
            ack: SeqNumber(0),
            flags: RST,
            window: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.state(), State::SynReceived);
}

/// Connection::send in SYN-RECEIVED queues data (RFC 9293 section 3.10.2); the ACK of our
/// SYN takes its sequence number, not a byte of that data.
#[test]
fn data_queued_before_the_handshake_completes_is_sent_whole() {
    let mut s = syn_received(cfg(), mss(MSS));
    assert!(s.conn.poll_transmit(T0).is_some());
    assert_eq!(s.send(b"hello"), Ok(5));
    recv_nothing!(s);
    send!(s, SEND_TEMPL);
    assert_eq!(s.state(), State::Established);
    recv!(s, [our_data(ISS + 1, PSH_ACK, b"hello")]);
}

/// RFC 9293 section 3.10.4 (CLOSE in SYN-RECEIVED): the FIN waits for the handshake; the
/// SYN-ACK still goes out first.
#[test]
fn close_in_syn_received_sends_fin_after_the_handshake() {
    let mut s = syn_received(cfg(), mss(MSS));
    s.shutdown_write();
    recv!(
        s,
        [Segment {
            seq: ISS,
            ack: IRS + 1,
            flags: SYN_ACK,
            options: mss(MSS),
            ..RECV_TEMPL
        }]
    );
    send!(s, SEND_TEMPL);
    assert_eq!(s.state(), State::FinWait1);
    recv!(
        s,
        [Segment {
            flags: FIN_ACK,
            ..RECV_TEMPL
        }]
    );
}

/// A SYN with FIN set is dropped and counted in SYN-SENT, as Linux drops it, whether it
/// carries the ACK of our SYN or would start a simultaneous open. (No RFC forbids the
/// combination; it serves only to probe and fingerprint stacks.)
#[test]
fn syn_fin_is_dropped_and_counted_in_syn_sent() {
    let mut s = syn_sent(cfg());
    for (ack, flags) in [(ISS + 1, SYN_ACK), (SeqNumber(0), SYN)] {
        send!(
            s,
            Segment {
                seq: IRS,
                ack,
                flags: Flags { fin: true, ..flags },
                options: mss(MSS),
                ..SEND_TEMPL
            }
        );
        assert_eq!(s.state(), State::SynSent);
        recv_nothing!(s);
    }
    assert_eq!(s.stats().syn_fin_drops, 2);
}
