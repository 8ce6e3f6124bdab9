//! The `Link` trait: what every device under ustack (TUN, raw AF_PACKET, simulated) offers
//! the network layer above it.

use std::os::fd::BorrowedFd;

use crate::time::{Duration, Instant};

/// What one unit on the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// Bare IP packets (TUN devices, simulated links). Pcap link type RAW (101).
    Ip,
    /// Ethernet II frames (raw AF_PACKET sockets). Pcap link type ETHERNET (1).
    Ethernet,
}

/// Length of an Ethernet II header (destination, source, EtherType), which a frame
/// carries on top of its MTU-sized payload.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Why a device failed to move a packet.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The packet is larger than the device's MTU (plus link header).
    #[error("packet of {len} bytes exceeds the link MTU of {mtu}")]
    TooBig { len: usize, mtu: usize },
    /// The caller's buffer cannot hold the waiting packet; the packet is dropped.
    #[error("receive buffer of {buf} bytes is too small for a {len}-byte packet")]
    BufferTooSmall { len: usize, buf: usize },
    /// The device cannot accept more right now (a full queue on a real device).
    #[error("the link is busy")]
    WouldBlock,
    /// The other end of the link is gone.
    #[error("the link is closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why the impairment engine dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Independent random loss.
    Loss,
    /// Loss in the bad state of the Gilbert-Elliott burst model.
    BurstLoss,
    /// The rate limiter's queue was full (tail drop).
    QueueFull,
    /// A scheduled outage or partition covered the send or delivery time.
    Outage,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::BurstLoss => "burst-loss",
            DropReason::QueueFull => "queue-full",
            DropReason::Outage => "outage",
        }
    }
}

/// What the link knows about the fate of a packet it accepted. Real devices know nothing
/// (`TxInfo::default()`); a simulated link reports its impairment decisions so that a
/// [`PcapTap`](crate::PcapTap) can mark them in the capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxInfo {
    /// The packet will never arrive.
    pub dropped: Option<DropReason>,
    /// Bit flipped in flight: the receiver gets a damaged copy (byte offset, bit).
    pub corrupted: Option<(usize, u8)>,
    /// The receiver gets the packet twice.
    pub duplicated: bool,
    /// The packet was held back so that later packets overtake it.
    pub reordered: bool,
    /// Time in flight (for a delivered packet).
    pub delay: Duration,
}

impl TxInfo {
    /// True if the engine did anything to the packet beyond delaying it.
    pub fn is_impaired(&self) -> bool {
        self.dropped.is_some() || self.corrupted.is_some() || self.duplicated || self.reordered
    }
}

/// What a device does for the stack beyond moving packets (offloads), as the Linux
/// `NETIF_F_*` features say it for a network device. The default is none of it, which
/// is what the simulated and raw links offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The device takes TCP/IPv4 packets of up to `tso_max` bytes (IP header included,
    /// at most 65535) and splits them into MTU-sized segments of the size given with
    /// [`Link::send_offload`], filling in their checksums (TSO, `NETIF_F_TSO`). 0: no
    /// segmentation offload.
    pub tso_max: usize,
}

/// What the device said about a packet it handed over ([`Link::recv_offload`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxOffload {
    /// The transport checksum need not be verified: the device verified it
    /// (virtio `DATA_VALID`), or the packet never crossed a wire and its checksum field
    /// holds only the pseudo-header sum (virtio `NEEDS_CSUM`, Linux `CHECKSUM_PARTIAL`).
    pub checksum_trusted: bool,
    /// The packet is a coalesced TCP super-segment of segments of this many payload bytes
    /// (virtio `gso_size`); 0 for an ordinary packet.
    pub segment_size: u16,
}

/// A device that moves whole packets (or frames) in both directions.
///
/// All methods take `now`: a simulated link lives on the caller's virtual clock, and
/// wrappers such as [`PcapTap`](crate::PcapTap) stamp packets with it. No method blocks:
/// a driver of a real device sleeps on its [`Link::fd`] (see [`crate::poll`]).
pub trait Link {
    /// What a packet on this link is.
    fn medium(&self) -> Medium;

    /// The largest packet (IP) or frame payload (Ethernet) the link carries.
    fn mtu(&self) -> usize;

    /// Sends one packet. `Ok` means the link accepted it, not that it will arrive.
    fn send(&mut self, now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError>;

    /// [`Link::send`] of the packet in `buf` (exactly as long as the packet), which the
    /// link may keep, handing back a buffer of its own (contents unspecified) in
    /// exchange: a link that writes later keeps the packet without copying it.
    fn send_swap(&mut self, now: Instant, buf: &mut Vec<u8>) -> Result<TxInfo, LinkError> {
        self.send(now, buf)
    }

    /// Puts every packet [`Link::send`] accepted since the last call on the device: the
    /// driver's end of a round. A link that writes many packets per system call holds
    /// them until here, and only once a driver has called this (so a driver that never
    /// does still sends each packet at once); the others have nothing to do.
    fn flush(&mut self, now: Instant) -> Result<(), LinkError> {
        let _ = now;
        Ok(())
    }

    /// Receives one packet into `buf`, returning its length, or `Ok(None)` if nothing is
    /// ready at `now`.
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError>;

    /// The descriptor that becomes readable when a packet arrives, for drivers that wait
    /// on several things at once (a real device); `None` for simulated links.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// The earliest time at which [`Link::recv`] may return a packet, if the link knows
    /// it: `Some(t <= now)` means ready now; a simulated link returns the delivery time of
    /// the next packet in flight. Real devices return `None` and are waited on instead.
    fn poll_at(&self, now: Instant) -> Option<Instant>;

    /// The offloads the device does; none unless it says so.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// [`Link::recv`], with what the device says about the packet (checksum verified,
    /// coalesced segments). A device without offloads says nothing.
    fn recv_offload(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<(usize, RxOffload)>, LinkError> {
        Ok(self.recv(now, buf)?.map(|n| (n, RxOffload::default())))
    }

    /// [`Link::recv_offload`] into `buf`, which the link may instead exchange for a
    /// buffer of its own holding the packet, at least as long as `buf` was (the packet is
    /// then cut where a read into `buf` would have cut it): a link that reads many
    /// packets ahead hands each over without copying it.
    fn recv_swap(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(usize, RxOffload)>, LinkError> {
        self.recv_offload(now, buf)
    }

    /// [`Link::send`] of a TCP/IPv4 packet the device is to split into segments of
    /// `segment_size` payload bytes (TSO), which it may do only if
    /// [`Capabilities::tso_max`] allows the packet; a device without TSO sends the packet
    /// as it is.
    fn send_offload(
        &mut self,
        now: Instant,
        packet: &[u8],
        segment_size: u16,
    ) -> Result<TxInfo, LinkError> {
        let _ = segment_size;
        self.send(now, packet)
    }
}

/// Forwards every method to the referenced link.
macro_rules! forward_link {
    ($ty:ty) => {
        impl<L: Link + ?Sized> Link for $ty {
            fn medium(&self) -> Medium {
                (**self).medium()
            }
            fn mtu(&self) -> usize {
                (**self).mtu()
            }
            fn send(&mut self, now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
                (**self).send(now, packet)
            }
            fn flush(&mut self, now: Instant) -> Result<(), LinkError> {
                (**self).flush(now)
            }
            fn send_swap(&mut self, now: Instant, buf: &mut Vec<u8>) -> Result<TxInfo, LinkError> {
                (**self).send_swap(now, buf)
            }
            fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
                (**self).recv(now, buf)
            }
            fn fd(&self) -> Option<BorrowedFd<'_>> {
                (**self).fd()
            }
            fn poll_at(&self, now: Instant) -> Option<Instant> {
                (**self).poll_at(now)
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn recv_offload(
                &mut self,
                now: Instant,
                buf: &mut [u8],
            ) -> Result<Option<(usize, RxOffload)>, LinkError> {
                (**self).recv_offload(now, buf)
            }
            fn recv_swap(
                &mut self,
                now: Instant,
                buf: &mut Vec<u8>,
            ) -> Result<Option<(usize, RxOffload)>, LinkError> {
                (**self).recv_swap(now, buf)
            }
            fn send_offload(
                &mut self,
                now: Instant,
                packet: &[u8],
                segment_size: u16,
            ) -> Result<TxInfo, LinkError> {
                (**self).send_offload(now, packet, segment_size)
            }
        }
    };
}

forward_link!(&mut L);
forward_link!(Box<L>);
