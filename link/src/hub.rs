//! `SimHub`: several hosts on one simulated IP network, for demos with more than two
//! hosts (a ticket server, its backup, clients). Each ordered pair of ports gets its own
//! seeded impairment [`Engine`], so an outage or partition can cut chosen pairs only.
//!
//! The hub delivers a packet to the port whose address equals the packet's IPv4
//! destination (bytes 16..20): a simulated router, the one place the link layer looks
//! into a packet. Packets to unknown addresses are counted and dropped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::impair::{Engine, ImpairError, ImpairStats, Impairments, Outage};
use crate::link::Medium;
use crate::sim::{derive_seed, lock, Net, SimPort, Wiring};

/// Byte offset of the destination address in an IPv4 header (RFC 791 section 3.1).
const IPV4_DST: std::ops::Range<usize> = 16..20;

/// Impairments of a hub: one default for every pair, and overrides per ordered pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubConfig {
    pub mtu: usize,
    pub default: Impairments,
    /// `(from, to)` -> impairments replacing the default for that direction.
    pub pairs: BTreeMap<(Ipv4Addr, Ipv4Addr), Impairments>,
}

impl HubConfig {
    pub fn new(default: Impairments) -> HubConfig {
        HubConfig {
            mtu: 1500,
            default,
            pairs: BTreeMap::new(),
        }
    }

    fn for_pair(&mut self, from: Ipv4Addr, to: Ipv4Addr) -> &mut Impairments {
        let default = self.default.clone();
        self.pairs.entry((from, to)).or_insert(default)
    }

    /// Cuts `a` and `b` apart in both directions during `outage`.
    pub fn partition(&mut self, a: Ipv4Addr, b: Ipv4Addr, outage: Outage) {
        self.for_pair(a, b).outages.push(outage);
        self.for_pair(b, a).outages.push(outage);
    }

    /// Cuts `host` off from everyone in `others` during `outage` (a crash, seen from the
    /// network, when the outage never ends).
    pub fn isolate(&mut self, host: Ipv4Addr, others: &[Ipv4Addr], outage: Outage) {
        for &o in others {
            self.partition(host, o, outage);
        }
    }
}

/// The wiring of a [`SimHub`]: port addresses, and one engine per ordered pair of
/// ports, made on first use.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    seed: u64,
    addrs: Vec<Ipv4Addr>,
    engines: BTreeMap<(usize, usize), Engine>,
    no_route: u64,
}

impl Hub {
    fn engine(&mut self, from: usize, to: usize) -> &mut Engine {
        let (fa, ta) = (self.addrs[from], self.addrs[to]);
        let imp = self
            .cfg
            .pairs
            .get(&(fa, ta))
            .unwrap_or(&self.cfg.default)
            .clone();
        let seed = derive_seed(self.seed, ((from as u64) << 32) | to as u64);
        self.engines
            .entry((from, to))
            .or_insert_with(|| Engine::new(imp, seed).expect("validated in SimHub::new"))
    }
}

impl Wiring for Hub {
    /// To the port whose address is the packet's IPv4 destination.
    fn route(&mut self, from: usize, packet: &[u8]) -> Option<(usize, &mut Engine)> {
        let dst = packet
            .get(IPV4_DST)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        let Some(to) = dst.and_then(|d| self.addrs.iter().position(|&a| a == d)) else {
            self.no_route += 1;
            return None;
        };
        Some((to, self.engine(from, to)))
    }
}

/// A simulated IP network joining any number of [`HubPort`]s.
#[derive(Debug, Clone)]
pub struct SimHub {
    shared: Arc<Mutex<Net<Hub>>>,
}

/// One host's attachment to a [`SimHub`].
pub type HubPort = SimPort<Hub>;

impl SimHub {
    /// Validates every impairment up front, so sending never fails on configuration.
    pub fn new(mut cfg: HubConfig, seed: u64) -> Result<SimHub, ImpairError> {
        cfg.default.validate()?;
        for imp in cfg.pairs.values() {
            imp.validate()?;
        }
        if cfg.mtu == 0 {
            cfg.mtu = 1500;
        }
        let hub = Hub {
            cfg,
            seed,
            addrs: Vec::new(),
            engines: BTreeMap::new(),
            no_route: 0,
        };
        Ok(SimHub {
            shared: Arc::new(Mutex::new(Net::new(hub))),
        })
    }

    /// A new port receiving packets addressed to `addr`.
    pub fn attach(&self, addr: Ipv4Addr) -> HubPort {
        let mtu = {
            let mut net = lock(&self.shared);
            net.wiring.addrs.push(addr);
            net.wiring.cfg.mtu
        };
        Net::attach(&self.shared, Medium::Ip, mtu)
    }

    /// What the engine did from `from` to `to` so far.
    pub fn stats(&self, from: Ipv4Addr, to: Ipv4Addr) -> ImpairStats {
        let net = lock(&self.shared);
        let hub = &net.wiring;
        let find = |a| hub.addrs.iter().position(|&p| p == a);
        match (find(from), find(to)) {
            (Some(f), Some(t)) => hub
                .engines
                .get(&(f, t))
                .map(|e| e.stats())
                .unwrap_or_default(),
            _ => ImpairStats::default(),
        }
    }

    /// Packets sent to addresses no port has.
    pub fn no_route(&self) -> u64 {
        lock(&self.shared).wiring.no_route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Link;
    use crate::time::Instant;

    /// A minimal IPv4-shaped packet: only the destination matters to the hub.
    fn to(dst: Ipv4Addr, tag: u8) -> Vec<u8> {
        let mut p = vec![0x45; 20];
        p[IPV4_DST].copy_from_slice(&dst.octets());
        p.push(tag);
        p
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    fn drain(port: &mut HubPort, now: Instant) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut tags = Vec::new();
        while let Some(n) = port.recv(now, &mut buf).unwrap() {
            tags.push(buf[n - 1]);
        }
        tags
    }

    #[test]
    fn packets_go_to_the_port_of_their_destination() {
        let hub = SimHub::new(HubConfig::new(Impairments::none()), 1).unwrap();
        let (mut a, mut b, mut c) = (hub.attach(ip(1)), hub.attach(ip(2)), hub.attach(ip(3)));
        a.send(Instant::ZERO, &to(ip(2), 1)).unwrap();
        a.send(Instant::ZERO, &to(ip(3), 2)).unwrap();
        c.send(Instant::ZERO, &to(ip(2), 3)).unwrap();
        a.send(Instant::ZERO, &to(ip(9), 4)).unwrap();
        assert_eq!(drain(&mut b, Instant::ZERO), vec![1, 3]);
        assert_eq!(drain(&mut c, Instant::ZERO), vec![2]);
        assert!(drain(&mut a, Instant::ZERO).is_empty());
        assert_eq!(hub.no_route(), 1);
    }

    #[test]
    fn a_partition_cuts_only_the_named_pair() {
        let mut cfg = HubConfig::new(Impairments::none());
        cfg.partition(ip(1), ip(2), "0s+10s".parse().unwrap());
        let hub = SimHub::new(cfg, 1).unwrap();
        let (mut a, mut b, mut c) = (hub.attach(ip(1)), hub.attach(ip(2)), hub.attach(ip(3)));
        a.send(Instant::ZERO, &to(ip(2), 1)).unwrap();
        b.send(Instant::ZERO, &to(ip(1), 2)).unwrap();
        a.send(Instant::ZERO, &to(ip(3), 3)).unwrap();
        c.send(Instant::ZERO, &to(ip(2), 4)).unwrap();
        assert_eq!(drain(&mut b, Instant::ZERO), vec![4]);
        assert!(drain(&mut a, Instant::ZERO).is_empty());
        assert_eq!(drain(&mut c, Instant::ZERO), vec![3]);
        assert_eq!(hub.stats(ip(1), ip(2)).outage_dropped, 1);
        // After the partition heals, the pair talks again.
        a.send(Instant::from_secs(10), &to(ip(2), 5)).unwrap();
        assert_eq!(drain(&mut b, Instant::from_secs(10)), vec![5]);
    }

    #[test]
    fn pairs_are_seeded_independently_and_reproducibly() {
        let run = |seed| {
            let hub = SimHub::new(
                HubConfig::new(Impairments {
                    loss: 0.5,
                    ..Impairments::none()
                }),
                seed,
            )
            .unwrap();
            let (mut a, mut b) = (hub.attach(ip(1)), hub.attach(ip(2)));
            for i in 0..100 {
                a.send(Instant::ZERO, &to(ip(2), i)).unwrap();
            }
            drain(&mut b, Instant::ZERO)
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
    }
}
