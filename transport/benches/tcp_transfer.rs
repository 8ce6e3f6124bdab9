//! Wall time to move 1 GiB over TCP between two stacks on an unimpaired SimLink pair
//! (virtual clock; the stacks and the link do all the work on one core).
//! `cargo bench -p ustack-transport --bench tcp_transfer` (USTACK_BENCH_BYTES to change).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as WallInstant;

use ustack_transport::net::link::{Instant, SimConfig, SimLink};
use ustack_transport::net::{Config, Interface, Ipv4Cidr};
use ustack_transport::stack::{Stack, StackConfig};

fn main() {
    let total: usize = std::env::var("USTACK_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let (la, lb) = SimLink::pair(SimConfig::default(), 1).expect("sim");
    let a_ip = Ipv4Addr::new(198, 18, 0, 1);
    let b_ip = Ipv4Addr::new(198, 18, 0, 2);
    let iface = |l, addr| {
        Interface::new(
            l,
            Config::new(Ipv4Cidr {
                addr,
                prefix_len: 24,
            }),
        )
    };
    let mut a = Stack::new(iface(la, a_ip), StackConfig::default());
    let mut b = Stack::new(iface(lb, b_ip), StackConfig::default());
    b.tcp_listen(5201, 1).unwrap();
    let mut now = Instant::ZERO;
    let c = a.tcp_connect(now, SocketAddrV4::new(b_ip, 5201)).unwrap();
    let mut server = None;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut received) = (0usize, 0usize);
    let start = WallInstant::now();
    while received < total {
        a.poll(now).unwrap();
        b.poll(now).unwrap();
        if server.is_none() {
            server = b.tcp_accept(5201);
        }
        if sent < total {
            if let Ok(n) = a.tcp_send(c, &chunk[..chunk.len().min(total - sent)]) {
                sent += n;
            }
        }
        if let Some(s) = server {
            while let Ok(n) = b.tcp_recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                received += n;
            }
        }
        let next = [a.poll_at(now), b.poll_at(now)].into_iter().flatten().min();
        if let Some(t) = next {
            if t > now {
                now = t;
            }
        }
    }
    let wall = start.elapsed();
    let conn = a.tcp(c).unwrap();
    println!(
        "tcp_transfer: {} MiB in {:.2} s wall ({:.2} Gbit/s), virtual {:.3} s, segments out {}, retransmits {}",
        total >> 20,
        wall.as_secs_f64(),
        total as f64 * 8.0 / wall.as_secs_f64() / 1e9,
        now.since_epoch().as_secs_f64(),
        conn.stats().segs_out,
        conn.stats().retransmits
    );
}
