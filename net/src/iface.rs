//! `Interface`: the IPv4 network layer on top of one [`Link`]. It owns the link, validates
//! and reassembles what arrives, answers pings and reports unknown protocols itself, and
//! hands datagrams of the registered protocols to the transport layer above.
//!
//! On an Ethernet link ([`Medium::Ethernet`]) it also frames and unframes (RFC 894) and
//! runs ARP ([`crate::arp`]): packets to a next hop whose MAC address is not known yet
//! wait while it is resolved.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{
    EtherType, IcmpEchoHeader, Icmpv4Header, Icmpv4Type, IpNumber, Ipv4Header, Ipv4HeaderSlice,
};
use ustack_link::{Instant, Link, LinkError, Medium};

use crate::arp::{Action, Arp, ArpConfig};
use crate::ethernet::{self, MacAddr};

use crate::frag::{self, FragmentKey, Reassembler, ReassemblyConfig};
use crate::icmp::{self, IcmpError, IcmpEvent, Incoming, Original, QUOTED_PAYLOAD};
use crate::ipv4::{self, HeaderFields, MAX_DATAGRAM_LEN, MAX_HEADER_LEN, MIN_HEADER_LEN};
use crate::route::{Ipv4Cidr, Routes};
use crate::stats::{RxDrop, Stats};

/// Settings of an [`Interface`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our address and the connected network.
    pub addr: Ipv4Cidr,
    /// The default route (RFC 1122 section 3.3.1.1): packets to hosts off our network go
    /// to this router (to its MAC address on Ethernet links, simply out of the device on
    /// TUN). [`Config::with_gateway`] sets it after checking that it is a host on our
    /// network; [`Interface::routes_mut`] changes it later.
    pub gateway: Option<Ipv4Addr>,
    /// Our MAC address on an Ethernet link (the device's own, or one the stack owns on a
    /// TAP device). `None`: a locally administered one made from our IPv4 address
    /// ([`MacAddr::local_for`]). Unused on IP links.
    pub mac: Option<MacAddr>,
    /// ARP timers and bounds (Ethernet links).
    pub arp: ArpConfig,
    /// TTL of datagrams we originate (RFC 1700 recommends 64).
    pub ttl: u8,
    pub reassembly: ReassemblyConfig,
    /// ICMP events (echo replies, errors) held for the layers above before counted drops.
    pub icmp_queue: usize,
    /// ICMP errors we may send in a burst, and their refill rate (RFC 1812 section
    /// 4.3.2.8 rate limiting).
    pub icmp_error_burst: u32,
    pub icmp_errors_per_sec: u32,
    /// First IP identification value; pass a seed so runs are reproducible.
    pub first_ident: u16,
}

impl Config {
    pub fn new(addr: Ipv4Cidr) -> Config {
        Config {
            addr,
            gateway: None,
            mac: None,
            arp: ArpConfig::default(),
            ttl: 64,
            reassembly: ReassemblyConfig::default(),
            icmp_queue: 64,
            icmp_error_burst: 50,
            icmp_errors_per_sec: 100,
            first_ident: 1,
        }
    }

    /// Sets the default gateway (`--gateway`), which must be a host on our network: not
    /// our own address, nor the network or broadcast address (RFC 1122 section 3.3.1.1:
    /// a host reaches its first-hop gateway directly).
    pub fn with_gateway(mut self, gateway: Ipv4Addr) -> Result<Config, GatewayError> {
        let net = self.addr;
        if gateway == net.addr {
            return Err(GatewayError::OurAddress(gateway));
        }
        let host = ipv4::is_valid_source(gateway) && !ipv4::is_martian_source(gateway);
        let special =
            net.prefix_len < 31 && (gateway == net.network() || Some(gateway) == net.broadcast());
        if !host || special {
            return Err(GatewayError::NotAHost(gateway));
        }
        if !net.contains(gateway) {
            let net = Ipv4Cidr {
                addr: net.network(),
                prefix_len: net.prefix_len,
            };
            return Err(GatewayError::OffNetwork { gateway, net });
        }
        self.gateway = Some(gateway);
        Ok(self)
    }
}

/// Why an address cannot be our default gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway {gateway} is not on our network {net}; a gateway must be a neighbour")]
    OffNetwork { gateway: Ipv4Addr, net: Ipv4Cidr },
    #[error("gateway {0} is our own address")]
    OurAddress(Ipv4Addr),
    #[error("gateway {0} is not a host address")]
    NotAHost(Ipv4Addr),
}

/// Why a datagram could not be sent. `Clone` and `Eq`, so that the layers above can keep
/// it, typed, in their own errors and replies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("datagram of {len} bytes needs fragmenting but Don't Fragment is set (MTU {mtu})")]
    NeedsFragmentation { len: usize, mtu: usize },
    #[error("datagram of {len} bytes exceeds the IPv4 maximum of 65535")]
    DatagramTooLarge { len: usize },
    #[error("link MTU of {0} bytes cannot carry an IPv4 fragment")]
    MtuTooSmall(usize),
    #[error("link error: {0}")]
    Link(#[source] SharedLinkError),
}

impl From<LinkError> for SendError {
    fn from(e: LinkError) -> SendError {
        SendError::Link(SharedLinkError::from(e))
    }
}

/// A [`LinkError`] behind an `Arc`, so that errors holding it can be cloned and compared
/// (the `std::io::Error` a device may fail with is neither). Two are equal when they are
/// the same failure: the same variant with the same message.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct SharedLinkError(Arc<LinkError>);

impl SharedLinkError {
    pub fn get(&self) -> &LinkError {
        &self.0
    }
}

impl From<LinkError> for SharedLinkError {
    fn from(e: LinkError) -> SharedLinkError {
        SharedLinkError(Arc::new(e))
    }
}

impl PartialEq for SharedLinkError {
    fn eq(&self, other: &SharedLinkError) -> bool {
        let (a, b) = (self.get(), other.get());
        Arc::ptr_eq(&self.0, &other.0)
            || (std::mem::discriminant(a) == std::mem::discriminant(b)
                && a.to_string() == b.to_string())
    }
}

impl Eq for SharedLinkError {}

/// Per-datagram send options; the default is what TCP and UDP usually want.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// TTL, if not the interface default.
    pub ttl: Option<u8>,
    /// Set the Don't Fragment bit: fail rather than fragment (path MTU discovery).
    pub dont_fragment: bool,
    /// DSCP and ECN bits.
    pub tos: u8,
    /// A TCP segment larger than the MTU that the link is to cut into segments of this
    /// many payload bytes (TSO, when [`Capabilities::tso_max`] allows it); 0: none, the
    /// MTU rules apply.
    ///
    /// [`Capabilities::tso_max`]: ustack_link::Capabilities::tso_max
    pub tso_segment: u16,
}

/// The IPv4 header of a received datagram, kept (up to 60 bytes) so that the transport
/// layer can quote it in an ICMP error such as port unreachable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderCopy {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderCopy {
    fn new(header: &[u8]) -> HeaderCopy {
        let mut bytes = [0; MAX_HEADER_LEN];
        let len = header.len().min(MAX_HEADER_LEN);
        bytes[..len].copy_from_slice(&header[..len]);
        HeaderCopy {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for HeaderCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeaderCopy({} bytes)", self.len)
    }
}

/// Metadata of a datagram handed to the transport layer; its payload is in the caller's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpNumber,
    pub ttl: u8,
    pub tos: u8,
    /// Payload length (also the length of the caller's buffer after the call).
    pub len: usize,
    /// Sent to a broadcast address.
    pub broadcast: bool,
    pub header: HeaderCopy,
    /// The device vouched for the transport checksum (verified it, or the packet came
    /// from the local kernel with a partial one): the transport layer skips verifying.
    pub checksum_trusted: bool,
}

/// Token bucket for outgoing ICMP errors; time passed in.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: u32,
    burst: u32,
    per_sec: u32,
    last: Instant,
}

impl TokenBucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now - self.last;
        let refill = (elapsed.as_micros() * u128::from(self.per_sec) / 1_000_000) as u64;
        if refill > 0 {
            self.tokens = (u64::from(self.tokens) + refill).min(u64::from(self.burst)) as u32;
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The network layer on one link.
#[derive(Debug)]
pub struct Interface<L: Link> {
    link: L,
    cfg: Config,
    routes: Routes,
    protocols: Vec<IpNumber>,
    reassembler: Reassembler,
    icmp_events: VecDeque<IcmpEvent>,
    icmp_bucket: TokenBucket,
    next_ident: u16,
    /// ARP and the neighbour cache, on Ethernet links only.
    arp: Option<Arp>,
    /// Whether the gratuitous ARP of the start has gone out (Ethernet links).
    announced: bool,
    rx_buf: Vec<u8>,
    /// The frame being sent: link header room (Ethernet) then the IPv4 packet.
    tx_buf: Vec<u8>,
    /// Frames the ARP machinery sends, apart from `tx_buf`.
    arp_buf: Vec<u8>,
    stats: Stats,
}

/// Receive buffer size: the largest datagram a link can hand us in one piece.
const RX_BUF_LEN: usize = MAX_DATAGRAM_LEN;

/// Where a received datagram's payload is: inside the packet as the link delivered it
/// (a range of the packet), or a datagram reassembled from fragments.
enum Delivered {
    InPlace(std::ops::Range<usize>),
    Reassembled(Vec<u8>),
}

impl<L: Link> Interface<L> {
    pub fn new(link: L, cfg: Config) -> Interface<L> {
        let mut routes = Routes::new();
        routes.add_connected(cfg.addr);
        if let Some(gw) = cfg.gateway {
            routes.set_default_gateway(gw);
        }
        let arp = (link.medium() == Medium::Ethernet).then(|| {
            let mac = cfg.mac.unwrap_or(MacAddr::local_for(cfg.addr.addr));
            Arp::new(cfg.arp.clone(), mac, cfg.addr)
        });
        Interface {
            link,
            arp,
            announced: false,
            arp_buf: Vec::new(),
            routes,
            protocols: Vec::new(),
            reassembler: Reassembler::new(cfg.reassembly),
            icmp_events: VecDeque::new(),
            icmp_bucket: TokenBucket {
                tokens: cfg.icmp_error_burst,
                burst: cfg.icmp_error_burst,
                per_sec: cfg.icmp_errors_per_sec,
                last: Instant::ZERO,
            },
            next_ident: cfg.first_ident,
            rx_buf: vec![0; RX_BUF_LEN],
            tx_buf: Vec::with_capacity(RX_BUF_LEN),
            stats: Stats::default(),
            cfg,
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.cfg.addr.addr
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cfg.addr
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn routes_mut(&mut self) -> &mut Routes {
        &mut self.routes
    }

    pub fn link(&self) -> &L {
        &self.link
    }

    /// Our MAC address, on an Ethernet link.
    pub fn mac(&self) -> Option<MacAddr> {
        self.arp.as_ref().map(Arp::mac)
    }

    /// ARP state and the neighbour cache, on an Ethernet link.
    pub fn arp(&self) -> Option<&Arp> {
        self.arp.as_ref()
    }

    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    pub fn into_link(self) -> L {
        self.link
    }

    /// The largest transport payload that fits one packet without fragmentation.
    pub fn max_payload(&self) -> usize {
        self.link.mtu().saturating_sub(MIN_HEADER_LEN)
    }

    /// Datagrams of `protocol` will be handed up by [`Interface::recv`]; others are
    /// answered with ICMP protocol unreachable.
    pub fn accept_protocol(&mut self, protocol: IpNumber) {
        if !self.protocols.contains(&protocol) {
            self.protocols.push(protocol);
        }
    }

    /// The next ICMP event (echo reply, destination unreachable, time exceeded).
    pub fn poll_icmp(&mut self) -> Option<IcmpEvent> {
        self.icmp_events.pop_front()
    }

    /// The earliest time at which [`Interface::recv`] has work: a packet arriving, a
    /// reassembly timing out, or (Ethernet) the start's announcement or an ARP retry.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        let arp = match &self.arp {
            Some(_) if !self.announced => Some(now),
            Some(arp) => arp.poll_at(),
            None => None,
        };
        [
            self.link.poll_at(now),
            self.reassembler.next_deadline(),
            arp,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
        addr.is_broadcast() || Some(addr) == self.cfg.addr.broadcast()
    }

    // ---- sending ----

    /// Sends `payload` to `dst` as one IPv4 datagram, fragmented if larger than the MTU.
    pub fn send(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        protocol: IpNumber,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.send_with(now, dst, protocol, &SendOptions::default(), payload)
    }

    /// [`Interface::send`] with options. RFC 791 section 3.2 fragmentation: every fragment
    /// but the last carries a multiple of 8 bytes and the same identification.
    pub fn send_with(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        protocol: IpNumber,
        opts: &SendOptions,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let Some(next_hop) = self.routes.next_hop(dst) else {
            self.stats.tx_no_route += 1;
            return Err(SendError::NoRoute(dst));
        };
        self.start(now);
        let len = MIN_HEADER_LEN + payload.len();
        if len > MAX_DATAGRAM_LEN {
            self.stats.tx_too_big += 1;
            return Err(SendError::DatagramTooLarge { len });
        }
        let mtu = self.link.mtu();
        // TSO: the link segments a TCP datagram larger than the MTU itself (IP link only).
        let tso = opts.tso_segment > 0
            && protocol == IpNumber::TCP
            && len > mtu
            && len <= self.link.capabilities().tso_max
            && self.arp.is_none();
        if len > mtu && opts.dont_fragment && !tso {
            self.stats.tx_too_big += 1;
            return Err(SendError::NeedsFragmentation { len, mtu });
        }
        // A TSO datagram goes to the link whole: plan it as one piece.
        let plan_mtu = if tso { MAX_DATAGRAM_LEN } else { mtu };
        let Some(pieces) = frag::plan(payload.len(), MIN_HEADER_LEN, plan_mtu) else {
            self.stats.tx_too_big += 1;
            return Err(SendError::MtuTooSmall(mtu));
        };
        let fields = self.next_header_fields(dst, protocol, opts);
        if pieces.len() > 1 {
            self.stats.tx_fragmented += 1;
        }
        let link_header = if self.arp.is_some() {
            ethernet::HEADER_LEN
        } else {
            0
        };
        for (offset, piece_len, more) in pieces {
            let header = fields.build(piece_len, offset, more)?;
            self.tx_buf.clear();
            self.tx_buf.resize(link_header, 0);
            self.tx_buf.extend_from_slice(&header.to_bytes());
            self.tx_buf
                .extend_from_slice(&payload[offset..offset + piece_len]);
            self.transmit(now, next_hop, if tso { opts.tso_segment } else { 0 })?;
        }
        self.run_arp(now);
        Ok(())
    }

    /// The IPv4 header fields of the next datagram sent to `dst`, taking the next
    /// identification (RFC 791; RFC 6864 allows any value for atomic datagrams).
    fn next_header_fields(
        &mut self,
        dst: Ipv4Addr,
        protocol: IpNumber,
        opts: &SendOptions,
    ) -> HeaderFields {
        let ident = self.next_ident;
        self.next_ident = ident.wrapping_add(1);
        HeaderFields {
            src: self.cfg.addr.addr,
            dst,
            protocol,
            ttl: opts.ttl.unwrap_or(self.cfg.ttl),
            ident,
            dont_fragment: opts.dont_fragment,
            tos: opts.tos,
        }
    }

    /// Bytes a caller of [`Interface::send_prebuilt`] leaves free in front of its
    /// payload: the IP header, and the Ethernet header on an Ethernet link.
    pub fn tx_headroom(&self) -> usize {
        if self.arp.is_some() {
            ethernet::HEADER_LEN + MIN_HEADER_LEN
        } else {
            MIN_HEADER_LEN
        }
    }

    /// [`Interface::send_with`] for a payload written after [`Interface::tx_headroom`]
    /// bytes of `frame`: a datagram that goes out in one piece gets its IP header written
    /// into that room and `frame` itself goes to the link, without copying the payload
    /// again (the TCP send path: one copy from the send buffer into the frame, one by
    /// the kernel). Fragments and a `frame` without the room take the copying path.
    /// `frame` keeps its allocation for the next call (its contents are unspecified).
    pub fn send_prebuilt(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        protocol: IpNumber,
        opts: &SendOptions,
        frame: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let headroom = self.tx_headroom();
        let Some(payload_len) = frame.len().checked_sub(headroom) else {
            // Not built for this link: nothing to send in place.
            return self.send_with(now, dst, protocol, opts, frame);
        };
        let len = MIN_HEADER_LEN + payload_len;
        let fits = len <= self.link.mtu() && len <= MAX_DATAGRAM_LEN;
        let Some(next_hop) = self.routes.next_hop(dst).filter(|_| fits && self.announced) else {
            // Every other case (no route, TSO, fragments, the first send) as before.
            return self.send_with(now, dst, protocol, opts, &frame[headroom..]);
        };
        let fields = self.next_header_fields(dst, protocol, opts);
        let header = fields.build(payload_len, 0, false)?;
        frame[headroom - MIN_HEADER_LEN..headroom].copy_from_slice(&header.to_bytes());
        // The frame is the interface's transmit buffer for this send; the caller gets the
        // old buffer back, so neither allocation is lost.
        std::mem::swap(&mut self.tx_buf, frame);
        let sent = self.transmit(now, next_hop, 0);
        std::mem::swap(&mut self.tx_buf, frame);
        self.run_arp(now);
        sent
    }

    /// Puts the packet in `tx_buf` on the link towards `next_hop`: as it is on an IP
    /// link; on Ethernet in a frame to the next hop's MAC address, or queued while ARP
    /// resolves it. `tso_segment` > 0: a TSO super-segment for the link to cut.
    fn transmit(
        &mut self,
        now: Instant,
        next_hop: Ipv4Addr,
        tso_segment: u16,
    ) -> Result<(), SendError> {
        let broadcast = self.is_broadcast(next_hop);
        let mut link_header = 0;
        if let Some(arp) = &mut self.arp {
            link_header = ethernet::HEADER_LEN;
            let packet = &self.tx_buf[link_header..];
            let dst = if broadcast {
                MacAddr::BROADCAST
            } else if next_hop.is_multicast() {
                MacAddr::ipv4_multicast(next_hop)
            } else {
                match arp.resolve(now, next_hop, packet, &mut self.stats) {
                    Some(mac) => mac,
                    None => return Ok(()),
                }
            };
            let header = ethernet::header(dst, arp.mac(), EtherType::IPV4);
            self.tx_buf[..ethernet::HEADER_LEN].copy_from_slice(&header);
        }
        let len = self.tx_buf.len();
        let sent = if tso_segment > 0 {
            self.link.send_offload(now, &self.tx_buf, tso_segment)
        } else {
            // The link may keep the buffer (to write it at the flush) and give back one
            // of its own.
            self.link.send_swap(now, &mut self.tx_buf)
        };
        if let Err(e) = sent {
            self.stats.tx_link_errors += 1;
            return Err(e.into());
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += (len - link_header) as u64;
        Ok(())
    }

    /// Puts what this round sent on the device ([`Link::flush`]): the driver's end of a
    /// round. A failed flush counts once in `tx_link_errors` (the link counts the packets
    /// it lost); TCP retransmits them as lost ones.
    pub fn flush(&mut self, now: Instant) {
        if self.link.flush(now).is_err() {
            self.stats.tx_link_errors += 1;
        }
    }

    /// Sends the gratuitous ARP of an Ethernet interface's start, once.
    fn start(&mut self, now: Instant) {
        if self.announced {
            return;
        }
        self.announced = true;
        if let Some(arp) = &mut self.arp {
            arp.announce(&mut self.stats);
            self.run_arp(now);
        }
    }

    /// Carries out what ARP asks for: its frames, the packets it resolved, and host
    /// unreachable events for the packets it gave up on. Link errors are counted only:
    /// a lost ARP frame is retried like a lost one on the wire.
    fn run_arp(&mut self, now: Instant) {
        let Some(arp) = &mut self.arp else {
            return;
        };
        let mac = arp.mac();
        while let Some(action) = arp.poll_action() {
            self.arp_buf.clear();
            match action {
                Action::Arp { dst, packet } => {
                    self.arp_buf
                        .extend_from_slice(&ethernet::header(dst, mac, EtherType::ARP));
                    self.arp_buf.extend_from_slice(&packet.to_bytes());
                }
                Action::Send { dst, packet } => {
                    self.arp_buf
                        .extend_from_slice(&ethernet::header(dst, mac, EtherType::IPV4));
                    self.arp_buf.extend_from_slice(&packet);
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += packet.len() as u64;
                }
                Action::Unreachable(packet) => {
                    if let Some(event) = host_unreachable(self.cfg.addr.addr, &packet) {
                        if self.icmp_events.len() >= self.cfg.icmp_queue {
                            self.stats.drop(RxDrop::IcmpQueueFull);
                        } else {
                            self.icmp_events.push_back(event);
                        }
                    }
                    continue;
                }
            }
            if self.link.send(now, &self.arp_buf).is_err() {
                self.stats.tx_link_errors += 1;
            }
        }
    }

    /// Sends an ICMP echo request (what `ping` does).
    pub fn send_echo_request(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        ident: u16,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let echo = IcmpEchoHeader { id: ident, seq };
        self.send_icmp(now, dst, Icmpv4Type::EchoRequest(echo), payload)?;
        self.stats.icmp_echo_requests_out += 1;
        Ok(())
    }

    fn send_icmp(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        icmp_type: Icmpv4Type,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let header = Icmpv4Header::with_checksum(icmp_type, payload);
        let mut message = Vec::with_capacity(header.header_len() + payload.len());
        message.extend_from_slice(&header.to_bytes());
        message.extend_from_slice(payload);
        self.send(now, dst, IpNumber::ICMP, &message)
    }

    /// Sends an ICMP error about a received datagram, quoting its header and the first
    /// 8 bytes of its payload, subject to the RFC 1122 section 3.2.2 rules and the rate
    /// limit. Returns whether the error was sent.
    pub fn send_icmp_error(
        &mut self,
        now: Instant,
        error: IcmpError,
        header: &[u8],
        payload: &[u8],
    ) -> bool {
        let Ok(quoted) = Ipv4HeaderSlice::from_slice(header) else {
            self.stats.icmp_errors_suppressed += 1;
            return false;
        };
        let dst_is_broadcast = self.is_broadcast(quoted.destination_addr());
        if !icmp::may_report(&quoted, payload, dst_is_broadcast) || !self.icmp_bucket.take(now) {
            self.stats.icmp_errors_suppressed += 1;
            return false;
        }
        let mut body = Vec::with_capacity(header.len() + QUOTED_PAYLOAD);
        body.extend_from_slice(quoted.slice());
        body.extend_from_slice(&payload[..payload.len().min(QUOTED_PAYLOAD)]);
        let to = quoted.source_addr();
        match self.send_icmp(now, to, error.icmp_type(), &body) {
            Ok(()) => {
                self.stats.icmp_errors_out += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// ICMP port unreachable about `received` (whose payload starts with `payload`), for
    /// the transport layer when no socket is bound (RFC 1122 section 4.1.3.1).
    pub fn send_port_unreachable(
        &mut self,
        now: Instant,
        received: &Received,
        payload: &[u8],
    ) -> bool {
        if received.broadcast {
            self.stats.icmp_errors_suppressed += 1;
            return false;
        }
        let error = IcmpError::DestUnreachable(DestUnreachableHeader::Port);
        self.send_icmp_error(now, error, received.header.as_slice(), payload)
    }

    // ---- receiving ----

    /// Processes arriving packets until one for a registered protocol is found: its
    /// payload replaces the contents of `payload` and its metadata is returned. Echo
    /// requests, ICMP messages, fragments and bad packets are handled (and counted) on
    /// the way. `Ok(None)`: nothing more at `now`. A link error is counted
    /// (`rx_link_errors`) and returned.
    pub fn recv(
        &mut self,
        now: Instant,
        payload: &mut Vec<u8>,
    ) -> Result<Option<Received>, LinkError> {
        let mut buf = std::mem::take(&mut self.rx_buf);
        let result = self.recv_raw(now, &mut buf).map(|got| {
            got.map(|(received, delivered)| {
                match delivered {
                    Delivered::InPlace(range) => {
                        payload.clear();
                        payload.extend_from_slice(&buf[range]);
                    }
                    Delivered::Reassembled(whole) => *payload = whole,
                }
                received
            })
        });
        self.rx_buf = buf;
        result
    }

    /// [`Interface::recv`] without copying the payload: the link reads into `buf` (grown
    /// to the largest datagram on first use and kept by the caller), and the payload of
    /// the packet returned is `buf[range]`. A reassembled datagram replaces `buf`'s
    /// contents. A receive path that parses the payload where the device put it saves a
    /// copy of every byte (the copy showed as most of `memmove`'s 2.7% of the runtime
    /// thread in a profile of a 5-6 Gbit/s TUN receive).
    pub fn recv_in_place(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(Received, std::ops::Range<usize>)>, LinkError> {
        if buf.len() < RX_BUF_LEN {
            buf.resize(RX_BUF_LEN, 0);
        }
        Ok(self
            .recv_raw(now, buf)?
            .map(|(received, delivered)| match delivered {
                Delivered::InPlace(range) => (received, range),
                Delivered::Reassembled(whole) => {
                    *buf = whole;
                    let len = buf.len();
                    (received, 0..len)
                }
            }))
    }

    /// The loop behind [`Interface::recv`] and [`Interface::recv_in_place`]: reads into
    /// `buf` until a datagram for the layer above arrives, says where its payload is.
    fn recv_raw(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(Received, Delivered)>, LinkError> {
        self.expire_fragments(now);
        self.start(now);
        if let Some(arp) = &mut self.arp {
            arp.on_timeout(now, &mut self.stats);
            self.run_arp(now);
        }
        loop {
            match self.link.recv_swap(now, buf) {
                Ok(Some((n, offload))) => {
                    let (range, link_broadcast) = match self.unframe(now, &buf[..n]) {
                        Some(framed) => framed,
                        None => continue,
                    };
                    let trusted = offload.checksum_trusted;
                    let start = range.start;
                    if let Some((received, delivered)) =
                        self.process(now, &buf[range], link_broadcast, trusted)
                    {
                        let delivered = match delivered {
                            Delivered::InPlace(r) => {
                                Delivered::InPlace(start + r.start..start + r.end)
                            }
                            other => other,
                        };
                        return Ok(Some((received, delivered)));
                    }
                }
                Ok(None) => return Ok(None),
                Err(LinkError::BufferTooSmall { .. }) => self.stats.drop(RxDrop::Oversized),
                Err(e) => {
                    self.stats.rx_link_errors += 1;
                    return Err(e);
                }
            }
        }
    }

    /// Where the IPv4 packet is in what the link delivered, and whether it came in a
    /// link-layer broadcast: all of it on an IP link; on Ethernet, the payload of a frame
    /// to us (our MAC or broadcast) of type IPv4. ARP frames are handled here; anything
    /// else is counted and dropped.
    fn unframe(&mut self, now: Instant, frame: &[u8]) -> Option<(std::ops::Range<usize>, bool)> {
        let Some(arp) = &mut self.arp else {
            return Some((0..frame.len(), false));
        };
        self.stats.rx_frames += 1;
        let checked = ethernet::parse(frame).and_then(|f| {
            if f.src.is_multicast() || f.src == arp.mac() {
                Err(RxDrop::EthBadSource)
            } else if f.dst != arp.mac() && !f.dst.is_broadcast() {
                Err(RxDrop::EthNotForUs)
            } else {
                Ok(f)
            }
        });
        let result = match checked {
            Ok(f) if f.ether_type == EtherType::IPV4 => {
                return Some((ethernet::HEADER_LEN..frame.len(), f.dst.is_broadcast()));
            }
            Ok(f) if f.ether_type == EtherType::ARP => arp.receive(now, f.payload, &mut self.stats),
            Ok(_) => Err(RxDrop::EthUnknownType),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = result {
            self.stats.drop(reason);
        }
        self.run_arp(now);
        None
    }

    fn expire_fragments(&mut self, now: Instant) {
        for expired in self.reassembler.expire(now) {
            self.stats.drop(RxDrop::FragmentTimeout);
            // RFC 792: time exceeded code 1 only if fragment zero is available.
            if let Some(first) = expired.first {
                let header_len = Ipv4HeaderSlice::from_slice(&first)
                    .map(|h| h.slice().len())
                    .unwrap_or(first.len());
                let (header, head) = first.split_at(header_len.min(first.len()));
                let error =
                    IcmpError::TimeExceeded(TimeExceededCode::FragmentReassemblyTimeExceeded);
                self.send_icmp_error(now, error, header, head);
            }
        }
    }

    /// One packet from the link. Returns metadata if it is a datagram for the layer above.
    /// A packet may be larger than the MTU: a link with offload hands over coalesced TCP
    /// super-segments of up to 65535 bytes, whose transport checksum it vouches for
    /// (`checksum_trusted`).
    fn process(
        &mut self,
        now: Instant,
        packet: &[u8],
        link_broadcast: bool,
        checksum_trusted: bool,
    ) -> Option<(Received, Delivered)> {
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += packet.len() as u64;
        let ip = match ipv4::parse(packet) {
            Ok(ip) => ip,
            Err(reason) => {
                self.stats.drop(reason);
                return None;
            }
        };
        let (src, dst) = (ip.src(), ip.dst());
        let broadcast = self.is_broadcast(dst);
        if dst != self.cfg.addr.addr && !broadcast {
            self.stats.drop(RxDrop::NotForUs);
            return None;
        }
        if link_broadcast && !broadcast {
            self.stats.drop(RxDrop::LinkBroadcastUnicast);
            return None;
        }
        if !ipv4::is_valid_source(src) || src == self.cfg.addr.addr || self.is_broadcast(src) {
            self.stats.drop(RxDrop::BadSource);
            return None;
        }
        if ipv4::is_martian_source(src) {
            self.stats.drop(RxDrop::MartianSource);
            return None;
        }
        let header = ip.header;
        let protocol = header.protocol();
        let mut header_copy = HeaderCopy::new(header.slice());

        let mut reassembled = None;
        let payload: &[u8] = if ip.is_fragment() {
            self.stats.rx_fragments += 1;
            let key = FragmentKey {
                src,
                dst,
                protocol: protocol.0,
                ident: header.identification(),
            };
            let offset = usize::from(header.fragments_offset().byte_offset());
            match self.reassembler.add(
                now,
                key,
                offset,
                header.more_fragments(),
                ip.payload,
                header.slice(),
            ) {
                Ok(Some(whole)) => {
                    self.stats.reassembled += 1;
                    header_copy = HeaderCopy::new(&whole_header(&header, whole.len()));
                    reassembled.insert(whole)
                }
                Ok(None) => return None,
                Err(reason) => {
                    self.stats.drop(reason);
                    return None;
                }
            }
        } else {
            ip.payload
        };

        if protocol == IpNumber::ICMP {
            self.handle_icmp(now, src, header.ttl(), broadcast, payload);
            return None;
        }
        if !self.protocols.contains(&protocol) {
            self.stats.drop(RxDrop::UnknownProtocol);
            let error = IcmpError::DestUnreachable(DestUnreachableHeader::Protocol);
            self.send_icmp_error(now, error, header_copy.as_slice(), payload);
            return None;
        }
        self.stats.rx_delivered += 1;
        let received = Received {
            src,
            dst,
            protocol,
            ttl: header.ttl(),
            tos: (header.dcp().value() << 2) | header.ecn().value(),
            len: payload.len(),
            broadcast,
            header: header_copy,
            // A reassembled datagram is checked whole; the device vouched for a packet.
            checksum_trusted: checksum_trusted && !ip.is_fragment(),
        };
        let delivered = match reassembled {
            Some(whole) => Delivered::Reassembled(whole),
            None => {
                // `ipv4::parse` cuts the payload at the header length and the total length.
                let start = header.slice().len();
                Delivered::InPlace(start..start + received.len)
            }
        };
        Some((received, delivered))
    }

    fn handle_icmp(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        ttl: u8,
        broadcast: bool,
        message: &[u8],
    ) {
        match icmp::parse(src, ttl, message) {
            Err(reason) => self.stats.drop(reason),
            Ok(Incoming::EchoRequest {
                ident,
                seq,
                payload,
            }) => {
                self.stats.icmp_echo_requests_in += 1;
                if broadcast {
                    self.stats.drop(RxDrop::IcmpBroadcastEcho);
                    return;
                }
                let reply = Icmpv4Type::EchoReply(IcmpEchoHeader { id: ident, seq });
                // RFC 1122 section 3.2.2.6: the reply carries the request's data unchanged.
                if self.send_icmp(now, src, reply, payload).is_ok() {
                    self.stats.icmp_echo_replies_out += 1;
                }
            }
            Ok(Incoming::Event(event)) => {
                match event {
                    IcmpEvent::EchoReply { .. } => self.stats.icmp_echo_replies_in += 1,
                    _ => self.stats.icmp_errors_in += 1,
                }
                if self.icmp_events.len() >= self.cfg.icmp_queue {
                    self.stats.drop(RxDrop::IcmpQueueFull);
                } else {
                    self.icmp_events.push_back(event);
                }
            }
            Ok(Incoming::Other) => self.stats.icmp_other_in += 1,
        }
    }
}

/// What the layers above learn about a packet ARP gave up on: an ICMP destination
/// unreachable, code 1 (host unreachable), from ourselves, as Linux reports a failed
/// neighbour (EHOSTUNREACH). Only the first fragment of a datagram is reported (later
/// ones carry no ports).
fn host_unreachable(us: Ipv4Addr, packet: &[u8]) -> Option<IcmpEvent> {
    let ip = ipv4::parse(packet).ok()?;
    if ip.header.fragments_offset().value() != 0 {
        return None;
    }
    Some(IcmpEvent::DestUnreachable {
        from: us,
        code: CODE_HOST_UNREACHABLE,
        next_hop_mtu: 0,
        original: Original {
            src: ip.src(),
            dst: ip.dst(),
            protocol: ip.header.protocol(),
            ident: ip.header.identification(),
            total_len: ip.header.total_len(),
            head: ip.payload[..ip.payload.len().min(QUOTED_PAYLOAD)].to_vec(),
        },
    })
}

/// ICMP destination unreachable code 1 (RFC 792).
const CODE_HOST_UNREACHABLE: u8 = 1;

/// The header of a reassembled datagram: that of the fragment which completed it, with
/// the fragment fields cleared and the total length of the whole.
fn whole_header(fragment: &Ipv4HeaderSlice<'_>, payload_len: usize) -> Vec<u8> {
    let mut h: Ipv4Header = fragment.to_header();
    h.more_fragments = false;
    h.fragment_offset = etherparse::IpFragOffset::ZERO;
    let _ = h.set_payload_len(payload_len);
    h.header_checksum = h.calc_header_checksum();
    h.to_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arp::{arp_packet, NeighbourState};
    use etherparse::{ArpEthIpv4Packet, ArpOperation};
    use proptest::prelude::*;
    use ustack_link::{SimConfig, SimLink};

    const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const T0: Instant = Instant::ZERO;

    /// An IP link with segmentation and large-receive offload, as a TUN device opened
    /// with IFF_VNET_HDR: it records what it is given and hands over what a test queues.
    struct OffloadLink {
        sent: Vec<(Vec<u8>, u16)>,
        arriving: VecDeque<(Vec<u8>, ustack_link::RxOffload)>,
    }

    impl Link for OffloadLink {
        fn medium(&self) -> Medium {
            Medium::Ip
        }
        fn mtu(&self) -> usize {
            1500
        }
        fn send(&mut self, now: Instant, packet: &[u8]) -> Result<ustack_link::TxInfo, LinkError> {
            self.send_offload(now, packet, 0)
        }
        fn send_offload(
            &mut self,
            _now: Instant,
            packet: &[u8],
            segment_size: u16,
        ) -> Result<ustack_link::TxInfo, LinkError> {
            self.sent.push((packet.to_vec(), segment_size));
            Ok(ustack_link::TxInfo::default())
        }
        fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
            Ok(self.recv_offload(now, buf)?.map(|(n, _)| n))
        }
        fn recv_offload(
            &mut self,
            _now: Instant,
            buf: &mut [u8],
        ) -> Result<Option<(usize, ustack_link::RxOffload)>, LinkError> {
            Ok(self.arriving.pop_front().map(|(p, offload)| {
                buf[..p.len()].copy_from_slice(&p);
                (p.len(), offload)
            }))
        }
        fn poll_at(&self, _now: Instant) -> Option<Instant> {
            None
        }
        fn capabilities(&self) -> ustack_link::Capabilities {
            ustack_link::Capabilities { tso_max: 65535 }
        }
    }

    fn offload_iface() -> Interface<OffloadLink> {
        let link = OffloadLink {
            sent: Vec::new(),
            arriving: VecDeque::new(),
        };
        Interface::new(link, Config::new("198.18.0.1/24".parse().unwrap()))
    }

    /// TSO: a TCP datagram larger than the MTU, marked for segmentation, goes whole to a
    /// link that segments, with its segment size and Don't Fragment kept; unmarked, or
    /// larger than the link segments, it is the RFC 1191 "needs fragmentation" of a DF
    /// datagram as before, and a non-TCP one is never segmented.
    #[test]
    fn a_tso_datagram_goes_whole_to_a_segmenting_link() {
        let mut iface = offload_iface();
        let tso = SendOptions {
            dont_fragment: true,
            tso_segment: 1448,
            ..SendOptions::default()
        };
        let payload = vec![0x11; 20_000];
        iface
            .send_with(T0, PEER, IpNumber::TCP, &tso, &payload)
            .unwrap();
        let (packet, size) = iface.link_mut().sent.pop().unwrap();
        assert_eq!(size, 1448);
        let ip = ipv4::parse(&packet).unwrap();
        assert_eq!(ip.payload, &payload[..]);
        assert!(ip.header.dont_fragment());
        let plain = SendOptions {
            tso_segment: 0,
            ..tso
        };
        for (opts, protocol, len) in [
            (plain, IpNumber::TCP, 20_000),
            (tso, IpNumber::UDP, 20_000),
            (tso, IpNumber::TCP, 65_516),
        ] {
            assert!(iface
                .send_with(T0, PEER, protocol, &opts, &vec![0; len])
                .is_err());
        }
        assert!(iface.link().sent.is_empty());
        // A small segment marked for TSO is an ordinary packet.
        iface
            .send_with(T0, PEER, IpNumber::TCP, &tso, &[1; 100])
            .unwrap();
        assert_eq!(iface.link_mut().sent.pop().unwrap().1, 0);
    }

    /// `send_prebuilt` puts the same datagram on the link as `send_with` (header written
    /// into the frame's room, identification counting on); what does not fit in one
    /// packet, or a frame without the room, takes the copying path.
    #[test]
    fn a_prebuilt_frame_goes_out_as_send_with_would_send_it() {
        let mut iface = offload_iface();
        let opts = SendOptions {
            dont_fragment: true,
            ..SendOptions::default()
        };
        let payload: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        iface
            .send_with(T0, PEER, IpNumber::TCP, &opts, &payload)
            .unwrap();
        assert_eq!(iface.tx_headroom(), MIN_HEADER_LEN);
        let mut frame = vec![0; MIN_HEADER_LEN];
        frame.extend_from_slice(&payload);
        iface
            .send_prebuilt(T0, PEER, IpNumber::TCP, &opts, &mut frame)
            .unwrap();
        let sent: Vec<_> = iface.link_mut().sent.drain(..).collect();
        let [(copied, 0), (built, 0)] = &sent[..] else {
            panic!("expected two plain packets, got {}", sent.len());
        };
        let (copied, built) = (ipv4::parse(copied).unwrap(), ipv4::parse(built).unwrap());
        assert_eq!(built.payload, &payload[..]);
        assert_eq!(
            built.header.identification(),
            copied.header.identification().wrapping_add(1)
        );
        let mut expected = copied.header.to_header();
        expected.identification = built.header.identification();
        expected.header_checksum = expected.calc_header_checksum();
        assert_eq!(built.header.to_header(), expected);
        // Too big for one packet without DF: fragments, as send_with makes them.
        let mut frame = vec![0; MIN_HEADER_LEN + 3000];
        iface
            .send_prebuilt(T0, PEER, IpNumber::UDP, &SendOptions::default(), &mut frame)
            .unwrap();
        assert!(iface.link().sent.len() > 1);
        assert_eq!(iface.stats().tx_fragmented, 1);
        iface.link_mut().sent.clear();
        // No room: the whole frame is the payload.
        let mut frame = vec![7; 5];
        iface
            .send_prebuilt(T0, PEER, IpNumber::UDP, &opts, &mut frame)
            .unwrap();
        let (packet, _) = iface.link_mut().sent.pop().unwrap();
        assert_eq!(ipv4::parse(&packet).unwrap().payload, &[7; 5][..]);
        // With DF and too big it is the same error as send_with's.
        let mut frame = vec![0; MIN_HEADER_LEN + 3000];
        assert!(matches!(
            iface.send_prebuilt(T0, PEER, IpNumber::TCP, &opts, &mut frame),
            Err(SendError::NeedsFragmentation { .. })
        ));
    }

    /// GRO: a coalesced TCP datagram larger than the MTU is delivered whole, and the
    /// device's word on its checksum goes up with it (and only for what the device said).
    #[test]
    fn a_coalesced_datagram_is_delivered_with_the_devices_checksum_word() {
        let mut iface = offload_iface();
        iface.accept_protocol(IpNumber::TCP);
        let big = vec![0x22; 30_000];
        for trusted in [true, false] {
            let offload = ustack_link::RxOffload {
                checksum_trusted: trusted,
                segment_size: 1448,
            };
            iface
                .link_mut()
                .arriving
                .push_back((datagram(PEER, US, IpNumber::TCP, &big), offload));
            let mut out = Vec::new();
            let r = iface.recv(T0, &mut out).unwrap().unwrap();
            assert_eq!((r.len, r.checksum_trusted), (30_000, trusted));
            assert_eq!(out, big);
        }
    }

    /// Send errors are values the layers above can keep: cloned, compared, with the
    /// link failure as their source.
    #[test]
    fn send_errors_clone_and_compare_link_failures() {
        let io = |msg: &str| SendError::from(LinkError::Io(std::io::Error::other(msg)));
        let gone = io("gone");
        assert_eq!(gone.clone(), gone);
        assert_eq!(io("gone"), gone);
        assert_ne!(io("busy"), gone);
        assert_ne!(
            SendError::from(LinkError::Closed),
            SendError::from(LinkError::WouldBlock)
        );
        assert_eq!(gone.to_string(), "link error: gone");
        let source = std::error::Error::source(&gone).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("gone"));
    }

    /// Our interface, and the raw far end of its link to inject and capture packets.
    fn setup(mtu: usize) -> (Interface<SimLink>, SimLink) {
        let (a, b) = SimLink::pair(SimConfig::default().with_mtu(mtu), 1).unwrap();
        let iface = Interface::new(a, Config::new("198.18.0.1/24".parse().unwrap()));
        (iface, b)
    }

    fn datagram(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpNumber, payload: &[u8]) -> Vec<u8> {
        let fields = HeaderFields {
            src,
            dst,
            protocol,
            ttl: 64,
            ident: 99,
            dont_fragment: false,
            tos: 0,
        };
        let mut p = fields
            .build(payload.len(), 0, false)
            .unwrap()
            .to_bytes()
            .to_vec();
        p.extend_from_slice(payload);
        p
    }

    fn icmp_message(t: Icmpv4Type, payload: &[u8]) -> Vec<u8> {
        let mut m = Icmpv4Header::with_checksum(t, payload).to_bytes().to_vec();
        m.extend_from_slice(payload);
        m
    }

    /// Everything the interface put on the wire.
    fn sent(peer: &mut SimLink) -> Vec<Vec<u8>> {
        sent_at(peer, T0)
    }

    fn pump(iface: &mut Interface<SimLink>) -> Vec<(Received, Vec<u8>)> {
        let mut out = Vec::new();
        let mut payload = Vec::new();
        while let Some(r) = iface.recv(T0, &mut payload).unwrap() {
            out.push((r, payload.clone()));
        }
        out
    }

    #[test]
    fn echo_request_gets_the_exact_reply() {
        let (mut iface, mut peer) = setup(1500);
        let req = icmp_message(
            Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 3 }),
            b"abcdef",
        );
        peer.send(T0, &datagram(PEER, US, IpNumber::ICMP, &req))
            .unwrap();
        assert!(pump(&mut iface).is_empty());
        let out = sent(&mut peer);
        assert_eq!(out.len(), 1);
        let ip = ipv4::parse(&out[0]).unwrap();
        assert_eq!(
            (ip.src(), ip.dst(), ip.header.protocol()),
            (US, PEER, IpNumber::ICMP)
        );
        let expected = icmp_message(
            Icmpv4Type::EchoReply(IcmpEchoHeader { id: 7, seq: 3 }),
            b"abcdef",
        );
        assert_eq!(ip.payload, &expected[..]);
        assert_eq!(iface.stats().icmp_echo_replies_out, 1);
    }

    #[test]
    fn ping_round_trip_between_two_interfaces() {
        let (a, b) = SimLink::pair(SimConfig::default(), 1).unwrap();
        let mut x = Interface::new(a, Config::new("198.18.0.1/24".parse().unwrap()));
        let mut y = Interface::new(b, Config::new("198.18.0.2/24".parse().unwrap()));
        x.send_echo_request(T0, PEER, 1, 1, &[0x5a; 3000]).unwrap();
        assert_eq!(x.stats().tx_fragmented, 1);
        pump(&mut y);
        assert_eq!(y.stats().reassembled, 1);
        pump(&mut x);
        match x.poll_icmp() {
            Some(IcmpEvent::EchoReply {
                from,
                ident: 1,
                seq: 1,
                payload,
                ..
            }) => {
                assert_eq!(from, PEER);
                assert_eq!(payload, vec![0x5a; 3000]);
            }
            other => panic!("expected an echo reply, got {other:?}"),
        }
    }

    #[test]
    fn registered_protocol_is_delivered_and_others_get_protocol_unreachable() {
        let (mut iface, mut peer) = setup(1500);
        iface.accept_protocol(IpNumber::UDP);
        peer.send(T0, &datagram(PEER, US, IpNumber::UDP, b"for udp"))
            .unwrap();
        peer.send(T0, &datagram(PEER, US, IpNumber(253), b"experimental"))
            .unwrap();
        let got = pump(&mut iface);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.protocol, IpNumber::UDP);
        assert_eq!(got[0].1, b"for udp");
        assert_eq!(iface.stats().dropped(RxDrop::UnknownProtocol), 1);
        let out = sent(&mut peer);
        assert_eq!(out.len(), 1);
        let ip = ipv4::parse(&out[0]).unwrap();
        match icmp::parse(US, 64, ip.payload) {
            Ok(Incoming::Event(IcmpEvent::DestUnreachable {
                code: 2, original, ..
            })) => {
                assert_eq!(original.protocol, IpNumber(253));
                assert_eq!(original.head, b"experime");
            }
            _ => panic!("expected protocol unreachable"),
        }
    }

    #[test]
    fn port_unreachable_quotes_the_datagram() {
        let (mut iface, mut peer) = setup(1500);
        iface.accept_protocol(IpNumber::UDP);
        peer.send(
            T0,
            &datagram(PEER, US, IpNumber::UDP, b"\x30\x39\x00\x07rest"),
        )
        .unwrap();
        let (r, payload) = pump(&mut iface).pop().unwrap();
        assert!(iface.send_port_unreachable(T0, &r, &payload));
        let out = sent(&mut peer);
        let ip = ipv4::parse(&out[0]).unwrap();
        assert_eq!(&ip.payload[..2], &[3, 3]);
        assert_eq!(&ip.payload[8..28], r.header.as_slice());
        assert_eq!(&ip.payload[28..], b"\x30\x39\x00\x07rest");
    }

    #[test]
    fn errors_about_errors_and_broadcasts_are_never_sent() {
        let (mut iface, mut peer) = setup(1500);
        // An ICMP error of unknown shape to us: no error about an error.
        let err = icmp_message(
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            &datagram(US, PEER, IpNumber::UDP, b"12345678"),
        );
        peer.send(T0, &datagram(PEER, US, IpNumber::ICMP, &err))
            .unwrap();
        // Unknown protocol to the subnet broadcast: dropped silently.
        peer.send(
            T0,
            &datagram(PEER, Ipv4Addr::new(198, 18, 0, 255), IpNumber(253), b"x"),
        )
        .unwrap();
        // Broadcast echo: ignored.
        let req = icmp_message(
            Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 1 }),
            b"",
        );
        peer.send(
            T0,
            &datagram(PEER, Ipv4Addr::BROADCAST, IpNumber::ICMP, &req),
        )
        .unwrap();
        pump(&mut iface);
        assert!(sent(&mut peer).is_empty());
        assert_eq!(iface.stats().icmp_errors_in, 1);
        assert_eq!(iface.stats().icmp_errors_suppressed, 1);
        assert_eq!(iface.stats().dropped(RxDrop::IcmpBroadcastEcho), 1);
        assert!(matches!(
            iface.poll_icmp(),
            Some(IcmpEvent::DestUnreachable { code: 3, .. })
        ));
    }

    #[test]
    fn bad_packets_are_counted_by_reason() {
        let (mut iface, mut peer) = setup(1500);
        iface.accept_protocol(IpNumber::UDP);
        let good = datagram(PEER, US, IpNumber::UDP, b"ok");
        let mut bad_sum = good.clone();
        bad_sum[10] ^= 0xff;
        let cases = [
            (vec![0x45, 0, 0], RxDrop::Truncated),
            (bad_sum, RxDrop::BadChecksum),
            (
                datagram(PEER, Ipv4Addr::new(198, 18, 0, 9), IpNumber::UDP, b"x"),
                RxDrop::NotForUs,
            ),
            (
                datagram(Ipv4Addr::new(224, 0, 0, 1), US, IpNumber::UDP, b"x"),
                RxDrop::BadSource,
            ),
            (datagram(US, US, IpNumber::UDP, b"x"), RxDrop::BadSource),
        ];
        for (packet, _) in &cases {
            peer.send(T0, packet).unwrap();
        }
        assert!(pump(&mut iface).is_empty());
        for (_, reason) in &cases {
            assert!(iface.stats().dropped(*reason) >= 1, "{reason}");
        }
        assert_eq!(iface.stats().total_dropped(), cases.len() as u64);
    }

    /// RFC 1122 section 3.2.1.7: a host that does not forward must not drop a datagram
    /// addressed to it because its TTL is 0 or 1 (the TTL limits forwarding, not delivery).
    #[test]
    fn ttl_zero_and_one_to_us_are_delivered_rfc1122_3_2_1_7() {
        let (mut iface, mut peer) = setup(1500);
        iface.accept_protocol(IpNumber::UDP);
        for ttl in [0, 1] {
            let fields = HeaderFields {
                src: PEER,
                dst: US,
                protocol: IpNumber::UDP,
                ttl,
                ident: 5,
                dont_fragment: false,
                tos: 0,
            };
            let mut p = fields.build(3, 0, false).unwrap().to_bytes().to_vec();
            p.extend_from_slice(b"ttl");
            peer.send(T0, &p).unwrap();
        }
        let got = pump(&mut iface);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.ttl, got[1].0.ttl), (0, 1));
        assert_eq!(iface.stats().total_dropped(), 0);
    }

    /// RFC 1122 section 3.2.1.3: sources in 0.0.0.0/8 ("this network") and 127.0.0.0/8
    /// (loopback) never appear on a wire; such datagrams are dropped and counted.
    #[test]
    fn martian_sources_are_dropped_rfc1122_3_2_1_3() {
        let (mut iface, mut peer) = setup(1500);
        iface.accept_protocol(IpNumber::UDP);
        for src in [
            Ipv4Addr::new(0, 1, 2, 3),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(127, 9, 9, 9),
        ] {
            peer.send(T0, &datagram(src, US, IpNumber::UDP, b"x"))
                .unwrap();
        }
        peer.send(T0, &datagram(PEER, US, IpNumber::UDP, b"ok"))
            .unwrap();
        let got = pump(&mut iface);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"ok");
        assert_eq!(iface.stats().dropped(RxDrop::MartianSource), 3);
        assert_eq!(iface.stats().total_dropped(), 3);
    }

    #[test]
    fn a_gateway_must_be_a_host_on_our_network() {
        let cfg = || Config::new("198.18.0.1/24".parse().unwrap());
        let gw = Ipv4Addr::new(198, 18, 0, 254);
        assert_eq!(cfg().with_gateway(gw).unwrap().gateway, Some(gw));
        let far = Ipv4Addr::new(198, 19, 0, 1);
        assert!(matches!(
            cfg().with_gateway(far),
            Err(GatewayError::OffNetwork { .. })
        ));
        assert_eq!(cfg().with_gateway(US), Err(GatewayError::OurAddress(US)));
        for bad in ["198.18.0.0", "198.18.0.255", "255.255.255.255", "224.0.0.1"] {
            let bad: Ipv4Addr = bad.parse().unwrap();
            assert_eq!(cfg().with_gateway(bad), Err(GatewayError::NotAHost(bad)));
        }
        let err = cfg().with_gateway(far).unwrap_err().to_string();
        assert_eq!(
            err,
            "gateway 198.19.0.1 is not on our network 198.18.0.0/24; a gateway must be a neighbour"
        );
    }

    #[test]
    fn send_errors_are_typed() {
        let (mut iface, _peer) = setup(576);
        assert!(matches!(
            iface.send(T0, Ipv4Addr::new(198, 19, 0, 1), IpNumber::UDP, b"x"),
            Err(SendError::NoRoute(_))
        ));
        let opts = SendOptions {
            dont_fragment: true,
            ..SendOptions::default()
        };
        assert!(matches!(
            iface.send_with(T0, PEER, IpNumber::UDP, &opts, &[0; 1000]),
            Err(SendError::NeedsFragmentation {
                len: 1020,
                mtu: 576
            })
        ));
        assert!(matches!(
            iface.send(T0, PEER, IpNumber::UDP, &[0; 65520]),
            Err(SendError::DatagramTooLarge { .. })
        ));
        iface
            .routes_mut()
            .set_default_gateway(Ipv4Addr::new(198, 18, 0, 254));
        iface
            .send(T0, Ipv4Addr::new(198, 19, 0, 1), IpNumber::UDP, b"x")
            .unwrap();
    }

    #[test]
    fn fragments_fit_the_mtu_and_incomplete_datagrams_time_out() {
        let (mut iface, mut peer) = setup(576);
        iface.send(T0, PEER, IpNumber::UDP, &[1; 2000]).unwrap();
        let frags = sent(&mut peer);
        assert_eq!(frags.len(), 4);
        assert!(frags.iter().all(|f| f.len() <= 576));
        // Deliver all but the last fragment back to the interface, swapping addresses.
        let (a, b) = SimLink::pair(SimConfig::default().with_mtu(576), 1).unwrap();
        let mut rx = Interface::new(a, Config::new("198.18.0.2/24".parse().unwrap()));
        let mut tx_end = b;
        for f in &frags[..3] {
            tx_end.send(T0, f).unwrap();
        }
        let mut payload = Vec::new();
        assert_eq!(rx.recv(T0, &mut payload).unwrap(), None);
        assert_eq!(rx.poll_at(T0), Some(Instant::from_secs(30)));
        assert_eq!(rx.recv(Instant::from_secs(30), &mut payload).unwrap(), None);
        assert_eq!(rx.stats().dropped(RxDrop::FragmentTimeout), 1);
        // Time exceeded, code 1, back to the sender.
        let mut buf = [0u8; 1500];
        let n = tx_end
            .recv(Instant::from_secs(30), &mut buf)
            .unwrap()
            .unwrap();
        let ip = ipv4::parse(&buf[..n]).unwrap();
        assert_eq!(&ip.payload[..2], &[11, 1]);
    }

    /// `recv_in_place` hands out the same datagrams as `recv`: a whole packet's payload
    /// where the link put it, a reassembled one (RFC 791 section 3.2) in the buffer.
    #[test]
    fn in_place_receive_points_at_the_payload_and_carries_reassembled_datagrams() {
        let (mut iface, mut peer) = setup(1500);
        iface.accept_protocol(IpNumber::UDP);
        peer.send(T0, &datagram(PEER, US, IpNumber::UDP, b"in place"))
            .unwrap();
        let mut buf = Vec::new();
        let (r, at) = iface.recv_in_place(T0, &mut buf).unwrap().unwrap();
        assert_eq!((r.src, r.protocol, r.len), (PEER, IpNumber::UDP, 8));
        assert_eq!(at.start, ipv4::MIN_HEADER_LEN);
        assert_eq!(&buf[at], b"in place");
        assert_eq!(iface.recv_in_place(T0, &mut buf).unwrap(), None);

        // Fragments of 2000 bytes at MTU 576, sent back with the addresses swapped.
        let (mut tx, mut tx_peer) = setup(576);
        let body: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        tx.send(T0, PEER, IpNumber::UDP, &body).unwrap();
        let frags = sent(&mut tx_peer);
        assert_eq!(frags.len(), 4);
        let (a, mut b) = SimLink::pair(SimConfig::default().with_mtu(576), 1).unwrap();
        let mut rx = Interface::new(a, Config::new("198.18.0.2/24".parse().unwrap()));
        rx.accept_protocol(IpNumber::UDP);
        for f in &frags {
            b.send(T0, f).unwrap();
        }
        let (r, at) = rx.recv_in_place(T0, &mut buf).unwrap().unwrap();
        assert_eq!(r.len, 2000);
        assert_eq!(&buf[at], &body[..]);
        assert_eq!(rx.stats().reassembled, 1);
        // The buffer grows back for the next packet after a reassembled datagram.
        b.send(T0, &datagram(US, PEER, IpNumber::UDP, b"next"))
            .unwrap();
        let (_, at) = rx.recv_in_place(T0, &mut buf).unwrap().unwrap();
        assert_eq!(&buf[at], b"next");
    }

    // ---- Ethernet and ARP ----

    const US_MAC: MacAddr = MacAddr([0x02, 0, 0xc6, 0x12, 0, 0x01]);
    const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0xc6, 0x12, 0, 0x02]);

    /// Our interface on an Ethernet link, and the raw far end (the peer's wire).
    fn eth_setup() -> (Interface<SimLink>, SimLink) {
        let (a, b) = SimLink::pair(SimConfig::default().ethernet(), 1).unwrap();
        let mut cfg = Config::new("198.18.0.1/24".parse().unwrap());
        cfg.mac = Some(US_MAC);
        let mut iface = Interface::new(a, cfg);
        iface.accept_protocol(IpNumber::UDP);
        (iface, b)
    }

    fn frame(dst: MacAddr, src: MacAddr, ether_type: EtherType, payload: &[u8]) -> Vec<u8> {
        let mut f = ethernet::header(dst, src, ether_type).to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn arp_frame(dst: MacAddr, p: &ArpEthIpv4Packet) -> Vec<u8> {
        frame(dst, MacAddr(p.sender_mac), EtherType::ARP, &p.to_bytes())
    }

    /// A frame on the peer's wire, decoded: (destination, source, ARP packet or IPv4).
    #[derive(Debug, PartialEq)]
    enum Wire {
        Arp(MacAddr, ArpEthIpv4Packet),
        Ip(MacAddr, Vec<u8>),
    }

    fn wire(frames: Vec<Vec<u8>>) -> Vec<Wire> {
        frames
            .iter()
            .map(|f| {
                let e = ethernet::parse(f).unwrap();
                assert_eq!(e.src, US_MAC);
                match e.ether_type {
                    EtherType::ARP => Wire::Arp(e.dst, crate::arp::validate(e.payload).unwrap()),
                    EtherType::IPV4 => Wire::Ip(e.dst, e.payload.to_vec()),
                    other => panic!("unexpected EtherType {other:?}"),
                }
            })
            .collect()
    }

    fn announcement() -> Wire {
        Wire::Arp(
            MacAddr::BROADCAST,
            arp_packet(ArpOperation::REQUEST, (US_MAC, US), (MacAddr::ZERO, US)),
        )
    }

    fn sent_at(peer: &mut SimLink, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65535];
        while let Some(n) = peer.recv(now, &mut buf).unwrap() {
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// RFC 826 "Packet Reception": a request for our address is answered with a reply
    /// to the requester, and the requester is learned ("merge", then add).
    #[test]
    fn arp_request_for_us_is_answered_and_the_requester_learned_rfc826() {
        let (mut iface, mut peer) = eth_setup();
        let req = arp_packet(ArpOperation::REQUEST, (PEER_MAC, PEER), (MacAddr::ZERO, US));
        peer.send(T0, &arp_frame(MacAddr::BROADCAST, &req)).unwrap();
        assert!(pump(&mut iface).is_empty());
        let reply = arp_packet(ArpOperation::REPLY, (US_MAC, US), (PEER_MAC, PEER));
        assert_eq!(
            wire(sent(&mut peer)),
            vec![announcement(), Wire::Arp(PEER_MAC, reply)]
        );
        let arp = iface.arp().unwrap();
        assert_eq!(
            arp.neighbour(T0, PEER),
            Some(NeighbourState::Stale(PEER_MAC))
        );
        assert_eq!(iface.stats().arp_replies_out, 1);
        assert_eq!(iface.stats().total_dropped(), 0);
    }

    /// RFC 826: on a miss, the packet waits and a broadcast request goes out; the reply
    /// releases the packet in a frame to the learned address.
    #[test]
    fn send_on_a_miss_requests_and_the_reply_releases_the_packet_rfc826() {
        let (mut iface, mut peer) = eth_setup();
        iface.send(T0, PEER, IpNumber::UDP, b"hello").unwrap();
        let request = arp_packet(ArpOperation::REQUEST, (US_MAC, US), (MacAddr::ZERO, PEER));
        assert_eq!(
            wire(sent(&mut peer)),
            vec![announcement(), Wire::Arp(MacAddr::BROADCAST, request)]
        );
        assert_eq!(
            iface.arp().unwrap().neighbour(T0, PEER),
            Some(NeighbourState::Incomplete)
        );
        let reply = arp_packet(ArpOperation::REPLY, (PEER_MAC, PEER), (US_MAC, US));
        peer.send(T0, &arp_frame(US_MAC, &reply)).unwrap();
        pump(&mut iface);
        let out = wire(sent(&mut peer));
        assert_eq!(out.len(), 1);
        let Wire::Ip(dst, packet) = &out[0] else {
            panic!("expected the IPv4 packet, got {out:?}");
        };
        assert_eq!(*dst, PEER_MAC);
        let ip = ipv4::parse(packet).unwrap();
        assert_eq!((ip.src(), ip.dst(), ip.payload), (US, PEER, &b"hello"[..]));
        assert_eq!(
            iface.arp().unwrap().neighbour(T0, PEER),
            Some(NeighbourState::Reachable(PEER_MAC))
        );
        // Resolved: the next packet goes straight out.
        iface.send(T0, PEER, IpNumber::UDP, b"again").unwrap();
        assert!(matches!(&wire(sent(&mut peer))[..], [Wire::Ip(d, _)] if *d == PEER_MAC));
        assert_eq!(iface.stats().arp_resolved, 1);
        assert_eq!(iface.stats().tx_packets, 2);
    }

    /// On Ethernet the room is for both headers: a prebuilt datagram waits for ARP like
    /// any other (RFC 826) and leaves in a frame to the learned address.
    #[test]
    fn a_prebuilt_frame_on_ethernet_waits_for_arp_and_leaves_framed() {
        let (mut iface, mut peer) = eth_setup();
        let headroom = iface.tx_headroom();
        assert_eq!(headroom, ethernet::HEADER_LEN + MIN_HEADER_LEN);
        let opts = SendOptions::default();
        for payload in [&b"first"[..], &b"second"[..]] {
            let mut frame = vec![0xee; headroom];
            frame.extend_from_slice(payload);
            iface
                .send_prebuilt(T0, PEER, IpNumber::UDP, &opts, &mut frame)
                .unwrap();
            if payload == b"first" {
                let reply = arp_packet(ArpOperation::REPLY, (PEER_MAC, PEER), (US_MAC, US));
                peer.send(T0, &arp_frame(US_MAC, &reply)).unwrap();
                pump(&mut iface);
            }
            let out = wire(sent(&mut peer));
            let Some(Wire::Ip(dst, packet)) = out.last() else {
                panic!("expected the IPv4 packet last, got {out:?}");
            };
            assert_eq!(*dst, PEER_MAC);
            let ip = ipv4::parse(packet).unwrap();
            assert_eq!((ip.src(), ip.dst(), ip.payload), (US, PEER, payload));
        }
        assert_eq!(iface.stats().tx_packets, 2);
    }

    /// RFC 894: IPv4 in frames to our MAC or to broadcast is received; frames to other
    /// stations and unknown EtherTypes are dropped and counted.
    #[test]
    fn frames_to_us_and_broadcast_are_received_others_counted_rfc894() {
        let (mut iface, mut peer) = eth_setup();
        let d = datagram(PEER, US, IpNumber::UDP, b"to us");
        let all = datagram(
            PEER,
            Ipv4Addr::new(198, 18, 0, 255),
            IpNumber::UDP,
            b"to us",
        );
        let other = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
        peer.send(T0, &frame(US_MAC, PEER_MAC, EtherType::IPV4, &d))
            .unwrap();
        peer.send(
            T0,
            &frame(MacAddr::BROADCAST, PEER_MAC, EtherType::IPV4, &all),
        )
        .unwrap();
        peer.send(T0, &frame(other, PEER_MAC, EtherType::IPV4, &d))
            .unwrap();
        peer.send(T0, &frame(US_MAC, PEER_MAC, EtherType::IPV6, &d))
            .unwrap();
        peer.send(T0, &frame(US_MAC, MacAddr::BROADCAST, EtherType::IPV4, &d))
            .unwrap();
        peer.send(T0, &frame(US_MAC, US_MAC, EtherType::IPV4, &d))
            .unwrap();
        peer.send(T0, &d[..10]).unwrap();
        let got = pump(&mut iface);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(_, p)| p == b"to us"));
        let s = iface.stats();
        assert_eq!(s.rx_frames, 7);
        assert_eq!(s.dropped(RxDrop::EthNotForUs), 1);
        assert_eq!(s.dropped(RxDrop::EthUnknownType), 1);
        assert_eq!(s.dropped(RxDrop::EthBadSource), 2);
        assert_eq!(s.dropped(RxDrop::EthTruncated), 1);
        assert_eq!(s.total_dropped(), 5);
    }

    /// RFC 1122 section 3.3.6: a datagram received in a link-layer broadcast must have
    /// an IP broadcast or multicast destination; one to our unicast address is
    /// discarded (and counted).
    #[test]
    fn unicast_datagrams_in_link_broadcasts_are_discarded_rfc1122_3_3_6() {
        let (mut iface, mut peer) = eth_setup();
        let d = datagram(PEER, US, IpNumber::UDP, b"sneaky");
        peer.send(
            T0,
            &frame(MacAddr::BROADCAST, PEER_MAC, EtherType::IPV4, &d),
        )
        .unwrap();
        assert!(pump(&mut iface).is_empty());
        assert_eq!(iface.stats().dropped(RxDrop::LinkBroadcastUnicast), 1);
    }

    #[test]
    fn ping_round_trip_over_ethernet_resolves_both_ways() {
        let (a, b) = SimLink::pair(SimConfig::default().ethernet(), 1).unwrap();
        let mut x = Interface::new(a, Config::new("198.18.0.1/24".parse().unwrap()));
        let mut y = Interface::new(b, Config::new("198.18.0.2/24".parse().unwrap()));
        x.send_echo_request(T0, PEER, 1, 1, &[0x5a; 3000]).unwrap();
        for _ in 0..4 {
            pump(&mut y);
            pump(&mut x);
        }
        match x.poll_icmp() {
            Some(IcmpEvent::EchoReply { from, payload, .. }) => {
                assert_eq!(from, PEER);
                assert_eq!(payload, vec![0x5a; 3000]);
            }
            other => panic!("expected an echo reply, got {other:?}"),
        }
        assert_eq!(y.stats().reassembled, 1);
        // y learned x from its request, so only x had to ask.
        assert_eq!(
            (x.stats().arp_requests_out, y.stats().arp_requests_out),
            (1, 0)
        );
        // x's announcement reached y before y knew x: a gratuitous ARP about a stranger.
        assert_eq!(x.stats().total_dropped(), 0);
        assert_eq!(y.stats().dropped(RxDrop::ArpNotForUs), 1);
        assert_eq!(y.stats().total_dropped(), 1);
    }

    /// A lost request is retried a second later (RFC 826 leaves retries to the host;
    /// Linux sends 3, 1 s apart); with no answer at all the waiting packet is dropped and
    /// the layer above hears ICMP host unreachable (code 1) about it, as a Linux socket
    /// gets EHOSTUNREACH.
    #[test]
    fn lost_requests_are_retried_and_silence_is_host_unreachable() {
        let (mut iface, mut peer) = eth_setup();
        iface
            .send(T0, PEER, IpNumber::UDP, b"\x30\x39\x00\x35data")
            .unwrap();
        let request = || {
            Wire::Arp(
                MacAddr::BROADCAST,
                arp_packet(ArpOperation::REQUEST, (US_MAC, US), (MacAddr::ZERO, PEER)),
            )
        };
        assert_eq!(wire(sent(&mut peer)), vec![announcement(), request()]);
        assert_eq!(iface.poll_at(T0), Some(Instant::from_secs(1)));
        for t in [1, 2] {
            let now = Instant::from_secs(t);
            assert_eq!(iface.recv(now, &mut Vec::new()).unwrap(), None);
            assert_eq!(wire(sent_at(&mut peer, now)), vec![request()], "at {t} s");
        }
        let now = Instant::from_secs(3);
        assert_eq!(iface.recv(now, &mut Vec::new()).unwrap(), None);
        assert!(sent_at(&mut peer, now).is_empty());
        match iface.poll_icmp() {
            Some(IcmpEvent::DestUnreachable {
                from,
                code: 1,
                original,
                ..
            }) => {
                assert_eq!(
                    (from, original.dst, original.protocol),
                    (US, PEER, IpNumber::UDP)
                );
                assert_eq!(original.head, b"\x30\x39\x00\x35data");
            }
            other => panic!("expected host unreachable, got {other:?}"),
        }
        let s = iface.stats();
        assert_eq!(
            (s.arp_requests_out, s.arp_failed, s.arp_unresolved_dropped),
            (3, 1, 1)
        );
        assert_eq!(s.tx_packets, 0);
        assert_eq!(iface.poll_at(now), None);
    }

    /// RFC 1122 section 3.3.1: a destination off our network is reached through the
    /// default gateway: the frame goes to the gateway's MAC address (resolved by ARP),
    /// the IPv4 destination stays the far host.
    #[test]
    fn off_network_packets_go_to_the_gateway_mac_rfc1122_3_3_1() {
        let gateway = Ipv4Addr::new(198, 18, 0, 254);
        let far = Ipv4Addr::new(198, 19, 7, 7);
        let gw_mac = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
        let (a, mut peer) = SimLink::pair(SimConfig::default().ethernet(), 1).unwrap();
        let mut cfg = Config::new("198.18.0.1/24".parse().unwrap());
        cfg.mac = Some(US_MAC);
        cfg.gateway = Some(gateway);
        let mut iface = Interface::new(a, cfg);
        iface.send(T0, far, IpNumber::UDP, b"far away").unwrap();
        let ask = arp_packet(
            ArpOperation::REQUEST,
            (US_MAC, US),
            (MacAddr::ZERO, gateway),
        );
        assert_eq!(
            wire(sent(&mut peer)),
            vec![announcement(), Wire::Arp(MacAddr::BROADCAST, ask)]
        );
        let reply = arp_packet(ArpOperation::REPLY, (gw_mac, gateway), (US_MAC, US));
        peer.send(T0, &arp_frame(US_MAC, &reply)).unwrap();
        pump(&mut iface);
        let out = wire(sent(&mut peer));
        let [Wire::Ip(dst, packet)] = &out[..] else {
            panic!("expected one IPv4 frame, got {out:?}");
        };
        let ip = ipv4::parse(packet).unwrap();
        assert_eq!(
            (*dst, ip.dst(), ip.payload),
            (gw_mac, far, &b"far away"[..])
        );
        // A neighbour on our network is still reached directly.
        assert_eq!(iface.routes().next_hop(PEER), Some(PEER));
    }

    /// On an IP link (TUN) a gateway needs no resolution: the packet to a far host
    /// simply goes out of the device.
    #[test]
    fn off_network_packets_leave_a_tun_link_unchanged() {
        let (a, mut peer) = SimLink::pair(SimConfig::default(), 1).unwrap();
        let mut cfg = Config::new("198.18.0.1/24".parse().unwrap());
        cfg.gateway = Some(Ipv4Addr::new(198, 18, 0, 254));
        let mut iface = Interface::new(a, cfg);
        let far = Ipv4Addr::new(203, 0, 113, 9);
        iface.send(T0, far, IpNumber::UDP, b"x").unwrap();
        let out = sent(&mut peer);
        assert_eq!(out.len(), 1);
        assert_eq!(ipv4::parse(&out[0]).unwrap().dst(), far);
        assert_eq!(iface.stats().arp_requests_out, 0);
    }

    /// Subnet and limited broadcasts go to the Ethernet broadcast address, unresolved.
    #[test]
    fn broadcasts_go_to_the_broadcast_mac() {
        let (mut iface, mut peer) = eth_setup();
        iface
            .send(T0, Ipv4Addr::new(198, 18, 0, 255), IpNumber::UDP, b"all")
            .unwrap();
        iface
            .send(T0, Ipv4Addr::BROADCAST, IpNumber::UDP, b"all")
            .unwrap();
        let out = wire(sent(&mut peer));
        assert_eq!(out.len(), 3);
        assert!(out[1..]
            .iter()
            .all(|w| matches!(w, Wire::Ip(d, _) if d.is_broadcast())));
        assert_eq!(iface.stats().arp_requests_out, 0);
    }

    /// The peer's view of a stale entry in use: packets keep flowing to the known MAC
    /// address, and 5 s after the first use a unicast request confirms it (Linux's
    /// DELAY then PROBE); the peer's reply makes it reachable again.
    #[test]
    fn a_used_stale_entry_is_confirmed_by_a_unicast_request_on_the_wire() {
        let (mut iface, mut peer) = eth_setup();
        let req = arp_packet(ArpOperation::REQUEST, (PEER_MAC, PEER), (MacAddr::ZERO, US));
        peer.send(T0, &arp_frame(MacAddr::BROADCAST, &req)).unwrap();
        pump(&mut iface);
        sent(&mut peer);
        iface.send(T0, PEER, IpNumber::UDP, b"one").unwrap();
        assert!(matches!(&wire(sent(&mut peer))[..], [Wire::Ip(d, _)] if *d == PEER_MAC));
        assert_eq!(iface.poll_at(T0), Some(Instant::from_secs(5)));
        let t5 = Instant::from_secs(5);
        iface.recv(t5, &mut Vec::new()).unwrap();
        let probe = arp_packet(ArpOperation::REQUEST, (US_MAC, US), (MacAddr::ZERO, PEER));
        assert_eq!(
            wire(sent_at(&mut peer, t5)),
            vec![Wire::Arp(PEER_MAC, probe)]
        );
        let reply = arp_packet(ArpOperation::REPLY, (PEER_MAC, PEER), (US_MAC, US));
        peer.send(t5, &arp_frame(US_MAC, &reply)).unwrap();
        iface.recv(t5, &mut Vec::new()).unwrap();
        assert_eq!(
            iface.arp().unwrap().neighbour(t5, PEER),
            Some(NeighbourState::Reachable(PEER_MAC))
        );
        assert_eq!(iface.poll_at(t5), None);
    }

    /// RFC 5227 section 2.4 from the wire: another station claims our address; the
    /// interface counts the conflict and defends the address with one broadcast
    /// announcement.
    #[test]
    fn a_conflicting_claim_is_counted_and_defended_on_the_wire_rfc5227_2_4() {
        let (mut iface, mut peer) = eth_setup();
        pump(&mut iface);
        assert_eq!(wire(sent(&mut peer)), vec![announcement()]);
        let thief = MacAddr([0x02, 0, 0, 0, 0, 0x66]);
        let claim = arp_packet(ArpOperation::REPLY, (thief, US), (MacAddr::BROADCAST, US));
        peer.send(T0, &arp_frame(MacAddr::BROADCAST, &claim))
            .unwrap();
        pump(&mut iface);
        assert_eq!(wire(sent(&mut peer)), vec![announcement()]);
        assert_eq!(iface.stats().arp_conflicts, 1);
        assert!(iface.arp().unwrap().is_empty());
    }

    proptest! {
        /// Any bytes at all into the receive path: never a panic, and every packet is
        /// accounted for as delivered, dropped for a reason, ICMP, or a fragment.
        #[test]
        fn arbitrary_packets_never_panic(packets in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
            let (mut iface, mut peer) = setup(1500);
            iface.accept_protocol(IpNumber::UDP);
            for p in &packets {
                peer.send(T0, p).unwrap();
            }
            pump(&mut iface);
            let s = iface.stats();
            prop_assert_eq!(s.rx_packets, packets.len() as u64);
            let icmp_in = s.icmp_echo_requests_in + s.icmp_echo_replies_in + s.icmp_errors_in + s.icmp_other_in;
            prop_assert!(s.total_dropped() + s.rx_delivered + icmp_in + s.rx_fragments >= s.rx_packets);
        }

        /// Any bytes as Ethernet frames (and valid ARP headers with random addresses):
        /// never a panic, and every frame is a received IPv4 packet, handled ARP, or a
        /// counted drop.
        #[test]
        fn arbitrary_frames_never_panic(frames in proptest::collection::vec(
            (0u8..4, proptest::collection::vec(any::<u8>(), 0..80)), 1..30)) {
            let (mut iface, mut peer) = eth_setup();
            for (kind, body) in &frames {
                let mut f = match kind {
                    0 => body.clone(),
                    1 => frame(US_MAC, PEER_MAC, EtherType::IPV4, body),
                    _ => frame(MacAddr::BROADCAST, PEER_MAC, EtherType::ARP, body),
                };
                if *kind == 3 && f.len() >= 22 {
                    f[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
                    f[20] = 0;
                    f[21] = 1 + f[21] % 2;
                }
                peer.send(T0, &f).unwrap();
            }
            pump(&mut iface);
            let s = iface.stats();
            prop_assert_eq!(s.rx_frames, frames.len() as u64);
            let arp_used = s.arp_requests_in + s.arp_replies_in;
            prop_assert!(s.total_dropped() + s.rx_packets + arp_used >= s.rx_frames);
        }

        /// Structured fuzzing: valid headers with random fields and payloads, so the
        /// checks past the checksum (fragments, ICMP, protocols) are reached too.
        #[test]
        fn arbitrary_valid_headers_never_panic(
            cases in proptest::collection::vec((
                any::<u8>(), any::<bool>(), any::<bool>(), 0u16..8192, any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..100),
            ), 1..40)
        ) {
            let (mut iface, mut peer) = setup(1500);
            iface.accept_protocol(IpNumber::UDP);
            for (proto, df, mf, offset, ident, payload) in cases {
                let proto = [1u8, 6, 17, proto][usize::from(ident % 4)];
                let mut h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(proto), PEER.octets(), US.octets()).unwrap();
                h.dont_fragment = df;
                h.more_fragments = mf;
                h.identification = ident % 4;
                h.fragment_offset = etherparse::IpFragOffset::try_new(offset).unwrap();
                h.header_checksum = h.calc_header_checksum();
                let mut p = h.to_bytes().to_vec();
                p.extend_from_slice(&payload);
                peer.send(T0, &p).unwrap();
            }
            pump(&mut iface);
            let mut payload = Vec::new();
            iface.recv(Instant::from_secs(60), &mut payload).unwrap();
            prop_assert!(iface.reassembler.is_empty());
        }
    }
}
