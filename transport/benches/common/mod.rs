//! What the in-process TCP benches share: a counting allocator, a device that replays
//! queued packets and keeps the last one sent, the peer's side of one connection, and a
//! stack with that connection established through a real handshake.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use ustack_transport::net::link::{Instant, Link, LinkError, Medium, TxInfo};
use ustack_transport::net::{Config, Interface, Ipv4Cidr};
use ustack_transport::stack::{Stack, StackConfig, TcpHandle};

pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PEER_PORT: u16 = 40_000;
pub const PORT: u16 = 5001;

/// The system allocator, counting allocations and reallocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations and reallocations so far in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// A device that hands over queued packets and copies what the stack sends into a buffer
/// it reuses, as write(2) would (keeping the last packet: the handshake reads its
/// SYN-ACK, the send bench acknowledges its end).
#[derive(Default)]
pub struct BenchLink {
    pub inbox: VecDeque<Vec<u8>>,
    pub last_sent: Vec<u8>,
    pub sent: u64,
}

impl Link for BenchLink {
    fn medium(&self) -> Medium {
        Medium::Ip
    }
    fn mtu(&self) -> usize {
        1500
    }
    fn send(&mut self, _now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
        self.last_sent.clear();
        self.last_sent.extend_from_slice(packet);
        self.sent += 1;
        Ok(TxInfo::default())
    }
    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        let Some(p) = self.inbox.pop_front() else {
            return Ok(None);
        };
        buf[..p.len()].copy_from_slice(&p);
        Ok(Some(p.len()))
    }
    fn poll_at(&self, now: Instant) -> Option<Instant> {
        (!self.inbox.is_empty()).then_some(now)
    }
}

/// The sequence number just past the TCP segment in `packet`, and its payload length.
pub fn segment_end(packet: &[u8]) -> (u32, usize) {
    let sliced = SlicedPacket::from_ip(packet).expect("the stack sends IPv4");
    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
        panic!("the stack sent something other than TCP");
    };
    let len = tcp.payload().len();
    let syn_fin = u32::from(tcp.syn()) + u32::from(tcp.fin());
    (
        tcp.sequence_number()
            .wrapping_add(len as u32)
            .wrapping_add(syn_fin),
        len,
    )
}

/// The peer's side of one connection: its next sequence number and what it acknowledges.
pub struct Peer {
    pub seq: u32,
    pub ack: u32,
}

impl Peer {
    /// A segment from the peer carrying `payload` (an ACK if empty), window 65535.
    pub fn segment(&self, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4(PEER.octets(), US.octets(), 64)
            .tcp(PEER_PORT, PORT, self.seq, 65535)
            .ack(self.ack);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).expect("build a segment");
        out
    }
}

/// A stack with one connection accepted from the peer (MSS `mss`, window scale 7, no
/// timestamps: the peer's 65535 window is 8 MiB), reached through a real handshake.
pub fn established(mss: u16) -> (Stack<BenchLink>, TcpHandle, Peer) {
    established_with(&[
        TcpOptionElement::MaximumSegmentSize(mss),
        TcpOptionElement::WindowScale(7),
    ])
}

/// [`established`] with SACK permitted as well (as Linux offers it), which turns on
/// SACK loss recovery and RACK-TLP.
#[allow(dead_code)] // Only the send bench uses it; every bench compiles this module.
pub fn established_sack(mss: u16) -> (Stack<BenchLink>, TcpHandle, Peer) {
    established_with(&[
        TcpOptionElement::MaximumSegmentSize(mss),
        TcpOptionElement::WindowScale(7),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
    ])
}

/// A stack with one connection accepted from the peer, whose SYN carries `options`.
fn established_with(options: &[TcpOptionElement]) -> (Stack<BenchLink>, TcpHandle, Peer) {
    let iface = Interface::new(
        BenchLink::default(),
        Config::new(Ipv4Cidr {
            addr: US,
            prefix_len: 24,
        }),
    );
    let mut stack = Stack::new(iface, StackConfig::default());
    stack.tcp_listen(PORT, 1).expect("listen");
    let now = Instant::ZERO;
    let syn = PacketBuilder::ipv4(PEER.octets(), US.octets(), 64)
        .tcp(PEER_PORT, PORT, 1000, 65535)
        .syn()
        .options(options)
        .expect("options");
    let mut packet = Vec::new();
    syn.write(&mut packet, &[]).expect("build the SYN");
    stack.interface_mut().link_mut().inbox.push_back(packet);
    stack.poll(now).expect("poll");
    let (ack, _) = segment_end(&stack.interface().link().last_sent);
    let peer = Peer { seq: 1001, ack };
    stack
        .interface_mut()
        .link_mut()
        .inbox
        .push_back(peer.segment(&[]));
    stack.poll(now).expect("poll");
    let h = stack.tcp_accept(PORT).expect("accepted");
    (stack, h, peer)
}
