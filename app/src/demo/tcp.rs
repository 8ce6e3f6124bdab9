//! The TCP demo: host A sends a generated file to host B over a simulated link through
//! the impairment engine, on the virtual clock. TCP rides out outages shorter than its
//! patience; a longer one makes the connection fail (TimedOut), and the application
//! reconnects with backoff and resumes from the offset the receiver confirms, so the file
//! arrives exact: the sha256 of both sides is compared at the end.
//!
//! Application protocol on each connection (all integers big-endian):
//! - A to B, HELLO: `b"USTK"`, version 1, file id (u64), size (u64), sha256 (32 bytes);
//! - B to A, RESUME: the offset (u64) up to which B already holds the file;
//! - A to B: the bytes from that offset to the end;
//! - B to A, DONE: the sha256 of what B holds (32 bytes), once it holds `size` bytes.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant as WallInstant;

use sha2::{Digest, Sha256};

use crate::link::{
    seed, tap_boxed, Duration, ImpairError, Impairments, Instant, Outage, PcapSink, SimConfig,
    SimLink,
};
use crate::runtime::{Caller, RuntimeError, SimWorld, WorldError};
use crate::sim::{host_addr, stack};
use crate::socket::{SocketError, TcpListener, TcpStream};
use crate::transport::stack::StackConfig;
use crate::transport::tcp::{Algorithm, TcpConfig};

const PORT: u16 = 5001;
const MAGIC: &[u8; 4] = b"USTK";
const VERSION: u8 = 1;
const HELLO_LEN: usize = 4 + 1 + 8 + 8 + 32;
const CHUNK: usize = 64 * 1024;
/// How long the receiver waits on a silent connection before dropping it.
const RECEIVER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpDemoConfig {
    pub size: u64,
    /// What the link does to packets, the same in both directions. By default a
    /// 20 Mbit/s link (so a transfer takes virtual seconds and outages land in it) with a
    /// 10 ms delay that goes down from t = 5 s for 10 s.
    pub impairments: Impairments,
    pub seed: u64,
    pub pcap: Option<PathBuf>,
    /// Give up (a clear failure) if the file is not across after this much virtual time.
    pub give_up_after: Duration,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// The congestion control of both hosts.
    pub congestion: Algorithm,
    /// RACK-TLP loss detection (RFC 8985) on both hosts (`TcpConfig::rack` and `tlp`).
    pub rack: bool,
}

impl Default for TcpDemoConfig {
    fn default() -> TcpDemoConfig {
        TcpDemoConfig {
            size: 32 << 20,
            impairments: Impairments {
                delay: Duration::from_millis(10),
                rate_bps: Some(20_000_000),
                queue_bytes: 256 * 1024,
                outages: vec![Outage::new(Duration::from_secs(5), Duration::from_secs(10))],
                ..Impairments::none()
            },
            seed: 1,
            pcap: None,
            give_up_after: Duration::from_secs(3600),
            progress: true,
            congestion: Algorithm::default(),
            rack: TcpConfig::default().rack,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpDemoReport {
    pub bytes: u64,
    pub sha256_sender: String,
    pub sha256_receiver: Option<String>,
    pub retransmits: u64,
    pub timeouts: u64,
    /// Connections after the first.
    pub reconnects: u64,
    /// Connection attempts that failed (refused, timed out during an outage).
    pub failed_connects: u64,
    pub virtual_time: Duration,
    pub wall_time: std::time::Duration,
    pub link_lost: u64,
    pub link_outage_dropped: u64,
    /// The congestion control both hosts ran.
    pub congestion: Algorithm,
    /// Whether both hosts ran RACK-TLP.
    pub rack: bool,
    /// Why the sender gave up, if it did.
    pub failure: Option<String>,
}

impl TcpDemoReport {
    pub fn sha256_match(&self) -> bool {
        self.sha256_receiver.as_deref() == Some(self.sha256_sender.as_str())
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "demo": "tcp",
            "bytes": self.bytes,
            "sha256_match": self.sha256_match(),
            "sha256_sender": self.sha256_sender,
            "sha256_receiver": self.sha256_receiver,
            "retransmits": self.retransmits,
            "timeouts": self.timeouts,
            "reconnects": self.reconnects,
            "failed_connects": self.failed_connects,
            "virtual_s": self.virtual_time.as_secs_f64(),
            "wall_s": self.wall_time.as_secs_f64(),
            "link_lost": self.link_lost,
            "link_outage_dropped": self.link_outage_dropped,
            "congestion": self.congestion.name(),
            "rack": self.rack,
            "failure": self.failure,
        })
    }
}

/// Why the demo could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("invalid impairment: {0}")]
    Impairment(#[from] ImpairError),
    #[error("cannot write the capture: {0}")]
    Pcap(#[from] std::io::Error),
}

/// The file: bytes from the seed, the same on every run with that seed.
pub fn generate(size: u64, seed: u64) -> Vec<u8> {
    let words = size.div_ceil(8);
    let mut out: Vec<u8> = (0..words)
        .flat_map(|i| seed::derive(seed, i).to_le_bytes())
        .collect();
    out.truncate(size as usize);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shared counters the progress bar reads.
#[derive(Default)]
struct Progress {
    offset: AtomicU64,
    retransmits: AtomicU64,
    virtual_ms: AtomicU64,
    down: AtomicU64,
    reconnects: AtomicU64,
}

/// Runs the demo; `out` gets the narrative (the progress bar goes to stderr).
pub fn run(cfg: &TcpDemoConfig, out: &mut dyn Write) -> Result<TcpDemoReport, DemoError> {
    let wall = WallInstant::now();
    let imp = &cfg.impairments;
    let (la, lb) = SimLink::pair(SimConfig::symmetric(imp.clone()), cfg.seed)?;
    let probe = la.clone();
    let (stats_a, stats_b) = (la.clone(), lb.clone());
    let sink = cfg.pcap.as_ref().map(PcapSink::create).transpose()?;
    let la = tap_boxed(la, sink.as_ref(), "sim-host-a")?;
    let mut world = SimWorld::new();
    let stack_cfg = |seed| StackConfig {
        seed,
        tcp: TcpConfig {
            congestion: cfg.congestion,
            rack: cfg.rack,
            tlp: cfg.rack,
            ..TcpConfig::default()
        },
        ..StackConfig::default()
    };
    let a = world.add_host(stack(la, host_addr(1), stack_cfg(cfg.seed.wrapping_mul(2))));
    let b = world.add_host(stack(
        Box::new(lb),
        host_addr(2),
        stack_cfg(cfg.seed.wrapping_mul(2) + 1),
    ));

    let file = Arc::new(generate(cfg.size, cfg.seed));
    let digest: [u8; 32] = Sha256::digest(&file[..]).into();
    let _ = writeln!(
        out,
        "TCP demo: {} bytes from {} to {} over a simulated {} link, {:?} each way, loss {:.1}%, outages {}, seed {}, congestion control {}",
        cfg.size,
        host_addr(1),
        host_addr(2),
        imp.rate_bps.map_or("unlimited-rate".to_string(), |r| format!("{} Mbit/s", r / 1_000_000)),
        imp.delay,
        imp.loss * 100.0,
        if imp.outages.is_empty() { "none".to_string() } else { imp.outages.iter().map(|o| format!("{}s+{}s", o.start.as_secs_f64(), o.len.as_secs_f64())).collect::<Vec<_>>().join(", ") },
        cfg.seed,
        cfg.congestion
    );
    let _ = writeln!(out, "sender sha256   {}", hex(&digest));

    let progress = Arc::new(Progress::default());
    let give_up = Instant::ZERO + cfg.give_up_after;
    let server = world.spawn(b, "tcp-demo-receiver", move |net| receiver(&net, give_up));
    let sender = {
        let file = file.clone();
        let progress = progress.clone();
        world.spawn(a, "tcp-demo-sender", move |net| {
            sender(&net, &file, digest, give_up, &probe, &progress)
        })
    };
    let bar = cfg.progress.then(|| progress_bar(cfg.size));
    let ticker = bar.clone().map(|bar| {
        let progress = progress.clone();
        std::thread::spawn(move || {
            while !bar.is_finished() {
                bar.set_position(progress.offset.load(Ordering::Relaxed));
                let virtual_s = progress.virtual_ms.load(Ordering::Relaxed) as f64 / 1000.0;
                let rate = if virtual_s > 0.0 {
                    progress.offset.load(Ordering::Relaxed) as f64 * 8.0 / virtual_s / 1e6
                } else {
                    0.0
                };
                bar.set_message(format!(
                    "t={virtual_s:.1}s {rate:.1} Mbit/s link {} retransmits {} reconnects {}",
                    if progress.down.load(Ordering::Relaxed) == 1 {
                        "DOWN"
                    } else {
                        "up"
                    },
                    progress.retransmits.load(Ordering::Relaxed),
                    progress.reconnects.load(Ordering::Relaxed),
                ));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    });
    let run = world.run(cfg.give_up_after + Duration::from_secs(60));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let sent = sender
        .join()
        .unwrap_or_else(|_| SenderResult::failed("the sender thread panicked"));
    let received = server.join().unwrap_or(None);
    let stats = world.host(a).stats();
    let (ta, tb) = (stats_a.stats().tx, stats_b.stats().tx);
    let link = (
        ta.lost + ta.burst_lost + tb.lost + tb.burst_lost,
        ta.outage_dropped + tb.outage_dropped,
    );
    let mut failure = sent.failure;
    if let Err(e) = run {
        if failure.is_none() && !matches!(e, WorldError::Deadlock) {
            failure = Some(e.to_string());
        }
    }
    let report = TcpDemoReport {
        bytes: received.as_ref().map_or(0, |r| r.0),
        sha256_sender: hex(&digest),
        sha256_receiver: received.map(|r| hex(&r.1)),
        retransmits: stats.tcp.retransmits,
        timeouts: stats.tcp.timeouts,
        reconnects: sent.connections.saturating_sub(1),
        failed_connects: sent.failed_connects,
        virtual_time: world.now().since_epoch(),
        wall_time: wall.elapsed(),
        link_lost: link.0,
        link_outage_dropped: link.1,
        congestion: cfg.congestion,
        rack: cfg.rack,
        failure,
    };
    if let Some(sink) = &sink {
        sink.flush()?;
        let _ = writeln!(out, "capture: {} packets written", sink.packets());
    }
    for line in sent.log {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "receiver sha256 {}",
        report.sha256_receiver.as_deref().unwrap_or("(incomplete)")
    );
    let _ = writeln!(
        out,
        "{}: {} of {} bytes, {} retransmits, {} RTOs, {} reconnects, virtual {:.1}s, wall {:.2}s",
        match (&report.sha256_receiver, report.sha256_match()) {
            (_, true) => "sha256 match",
            (None, _) => "INCOMPLETE",
            (Some(_), false) => "SHA256 MISMATCH",
        },
        report.bytes,
        cfg.size,
        report.retransmits,
        report.timeouts,
        report.reconnects,
        report.virtual_time.as_secs_f64(),
        report.wall_time.as_secs_f64()
    );
    if let Some(f) = &report.failure {
        let _ = writeln!(out, "failed: {f}");
    }
    Ok(report)
}

fn progress_bar(size: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

struct SenderResult {
    connections: u64,
    failed_connects: u64,
    failure: Option<String>,
    log: Vec<String>,
}

impl SenderResult {
    fn failed(why: &str) -> SenderResult {
        SenderResult {
            connections: 0,
            failed_connects: 0,
            failure: Some(why.to_string()),
            log: Vec::new(),
        }
    }
}

/// One connection's work: HELLO, RESUME, data, DONE. Returns B's digest.
fn send_once(
    s: &mut TcpStream,
    file: &[u8],
    digest: [u8; 32],
    progress: &Progress,
    net: &Caller,
    probe: &SimLink,
) -> Result<(u64, [u8; 32]), std::io::Error> {
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.extend_from_slice(MAGIC);
    hello.push(VERSION);
    hello.extend_from_slice(
        &u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()).to_be_bytes(),
    );
    hello.extend_from_slice(&(file.len() as u64).to_be_bytes());
    hello.extend_from_slice(&digest);
    s.write_all(&hello)?;
    let mut resume = [0u8; 8];
    s.read_exact(&mut resume)?;
    let start = u64::from_be_bytes(resume).min(file.len() as u64);
    let mut offset = start as usize;
    let mut chunks = 0u64;
    while offset < file.len() {
        let end = (offset + CHUNK).min(file.len());
        s.write_all(&file[offset..end])?;
        offset = end;
        chunks += 1;
        progress.offset.store(offset as u64, Ordering::Relaxed);
        if chunks % 8 == 0 {
            let now = net.now();
            progress
                .virtual_ms
                .store(now.total_millis(), Ordering::Relaxed);
            progress
                .down
                .store(u64::from(probe.is_down(now)), Ordering::Relaxed);
            if let Ok(info) = s.info() {
                progress
                    .retransmits
                    .store(info.stats.retransmits, Ordering::Relaxed);
            }
        }
    }
    let mut done = [0u8; 32];
    s.read_exact(&mut done)?;
    Ok((start, done))
}

fn sender(
    net: &Caller,
    file: &[u8],
    digest: [u8; 32],
    give_up: Instant,
    probe: &SimLink,
    progress: &Progress,
) -> SenderResult {
    let remote = SocketAddrV4::new(host_addr(2), PORT);
    let mut result = SenderResult {
        connections: 0,
        failed_connects: 0,
        failure: None,
        log: Vec::new(),
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let now = net.now();
        if now >= give_up {
            result.failure = Some(format!("gave up at t={now}: the file did not get across"));
            return result;
        }
        match TcpStream::connect(net, remote, Some(Duration::from_secs(10))) {
            Err(e) => {
                result.failed_connects += 1;
                let t = net.now();
                result.log.push(format!(
                    "t={t}: connect failed ({e}); retrying in {backoff:?}"
                ));
            }
            Ok(mut s) => {
                result.connections += 1;
                progress
                    .reconnects
                    .store(result.connections.saturating_sub(1), Ordering::Relaxed);
                match send_once(&mut s, file, digest, progress, net, probe) {
                    Ok((start, done)) => {
                        let t = net.now();
                        result.log.push(format!(
                            "t={t}: connection {} sent bytes {start}..{} and the receiver confirmed sha256 {}",
                            result.connections,
                            file.len(),
                            hex(&done)
                        ));
                        return result;
                    }
                    Err(e) => {
                        let t = net.now();
                        result.log.push(format!(
                            "t={t}: connection {} failed: {e}; reconnecting in {backoff:?} to resume",
                            result.connections
                        ));
                    }
                }
                backoff = Duration::from_secs(1);
            }
        }
        net.sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(16));
    }
}

/// B: accepts connections until it holds the whole file; returns (bytes, sha256).
fn receiver(net: &Caller, give_up: Instant) -> Option<(u64, [u8; 32])> {
    let mut listener = TcpListener::bind(net, PORT, 4).ok()?;
    let mut held: Vec<u8> = Vec::new();
    let mut file_id = None;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let now = net.now();
        if now >= give_up {
            return None;
        }
        listener.set_accept_timeout(Some(give_up - now));
        let (mut s, _) = match listener.accept() {
            Ok(x) => x,
            Err(SocketError::Runtime(RuntimeError::Deadlock | RuntimeError::TimeLimit))
            | Err(SocketError::Timeout) => return None,
            Err(_) => continue,
        };
        // A receiver with nothing to send cannot notice that the sender gave up on this
        // connection (no timer runs on its side), so it drops a silent one and goes back
        // to accepting, as servers do with an idle timeout.
        s.set_read_timeout(Some(RECEIVER_IDLE_TIMEOUT));
        let mut hello = [0u8; HELLO_LEN];
        if s.read_exact(&mut hello).is_err() || &hello[..4] != MAGIC || hello[4] != VERSION {
            continue;
        }
        let id = u64::from_be_bytes(hello[5..13].try_into().unwrap_or_default());
        let size = u64::from_be_bytes(hello[13..21].try_into().unwrap_or_default());
        if file_id != Some(id) {
            file_id = Some(id);
            held.clear();
        }
        if s.write_all(&(held.len() as u64).to_be_bytes()).is_err() {
            continue;
        }
        while (held.len() as u64) < size {
            let want = ((size - held.len() as u64) as usize).min(buf.len());
            match s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            }
        }
        if held.len() as u64 == size {
            let digest: [u8; 32] = Sha256::digest(&held).into();
            let _ = s.write_all(&digest);
            // Let the DONE message get out before closing.
            let _ = s.shutdown();
            let mut rest = [0u8; 1];
            let _ = s.read(&mut rest);
            return Some((size, digest));
        }
    }
}
