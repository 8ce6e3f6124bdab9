//! The TCP send path in process, without root: the application queues a batch of bytes
//! with `tcp_send`, the stack cuts it into full-sized segments and hands each to its link
//! in one `transmit` (as to a TUN device: one packet per link send, the link copying it
//! as write(2) would), and the peer acknowledges everything sent with one cumulative ACK
//! that the next `poll` processes (as Linux's receiver acknowledges a GRO batch).
//! Throughput is in payload bytes queued and sent; building the one ACK per round
//! (an etherparse parse and build) is timed with it.
//! `cargo bench -p ustack-transport --bench tcp_send`. It also prints how many heap
//! allocations the stack made per sent segment in steady state (a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use ustack_transport::net::link::{Duration, Instant, Link, LinkError, Medium, TxInfo};
use ustack_transport::net::{Config, Interface, Ipv4Cidr};
use ustack_transport::stack::{Stack, StackConfig, TcpHandle};

const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER_PORT: u16 = 40_000;
const PORT: u16 = 5001;
const MSS: usize = 1460;
/// Bytes queued per round: 32 segments, inside the initial 64 KiB send buffer.
const BATCH_BYTES: usize = 32 * MSS;
/// Rounds before measuring: slow start opens the window past one batch.
const WARM_UP_ROUNDS: usize = 50;

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

/// A device that hands over queued packets and copies what the stack sends into a
/// buffer it reuses (keeping the last packet: its end is what the peer acknowledges).
#[derive(Default)]
struct SinkLink {
    inbox: VecDeque<Vec<u8>>,
    last_sent: Vec<u8>,
    sent: u64,
}

impl Link for SinkLink {
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
fn segment_end(packet: &[u8]) -> (u32, usize) {
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

/// The receiving peer: its sequence number (it sends no data) and what it acknowledges.
struct Peer {
    seq: u32,
    ack: u32,
}

impl Peer {
    fn ack(&self) -> Vec<u8> {
        let b = PacketBuilder::ipv4(PEER.octets(), US.octets(), 64)
            .tcp(PEER_PORT, PORT, self.seq, 65535)
            .ack(self.ack);
        let mut out = Vec::with_capacity(b.size(0));
        b.write(&mut out, &[]).expect("build an ACK");
        out
    }
}

/// A stack with one connection accepted from the peer (MSS 1460, window scale 7, no
/// timestamps: the peer's 65535 window is 8 MiB), reached through a real handshake.
fn established() -> (Stack<SinkLink>, TcpHandle, Peer) {
    let iface = Interface::new(
        SinkLink::default(),
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
        .options(&[
            TcpOptionElement::MaximumSegmentSize(MSS as u16),
            TcpOptionElement::WindowScale(7),
        ])
        .expect("options");
    let mut packet = Vec::new();
    syn.write(&mut packet, &[]).expect("build the SYN");
    stack.interface_mut().link_mut().inbox.push_back(packet);
    stack.poll(now).expect("poll");
    let (ack, _) = segment_end(&stack.interface().link().last_sent);
    let peer = Peer { seq: 1001, ack };
    stack.interface_mut().link_mut().inbox.push_back(peer.ack());
    stack.poll(now).expect("poll");
    let h = stack.tcp_accept(PORT).expect("accepted");
    (stack, h, peer)
}

/// One round: the ACK of the last round and a batch of bytes go in, every segment the
/// windows allow goes out; returns the bytes queued and the peer's next ACK.
fn one_round(
    stack: &mut Stack<SinkLink>,
    h: TcpHandle,
    now: Instant,
    ack: Vec<u8>,
    data: &[u8],
) -> usize {
    stack.interface_mut().link_mut().inbox.push_back(ack);
    stack.poll(now).expect("poll");
    let mut queued = 0;
    while queued < data.len() {
        match stack.tcp_send(h, &data[queued..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => queued += n,
        }
    }
    stack.transmit(now);
    queued
}

/// The peer acknowledges everything the stack has sent so far.
fn ack_all(stack: &Stack<SinkLink>, peer: &mut Peer) -> Vec<u8> {
    let (end, _) = segment_end(&stack.interface().link().last_sent);
    peer.ack = end;
    peer.ack()
}

fn warm() -> (Stack<SinkLink>, TcpHandle, Peer, Instant) {
    let (mut stack, h, mut peer) = established();
    let data = vec![0x5au8; BATCH_BYTES];
    let mut now = Instant::ZERO;
    for _ in 0..WARM_UP_ROUNDS {
        now += Duration::from_micros(50);
        let ack = ack_all(&stack, &mut peer);
        one_round(&mut stack, h, now, ack, &data);
    }
    (stack, h, peer, now)
}

/// Heap allocations per sent segment once the connection is warm, not counting the
/// bench's own ACKs.
fn allocations_per_segment() -> f64 {
    let (mut stack, h, mut peer, mut now) = warm();
    let data = vec![0x5au8; BATCH_BYTES];
    let sent_before = stack.interface().link().sent;
    let mut counted = 0;
    for _ in 0..200 {
        now += Duration::from_micros(50);
        let ack = ack_all(&stack, &mut peer);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        assert_eq!(one_round(&mut stack, h, now, ack, &data), BATCH_BYTES);
        counted += ALLOCATIONS.load(Ordering::Relaxed) - before;
    }
    counted as f64 / (stack.interface().link().sent - sent_before) as f64
}

fn send(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_send");
    group.throughput(Throughput::Bytes(BATCH_BYTES as u64));
    println!(
        "tcp_send: {:.3} heap allocations per segment in steady state",
        allocations_per_segment()
    );
    group.bench_function(
        "32 x 1460 bytes queued, sent, acknowledged per round",
        |bench| {
            let (mut stack, h, mut peer, mut now) = warm();
            let data = vec![0x5au8; BATCH_BYTES];
            bench.iter(|| {
                now += Duration::from_micros(50);
                let ack = ack_all(&stack, &mut peer);
                let queued = one_round(&mut stack, h, now, ack, &data);
                assert_eq!(queued, BATCH_BYTES, "the batch fits the send buffer");
                queued
            });
        },
    );
    group.finish();
}

criterion_group!(benches, send);
criterion_main!(benches);
