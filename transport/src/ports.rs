//! Ephemeral ports: the one allocator behind TCP's active opens and UDP's bind to port 0.

use core::ops::RangeInclusive;

use crate::net::link::seed;

/// The dynamic and private ports (RFC 6335 section 6), the default ephemeral range.
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 49152..=u16::MAX;

/// Stream of the stack seed that picks the first ephemeral port.
const SEED_STREAM: u64 = 0x5eed;

/// Hands out ports of a range in turn, wrapping around, from a start the caller chooses
/// (the range's first port, or one derived from a seed so that a simulation replays).
/// Each pick starts after the last port picked and skips ports the caller says are in
/// use. Sequential rather than the RFC 6056 randomized algorithms: ports stay
/// predictable from the seed, and a port is reused as late as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    next: u16,
}

impl PortAllocator {
    /// Starts at the first port of `range`.
    pub fn new(range: RangeInclusive<u16>) -> PortAllocator {
        PortAllocator {
            next: *range.start(),
            range,
        }
    }

    /// Starts at a port of `range` derived from `seed`.
    pub fn seeded(range: RangeInclusive<u16>, seed: u64) -> PortAllocator {
        let (lo, hi) = (*range.start(), *range.end());
        let span = (u64::from(hi) + 1).saturating_sub(u64::from(lo)).max(1);
        PortAllocator {
            next: lo.wrapping_add((seed::derive(seed, SEED_STREAM) % span) as u16),
            range,
        }
    }

    /// The next port of the range, from where the last pick stopped, that is not 0 and
    /// for which `in_use` is false; `None` once every port was tried.
    pub fn pick(&mut self, mut in_use: impl FnMut(u16) -> bool) -> Option<u16> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        if lo > hi {
            return None;
        }
        let span = u32::from(hi - lo) + 1;
        let first = u32::from(self.next.clamp(lo, hi) - lo);
        for i in 0..span {
            let port = lo + ((first + i) % span) as u16;
            if port != 0 && !in_use(port) {
                self.next = if port == hi { lo } else { port + 1 };
                return Some(port);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_in_turn_wraps_and_skips_ports_in_use() {
        let mut ports = PortAllocator::new(50000..=50003);
        assert_eq!(ports.pick(|p| p == 50001), Some(50000));
        assert_eq!(ports.pick(|p| p == 50001), Some(50002));
        assert_eq!(ports.pick(|_| false), Some(50003));
        assert_eq!(ports.pick(|_| false), Some(50000));
        assert_eq!(ports.pick(|_| true), None);
        // A failed pick leaves the turn where it was.
        assert_eq!(ports.pick(|_| false), Some(50001));
    }

    #[test]
    fn empty_and_zero_only_ranges_have_no_port() {
        assert_eq!(
            PortAllocator::new(RangeInclusive::new(5, 4)).pick(|_| false),
            None
        );
        assert_eq!(PortAllocator::new(0..=0).pick(|_| false), None);
        assert_eq!(PortAllocator::new(0..=1).pick(|_| false), Some(1));
    }

    /// The seed picks the start; the same seed always the same one.
    #[test]
    fn seeded_start_is_in_range_and_replays() {
        let first = |seed| PortAllocator::seeded(EPHEMERAL_PORTS, seed).pick(|_| false);
        for seed in 0..100 {
            assert!(first(seed).is_some_and(|p| EPHEMERAL_PORTS.contains(&p)));
            assert_eq!(first(seed), first(seed));
        }
        assert_ne!(first(1), first(2));
        let span = u64::from(u16::MAX - 49152) + 1;
        let expected = 49152 + (seed::derive(7, 0x5eed) % span) as u16;
        assert_eq!(first(7), Some(expected));
    }
}
