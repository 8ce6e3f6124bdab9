//! UDP between two stacks over a SimLink pair: delivery by port, and ICMP port
//! unreachable for a closed port (RFC 1122 section 4.1.3.1).

mod common;

use std::net::SocketAddrV4;

use common::{Pair, A, B};
use ustack_transport::net::link::Duration;
use ustack_transport::net::IcmpEvent;

#[test]
fn datagrams_reach_the_bound_port_and_closed_ports_answer_unreachable() {
    let mut p = Pair::clean();
    let server = p.b.udp_bind(SocketAddrV4::new(B, 53)).unwrap();
    let client = p.a.udp_bind(SocketAddrV4::new(A, 0)).unwrap();
    let client_addr = p.a.udp().local_addr(client).unwrap();
    p.a.udp_send_to(p.now, client, SocketAddrV4::new(B, 53), b"query")
        .unwrap();
    p.a.udp_send_to(p.now, client, SocketAddrV4::new(B, 54), b"nobody")
        .unwrap();
    p.run_for(Duration::from_millis(10));
    let mut buf = [0u8; 64];
    let (n, src) = p.b.udp_recv_from(server, &mut buf).unwrap().unwrap();
    assert_eq!((&buf[..n], src), (&b"query"[..], client_addr));
    assert_eq!(p.b.udp_recv_from(server, &mut buf).unwrap(), None);
    assert_eq!(p.b.udp().stats().no_port, 1);
    match p.a.interface_mut().poll_icmp() {
        Some(IcmpEvent::DestUnreachable {
            from,
            code: 3,
            original,
            ..
        }) => {
            assert_eq!(from, B);
            assert_eq!(original.dst, B);
            // The quoted UDP header names our port and the closed one.
            let port = client_addr.port().to_be_bytes();
            assert_eq!(&original.head[..4], &[port[0], port[1], 0, 54]);
        }
        other => panic!("expected port unreachable, got {other:?}"),
    }
}
