//! ustack's iperf3 client against ustack's iperf3 server, each host on its own
//! wall-clock runtime over a SimLink pair (no root): the UDP test's connect exchange,
//! pacing, loss and jitter end to end, and loss the link itself causes counted as such.

use std::net::SocketAddrV4;
use std::sync::atomic::AtomicBool;

use ustack_app::iperf3::{self, udp::Udp, ClientReport, ClientTest, Protocol};
use ustack_app::link::{Clock, Impairments, SimConfig, SimLink};
use ustack_app::runtime::Runtime;
use ustack_app::sim::{host_addr, stack};
use ustack_app::transport::stack::StackConfig;

/// Runs one test from host 1 against the iperf3 server on host 2 over a link with
/// `config`'s impairments.
fn run(config: SimConfig, test: impl FnOnce(SocketAddrV4) -> ClientTest) -> ClientReport {
    let (a, b) = SimLink::pair(config, 7).unwrap();
    let clock = Clock::wall();
    let client = Runtime::start_with_clock(
        stack(Box::new(a), host_addr(1), StackConfig::default()),
        clock,
    );
    let server = Runtime::start_with_clock(
        stack(Box::new(b), host_addr(2), StackConfig::default()),
        clock,
    );
    let serving = server.caller();
    std::thread::spawn(move || iperf3::serve(std::slice::from_ref(&serving)));
    // The server listens once its thread has run; a refused first try is retried.
    let test = test(SocketAddrV4::new(host_addr(2), iperf3::PORT));
    let interrupt = AtomicBool::new(false);
    for _ in 0..50 {
        match iperf3::client(&client.caller(), &test, &interrupt) {
            Ok(report) => return report,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    panic!("the iperf3 client never completed a test");
}

fn udp_test(server: SocketAddrV4, reverse: bool, len: usize) -> ClientTest {
    ClientTest {
        server,
        seconds: 1,
        reverse,
        parallel: 1,
        len: Some(len),
        protocol: Protocol::Udp(Udp {
            rate: 20_000_000,
            ..Udp::default()
        }),
    }
}

/// On a clean link every datagram the sender counted arrives in order: both sides agree
/// on the bytes (the receiver's count stops at TEST_END, so it is never above the
/// sender's), and datagrams of 8000 bytes are fragmented and reassembled on the way.
#[test]
fn udp_tests_both_ways_count_the_same_datagrams_on_a_clean_link() {
    for (reverse, len) in [(false, 1460), (true, 1460), (false, 8000), (true, 8000)] {
        let r = run(SimConfig::default(), |s| udp_test(s, reverse, len));
        let what = format!("reverse={reverse} len={len}: {r}");
        let udp = r.udp.expect("a UDP test reports datagrams");
        assert!(udp.packets > 100, "{what}");
        let (sent, received) = if reverse {
            (r.server_bytes, r.bytes)
        } else {
            (r.bytes, r.server_bytes)
        };
        assert!(received > 0 && received <= sent, "{what}");
        assert_eq!(udp.out_of_order, 0, "{what}");
        assert!(udp.jitter_ms >= 0.0, "{what}");
    }
}

/// Datagrams the link drops show up as gaps in the packet counter, which the receiver
/// counts as lost (iperf_udp_recv): 5% loss on the data's way gives about 5%.
#[test]
fn datagrams_the_link_drops_are_counted_lost() {
    let lossy = Impairments {
        loss: 0.05,
        ..Impairments::none()
    };
    for reverse in [false, true] {
        let config = if reverse {
            SimConfig {
                b_to_a: lossy.clone(),
                ..SimConfig::default()
            }
        } else {
            SimConfig {
                a_to_b: lossy.clone(),
                ..SimConfig::default()
            }
        };
        let r = run(config, |s| udp_test(s, reverse, 1000));
        let udp = r.udp.expect("a UDP test reports datagrams");
        let percent = udp.lost_percent();
        assert!(
            (1.0..12.0).contains(&percent),
            "reverse={reverse}: {percent}% lost: {r}"
        );
    }
}

fn tcp_test(server: SocketAddrV4, reverse: bool, parallel: usize, rate: u64) -> ClientTest {
    ClientTest {
        server,
        seconds: 1,
        reverse,
        parallel,
        len: None,
        protocol: Protocol::Tcp { rate },
    }
}

/// The server's TCP data streams run inside its runtime: a receiver counts every byte
/// the client's stack took (the streams are drained until the client closes them), a
/// sender's count is what the client reads before the server closes the stream after
/// TEST_END. Both sides agree to the byte, one stream or several.
#[test]
fn tcp_tests_both_ways_count_the_same_bytes() {
    for (reverse, parallel) in [(false, 1), (true, 1), (false, 3), (true, 3)] {
        let r = run(SimConfig::default(), |s| tcp_test(s, reverse, parallel, 0));
        let what = format!("reverse={reverse} -P {parallel}: {r}");
        assert_eq!(r.streams, parallel, "{what}");
        assert!(r.bytes > 1_000_000, "{what}");
        assert_eq!(r.bytes, r.server_bytes, "{what}");
    }
}

/// A reverse test's `-b` paces the server's sending streams: each sends no more than
/// the bitrate allows over the test (plus the bounded burst), yet sends.
#[test]
fn a_reverse_tcp_test_is_paced_at_its_bitrate() {
    let rate = 8_000_000;
    let r = run(SimConfig::default(), |s| tcp_test(s, true, 2, rate));
    let what = format!("{r}");
    // Two streams at 1 MB/s each for the 1 s test; the server's streams start a round
    // trip before the client's clock and stop one after: half a second of slack.
    let most = 2.0 * rate as f64 / 8.0 * (r.seconds + 0.5);
    assert!(
        r.server_bytes > 0 && (r.server_bytes as f64) < most,
        "{what}"
    );
    assert_eq!(r.bytes, r.server_bytes, "{what}");
}
