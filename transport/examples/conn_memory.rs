//! Memory per connection with many connections on one simulated stack pair (issue 12
//! item 2): `cargo run --release -p ustack-transport --example conn_memory -- [N...]`
//! (default 10 000 and 100 000). Prints heap bytes (a counting allocator) and RSS per
//! connection end for idle ESTABLISHED, TIME-WAIT, and after TIME-WAIT.

#[path = "../tests/common/mod.rs"]
mod common;

use common::memory::{allocations_per_segment, measure, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a connection count"))
        .collect();
    let counts = if args.is_empty() {
        vec![10_000, 100_000]
    } else {
        args
    };
    println!(
        "allocations per received segment, 64 MiB transfer: {:.3}",
        allocations_per_segment(64 << 20)
    );
    for n in counts {
        let started = std::time::Instant::now();
        measure(n).print();
        println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    }
}
