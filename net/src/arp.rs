//! ARP (RFC 826) and the neighbour cache of an Ethernet interface, sans-IO: packets and
//! time come in, [`Action`]s (frames to send, packets given up on) come out.
//!
//! The cache follows Linux's neighbour table in spirit: an address is resolved by
//! broadcast requests (`Incomplete`, packets wait in a bounded queue); a reply makes it
//! `Reachable` for [`ArpConfig::reachable`]; after that it is `Stale`: still used, and
//! the first use starts a `Delay` after which, unless a reply confirmed it meanwhile,
//! unicast requests (`Probe`) confirm it. Unanswered requests and probes end the entry
//! (and the waiting packets, reported as unreachable).
//!
//! Learning is conservative: RFC 826's merge rule updates an entry we already have from
//! any valid ARP packet its owner sends, and a request for our address creates one; a
//! reply nobody asked for, or a packet with an impossible sender, never does.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use etherparse::{ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacketSlice, EtherType};
use ustack_link::{Duration, Instant};

use crate::ethernet::MacAddr;
use crate::ipv4;
use crate::route::Ipv4Cidr;
use crate::stats::{RxDrop, Stats};

/// Timers and bounds of the neighbour cache; the defaults are Linux's (`ip ntable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpConfig {
    /// How long a reply keeps an entry `Reachable` (Linux `base_reachable_time`, 30 s).
    pub reachable: Duration,
    /// Time between requests for one address (Linux `retrans_time`, 1 s).
    pub retrans: Duration,
    /// Broadcast requests before giving up on an address (Linux `mcast_solicit`, 3).
    pub requests: u32,
    /// Unicast requests confirming a stale entry before dropping it (`ucast_solicit`, 3).
    pub probes: u32,
    /// Time from the first use of a stale entry to its first probe (Linux
    /// `delay_first_probe_time`, 5 s).
    pub delay_first_probe: Duration,
    /// Packets held per address while it is resolved; beyond it the oldest is dropped.
    pub queue_len: usize,
    /// Entries in the cache; when full the least recently confirmed stale entry goes.
    pub max_entries: usize,
    /// Minimum time between two defences of our address (RFC 5227 DEFEND_INTERVAL, 10 s).
    pub defend_interval: Duration,
}

impl Default for ArpConfig {
    fn default() -> ArpConfig {
        ArpConfig {
            reachable: Duration::from_secs(30),
            retrans: Duration::from_secs(1),
            requests: 3,
            probes: 3,
            delay_first_probe: Duration::from_secs(5),
            queue_len: 64,
            max_entries: 256,
            defend_interval: Duration::from_secs(10),
        }
    }
}

/// What the cache knows about one neighbour, as `ip neigh` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourState {
    Incomplete,
    Reachable(MacAddr),
    Stale(MacAddr),
    Delay(MacAddr),
    Probe(MacAddr),
}

#[derive(Debug)]
enum State {
    /// Broadcast requests sent, no answer yet; packets wait for one.
    Incomplete {
        sent: u32,
        next: Instant,
        queue: VecDeque<Vec<u8>>,
    },
    /// Confirmed by a reply; trusted until `until`.
    Reachable { mac: MacAddr, until: Instant },
    /// Learned or confirmed long ago; confirmed again on first use.
    Stale { mac: MacAddr },
    /// Used while stale: probing starts at `until` unless a reply comes first.
    Delay { mac: MacAddr, until: Instant },
    /// In use, confirming by unicast requests.
    Probe {
        mac: MacAddr,
        sent: u32,
        next: Instant,
    },
}

#[derive(Debug)]
struct Neighbour {
    state: State,
    /// Last time the entry was created or confirmed (eviction order).
    updated: Instant,
}

/// Work for the interface: frames to put on the link and packets to give up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An ARP packet to send in a frame to `dst`.
    Arp {
        dst: MacAddr,
        packet: ArpEthIpv4Packet,
    },
    /// A queued IPv4 packet whose next hop is now known.
    Send { dst: MacAddr, packet: Vec<u8> },
    /// A queued IPv4 packet dropped because its next hop never answered.
    Unreachable(Vec<u8>),
}

/// The ARP state of one interface.
#[derive(Debug)]
pub struct Arp {
    cfg: ArpConfig,
    mac: MacAddr,
    cidr: Ipv4Cidr,
    neighbours: BTreeMap<Ipv4Addr, Neighbour>,
    last_defence: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Arp {
    pub fn new(cfg: ArpConfig, mac: MacAddr, cidr: Ipv4Cidr) -> Arp {
        Arp {
            cfg,
            mac,
            cidr,
            neighbours: BTreeMap::new(),
            last_defence: None,
            actions: VecDeque::new(),
        }
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The next piece of work for the interface.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What the cache holds for `ip` at `now`.
    pub fn neighbour(&self, now: Instant, ip: Ipv4Addr) -> Option<NeighbourState> {
        Some(match &self.neighbours.get(&ip)?.state {
            State::Incomplete { .. } => NeighbourState::Incomplete,
            State::Reachable { mac, until } if now < *until => NeighbourState::Reachable(*mac),
            State::Reachable { mac, .. } | State::Stale { mac } => NeighbourState::Stale(*mac),
            State::Delay { mac, .. } => NeighbourState::Delay(*mac),
            State::Probe { mac, .. } => NeighbourState::Probe(*mac),
        })
    }

    /// Entries in the cache.
    pub fn len(&self) -> usize {
        self.neighbours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
    }

    fn packet(&self, op: ArpOperation, target_mac: MacAddr, target: Ipv4Addr) -> ArpEthIpv4Packet {
        arp_packet(op, (self.mac, self.cidr.addr), (target_mac, target))
    }

    /// A request for `target`, broadcast or (probing a stale entry) unicast to `to`.
    fn request(&mut self, to: MacAddr, target: Ipv4Addr, stats: &mut Stats) {
        let packet = self.packet(ArpOperation::REQUEST, MacAddr::ZERO, target);
        self.actions.push_back(Action::Arp { dst: to, packet });
        stats.arp_requests_out += 1;
    }

    /// A gratuitous ARP announcing our address (RFC 5227 section 2.3: a request with our
    /// address as both sender and target), sent when the interface starts and to defend
    /// the address.
    pub fn announce(&mut self, stats: &mut Stats) {
        let packet = self.packet(ArpOperation::REQUEST, MacAddr::ZERO, self.cidr.addr);
        self.actions.push_back(Action::Arp {
            dst: MacAddr::BROADCAST,
            packet,
        });
        stats.arp_announcements_out += 1;
    }

    /// The MAC address of next hop `ip` for an IPv4 `packet`, or `None` if the packet now
    /// waits for resolution (or was dropped, counted, because the cache is full).
    pub fn resolve(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        packet: &[u8],
        stats: &mut Stats,
    ) -> Option<MacAddr> {
        if let Some(n) = self.neighbours.get_mut(&ip) {
            match &mut n.state {
                State::Reachable { mac, until } if now < *until => return Some(*mac),
                State::Reachable { mac, .. } | State::Stale { mac } => {
                    let mac = *mac;
                    n.state = State::Delay {
                        mac,
                        until: now + self.cfg.delay_first_probe,
                    };
                    return Some(mac);
                }
                State::Delay { mac, .. } | State::Probe { mac, .. } => return Some(*mac),
                State::Incomplete { queue, .. } => {
                    if queue.len() >= self.cfg.queue_len {
                        queue.pop_front();
                        stats.arp_queue_overflow += 1;
                    }
                    queue.push_back(packet.to_vec());
                    return None;
                }
            }
        }
        if !self.make_room() {
            stats.arp_cache_full += 1;
            return None;
        }
        let queue = VecDeque::from([packet.to_vec()]);
        self.neighbours.insert(
            ip,
            Neighbour {
                state: State::Incomplete {
                    sent: 1,
                    next: now + self.cfg.retrans,
                    queue,
                },
                updated: now,
            },
        );
        self.request(MacAddr::BROADCAST, ip, stats);
        None
    }

    /// Room for one more entry: evicts the least recently confirmed entry that is not
    /// being resolved, if the cache is full. False if every entry is busy.
    fn make_room(&mut self) -> bool {
        if self.neighbours.len() < self.cfg.max_entries {
            return true;
        }
        let victim = self
            .neighbours
            .iter()
            .filter(|(_, n)| {
                matches!(
                    n.state,
                    State::Stale { .. } | State::Reachable { .. } | State::Delay { .. }
                )
            })
            .min_by_key(|(_, n)| n.updated)
            .map(|(ip, _)| *ip);
        match victim {
            Some(ip) => {
                self.neighbours.remove(&ip);
                true
            }
            None => false,
        }
    }

    /// When [`Arp::on_timeout`] has work: the next retry of a request or probe.
    pub fn poll_at(&self) -> Option<Instant> {
        self.neighbours
            .values()
            .filter_map(|n| match n.state {
                State::Incomplete { next, .. }
                | State::Probe { next, .. }
                | State::Delay { until: next, .. } => Some(next),
                _ => None,
            })
            .min()
    }

    /// Retries requests and probes that are due, and gives up on those out of retries:
    /// the entry goes, and its waiting packets become [`Action::Unreachable`].
    pub fn on_timeout(&mut self, now: Instant, stats: &mut Stats) {
        let due: Vec<Ipv4Addr> = self
            .neighbours
            .iter()
            .filter(|(_, n)| match n.state {
                State::Incomplete { next, .. }
                | State::Probe { next, .. }
                | State::Delay { until: next, .. } => next <= now,
                _ => false,
            })
            .map(|(ip, _)| *ip)
            .collect();
        for ip in due {
            let Some(n) = self.neighbours.get_mut(&ip) else {
                continue;
            };
            let (limit, to) = match &mut n.state {
                State::Incomplete { sent, next, .. } => {
                    *next = now + self.cfg.retrans;
                    *sent += 1;
                    (*sent > self.cfg.requests, MacAddr::BROADCAST)
                }
                State::Probe { sent, next, mac } => {
                    *next = now + self.cfg.retrans;
                    *sent += 1;
                    (*sent > self.cfg.probes, *mac)
                }
                State::Delay { mac, .. } => {
                    let mac = *mac;
                    n.state = State::Probe {
                        mac,
                        sent: 1,
                        next: now + self.cfg.retrans,
                    };
                    (false, mac)
                }
                _ => continue,
            };
            if !limit {
                self.request(to, ip, stats);
                continue;
            }
            stats.arp_failed += 1;
            if let Some(Neighbour {
                state: State::Incomplete { queue, .. },
                ..
            }) = self.neighbours.remove(&ip)
            {
                stats.arp_unresolved_dropped += queue.len() as u64;
                self.actions
                    .extend(queue.into_iter().map(Action::Unreachable));
            }
        }
    }

    /// Handles the payload of a received ARP frame (RFC 826 "Packet Reception"). `Ok` if
    /// the packet was used (learned from, answered, or counted as a conflict); otherwise
    /// the reason it was dropped, and nothing was learned from it.
    pub fn receive(
        &mut self,
        now: Instant,
        payload: &[u8],
        stats: &mut Stats,
    ) -> Result<(), RxDrop> {
        let arp = validate(payload)?;
        let sender_mac = MacAddr(arp.sender_mac);
        let (sender, target) = (arp.sender_ipv4_addr(), arp.target_ipv4_addr());
        let ours = self.cidr.addr;
        if !sender_mac.is_unicast() || sender_mac == self.mac {
            return Err(RxDrop::ArpBadSenderMac);
        }
        let is_request = arp.operation == ArpOperation::REQUEST;
        if is_request {
            stats.arp_requests_in += 1;
        } else {
            stats.arp_replies_in += 1;
        }
        if sender == ours {
            // RFC 5227 section 2.4: someone else claims our address. Count it and, at
            // most once per DEFEND_INTERVAL, defend with an announcement.
            stats.arp_conflicts += 1;
            let may_defend = self
                .last_defence
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.defend_interval);
            if may_defend {
                self.last_defence = Some(now);
                self.announce(stats);
            }
            return Ok(());
        }
        if sender.is_unspecified() {
            // RFC 5227 section 2.1.1 probe: answer one for our address so that the prober
            // sees the address is taken (as Linux does, the reply goes to the prober's
            // MAC with target address 0.0.0.0).
            if is_request && target == ours {
                let packet = self.packet(ArpOperation::REPLY, sender_mac, sender);
                self.actions.push_back(Action::Arp {
                    dst: sender_mac,
                    packet,
                });
                stats.arp_replies_out += 1;
                return Ok(());
            }
            return Err(RxDrop::ArpNotForUs);
        }
        if !self.valid_neighbour(sender) {
            return Err(RxDrop::ArpBadSenderIp);
        }
        let for_us = target == ours;
        // RFC 826 "merge": if we know the sender, update what we know.
        let merged = match self.neighbours.get_mut(&sender) {
            Some(n) => {
                let answer = !is_request && for_us && MacAddr(arp.target_mac) == self.mac;
                let old = std::mem::replace(&mut n.state, State::Stale { mac: sender_mac });
                n.state = match old {
                    State::Incomplete { queue, .. } => {
                        stats.arp_resolved += 1;
                        for packet in queue {
                            self.actions.push_back(Action::Send {
                                dst: sender_mac,
                                packet,
                            });
                        }
                        if answer {
                            n.updated = now;
                            State::Reachable {
                                mac: sender_mac,
                                until: now + self.cfg.reachable,
                            }
                        } else {
                            State::Stale { mac: sender_mac }
                        }
                    }
                    _ if answer => {
                        n.updated = now;
                        State::Reachable {
                            mac: sender_mac,
                            until: now + self.cfg.reachable,
                        }
                    }
                    // Same address: what we knew stands.
                    State::Reachable { mac, until } if mac == sender_mac => {
                        State::Reachable { mac, until }
                    }
                    State::Probe { mac, sent, next } if mac == sender_mac => {
                        State::Probe { mac, sent, next }
                    }
                    State::Delay { mac, until } if mac == sender_mac => State::Delay { mac, until },
                    // A new address is not confirmed until asked.
                    _ => State::Stale { mac: sender_mac },
                };
                true
            }
            None => false,
        };
        if !for_us {
            return if merged {
                Ok(())
            } else {
                Err(RxDrop::ArpNotForUs)
            };
        }
        if !is_request {
            return if merged {
                Ok(())
            } else {
                Err(RxDrop::ArpUnsolicited)
            };
        }
        // A request for our address: learn the requester (it is about to talk to us),
        // then answer it.
        if !merged {
            if self.make_room() {
                self.neighbours.insert(
                    sender,
                    Neighbour {
                        state: State::Stale { mac: sender_mac },
                        updated: now,
                    },
                );
            } else {
                stats.arp_cache_full += 1;
            }
        }
        let packet = self.packet(ArpOperation::REPLY, sender_mac, sender);
        self.actions.push_back(Action::Arp {
            dst: sender_mac,
            packet,
        });
        stats.arp_replies_out += 1;
        Ok(())
    }

    /// Whether `ip` can be a neighbour's address: a unicast address on our network.
    fn valid_neighbour(&self, ip: Ipv4Addr) -> bool {
        ipv4::is_valid_source(ip)
            && !ipv4::is_martian_source(ip)
            && self.cidr.contains(ip)
            && Some(ip) != self.cidr.broadcast()
            && ip != self.cidr.network()
    }
}

/// Checks that `payload` is an Ethernet/IPv4 ARP request or reply (RFC 826: hardware type
/// 1, protocol type 0x0800, address lengths 6 and 4, opcode 1 or 2). Trailing bytes
/// (Ethernet padding) are ignored.
pub fn validate(payload: &[u8]) -> Result<ArpEthIpv4Packet, RxDrop> {
    let slice = ArpPacketSlice::from_slice(payload).map_err(|_| RxDrop::ArpTruncated)?;
    if slice.hw_addr_type() != ArpHardwareId::ETHERNET || slice.hw_addr_size() != 6 {
        return Err(RxDrop::ArpBadHardware);
    }
    if slice.proto_addr_type() != EtherType::IPV4 || slice.proto_addr_size() != 4 {
        return Err(RxDrop::ArpBadProtocol);
    }
    let op = slice.operation();
    if op != ArpOperation::REQUEST && op != ArpOperation::REPLY {
        return Err(RxDrop::ArpBadOperation);
    }
    slice
        .to_packet()
        .try_eth_ipv4()
        .map_err(|_| RxDrop::ArpBadHardware)
}

/// An Ethernet/IPv4 ARP packet from `sender` to `target`, `(MAC, IPv4)` each (RFC 826).
pub(crate) fn arp_packet(
    op: ArpOperation,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) -> ArpEthIpv4Packet {
    ArpEthIpv4Packet {
        operation: op,
        sender_mac: sender.0 .0,
        sender_ipv4: sender.1.octets(),
        target_mac: target.0 .0,
        target_ipv4: target.1.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const US_MAC: MacAddr = MacAddr([0x02, 0, 0xc6, 0x12, 0, 0x01]);
    const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0xc6, 0x12, 0, 0x02]);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    const T0: Instant = Instant::ZERO;

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    fn arp_with(cfg: ArpConfig) -> (Arp, Stats) {
        (
            Arp::new(cfg, US_MAC, "198.18.0.1/24".parse().unwrap()),
            Stats::default(),
        )
    }

    fn arp() -> (Arp, Stats) {
        arp_with(ArpConfig::default())
    }

    fn reply_from(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
        arp_packet(ArpOperation::REPLY, (mac, ip), (US_MAC, US))
            .to_bytes()
            .to_vec()
    }

    fn request_from(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        arp_packet(ArpOperation::REQUEST, (mac, ip), (MacAddr::ZERO, target))
            .to_bytes()
            .to_vec()
    }

    fn actions(arp: &mut Arp) -> Vec<Action> {
        std::iter::from_fn(|| arp.poll_action()).collect()
    }

    fn our_request(to: MacAddr, target: Ipv4Addr) -> Action {
        Action::Arp {
            dst: to,
            packet: arp_packet(ArpOperation::REQUEST, (US_MAC, US), (MacAddr::ZERO, target)),
        }
    }

    /// RFC 826 with Linux's retries (`mcast_solicit` 3, `retrans_time` 1 s): three
    /// broadcast requests a second apart, then the waiting packet is given up on.
    #[test]
    fn unanswered_requests_are_retried_then_the_packets_are_unreachable() {
        let (mut arp, mut stats) = arp();
        assert_eq!(arp.resolve(T0, PEER, b"p1", &mut stats), None);
        assert_eq!(actions(&mut arp), [our_request(MacAddr::BROADCAST, PEER)]);
        assert_eq!(arp.poll_at(), Some(secs(1)));
        arp.on_timeout(Instant::from_millis(999), &mut stats);
        assert!(actions(&mut arp).is_empty());
        for t in [1, 2] {
            arp.on_timeout(secs(t), &mut stats);
            assert_eq!(actions(&mut arp), [our_request(MacAddr::BROADCAST, PEER)]);
            assert_eq!(arp.poll_at(), Some(secs(t + 1)));
        }
        arp.on_timeout(secs(3), &mut stats);
        assert_eq!(actions(&mut arp), [Action::Unreachable(b"p1".to_vec())]);
        assert_eq!(arp.neighbour(secs(3), PEER), None);
        assert_eq!(arp.poll_at(), None);
        assert_eq!((stats.arp_requests_out, stats.arp_failed), (3, 1));
        assert_eq!(stats.arp_unresolved_dropped, 1);
        // The next packet starts over.
        assert_eq!(arp.resolve(secs(4), PEER, b"p2", &mut stats), None);
        assert_eq!(actions(&mut arp), [our_request(MacAddr::BROADCAST, PEER)]);
    }

    /// A bounded queue per address: beyond it the oldest waiting packet is dropped and
    /// counted; the reply releases the rest in order.
    #[test]
    fn the_resolution_queue_drops_its_oldest_beyond_the_bound() {
        let (mut arp, mut stats) = arp_with(ArpConfig {
            queue_len: 2,
            ..ArpConfig::default()
        });
        for p in [b"p1", b"p2", b"p3"] {
            assert_eq!(arp.resolve(T0, PEER, p, &mut stats), None);
        }
        assert_eq!(stats.arp_queue_overflow, 1);
        assert_eq!(stats.arp_requests_out, 1);
        actions(&mut arp);
        arp.receive(T0, &reply_from(PEER_MAC, PEER), &mut stats)
            .unwrap();
        let send = |p: &[u8]| Action::Send {
            dst: PEER_MAC,
            packet: p.to_vec(),
        };
        assert_eq!(actions(&mut arp), [send(b"p2"), send(b"p3")]);
        assert_eq!(stats.arp_resolved, 1);
    }

    /// Linux's neighbour states in spirit: reachable for 30 s after a reply, then stale;
    /// a stale entry is still used, and 5 s after that first use unicast requests
    /// confirm it. A reply makes it reachable again.
    #[test]
    fn reachable_turns_stale_and_a_used_stale_entry_is_confirmed_by_unicast() {
        let (mut arp, mut stats) = arp();
        arp.resolve(T0, PEER, b"p", &mut stats);
        arp.receive(T0, &reply_from(PEER_MAC, PEER), &mut stats)
            .unwrap();
        actions(&mut arp);
        assert_eq!(
            arp.neighbour(secs(29), PEER),
            Some(NeighbourState::Reachable(PEER_MAC))
        );
        assert_eq!(
            arp.neighbour(secs(30), PEER),
            Some(NeighbourState::Stale(PEER_MAC))
        );
        assert_eq!(arp.poll_at(), None);
        // Used while stale: sent at once, probing 5 s later.
        assert_eq!(
            arp.resolve(secs(40), PEER, b"q", &mut stats),
            Some(PEER_MAC)
        );
        assert_eq!(
            arp.neighbour(secs(40), PEER),
            Some(NeighbourState::Delay(PEER_MAC))
        );
        assert!(actions(&mut arp).is_empty());
        assert_eq!(arp.poll_at(), Some(secs(45)));
        arp.on_timeout(secs(45), &mut stats);
        assert_eq!(actions(&mut arp), [our_request(PEER_MAC, PEER)]);
        assert_eq!(
            arp.resolve(secs(45), PEER, b"r", &mut stats),
            Some(PEER_MAC)
        );
        arp.receive(secs(46), &reply_from(PEER_MAC, PEER), &mut stats)
            .unwrap();
        assert_eq!(
            arp.neighbour(secs(46), PEER),
            Some(NeighbourState::Reachable(PEER_MAC))
        );
        assert_eq!(arp.poll_at(), None);
    }

    /// A stale entry whose owner stops answering its unicast probes is removed (Linux:
    /// PROBE -> FAILED after `ucast_solicit` probes).
    #[test]
    fn unanswered_probes_remove_the_entry() {
        let (mut arp, mut stats) = arp();
        arp.receive(T0, &request_from(PEER_MAC, PEER, US), &mut stats)
            .unwrap();
        assert_eq!(
            arp.neighbour(T0, PEER),
            Some(NeighbourState::Stale(PEER_MAC))
        );
        assert_eq!(arp.resolve(T0, PEER, b"p", &mut stats), Some(PEER_MAC));
        actions(&mut arp);
        for t in [5, 6, 7] {
            arp.on_timeout(secs(t), &mut stats);
            assert_eq!(actions(&mut arp), [our_request(PEER_MAC, PEER)], "at {t} s");
        }
        arp.on_timeout(secs(8), &mut stats);
        assert!(actions(&mut arp).is_empty());
        assert_eq!(arp.neighbour(secs(8), PEER), None);
        assert_eq!(stats.arp_failed, 1);
    }

    /// RFC 5227 section 2.4: an ARP packet with our address as sender from another
    /// station is a conflict; it is counted, never learned, and defended with an
    /// announcement at most once per DEFEND_INTERVAL (10 s).
    #[test]
    fn a_packet_claiming_our_address_is_a_conflict_rfc5227_2_4() {
        let (mut arp, mut stats) = arp();
        let claim = request_from(OTHER_MAC, US, US);
        arp.receive(T0, &claim, &mut stats).unwrap();
        let announcement = Action::Arp {
            dst: MacAddr::BROADCAST,
            packet: arp_packet(ArpOperation::REQUEST, (US_MAC, US), (MacAddr::ZERO, US)),
        };
        assert_eq!(actions(&mut arp), std::slice::from_ref(&announcement));
        arp.receive(secs(5), &reply_from(OTHER_MAC, US), &mut stats)
            .unwrap();
        assert!(actions(&mut arp).is_empty());
        arp.receive(secs(10), &claim, &mut stats).unwrap();
        assert_eq!(actions(&mut arp), [announcement]);
        assert_eq!(stats.arp_conflicts, 3);
        assert_eq!(stats.arp_announcements_out, 2);
        assert!(arp.is_empty());
    }

    /// RFC 5227 section 2.1.1: a probe (sender 0.0.0.0) for our address is answered so
    /// the prober sees the address is in use; a probe for another address is not ours,
    /// and neither is learned.
    #[test]
    fn probes_for_our_address_are_answered_rfc5227_2_1_1() {
        let (mut arp, mut stats) = arp();
        let probe = request_from(PEER_MAC, Ipv4Addr::UNSPECIFIED, US);
        arp.receive(T0, &probe, &mut stats).unwrap();
        assert_eq!(
            actions(&mut arp),
            [Action::Arp {
                dst: PEER_MAC,
                packet: arp_packet(
                    ArpOperation::REPLY,
                    (US_MAC, US),
                    (PEER_MAC, Ipv4Addr::UNSPECIFIED)
                ),
            }]
        );
        let elsewhere = request_from(PEER_MAC, Ipv4Addr::UNSPECIFIED, PEER);
        assert_eq!(
            arp.receive(T0, &elsewhere, &mut stats),
            Err(RxDrop::ArpNotForUs)
        );
        assert!(arp.is_empty());
    }

    /// RFC 826 merge: a known neighbour's new address is taken from any ARP packet it
    /// sends (a gratuitous ARP after a NIC change), but is not trusted as reachable.
    #[test]
    fn a_known_neighbour_changing_address_is_merged_as_stale_rfc826() {
        let (mut arp, mut stats) = arp();
        arp.resolve(T0, PEER, b"p", &mut stats);
        arp.receive(T0, &reply_from(PEER_MAC, PEER), &mut stats)
            .unwrap();
        let gratuitous = request_from(OTHER_MAC, PEER, PEER);
        arp.receive(secs(1), &gratuitous, &mut stats).unwrap();
        assert_eq!(
            arp.neighbour(secs(1), PEER),
            Some(NeighbourState::Stale(OTHER_MAC))
        );
        // The same from a stranger teaches nothing.
        let stranger = Ipv4Addr::new(198, 18, 0, 7);
        assert_eq!(
            arp.receive(
                secs(1),
                &request_from(OTHER_MAC, stranger, stranger),
                &mut stats
            ),
            Err(RxDrop::ArpNotForUs)
        );
        assert_eq!(arp.neighbour(secs(1), stranger), None);
    }

    /// Hostile and malformed ARP: every one is a counted drop for its reason, and none
    /// leaves a cache entry or a packet to send.
    #[test]
    fn hostile_arp_is_dropped_by_reason_and_never_cached() {
        let good = reply_from(PEER_MAC, PEER);
        // One byte changed, padded so that odd address lengths still fit.
        let with = |i: usize, v: u8| {
            let mut p = good.clone();
            p[i] = v;
            p.resize(64, 0);
            p
        };
        let from = |mac, ip| request_from(mac, ip, US);
        let cases: Vec<(Vec<u8>, RxDrop)> = vec![
            (good[..7].to_vec(), RxDrop::ArpTruncated),
            (good[..27].to_vec(), RxDrop::ArpTruncated),
            (with(1, 6), RxDrop::ArpBadHardware),
            (with(4, 8), RxDrop::ArpBadHardware),
            (with(2, 0x86), RxDrop::ArpBadProtocol),
            (with(5, 16), RxDrop::ArpBadProtocol),
            (with(7, 3), RxDrop::ArpBadOperation),
            (from(MacAddr::BROADCAST, PEER), RxDrop::ArpBadSenderMac),
            (
                from(MacAddr([1, 0, 0x5e, 0, 0, 1]), PEER),
                RxDrop::ArpBadSenderMac,
            ),
            (from(MacAddr::ZERO, PEER), RxDrop::ArpBadSenderMac),
            (from(US_MAC, PEER), RxDrop::ArpBadSenderMac),
            (from(PEER_MAC, Ipv4Addr::BROADCAST), RxDrop::ArpBadSenderIp),
            (
                from(PEER_MAC, Ipv4Addr::new(198, 18, 0, 255)),
                RxDrop::ArpBadSenderIp,
            ),
            (
                from(PEER_MAC, Ipv4Addr::new(198, 18, 0, 0)),
                RxDrop::ArpBadSenderIp,
            ),
            (
                from(PEER_MAC, Ipv4Addr::new(224, 0, 0, 1)),
                RxDrop::ArpBadSenderIp,
            ),
            (
                from(PEER_MAC, Ipv4Addr::new(127, 0, 0, 1)),
                RxDrop::ArpBadSenderIp,
            ),
            (
                from(PEER_MAC, Ipv4Addr::new(198, 19, 0, 2)),
                RxDrop::ArpBadSenderIp,
            ),
            (good.clone(), RxDrop::ArpUnsolicited),
            (
                request_from(PEER_MAC, PEER, Ipv4Addr::new(198, 18, 0, 3)),
                RxDrop::ArpNotForUs,
            ),
        ];
        for (payload, reason) in &cases {
            let (mut arp, mut stats) = arp();
            assert_eq!(
                arp.receive(T0, payload, &mut stats),
                Err(*reason),
                "{reason}"
            );
            assert!(arp.is_empty(), "{reason}: cached");
            assert!(actions(&mut arp).is_empty(), "{reason}: answered");
        }
        // While one address is being resolved, a reply about another is still one
        // nobody asked for.
        let (mut arp, mut stats) = arp();
        arp.resolve(T0, PEER, b"p", &mut stats);
        let other = Ipv4Addr::new(198, 18, 0, 3);
        assert_eq!(
            arp.receive(T0, &reply_from(OTHER_MAC, other), &mut stats),
            Err(RxDrop::ArpUnsolicited)
        );
        assert_eq!(arp.neighbour(T0, other), None);
        assert_eq!(arp.neighbour(T0, PEER), Some(NeighbourState::Incomplete));
    }

    /// The cache is bounded: the least recently confirmed settled entry makes room; when
    /// every entry is being resolved, a new address is refused and counted.
    #[test]
    fn the_cache_is_bounded() {
        let (mut arp, mut stats) = arp_with(ArpConfig {
            max_entries: 2,
            ..ArpConfig::default()
        });
        let ip = |n| Ipv4Addr::new(198, 18, 0, n);
        arp.receive(T0, &request_from(PEER_MAC, ip(10), US), &mut stats)
            .unwrap();
        arp.receive(secs(1), &request_from(OTHER_MAC, ip(11), US), &mut stats)
            .unwrap();
        arp.receive(secs(2), &request_from(PEER_MAC, ip(12), US), &mut stats)
            .unwrap();
        assert_eq!(arp.neighbour(secs(2), ip(10)), None);
        assert_eq!(arp.len(), 2);
        arp.resolve(secs(2), ip(20), b"x", &mut stats);
        arp.resolve(secs(2), ip(21), b"y", &mut stats);
        assert_eq!(arp.resolve(secs(2), ip(22), b"z", &mut stats), None);
        assert_eq!(arp.neighbour(secs(2), ip(22)), None);
        assert_eq!(stats.arp_cache_full, 1);
    }

    proptest! {
        /// Any bytes as an ARP payload: never a panic, and a cache entry only ever for a
        /// unicast address on our network with a unicast MAC address.
        #[test]
        fn arbitrary_arp_never_panics_nor_caches_the_impossible(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..30),
            fix_header in any::<bool>(),
        ) {
            let (mut arp, mut stats) = arp();
            for mut p in payloads {
                if fix_header && p.len() >= 8 {
                    p[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
                    p[6] = 0;
                    p[7] = 1 + p[7] % 2;
                }
                let _ = arp.receive(T0, &p, &mut stats);
            }
            for (ip, n) in &arp.neighbours {
                prop_assert!(arp.valid_neighbour(*ip) && *ip != US);
                if let State::Stale { mac } | State::Reachable { mac, .. } = n.state {
                    prop_assert!(mac.is_unicast() && mac != US_MAC);
                }
            }
        }
    }
}
