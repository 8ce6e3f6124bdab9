//! TCP (RFC 9293) as sans-IO state machines.
//!
//! Public here is what other crates use: the [`Connection`] with its [`State`], errors and
//! settings, [`SeqNumber`], the [`wire`] format and the per-connection counters
//! ([`stats`]). The parts a connection is made of are crate-private.

/// Public only for `benches/assembler.rs`.
#[doc(hidden)]
pub mod assembler;
mod autotune;
mod config;
mod congestion;
pub(crate) mod conn;
mod delivery;
pub(crate) mod error;
mod rack;
mod rtt;
mod sack;
pub(crate) mod seq;
pub mod stats;
pub mod time_wait;
mod timer;
pub mod wire;

pub use config::{mss_for_mtu, TcpConfig};
pub use congestion::Algorithm;
pub use conn::{Connection, Opening, State};
pub use error::{ConnectionError, RecvError, SendError};
pub use seq::SeqNumber;

#[cfg(test)]
mod tests;
