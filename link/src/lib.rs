//! ustack link layer: the [`Link`] trait every device implements, the in-process
//! [`SimLink`] with its seeded impairment [`Engine`], and the [`PcapTap`] capture wrapper;
//! on Linux, the [`TunLink`] device and [`poll`], the one way to sleep on real devices.
//!
//! This crate calls only the OS; the network layer (`ustack-net`) sits on top of it.

mod counters;
pub mod hub;
pub mod impair;
mod link;
pub mod pcap;
#[cfg(target_os = "linux")]
pub mod poll;
pub mod seed;
pub mod sim;
pub mod time;
#[cfg(target_os = "linux")]
pub mod tun;

pub use hub::{HubConfig, HubPort, SimHub};
pub use impair::{
    DelayLine, Engine, GilbertElliott, ImpairError, ImpairStats, Impairments, Outage,
};
pub use link::{DropReason, Link, LinkError, Medium, TxInfo, ETHERNET_HEADER_LEN};
pub use pcap::{tap_boxed, PcapSink, PcapTap};
pub use sim::{SimConfig, SimLink, SimStats};
pub use time::{Clock, Duration, Instant};
#[cfg(target_os = "linux")]
pub use tun::TunLink;
