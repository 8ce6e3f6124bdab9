//! The connection state machine as packet traces (smoltcp's `send!`/`recv!` shape): build a
//! [`Connection`] in a known state, feed it segments from the peer with `send!`, and assert
//! the exact segments it answers with `recv!`. Our ISS is 1000 and the peer's 5000; every
//! option is off unless a test turns it on in its [`TcpConfig`]. One rule per test, with the
//! RFC section it comes from.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};

use super::config::TcpConfig;
use super::conn::{Connection, State};
use super::error::{ConnectionError, RecvError, SendError};
use super::seq::SeqNumber;
use super::wire::{Flags, Segment, TcpOptions};
use crate::net::link::{Duration, Instant};

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
/// Our initial sequence number.
const ISS: SeqNumber = SeqNumber(1000);
/// The peer's initial sequence number.
const IRS: SeqNumber = SeqNumber(5000);
/// When every test starts; our timestamp clock reads its milliseconds (offset 0).
const T0: Instant = Instant::from_secs(10);
const TS0: u32 = 10_000;
/// The peer's timestamp clock at T0.
const PEER_TS: u32 = 7000;
/// Round trip of the handshakes [`established`] runs.
const RTT: Duration = Duration::from_millis(100);
const MSS: u16 = 1460;
/// Receive buffer of [`cfg`], which is also the window both sides advertise.
const WINDOW: u16 = 64000;

const NO_FLAGS: Flags = Flags {
    fin: false,
    syn: false,
    rst: false,
    psh: false,
    ack: false,
    urg: false,
    ece: false,
    cwr: false,
};
const SYN: Flags = Flags {
    syn: true,
    ..NO_FLAGS
};
const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
    ..NO_FLAGS
};
const ACK: Flags = Flags {
    ack: true,
    ..NO_FLAGS
};
const PSH_ACK: Flags = Flags {
    psh: true,
    ack: true,
    ..NO_FLAGS
};
const FIN_ACK: Flags = Flags {
    fin: true,
    ack: true,
    ..NO_FLAGS
};
const RST: Flags = Flags {
    rst: true,
    ..NO_FLAGS
};
const RST_ACK: Flags = Flags {
    rst: true,
    ack: true,
    ..NO_FLAGS
};

const NO_OPTIONS: TcpOptions = TcpOptions {
    mss: None,
    window_scale: None,
    sack_permitted: false,
    sack_blocks: [None; 4],
    timestamps: None,
};

/// A segment from the peer in an established connection: seq IRS + 1, ack ISS + 1.
const SEND_TEMPL: Segment<'static> = Segment {
    src_port: 80,
    dst_port: 49152,
    seq: SeqNumber(5001),
    ack: SeqNumber(1001),
    flags: ACK,
    window: WINDOW,
    urgent: 0,
    options: NO_OPTIONS,
    payload: &[],
};

/// A segment we send in an established connection: seq ISS + 1, ack IRS + 1.
const RECV_TEMPL: Segment<'static> = Segment {
    src_port: 49152,
    dst_port: 80,
    seq: SeqNumber(1001),
    ack: SeqNumber(5001),
    flags: ACK,
    window: WINDOW,
    urgent: 0,
    options: NO_OPTIONS,
    payload: &[],
};

fn mss(mss: u16) -> TcpOptions {
    TcpOptions {
        mss: Some(mss),
        ..NO_OPTIONS
    }
}

fn ts(tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        timestamps: Some((tsval, tsecr)),
        ..NO_OPTIONS
    }
}

fn sack(blocks: &[(SeqNumber, SeqNumber)]) -> TcpOptions {
    let mut o = NO_OPTIONS;
    for (slot, &block) in o.sack_blocks.iter_mut().zip(blocks) {
        *slot = Some(block);
    }
    o
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every option off, 64000-byte buffers (no scaling needed), default timers.
fn cfg() -> TcpConfig {
    TcpConfig {
        mss: MSS,
        recv_buffer: usize::from(WINDOW),
        send_buffer: usize::from(WINDOW),
        window_scaling: false,
        timestamps: false,
        sack: false,
        ..TcpConfig::default()
    }
}

/// Bytes that differ from their neighbours, so a shifted copy shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A connection and the time the test is at.
struct TestConn {
    conn: Connection,
    now: Instant,
}

impl TestConn {
    /// Moves the clock and runs the timers due.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.on_timeout(self.now);
    }

    /// Everything the application can read now.
    fn read_all(&mut self) -> Vec<u8> {
        let mut buf = vec![0; self.conn.recv_queue()];
        let n = match self.conn.recv(&mut buf) {
            Ok(n) => n,
            Err(RecvError::Finished) => 0,
            Err(e) => panic!("recv failed: {e}"),
        };
        buf.truncate(n);
        buf
    }
}

impl Deref for TestConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for TestConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// The peer sends `seg`.
macro_rules! send {
    ($s:expr, $seg:expr) => {{
        let seg: Segment<'_> = $seg;
        let now = $s.now;
        $s.conn.handle_segment(now, &seg);
    }};
}

/// `recv!(s, seg)`: the next segment we send is exactly `seg`. `recv!(s, [a, b])`: we
/// send exactly these, then nothing.
macro_rules! recv {
    ($s:expr, [$($seg:expr),* $(,)?]) => {{
        $( recv!($s, $seg); )*
        recv_nothing!($s);
    }};
    ($s:expr, $seg:expr) => {{
        let expected: Segment<'_> = $seg;
        let now = $s.now;
        assert_eq!($s.conn.poll_transmit(now), Some(expected), "sent at {now}");
    }};
}

macro_rules! recv_nothing {
    ($s:expr) => {{
        let now = $s.now;
        assert_eq!($s.conn.poll_transmit(now), None, "sent at {now}");
    }};
}

/// Active open: SYN-SENT, the SYN (with `cfg`'s options) already sent at T0.
fn syn_sent(cfg: TcpConfig) -> TestConn {
    let mut s = TestConn {
        conn: Connection::connect(T0, LOCAL, REMOTE, ISS, cfg, 0),
        now: T0,
    };
    let syn = s.conn.poll_transmit(T0).expect("a SYN");
    assert_eq!((syn.flags, syn.seq), (SYN, ISS));
    recv_nothing!(s);
    s
}

/// The options a peer that offers what `cfg` offers puts on its SYN or SYN-ACK, its window
/// scale 0 so that its window fields read as bytes.
fn peer_syn_options(cfg: &TcpConfig, tsecr: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(MSS),
        window_scale: cfg.window_scaling.then_some(0),
        sack_permitted: cfg.sack,
        timestamps: cfg.timestamps.then_some((PEER_TS, tsecr)),
        ..NO_OPTIONS
    }
}

/// Active open through to ESTABLISHED with a 100 ms round trip (so RTO = 300 ms), the
/// handshake's last ACK consumed. The peer offers what `cfg` offers.
fn established(cfg: TcpConfig) -> TestConn {
    let options = peer_syn_options(&cfg, TS0);
    let mut s = syn_sent(cfg);
    s.now += RTT;
    send!(
        s,
        Segment {
            seq: IRS,
            ack: ISS + 1,
            flags: SYN_ACK,
            options,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    let ack = s.conn.poll_transmit(s.now).expect("the handshake's ACK");
    assert_eq!((ack.flags, ack.seq, ack.ack), (ACK, ISS + 1, IRS + 1));
    recv_nothing!(s);
    s
}

/// Passive open: the peer's SYN with `options` arrived at T0; the SYN-ACK is not sent yet.
fn syn_received(cfg: TcpConfig, options: TcpOptions) -> TestConn {
    let syn = Segment {
        seq: IRS,
        ack: SeqNumber(0),
        flags: SYN,
        options,
        ..SEND_TEMPL
    };
    TestConn {
        conn: Connection::accept(T0, LOCAL, REMOTE, &syn, ISS, cfg, 0),
        now: T0,
    }
}

/// The timers as a stack runs them: to each deadline up to `until`, draining what the
/// connection sends at each; returns how many segments went out.
fn run_until(s: &mut TestConn, until: Instant) -> usize {
    let mut sent = 0;
    loop {
        while s.conn.poll_transmit(s.now).is_some() {
            sent += 1;
        }
        match s.poll_timeout() {
            Some(at) if at <= until => {
                s.now = at;
                s.conn.on_timeout(at);
            }
            _ => break,
        }
    }
    s.now = until;
    sent
}

// ---- handshake and options ----

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
        conn: Connection::connect(T0, LOCAL, REMOTE, ISS, cfg, 0),
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
        s.send(&pattern(3000)).unwrap();
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
    send!(
        s,
        Segment {
            ack: ISS + 7,
            ..SEND_TEMPL
        }
    );
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
    recv!(
        s,
        [Segment {
            flags: PSH_ACK,
            payload: b"hello",
            ..RECV_TEMPL
        }]
    );
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

// ---- simultaneous open and close ----

/// A segment taken out of a connection, its payload copied.
struct Owned {
    seg: Segment<'static>,
    payload: Vec<u8>,
}

impl Owned {
    fn seg(&self) -> Segment<'_> {
        Segment {
            payload: &self.payload,
            ..self.seg
        }
    }
}

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
    let mut a = Connection::connect(T0, LOCAL, REMOTE, ISS, cfg(), 0);
    let mut b = Connection::connect(T0, REMOTE, LOCAL, IRS, cfg(), 0);
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

// ---- close orders ----

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
    send!(
        s,
        Segment {
            ack: ISS + 2,
            ..SEND_TEMPL
        }
    );
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
    recv!(
        s,
        [Segment {
            ack: IRS + 2,
            window: WINDOW - 1,
            ..RECV_TEMPL
        }]
    );
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

// ---- resets and challenge ACKs ----

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

// ---- receiving data ----

/// RFC 9293 section 3.10.7.4 (segment text): in-order data goes to the application.
#[test]
fn in_order_data_is_delivered() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            payload: b"abc",
            ..SEND_TEMPL
        }
    );
    send!(
        s,
        Segment {
            seq: IRS + 4,
            payload: b"def",
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.read_all(), b"abcdef");
    assert_eq!(s.stats().bytes_in, 6);
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
    send!(
        s,
        Segment {
            seq: IRS + 4,
            payload: b"def",
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            options: sack(&[(IRS + 4, IRS + 7)]),
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            seq: IRS + 10,
            payload: b"jkl",
            ..SEND_TEMPL
        }
    );
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
    send!(
        s,
        Segment {
            payload: b"abc",
            ..SEND_TEMPL
        }
    );
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
    send!(
        s,
        Segment {
            seq: IRS + 7,
            payload: b"ghi",
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            ack: IRS + 13,
            window: WINDOW - 12,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.read_all(), b"abcdefghijkl");
}

/// Without SACK the duplicate ACK for out-of-order data carries no blocks (RFC 2018
/// section 2: only when SACK-permitted was exchanged).
#[test]
fn out_of_order_data_without_sack_gets_a_plain_duplicate_ack() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            seq: IRS + 4,
            payload: b"def",
            ..SEND_TEMPL
        }
    );
    recv!(s, [RECV_TEMPL]);
}

/// RFC 9293 section 3.10.7.4: a segment wholly before RCV.NXT (an old duplicate) is
/// acknowledged and dropped.
#[test]
fn old_duplicate_is_reacked_and_counted() {
    let mut s = established(cfg());
    let abc = Segment {
        payload: b"abc",
        ..SEND_TEMPL
    };
    send!(s, abc);
    recv_nothing!(s);
    send!(s, abc);
    recv!(
        s,
        [Segment {
            ack: IRS + 4,
            window: WINDOW - 3,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.stats().dup_segments, 1);
    assert_eq!(s.read_all(), b"abc");
}

/// RFC 9293 section 3.10.7.4: of a segment that starts before RCV.NXT only the new part is
/// kept.
#[test]
fn partial_overlap_is_trimmed() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            payload: b"abc",
            ..SEND_TEMPL
        }
    );
    send!(
        s,
        Segment {
            payload: b"abcdef",
            ..SEND_TEMPL
        }
    );
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
    let data = pattern(1200);
    send!(
        s,
        Segment {
            payload: &data,
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.recv_queue(), 1000);
    send!(
        s,
        Segment {
            seq: IRS + 1001,
            payload: &data[1000..],
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            ack: IRS + 1001,
            window: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.stats().dup_segments, 1);
    assert_eq!(s.read_all(), &data[..1000]);
}

/// RFC 9293 section 3.8.6.3 (delayed ACK): one segment is acknowledged when the delayed
/// ACK timer (40 ms here) runs out.
#[test]
fn one_segment_is_acked_after_the_delayed_ack_timer() {
    let mut s = established(cfg());
    send!(
        s,
        Segment {
            payload: b"abcdef",
            ..SEND_TEMPL
        }
    );
    recv_nothing!(s);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(40)));
    s.advance(ms(39));
    recv_nothing!(s);
    s.advance(ms(1));
    recv!(
        s,
        [Segment {
            ack: IRS + 7,
            window: WINDOW - 6,
            ..RECV_TEMPL
        }]
    );
}

/// RFC 9293 section 3.8.6.3: the delay MUST be less than 0.5 s; this stack caps it at
/// 200 ms whatever the configuration says.
#[test]
fn delayed_ack_is_capped_at_200_ms() {
    let mut s = established(TcpConfig {
        delayed_ack: ms(500),
        ..cfg()
    });
    send!(
        s,
        Segment {
            payload: b"abc",
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.poll_timeout(), Some(s.now + ms(200)));
    s.advance(ms(200));
    recv!(
        s,
        [Segment {
            ack: IRS + 4,
            window: WINDOW - 3,
            ..RECV_TEMPL
        }]
    );
}

/// RFC 9293 section 3.8.6.3: an ACK at least every second full-sized segment.
#[test]
fn two_full_sized_segments_are_acked_at_once() {
    let mut s = established(cfg());
    let data = pattern(2920);
    send!(
        s,
        Segment {
            payload: &data[..1460],
            ..SEND_TEMPL
        }
    );
    recv_nothing!(s);
    send!(
        s,
        Segment {
            seq: IRS + 1461,
            payload: &data[1460..],
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            ack: IRS + 2921,
            window: WINDOW - 2920,
            ..RECV_TEMPL
        }]
    );
}

/// RFC 9293 section 3.8.6.2.2: after the window closed, reading the buffer empty opens it
/// again and a window update goes out at once.
#[test]
fn reading_a_full_buffer_sends_a_window_update() {
    let mut s = established(TcpConfig {
        recv_buffer: 4000,
        ..cfg()
    });
    let data = pattern(4000);
    send!(
        s,
        Segment {
            payload: &data[..1460],
            ..SEND_TEMPL
        }
    );
    send!(
        s,
        Segment {
            seq: IRS + 1461,
            payload: &data[1460..2920],
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            ack: IRS + 2921,
            window: 1080,
            ..RECV_TEMPL
        }]
    );
    send!(
        s,
        Segment {
            seq: IRS + 2921,
            payload: &data[2920..],
            ..SEND_TEMPL
        }
    );
    s.advance(ms(40));
    recv!(
        s,
        [Segment {
            ack: IRS + 4001,
            window: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(s.read_all(), data);
    recv!(
        s,
        [Segment {
            ack: IRS + 4001,
            window: 4000,
            ..RECV_TEMPL
        }]
    );
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

// ---- sending data ----

/// RFC 9293 section 3.7.4 (Nagle): while a small segment is unacknowledged, the next
/// small write waits for the ACK.
#[test]
fn nagle_holds_a_small_write_until_the_ack() {
    let mut s = established(cfg());
    s.send(b"a").unwrap();
    recv!(
        s,
        [Segment {
            flags: PSH_ACK,
            payload: b"a",
            ..RECV_TEMPL
        }]
    );
    s.send(b"b").unwrap();
    recv_nothing!(s);
    send!(
        s,
        Segment {
            ack: ISS + 2,
            ..SEND_TEMPL
        }
    );
    recv!(
        s,
        [Segment {
            seq: ISS + 2,
            flags: PSH_ACK,
            payload: b"b",
            ..RECV_TEMPL
        }]
    );
}

/// RFC 9293 section 3.7.4: with Nagle off, small writes go out at once.
#[test]
fn nodelay_sends_small_writes_at_once() {
    let mut s = established(TcpConfig {
        nodelay: true,
        ..cfg()
    });
    s.send(b"a").unwrap();
    recv!(
        s,
        Segment {
            flags: PSH_ACK,
            payload: b"a",
            ..RECV_TEMPL
        }
    );
    s.send(b"b").unwrap();
    recv!(
        s,
        [Segment {
            seq: ISS + 2,
            flags: PSH_ACK,
            payload: b"b",
            ..RECV_TEMPL
        }]
    );
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
    let data = pattern(2920);
    s.send(&data).unwrap();
    let first = Segment {
        payload: &data[..1460],
        ..RECV_TEMPL
    };
    let second = Segment {
        seq: ISS + 1461,
        flags: PSH_ACK,
        payload: &data[1460..],
        ..RECV_TEMPL
    };
    recv!(s, [first, second]);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(300)));
    s.advance(ms(300));
    recv!(s, [first]);
    assert_eq!(s.cwnd(), 1460);
    assert_eq!(s.poll_timeout(), Some(s.now + ms(600)));
    send!(
        s,
        Segment {
            ack: ISS + 1461,
            ..SEND_TEMPL
        }
    );
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
    send!(
        s,
        Segment {
            ack: ISS + 4,
            ..SEND_TEMPL
        }
    );
    // SRTT = 7/8 * 100 + 1/8 * 200; RTTVAR = 3/4 * 50 + 1/4 * |100 - 200|.
    assert_eq!(s.srtt(), Some(Duration::from_micros(112_500)));
    assert_eq!(s.rto(), Duration::from_micros(112_500 + 4 * 62_500));
}

/// RFC 5681 section 3.2 and RFC 6582 section 3.2: the third duplicate ACK retransmits the
/// first unacknowledged segment; in recovery a partial ACK retransmits the next one.
#[test]
fn fast_retransmit_and_newreno_partial_ack() {
    let mut s = established(cfg());
    let data = pattern(5 * 1460);
    s.send(&data).unwrap();
    let seg = |i: usize| Segment {
        seq: ISS + 1 + i * 1460,
        flags: if i == 4 { PSH_ACK } else { ACK },
        payload: &data[i * 1460..(i + 1) * 1460],
        ..RECV_TEMPL
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
    send!(
        s,
        Segment {
            ack: ISS + 1 + 2 * 1460,
            ..SEND_TEMPL
        }
    );
    recv!(s, [seg(2)]);
    send!(
        s,
        Segment {
            ack: ISS + 1 + 5 * 1460,
            ..SEND_TEMPL
        }
    );
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
    recv!(
        s,
        [Segment {
            flags: PSH_ACK,
            payload: b"hello",
            ..RECV_TEMPL
        }]
    );
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
    let data = pattern(4 * 1460);
    s.send(&data).unwrap();
    let seg = |i: usize| Segment {
        seq: ISS + 1 + i * 1460,
        flags: if i == 3 { PSH_ACK } else { ACK },
        payload: &data[i * 1460..(i + 1) * 1460],
        ..RECV_TEMPL
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
    let data = pattern(8 * 1460);
    s.send(&data).unwrap();
    let seg = |i: usize| Segment {
        seq: ISS + 1 + i * 1460,
        flags: if i == 7 { PSH_ACK } else { ACK },
        payload: &data[i * 1460..(i + 1) * 1460],
        ..RECV_TEMPL
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
    send!(
        s,
        Segment {
            ack: at(1),
            ..SEND_TEMPL
        }
    );
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
    send!(
        s,
        Segment {
            ack: at(8),
            ..SEND_TEMPL
        }
    );
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
    recv!(
        s,
        [Segment {
            flags: PSH_ACK,
            payload: b"hello",
            ..RECV_TEMPL
        }]
    );
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
        send!(
            s,
            Segment {
                ack: ISS + 1 + sent,
                ..SEND_TEMPL
            }
        );
        recv!(
            s,
            [Segment {
                seq: ISS + 1 + sent,
                flags: PSH_ACK,
                payload: b"hello",
                ..RECV_TEMPL
            }]
        );
    }
}

// ---- any segments at all ----

/// After a handshake, 1 to 50 segments of any shape (flags, sequence and acknowledgement
/// numbers near and far from the windows, payloads, options) mixed with application calls
/// and timers at advancing times. Whatever comes in, nothing panics (arithmetic overflow
/// included: tests run in debug builds) and everything sent is consistent with the
/// connection: the bytes at each sequence number are the ones queued there, ACK numbers
/// are RCV.NXT and never go back, a FIN only follows a close, and every segment survives
/// the trip through `wire::emit` and `wire::parse`.
mod arbitrary_segments {
    use proptest::prelude::*;

    use super::*;
    use crate::tcp::wire;

    /// Where a sequence or acknowledgement number points.
    #[derive(Debug, Clone)]
    enum Pos {
        /// This far from RCV.NXT (for seq) or SND.UNA (for ack) as the test tracks them.
        Near(i32),
        Far(u32),
    }

    #[derive(Debug, Clone)]
    struct PeerSegment {
        flags: Flags,
        seq: Pos,
        ack: Pos,
        window: u16,
        len: usize,
        /// TSval relative to the peer clock, or anything.
        tsval: Option<Pos>,
        tsecr: u32,
        options: TcpOptions,
    }

    #[derive(Debug, Clone)]
    enum App {
        Nothing,
        Send(usize),
        Read(usize),
        Shutdown,
        Abort,
    }

    #[derive(Debug, Clone)]
    struct Step {
        wait_ms: u64,
        app: App,
        seg: Option<PeerSegment>,
    }

    #[derive(Debug, Clone)]
    struct Case {
        iss: u32,
        irs: u32,
        window_scaling: bool,
        timestamps: bool,
        sack: bool,
        nodelay: bool,
        recv_buffer: usize,
        peer_options: TcpOptions,
        peer_window: u16,
        steps: Vec<Step>,
    }

    /// Mostly right at the tracked edge or just past it, sometimes anywhere in or around
    /// a window, now and then anywhere at all.
    fn pos(close: std::ops::Range<i32>) -> impl Strategy<Value = Pos> {
        prop_oneof![
            4 => Just(Pos::Near(0)),
            3 => close.prop_map(Pos::Near),
            2 => (-3000..70_000).prop_map(Pos::Near),
            1 => any::<u32>().prop_map(Pos::Far),
        ]
    }

    fn flags() -> impl Strategy<Value = Flags> {
        (
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.03),
            prop::bool::weighted(0.03),
            any::<bool>(),
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(fin, syn, rst, psh, ack, urg, ece, cwr)| Flags {
                fin,
                syn,
                rst,
                psh,
                ack,
                urg,
                ece,
                cwr,
            })
    }

    fn options() -> impl Strategy<Value = TcpOptions> {
        let block = (any::<u32>(), 0u32..5000)
            .prop_map(|(l, n)| Some((SeqNumber(l), SeqNumber(l.wrapping_add(n)))));
        (
            prop::option::weighted(0.1, any::<u16>()),
            prop::option::weighted(0.1, 0u8..=20),
            prop::bool::weighted(0.1),
            prop::collection::vec(block, 0..=4),
        )
            .prop_map(|(mss, window_scale, sack_permitted, blocks)| {
                let mut o = TcpOptions {
                    mss,
                    window_scale,
                    sack_permitted,
                    ..NO_OPTIONS
                };
                for (slot, b) in o.sack_blocks.iter_mut().zip(blocks) {
                    *slot = b;
                }
                o
            })
    }

    fn peer_segment() -> impl Strategy<Value = PeerSegment> {
        (
            flags(),
            pos(-100..3000),
            pos(-10..3000),
            prop_oneof![1 => Just(0u16), 4 => Just(WINDOW), 1 => any::<u16>()],
            prop_oneof![Just(0usize), 1usize..2000],
            prop::option::weighted(0.8, pos(-50..500)),
            any::<u32>(),
            options(),
        )
            .prop_map(|(flags, seq, ack, window, len, tsval, tsecr, options)| {
                PeerSegment {
                    flags,
                    seq,
                    ack,
                    window,
                    len,
                    tsval,
                    tsecr,
                    options,
                }
            })
    }

    fn step() -> impl Strategy<Value = Step> {
        let app = prop_oneof![
            30 => Just(App::Nothing),
            15 => (1usize..20_000).prop_map(App::Send),
            15 => (1usize..20_000).prop_map(App::Read),
            2 => Just(App::Shutdown),
            1 => Just(App::Abort),
        ];
        (
            prop_oneof![Just(0u64), 0u64..500, 0u64..5000],
            app,
            prop::option::weighted(0.9, peer_segment()),
        )
            .prop_map(|(wait_ms, app, seg)| Step { wait_ms, app, seg })
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            (
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            prop_oneof![Just(usize::from(WINDOW)), 500usize..5000, Just(1 << 20)],
            (options(), prop::option::of(any::<u16>()), any::<u16>()),
            prop::collection::vec(step(), 1..50),
        )
            .prop_map(
                |((iss, irs, ws, ts, sack, nodelay), recv_buffer, (o, mss, w), steps)| Case {
                    iss,
                    irs,
                    window_scaling: ws,
                    timestamps: ts,
                    sack,
                    nodelay,
                    recv_buffer,
                    peer_options: TcpOptions { mss, ..o },
                    peer_window: w,
                    steps,
                },
            )
    }

    /// The peer's byte at stream offset `off` (from IRS + 1), whatever segment carries it.
    fn peer_byte(off: u32) -> u8 {
        (off % 253) as u8 ^ (off >> 8) as u8
    }

    /// Our byte at stream offset `off` (from ISS + 1).
    fn our_byte(off: usize) -> u8 {
        (off % 251) as u8
    }

    /// What the test knows of the connection.
    struct Model {
        iss: SeqNumber,
        irs: SeqNumber,
        /// Bytes the connection accepted from `send`.
        queued: usize,
        shut: bool,
        aborted: bool,
        /// Bytes read so far; must be the peer's stream.
        read: usize,
        last_ack: Option<SeqNumber>,
        /// Right edge of the window last advertised, and our window shift.
        last_edge: Option<SeqNumber>,
        rcv_shift: u8,
        ts_clock: u32,
    }

    impl Model {
        fn snd_una(&self, c: &Connection) -> SeqNumber {
            self.iss + 1 + (c.stats().bytes_acked as usize & 0x3fff_ffff)
        }

        fn rcv_nxt(&self, c: &Connection) -> SeqNumber {
            self.irs + 1 + (c.stats().bytes_in as usize & 0x3fff_ffff)
        }
    }

    /// Checks one segment we sent; `fed` is the peer segment just handled, if any.
    fn check_sent(m: &mut Model, c: &mut Connection, now: Instant, fed: Option<&Segment<'_>>) {
        let Some(seg) = c.poll_transmit(now) else {
            return;
        };
        let seg = Owned {
            payload: seg.payload.to_vec(),
            seg: Segment {
                payload: &[],
                ..seg
            },
        };
        let seg = seg.seg();
        let (local, remote) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let mut bytes = Vec::new();
        let blocks = wire::emit(&seg, local, remote, &mut bytes);
        let mut expected = seg;
        for slot in expected.options.sack_blocks.iter_mut().skip(blocks) {
            *slot = None;
        }
        assert_eq!(wire::parse(local, remote, &bytes), Ok(expected));
        assert_eq!((seg.src_port, seg.dst_port), (LOCAL.port(), REMOTE.port()));
        assert!(!seg.flags.syn, "SYN after the handshake: {seg:?}");
        if seg.flags.rst {
            // RFC 9293 section 3.10.7.1 reset for the segment just fed, or our abort.
            let answers_fed = fed.is_some_and(|f| {
                if f.flags.ack {
                    !seg.flags.ack && seg.seq == f.ack
                } else {
                    seg.flags.ack && seg.seq == SeqNumber(0) && seg.ack == f.seq + f.seq_len()
                }
            });
            assert!(
                answers_fed || m.aborted,
                "unexpected RST {seg:?} for {fed:?}"
            );
            return;
        }
        assert!(seg.flags.ack, "no ACK on {seg:?}");
        // ACK = RCV.NXT: the peer's bytes delivered, and its FIN.
        let delivered = seg.ack.0.wrapping_sub(m.irs.0 + 1);
        let bytes_in = c.stats().bytes_in as u32;
        assert!(
            delivered == bytes_in || delivered == bytes_in + 1,
            "ACK {} with {bytes_in} bytes in: {}",
            seg.ack,
            c.summary()
        );
        if let Some(last) = m.last_ack {
            assert!(seg.ack >= last, "ACK went back from {last} to {}", seg.ack);
        }
        m.last_ack = Some(seg.ack);
        // RFC 9293 section 3.8.6.2.2: the right edge does not move left, but for the
        // rounding to the scale's granularity that RFC 7323 section 2.4 allows.
        let edge = seg.ack + (usize::from(seg.window) << m.rcv_shift);
        if let Some(last) = m.last_edge {
            assert!(
                edge + (1 << m.rcv_shift) > last,
                "window edge went back from {last} to {edge}"
            );
        }
        m.last_edge = Some(edge.max(m.last_edge.unwrap_or(edge)));
        // SEQ: within what was queued, carrying the bytes queued there.
        let off = seg.seq.0.wrapping_sub(m.iss.0 + 1) as i32;
        if off == -1 {
            // A zero-window or keep-alive probe at SND.UNA - 1.
            assert!(seg.payload.is_empty() && !seg.flags.fin, "{seg:?}");
            return;
        }
        assert!(off >= 0, "seq {} before ISS + 1: {}", seg.seq, c.summary());
        let off = off as usize;
        let end = off + seg.payload.len();
        // A bare ACK after our FIN sits one past the data.
        let limit = if seg.payload.is_empty() && !seg.flags.fin {
            m.queued + usize::from(m.shut)
        } else {
            m.queued
        };
        assert!(end <= limit, "sent up to {end} of {} queued", m.queued);
        assert!(seg.payload.len() <= c.effective_mss());
        for (i, &b) in seg.payload.iter().enumerate() {
            assert_eq!(b, our_byte(off + i), "byte {} of our stream", off + i);
        }
        if seg.flags.fin {
            assert!(m.shut && end == m.queued, "FIN at {end} of {}", m.queued);
        }
    }

    /// Drains everything the connection sends now.
    fn drain(m: &mut Model, c: &mut Connection, now: Instant, fed: Option<&Segment<'_>>) {
        for _ in 0..10_000 {
            let before = c.stats().segs_out;
            check_sent(m, c, now, fed);
            if c.stats().segs_out == before {
                return;
            }
        }
        panic!("poll_transmit never returned None: {}", c.summary());
    }

    fn run(case: Case) {
        let cfg = TcpConfig {
            window_scaling: case.window_scaling,
            timestamps: case.timestamps,
            sack: case.sack,
            nodelay: case.nodelay,
            recv_buffer: case.recv_buffer,
            ..cfg()
        };
        let iss = SeqNumber(case.iss);
        let irs = SeqNumber(case.irs);
        let mut now = T0;
        let mut c = Connection::connect(now, LOCAL, REMOTE, iss, cfg, 0);
        let syn = c.poll_transmit(now).expect("SYN");
        assert_eq!((syn.flags, syn.seq), (SYN, iss));
        let our_ts = syn.options.timestamps.map_or(0, |(v, _)| v);
        assert!(c.poll_transmit(now).is_none());
        now += RTT;
        let mut options = case.peer_options;
        options.timestamps = Some((PEER_TS, our_ts)).filter(|_| case.timestamps);
        let syn_ack = Segment {
            seq: irs,
            ack: iss + 1,
            flags: SYN_ACK,
            window: case.peer_window,
            options,
            ..SEND_TEMPL
        };
        c.handle_segment(now, &syn_ack);
        assert_eq!(c.state(), State::Established);
        let mut m = Model {
            iss,
            irs,
            queued: 0,
            shut: false,
            aborted: false,
            read: 0,
            last_ack: None,
            last_edge: None,
            rcv_shift: if case.window_scaling && case.peer_options.window_scale.is_some() {
                (0..14)
                    .find(|&shift| case.recv_buffer >> shift <= usize::from(u16::MAX))
                    .unwrap_or(14)
            } else {
                0
            },
            ts_clock: PEER_TS,
        };
        drain(&mut m, &mut c, now, None);

        for step in case.steps {
            // Time passes; the timers run at their deadlines.
            let until = now + ms(step.wait_ms);
            m.ts_clock = m.ts_clock.wrapping_add(step.wait_ms as u32);
            while let Some(at) = c.poll_timeout().filter(|&at| at <= until) {
                assert!(at >= now, "timer in the past: {at} < {now}");
                now = at;
                c.on_timeout(now);
                assert!(c.poll_timeout().is_none_or(|t| t > now), "timer left due");
                drain(&mut m, &mut c, now, None);
            }
            now = until;

            match step.app {
                App::Nothing => {}
                App::Send(n) => {
                    let data: Vec<u8> = (m.queued..m.queued + n).map(our_byte).collect();
                    match c.send(&data) {
                        Ok(k) => {
                            assert!(k <= n);
                            m.queued += k;
                        }
                        Err(e) => assert!(
                            m.shut
                                || c.error().map(SendError::from) == Some(e)
                                || e == SendError::NotConnected,
                            "send failed with {e:?}: {}",
                            c.summary()
                        ),
                    }
                }
                App::Read(n) => {
                    let mut buf = vec![0; n];
                    match c.recv(&mut buf) {
                        Ok(k) => {
                            for (i, &b) in buf[..k].iter().enumerate() {
                                let off = (m.read + i) as u32;
                                assert_eq!(b, peer_byte(off), "byte {off} of the peer's stream");
                            }
                            m.read += k;
                        }
                        Err(RecvError::Connection(e)) => assert_eq!(c.error(), Some(e)),
                        Err(RecvError::Finished) => {
                            assert!(c.error().is_none() && c.at_eof(), "{}", c.summary())
                        }
                    }
                }
                App::Shutdown => {
                    c.shutdown_write();
                    m.shut = true;
                }
                App::Abort => {
                    c.abort();
                    m.aborted = true;
                }
            }
            drain(&mut m, &mut c, now, None);

            let Some(p) = step.seg else { continue };
            let seq = match p.seq {
                Pos::Near(d) => SeqNumber(m.rcv_nxt(&c).0.wrapping_add(d as u32)),
                Pos::Far(s) => SeqNumber(s),
            };
            let ack = match p.ack {
                Pos::Near(d) => SeqNumber(m.snd_una(&c).0.wrapping_add(d as u32)),
                Pos::Far(a) => SeqNumber(a),
            };
            let tsval = p.tsval.map(|t| match t {
                Pos::Near(d) => m.ts_clock.wrapping_add(d as u32),
                Pos::Far(v) => v,
            });
            let start = seq
                .0
                .wrapping_sub(irs.0 + 1)
                .wrapping_add(u32::from(p.flags.syn));
            let payload: Vec<u8> = (0..p.len as u32)
                .map(|i| peer_byte(start.wrapping_add(i)))
                .collect();
            let seg = Segment {
                seq,
                ack,
                flags: p.flags,
                window: p.window,
                options: TcpOptions {
                    timestamps: tsval.map(|v| (v, p.tsecr)),
                    ..p.options
                },
                payload: &payload,
                ..SEND_TEMPL
            };
            c.handle_segment(now, &seg);
            drain(&mut m, &mut c, now, Some(&seg));
        }
    }

    proptest! {
        #[test]
        fn any_segments_after_a_handshake_keep_the_connection_consistent(case in case()) {
            run(case);
        }
    }
}
