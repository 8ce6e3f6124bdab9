//! TCP (RFC 9293): sequence-number arithmetic and the segment wire format. The connection
//! state machine builds on these and never touches raw `u32` sequence numbers or bytes.

pub mod seq;
pub mod wire;
