//! Ping over a simulated lossy, reordering link: host A (198.18.0.1) sends ICMP echo
//! requests to host B (198.18.0.2) on a [`SimLink`] pair driven by a virtual clock, and
//! reports every reply like `ping(8)` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::link::{
    tap_boxed, Duration, ImpairError, Impairments, Instant, Outage, PcapSink, SimConfig, SimLink,
    SimStats,
};
use crate::net::{Config, IcmpEvent, Interface, Ipv4Cidr, SendError, Stats};

pub const HOST_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PREFIX_LEN: u8 = 24;
const IDENT: u16 = 0x7573; // "us"

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PingConfig {
    pub count: u16,
    pub interval: Duration,
    /// ICMP payload bytes per request (56 like ping(8)); above the MTU it is fragmented.
    pub size: usize,
    /// How long to wait for stragglers after the last request.
    pub wait: Duration,
    /// Impairments, the same in both directions.
    pub impairments: Impairments,
    pub seed: u64,
    pub pcap: Option<PathBuf>,
}

impl Default for PingConfig {
    fn default() -> PingConfig {
        PingConfig {
            count: 50,
            interval: Duration::from_millis(20),
            size: 56,
            wait: Duration::from_secs(1),
            impairments: Impairments {
                loss: 0.2,
                reorder: 0.2,
                reorder_delay: Duration::from_millis(50),
                delay: Duration::from_millis(25),
                jitter: Duration::from_millis(5),
                ..Impairments::none()
            },
            seed: 1,
            pcap: None,
        }
    }
}

impl PingConfig {
    pub fn with_outage(mut self, outage: Outage) -> PingConfig {
        self.impairments.outages.push(outage);
        self
    }
}

/// One echo reply as host A saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub seq: u16,
    pub ttl: u8,
    pub rtt: Duration,
    pub bytes: usize,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct PingReport {
    pub sent: u16,
    /// Replies in the order they arrived (first copy of each).
    pub replies: Vec<Reply>,
    /// Extra copies of replies already seen (the link duplicates packets).
    pub duplicates: u64,
    /// Replies whose payload differed from the request: must stay zero.
    pub mismatched: u64,
    /// Replies that arrived after a reply to a later request.
    pub out_of_order: u64,
    pub virtual_time: Duration,
    pub link_a: SimStats,
    pub link_b: SimStats,
    /// Network-layer counters of host A and host B.
    pub net_a: Stats,
    pub net_b: Stats,
    pub pcap_packets: Option<u64>,
}

impl PingReport {
    pub fn received(&self) -> usize {
        self.replies.len()
    }

    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * (1.0 - self.received() as f64 / f64::from(self.sent))
    }

    /// The `--json` line.
    pub fn to_json(&self) -> serde_json::Value {
        let rtts: Vec<f64> = self
            .replies
            .iter()
            .map(|r| r.rtt.as_secs_f64() * 1e3)
            .collect();
        let (min, max) = rtts.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
        let avg = if rtts.is_empty() {
            0.0
        } else {
            rtts.iter().sum::<f64>() / rtts.len() as f64
        };
        serde_json::json!({
            "demo": "ping",
            "sent": self.sent,
            "received": self.received(),
            "loss_percent": self.loss_percent(),
            "duplicates": self.duplicates,
            "mismatched": self.mismatched,
            "out_of_order": self.out_of_order,
            "rtt_ms": {"min": if rtts.is_empty() { 0.0 } else { min }, "avg": avg, "max": max},
            "virtual_s": self.virtual_time.as_secs_f64(),
            "link_a_to_b": impair_json(&self.link_a),
            "link_b_to_a": impair_json(&self.link_b),
            "net_a": net_json(&self.net_a),
            "net_b": net_json(&self.net_b),
        })
    }
}

fn impair_json(s: &SimStats) -> serde_json::Value {
    serde_json::json!({
        "packets": s.tx.packets,
        "lost": s.tx.lost + s.tx.burst_lost,
        "outage_dropped": s.tx.outage_dropped,
        "queue_dropped": s.tx.queue_dropped,
        "reordered": s.tx.reordered,
        "duplicated": s.tx.duplicated,
        "corrupted": s.tx.corrupted,
    })
}

fn net_json(s: &Stats) -> serde_json::Value {
    s.counters()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("invalid impairment: {0}")]
    Impairment(#[from] ImpairError),
    #[error("cannot write the capture: {0}")]
    Pcap(#[from] std::io::Error),
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    #[error("the link failed: {0}")]
    Link(#[from] crate::link::LinkError),
}

/// A host's interface on its end of the simulated link, captured or not.
type Host = Interface<crate::runtime::BoxLink>;

/// The payload of request `seq`: a pattern the reply must echo exactly.
fn pattern(seq: u16, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u16).wrapping_mul(31).wrapping_add(seq) as u8)
        .collect()
}

/// Runs the demo. `progress` gets one line per event, as ping(8) prints them.
pub fn run(cfg: &PingConfig, progress: &mut dyn Write) -> Result<PingReport, PingError> {
    let sim = SimConfig::symmetric(cfg.impairments.clone());
    let (link_a, link_b) = SimLink::pair(sim, cfg.seed)?;
    let (stats_a, stats_b) = (link_a.clone(), link_b.clone());
    let sink = cfg.pcap.as_ref().map(PcapSink::create).transpose()?;
    let link_a = tap_boxed(link_a, sink.as_ref(), "sim-host-a")?;
    let host = |link, addr| {
        let mut config = Config::new(Ipv4Cidr {
            addr,
            prefix_len: PREFIX_LEN,
        });
        config.first_ident = (cfg.seed as u16)
            .wrapping_mul(2)
            .wrapping_add(u16::from(addr.octets()[3]));
        Interface::new(link, config)
    };
    let mut a: Host = host(link_a, HOST_A);
    let mut b: Host = host(Box::new(link_b), HOST_B);

    let _ = writeln!(
        progress,
        "PING {HOST_B} from {HOST_A} over a simulated link: {} data bytes, loss {:.0}%, reorder {:.0}%, delay {:?}±{:?}, seed {}",
        cfg.size,
        cfg.impairments.loss * 100.0,
        cfg.impairments.reorder * 100.0,
        cfg.impairments.delay,
        cfg.impairments.jitter,
        cfg.seed
    );

    let mut now = Instant::ZERO;
    let mut sent_at: BTreeMap<u16, Instant> = BTreeMap::new();
    let mut replies = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let (mut duplicates, mut mismatched, mut out_of_order) = (0, 0, 0);
    let mut highest_seq: Option<u16> = None;
    let mut next_send = Instant::ZERO;
    let mut sent: u16 = 0;
    let mut scratch = Vec::new();
    let end_of_sending = Instant::ZERO + cfg.interval * u32::from(cfg.count.saturating_sub(1));
    let deadline = end_of_sending + cfg.wait;

    loop {
        if sent < cfg.count && now >= next_send {
            a.send_echo_request(now, HOST_B, IDENT, sent, &pattern(sent, cfg.size))?;
            sent_at.insert(sent, now);
            sent += 1;
            next_send += cfg.interval;
        }
        while b.recv(now, &mut scratch)?.is_some() {}
        while a.recv(now, &mut scratch)?.is_some() {}
        while let Some(event) = a.poll_icmp() {
            let IcmpEvent::EchoReply {
                ident: IDENT,
                seq,
                ttl,
                payload,
                ..
            } = event
            else {
                continue;
            };
            let Some(&t) = sent_at.get(&seq) else {
                continue;
            };
            if payload != pattern(seq, cfg.size) {
                mismatched += 1;
                continue;
            }
            if !seen.insert(seq) {
                duplicates += 1;
                let _ = writeln!(
                    progress,
                    "{} bytes from {HOST_B}: icmp_seq={seq} (DUP!)",
                    payload.len() + 8
                );
                continue;
            }
            if highest_seq.is_some_and(|h| seq < h) {
                out_of_order += 1;
            }
            highest_seq = highest_seq.max(Some(seq));
            let rtt = now - t;
            let _ = writeln!(
                progress,
                "{} bytes from {HOST_B}: icmp_seq={seq} ttl={ttl} time={:.1} ms (virtual t={now})",
                payload.len() + 8,
                rtt.as_secs_f64() * 1e3
            );
            replies.push(Reply {
                seq,
                ttl,
                rtt,
                bytes: payload.len(),
            });
        }
        let all_answered = sent == cfg.count && seen.len() == usize::from(cfg.count);
        if all_answered || now >= deadline {
            break;
        }
        // Jump the virtual clock to the next event.
        let mut next = deadline;
        if sent < cfg.count {
            next = next.min(next_send);
        }
        for t in [a.poll_at(now), b.poll_at(now)].into_iter().flatten() {
            next = next.min(t);
        }
        now = if next > now {
            next
        } else {
            now + Duration::from_micros(1)
        };
    }

    let pcap_packets = match &sink {
        Some(sink) => {
            sink.flush()?;
            Some(sink.packets())
        }
        None => None,
    };
    let report = PingReport {
        sent,
        replies,
        duplicates,
        mismatched,
        out_of_order,
        virtual_time: now.since_epoch(),
        link_a: stats_a.stats(),
        link_b: stats_b.stats(),
        net_a: a.stats().clone(),
        net_b: b.stats().clone(),
        pcap_packets,
    };
    let _ = writeln!(progress, "--- {HOST_B} ping statistics ---");
    let _ = writeln!(
        progress,
        "{} packets transmitted, {} received, {:.0}% packet loss, {} duplicates, {} out of order, virtual time {:.3}s",
        report.sent,
        report.received(),
        report.loss_percent(),
        report.duplicates,
        report.out_of_order,
        report.virtual_time.as_secs_f64()
    );
    if let Some(n) = report.pcap_packets {
        let _ = writeln!(progress, "capture: {n} packets written");
    }
    Ok(report)
}
