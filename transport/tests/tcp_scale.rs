//! Scale and memory: 10,000 simultaneous connections on one stack, and the size of a
//! connection's state without its buffers.

mod common;

use std::net::SocketAddrV4;

use common::{exchange, pattern, Pair, B};
use ustack_transport::net::link::{Duration, SimConfig};
use ustack_transport::stack::StackConfig;
use ustack_transport::tcp::{Connection, State};

#[test]
fn a_full_syn_queue_drops_syns_until_retransmission() {
    // Without SYN cookies (they answer what the full queue would drop).
    let cfg = StackConfig {
        syn_backlog: 4,
        syn_cookies: false,
        ..StackConfig::default()
    };
    let mut p = Pair::new(SimConfig::default(), cfg, 1);
    p.b.tcp_listen(80, 100).unwrap();
    for _ in 0..10 {
        p.a.tcp_connect(p.now, SocketAddrV4::new(B, 80)).unwrap();
    }
    let mut accepted = 0;
    p.drive_until(Duration::from_millis(500), |p| {
        while p.b.tcp_accept(80).is_some() {
            accepted += 1;
        }
        false
    });
    assert_eq!(accepted, 4, "{:?}", p.b.stats());
    assert_eq!(p.b.stats().syn_queue_overflows, 6);
    // The dropped SYNs come back after the initial RTO of 1 s (four fit again), the rest
    // after the backed-off 2 s more.
    let mut accept_until = |p: &mut Pair, until: Duration| {
        p.drive_until(until, |p| {
            while p.b.tcp_accept(80).is_some() {
                accepted += 1;
            }
            false
        });
        accepted
    };
    assert_eq!(accept_until(&mut p, Duration::from_secs(2)), 8);
    assert_eq!(accept_until(&mut p, Duration::from_secs(2)), 10);
}

#[test]
fn connection_state_without_buffers_fits_in_2_kib() {
    let size = std::mem::size_of::<Connection>();
    println!("size_of::<Connection>() = {size}");
    assert!(size <= 2048, "{size} bytes");
}

#[test]
fn ten_thousand_simultaneous_connections() {
    const N: usize = 10_000;
    // A SYN queue as large as the burst, so no SYN waits for a retransmission.
    let cfg = StackConfig {
        syn_backlog: N,
        ..StackConfig::default()
    };
    let mut p = Pair::new(SimConfig::default(), cfg, 1);
    p.b.tcp_listen(80, N).unwrap();
    let clients: Vec<_> = (0..N)
        .map(|_| p.a.tcp_connect(p.now, SocketAddrV4::new(B, 80)).unwrap())
        .collect();
    let mut servers = Vec::with_capacity(N);
    let ok = p.drive_until(Duration::from_secs(30), |p| {
        while let Some(h) = p.b.tcp_accept(80) {
            servers.push(h);
        }
        servers.len() == N
    });
    assert!(ok, "only {} of {N} accepted", servers.len());
    assert_eq!(p.a.connections(), N);
    assert_eq!(p.b.connections(), N);
    assert!(clients
        .iter()
        .all(|&c| p.a.tcp(c).unwrap().state() == State::Established));
    // Every client says its index; every server echoes what it got, prefixed.
    for (i, &c) in clients.iter().enumerate() {
        p.a.tcp_send(c, format!("hello {i}").as_bytes()).unwrap();
    }
    p.run_for(Duration::from_millis(500));
    let mut buf = [0u8; 64];
    for &s in &servers {
        let n = p.b.tcp_recv(s, &mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap().to_string();
        assert!(text.starts_with("hello "), "{text}");
        p.b.tcp_send(s, format!("echo {text}").as_bytes()).unwrap();
    }
    p.run_for(Duration::from_millis(500));
    for (i, &c) in clients.iter().enumerate() {
        let n = p.a.tcp_recv(c, &mut buf).unwrap();
        assert_eq!(&buf[..n], format!("echo hello {i}").as_bytes());
    }
    for &c in &clients {
        p.a.tcp_close(c).unwrap();
    }
    for &s in &servers {
        p.b.tcp_close(s).unwrap();
    }
    p.run_for(Duration::from_secs(120));
    assert_eq!(p.a.connections(), 0);
    assert_eq!(p.b.connections(), 0);
}

/// Issue 8 item 11 (Linux `tcp_max_tw_buckets`): at most `max_time_wait` connections wait
/// in TIME-WAIT on a stack; one that would enter it when all are taken is freed at once,
/// and counted.
#[test]
fn time_wait_entries_are_capped() {
    let cfg = StackConfig {
        max_time_wait: 2,
        ..StackConfig::default()
    };
    let mut p = Pair::new(SimConfig::default(), cfg, 1);
    p.b.tcp_listen(80, 8).unwrap();
    for _ in 0..3 {
        let c = p.a.tcp_connect(p.now, SocketAddrV4::new(B, 80)).unwrap();
        let mut s = None;
        p.drive_until(Duration::from_secs(5), |p| {
            s = s.or_else(|| p.b.tcp_accept(80));
            s.is_some()
        });
        // A closes first, so A is the one that ends in TIME-WAIT.
        p.a.tcp_close(c).unwrap();
        p.run_for(Duration::from_millis(100));
        p.b.tcp_close(s.expect("accepted")).unwrap();
        p.run_for(Duration::from_millis(100));
    }
    assert_eq!(p.b.connections(), 0);
    assert_eq!(p.a.connections(), 2);
    assert_eq!(p.a.stats().time_wait_overflows, 1);
    p.run_for(Duration::from_secs(61));
    assert_eq!(p.a.connections(), 0);
}

/// Issue 12 item 2 (Linux `sk_mem_reclaim` from the socket's timers): after a transfer
/// both ways, once the applications have read everything and the connection stays idle
/// for the reclaim delay (200 ms), neither end holds buffer memory.
#[test]
fn an_idle_connection_gives_its_buffers_back() {
    let mut p = Pair::clean();
    let (c, s) = p.connect(80);
    let up = pattern(300_000, 1);
    let down = pattern(200_000, 2);
    let (got_up, got_down) = exchange(&mut p, c, s, &up, &down, Duration::from_secs(60));
    assert_eq!((got_up, got_down), (up, down));
    let held = |p: &Pair| {
        (
            p.a.tcp(c).unwrap().buffer_capacity(),
            p.b.tcp(s).unwrap().buffer_capacity(),
        )
    };
    let (a, b) = held(&p);
    assert!(
        a > 0 && b > 0,
        "buffers in use right after the transfer: {a} {b}"
    );
    p.run_for(Duration::from_millis(300));
    assert_eq!(held(&p), (0, 0));
    // A small exchange keeps its few bytes (no timer per request); a larger one brings
    // the buffers back, and they go again.
    let (got_up, _) = exchange(&mut p, c, s, b"ping", b"pong", Duration::from_secs(5));
    assert_eq!(got_up, b"ping");
    p.run_for(Duration::from_millis(300));
    let (a, b) = held(&p);
    assert!(a <= 64 && b <= 64, "{a} {b}");
    let up = pattern(50_000, 3);
    let (got_up, _) = exchange(&mut p, c, s, &up, b"ok", Duration::from_secs(60));
    assert_eq!(got_up, up);
    p.run_for(Duration::from_millis(300));
    assert_eq!(held(&p), (0, 0));
}
