//! UDP between two stacks over a SimLink pair: delivery by port, and ICMP port
//! unreachable for a closed port (RFC 1122 section 4.1.3.1).

mod common;

use std::net::SocketAddrV4;

use common::{Pair, A, B};
use ustack_transport::net::link::Duration;

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
    // The stack takes the ICMP error and counts it against UDP.
    assert_eq!(p.b.interface().stats().icmp_errors_out, 1);
    assert_eq!(p.a.stats().icmp_errors_in, 1);
    assert_eq!(p.a.stats().udp_port_unreachable_in, 1);
    assert_eq!(p.a.interface_mut().poll_icmp(), None);
}
