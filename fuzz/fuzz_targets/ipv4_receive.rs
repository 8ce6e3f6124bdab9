//! Fuzzes the IPv4 receive path: arbitrary packets (split from the input on a 2-byte
//! length prefix) into an interface that accepts UDP and TCP, with time moving forward so
//! reassembly timeouts run too. Any panic is a bug; every packet must be counted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack_net::link::{Instant, Link, SimConfig, SimLink};
use ustack_net::{Config, Interface, IpNumber};

fuzz_target!(|data: &[u8]| {
    let (ours, mut peer) = SimLink::pair(SimConfig::default().with_mtu(65535), 0).unwrap();
    let mut iface = Interface::new(ours, Config::new("198.18.0.1/24".parse().unwrap()));
    iface.accept_protocol(IpNumber::UDP);
    iface.accept_protocol(IpNumber::TCP);
    let mut rest = data;
    let mut now = Instant::ZERO;
    let mut payload = Vec::new();
    let mut sent = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let packet = &rest[2..2 + len];
        rest = &rest[2 + len..];
        peer.send(now, packet).unwrap();
        sent += 1;
        while iface.recv(now, &mut payload).unwrap().is_some() {}
        now += ustack_net::link::Duration::from_secs(7);
    }
    assert_eq!(iface.stats().rx_packets, sent);
});
