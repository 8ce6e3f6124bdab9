//! ustack transport layer: TCP (RFC 9293) and UDP (RFC 768) as sans-IO state machines on
//! top of the network layer's [`net::Interface`].
//!
//! So far: TCP sequence numbers and the segment wire format ([`tcp`]). The connection
//! state machine and UDP arrive with issue 3. The crate depends on `ustack-net` alone and
//! re-exports it for the layers above.

pub use ustack_net as net;

pub mod tcp;
