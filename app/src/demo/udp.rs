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
//! Messages (UDP payloads, big-endian): BUY `b'B' client:u16 req:u32`; REPLY `b'R' client:u16
//! req:u32 status:u8 seat:u32` (status 0 seat, 1 sold out, 2 not the leader); REPL `b'P'`
//! with the REPLY fields (primary to backup, the primary's proposal); ACK `b'A' client:u16
//! req:u32 ok:u8 status:u8 seat:u32`, the backup's decision, which the primary commits
//! (ok 0: fenced, the backup leads).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as WallInstant;

use crate::link::{
    tap_boxed, Duration, HubConfig, ImpairError, Impairments, Instant, Outage, PcapSink, SimHub,
};
use crate::runtime::{Caller, SimWorld};
use crate::sim::stack;
use crate::socket::UdpSocket;
use crate::transport::stack::StackConfig;

const CLIENT_PORT: u16 = 7000;
const REPL_PORT: u16 = 7001;
const STATUS_SEAT: u8 = 0;
const STATUS_SOLD_OUT: u8 = 1;
const STATUS_NOT_LEADER: u8 = 2;
/// Consecutive unanswered tries before a client switches server.
const TRIES_BEFORE_FAILOVER: u32 = 3;
const FIRST_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_millis(1600);

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
    pub loss: f64,
    pub duplicate: f64,
    pub delay: Duration,
    /// Outages of the whole network.
    pub outages: Vec<Outage>,
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
            loss: 0.05,
            duplicate: 0.02,
            delay: Duration::from_millis(5),
            outages: vec![Outage::new(Duration::from_secs(2), Duration::from_secs(10))],
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
    /// Distinct seats in the servers' sale logs.
    pub sold: u32,
    /// Purchases the clients were told succeeded.
    pub confirmed: u32,
    pub sold_out_answers: u32,
    /// Seats recorded for two different purchases: must be 0.
    pub duplicate_sales: u32,
    /// Purchases recorded with two different seats: must be 0.
    pub double_charges: u32,
    /// Confirmed purchases missing from the sale logs, or sales nobody was told about
    /// while no client gave up: must be 0.
    pub mismatches: u32,
    pub retries: u64,
    pub failovers: u64,
    pub gave_up: u32,
    pub backup_took_over: bool,
    pub virtual_time: Duration,
    pub wall_time: std::time::Duration,
}

impl UdpDemoReport {
    pub fn audit_ok(&self) -> bool {
        self.duplicate_sales == 0 && self.double_charges == 0 && self.mismatches == 0
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "demo": "udp",
            "requests": self.requests,
            "sold": self.sold,
            "confirmed": self.confirmed,
            "sold_out_answers": self.sold_out_answers,
            "duplicate_sales": self.duplicate_sales,
            "double_charges": self.double_charges,
            "mismatches": self.mismatches,
            "retries": self.retries,
            "failovers": self.failovers,
            "gave_up": self.gave_up,
            "backup_took_over": self.backup_took_over,
            "audit_ok": self.audit_ok(),
            "virtual_s": self.virtual_time.as_secs_f64(),
            "wall_s": self.wall_time.as_secs_f64(),
        })
    }
}

type Purchase = (u16, u32);

/// A server's durable state: the sale log and the reply cache.
#[derive(Debug, Clone, Default)]
struct Ledger {
    seats: BTreeMap<u32, Purchase>,
    cache: BTreeMap<Purchase, (u8, u32)>,
    next_seat: u32,
}

impl Ledger {
    /// What a new request would get (not yet committed).
    fn decide(&self, capacity: u32) -> (u8, u32) {
        if self.next_seat < capacity {
            (STATUS_SEAT, self.next_seat)
        } else {
            (STATUS_SOLD_OUT, 0)
        }
    }

    fn commit(&mut self, who: Purchase, reply: (u8, u32)) {
        if self.cache.contains_key(&who) {
            return;
        }
        if reply.0 == STATUS_SEAT {
            self.seats.insert(reply.1, who);
            self.next_seat = self.next_seat.max(reply.1 + 1);
        }
        self.cache.insert(who, reply);
    }
}

fn reply_bytes(tag: u8, who: Purchase, reply: (u8, u32)) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&who.0.to_be_bytes());
    m.extend_from_slice(&who.1.to_be_bytes());
    m.push(reply.0);
    m.extend_from_slice(&reply.1.to_be_bytes());
    m
}

/// ACK `b'A' client req ok status seat`: a `None` answer means fenced.
fn ack_bytes(who: Purchase, answer: Option<(u8, u32)>) -> Vec<u8> {
    let mut m = reply_bytes(b'A', who, answer.unwrap_or((0, 0)));
    m.insert(7, u8::from(answer.is_some()));
    m
}

fn parse_ack(m: &[u8]) -> Option<Option<(u8, u32)>> {
    let ok = *m.get(7)?;
    let status = *m.get(8)?;
    let seat = u32::from_be_bytes(m.get(9..13)?.try_into().ok()?);
    Some((ok == 1).then_some((status, seat)))
}

fn parse_who(m: &[u8]) -> Option<Purchase> {
    Some((
        u16::from_be_bytes(m.get(1..3)?.try_into().ok()?),
        u32::from_be_bytes(m.get(3..7)?.try_into().ok()?),
    ))
}

fn parse_reply(m: &[u8]) -> Option<(Purchase, (u8, u32))> {
    let who = parse_who(m)?;
    let status = *m.get(7)?;
    let seat = u32::from_be_bytes(m.get(8..12)?.try_into().ok()?);
    Some((who, (status, seat)))
}

/// Receives with a timeout: `Ok(None)` on timeout, `Err` when the world shuts down.
fn recv(
    sock: &mut UdpSocket,
    timeout: Duration,
    buf: &mut [u8],
) -> Result<Option<(usize, SocketAddrV4)>, ()> {
    sock.set_read_timeout(Some(timeout));
    match sock.recv_from(buf) {
        Ok(x) => Ok(Some(x)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(_) => Err(()),
    }
}

/// The primary: serves clients, replicating every decision to the backup first.
fn primary(net: &Caller, seats: u32, crash_at: Option<Instant>, stop_at: Instant) -> Ledger {
    let mut ledger = Ledger::default();
    let (Ok(mut clients), Ok(mut repl)) = (
        UdpSocket::bind(net, SocketAddrV4::new(primary_addr(), CLIENT_PORT)),
        UdpSocket::bind(net, SocketAddrV4::new(primary_addr(), REPL_PORT)),
    ) else {
        return ledger;
    };
    let backup = SocketAddrV4::new(backup_addr(), REPL_PORT);
    let mut deposed = false;
    let mut buf = [0u8; 64];
    loop {
        let now = net.now();
        if now >= stop_at || crash_at.is_some_and(|t| now >= t) {
            return ledger;
        }
        let Ok(got) = recv(&mut clients, Duration::from_millis(200), &mut buf) else {
            return ledger;
        };
        let Some((n, from)) = got else {
            continue;
        };
        let (Some(who), Some(b'B')) = (parse_who(&buf[..n]), buf.first().copied()) else {
            continue;
        };
        if deposed {
            let _ = clients.send_to(&reply_bytes(b'R', who, (STATUS_NOT_LEADER, 0)), from);
            continue;
        }
        if let Some(&reply) = ledger.cache.get(&who) {
            let _ = clients.send_to(&reply_bytes(b'R', who, reply), from);
            continue;
        }
        // Replicate before answering; give the request up if the backup stays silent
        // (the client will retry). The backup's answer is the one committed: if an
        // earlier replication reached it but its ACK was lost, the backup already
        // holds that sale, and a proposal of our own could hand the same seat out twice.
        let proposal = ledger.decide(seats);
        let mut acked = None;
        for _ in 0..5 {
            let _ = repl.send_to(&reply_bytes(b'P', who, proposal), backup);
            if let Ok(Some((n, _))) = recv(&mut repl, Duration::from_millis(50), &mut buf) {
                if buf[0] == b'A' && parse_who(&buf[..n]) == Some(who) {
                    acked = parse_ack(&buf[..n]);
                    break;
                }
            }
        }
        match acked {
            Some(Some(reply)) => {
                ledger.commit(who, reply);
                let _ = clients.send_to(&reply_bytes(b'R', who, reply), from);
            }
            // Fenced: the backup leads now; step down for good.
            Some(None) => deposed = true,
            None => {}
        }
    }
}

/// The backup: takes replication until the first client asks it, then leads.
fn backup(net: &Caller, seats: u32, stop_at: Instant) -> (Ledger, bool) {
    let mut ledger = Ledger::default();
    let (Ok(mut clients), Ok(mut repl)) = (
        UdpSocket::bind(net, SocketAddrV4::new(backup_addr(), CLIENT_PORT)),
        UdpSocket::bind(net, SocketAddrV4::new(backup_addr(), REPL_PORT)),
    ) else {
        return (ledger, false);
    };
    let mut leader = false;
    let mut buf = [0u8; 64];
    // One thread, two sockets: alternate short waits (deterministic, unlike two threads).
    while net.now() < stop_at {
        let Ok(got) = recv(&mut repl, Duration::from_millis(5), &mut buf) else {
            break;
        };
        if let Some((n, from)) = got {
            if let (Some(b'P'), Some(who)) = (buf.first().copied(), parse_who(&buf[..n])) {
                // While backing up, this ledger sequences the seats: the primary commits
                // whatever it is told here.
                let answer = (!leader).then(|| match ledger.cache.get(&who) {
                    Some(&r) => r,
                    None => {
                        let r = ledger.decide(seats);
                        ledger.commit(who, r);
                        r
                    }
                });
                let _ = repl.send_to(&ack_bytes(who, answer), from);
            }
        }
        let Ok(got) = recv(&mut clients, Duration::from_millis(5), &mut buf) else {
            break;
        };
        if let Some((n, from)) = got {
            let (Some(who), Some(b'B')) = (parse_who(&buf[..n]), buf.first().copied()) else {
                continue;
            };
            leader = true;
            let reply = match ledger.cache.get(&who) {
                Some(&r) => r,
                None => {
                    let r = ledger.decide(seats);
                    ledger.commit(who, r);
                    r
                }
            };
            let _ = clients.send_to(&reply_bytes(b'R', who, reply), from);
        }
    }
    (ledger, leader)
}

#[derive(Debug, Default)]
struct ClientLog {
    answers: BTreeMap<u32, (u8, u32)>,
    retries: u64,
    failovers: u64,
    gave_up: u32,
}

fn client(net: &Caller, id: u16, requests: u32, give_up_after: Duration) -> ClientLog {
    let mut log = ClientLog::default();
    let Ok(mut sock) = UdpSocket::bind(net, SocketAddrV4::new(client_addr(usize::from(id)), 0))
    else {
        return log;
    };
    let servers = [
        SocketAddrV4::new(primary_addr(), CLIENT_PORT),
        SocketAddrV4::new(backup_addr(), CLIENT_PORT),
    ];
    let mut current = 0;
    let mut buf = [0u8; 64];
    for req in 0..requests {
        let who = (id, req);
        let mut buy = vec![b'B'];
        buy.extend_from_slice(&id.to_be_bytes());
        buy.extend_from_slice(&req.to_be_bytes());
        let started = net.now();
        let mut timeout = FIRST_TIMEOUT;
        let mut silent = 0;
        let mut first = true;
        loop {
            if net.now() - started > give_up_after {
                log.gave_up += requests - req;
                return log;
            }
            if !first {
                log.retries += 1;
            }
            first = false;
            let _ = sock.send_to(&buy, servers[current]);
            let deadline = net.now() + timeout;
            let mut answer = None;
            while answer.is_none() && net.now() < deadline {
                let left = deadline - net.now();
                let Ok(Some((n, _))) = recv(&mut sock, left, &mut buf) else {
                    break;
                };
                if let Some((w, reply)) = parse_reply(&buf[..n]) {
                    if w == who && buf[0] == b'R' {
                        answer = Some(reply);
                    }
                }
            }
            match answer {
                Some((STATUS_NOT_LEADER, _)) => {
                    current = 1 - current;
                    log.failovers += 1;
                    silent = 0;
                }
                Some(reply) => {
                    log.answers.insert(req, reply);
                    break;
                }
                None => {
                    silent += 1;
                    timeout = (timeout * 2).min(MAX_TIMEOUT);
                    if silent >= TRIES_BEFORE_FAILOVER {
                        current = 1 - current;
                        log.failovers += 1;
                        silent = 0;
                        timeout = FIRST_TIMEOUT;
                    }
                }
            }
        }
    }
    log
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
    let mut hub_cfg = HubConfig::new(Impairments {
        loss: cfg.loss,
        duplicate: cfg.duplicate,
        delay: cfg.delay,
        outages: cfg.outages.clone(),
        ..Impairments::none()
    });
    let clients: Vec<Ipv4Addr> = (0..cfg.clients).map(client_addr).collect();
    for p in &cfg.partitions {
        hub_cfg.isolate(primary_addr(), &clients, *p);
    }
    if let Some(t) = cfg.crash_primary_at {
        let mut everyone = clients.clone();
        everyone.push(backup_addr());
        hub_cfg.isolate(
            primary_addr(),
            &everyone,
            Outage::new(t, Duration::from_secs(1 << 30)),
        );
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
        cfg.loss * 100.0,
        cfg.duplicate * 100.0,
        cfg.seed
    );
    let primary_thread = world.spawn_daemon(p, "primary", move |net| {
        primary(&net, seats, crash_at, stop_at)
    });
    let backup_thread = world.spawn_daemon(b, "backup", move |net| backup(&net, seats, stop_at));
    let give_up = cfg.give_up_after;
    let client_threads: Vec<_> = client_hosts
        .iter()
        .enumerate()
        .map(|(i, &h)| {
            let n = per_client + u32::from((i as u32) < extra);
            world.spawn(h, &format!("client-{i}"), move |net| {
                let log = client(&net, i as u16, n, give_up);
                (i as u16, log)
            })
        })
        .collect();
    let run = world.run(stop_at - Instant::ZERO + Duration::from_secs(60));
    let primary_ledger = primary_thread.join().unwrap_or_default();
    let (backup_ledger, took_over) = backup_thread.join().unwrap_or_default();
    let logs: Vec<(u16, ClientLog)> = client_threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .collect();

    let audit = audit(&primary_ledger, &backup_ledger, &logs);
    let report = UdpDemoReport {
        requests: cfg.requests,
        sold: audit.sold,
        confirmed: audit.confirmed,
        sold_out_answers: audit.sold_out_answers,
        duplicate_sales: audit.duplicate_sales,
        double_charges: audit.double_charges,
        mismatches: audit.mismatches,
        retries: audit.retries,
        failovers: audit.failovers,
        gave_up: audit.gave_up,
        backup_took_over: took_over,
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
    let _ = writeln!(
        out,
        "audit {}: {} seats sold, {} purchases confirmed, {} sold-out answers, {} duplicate sales, {} double charges, {} mismatches",
        if report.audit_ok() { "passed" } else { "FAILED" },
        report.sold,
        report.confirmed,
        report.sold_out_answers,
        report.duplicate_sales,
        report.double_charges,
        report.mismatches
    );
    let _ =
        writeln!(
        out,
        "{} retries, {} fail-overs, backup {}, {} requests given up, virtual {:.1}s, wall {:.2}s",
        report.retries,
        report.failovers,
        if report.backup_took_over { "took over" } else { "stayed backup" },
        report.gave_up,
        report.virtual_time.as_secs_f64(),
        report.wall_time.as_secs_f64()
    );
    Ok(report)
}

/// The audit's findings.
#[derive(Debug, Default, PartialEq)]
struct Audit {
    sold: u32,
    confirmed: u32,
    sold_out_answers: u32,
    duplicate_sales: u32,
    double_charges: u32,
    mismatches: u32,
    retries: u64,
    failovers: u64,
    gave_up: u32,
}

/// Checks the servers' sale logs against each other and against what clients were told:
/// no seat sold twice, no purchase charged twice, every confirmed purchase on record,
/// and (when no client gave up) nothing sold that nobody was told about.
fn audit(primary: &Ledger, backup: &Ledger, logs: &[(u16, ClientLog)]) -> Audit {
    let mut a = Audit::default();
    let mut seat_owner: BTreeMap<u32, Purchase> = BTreeMap::new();
    let mut purchase_seat: BTreeMap<Purchase, u32> = BTreeMap::new();
    for ledger in [primary, backup] {
        for (&seat, &who) in &ledger.seats {
            match seat_owner.get(&seat) {
                Some(&other) if other != who => a.duplicate_sales += 1,
                _ => {
                    seat_owner.insert(seat, who);
                }
            }
            match purchase_seat.get(&who) {
                Some(&other) if other != seat => a.double_charges += 1,
                _ => {
                    purchase_seat.insert(who, seat);
                }
            }
        }
    }
    let mut client_seats: BTreeMap<u32, Purchase> = BTreeMap::new();
    for (id, log) in logs {
        a.retries += log.retries;
        a.failovers += log.failovers;
        a.gave_up += log.gave_up;
        for (&req, &(status, seat)) in &log.answers {
            if status == STATUS_SOLD_OUT {
                a.sold_out_answers += 1;
                continue;
            }
            a.confirmed += 1;
            if purchase_seat.get(&(*id, req)) != Some(&seat) {
                a.mismatches += 1;
            }
            if client_seats.insert(seat, (*id, req)).is_some() {
                a.duplicate_sales += 1;
            }
        }
    }
    if a.gave_up == 0 && seat_owner.len() != a.confirmed as usize {
        a.mismatches += 1;
    }
    a.sold = seat_owner.len() as u32;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(sales: &[(u32, Purchase)]) -> Ledger {
        let mut l = Ledger::default();
        for &(seat, who) in sales {
            l.commit(who, (STATUS_SEAT, seat));
        }
        l
    }

    fn told(id: u16, answers: &[(u32, u32)]) -> (u16, ClientLog) {
        let log = ClientLog {
            answers: answers
                .iter()
                .map(|&(req, seat)| (req, (STATUS_SEAT, seat)))
                .collect(),
            ..ClientLog::default()
        };
        (id, log)
    }

    #[test]
    fn a_consistent_outcome_passes() {
        let p = ledger(&[(0, (1, 0)), (1, (2, 0))]);
        let b = ledger(&[(0, (1, 0)), (1, (2, 0)), (2, (1, 1))]);
        let a = audit(&p, &b, &[told(1, &[(0, 0), (1, 2)]), told(2, &[(0, 1)])]);
        assert_eq!(
            (
                a.sold,
                a.confirmed,
                a.duplicate_sales,
                a.double_charges,
                a.mismatches
            ),
            (3, 3, 0, 0, 0)
        );
    }

    #[test]
    fn the_audit_catches_every_kind_of_failure() {
        // Split brain: both servers sold seat 0, to different buyers.
        let a = audit(
            &ledger(&[(0, (1, 0))]),
            &ledger(&[(0, (2, 0))]),
            &[told(1, &[(0, 0)]), told(2, &[(0, 0)])],
        );
        assert!(a.duplicate_sales >= 1);
        // One purchase executed twice: two seats for (1, 0).
        let a = audit(
            &ledger(&[(0, (1, 0))]),
            &ledger(&[(5, (1, 0))]),
            &[told(1, &[(0, 0)])],
        );
        assert_eq!(a.double_charges, 1);
        // A client told about a seat no server recorded.
        let a = audit(
            &Ledger::default(),
            &Ledger::default(),
            &[told(1, &[(0, 3)])],
        );
        assert_eq!(a.mismatches, 2);
    }

    #[test]
    fn the_reply_cache_executes_a_purchase_once() {
        let mut l = Ledger::default();
        let first = l.decide(10);
        l.commit((1, 0), first);
        l.commit((1, 0), (STATUS_SEAT, 7));
        assert_eq!(l.cache[&(1, 0)], (STATUS_SEAT, 0));
        assert_eq!(l.seats.len(), 1);
        assert_eq!(l.decide(1), (STATUS_SOLD_OUT, 0));
    }
}
