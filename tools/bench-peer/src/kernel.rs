//! `serve`: echo, discard and source on the kernel's TCP, a thread per connection, for the
//! kernel column of `ustack bench`. It runs until a signal ends the process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};

use crate::{pattern, DISCARD, ECHO, SOURCE};

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 128 * 1024];
    while let Ok(n @ 1..) = s.read(&mut buf) {
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
    for (port, service) in [
        (ECHO, echo as fn(TcpStream)),
        (DISCARD, discard),
        (SOURCE, source),
    ] {
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
