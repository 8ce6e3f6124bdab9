//! Simulated IP networks on a virtual clock: [`SimPort`] is the one [`Link`] of every
//! simulated port, and a [`Wiring`] says where its packets go and which seeded
//! impairment [`Engine`] they pass. [`SimLink`] is a pair of ports, each direction with
//! its own engine; [`SimHub`](crate::SimHub) joins any number of them.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::impair::{Engine, ImpairError, ImpairStats, Impairments, Outage, Verdict};
use crate::link::{Link, LinkError, Medium, TxInfo, ETHERNET_HEADER_LEN};
use crate::time::Instant;

/// Configuration of a [`SimLink`] pair: what it carries, MTU and the impairments of each
/// direction.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Bare IP packets (the default) or Ethernet II frames, as a TAP device or a raw
    /// socket on a cable would carry them. The pair does not look inside either.
    pub medium: Medium,
    /// The largest IP packet; an Ethernet frame may be [`ETHERNET_HEADER_LEN`] longer.
    pub mtu: usize,
    /// What happens to packets sent by endpoint A.
    pub a_to_b: Impairments,
    /// What happens to packets sent by endpoint B.
    pub b_to_a: Impairments,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            medium: Medium::Ip,
            mtu: 1500,
            a_to_b: Impairments::none(),
            b_to_a: Impairments::none(),
        }
    }
}

impl SimConfig {
    /// The same impairments both ways.
    pub fn symmetric(impairments: Impairments) -> SimConfig {
        SimConfig {
            a_to_b: impairments.clone(),
            b_to_a: impairments,
            ..SimConfig::default()
        }
    }

    /// Adds an outage in both directions.
    pub fn with_outage(mut self, outage: Outage) -> SimConfig {
        self.a_to_b.outages.push(outage);
        self.b_to_a.outages.push(outage);
        self
    }

    /// Adds a one-way partition: packets from A to B are lost during `outage`, while B's
    /// packets still reach A.
    pub fn with_partition_a_to_b(mut self, outage: Outage) -> SimConfig {
        self.a_to_b.outages.push(outage);
        self
    }

    pub fn with_mtu(mut self, mtu: usize) -> SimConfig {
        self.mtu = mtu;
        self
    }

    /// Carries Ethernet II frames instead of bare IP packets.
    pub fn ethernet(mut self) -> SimConfig {
        self.medium = Medium::Ethernet;
        self
    }
}

/// A packet on its way, ordered by delivery time, then by send order.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed, so that `BinaryHeap` pops the earliest packet first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One port's incoming side: the packets in flight towards it, earliest first.
#[derive(Debug, Default)]
struct Queue {
    in_flight: BinaryHeap<InFlight>,
    received: u64,
}

/// How the ports of a simulated network are joined: where a packet goes and which
/// impairment [`Engine`] decides its fate. [`Pair`] joins the two ends of a [`SimLink`];
/// [`Hub`](crate::hub::Hub) routes by IPv4 destination.
pub trait Wiring: std::fmt::Debug {
    /// The port a packet sent from port `from` goes to, and the engine of that path;
    /// `None` drops it as unroutable (the wiring counts it).
    fn route(&mut self, from: usize, packet: &[u8]) -> Option<(usize, &mut Engine)>;
}

/// What the ports of one simulated network share: the wiring and every port's queue.
#[derive(Debug)]
pub(crate) struct Net<W> {
    pub(crate) wiring: W,
    queues: Vec<Queue>,
    next_seq: u64,
    /// Recycled packet buffers, so the steady state allocates nothing.
    pool: Vec<Vec<u8>>,
}

impl<W> Net<W> {
    pub(crate) fn new(wiring: W) -> Net<W> {
        Net {
            wiring,
            queues: Vec::new(),
            next_seq: 0,
            pool: Vec::new(),
        }
    }

    /// A port of `medium` and `mtu` on the network behind `shared`.
    pub(crate) fn attach(shared: &Arc<Mutex<Net<W>>>, medium: Medium, mtu: usize) -> SimPort<W> {
        let mut net = lock(shared);
        net.queues.push(Queue::default());
        SimPort {
            shared: shared.clone(),
            index: net.queues.len() - 1,
            medium,
            mtu,
        }
    }
}

pub(crate) fn lock<W>(shared: &Mutex<Net<W>>) -> MutexGuard<'_, Net<W>> {
    // A panic while holding the lock leaves consistent data (every method either
    // completes its change or makes none), so a poisoned lock is still usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port on a simulated IP network, the [`Link`] of both [`SimLink`] and
/// [`HubPort`](crate::HubPort). Ports share the in-flight queues; the caller drives time
/// by passing `now` to every call.
#[derive(Debug)]
pub struct SimPort<W> {
    shared: Arc<Mutex<Net<W>>>,
    index: usize,
    medium: Medium,
    mtu: usize,
}

impl<W> Clone for SimPort<W> {
    fn clone(&self) -> SimPort<W> {
        SimPort {
            shared: self.shared.clone(),
            index: self.index,
            medium: self.medium,
            mtu: self.mtu,
        }
    }
}

impl<W> SimPort<W> {
    fn lock(&self) -> MutexGuard<'_, Net<W>> {
        lock(&self.shared)
    }
}

/// The wiring of a [`SimLink`] pair: port 0 is end A, port 1 end B, and each sends
/// through its own engine.
#[derive(Debug)]
pub struct Pair {
    engines: [Engine; 2],
}

impl Wiring for Pair {
    fn route(&mut self, from: usize, _packet: &[u8]) -> Option<(usize, &mut Engine)> {
        Some((1 - from, &mut self.engines[from]))
    }
}

crate::counters! {
    /// Counters of one endpoint: the impairment decisions on what it sent, and what it read.
    #[derive(Copy)]
    pub struct SimStats {
        /// Packets read from the link.
        pub rx_packets: u64,
    }
    /// The impairment decisions on what it sent; printed as `tx.<name>`.
    pub tx: ImpairStats => "tx.",
}

/// One end of a simulated point-to-point IP link, each direction run through its own
/// seeded impairment [`Engine`].
pub type SimLink = SimPort<Pair>;

pub(crate) use crate::seed::derive as derive_seed;

/// Puts the copies the engine's `verdict` delivers (none, one, or two when duplicated;
/// the first one corrupted if so decided) on `queue`, in send order. Shared by
/// [`SimPort`] and [`DelayLine`](crate::DelayLine).
pub(crate) fn enqueue(
    verdict: &Verdict,
    packet: &[u8],
    queue: &mut BinaryHeap<InFlight>,
    next_seq: &mut u64,
    mut buffer: impl FnMut() -> Vec<u8>,
) {
    for (i, at) in verdict.deliveries.iter().enumerate() {
        let Some(at) = *at else { continue };
        let mut data = buffer();
        data.clear();
        data.extend_from_slice(packet);
        if i == 0 {
            if let Some((offset, bit)) = verdict.info.corrupted {
                data[offset] ^= 1 << bit;
            }
        }
        queue.push(InFlight {
            at,
            seq: *next_seq,
            data,
        });
        *next_seq += 1;
    }
}

impl SimLink {
    /// Two connected endpoints `(a, b)`. Same `config` and `seed` and the same sequence
    /// of calls give the same packets, byte for byte.
    pub fn pair(config: SimConfig, seed: u64) -> Result<(SimLink, SimLink), ImpairError> {
        let engines = [
            Engine::new(config.a_to_b, derive_seed(seed, 1))?,
            Engine::new(config.b_to_a, derive_seed(seed, 2))?,
        ];
        let shared = Arc::new(Mutex::new(Net::new(Pair { engines })));
        let a = Net::attach(&shared, config.medium, config.mtu);
        let b = Net::attach(&shared, config.medium, config.mtu);
        Ok((a, b))
    }

    pub fn stats(&self) -> SimStats {
        let net = self.lock();
        SimStats {
            tx: net.wiring.engines[self.index].stats(),
            rx_packets: net.queues[self.index].received,
        }
    }

    /// Whether this end's outgoing direction is inside a scheduled outage at `now`.
    pub fn is_down(&self, now: Instant) -> bool {
        self.lock().wiring.engines[self.index].down_at(now)
    }

    /// Packets in flight towards this end.
    pub fn pending(&self) -> usize {
        self.lock().queues[self.index].in_flight.len()
    }
}

impl<W: Wiring> Link for SimPort<W> {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
        let header = match self.medium {
            Medium::Ip => 0,
            Medium::Ethernet => ETHERNET_HEADER_LEN,
        };
        if packet.len() > self.mtu + header {
            return Err(LinkError::TooBig {
                len: packet.len(),
                mtu: self.mtu,
            });
        }
        let mut guard = self.lock();
        let net = &mut *guard;
        let Some((to, engine)) = net.wiring.route(self.index, packet) else {
            return Ok(TxInfo::default());
        };
        let queue = &mut net.queues[to].in_flight;
        let verdict = engine.decide(now, packet.len(), queue.len());
        let pool = &mut net.pool;
        enqueue(&verdict, packet, queue, &mut net.next_seq, || {
            pool.pop().unwrap_or_default()
        });
        Ok(verdict.info)
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        let mut guard = self.lock();
        let net = &mut *guard;
        let queue = &mut net.queues[self.index];
        if queue.in_flight.peek().is_none_or(|p| p.at > now) {
            return Ok(None);
        }
        let Some(packet) = queue.in_flight.pop() else {
            return Ok(None);
        };
        let len = packet.data.len();
        let result = if len > buf.len() {
            Err(LinkError::BufferTooSmall {
                len,
                buf: buf.len(),
            })
        } else {
            buf[..len].copy_from_slice(&packet.data);
            queue.received += 1;
            Ok(Some(len))
        };
        net.pool.push(packet.data);
        result
    }

    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        self.lock().queues[self.index]
            .in_flight
            .peek()
            .map(|p| p.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use proptest::prelude::*;

    fn drain(link: &mut SimLink, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(n) = link.recv(now, &mut buf).unwrap() {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn perfect_pair_carries_packets_both_ways_after_the_delay() {
        let cfg = SimConfig::symmetric(Impairments {
            delay: Duration::from_millis(10),
            ..Impairments::none()
        });
        let (mut a, mut b) = SimLink::pair(cfg, 1).unwrap();
        let t0 = Instant::ZERO;
        a.send(t0, b"ping").unwrap();
        b.send(t0, b"pong").unwrap();
        assert!(drain(&mut b, Instant::from_millis(9)).is_empty());
        assert_eq!(b.poll_at(t0), Some(Instant::from_millis(10)));
        assert_eq!(
            drain(&mut b, Instant::from_millis(10)),
            vec![b"ping".to_vec()]
        );
        assert_eq!(
            drain(&mut a, Instant::from_millis(10)),
            vec![b"pong".to_vec()]
        );
        assert_eq!(a.stats().tx.delivered, 1);
        assert_eq!(a.stats().rx_packets, 1);
    }

    #[test]
    fn oversized_packets_and_small_buffers_are_errors() {
        let (mut a, mut b) = SimLink::pair(SimConfig::default().with_mtu(100), 1).unwrap();
        assert!(matches!(
            a.send(Instant::ZERO, &[0; 101]),
            Err(LinkError::TooBig { len: 101, mtu: 100 })
        ));
        a.send(Instant::ZERO, &[0; 100]).unwrap();
        let mut small = [0u8; 10];
        assert!(matches!(
            b.recv(Instant::ZERO, &mut small),
            Err(LinkError::BufferTooSmall { len: 100, buf: 10 })
        ));
    }

    /// An Ethernet pair carries frames of the MTU plus the 14-byte header, and says so.
    #[test]
    fn an_ethernet_pair_carries_mtu_sized_payloads_plus_the_header() {
        let cfg = SimConfig::default().with_mtu(100).ethernet();
        let (mut a, mut b) = SimLink::pair(cfg, 1).unwrap();
        assert_eq!((a.medium(), a.mtu()), (Medium::Ethernet, 100));
        a.send(Instant::ZERO, &[0; 114]).unwrap();
        assert!(matches!(
            a.send(Instant::ZERO, &[0; 115]),
            Err(LinkError::TooBig { len: 115, mtu: 100 })
        ));
        assert_eq!(drain(&mut b, Instant::ZERO), vec![vec![0; 114]]);
        let (ip, _) = SimLink::pair(SimConfig::default(), 1).unwrap();
        assert_eq!(ip.medium(), Medium::Ip);
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let cfg = SimConfig::symmetric(Impairments {
            corrupt: 1.0,
            ..Impairments::none()
        });
        let (mut a, mut b) = SimLink::pair(cfg, 3).unwrap();
        let sent = vec![0x55u8; 200];
        let info = a.send(Instant::ZERO, &sent).unwrap();
        let got = drain(&mut b, Instant::ZERO).pop().unwrap();
        let flipped: u32 = sent
            .iter()
            .zip(&got)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert_eq!(flipped, 1);
        let (offset, bit) = info.corrupted.unwrap();
        assert_eq!(got[offset], sent[offset] ^ (1 << bit));
    }

    #[test]
    fn partition_is_one_way() {
        let cfg = SimConfig::default().with_partition_a_to_b("0s+1s".parse().unwrap());
        let (mut a, mut b) = SimLink::pair(cfg, 1).unwrap();
        a.send(Instant::ZERO, b"lost").unwrap();
        b.send(Instant::ZERO, b"kept").unwrap();
        assert!(a.is_down(Instant::ZERO) && !b.is_down(Instant::ZERO));
        assert!(drain(&mut b, Instant::ZERO).is_empty());
        assert_eq!(drain(&mut a, Instant::ZERO), vec![b"kept".to_vec()]);
    }

    /// Runs a scripted exchange and records every delivered packet with its time.
    fn run(cfg: &SimConfig, seed: u64, script: &[(u16, u8)]) -> Vec<(u64, u8, Vec<u8>)> {
        let (mut a, mut b) = SimLink::pair(cfg.clone(), seed).unwrap();
        let mut log = Vec::new();
        let mut buf = [0u8; 2048];
        for (i, &(len, byte)) in script.iter().enumerate() {
            let now = Instant::from_millis(i as u64);
            let packet = vec![byte; len as usize % 1500 + 1];
            let (tx, rx) = if byte % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            tx.send(now, &packet).unwrap();
            while let Some(n) = rx.recv(now, &mut buf).unwrap() {
                log.push((now.total_micros(), byte % 2, buf[..n].to_vec()));
            }
        }
        let end = Instant::from_secs(3600);
        for (side, link) in [(1u8, &mut a), (0u8, &mut b)] {
            while let Some(n) = link.recv(end, &mut buf).unwrap() {
                log.push((end.total_micros(), side, buf[..n].to_vec()));
            }
        }
        log
    }

    fn all_impairments() -> Impairments {
        Impairments {
            loss: 0.05,
            burst: Some(crate::GilbertElliott::bursts(0.01, 0.3)),
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(15),
            reorder: 0.1,
            duplicate: 0.05,
            corrupt: 0.02,
            rate_bps: Some(50_000_000),
            outages: vec!["100ms+50ms".parse().unwrap()],
            ..Impairments::none()
        }
    }

    proptest! {
        /// Same seed and same inputs give the same output sequence, byte for byte.
        #[test]
        fn same_seed_same_packets(
            seed in any::<u64>(),
            script in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..300),
        ) {
            let cfg = SimConfig::symmetric(all_impairments());
            let first = run(&cfg, seed, &script);
            let second = run(&cfg, seed, &script);
            prop_assert_eq!(first, second);
        }
    }

    #[test]
    fn different_seeds_give_different_runs() {
        let cfg = SimConfig::symmetric(all_impairments());
        let script: Vec<(u16, u8)> = (0..500).map(|i| (i as u16 * 7, i as u8)).collect();
        assert_ne!(run(&cfg, 1, &script), run(&cfg, 2, &script));
    }
}
