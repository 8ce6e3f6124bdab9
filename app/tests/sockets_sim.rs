//! Blocking sockets over the simulator: application threads, virtual time, and the
//! std::io error kinds std's sockets would give.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddrV4;

use ustack_app::link::{Duration, Impairments, SimConfig};
use ustack_app::runtime::SimWorld;
use ustack_app::sim::{host_addr, two_hosts};
use ustack_app::socket::{TcpListener, TcpStream, UdpSocket};
use ustack_app::transport::stack::StackConfig;

fn world(imp: Impairments, seed: u64) -> (SimWorld, usize, usize) {
    println!("seed {seed}");
    let (w, a, b, _) = two_hosts(SimConfig::symmetric(imp), StackConfig::default(), seed).unwrap();
    (w, a, b)
}

fn lossy() -> Impairments {
    Impairments {
        loss: 0.05,
        reorder: 0.05,
        delay: Duration::from_millis(10),
        ..Impairments::none()
    }
}

fn echo_server(w: &mut SimWorld, host: usize) -> std::thread::JoinHandle<u64> {
    w.spawn(host, "echo-server", |net| {
        let listener = TcpListener::bind(&net, 7, 4).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 32 * 1024];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
            total += n as u64;
        }
        total
    })
}

#[test]
fn echo_a_mebibyte_over_a_lossy_link() {
    let (mut w, a, b) = world(lossy(), 21);
    let server = echo_server(&mut w, b);
    let client = w.spawn(a, "client", |net| {
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
        let s = TcpStream::connect(&net, SocketAddrV4::new(host_addr(2), 7), None).unwrap();
        // Writer and reader on one thread: write in chunks, read what came back between.
        let mut s = s;
        let mut back = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for chunk in data.chunks(16 * 1024) {
            s.write_all(chunk).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1)));
            loop {
                match s.read(&mut buf) {
                    Ok(n) => back.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        s.shutdown().unwrap();
        s.set_read_timeout(None);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        (back == data, net.now())
    });
    w.run(Duration::from_secs(600)).unwrap();
    let (same, t) = client.join().unwrap();
    assert!(same, "echoed bytes differ");
    assert_eq!(server.join().unwrap(), 1 << 20);
    println!("virtual time {t}");
    let stats = w.host(a).stats();
    assert!(
        stats.tcp.retransmits > 0,
        "5% loss should cost retransmissions"
    );
}

#[test]
fn connect_to_a_closed_port_is_connection_refused() {
    let (mut w, a, _b) = world(Impairments::none(), 1);
    let client = w.spawn(a, "client", |net| {
        TcpStream::connect(&net, SocketAddrV4::new(host_addr(2), 9), None).map(|_| ())
    });
    w.run(Duration::from_secs(10)).unwrap();
    let err = client.join().unwrap().unwrap_err();
    assert_eq!(
        std::io::Error::from(err).kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn read_timeout_is_would_block_after_that_much_virtual_time() {
    let (mut w, a, b) = world(Impairments::none(), 2);
    let _server = w.spawn(b, "silent-server", |net| {
        let l = TcpListener::bind(&net, 80, 1).unwrap();
        let (s, _) = l.accept().unwrap();
        net.sleep(Duration::from_secs(5));
        drop(s);
    });
    let client = w.spawn(a, "client", |net| {
        let mut s = TcpStream::connect(&net, SocketAddrV4::new(host_addr(2), 80), None).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2)));
        let start = net.now();
        let err = s.read(&mut [0u8; 10]).unwrap_err();
        (err.kind(), net.now() - start)
    });
    w.run(Duration::from_secs(60)).unwrap();
    let (kind, waited) = client.join().unwrap();
    assert_eq!(kind, ErrorKind::WouldBlock);
    assert_eq!(waited, Duration::from_secs(2));
}

#[test]
fn an_outage_longer_than_the_user_timeout_is_timed_out() {
    let mut imp = Impairments {
        delay: Duration::from_millis(5),
        rate_bps: Some(10_000_000),
        ..Impairments::none()
    };
    imp.outages.push("1s+200s".parse().unwrap());
    let (mut w, a, b) = world(imp, 3);
    let _server = w.spawn(b, "sink", |net| {
        let l = TcpListener::bind(&net, 9, 1).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(100)));
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    let client = w.spawn(a, "source", |net| {
        let mut s = TcpStream::connect(&net, SocketAddrV4::new(host_addr(2), 9), None).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        let err = loop {
            if let Err(e) = s.write(&chunk) {
                break e;
            }
        };
        let read_err = s.read(&mut [0u8; 4]).unwrap_err();
        (err.kind(), read_err.kind(), net.now())
    });
    w.run(Duration::from_secs(600)).unwrap();
    let (write_kind, read_kind, at) = client.join().unwrap();
    assert_eq!(write_kind, ErrorKind::TimedOut);
    assert_eq!(read_kind, ErrorKind::TimedOut);
    // The user timeout is 60 s from the last progress, just before the outage at 1 s.
    assert!(
        at.total_millis() > 60_000 && at.total_millis() < 63_000,
        "failed at {at}"
    );
}

#[test]
fn udp_request_reply_with_retries_over_loss() {
    let imp = Impairments {
        loss: 0.3,
        delay: Duration::from_millis(10),
        ..Impairments::none()
    };
    let (mut w, a, b) = world(imp, 4);
    let _server = w.spawn(b, "udp-server", |net| {
        let mut sock = UdpSocket::bind(&net, SocketAddrV4::new(host_addr(2), 53)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            sock.send_to(&reply, from).unwrap();
        }
    });
    let client = w.spawn(a, "udp-client", |net| {
        let mut sock = UdpSocket::bind(&net, SocketAddrV4::new(host_addr(1), 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)));
        let server = SocketAddrV4::new(host_addr(2), 53);
        let mut tries = 0;
        let mut answered = 0;
        for i in 0..20u32 {
            let q = format!("q{i}");
            for _ in 0..20 {
                tries += 1;
                sock.send_to(q.as_bytes(), server).unwrap();
                let mut buf = [0u8; 512];
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) if buf[..n] == *format!("re:{q}").as_bytes() => {
                        answered += 1;
                        break;
                    }
                    Ok(_) => {} // a late reply to an earlier try
                    Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
                }
            }
        }
        (answered, tries)
    });
    w.run(Duration::from_secs(600)).unwrap();
    let (answered, tries) = client.join().unwrap();
    assert_eq!(answered, 20);
    assert!(tries > 20, "30% loss each way should need retries");
}

#[test]
fn same_seed_same_run_with_threads() {
    let run = || {
        let (mut w, a, b) = world(lossy(), 99);
        let server = echo_server(&mut w, b);
        let client = w.spawn(a, "client", |net| {
            let mut s = TcpStream::connect(&net, SocketAddrV4::new(host_addr(2), 7), None).unwrap();
            s.write_all(&vec![3u8; 200_000]).unwrap();
            s.shutdown().unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).unwrap();
            (back.len(), s.info().unwrap().stats, net.now())
        });
        w.run(Duration::from_secs(600)).unwrap();
        server.join().unwrap();
        client.join().unwrap()
    };
    let first = run();
    assert_eq!(first.0, 200_000);
    assert_eq!(first, run());
}

/// Each operation has its own error type, and the stack's errors keep their types up to
/// the application (also through `std::io::Error`).
#[test]
fn errors_are_typed_per_operation() {
    use ustack_app::socket::{BindError, ConnectError, SocketError};
    use ustack_app::transport::stack::UdpSendFailure;
    use ustack_app::transport::udp::UdpSendError;

    let (mut w, a, _b) = world(Impairments::none(), 5);
    let client = w.spawn(a, "client", |net| {
        let local = SocketAddrV4::new(host_addr(1), 4000);
        let sock = UdpSocket::bind(&net, local).unwrap();
        let second = UdpSocket::bind(&net, local).map(|_| ()).unwrap_err();
        assert!(matches!(second, BindError::AddrInUse(4000)), "{second:?}");
        assert_eq!(second.kind(), ErrorKind::AddrInUse);

        let too_big = vec![0u8; 70_000];
        let err = sock
            .send_to(&too_big, SocketAddrV4::new(host_addr(2), 9))
            .unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<SocketError>());
        assert!(
            matches!(
                inner,
                Some(SocketError::Send(UdpSendFailure::Udp(
                    UdpSendError::TooLarge { len: 70_000 }
                )))
            ),
            "{err:?}"
        );

        // Outside the host's /24 and with no gateway.
        let far = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 19, 0, 1), 80);
        let err = TcpStream::connect(&net, far, None).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, ConnectError::NoRoute(ip) if ip == *far.ip()),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::HostUnreachable);
    });
    w.run(Duration::from_secs(10)).unwrap();
    client.join().unwrap();
}
