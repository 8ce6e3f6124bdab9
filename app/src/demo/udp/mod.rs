//! The UDP demo, the seed's ticket office: clients buy seats from a primary server over
//! an RPC on UDP, with retries, a reply cache for at-most-once execution, synchronous
//! replication to a backup, and fail-over to the backup when the primary stops answering.
//!
//! Why no seat is ever sold twice:
//! - the primary commits a sale (and answers) only after the backup acknowledged the
//!   replicated sale and reply-cache entry, so the backup knows every committed sale;
//! - a retried or duplicated request hits the reply cache of whichever server has the
//!   entry and gets the original answer, never a second execution;
//! - the backup takes over at the first client request it receives, and from then on
//!   refuses replication ("fenced"), so a primary that is alive but unreachable for the
//!   clients can no longer commit anything.
//!
//! Files: [`message`] (the wire format and a UDP endpoint for it), `server.rs` (the
//! ledger, the primary and the backup), `client.rs` (retries and fail-over), `audit.rs`
//! (the outcome checked), and this one (configuration, set-up and report).

mod audit;
mod client;
pub mod message;
mod server;

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Instant as WallInstant;

use crate::link::{
    tap_boxed, Duration, HubConfig, ImpairError, Impairments, Instant, Outage, PcapSink, SimHub,
};
use crate::runtime::SimWorld;
use crate::sim::stack;
use crate::transport::stack::StackConfig;
use audit::audit;
pub use audit::Audit;

/// The servers' port for clients.
const CLIENT_PORT: u16 = 7000;
/// The servers' port for replication.
const REPL_PORT: u16 = 7001;
/// How long a crashed primary stays cut off: longer than any run.
const CRASHED_FOR: Duration = Duration::from_secs(1 << 30);

pub fn primary_addr() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10)
}

pub fn backup_addr() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11)
}

pub fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 20 + i as u8)
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpDemoConfig {
    pub requests: u32,
    pub clients: usize,
    pub seats: u32,
    /// What the network does to packets, on every path; its outages take the whole
    /// network down.
    pub impairments: Impairments,
    /// Partitions between the primary and the clients only (the backup still reaches both).
    pub partitions: Vec<Outage>,
    /// The primary stops at this time and never comes back.
    pub crash_primary_at: Option<Duration>,
    pub seed: u64,
    /// Write a pcapng capture of client 0's link (its requests, retries, fail-overs).
    pub pcap: Option<std::path::PathBuf>,
    /// A client gives up a request after this much virtual time without an answer, and
    /// then the purchases it has not made yet (the office is unreachable).
    pub give_up_after: Duration,
}

impl Default for UdpDemoConfig {
    fn default() -> UdpDemoConfig {
        UdpDemoConfig {
            requests: 200,
            clients: 4,
            seats: 150,
            impairments: Impairments {
                loss: 0.05,
                duplicate: 0.02,
                delay: Duration::from_millis(5),
                outages: vec![Outage::new(Duration::from_secs(2), Duration::from_secs(10))],
                ..Impairments::none()
            },
            partitions: Vec::new(),
            crash_primary_at: None,
            seed: 1,
            pcap: None,
            give_up_after: Duration::from_secs(120),
        }
    }
}

/// The audit and the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpDemoReport {
    pub requests: u32,
    pub audit: Audit,
    /// Datagrams the servers and clients dropped because they were not messages.
    pub malformed: u64,
    pub backup_took_over: bool,
    pub virtual_time: Duration,
    pub wall_time: std::time::Duration,
}

impl UdpDemoReport {
    pub fn audit_ok(&self) -> bool {
        self.audit.ok()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "demo": "udp",
            "requests": self.requests,
            "sold": self.audit.sold,
            "confirmed": self.audit.confirmed,
            "sold_out_answers": self.audit.sold_out_answers,
            "duplicate_sales": self.audit.duplicate_sales,
            "double_charges": self.audit.double_charges,
            "mismatches": self.audit.mismatches,
            "retries": self.audit.retries,
            "failovers": self.audit.failovers,
            "gave_up": self.audit.gave_up,
            "malformed": self.malformed,
            "backup_took_over": self.backup_took_over,
            "audit_ok": self.audit_ok(),
            "virtual_s": self.virtual_time.as_secs_f64(),
            "wall_s": self.wall_time.as_secs_f64(),
        })
    }
}

/// Why the demo could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum UdpDemoError {
    #[error("invalid impairment: {0}")]
    Impairment(#[from] ImpairError),
    #[error("{0}")]
    Config(String),
    #[error("cannot write the capture: {0}")]
    Pcap(#[from] std::io::Error),
}

/// Runs the demo and audits the outcome.
pub fn run(cfg: &UdpDemoConfig, out: &mut dyn Write) -> Result<UdpDemoReport, UdpDemoError> {
    if cfg.clients == 0 || cfg.clients > 200 {
        return Err(UdpDemoError::Config(
            "clients must be between 1 and 200".into(),
        ));
    }
    let wall = WallInstant::now();
    let mut hub_cfg = HubConfig::new(cfg.impairments.clone());
    let clients: Vec<Ipv4Addr> = (0..cfg.clients).map(client_addr).collect();
    for p in &cfg.partitions {
        hub_cfg.isolate(primary_addr(), &clients, *p);
    }
    if let Some(t) = cfg.crash_primary_at {
        let mut everyone = clients.clone();
        everyone.push(backup_addr());
        hub_cfg.isolate(primary_addr(), &everyone, Outage::new(t, CRASHED_FOR));
    }
    let hub = SimHub::new(hub_cfg, cfg.seed)?;
    let sink = cfg.pcap.as_ref().map(PcapSink::create).transpose()?;
    let mut world = SimWorld::new();
    let mut host = |addr: Ipv4Addr, salt: u64| -> Result<usize, UdpDemoError> {
        let port = hub.attach(addr);
        let tapped = sink.as_ref().filter(|_| addr == client_addr(0));
        let link = tap_boxed(port, tapped, "sim-client-0")?;
        let stack_cfg = StackConfig {
            seed: cfg.seed.wrapping_mul(31) + salt,
            ..StackConfig::default()
        };
        Ok(world.add_host(stack(link, addr, stack_cfg)))
    };
    let p = host(primary_addr(), 1)?;
    let b = host(backup_addr(), 2)?;
    let client_hosts = clients
        .iter()
        .enumerate()
        .map(|(i, &a)| host(a, 10 + i as u64))
        .collect::<Result<Vec<_>, _>>()?;

    let per_client = cfg.requests / cfg.clients as u32;
    let extra = cfg.requests % cfg.clients as u32;
    // Servers stop once every client must be done.
    let stop_at = Instant::ZERO + cfg.give_up_after * (per_client + 2);
    let seats = cfg.seats;
    let crash_at = cfg.crash_primary_at.map(|t| Instant::ZERO + t);
    let _ = writeln!(
        out,
        "UDP demo: {} clients buy {} tickets ({} seats) from {} (backup {}), loss {:.1}%, duplication {:.1}%, seed {}",
        cfg.clients,
        cfg.requests,
        cfg.seats,
        primary_addr(),
        backup_addr(),
        cfg.impairments.loss * 100.0,
        cfg.impairments.duplicate * 100.0,
        cfg.seed
    );
    let primary_thread = world.spawn_daemon(p, "primary", move |net| {
        server::primary(&net, seats, crash_at, stop_at)
    });
    let backup_thread =
        world.spawn_daemon(b, "backup", move |net| server::backup(&net, seats, stop_at));
    let give_up = cfg.give_up_after;
    let client_threads: Vec<_> = client_hosts
        .iter()
        .enumerate()
        .map(|(i, &h)| {
            let n = per_client + u32::from((i as u32) < extra);
            world.spawn(h, &format!("client-{i}"), move |net| {
                let log = client::client(&net, i as u16, n, give_up);
                (i as u16, log)
            })
        })
        .collect();
    let run = world.run(stop_at - Instant::ZERO + Duration::from_secs(60));
    let primary = primary_thread.join().unwrap_or_default();
    let backup = backup_thread.join().unwrap_or_default();
    let logs: Vec<(u16, client::ClientLog)> = client_threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .collect();

    let audit = audit(&primary.ledger, &backup.ledger, &logs);
    let report = UdpDemoReport {
        requests: cfg.requests,
        audit,
        malformed: primary.malformed
            + backup.malformed
            + logs.iter().map(|(_, log)| log.malformed).sum::<u64>(),
        backup_took_over: backup.leader,
        virtual_time: world.now().since_epoch(),
        wall_time: wall.elapsed(),
    };
    if let Err(e) = run {
        let _ = writeln!(out, "note: {e}");
    }
    if let Some(sink) = &sink {
        sink.flush()?;
        let _ = writeln!(
            out,
            "capture of client 0: {} packets written",
            sink.packets()
        );
    }
    let _ = writeln!(out, "{}", report.audit);
    let _ =
        writeln!(
        out,
        "{} retries, {} fail-overs, backup {}, {} requests given up, virtual {:.1}s, wall {:.2}s",
        report.audit.retries,
        report.audit.failovers,
        if report.backup_took_over { "took over" } else { "stayed backup" },
        report.audit.gave_up,
        report.virtual_time.as_secs_f64(),
        report.wall_time.as_secs_f64()
    );
    Ok(report)
}
