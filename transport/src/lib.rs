//! ustack transport layer: TCP (RFC 9293) and UDP (RFC 768) as sans-IO state machines on
//! top of the network layer's [`net::Interface`].
//!
//! [`udp`] holds the UDP socket table, [`tcp`] the connection state machine and its parts,
//! [`stack`] ties them to an interface (with SYN cookies, `syn_cookies`, for its listeners); [`ports`] hands out ephemeral ports to both, and
//! [`quoted`] reads which of their segments or datagrams an ICMP error is about. The crate depends on `ustack-net` alone and
//! re-exports it for the layers above.

pub use ustack_net as net;

pub mod ports;
pub mod quoted;
pub mod stack;
mod syn_cookies;
pub mod tcp;
pub mod udp;
