//! Hostile input at the stack level: any TCP segment (valid checksum, any flags, ports,
//! numbers, options, payload) or any bytes as TCP or UDP, aimed at a stack with a
//! listener, an established connection and a bound UDP port. Never a panic, and the
//! established connection's data still arrives intact afterwards unless it was reset.

mod common;

use std::net::SocketAddrV4;

use common::{pattern, Pair, A, B};
use proptest::prelude::*;
use ustack_transport::net::link::Duration;
use ustack_transport::net::IpNumber;
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
