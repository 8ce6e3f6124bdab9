//! The delivery property: any schedule of loss, reordering, duplication, corruption and
//! jitter delivers the same bytes, across many seeds. `USTACK_TCP_SEEDS` sets how many
//! (default 24, enough for CI; run 200+ locally) and `USTACK_TCP_BYTES` the size per run;
//! `USTACK_TCP_CC` (cubic, reno, bbr) the congestion control, CUBIC by default;
//! `USTACK_TCP_RACK=0` turns RACK-TLP off (on by default, as in `TcpConfig::default()`).
//!
//! Every connection runs with the default settings, the 60 s user timeout included: RTT
//! samples stay honest through lost retransmissions and lost ACKs (see `sample_rtt`), so
//! the RTO does not grow past what the path needs.
//!
//! To look at one seed in Wireshark: `USTACK_TCP_FIRST_SEED=N cargo test --release
//! --test tcp_props -- capture_one_seed --ignored` writes /tmp/ustack-seed.pcapng.

mod common;

use common::{pattern, transfer, Pair};
use ustack_transport::net::link::{Duration, SimConfig};
use ustack_transport::stack::StackConfig;
use ustack_transport::tcp::{Algorithm, TcpConfig};

/// The stacks' settings: the defaults, with `congestion`, and RACK-TLP on if `rack`
/// (else duplicate-ACK recovery, RFC 6675).
fn stack_config(congestion: Algorithm, rack: bool) -> StackConfig {
    StackConfig {
        tcp: TcpConfig {
            congestion,
            rack,
            tlp: rack,
            ..TcpConfig::default()
        },
        ..StackConfig::default()
    }
}

fn pair_with(seed: u64, stack: StackConfig) -> Pair {
    Pair::new(SimConfig::symmetric(common::all_impairments()), stack, seed)
}

fn pair(seed: u64) -> Pair {
    pair_with(seed, stack_config(congestion(), rack()))
}

/// The congestion control under test: `USTACK_TCP_CC` (cubic, reno or bbr), CUBIC by
/// default.
fn congestion() -> Algorithm {
    std::env::var("USTACK_TCP_CC")
        .map(|cc| cc.parse().expect("USTACK_TCP_CC"))
        .unwrap_or_default()
}

/// Whether RACK-TLP is under test: `USTACK_TCP_RACK=0` or `1`; by default as in
/// `TcpConfig::default()`.
fn rack() -> bool {
    common::env("USTACK_TCP_RACK", usize::from(TcpConfig::default().rack)) != 0
}

/// Byte-exact delivery of `size` bytes for each seed, with `stack`.
fn deliver_every_seed(seeds: std::ops::Range<u64>, size: usize, stack: StackConfig) {
    let data = pattern(size, 7);
    let mut failures = Vec::new();
    for seed in seeds {
        let mut p = pair_with(seed, stack.clone());
        let (c, s) = p.connect(5001);
        let got = transfer(&mut p, c, s, &data, Duration::from_secs(3600));
        if got != data {
            let conn = p.a.tcp(c).unwrap();
            failures.push(format!(
                "seed {seed}: {} of {} bytes, client {:?} {:?}",
                got.len(),
                data.len(),
                conn.error(),
                conn.summary()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "failing seeds with {:?}, RACK-TLP {} (rerun with USTACK_TCP_FIRST_SEED):\n{}",
        stack.tcp.congestion,
        if stack.tcp.rack { "on" } else { "off" },
        failures.join("\n")
    );
}

#[test]
fn every_seed_delivers_the_same_bytes_under_all_impairments() {
    let seeds = common::env("USTACK_TCP_SEEDS", 24) as u64;
    let size = common::env("USTACK_TCP_BYTES", 4 << 20);
    let first = common::env("USTACK_TCP_FIRST_SEED", 1000) as u64;
    deliver_every_seed(
        first..first + seeds,
        size,
        stack_config(congestion(), rack()),
    );
}

/// A CI-sized run of the same property with RACK-TLP on whatever `USTACK_TCP_RACK`
/// says (the full one runs with it by default): a third of `USTACK_TCP_SEEDS`.
#[test]
fn every_seed_delivers_the_same_bytes_with_rack() {
    let seeds = (common::env("USTACK_TCP_SEEDS", 24) / 3).max(1) as u64;
    let size = common::env("USTACK_TCP_BYTES", 4 << 20);
    let first = common::env("USTACK_TCP_FIRST_SEED", 1000) as u64;
    deliver_every_seed(first..first + seeds, size, stack_config(congestion(), true));
}

/// The same with BBR (paced, model-based) whatever `USTACK_TCP_CC` says, CI-sized:
/// `USTACK_TCP_BBR_SEEDS` seeds (default 8) of a quarter of `USTACK_TCP_BYTES`.
#[test]
fn every_seed_delivers_the_same_bytes_with_bbr() {
    let seeds = common::env("USTACK_TCP_BBR_SEEDS", 8) as u64;
    let size = common::env("USTACK_TCP_BYTES", 4 << 20) / 4;
    let first = common::env("USTACK_TCP_FIRST_SEED", 1000) as u64;
    deliver_every_seed(
        first..first + seeds,
        size,
        stack_config(Algorithm::Bbr, rack()),
    );
}

#[test]
fn every_seed_carries_both_directions_at_once() {
    let seeds = (common::env("USTACK_TCP_SEEDS", 24) / 2).max(1) as u64;
    let size = common::env("USTACK_TCP_BYTES", 4 << 20) / 2;
    let first = common::env("USTACK_TCP_FIRST_SEED", 1000) as u64;
    let up = pattern(size, 1);
    let down = pattern(size, 2);
    for seed in first..first + seeds {
        let mut p = pair(seed);
        let (c, s) = p.connect(5001);
        let (up_got, down_got) =
            common::exchange(&mut p, c, s, &up, &down, Duration::from_secs(3600));
        assert!(up_got == up, "seed {seed}: upstream bytes differ");
        assert!(down_got == down, "seed {seed}: downstream bytes differ");
    }
}

/// Replays one seed with a trace of every stall (`USTACK_TCP_FIRST_SEED=N`).
#[test]
#[ignore]
fn trace_one_seed() {
    let seed = common::env("USTACK_TCP_FIRST_SEED", 1000) as u64;
    let size = common::env("USTACK_TCP_BYTES", 4 << 20);
    let data = pattern(size, 7);
    let mut p = pair(seed);
    let (c, s) = p.connect(5001);
    let mut sent = 0;
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    loop {
        if sent < data.len() {
            sent += p.a.tcp_send(c, &data[sent..]).unwrap_or(0);
        }
        while let Ok(n) = p.b.tcp_recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        let conn = p.a.tcp(c).unwrap();
        let sum = conn.summary();
        if sum.contains("retries=3")
            || sum.contains("retries=4")
            || sum.contains("retries=5")
            || sum.contains("retries=6")
            || conn.is_closed()
        {
            println!(
                "{} got={got} A {sum}\n   B {}",
                p.now,
                p.b.tcp(s).unwrap().summary()
            );
        }
        if conn.is_closed() || got == data.len() || !p.step(p.now + Duration::from_secs(300)) {
            break;
        }
    }
}

/// Writes a pcap of host A's link for one seed (`USTACK_TCP_PCAP=FILE`), for tshark.
#[test]
#[ignore]
fn capture_one_seed() {
    use std::net::SocketAddrV4;
    use ustack_transport::net::link::{Instant, PcapSink, PcapTap, SimConfig, SimLink};
    use ustack_transport::net::{Config, Interface, Ipv4Cidr};
    use ustack_transport::stack::Stack;
    let seed = common::env("USTACK_TCP_FIRST_SEED", 1000) as u64;
    let size = common::env("USTACK_TCP_BYTES", 4 << 20);
    let path =
        std::env::var("USTACK_TCP_PCAP").unwrap_or_else(|_| "/tmp/ustack-seed.pcapng".into());
    let (la, lb) = SimLink::pair(SimConfig::symmetric(common::all_impairments()), seed).unwrap();
    let sink = PcapSink::create(&path).unwrap();
    let la = PcapTap::new(la, sink.clone(), "a").unwrap();
    let cfg = |s| StackConfig {
        seed: s,
        ..StackConfig::default()
    };
    let mut a = Stack::new(
        Interface::new(
            la,
            Config::new(Ipv4Cidr {
                addr: common::A,
                prefix_len: 24,
            }),
        ),
        cfg(seed * 3),
    );
    let mut b = Stack::new(
        Interface::new(
            lb,
            Config::new(Ipv4Cidr {
                addr: common::B,
                prefix_len: 24,
            }),
        ),
        cfg(seed * 5 + 1),
    );
    b.tcp_listen(5001, 1).unwrap();
    let mut now = Instant::ZERO;
    let c = a
        .tcp_connect(now, SocketAddrV4::new(common::B, 5001))
        .unwrap();
    let data = pattern(size, 7);
    let (mut sent, mut got) = (0, 0);
    let mut server = None;
    let mut buf = vec![0u8; 65536];
    // The same order of events as `Pair`: settle at `now`, act, jump to the next event.
    loop {
        loop {
            a.poll(now).unwrap();
            b.poll(now).unwrap();
            let ready = |t: Option<Instant>| t.is_some_and(|t| t <= now);
            if !ready(a.poll_at(now)) && !ready(b.poll_at(now)) {
                break;
            }
        }
        if server.is_none() {
            server = b.tcp_accept(5001);
        }
        if server.is_some()
            && a.tcp(c).unwrap().state() == ustack_transport::tcp::State::Established
        {
            break;
        }
        now = [a.poll_at(now), b.poll_at(now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
    }
    let s = server.unwrap();
    while got < size {
        if sent < size {
            sent += a.tcp_send(c, &data[sent..]).unwrap_or(0);
        }
        while let Ok(n) = b.tcp_recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        if a.tcp(c).unwrap().is_closed() {
            println!(
                "closed at {now}: {:?} {}",
                a.tcp(c).unwrap().error(),
                a.tcp(c).unwrap().summary()
            );
            break;
        }
        loop {
            a.poll(now).unwrap();
            b.poll(now).unwrap();
            let ready = |t: Option<Instant>| t.is_some_and(|t| t <= now);
            if !ready(a.poll_at(now)) && !ready(b.poll_at(now)) {
                break;
            }
        }
        match [a.poll_at(now), b.poll_at(now)].into_iter().flatten().min() {
            Some(t) => now = t.max(now),
            None => break,
        }
    }
    sink.flush().unwrap();
    println!("wrote {path}: {} packets, got {got}", sink.packets());
}
