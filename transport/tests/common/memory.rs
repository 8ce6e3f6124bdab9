//! Memory per connection, measured with a counting global allocator (issue 12 item 2).
//!
//! Why a counting allocator rather than RSS: the bytes the stacks hold are then exact and
//! the same on every run and machine (what a test can assert), while RSS also moves with
//! the allocator's caching, page granularity and whatever else the process did. RSS from
//! `/proc/self/statm` is printed beside it, for the figure a user of `ps` would see.
//! A test binary that includes this module installs the allocator for all of its tests,
//! so it holds one test only (the figures would mix otherwise).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Pair, B};
use ustack_transport::net::link::{Duration, SimConfig};
use ustack_transport::stack::{StackConfig, TcpHandle};
use ustack_transport::tcp::State;

/// `System`, counting the bytes it has handed out and not yet taken back.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

/// Bytes allocated and not freed, process-wide.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations and reallocations so far, process-wide.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations per segment the receiver takes in, over a bulk transfer of `len` bytes
/// on a clean link, both stacks counted (the sender's side included).
pub fn allocations_per_segment(len: usize) -> f64 {
    let mut p = Pair::clean();
    let (c, s) = p.connect(80);
    let data = super::pattern(len, 3);
    let before = allocations();
    let got = super::transfer(&mut p, c, s, &data, Duration::from_secs(600));
    let allocated = allocations() - before;
    assert_eq!(got.len(), data.len());
    let segments = p.b.tcp(s).unwrap().stats().segs_in;
    allocated as f64 / segments as f64
}

/// Resident set size of the process (`/proc/self/statm`, second field, in pages).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Heap bytes and RSS at one point of the run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub live: usize,
    pub rss: usize,
}

pub fn sample() -> Sample {
    Sample {
        live: live_bytes(),
        rss: rss_bytes(),
    }
}

/// What [`measure`] found, in bytes per connection end (each of the `n` connections has
/// an end on each stack, so a figure is the two stacks' growth divided by `2 * n`).
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub n: usize,
    pub idle_established: f64,
    /// Bytes one client end in TIME-WAIT holds (what goes when TIME-WAIT ends).
    pub time_wait_entry: f64,
    pub after_time_wait: f64,
    pub idle_established_rss: f64,
    pub after_time_wait_rss: f64,
}

impl Figures {
    pub fn print(&self) {
        println!(
            "n={} heap bytes per connection end: idle ESTABLISHED {:.0}, after TIME-WAIT \
             {:.0}; per TIME-WAIT entry {:.0}; RSS per end: idle {:.0}, after {:.0}",
            self.n,
            self.idle_established,
            self.after_time_wait,
            self.time_wait_entry,
            self.idle_established_rss,
            self.after_time_wait_rss
        );
    }
}

/// Server ports: each gives the client's ephemeral range (16 384 ports) once more.
const PORTS_FROM: u16 = 1000;
const CONNS_PER_PORT: usize = 16_000;

/// Opens `n` connections from stack A to B, exchanges a short request and answer on
/// each, lets them idle past every timer a quiet connection runs (delayed ACK, buffer
/// reclaim), then closes them all (the client first, so its ends wait in TIME-WAIT) and
/// waits for TIME-WAIT to end. Memory is sampled at each stage.
pub fn measure(n: usize) -> Figures {
    let cfg = StackConfig {
        syn_backlog: n,
        max_time_wait: n,
        ..StackConfig::default()
    };
    let mut p = Pair::new(SimConfig::default(), cfg, 1);
    let ports = n.div_ceil(CONNS_PER_PORT);
    for i in 0..ports {
        p.b.tcp_listen(PORTS_FROM + i as u16, n).unwrap();
    }
    let mut clients: Vec<TcpHandle> = Vec::with_capacity(n);
    let mut servers: Vec<TcpHandle> = Vec::with_capacity(n);
    p.settle();
    let start = sample();
    for i in 0..n {
        let port = PORTS_FROM + (i / CONNS_PER_PORT) as u16;
        // Opened in batches, so the SYN burst stays within the link's queue.
        clients.push(p.a.tcp_connect(p.now, SocketAddrV4::new(B, port)).unwrap());
        if i % 1000 == 999 {
            p.run_for(Duration::from_millis(10));
        }
    }
    let ok = p.drive_until(Duration::from_secs(30), |p| {
        for i in 0..ports {
            while let Some(h) = p.b.tcp_accept(PORTS_FROM + i as u16) {
                servers.push(h);
            }
        }
        servers.len() == n
    });
    assert!(ok, "only {} of {n} accepted", servers.len());
    assert!(clients
        .iter()
        .all(|&c| p.a.tcp(c).unwrap().state() == State::Established));
    for (i, &c) in clients.iter().enumerate() {
        p.a.tcp_send(c, format!("hello {i}").as_bytes()).unwrap();
        if i % 1000 == 999 {
            p.run_for(Duration::from_millis(10));
        }
    }
    // A burst the link's queue dropped comes back with the retransmission timer.
    let ok = p.drive_until(Duration::from_secs(30), |p| {
        servers
            .iter()
            .all(|&s| p.b.tcp(s).unwrap().recv_queue() > 0)
    });
    assert!(ok, "requests arrived");
    let mut buf = [0u8; 64];
    for (i, &s) in servers.iter().enumerate() {
        let got = p.b.tcp_recv(s, &mut buf).unwrap();
        assert!(buf[..got].starts_with(b"hello "));
        let answer = [b"echo ", &buf[..got]].concat();
        p.b.tcp_send(s, &answer).unwrap();
        if i % 1000 == 999 {
            p.run_for(Duration::from_millis(10));
        }
    }
    let ok = p.drive_until(Duration::from_secs(30), |p| {
        clients
            .iter()
            .all(|&c| p.a.tcp(c).unwrap().recv_queue() > 0)
    });
    assert!(ok, "answers arrived");
    for (i, &c) in clients.iter().enumerate() {
        let got = p.a.tcp_recv(c, &mut buf).unwrap();
        assert_eq!(&buf[..got], format!("echo hello {i}").as_bytes());
    }
    // Idle past the delayed ACK and the reclaim timers.
    p.run_for(Duration::from_secs(1));
    let idle = sample();
    for (i, &c) in clients.iter().enumerate() {
        p.a.tcp_close(c).unwrap();
        if i % 1000 == 999 {
            p.run_for(Duration::from_millis(10));
        }
    }
    let ok = p.drive_until(Duration::from_secs(20), |p| {
        servers
            .iter()
            .all(|&s| p.b.tcp(s).unwrap().state() == State::CloseWait)
    });
    assert!(ok, "the clients' FINs arrived");
    for (i, &s) in servers.iter().enumerate() {
        p.b.tcp_close(s).unwrap();
        if i % 1000 == 999 {
            p.run_for(Duration::from_millis(10));
        }
    }
    let ok = p.drive_until(Duration::from_secs(20), |p| p.b.connections() == 0);
    assert!(ok, "the servers' FINs were acknowledged");
    assert_eq!(p.b.connections(), 0, "the server's ends are gone");
    assert_eq!(p.a.connections(), n, "the client's ends wait in TIME-WAIT");
    assert!(clients
        .iter()
        .all(|&c| p.a.tcp(c).is_err() || p.a.tcp(c).unwrap().state() == State::TimeWait));
    let time_wait = sample();
    p.run_for(Duration::from_secs(120));
    assert_eq!(p.a.connections(), 0);
    let after = sample();
    let per = |s: Sample| (s.live as f64 - start.live as f64) / (2 * n) as f64;
    let per_rss = |s: Sample| (s.rss as f64 - start.rss as f64) / (2 * n) as f64;
    Figures {
        n,
        idle_established: per(idle),
        time_wait_entry: (time_wait.live as f64 - after.live as f64) / n as f64,
        after_time_wait: per(after),
        idle_established_rss: per_rss(idle),
        after_time_wait_rss: per_rss(after),
    }
}
