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
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "discard" => Ok(Mode::Discard),
            "source" => Ok(Mode::Source),
            "pingpong" => Ok(Mode::PingPong),
            _ => Err(format!("--mode: {s:?} is not discard, source or pingpong")),
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

pub fn run(target: Ipv4Addr, mode: Mode, seconds: f64) -> Result<serde_json::Value, String> {
    if !(seconds > 0.0 && seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    match mode {
        Mode::Discard => discard(target, seconds),
        Mode::Source => source(target, seconds),
        Mode::PingPong => pingpong(target, seconds),
    }
}
