//! TCP (RFC 9293) as sans-IO state machines.

pub mod assembler;
mod config;
pub mod congestion;
pub mod conn;
pub mod error;
pub mod rtt;
pub mod sack;
pub mod seq;
pub mod stats;
pub mod timer;
pub mod wire;

pub use config::TcpConfig;
pub use conn::{Connection, State};
pub use error::{ConnectionError, RecvError, SendError};
pub use seq::SeqNumber;

#[cfg(test)]
mod tests;
