//! ustack application layer: the demos today; the socket API, the stack runtime and the
//! iperf3-compatible tools as the transport layer grows (issues 3 and 4).

pub use ustack_transport as transport;
pub use ustack_transport::net;
pub use ustack_transport::net::link;

pub mod demo;
