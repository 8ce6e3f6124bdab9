//! The connection state machine as packet traces (smoltcp's `send!`/`recv!` shape): build a
//! [`Connection`] in a known state, feed it segments from the peer with `send!`, and assert
//! the exact segments it answers with `recv!`. Our ISS is 1000 and the peer's 5000; every
//! option is off unless a test turns it on in its [`TcpConfig`]. One rule per test, with the
//! RFC section it comes from.
//!
//! This file holds the fixtures (constants, segment templates and their one-line
//! shorthands [`peer_data`], [`peer_ack`], [`our_data`], [`our_ack`], the `send!`/`recv!`
//! macros, connections in known states); each submodule holds one group of rules:
//! `handshake`, `simultaneous`, `close`, `reset`, `receive`, `send`, and the property
//! test `arbitrary_segments`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};

use super::config::TcpConfig;
use super::conn::{Connection, Opening, State};
use super::error::{ConnectionError, RecvError, SendError};
use super::seq::SeqNumber;
use super::wire::{Flags, Segment, TcpOptions};
use crate::net::link::{Duration, Instant};

#[path = "../../../tests/common/pattern.rs"]
mod pattern;
use pattern::pattern;

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

/// Data from the peer at `seq`, acknowledging ISS + 1 with window [`WINDOW`].
fn peer_data(seq: SeqNumber, payload: &[u8]) -> Segment<'_> {
    Segment {
        seq,
        payload,
        ..SEND_TEMPL
    }
}

/// A pure ACK from the peer of everything below `ack`.
fn peer_ack(ack: SeqNumber) -> Segment<'static> {
    Segment { ack, ..SEND_TEMPL }
}

/// Our pure ACK of everything below `ack`, advertising `window`.
fn our_ack(ack: SeqNumber, window: u16) -> Segment<'static> {
    Segment {
        ack,
        window,
        ..RECV_TEMPL
    }
}

/// Data we send at `seq` with `flags`, acknowledging IRS + 1 with window [`WINDOW`].
fn our_data(seq: SeqNumber, flags: Flags, payload: &[u8]) -> Segment<'_> {
    Segment {
        seq,
        flags,
        payload,
        ..RECV_TEMPL
    }
}

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

/// Every option off (RACK-TLP too, so the RFC 6675 traces stay those of duplicate
/// ACKs), fixed 64000-byte buffers (no scaling needed, no autotuning), default timers.
fn cfg() -> TcpConfig {
    TcpConfig {
        mss: MSS,
        recv_buffer: usize::from(WINDOW),
        recv_buffer_max: usize::from(WINDOW),
        send_buffer: usize::from(WINDOW),
        send_buffer_max: usize::from(WINDOW),
        window_scaling: false,
        timestamps: false,
        sack: false,
        rack: false,
        tlp: false,
        ..TcpConfig::default()
    }
}

/// A connection between `local` and `remote` with initial sequence number `iss` and
/// timestamp offset 0 (so our timestamps read the test clock's milliseconds).
/// Installs the test logger first, so `RUST_LOG=ustack_transport=debug` shows every state
/// change of a failing test.
fn opening(local: SocketAddrV4, remote: SocketAddrV4, iss: SeqNumber) -> Opening {
    let _ = env_logger::builder().is_test(true).try_init();
    Opening {
        local,
        remote,
        iss,
        ts_offset: 0,
    }
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
        conn: Connection::connect(T0, opening(LOCAL, REMOTE, ISS), cfg),
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
        conn: Connection::accept(T0, opening(LOCAL, REMOTE, ISS), &syn, cfg),
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

/// The peer, at sequence number `seq`, acknowledges everything we send as we send it,
/// until `done` holds.
fn ack_all_until(s: &mut TestConn, seq: SeqNumber, done: impl Fn(&Connection) -> bool) {
    for _ in 0..10_000 {
        if done(&s.conn) {
            return;
        }
        let mut end = None;
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            end = Some(seg.seq + seg.seq_len());
        }
        if let Some(end) = end {
            send!(
                s,
                Segment {
                    seq,
                    ack: end,
                    ..SEND_TEMPL
                }
            );
        } else {
            s.advance(ms(10));
        }
    }
    panic!("never done: {}", s.conn.summary());
}

mod arbitrary_segments;
mod close;

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

mod handshake;
mod offload;
mod pacing;
mod rack;
mod receive;
mod recovery;
mod reset;
mod send;
mod sequence;
mod simultaneous;
mod time_wait;
