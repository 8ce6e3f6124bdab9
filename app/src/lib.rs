//! ustack application layer: the stack runtime ([`runtime`]: a virtual-clock simulator
//! and a wall-clock driver), blocking sockets over it ([`socket`]), helpers to build
//! simulated networks ([`sim`]), the demos, and what the `ustack` command runs on devices
//! ([`device`], [`up`], [`iperf3`], [`impair`]) with its option structs ([`options`]).

pub use ustack_transport as transport;
pub use ustack_transport::net;
pub use ustack_transport::net::link;

pub mod aio;
#[cfg(target_os = "linux")]
pub mod bench;
pub mod demo;
#[cfg(target_os = "linux")]
pub mod device;
#[cfg(target_os = "linux")]
pub mod impair;
pub mod iperf3;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod options;
pub mod runtime;
pub mod sim;
pub mod socket;
#[cfg(target_os = "linux")]
pub mod up;
