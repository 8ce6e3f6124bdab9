//! ustack link layer: the [`Link`] trait every device implements, the in-process
//! [`SimLink`] with its seeded impairment [`Engine`], and the [`PcapTap`] capture wrapper;
//! on Linux, the [`TunLink`] (TUN and TAP) and [`RawLink`] (AF_PACKET) devices and [`poll`], the one way to sleep on real devices.
//!
//! This crate calls only the OS; the network layer (`ustack-net`) sits on top of it.

mod counters;
pub mod hub;
pub mod impair;
mod link;
pub mod pcap;
#[cfg(target_os = "linux")]
pub mod poll;
#[cfg(target_os = "linux")]
pub mod raw;
pub mod seed;
pub mod sim;
#[cfg(all(test, target_os = "linux"))]
mod testnet;
pub mod time;
#[cfg(target_os = "linux")]
pub mod tun;
#[cfg(target_os = "linux")]
pub mod uring;
#[cfg(target_os = "linux")]
pub mod uring_tx;
pub mod vnet;

pub use hub::{HubConfig, HubPort, SimHub};
pub use impair::{
    DelayLine, Engine, GilbertElliott, ImpairError, ImpairStats, Impairments, Outage,
};
pub use link::{
    Capabilities, DropReason, Link, LinkError, Medium, RxOffload, TxInfo, ETHERNET_HEADER_LEN,
};
pub use pcap::{tap_boxed, PcapSink, PcapTap};
#[cfg(target_os = "linux")]
pub use raw::RawLink;
pub use sim::{SimConfig, SimLink, SimStats};
pub use time::{Clock, Duration, Instant};
#[cfg(target_os = "linux")]
pub use tun::TunLink;
