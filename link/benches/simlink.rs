//! Throughput of an unimpaired SimLink pair with 1500-byte packets: the simulator must not
//! be the bottleneck for the stacks above it. Run with `cargo bench -p ustack-link`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use ustack_link::{Instant, Link, SimConfig, SimLink};

const BATCH: u64 = 64;

fn send_recv(c: &mut Criterion) {
    let (mut a, mut b) = SimLink::pair(SimConfig::default(), 1).expect("valid config");
    let packet = [0xabu8; 1500];
    let mut buf = [0u8; 1500];
    let mut group = c.benchmark_group("simlink");
    group.throughput(Throughput::Elements(BATCH));
    let mut now = Instant::ZERO;
    group.bench_function("unimpaired 1500B send+recv (64 packets)", |bench| {
        bench.iter(|| {
            now += ustack_link::Duration::from_micros(1);
            for _ in 0..BATCH {
                a.send(now, black_box(&packet)).expect("send");
            }
            for _ in 0..BATCH {
                let n = b.recv(now, &mut buf).expect("recv").expect("packet ready");
                black_box(&buf[..n]);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, send_recv);
criterion_main!(benches);
