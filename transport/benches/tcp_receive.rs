//! The TCP receive path in process, without root: a batch of in-order, full-sized data
//! segments (as a TUN device hands them over) goes into a [`Stack`] through its link, the
//! stack processes them in one `poll`, and the application reads every byte out with
//! `tcp_recv`. Throughput is in payload bytes; building the packets is not timed.
//! `cargo bench -p ustack-transport --bench tcp_receive`. It also prints how many heap
//! allocations the stack made per segment in steady state (a counting allocator).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ustack_transport::net::link::{Duration, Instant};
use ustack_transport::stack::{Stack, TcpHandle};

mod common;
use common::{allocations, established, BenchLink, Peer};

const MSS: usize = 1448;
/// Segments per batch: 32 x 1448 bytes stays inside the initial 64 KiB receive window.
const BATCH: usize = 32;

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
    stack: &mut Stack<BenchLink>,
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
    let (mut stack, h, mut peer) = established(1460);
    let payload = vec![0x5au8; MSS];
    let mut buf = vec![0u8; 256 * 1024];
    let mut now = Instant::ZERO;
    let rounds = 200;
    let mut counted = 0;
    for round in 0..2 * rounds {
        let batch = batch_of(&mut peer, &payload);
        now += Duration::from_micros(50);
        let before = allocations();
        let got = one_batch(&mut stack, h, now, batch, reader, &mut buf);
        assert_eq!(got, BATCH * MSS);
        if round >= rounds {
            counted += allocations() - before;
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
            let (mut stack, h, mut peer) = established(1460);
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
