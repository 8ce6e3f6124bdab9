//! The TCP receive path in process, without root: a batch of in-order, full-sized data
//! segments (as a TUN device hands them over) goes into a [`Stack`] through its link, the
//! stack processes them in one `poll`, and the application reads every byte out with
//! `tcp_recv`. Throughput is in payload bytes; building the packets is not timed.
//! `cargo bench -p ustack-transport --bench tcp_receive`. It also prints how many heap
//! allocations the stack made per segment in steady state (a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use ustack_transport::net::link::{Duration, Instant, Link, LinkError, Medium, TxInfo};
use ustack_transport::net::{Config, Interface, Ipv4Cidr};
use ustack_transport::stack::{Stack, StackConfig, TcpHandle};

const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER_PORT: u16 = 40_000;
const PORT: u16 = 5001;
const MSS: usize = 1448;
/// Segments per batch: 32 x 1448 bytes stays inside the initial 64 KiB receive window.
const BATCH: usize = 32;

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

/// A device that hands over queued packets and keeps count of what the stack sends.
#[derive(Default)]
struct ReplayLink {
    inbox: VecDeque<Vec<u8>>,
    /// The last packet the stack sent (the handshake reads its SYN-ACK).
    last_sent: Vec<u8>,
    sent: u64,
}

impl Link for ReplayLink {
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

/// The peer's side of one connection: its next sequence number and what it acknowledges.
struct Peer {
    seq: u32,
    ack: u32,
}

impl Peer {
    fn segment(&self, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4(PEER.octets(), US.octets(), 64)
            .tcp(PEER_PORT, PORT, self.seq, 65535)
            .ack(self.ack);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).expect("build a segment");
        out
    }
}

/// A stack with one established connection accepted from the peer (window scaling on,
/// no timestamps), reached through a real handshake.
fn established() -> (Stack<ReplayLink>, TcpHandle, Peer) {
    let iface = Interface::new(
        ReplayLink::default(),
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
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::WindowScale(7),
        ])
        .expect("options");
    let mut packet = Vec::new();
    syn.write(&mut packet, &[]).expect("build the SYN");
    stack.interface_mut().link_mut().inbox.push_back(packet);
    stack.poll(now).expect("poll");
    let syn_ack = stack.interface().link().last_sent.clone();
    let sliced = SlicedPacket::from_ip(&syn_ack).expect("a SYN-ACK");
    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
        panic!("the stack answered the SYN with no TCP segment");
    };
    assert!(tcp.syn() && tcp.ack(), "SYN-ACK expected");
    let peer = Peer {
        seq: 1001,
        ack: tcp.sequence_number().wrapping_add(1),
    };
    let ack = peer.segment(&[]);
    stack.interface_mut().link_mut().inbox.push_back(ack);
    stack.poll(now).expect("poll");
    let h = stack.tcp_accept(PORT).expect("accepted");
    (stack, h, peer)
}

/// How the application takes the bytes out.
#[derive(Clone, Copy)]
enum Reader {
    /// `tcp_recv` into a buffer (a socket read).
    Copy,
    /// `tcp_discard` (the discard service): no copy.
    Discard,
}

/// One batch: queued, processed in one poll, taken out; returns the bytes taken.
fn one_batch(
    stack: &mut Stack<ReplayLink>,
    h: TcpHandle,
    now: Instant,
    batch: Vec<Vec<u8>>,
    reader: Reader,
    buf: &mut [u8],
) -> usize {
    stack.interface_mut().link_mut().inbox.extend(batch);
    stack.poll(now).expect("poll");
    let mut got = 0;
    while got < BATCH * MSS {
        let taken = match reader {
            Reader::Copy => stack.tcp_recv(h, buf),
            Reader::Discard => stack.tcp_discard(h, usize::MAX),
        };
        match taken {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    // The window update (if any) goes out with the next poll.
    stack.poll(now).expect("poll");
    got
}

fn batch_of(peer: &mut Peer, payload: &[u8]) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|_| {
            let p = peer.segment(payload);
            peer.seq = peer.seq.wrapping_add(MSS as u32);
            p
        })
        .collect()
}

/// Heap allocations per received segment once the connection is warm, not counting
/// the test's own packets.
fn allocations_per_segment(reader: Reader) -> f64 {
    let (mut stack, h, mut peer) = established();
    let payload = vec![0x5au8; MSS];
    let mut buf = vec![0u8; 256 * 1024];
    let mut now = Instant::ZERO;
    let rounds = 200;
    let mut counted = 0;
    for round in 0..2 * rounds {
        let batch = batch_of(&mut peer, &payload);
        now += Duration::from_micros(50);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let got = one_batch(&mut stack, h, now, batch, reader, &mut buf);
        assert_eq!(got, BATCH * MSS);
        if round >= rounds {
            counted += ALLOCATIONS.load(Ordering::Relaxed) - before;
        }
    }
    counted as f64 / (rounds * BATCH) as f64
}

fn receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_receive");
    group.throughput(Throughput::Bytes((BATCH * MSS) as u64));
    for (name, reader) in [("recv", Reader::Copy), ("discard", Reader::Discard)] {
        println!(
            "tcp_receive/{name}: {:.3} heap allocations per segment in steady state",
            allocations_per_segment(reader)
        );
        let id = format!("{name}: 32 in-order 1448-byte segments per poll");
        group.bench_function(id, |bench| {
            let (mut stack, h, mut peer) = established();
            let payload = vec![0x5au8; MSS];
            let mut buf = vec![0u8; 256 * 1024];
            let mut now = Instant::ZERO;
            bench.iter_batched(
                || batch_of(&mut peer, &payload),
                |batch| {
                    now += Duration::from_micros(50);
                    let got = one_batch(&mut stack, h, now, batch, reader, &mut buf);
                    assert_eq!(got, BATCH * MSS, "every byte of the batch is delivered");
                    got
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, receive);
criterion_main!(benches);
