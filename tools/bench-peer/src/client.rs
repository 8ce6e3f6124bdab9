//! `client`: the one kernel-socket client `ustack bench` runs against every stack, so the
//! columns differ only in the stack under test.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{DISCARD, ECHO, SOURCE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write to the stack's discard service: its receive path.
    Discard,
    /// Read from the stack's source service: its send path.
    Source,
    /// 1-byte request, 1-byte response on the stack's echo service.
    PingPong,
    /// New connections to the echo service, one byte echoed on each, from
    /// [`CONNECT_THREADS`] threads: the connection rate.
    Connect,
    /// `--count` connections to the echo service, one byte echoed on each, then held
    /// idle until standard input ends: the stack's memory per idle connection.
    Hold,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "discard" => Ok(Mode::Discard),
            "source" => Ok(Mode::Source),
            "pingpong" => Ok(Mode::PingPong),
            "connect" => Ok(Mode::Connect),
            "hold" => Ok(Mode::Hold),
            _ => Err(format!(
                "--mode: {s:?} is not discard, source, pingpong, connect or hold"
            )),
        }
    }
}

/// Writes and reads in chunks this large.
const CHUNK: usize = 128 * 1024;
/// How long the stack may take to answer at all (connect, a read, the final FIN).
const PATIENCE: Duration = Duration::from_secs(10);

fn connect(target: Ipv4Addr, port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddrV4::new(target, port);
    let s = TcpStream::connect_timeout(&addr.into(), PATIENCE)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn gbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}

/// Writes for `seconds`, then shuts down its sending side and waits for the peer's FIN,
/// so every byte counted was accepted by the stack's application.
fn discard(target: Ipv4Addr, seconds: f64) -> Result<serde_json::Value, String> {
    let mut s = connect(target, DISCARD)?;
    let data = vec![0x5au8; CHUNK];
    let (start, mut bytes) = (Instant::now(), 0u64);
    let run = Duration::from_secs_f64(seconds);
    while start.elapsed() < run {
        s.write_all(&data).map_err(|e| format!("write: {e}"))?;
        bytes += CHUNK as u64;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the peer's FIN: {e}")),
        }
    }
    let elapsed = start.elapsed();
    Ok(
        json!({"mode": "discard", "bytes": bytes, "seconds": elapsed.as_secs_f64(),
               "gbps": gbps(bytes, elapsed)}),
    )
}

/// Reads for `seconds`.
fn source(target: Ipv4Addr, seconds: f64) -> Result<serde_json::Value, String> {
    let mut s = connect(target, SOURCE)?;
    let mut buf = vec![0u8; CHUNK];
    let (start, mut bytes) = (Instant::now(), 0u64);
    let run = Duration::from_secs_f64(seconds);
    while start.elapsed() < run {
        match s.read(&mut buf) {
            Ok(0) => return Err("the source service closed the connection".into()),
            Ok(n) => bytes += n as u64,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let elapsed = start.elapsed();
    Ok(
        json!({"mode": "source", "bytes": bytes, "seconds": elapsed.as_secs_f64(),
               "gbps": gbps(bytes, elapsed)}),
    )
}

/// 1-byte ping-pong for `seconds`, every round trip in an HDR histogram (microseconds).
fn pingpong(target: Ipv4Addr, seconds: f64) -> Result<serde_json::Value, String> {
    let mut s = connect(target, ECHO)?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let run = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut byte = [0u8; 1];
    while start.elapsed() < run {
        let t = Instant::now();
        s.write_all(b"x").map_err(|e| format!("write: {e}"))?;
        s.read_exact(&mut byte).map_err(|e| format!("read: {e}"))?;
        // Nanoseconds, so sub-microsecond differences survive to the percentiles.
        let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(
        json!({"mode": "pingpong", "count": hist.len(), "p50_us": us(0.5), "p99_us": us(0.99),
               "p999_us": us(0.999), "max_us": hist.max() as f64 / 1000.0}),
    )
}

/// Client threads of the connection-rate test, each opening one connection at a time.
pub const CONNECT_THREADS: usize = 4;

/// Connect and echo one byte: an established connection that has carried data both ways.
fn echoed(target: Ipv4Addr) -> Result<TcpStream, String> {
    let mut s = connect(target, ECHO)?;
    let mut byte = [0u8; 1];
    s.write_all(b"c").map_err(|e| format!("write: {e}"))?;
    s.read_exact(&mut byte).map_err(|e| format!("read: {e}"))?;
    if byte != *b"c" {
        return Err(format!("echo answered {byte:?} to \"c\""));
    }
    Ok(s)
}

/// Opens `count` echoed connections, prints one JSON line saying so, holds them until
/// standard input ends (the bench measures the stack meanwhile), then closes them all
/// (FIN, not RST: the stack's normal close path) and returns the closing report.
fn hold(target: Ipv4Addr, count: usize, json: bool) -> Result<serde_json::Value, String> {
    use nix::sys::resource::{setrlimit, Resource};
    // A descriptor per connection: raise the limit (root may raise the hard one too).
    let want = count as u64 + 64;
    setrlimit(Resource::RLIMIT_NOFILE, want, want)
        .map_err(|e| format!("cannot allow {want} open files: {e}"))?;
    let start = Instant::now();
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        held.push(echoed(target).map_err(|e| format!("connection {i} of {count}: {e}"))?);
    }
    let opened = json!({"mode": "hold", "open": held.len(),
                        "seconds_to_open": start.elapsed().as_secs_f64()});
    if json {
        println!("{opened}");
    } else {
        println!("{opened:#}");
    }
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    let closing = Instant::now();
    drop(held);
    Ok(json!({"mode": "hold", "closed": count,
              "seconds_to_close": closing.elapsed().as_secs_f64()}))
}

/// One connection of the rate test: connect, one byte to echo and back, then an abortive
/// close (SO_LINGER 0, a RST), so no TIME-WAIT holds the port and the rate is not bounded
/// by the 28 232 ephemeral ports per 60 s a graceful close would leave.
fn one_connection(target: Ipv4Addr) -> Result<(), String> {
    let s = echoed(target)?;
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &abort)
        .map_err(|e| format!("SO_LINGER: {e}"))
}

/// Connections per second over `seconds`: [`CONNECT_THREADS`] threads, each running
/// [`one_connection`] back to back. The first error ends the test with that error.
fn connect_rate(target: Ipv4Addr, seconds: f64) -> Result<serde_json::Value, String> {
    let run = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..CONNECT_THREADS)
        .map(|_| {
            std::thread::spawn(move || -> Result<u64, String> {
                let mut done = 0u64;
                while start.elapsed() < run {
                    one_connection(target)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut connections = 0;
    for t in threads {
        connections += t.join().map_err(|_| "a client thread panicked")??;
    }
    let elapsed = start.elapsed();
    Ok(
        json!({"mode": "connect", "connections": connections, "threads": CONNECT_THREADS,
              "seconds": elapsed.as_secs_f64(),
              "per_second": connections as f64 / elapsed.as_secs_f64()}),
    )
}

/// Runs `mode` for `seconds` (`Hold`: `count` connections until standard input ends).
pub fn run(
    target: Ipv4Addr,
    mode: Mode,
    seconds: f64,
    count: usize,
    json: bool,
) -> Result<serde_json::Value, String> {
    if !(seconds > 0.0 && seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    match mode {
        Mode::Discard => discard(target, seconds),
        Mode::Source => source(target, seconds),
        Mode::PingPong => pingpong(target, seconds),
        Mode::Connect => connect_rate(target, seconds),
        Mode::Hold => hold(target, count, json),
    }
}
