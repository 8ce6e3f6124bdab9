//! Hostile input at the stack level: any TCP segment (valid checksum, any flags, ports,
//! numbers, options, payload) or any bytes as TCP or UDP, aimed at a stack with a
//! listener, an established connection and a bound UDP port. Never a panic, and the
//! established connection's data still arrives intact afterwards unless it was reset.
//! And a SYN flood from spoofed addresses.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::{pattern, Pair, A, B};
use proptest::prelude::*;
use ustack_transport::net::link::{Duration, Link, SimConfig};
use ustack_transport::net::IpNumber;
use ustack_transport::stack::StackConfig;
use ustack_transport::tcp::wire::{self, Flags, Segment, TcpOptions};
use ustack_transport::tcp::SeqNumber;

fn arb_segment() -> impl Strategy<Value = (u16, u16, u32, u32, u8, u16, Vec<u8>, Option<u8>, bool)>
{
    (
        prop_oneof![Just(80u16), Just(5001), any::<u16>()],
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::option::of(0u8..20),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn hostile_segments_never_panic(
        segments in proptest::collection::vec(arb_segment(), 1..40),
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..10),
    ) {
        let mut p = Pair::clean();
        p.b.tcp_listen(80, 4).unwrap();
        let (c, s) = p.connect(5001);
        let _udp = p.b.udp_bind(SocketAddrV4::new(B, 53)).unwrap();
        // A third party on A's address sends whatever it likes to B, through A's link.
        let mut bytes = Vec::new();
        for (dst_port, src_port, seq, ack, flags, window, payload, ws, ts) in &segments {
            let seg = Segment {
                src_port: *src_port,
                dst_port: *dst_port,
                seq: SeqNumber(*seq),
                ack: SeqNumber(*ack),
                flags: Flags {
                    fin: flags & 1 != 0,
                    syn: flags & 2 != 0,
                    rst: flags & 4 != 0,
                    psh: flags & 8 != 0,
                    ack: flags & 16 != 0,
                    urg: flags & 32 != 0,
                    ece: flags & 64 != 0,
                    cwr: flags & 128 != 0,
                },
                window: *window,
                urgent: 0,
                options: TcpOptions {
                    window_scale: *ws,
                    timestamps: ts.then_some((*seq, *ack)),
                    ..TcpOptions::default()
                },
                payload,
            };
            wire::emit(&seg, A, B, &mut bytes);
            p.a.interface_mut().send(p.now, B, IpNumber::TCP, &bytes).unwrap();
            p.settle();
        }
        for r in &raw {
            p.a.interface_mut().send(p.now, B, IpNumber::TCP, r).unwrap();
            p.a.interface_mut().send(p.now, B, IpNumber::UDP, r).unwrap();
        }
        p.run_for(Duration::from_secs(5));
        prop_assert_eq!(p.b.interface().link().pending(), 0);
        // The real connection still works unless a hostile RST (exact seq) reset it.
        if p.a.tcp(c).map(|c| c.error().is_none()).unwrap_or(false)
            && p.b.tcp(s).map(|c| c.error().is_none()).unwrap_or(false)
        {
            let data = pattern(20_000, 5);
            let got = common::transfer(&mut p, c, s, &data, Duration::from_secs(600));
            prop_assert!(got.is_empty() || got == data[..got.len()], "corrupted stream");
        }
    }
}

/// `seg` from `src` (any address, spoofed) to B, put on A's link as a raw IPv4 packet.
fn spoof(p: &mut Pair, src: Ipv4Addr, seg: &Segment<'_>) {
    let mut tcp = Vec::new();
    wire::emit(seg, src, B, &mut tcp);
    let ip = etherparse::Ipv4Header::new(
        tcp.len() as u16,
        64,
        IpNumber::TCP,
        src.octets(),
        B.octets(),
    )
    .unwrap();
    let mut packet = Vec::new();
    ip.write(&mut packet).unwrap();
    packet.extend_from_slice(&tcp);
    let now = p.now;
    p.a.interface_mut().link_mut().send(now, &packet).unwrap();
}

/// RFC 4987 section 3.6: SYNs from 200 spoofed sources fill the listener's SYN queue (16),
/// and the rest are answered with SYN cookies instead of being dropped; a real client
/// (window scaling, SACK and timestamps on) still connects and moves data both ways, and
/// an ACK with a forged cookie is refused with a RST.
/// (Both with timestamps, which carry window scaling and SACK, and without.)
#[test]
fn syn_flood_is_answered_with_cookies_rfc4987_3_6() {
    syn_flood(true);
    // Without timestamps the cookie carries the MSS alone (no window scaling, no SACK).
    syn_flood(false);
}

fn syn_flood(timestamps: bool) {
    let mut cfg = StackConfig {
        syn_backlog: 16,
        ..StackConfig::default()
    };
    cfg.tcp.timestamps = timestamps;
    let mut p = Pair::new(SimConfig::default(), cfg, 1);
    p.b.tcp_listen(80, 16).unwrap();
    let template = Segment {
        src_port: 0,
        dst_port: 80,
        seq: SeqNumber(0),
        ack: SeqNumber(0),
        flags: Flags::default(),
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    for i in 0..200u16 {
        let src = Ipv4Addr::new(198, 18, 0, 10 + (i % 200) as u8);
        let syn = Segment {
            src_port: 1024 + i,
            seq: SeqNumber(u32::from(i) * 7919),
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            options: TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            },
            ..template
        };
        spoof(&mut p, src, &syn);
    }
    p.run_for(Duration::from_millis(100));
    let stats = p.b.stats();
    assert_eq!(stats.syn_queue_overflows, 184, "{stats:?}");
    assert_eq!(stats.syn_cookies_sent, 184, "{stats:?}");

    let c = p.a.tcp_connect(p.now, SocketAddrV4::new(B, 80)).unwrap();
    let mut s = None;
    let ok = p.drive_until(Duration::from_secs(5), |p| {
        s = s.or_else(|| p.b.tcp_accept(80));
        s.is_some()
    });
    assert!(ok, "the real client was locked out: {:?}", p.b.stats());
    let s = s.unwrap();
    let (up, down) = (pattern(300_000, 1), pattern(300_000, 2));
    let (got_up, got_down) = common::exchange(&mut p, c, s, &up, &down, Duration::from_secs(30));
    assert!(got_up == up && got_down == down, "corrupted stream");
    let stats = p.b.stats();
    assert_eq!(stats.syn_cookies_sent, 185, "{stats:?}");
    assert_eq!(stats.syn_cookies_accepted, 1, "{stats:?}");

    let rsts = stats.tcp_rsts_sent;
    let forged = Segment {
        src_port: 4000,
        seq: SeqNumber(1),
        ack: SeqNumber(12345),
        flags: Flags {
            ack: true,
            ..Flags::default()
        },
        ..template
    };
    spoof(&mut p, Ipv4Addr::new(198, 18, 0, 77), &forged);
    p.run_for(Duration::from_millis(100));
    let stats = p.b.stats();
    assert_eq!(stats.syn_cookies_rejected, 1, "{stats:?}");
    assert_eq!(stats.tcp_rsts_sent, rsts + 1, "{stats:?}");
    assert_eq!(stats.syn_cookies_accepted, 1, "{stats:?}");
}

/// A SYN with FIN set to a listener is dropped and counted, as Linux drops it: no
/// SYN-ACK, no half-open connection. (No RFC forbids the combination; it serves only to
/// probe and fingerprint stacks.)
#[test]
fn syn_fin_to_a_listener_is_dropped_and_counted() {
    let mut p = Pair::clean();
    p.b.tcp_listen(80, 4).unwrap();
    let seg = Segment {
        src_port: 40000,
        dst_port: 80,
        seq: SeqNumber(1),
        ack: SeqNumber(0),
        flags: Flags {
            syn: true,
            fin: true,
            ..Flags::default()
        },
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    let mut bytes = Vec::new();
    wire::emit(&seg, A, B, &mut bytes);
    p.a.interface_mut()
        .send(p.now, B, IpNumber::TCP, &bytes)
        .unwrap();
    p.run_for(Duration::from_secs(5));
    assert_eq!(p.b.stats().tcp_syn_fin_drops, 1);
    assert_eq!(p.b.connections(), 0);
    assert_eq!(p.b.interface().stats().tx_packets, 0);
}
