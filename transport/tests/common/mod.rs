//! Two stacks on a SimLink pair driven by a virtual clock (quinn-proto's `Pair::drive`
//! idea): every test is deterministic and prints its seed.

#![allow(dead_code)]

pub mod memory;
mod pattern;

use std::net::{Ipv4Addr, SocketAddrV4};

use ustack_transport::net::link::{Duration, Impairments, Instant, SimConfig, SimLink};
use ustack_transport::net::{Config, Interface};
use ustack_transport::stack::{Stack, StackConfig, StackError, TcpHandle};
use ustack_transport::tcp::RecvError;

// Not every test crate that includes `common` uses it.
#[allow(unused_imports)]
pub use pattern::pattern;

pub const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

pub struct Pair {
    pub a: Stack<SimLink>,
    pub b: Stack<SimLink>,
    pub now: Instant,
    pub seed: u64,
}

impl Pair {
    pub fn new(sim: SimConfig, stack: StackConfig, seed: u64) -> Pair {
        init_log();
        println!("seed {seed}");
        let (la, lb) = SimLink::pair(sim, seed).expect("valid sim config");
        let iface = |link, addr| {
            Interface::new(
                link,
                Config::new(ustack_transport::net::Ipv4Cidr {
                    addr,
                    prefix_len: 24,
                }),
            )
        };
        let a = Stack::new(
            iface(la, A),
            StackConfig {
                seed: seed.wrapping_mul(3),
                ..stack.clone()
            },
        );
        let b = Stack::new(
            iface(lb, B),
            StackConfig {
                seed: seed.wrapping_mul(5).wrapping_add(1),
                ..stack
            },
        );
        Pair {
            a,
            b,
            now: Instant::ZERO,
            seed,
        }
    }

    pub fn clean() -> Pair {
        Pair::new(SimConfig::default(), StackConfig::default(), 1)
    }

    pub fn impaired(imp: Impairments, seed: u64) -> Pair {
        Pair::new(SimConfig::symmetric(imp), StackConfig::default(), seed)
    }

    /// Polls both stacks at the current time until neither has work now.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            self.a.poll(self.now).unwrap();
            self.b.poll(self.now).unwrap();
            let ready = |t: Option<Instant>| t.is_some_and(|t| t <= self.now);
            if !ready(self.a.poll_at(self.now)) && !ready(self.b.poll_at(self.now)) {
                return;
            }
        }
        panic!("seed {}: stacks never settled at {}", self.seed, self.now);
    }

    /// Advances the clock to the next event (at most to `limit`); false at the limit.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.settle();
        let next = [self.a.poll_at(self.now), self.b.poll_at(self.now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(limit);
        if next >= limit {
            self.now = limit;
            self.settle();
            return false;
        }
        self.now = next.max(self.now);
        true
    }

    /// As [`Pair::step`], but when nothing at all is scheduled the clock stays where it
    /// is (and `false` is returned): the application may still have something to queue.
    pub fn step_unless_idle(&mut self, limit: Instant) -> bool {
        self.settle();
        if self.a.poll_at(self.now).is_none() && self.b.poll_at(self.now).is_none() {
            return false;
        }
        self.step(limit)
    }

    /// Drives until `done` holds or `limit` of virtual time passes; returns whether done.
    pub fn drive_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Pair) -> bool,
    ) -> bool {
        let end = self.now + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            if !self.step(end) {
                return done(self);
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
    }

    /// A connected pair of handles: A connects to B's `port`.
    pub fn connect(&mut self, port: u16) -> (TcpHandle, TcpHandle) {
        self.b.tcp_listen(port, 16).unwrap();
        let client = self
            .a
            .tcp_connect(self.now, SocketAddrV4::new(B, port))
            .unwrap();
        let mut server = None;
        let ok = self.drive_until(Duration::from_secs(120), |p| {
            if server.is_none() {
                server = p.b.tcp_accept(port);
            }
            server.is_some()
                && p.a.tcp(client).unwrap().state() == ustack_transport::tcp::State::Established
        });
        assert!(ok, "seed {}: handshake did not complete", self.seed);
        (client, server.unwrap())
    }
}

/// Moves `data` from `from` to `to` over the pair; returns what arrived, or stops at the
/// virtual time limit. The sender closes after the last byte.
pub fn transfer(
    p: &mut Pair,
    client: TcpHandle,
    server: TcpHandle,
    data: &[u8],
    limit: Duration,
) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = false;
    let mut last_round = false;
    let end = p.now + limit;
    loop {
        // What the application queues now needs another step even when the pair was
        // idle: an ACK may have drained the sender's buffer (all of it in flight, as
        // with a small autotuned buffer) and left no timer armed.
        let queued_before = (sent, closed);
        while sent < data.len() {
            match p.a.tcp_send(client, &data[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) => panic!("seed {}: send failed: {e}", p.seed),
            }
        }
        if sent == data.len() && !closed {
            p.a.tcp_shutdown(client).unwrap();
            closed = true;
        }
        loop {
            match p.b.tcp_recv(server, &mut buf) {
                Ok(0) | Err(StackError::Recv(RecvError::Finished)) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("seed {}: recv failed: {e}", p.seed),
            }
        }
        if got.len() == data.len() && p.b.tcp(server).unwrap().at_eof() {
            return got;
        }
        if last_round && (sent, closed) == queued_before {
            return got;
        }
        last_round = !p.step_unless_idle(end);
    }
}

/// Sends `up` from A to B and `down` from B to A at the same time; returns what arrived
/// each way. Panics with both connections' state if nothing happens until `limit`.
pub fn exchange(
    p: &mut Pair,
    c: TcpHandle,
    s: TcpHandle,
    up: &[u8],
    down: &[u8],
    limit: Duration,
) -> (Vec<u8>, Vec<u8>) {
    let (mut up_sent, mut down_sent) = (0, 0);
    let (mut up_got, mut down_got) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    let end = p.now + limit;
    let drain = |stack: &mut Stack<SimLink>, h, out: &mut Vec<u8>, buf: &mut [u8]| loop {
        match stack.tcp_recv(h, buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    };
    while up_got.len() < up.len() || down_got.len() < down.len() {
        up_sent += p.a.tcp_send(c, &up[up_sent..]).unwrap_or(0);
        down_sent += p.b.tcp_send(s, &down[down_sent..]).unwrap_or(0);
        drain(&mut p.b, s, &mut up_got, &mut buf);
        drain(&mut p.a, c, &mut down_got, &mut buf);
        if !p.step(end) {
            drain(&mut p.b, s, &mut up_got, &mut buf);
            drain(&mut p.a, c, &mut down_got, &mut buf);
            if up_got.len() < up.len() || down_got.len() < down.len() {
                panic!(
                    "seed {}: stuck at {} (up {} of {}, down {} of {})\n A {}\n B {}",
                    p.seed,
                    p.now,
                    up_got.len(),
                    up.len(),
                    down_got.len(),
                    down.len(),
                    p.a.tcp(c).map(|c| c.summary()).unwrap_or_default(),
                    p.b.tcp(s).map(|c| c.summary()).unwrap_or_default()
                );
            }
        }
    }
    (up_got, down_got)
}

/// Sends the stack's `log` records (every TCP state change with its 4-tuple) to the test's
/// output, filtered by `RUST_LOG` and silent without it. To print a failing seed's
/// history: `RUST_LOG=ustack_transport=debug USTACK_TCP_FIRST_SEED=N USTACK_TCP_SEEDS=1 cargo test --release
/// --test tcp_props`.
pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A `usize` from the environment (seed counts, sizes), or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every impairment at once, harsher than a bad real path so that many seeds cover the
/// rare interleavings (loss of a retransmission, reordered SACKs, corrupted FINs): 5% loss,
/// 10% reordering, 5% duplication, 1% corruption, 10 ms delay with 200 ms jitter.
pub fn all_impairments() -> Impairments {
    Impairments {
        loss: 0.05,
        reorder: 0.1,
        duplicate: 0.05,
        corrupt: 0.01,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(200),
        ..Impairments::none()
    }
}
