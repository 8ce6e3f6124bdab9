//! One function per kind of measurement. Each runs once against a stack that is up and
//! returns one number per row it feeds (in the order of its table entry in `mod.rs`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration as StdDuration, Instant as WallInstant};

use super::targets::{self, StackKind, Target};
use super::{BenchConfig, BenchError};
use crate::link::{Instant, SimConfig, SimLink};
use crate::net::{Config, Interface, Ipv4Cidr};
use crate::transport::stack::{Stack, StackConfig};

/// A measurement: runs once against `target`, one value per row.
pub type ProbeFn = fn(&Target, &BenchConfig) -> Result<Vec<f64>, BenchError>;

/// `timeout 120 ustack-bench-peer client --target ADDR --mode MODE --seconds S` with
/// `extra` flags and `--json`: the one command line every peer-client probe runs.
fn peer_client_args(
    t: &Target,
    cfg: &BenchConfig,
    mode: &str,
    seconds: &str,
    extra: &[&str],
) -> Vec<String> {
    let head = ["timeout", "120"].map(String::from);
    let peer = cfg.peer.to_string_lossy().to_string();
    let flags = [
        "client",
        "--target",
        &t.addr,
        "--mode",
        mode,
        "--seconds",
        seconds,
    ];
    head.into_iter()
        .chain(std::iter::once(peer))
        .chain(
            flags
                .into_iter()
                .chain(extra.iter().copied())
                .map(String::from),
        )
        .chain(std::iter::once("--json".to_string()))
        .collect()
}

/// The last line `ustack-bench-peer client ... --json` printed.
fn peer_client(t: &Target, cfg: &BenchConfig, mode: &str) -> Result<serde_json::Value, BenchError> {
    let args = peer_client_args(t, cfg, mode, &cfg.seconds.to_string(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = t.client().exec(&args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Client(
            mode.to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let last = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(last)?)
}

/// Gbit/s through the client in `mode`; the stack process's CPU milliseconds per Gbit
/// moved (user + system, NaN for the kernel, whose work is not one process); and the whole
/// machine's busy CPU milliseconds per Gbit ([`targets::machine_busy_seconds`]: stack,
/// client and the kernel's work for both, for every column alike).
fn throughput(t: &Target, cfg: &BenchConfig, mode: &str) -> Result<Vec<f64>, BenchError> {
    let (before, machine_before) = (t.cpu_seconds(), targets::machine_busy_seconds());
    let v = peer_client(t, cfg, mode)?;
    let (after, machine_after) = (t.cpu_seconds(), targets::machine_busy_seconds());
    let gbps = v["gbps"].as_f64().unwrap_or(0.0);
    let gbit = v["bytes"].as_f64().unwrap_or(0.0) * 8.0 / 1e9;
    if !(gbps > 0.0 && gbit > 0.0) {
        return Err(BenchError::Client(
            mode.to_string(),
            format!("moved nothing: {v}"),
        ));
    }
    let per_gbit = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => (a - b) * 1000.0 / gbit,
        _ => f64::NAN,
    };
    Ok(vec![
        gbps,
        per_gbit(before, after),
        per_gbit(machine_before, machine_after),
    ])
}

/// The client writes to the stack's discard service: its receive path.
pub fn receive(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    throughput(t, cfg, "discard")
}

/// The client reads the stack's source service: its send path.
pub fn send(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    throughput(t, cfg, "source")
}

/// 1-byte TCP ping-pong on the echo service with TCP_NODELAY: p50, p99 and p99.9 in us.
pub fn pingpong(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    let v = peer_client(t, cfg, "pingpong")?;
    let p = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(vec![p("p50_us"), p("p99_us"), p("p999_us")])
}

/// New TCP connections per second to the echo service (issue 12): the peer client's
/// threads each connect, echo one byte and close with a RST, back to back.
pub fn connect_rate(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    let v = peer_client(t, cfg, "connect")?;
    match v["per_second"].as_f64() {
        Some(rate) if rate > 0.0 => Ok(vec![rate]),
        _ => Err(BenchError::Client(
            "connect".into(),
            format!("no connection completed: {v}"),
        )),
    }
}

/// Connections the memory probe holds open at once.
pub const IDLE_CONNECTIONS: usize = 10_000;

/// Memory per idle connection (issue 12): the stack's RSS before the peer client opens
/// [`IDLE_CONNECTIONS`] echo connections (one byte echoed on each), while they are held
/// idle, and after they were closed: bytes per idle connection, and the RSS after they
/// closed in % of the RSS before they opened.
pub fn idle_memory(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    use std::io::{BufRead, BufReader};
    let settle = || std::thread::sleep(StdDuration::from_millis(500));
    let rss = || {
        t.rss_bytes()
            .ok_or_else(|| BenchError::Client("hold".into(), "no RSS for the stack".into()))
    };
    let count = IDLE_CONNECTIONS.to_string();
    let args = peer_client_args(t, cfg, "hold", "60", &["--count", &count]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = rss()?;
    let mut child = t
        .client()
        .command(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(BenchError::Io)?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let opened = lines.next().and_then(Result::ok).unwrap_or_default();
    let held = serde_json::from_str::<serde_json::Value>(&opened)
        .ok()
        .filter(|v| v["open"].as_u64() == Some(IDLE_CONNECTIONS as u64));
    let during = held.as_ref().map(|_| {
        settle();
        rss()
    });
    // Standard input ends: the client closes every connection and exits.
    drop(child.stdin.take());
    let closed = lines.next().and_then(Result::ok).unwrap_or_default();
    let out = child.wait_with_output().map_err(BenchError::Io)?;
    let (Some(during), true) = (during, out.status.success()) else {
        return Err(BenchError::Client(
            "hold".into(),
            format!(
                "{opened} {closed} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    };
    let during = during?;
    settle();
    let after = rss()?;
    Ok(vec![
        during.saturating_sub(before) as f64 / IDLE_CONNECTIONS as f64,
        after as f64 * 100.0 / before.max(1) as f64,
    ])
}

/// Connections `ustack demo scale` opens on one simulated stack pair.
pub const SCALE_CONNECTIONS: usize = 100_000;

/// `ustack demo scale --connections 100000` in a process of its own (RSS is per
/// process): resident bytes per idle connection end, and connections opened per second
/// of wall time (handshakes on the simulator, both stacks in one thread).
pub fn scale(_: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    let count = SCALE_CONNECTIONS.to_string();
    let out = std::process::Command::new(&cfg.ustack)
        .args(["demo", "scale", "--connections", &count, "--json"])
        .output()
        .map_err(BenchError::Io)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .map_err(|_| {
            BenchError::Client(
                "demo scale".into(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            )
        })?;
    let (per_end, rate) = (
        v["rss_per_idle_end"].as_f64(),
        v["connections_per_second"].as_f64(),
    );
    match (per_end, rate) {
        (Some(b), Some(r)) if out.status.success() => Ok(vec![b, r]),
        _ => Err(BenchError::Client("demo scale".into(), v.to_string())),
    }
}

/// ICMP echo with iputils ping every 10 ms: p50 and p99 round trip in us, and the stack
/// process's CPU over the pings in % of one core (user + system; NaN for the kernel).
pub fn ping(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    let c = cfg.pings.to_string();
    let (before, start) = (t.cpu_seconds_precise(), WallInstant::now());
    // Not `must`: iputils exits 1 when any reply is missing, and a lost ping under load
    // is no reason to lose the row; no reply at all is.
    let out = t
        .client()
        .exec(&["ping", "-c", &c, "-i", "0.01", "-W", "2", &t.addr])?;
    let cpu = match (before, t.cpu_seconds_precise()) {
        (Some(b), Some(a)) => (a - b) * 100.0 / start.elapsed().as_secs_f64(),
        _ => f64::NAN,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for rtt in text.lines().filter_map(|l| {
        l.split("time=")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<f64>()
            .ok()
    }) {
        // iputils prints milliseconds with three decimals: whole microseconds.
        let _ = hist.record((rtt * 1000.0).round().max(1.0) as u64);
    }
    if hist.is_empty() {
        return Err(BenchError::NoPingReplies(t.addr.clone()));
    }
    Ok(vec![
        hist.value_at_quantile(0.5) as f64,
        hist.value_at_quantile(0.99) as f64,
        cpu,
    ])
}

/// Gbit/s the receiver saw, from `iperf3 -J` (the kernel's iperf3 client).
fn iperf3(t: &Target, cfg: &BenchConfig, reverse: bool) -> Result<Vec<f64>, BenchError> {
    iperf3_streams(t, cfg, reverse, 1)
}

/// [`iperf3`] with `streams` parallel streams (`-P`).
fn iperf3_streams(
    t: &Target,
    cfg: &BenchConfig,
    reverse: bool,
    streams: u32,
) -> Result<Vec<f64>, BenchError> {
    let secs = cfg.seconds.to_string();
    let parallel = streams.to_string();
    let mut args = vec![
        "timeout", "60", "iperf3", "-c", &t.addr, "-t", &secs, "-P", &parallel, "-J",
    ];
    if reverse {
        args.push("-R");
    }
    let text = t.client().must(&args)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| BenchError::Iperf3(v["error"].to_string()))?;
    Ok(vec![bps / 1e9])
}

/// Four streams from the kernel's iperf3 client into the stack (issue 12's 1 vs 2 queues).
pub fn iperf3_in_p4(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    iperf3_streams(t, cfg, false, 4)
}

/// Four streams out of the stack (`-R -P 4`).
pub fn iperf3_out_p4(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    iperf3_streams(t, cfg, true, 4)
}

/// The kernel's iperf3 client sends into the stack's iperf3 server.
pub fn iperf3_in(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    iperf3(t, cfg, false)
}

/// The stack's iperf3 server sends (`iperf3 -R`).
pub fn iperf3_out(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    iperf3(t, cfg, true)
}

/// ustack alone: TCP over an unimpaired SimLink pair in this process, Gbit/s.
pub fn sim(_: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    let bytes = cfg.sim_bytes;
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
    let c = a
        .tcp_connect(now, SocketAddrV4::new(ip(2), 5201))
        .map_err(|e| BenchError::Sim(e.to_string()))?;
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
    if got < bytes {
        return Err(BenchError::Sim(format!("{got} of {bytes} bytes in 60 s")));
    }
    Ok(vec![got as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9])
}

/// Mbit/s the receiver counted in a kernel `iperf3 -c -C cc -J` from L to `addr`.
fn kernel_iperf3_mbps(
    t: &Target,
    cfg: &BenchConfig,
    addr: &str,
    cc: &str,
) -> Result<f64, BenchError> {
    let secs = cfg.lossy_seconds.to_string();
    let args = [
        "timeout", "60", "iperf3", "-c", addr, "-t", &secs, "-C", cc, "-J",
    ];
    let text = t.client().must(&args)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| BenchError::Iperf3(v["error"].to_string()))?;
    Ok(bps / 1e6)
}

/// A sender on a lossy path into the kernel's `iperf3 -s` in R, congestion control `cc`:
/// the kernel's `iperf3 -c -C cc`, or `ustack iperf3 -c -C cc` on its TUN in L. Goodput in
/// Mbit/s as the receiver counted it (iperf3's `sum_received`; for ustack, the bytes the
/// server reported over the client's test time).
fn lossy_send(t: &Target, cfg: &BenchConfig, cc: &str) -> Result<Vec<f64>, BenchError> {
    let forwarder = targets::impair(t, cfg)?;
    let mbps = lossy_send_mbps(t, cfg, cc)?;
    forwarder.settle(t)?;
    Ok(vec![mbps])
}

fn lossy_send_mbps(t: &Target, cfg: &BenchConfig, cc: &str) -> Result<f64, BenchError> {
    let (StackKind::LossyKernel(path) | StackKind::LossyUstack(path)) = t.kind else {
        unreachable!("lossy probes run only against lossy targets");
    };
    let a = path.addrs();
    if let StackKind::LossyKernel(_) = t.kind {
        return kernel_iperf3_mbps(t, cfg, &a.kernel_server, cc);
    }
    let ustack = cfg.ustack.to_string_lossy().to_string();
    let secs = cfg.lossy_seconds.to_string();
    let args = [
        "timeout",
        "60",
        &ustack,
        "iperf3",
        "-c",
        &a.kernel_server,
        "--tun",
        targets::SENDER_TUN,
        "--addr",
        &a.ustack_client,
        "--gateway",
        &a.ustack_gateway,
        "-C",
        cc,
        "-t",
        &secs,
        "--json",
    ];
    let text = t.client().must(&args)?;
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())?;
    let (bytes, seconds) = (v["server_bytes"].as_f64(), v["seconds"].as_f64());
    match (bytes, seconds) {
        (Some(b), Some(s)) if b > 0.0 && s > 0.0 => Ok(b * 8.0 / s / 1e6),
        _ => Err(BenchError::Client(
            format!("ustack iperf3 -C {cc}"),
            format!("no bytes reached the server: {v}"),
        )),
    }
}

/// Kernel CUBIC or ustack CUBIC sending through a lossy path.
pub fn lossy_send_cubic(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    lossy_send(t, cfg, "cubic")
}

/// Kernel BBR or ustack BBR sending through a lossy path.
pub fn lossy_send_bbr(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    lossy_send(t, cfg, "bbr")
}

/// The kernel's BBR sender (`iperf3 -c -C bbr` in L) into the kernel's `iperf3 -s` or
/// `ustack up`'s iperf3 server in R, Mbit/s as the receiver counted them.
pub fn lossy_receive(t: &Target, cfg: &BenchConfig) -> Result<Vec<f64>, BenchError> {
    let forwarder = targets::impair(t, cfg)?;
    let mbps = kernel_iperf3_mbps(t, cfg, &t.addr, "bbr")?;
    forwarder.settle(t)?;
    Ok(vec![mbps])
}
