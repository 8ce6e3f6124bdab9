//! Reassembly cost of 200 000 one-byte out-of-order pieces arriving in descending order
//! (each one prepends to the block above it), then delivered in one piece.
//! `cargo bench -p ustack-transport --bench assembler`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use ustack_transport::tcp::assembler::Assembler;
use ustack_transport::tcp::SeqNumber;

const PIECES: u32 = 200_000;

fn descending(c: &mut Criterion) {
    let mut group = c.benchmark_group("assembler");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(PIECES)));
    group.bench_function("200000 1-byte pieces descending", |bench| {
        bench.iter(|| {
            let mut a = Assembler::new(64);
            // Offset 0 is the hole at RCV.NXT; pieces 1..=PIECES arrive last first.
            for off in (1..=PIECES).rev() {
                a.insert(SeqNumber(off), &[off as u8]).expect("one block");
            }
            black_box(a.pop_ready(SeqNumber(1)).expect("contiguous"))
        })
    });
    group.finish();
}

criterion_group!(benches, descending);
criterion_main!(benches);
