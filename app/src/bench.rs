//! `ustack bench`: side-by-side measurements in one run on this machine, inside network
//! namespaces it creates and deletes (198.18.3.0/24 to 198.18.5.0/24), as ratios to the
//! kernel's own TCP/IP:
//! - TCP throughput: kernel iperf3 to kernel iperf3 over a veth pair (the baseline), the
//!   kernel's iperf3 client against `ustack up` on a TUN device, and `ustack iperf3 -c`
//!   against the kernel's server;
//! - request/response latency: kernel ping RTT over veth versus to ustack on TUN
//!   (percentiles from an HDR histogram);
//! - ustack's TCP alone, in process, over an unimpaired SimLink pair.
//!
//! smoltcp, the third column DESIGN.md asks for, is not measured yet: the bench says so.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration as StdDuration, Instant as WallInstant};

use crate::link::{Instant, SimConfig, SimLink};
use crate::net::{Config, Interface, Ipv4Cidr};
use crate::netns::{Netns, NetnsError};
use crate::transport::stack::{Stack, StackConfig};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Seconds per throughput test.
    pub seconds: u64,
    /// Pings per latency test.
    pub pings: u32,
    /// Bytes for the in-process SimLink test.
    pub sim_bytes: usize,
    /// The `ustack` binary to start for the device tests.
    pub ustack: PathBuf,
}

impl BenchConfig {
    pub fn new(quick: bool, ustack: PathBuf) -> BenchConfig {
        BenchConfig {
            seconds: if quick { 1 } else { 5 },
            pings: if quick { 50 } else { 500 },
            sim_bytes: if quick { 256 << 20 } else { 1 << 30 },
            ustack,
        }
    }
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("ustack bench needs root (network namespaces and TUN devices)")]
    NotRoot,
    #[error("`{0}` is needed and was not found (apt-get install {1})")]
    Missing(&'static str, &'static str),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("iperf3 -J printed no JSON: {0}")]
    Iperf3Json(#[from] serde_json::Error),
    /// iperf3's own message (its JSON `error` field).
    #[error("iperf3 gave no result: {0}")]
    Iperf3(String),
    #[error("no ping replies from {0}")]
    NoPingReplies(String),
    #[error("cannot make a latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
        || Command::new(tool).arg("-V").output().is_ok()
}

/// Bits per second received, from `iperf3 -J`.
fn iperf3_bps(ns: &Netns, server: &str, seconds: u64, reverse: bool) -> Result<f64, BenchError> {
    let t = seconds.to_string();
    let mut args = vec!["timeout", "60", "iperf3", "-c", server, "-t", &t, "-J"];
    if reverse {
        args.push("-R");
    }
    let text = ns.must(&args)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| BenchError::Iperf3(v["error"].to_string()))
}

/// Ping round-trip times: (p50, p99, max) in microseconds.
fn ping_us(ns: &Netns, target: &str, count: u32) -> Result<(u64, u64, u64), BenchError> {
    let c = count.to_string();
    let text = ns.must(&["ping", "-c", &c, "-i", "0.01", "-W", "2", target])?;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for rtt in text.lines().filter_map(|l| {
        l.split("time=")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<f64>()
            .ok()
    }) {
        let _ = hist.record((rtt * 1000.0).round().max(1.0) as u64);
    }
    if hist.is_empty() {
        return Err(BenchError::NoPingReplies(target.to_string()));
    }
    Ok((
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
    ))
}

/// What one stack under test measured from the kernel's side.
struct Measured {
    /// Bits per second into the stack, and out of it (iperf3 -R).
    tcp_in: f64,
    tcp_out: f64,
    /// Ping round-trip p50, p99 and max, in microseconds.
    ping: (f64, f64, f64),
}

/// Throughput both ways and ping latency from `ns` to the stack at `target`.
fn measure(ns: &Netns, target: &str, cfg: &BenchConfig) -> Result<Measured, BenchError> {
    let tcp_in = iperf3_bps(ns, target, cfg.seconds, false)?;
    let tcp_out = iperf3_bps(ns, target, cfg.seconds, true)?;
    let (p50, p99, max) = ping_us(ns, target, cfg.pings)?;
    Ok(Measured {
        tcp_in,
        tcp_out,
        ping: (p50 as f64, p99 as f64, max as f64),
    })
}

/// ustack alone: TCP over an unimpaired SimLink pair in this process.
fn sim_gbps(bytes: usize) -> f64 {
    let (la, lb) = SimLink::pair(SimConfig::default(), 1).expect("a valid default config");
    let ip = |n| Ipv4Addr::new(198, 18, 5, n);
    let mk = |l, n| {
        Stack::new(
            Interface::new(
                l,
                Config::new(Ipv4Cidr {
                    addr: ip(n),
                    prefix_len: 24,
                }),
            ),
            StackConfig::default(),
        )
    };
    let (mut a, mut b) = (mk(la, 1), mk(lb, 2));
    let _ = b.tcp_listen(5201, 1);
    let now = Instant::ZERO;
    let Ok(c) = a.tcp_connect(now, SocketAddrV4::new(ip(2), 5201)) else {
        return 0.0;
    };
    let chunk = vec![0u8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got, mut server) = (0, 0, None);
    let start = WallInstant::now();
    while got < bytes && start.elapsed() < StdDuration::from_secs(60) {
        // A SimLink has no receive error to report.
        let _ = a.poll(now);
        let _ = b.poll(now);
        server = server.or_else(|| b.tcp_accept(5201));
        if sent < bytes {
            sent += a
                .tcp_send(c, &chunk[..chunk.len().min(bytes - sent)])
                .unwrap_or(0);
        }
        if let Some(s) = server {
            while let Ok(n @ 1..) = b.tcp_recv(s, &mut buf) {
                got += n;
            }
        }
    }
    got as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
}

/// One measured row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub what: &'static str,
    pub kernel: f64,
    pub ustack: f64,
    pub unit: &'static str,
}

/// Runs every measurement; `out` gets the table.
pub fn run_bench(cfg: &BenchConfig, out: &mut dyn Write) -> Result<Vec<Row>, BenchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("iperf3", "iperf3"),
        ("ping", "iputils-ping"),
    ] {
        if !have(tool) {
            return Err(BenchError::Missing(tool, pkg));
        }
    }
    let _ = writeln!(
        out,
        "ustack bench: {} s per throughput test, {} pings per latency test",
        cfg.seconds, cfg.pings
    );
    let ustack = cfg.ustack.to_string_lossy().to_string();

    // The kernel over a veth pair.
    let ka = Netns::new("bench-ka")?;
    let mut kb = Netns::new("bench-kb")?;
    ka.must(&[
        "ip",
        "link",
        "add",
        "ubench0",
        "type",
        "veth",
        "peer",
        "ubench1",
        "netns",
        kb.name(),
    ])?;
    ka.must(&["ip", "addr", "add", "198.18.3.1/24", "dev", "ubench0"])?;
    ka.must(&["ip", "link", "set", "ubench0", "up"])?;
    kb.must(&["ip", "addr", "add", "198.18.3.2/24", "dev", "ubench1"])?;
    kb.must(&["ip", "link", "set", "ubench1", "up"])?;
    kb.spawn(&["iperf3", "-s"])?;
    std::thread::sleep(StdDuration::from_millis(300));
    let kernel = measure(&ka, "198.18.3.2", cfg)?;
    drop(kb);
    drop(ka);

    // ustack on TUN, the kernel on the other side.
    let mut us = Netns::new("bench-us")?;
    us.spawn(&[&ustack, "up", "--tun", "ubench2", "--addr", "198.18.4.2/24"])?;
    us.wait_for_link("ubench2")?;
    us.must(&["ip", "addr", "add", "198.18.4.1/24", "dev", "ubench2"])?;
    us.must(&["ip", "link", "set", "ubench2", "up"])?;
    let ours = measure(&us, "198.18.4.2", cfg)?;
    drop(us);

    let gbps = |bps: f64| bps / 1e9;
    let mut rows: Vec<Row> = [
        (
            "TCP into the stack (iperf3 from the kernel)",
            gbps(kernel.tcp_in),
            gbps(ours.tcp_in),
            "Gbit/s",
        ),
        (
            "TCP out of the stack (iperf3 -R)",
            gbps(kernel.tcp_out),
            gbps(ours.tcp_out),
            "Gbit/s",
        ),
        ("ping RTT p50", kernel.ping.0, ours.ping.0, "us"),
        ("ping RTT p99", kernel.ping.1, ours.ping.1, "us"),
        ("ping RTT max", kernel.ping.2, ours.ping.2, "us"),
    ]
    .into_iter()
    .map(|(what, kernel, ustack, unit)| Row {
        what,
        kernel,
        ustack,
        unit,
    })
    .collect();
    let sim = sim_gbps(cfg.sim_bytes);

    let _ = writeln!(
        out,
        "{:<46} {:>10} {:>10} {:>8}",
        "measurement", "kernel", "ustack", "ratio"
    );
    for r in &rows {
        let ratio = if r.kernel > 0.0 {
            r.ustack / r.kernel
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:<46} {:>10.2} {:>10.2} {:>7.2}x  {}",
            r.what, r.kernel, r.ustack, ratio, r.unit
        );
    }
    let _ = writeln!(
        out,
        "{:<46} {:>10} {:>10.2} {:>8}  Gbit/s",
        "TCP in process over a SimLink pair", "-", sim, "-"
    );
    let _ = writeln!(
        out,
        "smoltcp: not measured yet (the reference peer is not part of ustack bench so far)"
    );
    rows.push(Row {
        what: "TCP in process over a SimLink pair",
        kernel: 0.0,
        ustack: sim,
        unit: "Gbit/s",
    });
    Ok(rows)
}

/// The rows as one JSON document.
pub fn to_json(rows: &[Row]) -> serde_json::Value {
    serde_json::json!({
        "tool": "ustack bench",
        "smoltcp": null,
        "rows": rows.iter().map(|r| serde_json::json!({
            "what": r.what, "kernel": r.kernel, "ustack": r.ustack, "unit": r.unit,
            "ratio_to_kernel": if r.kernel > 0.0 { serde_json::json!(r.ustack / r.kernel) } else { serde_json::Value::Null },
        })).collect::<Vec<_>>(),
    })
}

/// Writes `to_json` to `path`.
pub fn write_json(rows: &[Row], path: &Path) -> std::io::Result<()> {
    std::fs::write(path, to_json(rows).to_string())
}
