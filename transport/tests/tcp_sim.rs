//! TCP between two stacks over a SimLink pair on the virtual clock: handshakes, closes,
//! resets, and byte-exact transfers under every impairment. Each test prints its seed.

mod common;

use std::net::SocketAddrV4;

use common::{pattern, transfer, Pair, B};
use ustack_transport::net::link::{Duration, GilbertElliott, Impairments};
use ustack_transport::stack::StackError;
use ustack_transport::tcp::{State, TcpError};

#[test]
fn handshake_small_transfer_and_close() {
    let mut p = Pair::clean();
    let (c, s) = p.connect(80);
    let data = pattern(10_000, 1);
    let got = transfer(&mut p, c, s, &data, Duration::from_secs(10));
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    // Server closes too; both reach their final states.
    p.b.tcp_close(s).unwrap();
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.a.tcp(c).unwrap().state(), State::TimeWait);
    p.run_for(Duration::from_secs(61));
    assert_eq!(p.a.tcp(c).unwrap().state(), State::Closed);
    assert_eq!(p.b.connections(), 0, "server side reaped after LAST-ACK");
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let mut p = Pair::clean();
    let c = p.a.tcp_connect(p.now, SocketAddrV4::new(B, 81)).unwrap();
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.a.tcp(c).unwrap().error(), Some(TcpError::Refused));
    assert_eq!(p.b.stats().tcp_rsts_sent, 1);
    let mut buf = [0u8; 10];
    assert_eq!(
        p.a.tcp_recv(c, &mut buf),
        Err(StackError::Tcp(TcpError::Refused))
    );
}

#[test]
fn abort_resets_the_peer() {
    let mut p = Pair::clean();
    let (c, s) = p.connect(80);
    p.a.tcp_abort(c).unwrap();
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.b.tcp(s).unwrap().error(), Some(TcpError::Reset));
    assert_eq!(p.a.connections(), 0);
}

#[test]
fn both_sides_close_at_once() {
    let mut p = Pair::clean();
    let (c, s) = p.connect(80);
    p.a.tcp_shutdown(c).unwrap();
    p.b.tcp_shutdown(s).unwrap();
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.a.tcp(c).unwrap().state(), State::TimeWait);
    assert_eq!(p.b.tcp(s).unwrap().state(), State::TimeWait);
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    let mut p = Pair::clean();
    let (c, s) = p.connect(80);
    p.a.tcp_shutdown(c).unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.b.tcp(s).unwrap().state(), State::CloseWait);
    let reply = pattern(5000, 9);
    assert_eq!(p.b.tcp_send(s, &reply).unwrap(), 5000);
    p.run_for(Duration::from_millis(100));
    let mut buf = vec![0u8; 10_000];
    let n = p.a.tcp_recv(c, &mut buf).unwrap();
    assert_eq!(&buf[..n], &reply[..]);
}

fn one_mib_under(imp: Impairments, seeds: std::ops::Range<u64>, size: usize) {
    for seed in seeds {
        let mut p = Pair::impaired(imp.clone(), seed);
        let (c, s) = p.connect(5001);
        let data = pattern(size, seed as u8);
        let got = transfer(&mut p, c, s, &data, Duration::from_secs(600));
        let st = p.a.tcp(c).unwrap();
        assert_eq!(
            got.len(),
            data.len(),
            "seed {seed}: short transfer at {}: client {:?} err {:?} {:?}; server {:?}",
            p.now,
            st.state(),
            st.error(),
            st.stats(),
            p.b.tcp(s).unwrap().stats()
        );
        assert!(got == data, "seed {seed}: bytes differ");
        let st = *p.a.tcp(c).unwrap().stats();
        println!(
            "seed {seed}: {:.1}s virtual, retransmits {}, timeouts {}, fast {}",
            p.now.since_epoch().as_secs_f64(),
            st.retransmits,
            st.timeouts,
            st.fast_retransmits
        );
    }
}

#[test]
fn transfer_under_loss() {
    one_mib_under(
        Impairments {
            loss: 0.05,
            delay: Duration::from_millis(5),
            ..Impairments::none()
        },
        1..4,
        1 << 20,
    );
}

#[test]
fn transfer_under_reordering() {
    one_mib_under(
        Impairments {
            reorder: 0.1,
            delay: Duration::from_millis(5),
            ..Impairments::none()
        },
        1..4,
        1 << 20,
    );
}

#[test]
fn transfer_under_duplication_and_corruption() {
    one_mib_under(
        Impairments {
            duplicate: 0.05,
            corrupt: 0.01,
            delay: Duration::from_millis(5),
            ..Impairments::none()
        },
        1..4,
        1 << 20,
    );
}

#[test]
fn transfer_under_burst_loss_and_jitter() {
    // Gilbert-Elliott is per packet: on a quiet reverse path a burst outlasts many RTOs,
    // so very long bursts (1/p_bad_to_good packets) can legitimately exhaust the user
    // timeout. Mean burst length 2 here.
    one_mib_under(
        Impairments {
            burst: Some(GilbertElliott::bursts(0.01, 0.5)),
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(200),
            ..Impairments::none()
        },
        1..4,
        1 << 20,
    );
}

#[test]
fn transfer_under_everything_at_once() {
    one_mib_under(
        Impairments {
            loss: 0.05,
            reorder: 0.1,
            duplicate: 0.05,
            corrupt: 0.01,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(200),
            ..Impairments::none()
        },
        1..3,
        1 << 19,
    );
}
