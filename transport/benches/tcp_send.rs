//! The TCP send path in process, without root: the application queues a batch of bytes
//! with `tcp_send`, the stack cuts it into full-sized segments and hands each to its link
//! in one `transmit` (as to a TUN device: one packet per link send, the link copying it
//! as write(2) would), and the peer acknowledges everything sent with one cumulative ACK
//! that the next `poll` processes (as Linux's receiver acknowledges a GRO batch).
//! Throughput is in payload bytes queued and sent; building the one ACK per round
//! (an etherparse parse and build) is timed with it.
//! `cargo bench -p ustack-transport --bench tcp_send`. It also prints how many heap
//! allocations the stack made per sent segment in steady state (a counting allocator).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ustack_transport::net::link::{Duration, Instant};
use ustack_transport::stack::{Stack, TcpHandle};

mod common;
use common::{allocations, established, established_sack, segment_end, BenchLink, Peer};

const MSS: usize = 1460;
/// Bytes queued per round: 32 segments, inside the initial 64 KiB send buffer.
const BATCH_BYTES: usize = 32 * MSS;
/// Rounds before measuring: slow start opens the window past one batch.
const WARM_UP_ROUNDS: usize = 50;

/// One round: the ACK of the last round and a batch of bytes go in, every segment the
/// windows allow goes out; returns the bytes queued and the peer's next ACK.
fn one_round(
    stack: &mut Stack<BenchLink>,
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
fn ack_all(stack: &Stack<BenchLink>, peer: &mut Peer) -> Vec<u8> {
    let (end, _) = segment_end(&stack.interface().link().last_sent);
    peer.ack = end;
    peer.segment(&[])
}

fn warm() -> (Stack<BenchLink>, TcpHandle, Peer, Instant) {
    let (mut stack, h, mut peer) = established(MSS as u16);
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
        let before = allocations();
        assert_eq!(one_round(&mut stack, h, now, ack, &data), BATCH_BYTES);
        counted += allocations() - before;
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

/// Segments in flight in the window bench: about 2.9 MB, the kernel's receive window
/// when it reads from ustack's source service over TUN.
const WINDOW_SEGMENTS: usize = 2000;

/// The peer acknowledges two more segments (as Linux does, one ACK per two full-sized
/// segments), and the application queues two more, which go out.
fn window_round(stack: &mut Stack<BenchLink>, h: TcpHandle, peer: &mut Peer, now: Instant) {
    peer.ack = peer.ack.wrapping_add(2 * MSS as u32);
    let ack = peer.segment(&[]);
    let data = [0x5au8; 2 * MSS];
    one_round_exact(stack, h, now, ack, &data);
}

/// [`one_round`], every byte of `data` queued.
fn one_round_exact(
    stack: &mut Stack<BenchLink>,
    h: TcpHandle,
    now: Instant,
    ack: Vec<u8>,
    data: &[u8],
) {
    let queued = one_round(stack, h, now, ack, data);
    assert_eq!(queued, data.len(), "the send buffer has room");
}

/// A connection (SACK and so RACK on) with [`WINDOW_SEGMENTS`] in flight: each round of the warm-up the peer
/// acknowledges two segments and four more go out.
fn warm_window() -> (Stack<BenchLink>, TcpHandle, Peer, Instant) {
    let (mut stack, h, mut peer) = established_sack(MSS as u16);
    let mut now = Instant::ZERO;
    let data = [0x5au8; 2 * MSS];
    one_round_exact(&mut stack, h, now, peer.segment(&[]), &data);
    let (end, _) = segment_end(&stack.interface().link().last_sent);
    peer.ack = end.wrapping_sub(2 * MSS as u32);
    let mut in_flight = 2;
    while in_flight < WINDOW_SEGMENTS {
        now += Duration::from_micros(5);
        window_round(&mut stack, h, &mut peer, now);
        one_round_exact(&mut stack, h, now, peer.segment(&[]), &data);
        in_flight += 2;
    }
    let (end, _) = segment_end(&stack.interface().link().last_sent);
    assert_eq!(
        end.wrapping_sub(peer.ack) as usize,
        WINDOW_SEGMENTS * MSS,
        "the windows let the whole window out"
    );
    (stack, h, peer, now)
}

/// Per-ACK cost with a large window in flight: an ACK that moves SND.UNA by two segments
/// must not cost work in proportion to the window (loss detection, pipe).
fn send_window(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_send");
    group.throughput(Throughput::Bytes(2 * MSS as u64));
    group.bench_function(
        "2000 segments in flight, an ACK per 2 segments, 2 sent per ACK",
        |bench| {
            let (mut stack, h, mut peer, mut now) = warm_window();
            bench.iter(|| {
                now += Duration::from_micros(1);
                window_round(&mut stack, h, &mut peer, now);
            });
        },
    );
    group.finish();
}

criterion_group!(benches, send, send_window);
criterion_main!(benches);
