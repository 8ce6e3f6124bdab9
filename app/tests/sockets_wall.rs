//! The wall-clock runtime: two hosts, each driven by its own runtime thread, over an
//! unimpaired SimLink pair sharing one clock; any thread may use the sockets.

use std::io::{Read, Write};
use std::net::SocketAddrV4;

use ustack_app::link::{Clock, Duration, SimConfig, SimLink};
use ustack_app::runtime::Runtime;
use ustack_app::sim::{host_addr, stack};
use ustack_app::socket::{TcpListener, TcpStream};
use ustack_app::transport::stack::StackConfig;

#[test]
fn echo_over_two_wall_clock_runtimes() {
    let (a, b) = SimLink::pair(SimConfig::default(), 1).unwrap();
    let clock = Clock::wall();
    let ra = Runtime::start_with_clock(
        stack(Box::new(a), host_addr(1), StackConfig::default()),
        clock,
    );
    let rb = Runtime::start_with_clock(
        stack(Box::new(b), host_addr(2), StackConfig::default()),
        clock,
    );
    let server_caller = rb.caller();
    let listener = TcpListener::bind(&server_caller, 7, 1).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let mut c = TcpStream::connect(
        &ra.caller(),
        SocketAddrV4::new(host_addr(2), 7),
        Some(Duration::from_secs(5)),
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5)));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut back = Vec::new();
    for chunk in data.chunks(20_000) {
        c.write_all(chunk).unwrap();
        let mut echoed = vec![0u8; chunk.len()];
        c.read_exact(&mut echoed).unwrap();
        back.extend_from_slice(&echoed);
    }
    c.shutdown().unwrap();
    c.read_to_end(&mut back).unwrap();
    assert!(
        back == data,
        "echo differs ({} of {} bytes)",
        back.len(),
        data.len()
    );
    server.join().unwrap();
    drop(c);
    assert!(ra.stop().is_some());
    drop(rb);
}
