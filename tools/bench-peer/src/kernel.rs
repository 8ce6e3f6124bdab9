//! `serve`: echo, discard and source on the kernel's TCP, for the kernel column of `ustack
//! bench`: discard and source with a thread per connection, echo with a pool of threads
//! that accept and serve in turn, so a new echo connection costs the kernel's TCP and a
//! few system calls but no thread start (the connection-rate row). It runs until a signal
//! ends the process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};

use crate::{pattern, DISCARD, ECHO, SOURCE};

/// Echo threads: more than the connection-rate client's threads plus the ping-pong
/// connection, so no client waits for a free one.
const ECHO_WORKERS: usize = 16;

fn echo(mut s: TcpStream, buf: &mut [u8]) {
    let _ = s.set_nodelay(true);
    while let Ok(n @ 1..) = s.read(buf) {
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn discard(mut s: TcpStream) {
    let mut buf = vec![0u8; 128 * 1024];
    while let Ok(1..) = s.read(&mut buf) {}
}

fn source(mut s: TcpStream) {
    // 95 * 1380 bytes: a whole number of pattern periods, so every write continues it.
    let data = pattern(95 * 1380);
    while s.write_all(&data).is_ok() {}
}

pub fn serve(addr: Ipv4Addr) -> Result<(), String> {
    let mut threads = Vec::new();
    let listener = TcpListener::bind(SocketAddrV4::new(addr, ECHO))
        .map_err(|e| format!("cannot listen on {addr}:{ECHO}: {e}"))?;
    for _ in 0..ECHO_WORKERS {
        let listener = listener.try_clone().map_err(|e| e.to_string())?;
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 128 * 1024];
            for s in listener.incoming().flatten() {
                echo(s, &mut buf);
            }
        }));
    }
    for (port, service) in [(DISCARD, discard as fn(TcpStream)), (SOURCE, source)] {
        let listener = TcpListener::bind(SocketAddrV4::new(addr, port))
            .map_err(|e| format!("cannot listen on {addr}:{port}: {e}"))?;
        threads.push(std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                std::thread::spawn(move || service(s));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
