//! Fuzzes the UDP receive path: arbitrary datagrams (split on a 2-byte length prefix)
//! from arbitrary sources into a socket table with bound ports; every datagram must be
//! counted exactly once (delivered, no port, or a drop reason) and nothing may panic.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use ustack_transport::udp::{UdpConfig, UdpTable};

fuzz_target!(|data: &[u8]| {
    let mut table = UdpTable::new(UdpConfig::default());
    let ours = Ipv4Addr::new(198, 18, 0, 1);
    let sock = table.bind(SocketAddrV4::new(ours, 53)).unwrap();
    let _any = table.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    let mut rest = data;
    let mut sent = 0u64;
    let mut buf = [0u8; 2048];
    while rest.len() >= 3 {
        let src = Ipv4Addr::new(198, 18, 0, rest[0]);
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let datagram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        table.receive(src, ours, datagram);
        sent += 1;
        while let Ok(Some(_)) = table.recv_from(sock, &mut buf) {}
    }
    let s = table.stats();
    assert_eq!(
        s.datagrams_in + s.no_port + s.checksum_errors + s.queue_full + s.truncated,
        sent
    );
});
