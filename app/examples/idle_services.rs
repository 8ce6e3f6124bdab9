//! The runtime's cost per round with many idle connections on its built-in services
//! (issue 12 item 3): `cargo run --release -p ustack-app --example idle_services -- [N [K]]`.
//! Host 2 of a simulated pair runs echo (7) and discard (9) inside its runtime; host 1
//! opens N idle connections to them (half each, at most 16 000 per port: one client
//! address has 16 384 ephemeral ports), then one client thread makes K (200) echo round
//! trips beside them. Prints the wall time per round trip next to the same with no idle
//! connections: a runtime that visits every connection each round pays O(N) per round.

use std::io::{Read, Write};
use std::net::SocketAddrV4;

use ustack_app::link::{Duration, SimConfig};
use ustack_app::runtime::service::{serve, ServiceKind};
use ustack_app::sim::{host_addr, two_hosts};
use ustack_app::socket::TcpStream;
use ustack_app::transport::stack::StackConfig;

/// Wall time per echo round trip with `n` idle connections beside it, and the wall time
/// it took to open them.
fn per_round_trip(n: usize, round_trips: usize) -> (std::time::Duration, std::time::Duration) {
    let cfg = StackConfig {
        syn_backlog: n.max(16),
        ..StackConfig::default()
    };
    let (mut world, client, server, _) = two_hosts(SimConfig::default(), cfg, 7).expect("sim");
    world.spawn(server, "start", |caller| {
        serve(&caller, ServiceKind::Echo, 16_000).expect("echo");
        serve(&caller, ServiceKind::Discard, 16_000).expect("discard");
    });
    world.run(Duration::from_secs(1)).expect("started");
    let opening = std::time::Instant::now();
    for i in 0..n {
        let kind = if i % 2 == 0 {
            ServiceKind::Echo
        } else {
            ServiceKind::Discard
        };
        let now = world.now();
        world
            .host_mut(client)
            .tcp_connect(now, SocketAddrV4::new(host_addr(2), kind.port()))
            .expect("connect");
        if i % 500 == 499 {
            world.spawn(client, "pause", |caller| {
                caller.sleep(Duration::from_millis(20))
            });
            world.run(Duration::from_secs(1)).expect("handshakes");
        }
    }
    world.spawn(client, "idle", |caller| {
        caller.sleep(Duration::from_secs(5))
    });
    world.run(Duration::from_secs(10)).expect("idle");
    assert!(world.host(server).connections() >= n, "all accepted");
    let opened = opening.elapsed();
    let started = std::time::Instant::now();
    let done = world.spawn(client, "ping", move |caller| {
        let addr = SocketAddrV4::new(host_addr(2), ServiceKind::Echo.port());
        let mut s = TcpStream::connect(&caller, addr, None).expect("connect");
        let mut buf = [0u8; 64];
        for i in 0..round_trips {
            let msg = format!("ping {i}");
            s.write_all(msg.as_bytes()).unwrap();
            s.read_exact(&mut buf[..msg.len()]).unwrap();
            assert_eq!(&buf[..msg.len()], msg.as_bytes());
        }
    });
    world.run(Duration::from_secs(60)).expect("pinged");
    done.join().expect("ping thread");
    (started.elapsed() / round_trips as u32, opened)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a connection count"))
        .unwrap_or(32_000);
    let round_trips: usize = std::env::args()
        .nth(2)
        .map(|a| a.parse().expect("a number of round trips"))
        .unwrap_or(200);
    let (base, _) = per_round_trip(0, round_trips);
    let (loaded, opened) = per_round_trip(n, round_trips);
    println!(
        "echo round trip (wall time, simulator): {:.1} us alone, {:.1} us beside {n} idle \
         service connections ({:.2} ns per idle connection per round trip)",
        base.as_secs_f64() * 1e6,
        loaded.as_secs_f64() * 1e6,
        (loaded.as_secs_f64() - base.as_secs_f64()) * 1e9 / n as f64
    );
    println!(
        "opening them (handshakes on the simulator, accepted by the services): {:.2} s, \
         {:.0} connections/s of wall time",
        opened.as_secs_f64(),
        n as f64 / opened.as_secs_f64()
    );
}
