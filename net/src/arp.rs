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
        ArpEthIpv4Packet {
            operation: op,
            sender_mac: self.mac.0,
            sender_ipv4: self.cidr.addr.octets(),
            target_mac: target_mac.0,
            target_ipv4: target.octets(),
        }
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

    /// Handles the payload of an ARP frame from Ethernet source `from`. `Ok` if the
    /// packet was used (learned from, answered, or counted as a conflict); otherwise the
    /// reason it was dropped.
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
                        for packet in queue {
                            self.actions.push_back(Action::Send {
                                dst: sender_mac,
                                packet,
                            });
                        }
                        if answer {
                            stats.arp_resolved += 1;
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
