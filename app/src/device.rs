//! Bringing ustack up on a real device: open the TUN device, wrap it in a capture if one
//! was asked for, and start a [`Runtime`] with a stack on it. `ustack up`, `ustack iperf3`
//! and `ustack impair` open their devices here and nowhere else.

use std::io;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::link::{tap_boxed, Link, PcapSink, TunLink};
use crate::net::{Config, Interface, Ipv4Cidr};
use crate::options::cidr;
use crate::runtime::{BoxLink, Runtime};
use crate::transport::stack::{Stack, StackConfig};

/// The MTU of a device unless `--mtu` says otherwise (Ethernet's).
pub const DEFAULT_MTU: usize = 1500;

/// Which device to run on, and how.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct DeviceArgs {
    /// TUN device to create or attach to.
    #[arg(long, conflicts_with = "raw")]
    pub tun: Option<String>,
    /// Interface to bind a raw AF_PACKET socket to (not built yet).
    #[arg(long)]
    pub raw: Option<String>,
    /// Our address and prefix on the device, e.g. 198.18.0.2/24.
    #[arg(long, value_parser = cidr)]
    pub addr: Option<Ipv4Cidr>,
    /// MTU of the device.
    #[arg(long, default_value_t = DEFAULT_MTU)]
    pub mtu: usize,
    /// Use IFF_VNET_HDR checksum and segmentation offload (not built yet).
    #[arg(long)]
    pub offload: bool,
    /// Write a pcapng capture of the device.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
}

/// Why a device could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    #[error("give the device ustack runs on with --tun NAME --addr A.B.C.D/LEN")]
    Unspecified,
    #[error("{0}")]
    Open(io::Error),
    #[error("cannot write the capture: {0}")]
    Capture(io::Error),
}

impl DeviceError {
    /// Whether the command line asked for something impossible (rather than the device
    /// failing).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DeviceError::NotImplemented(_) | DeviceError::Unspecified
        )
    }
}

impl DeviceArgs {
    /// The TUN device and address to use, or why the flags do not name one (before any
    /// device is touched).
    pub fn target(&self) -> Result<(&str, Ipv4Cidr), DeviceError> {
        if self.raw.is_some() {
            return Err(DeviceError::NotImplemented("--raw"));
        }
        if self.offload {
            return Err(DeviceError::NotImplemented("--offload"));
        }
        match (&self.tun, self.addr) {
            (Some(tun), Some(addr)) => Ok((tun, addr)),
            _ => Err(DeviceError::Unspecified),
        }
    }
}

/// A stack running on a device.
pub struct Device {
    pub runtime: Runtime,
    pub name: String,
    pub addr: Ipv4Cidr,
    /// The capture, if one was asked for (the stack's link writes to it).
    pub capture: Option<PcapSink>,
}

/// Opens (or creates) the TUN device `name`.
pub fn open(name: &str, mtu: usize) -> Result<TunLink, DeviceError> {
    TunLink::open(name, mtu).map_err(DeviceError::Open)
}

/// Creates the capture file, if there is one.
pub fn capture(path: Option<&Path>) -> Result<Option<PcapSink>, DeviceError> {
    path.map(PcapSink::create)
        .transpose()
        .map_err(DeviceError::Capture)
}

/// `link`, recorded as interface `name` of `sink` if there is one.
pub fn tap<L: Link + Send + 'static>(
    link: L,
    sink: Option<&PcapSink>,
    name: &str,
) -> Result<BoxLink, DeviceError> {
    tap_boxed(link, sink, name).map_err(DeviceError::Capture)
}

/// Opens the device the flags name and starts a stack on it, on the wall clock.
pub fn bring_up(args: &DeviceArgs) -> Result<Device, DeviceError> {
    let (name, addr) = args.target()?;
    let tun = open(name, args.mtu)?;
    let sink = capture(args.pcap.as_deref())?;
    let link = tap(tun, sink.as_ref(), name)?;
    let stack = Stack::new(
        Interface::new(link, Config::new(addr)),
        StackConfig::default(),
    );
    Ok(Device {
        runtime: Runtime::start(stack),
        name: name.to_string(),
        addr,
        capture: sink,
    })
}
