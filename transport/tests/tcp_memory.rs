//! Issue 12 item 2: an idle ESTABLISHED connection holds at most 4 KiB, a (compact)
//! TIME-WAIT at most 512 bytes, and the memory goes back once TIME-WAIT ends. Heap bytes
//! come from a counting global allocator (exact and deterministic, see
//! `common/memory.rs`); this binary holds this one test so that no other test's
//! allocations mix in. The 100 000-connection figure comes from `cargo run --release -p
//! ustack-transport --example conn_memory`.

mod common;

use common::memory::{measure, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fewer connections in a debug build (the same code paths, a tenth of the time).
const N: usize = if cfg!(debug_assertions) {
    2_000
} else {
    10_000
};

#[test]
fn an_idle_connection_holds_at_most_4_kib_and_closing_gives_it_back() {
    let f = measure(N);
    f.print();
    assert!(
        f.idle_established <= 4096.0,
        "{:.0} bytes per idle connection end",
        f.idle_established
    );
    // Linux's timewait sockets: a compact entry, not a whole connection.
    assert!(
        f.time_wait_entry <= 512.0,
        "{:.0} bytes per TIME-WAIT entry",
        f.time_wait_entry
    );
    // What stays is the connection table's slot array (a few words per slot).
    assert!(
        f.after_time_wait <= 160.0,
        "{:.0} bytes per connection end left after TIME-WAIT",
        f.after_time_wait
    );
}
