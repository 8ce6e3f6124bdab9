//! The impairment engine: one seeded decision maker per direction that says what happens
//! to each packet: random loss, Gilbert-Elliott burst loss, delay and jitter, reordering,
//! duplication, corruption, a rate limit with a bounded queue, and scheduled outages.
//!
//! Decisions depend only on the seed, the configuration and the sequence of
//! `(time, length)` inputs, so the same run replays byte for byte. The engine never sees
//! a clock: the caller passes `now`.

use core::fmt;
use core::str::FromStr;

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::link::{DropReason, TxInfo};
use crate::time::{parse_duration, Duration, Instant};

/// A scheduled interval during which the link carries nothing, written `START+LEN`
/// (`2s+5s`: down from t = 2 s for 5 s), times relative to the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub start: Duration,
    pub len: Duration,
}

impl Outage {
    pub fn new(start: Duration, len: Duration) -> Outage {
        Outage { start, len }
    }

    /// Whether the link is down at `t`. The interval is half-open: `[start, start+len)`.
    pub fn covers(&self, t: Instant) -> bool {
        let t = t.since_epoch();
        t >= self.start && t < self.start.saturating_add(self.len)
    }

    pub fn end(&self) -> Instant {
        Instant::ZERO + self.start.saturating_add(self.len)
    }
}

impl FromStr for Outage {
    type Err = ImpairError;
    fn from_str(s: &str) -> Result<Outage, ImpairError> {
        let bad = || ImpairError::BadOutage(s.to_string());
        let (start, len) = s.split_once('+').ok_or_else(bad)?;
        let start = parse_duration(start).map_err(|_| bad())?;
        let len = parse_duration(len).map_err(|_| bad())?;
        Ok(Outage { start, len })
    }
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}+{:?}", self.start, self.len)
    }
}

/// Two-state Markov loss model (Gilbert-Elliott): in the good state packets are lost with
/// `loss_good`, in the bad state with `loss_bad`; before each packet the state flips with
/// `p_good_to_bad` or `p_bad_to_good`. Mean burst length is `1 / p_bad_to_good`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    pub p_good_to_bad: f64,
    pub p_bad_to_good: f64,
    pub loss_good: f64,
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Simple Gilbert model: no loss when good, all lost when bad.
    pub fn bursts(p_good_to_bad: f64, p_bad_to_good: f64) -> GilbertElliott {
        GilbertElliott {
            p_good_to_bad,
            p_bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// What the link does to packets in one direction. The default is a perfect wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairments {
    /// Probability that a packet is lost, independently of all others.
    pub loss: f64,
    /// Burst loss on top of `loss`.
    pub burst: Option<GilbertElliott>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Uniform variation of the delay in `[-jitter, +jitter]`. Jitter alone keeps packets
    /// in order (like a FIFO queue); use `reorder` to reorder.
    pub jitter: Duration,
    /// Probability that a packet is held back by `reorder_delay` so that later packets
    /// overtake it.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that one bit of a packet is flipped. A single flipped bit is always
    /// caught by the Internet checksum (RFC 1071), so the receiver must drop the packet.
    pub corrupt: f64,
    /// Serialisation rate in bits per second; `None` is infinitely fast.
    pub rate_bps: Option<u64>,
    /// Bytes the rate limiter may queue before it tail-drops ("omission failure").
    pub queue_bytes: usize,
    /// Packets that may be in flight at once before tail drop; bounds memory when the
    /// receiver does not read.
    pub max_in_flight: usize,
    /// Scheduled outages: nothing sent or delivered during them gets through.
    pub outages: Vec<Outage>,
}

impl Default for Impairments {
    fn default() -> Impairments {
        Impairments {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.0,
            corrupt: 0.0,
            rate_bps: None,
            queue_bytes: 256 * 1024,
            max_in_flight: 16 * 1024,
            outages: Vec::new(),
        }
    }
}

/// A configuration the engine cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpairError {
    #[error("{name} must be a probability between 0 and 1, not {value}")]
    BadProbability { name: &'static str, value: f64 },
    #[error("`{0}` is not an outage; write START+LEN, for example 2s+5s")]
    BadOutage(String),
    #[error("the rate limit must be more than 0 bit/s")]
    ZeroRate,
}

impl Impairments {
    /// A perfect wire.
    pub fn none() -> Impairments {
        Impairments::default()
    }

    /// Checks every field; the engine only runs valid configurations.
    pub fn validate(&self) -> Result<(), ImpairError> {
        let mut probabilities = vec![
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
        ];
        if let Some(ge) = &self.burst {
            probabilities.extend([
                ("burst p_good_to_bad", ge.p_good_to_bad),
                ("burst p_bad_to_good", ge.p_bad_to_good),
                ("burst loss_good", ge.loss_good),
                ("burst loss_bad", ge.loss_bad),
            ]);
        }
        for (name, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(ImpairError::BadProbability { name, value });
            }
        }
        if self.rate_bps == Some(0) {
            return Err(ImpairError::ZeroRate);
        }
        Ok(())
    }

    fn is_perfect(&self) -> bool {
        self.loss == 0.0
            && self.burst.is_none()
            && self.jitter.is_zero()
            && self.reorder == 0.0
            && self.duplicate == 0.0
            && self.corrupt == 0.0
            && self.rate_bps.is_none()
            && self.outages.is_empty()
    }

    /// Whether a scheduled outage covers `t`.
    pub fn down_at(&self, t: Instant) -> bool {
        self.outages.iter().any(|o| o.covers(t))
    }
}

crate::counters! {
    /// Counters of the engine's decisions.
    #[derive(Copy)]
    pub struct ImpairStats {
        /// Packets offered to the engine.
        pub packets: u64,
        /// Packets it delivered (at least once).
        pub delivered: u64,
        /// Lost to random loss.
        pub lost: u64,
        /// Lost in a Gilbert-Elliott bad state.
        pub burst_lost: u64,
        /// Dropped because the link already held its maximum of packets in flight.
        pub queue_dropped: u64,
        /// Dropped during an outage or partition.
        pub outage_dropped: u64,
        pub duplicated: u64,
        pub corrupted: u64,
        pub reordered: u64,
    }
}

impl ImpairStats {
    /// One line, as `ustack impair` prints each direction: burst losses count as lost.
    pub fn summary(&self) -> impl fmt::Display + '_ {
        ImpairSummary(self)
    }
}

struct ImpairSummary<'a>(&'a ImpairStats);

impl fmt::Display for ImpairSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{} packets, {} lost, {} outage-dropped, {} reordered, {} duplicated, {} corrupted",
            s.packets,
            s.lost + s.burst_lost,
            s.outage_dropped,
            s.reordered,
            s.duplicated,
            s.corrupted
        )
    }
}

/// The engine's decision for one packet: `info` for the sender's records, and up to two
/// delivery times (two when duplicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub info: TxInfo,
    pub deliveries: [Option<Instant>; 2],
}

/// One direction's seeded decision maker.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: Impairments,
    perfect: bool,
    rng: Xoshiro256PlusPlus,
    in_bad_state: bool,
    /// When the rate limiter finishes serialising what it has queued.
    link_free_at: Instant,
    /// Latest in-order delivery time, so that jitter never reorders.
    last_delivery: Instant,
    stats: ImpairStats,
}

impl Engine {
    pub fn new(cfg: Impairments, seed: u64) -> Result<Engine, ImpairError> {
        cfg.validate()?;
        Ok(Engine {
            perfect: cfg.is_perfect(),
            cfg,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            in_bad_state: false,
            link_free_at: Instant::ZERO,
            last_delivery: Instant::ZERO,
            stats: ImpairStats::default(),
        })
    }

    pub fn config(&self) -> &Impairments {
        &self.cfg
    }

    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Whether a scheduled outage covers `t`.
    pub fn down_at(&self, t: Instant) -> bool {
        self.cfg.down_at(t)
    }

    /// A uniform sample in [0, 1). Hand-written (53 random mantissa bits, as the `rand`
    /// crate does) so the engine needs only `rand_core` and its stream is fixed by the
    /// generator alone.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.uniform() < p
    }

    fn drop(&mut self, reason: DropReason) -> Verdict {
        match reason {
            DropReason::Loss => self.stats.lost += 1,
            DropReason::BurstLoss => self.stats.burst_lost += 1,
            DropReason::QueueFull => self.stats.queue_dropped += 1,
            DropReason::Outage => self.stats.outage_dropped += 1,
        }
        Verdict {
            info: TxInfo {
                dropped: Some(reason),
                ..TxInfo::default()
            },
            deliveries: [None, None],
        }
    }

    /// Decides the fate of a packet of `len` bytes sent at `now`, given that
    /// `in_flight` packets are already on their way.
    pub fn decide(&mut self, now: Instant, len: usize, in_flight: usize) -> Verdict {
        self.stats.packets += 1;
        if in_flight >= self.cfg.max_in_flight {
            return self.drop(DropReason::QueueFull);
        }
        if self.perfect {
            let at = now + self.cfg.delay;
            self.stats.delivered += 1;
            return Verdict {
                info: TxInfo {
                    delay: self.cfg.delay,
                    ..TxInfo::default()
                },
                deliveries: [Some(at), None],
            };
        }
        if self.down_at(now) {
            return self.drop(DropReason::Outage);
        }
        if let Some(ge) = self.cfg.burst {
            let flip = if self.in_bad_state {
                ge.p_bad_to_good
            } else {
                ge.p_good_to_bad
            };
            if self.chance(flip) {
                self.in_bad_state = !self.in_bad_state;
            }
            let p = if self.in_bad_state {
                ge.loss_bad
            } else {
                ge.loss_good
            };
            if self.chance(p) {
                return self.drop(DropReason::BurstLoss);
            }
        }
        if self.chance(self.cfg.loss) {
            return self.drop(DropReason::Loss);
        }

        let mut depart = now;
        if let Some(rate) = self.cfg.rate_bps {
            let backlog = self.link_free_at.saturating_duration_since(now);
            let backlog_bytes = (backlog.as_secs_f64() * rate as f64 / 8.0) as usize;
            if backlog_bytes + len > self.cfg.queue_bytes {
                return self.drop(DropReason::QueueFull);
            }
            let serialise = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            depart = self.link_free_at.max(now) + serialise;
            self.link_free_at = depart;
        }

        let mut at = depart + self.cfg.delay;
        if !self.cfg.jitter.is_zero() {
            let j = self.cfg.jitter.as_secs_f64();
            let offset = (self.uniform() * 2.0 - 1.0) * j;
            at = if offset >= 0.0 {
                at + Duration::from_secs_f64(offset)
            } else {
                (at - Duration::from_secs_f64(-offset)).max(depart)
            };
        }
        let reordered = self.chance(self.cfg.reorder);
        if reordered {
            at = at.max(self.last_delivery) + self.cfg.reorder_delay;
            self.stats.reordered += 1;
        } else {
            at = at.max(self.last_delivery);
            self.last_delivery = at;
        }
        if self.down_at(at) {
            return self.drop(DropReason::Outage);
        }

        let duplicated = self.chance(self.cfg.duplicate);
        let corrupted = if len > 0 && self.chance(self.cfg.corrupt) {
            let offset = (self.rng.next_u64() % len as u64) as usize;
            let bit = (self.rng.next_u64() % 8) as u8;
            self.stats.corrupted += 1;
            Some((offset, bit))
        } else {
            None
        };
        self.stats.delivered += 1;
        if duplicated {
            self.stats.duplicated += 1;
        }
        Verdict {
            info: TxInfo {
                dropped: None,
                corrupted,
                duplicated,
                reordered,
                delay: at - now,
            },
            deliveries: [Some(at), duplicated.then_some(at)],
        }
    }
}

/// Packets on their way through one direction of an impairment engine: what a device
/// forwarder (`ustack impair`) keeps between reading a packet and writing it out.
#[derive(Debug, Default)]
pub struct DelayLine {
    queue: std::collections::BinaryHeap<crate::sim::InFlight>,
    next_seq: u64,
}

impl DelayLine {
    pub fn new() -> DelayLine {
        DelayLine::default()
    }

    /// Queues the copies `verdict` delivers (none, one, or two), corrupted as decided.
    pub fn push(&mut self, verdict: &Verdict, packet: &[u8]) {
        crate::sim::enqueue(
            verdict,
            packet,
            &mut self.queue,
            &mut self.next_seq,
            Vec::new,
        );
    }

    /// The next packet due at `now`, in delivery order.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.peek()?.at <= now {
            self.queue.pop().map(|p| p.data)
        } else {
            None
        }
    }

    /// When the next packet is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.at)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(cfg: Impairments) -> Engine {
        Engine::new(cfg, 7).unwrap()
    }

    #[test]
    fn perfect_wire_delivers_everything_after_the_delay() {
        let mut e = engine(Impairments {
            delay: Duration::from_millis(5),
            ..Impairments::none()
        });
        for i in 0..100 {
            let now = Instant::from_millis(i);
            let v = e.decide(now, 1500, 0);
            assert_eq!(v.deliveries, [Some(now + Duration::from_millis(5)), None]);
            assert!(!v.info.is_impaired());
        }
    }

    #[test]
    fn random_loss_is_near_its_probability() {
        let mut e = engine(Impairments {
            loss: 0.2,
            ..Impairments::none()
        });
        let lost = (0..10_000)
            .filter(|_| e.decide(Instant::ZERO, 100, 0).info.dropped == Some(DropReason::Loss))
            .count();
        assert!(
            (1700..2300).contains(&lost),
            "lost {lost} of 10000 at p=0.2"
        );
        assert_eq!(e.stats().lost, lost as u64);
    }

    #[test]
    fn gilbert_elliott_losses_come_in_bursts() {
        let mut e = engine(Impairments {
            burst: Some(GilbertElliott::bursts(0.01, 0.2)),
            ..Impairments::none()
        });
        let fates: Vec<bool> = (0..20_000)
            .map(|_| e.decide(Instant::ZERO, 100, 0).info.dropped.is_some())
            .collect();
        let losses = fates.iter().filter(|&&l| l).count();
        let bursts = fates.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_burst = losses as f64 / bursts as f64;
        // Mean burst length is 1 / p_bad_to_good = 5; independent loss would give ~1.
        assert!((3.5..7.0).contains(&mean_burst), "mean burst {mean_burst}");
    }

    #[test]
    fn outage_drops_sends_and_deliveries_inside_it() {
        let mut e = engine(Impairments {
            delay: Duration::from_millis(100),
            outages: vec!["2s+5s".parse().unwrap()],
            ..Impairments::none()
        });
        assert!(e.decide(Instant::from_millis(1800), 10, 0).deliveries[0].is_some());
        // Sent before the outage but would arrive inside it.
        let v = e.decide(Instant::from_millis(1950), 10, 0);
        assert_eq!(v.info.dropped, Some(DropReason::Outage));
        assert_eq!(
            e.decide(Instant::from_secs(4), 10, 0).info.dropped,
            Some(DropReason::Outage)
        );
        assert!(e.decide(Instant::from_secs(7), 10, 0).deliveries[0].is_some());
        assert_eq!(e.stats().outage_dropped, 2);
    }

    #[test]
    fn rate_limit_serialises_and_tail_drops() {
        // 1500 bytes at 12 Mbit/s take 1 ms; the queue holds 3000 bytes.
        let mut e = engine(Impairments {
            rate_bps: Some(12_000_000),
            queue_bytes: 3000,
            ..Impairments::none()
        });
        let t0 = Instant::ZERO;
        let arrivals: Vec<_> = (0..4).map(|_| e.decide(t0, 1500, 0)).collect();
        assert_eq!(arrivals[0].deliveries[0], Some(Instant::from_millis(1)));
        assert_eq!(arrivals[1].deliveries[0], Some(Instant::from_millis(2)));
        assert_eq!(arrivals[2].info.dropped, Some(DropReason::QueueFull));
        assert_eq!(e.stats().queue_dropped, 2);
        // Once the queue drains, packets pass again.
        assert!(e.decide(Instant::from_millis(2), 1500, 0).deliveries[0].is_some());
    }

    #[test]
    fn jitter_alone_keeps_order_and_reorder_lets_packets_overtake() {
        let mut e = engine(Impairments {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(40),
            ..Impairments::none()
        });
        let times: Vec<Instant> = (0..1000)
            .map(|i| e.decide(Instant::from_millis(i), 100, 0).deliveries[0].unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));

        let mut e = engine(Impairments {
            reorder: 0.1,
            reorder_delay: Duration::from_millis(20),
            ..Impairments::none()
        });
        let times: Vec<Instant> = (0..1000)
            .map(|i| e.decide(Instant::from_millis(i), 100, 0).deliveries[0].unwrap())
            .collect();
        let inversions = times.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 50, "only {inversions} reorderings");
    }

    #[test]
    fn duplication_and_corruption_are_reported() {
        let mut e = engine(Impairments {
            duplicate: 1.0,
            corrupt: 1.0,
            ..Impairments::none()
        });
        let v = e.decide(Instant::ZERO, 64, 0);
        assert!(v.info.duplicated);
        assert!(v.deliveries[1].is_some());
        let (offset, bit) = v.info.corrupted.unwrap();
        assert!(offset < 64 && bit < 8);
    }

    #[test]
    fn in_flight_bound_tail_drops() {
        let mut e = engine(Impairments {
            max_in_flight: 2,
            ..Impairments::none()
        });
        assert_eq!(
            e.decide(Instant::ZERO, 10, 2).info.dropped,
            Some(DropReason::QueueFull)
        );
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let bad = Impairments {
            loss: 1.5,
            ..Impairments::none()
        };
        assert_eq!(
            Engine::new(bad, 1).unwrap_err(),
            ImpairError::BadProbability {
                name: "loss",
                value: 1.5
            }
        );
        assert!("2s".parse::<Outage>().is_err());
        assert!("2s+soon".parse::<Outage>().is_err());
        assert_eq!(
            "500ms+1.5s".parse::<Outage>().unwrap(),
            Outage::new(Duration::from_millis(500), Duration::from_millis(1500))
        );
    }
}

#[cfg(test)]
mod delay_line_tests {
    use super::*;

    #[test]
    fn packets_come_out_when_due_in_order() {
        let mut e = Engine::new(
            Impairments {
                delay: Duration::from_millis(10),
                duplicate: 1.0,
                ..Impairments::none()
            },
            1,
        )
        .unwrap();
        let mut line = DelayLine::new();
        line.push(&e.decide(Instant::ZERO, 3, 0), b"abc");
        assert_eq!(line.len(), 2);
        assert_eq!(line.pop_due(Instant::from_millis(9)), None);
        assert_eq!(line.next_at(), Some(Instant::from_millis(10)));
        assert_eq!(
            line.pop_due(Instant::from_millis(10)).as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(
            line.pop_due(Instant::from_millis(10)).as_deref(),
            Some(&b"abc"[..])
        );
        assert!(line.is_empty());
    }
}
