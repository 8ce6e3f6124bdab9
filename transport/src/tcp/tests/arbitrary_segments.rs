//! After a handshake, 1 to 50 segments of any shape (flags, sequence and acknowledgement
//! numbers near and far from the windows, payloads, options) mixed with application calls
//! and timers at advancing times. Whatever comes in, nothing panics (arithmetic overflow
//! included: tests run in debug builds) and everything sent is consistent with the
//! connection: the bytes at each sequence number are the ones queued there, ACK numbers
//! are RCV.NXT and never go back, a FIN only follows a close, and every segment survives
//! the trip through `wire::emit` and `wire::parse`.

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
        .prop_map(
            |(flags, seq, ack, window, len, tsval, tsecr, options)| PeerSegment {
                flags,
                seq,
                ack,
                window,
                len,
                tsval,
                tsecr,
                options,
            },
        )
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
        rack: true,
        tlp: true,
        nodelay: case.nodelay,
        recv_buffer: case.recv_buffer,
        ..cfg()
    };
    let iss = SeqNumber(case.iss);
    let irs = SeqNumber(case.irs);
    let mut now = T0;
    let mut c = Connection::connect(now, opening(LOCAL, REMOTE, iss), cfg);
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
