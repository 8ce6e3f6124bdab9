//! Demos that run on the embedded simulated network: no root, no OS networking, virtual
//! time.

pub mod ping;
pub mod tcp;
pub mod udp;
