//! `smoltcp`: smoltcp 0.14 on a TUN device, the reference user-space stack of `ustack
//! bench`. One thread, smoltcp's own `TunTapInterface` (one read or write per packet, as
//! smoltcp ships it) and its documented loop: `Interface::poll`, serve the sockets, then
//! wait on the device's fd for at most `Interface::poll_delay` (no sleeps of our own).
//! ICMP echo is answered by the interface (feature `auto-icmp-echo-reply`).

use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{wait as phy_wait, Medium, TunTapInterface};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::{pattern, DISCARD, ECHO, SOURCE};

/// Send and receive buffer of every connection (fixed: smoltcp does not autotune).
pub const BUFFER: usize = 4 << 20;
/// Listening sockets kept ready per port, so several connections can be accepted at once.
const LISTEN_POOL: usize = 2;
/// The longest the loop blocks, so a stop signal is noticed even if it lands between the
/// flag check and the wait (the wait normally ends early with EINTR).
const MAX_WAIT: Duration = Duration::from_millis(500);

/// A period-aligned slice of the source pattern, copied from at any offset.
struct Pattern(Vec<u8>);

impl Pattern {
    const PERIOD: usize = 95;

    /// Fills `buf` with the pattern from stream offset `*at`, advancing it.
    fn fill(&self, buf: &mut [u8], at: &mut usize) {
        let mut done = 0;
        while done < buf.len() {
            let from = *at % Self::PERIOD;
            let n = (buf.len() - done).min(self.0.len() - from);
            buf[done..done + n].copy_from_slice(&self.0[from..from + n]);
            done += n;
            *at += n;
        }
    }
}

struct Conn {
    handle: SocketHandle,
    port: u16,
    /// Bytes of the pattern sent so far (source).
    sent: usize,
}

fn new_socket(port: u16) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    );
    s.set_congestion_control(tcp::CongestionControl::Cubic);
    // An echo answers at once, like the kernel's echo service with TCP_NODELAY.
    s.set_nagle_enabled(port != ECHO);
    s.listen(port).expect("a non-zero port");
    s
}

/// Serves one connection; returns whether it moved any data.
fn serve(s: &mut tcp::Socket<'_>, conn: &mut Conn, scratch: &mut [u8], pat: &Pattern) -> bool {
    let mut moved = false;
    match conn.port {
        ECHO => {
            while s.can_recv() && s.can_send() {
                let room = (s.send_capacity() - s.send_queue()).min(scratch.len());
                match s.recv_slice(&mut scratch[..room]) {
                    Ok(n @ 1..) => {
                        // `room` bytes fit by construction.
                        let _ = s.send_slice(&scratch[..n]);
                        moved = true;
                    }
                    _ => break,
                }
            }
        }
        DISCARD => {
            while let Ok(n @ 1..) = s.recv(|b| (b.len(), b.len())) {
                moved |= n > 0;
            }
        }
        _ => {
            if s.can_send() {
                let sent = &mut conn.sent;
                if let Ok(n) = s.send(|b| {
                    pat.fill(b, sent);
                    (b.len(), b.len())
                }) {
                    moved |= n > 0;
                }
            }
        }
    }
    // The peer closed its side and everything it sent was read: close ours.
    if s.state() == tcp::State::CloseWait && !s.can_recv() {
        s.close();
    }
    moved
}

/// `A.B.C.D/LEN`.
pub fn cidr(addr: &str) -> Result<(Ipv4Address, u8), String> {
    let (ip, len) = addr
        .split_once('/')
        .ok_or_else(|| format!("--addr {addr}: expected A.B.C.D/LEN"))?;
    let ip: Ipv4Address = ip
        .parse()
        .map_err(|_| format!("--addr: bad address {ip}"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("--addr: bad prefix length {len}"))?;
    Ok((ip, len))
}

pub fn run(tun: &str, (ip, len): (Ipv4Address, u8)) -> Result<(), String> {
    let addr = format!("{ip}/{len}");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }

    let mut device =
        TunTapInterface::new(tun, Medium::Ip).map_err(|e| format!("cannot open TUN {tun}: {e}"))?;
    let fd = device.as_raw_fd();
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ip), len));
    });

    let mut sockets = SocketSet::new(vec![]);
    let mut conns: Vec<Conn> = Vec::new();
    let pat = Pattern(pattern(Pattern::PERIOD * 700));
    let mut scratch = vec![0u8; 256 * 1024];
    println!(
        "smoltcp on {tun} as {addr}: ICMP echo, TCP echo (7), discard (9), source (19); \
         CUBIC, {} MiB send and receive buffers",
        BUFFER >> 20
    );

    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        iface.poll(now, &mut device, &mut sockets);
        let mut moved = false;
        for conn in &mut conns {
            let s = sockets.get_mut::<tcp::Socket>(conn.handle);
            if s.state() == tcp::State::Closed {
                // Done (closed, reset or timed out): listen again, reusing its buffers.
                let _ = s.listen(conn.port);
                conn.sent = 0;
            } else if s.is_active() {
                moved |= serve(s, conn, &mut scratch, &pat);
            }
        }
        for port in [ECHO, DISCARD, SOURCE] {
            let listening = conns
                .iter()
                .filter(|c| c.port == port && sockets.get::<tcp::Socket>(c.handle).is_listening())
                .count();
            for _ in listening..LISTEN_POOL {
                let handle = sockets.add(new_socket(port));
                conns.push(Conn {
                    handle,
                    port,
                    sent: 0,
                });
            }
        }
        if moved {
            // What the services queued or the window they opened goes out right away.
            continue;
        }
        let delay = iface
            .poll_delay(Instant::now(), &sockets)
            .map_or(MAX_WAIT, |d| d.min(MAX_WAIT));
        // EINTR from the stop signal ends the wait early; the loop condition sees it.
        let _ = phy_wait(fd, Some(delay));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes of any size continue the RFC 864 pattern where the last one stopped.
    #[test]
    fn the_source_pattern_continues_across_writes() {
        let pat = Pattern(pattern(Pattern::PERIOD * 3));
        let (mut at, mut got) = (0, Vec::new());
        for len in [1, 94, 96, 500, 7] {
            let mut buf = vec![0u8; len];
            pat.fill(&mut buf, &mut at);
            got.extend_from_slice(&buf);
        }
        assert_eq!(at, got.len());
        assert_eq!(got, pattern(got.len()));
    }

    #[test]
    fn addresses_need_a_prefix_length() {
        assert_eq!(
            cidr("198.18.6.2/24"),
            Ok((Ipv4Address::new(198, 18, 6, 2), 24))
        );
        assert!(cidr("198.18.6.2").is_err());
        assert!(cidr("198.18.6.2/33").is_err());
    }
}
