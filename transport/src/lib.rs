//! ustack transport layer: TCP (RFC 9293) and UDP (RFC 768) as sans-IO state machines on
//! top of the network layer's [`net::Interface`].
//!
//! Not built yet: TCP and UDP arrive with issue 3. Until then this crate only fixes the
//! layering: it depends on `ustack-net` alone and re-exports it for the layers above.

pub use ustack_net as net;
