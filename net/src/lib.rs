//! ustack network layer: IPv4 (RFC 791, RFC 1122 host rules) on top of a
//! [`link::Link`]: validation, ICMP echo and errors (RFC 792), fragmentation and
//! reassembly with memory caps and timeouts, and a small routing table.
//!
//! The transport layer above owns an [`Interface`] and pulls datagrams from it with
//! [`Interface::recv`]; it sends with [`Interface::send`]. The [`link::Medium`] of the
//! link tells which framing a packet has: bare IPv4 ([`link::Medium::Ip`], TUN), or
//! Ethernet II frames ([`link::Medium::Ethernet`], TAP and raw sockets), where the
//! interface also runs ARP ([`arp`]). IPv6 comes in a later issue.

pub use etherparse::IpNumber;
pub use ustack_link as link;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod frag;
pub mod icmp;
mod iface;
pub mod ipv4;
pub mod route;
mod stats;

pub use arp::{Arp, ArpConfig, NeighbourState};
pub use ethernet::MacAddr;
pub use frag::ReassemblyConfig;
pub use icmp::{IcmpError, IcmpEvent, Original};
pub use iface::{
    Config, GatewayError, HeaderCopy, Interface, Received, SendError, SendOptions, SharedLinkError,
};
pub use route::{Ipv4Cidr, Route, Routes};
pub use stats::{RxDrop, RxDrops, Stats};
