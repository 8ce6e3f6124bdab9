//! TCP sequence numbers: 32-bit values in a circular space where every arithmetic and
//! comparison is modulo 2^32 (RFC 9293 section 3.4).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// Largest offset that can be added to or subtracted from a [`SeqNumber`]: comparisons
/// only order numbers less than 2^31 apart (RFC 9293 section 3.4).
const MAX_OFFSET: usize = i32::MAX as usize;

/// `n` as a 32-bit offset; `n > i32::MAX` is a logic error (the result could not be
/// ordered against the number it moves) and asserts in debug builds.
fn offset(n: usize) -> u32 {
    debug_assert!(n <= MAX_OFFSET, "sequence offset {n} exceeds 2^31 - 1");
    n as u32
}

/// A sequence number (RFC 9293 section 3.4). Never compare the inner `u32`s directly: use
/// the modular ordering of this type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The later of two numbers in modular order.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }

    /// The earlier of two numbers in modular order.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        if self < other {
            self
        } else {
            other
        }
    }

    /// Whether `start <= self < start + len` modulo 2^32, the window test of RFC 9293
    /// section 3.4. Computed as the offset of `self` from `start`, so it holds for any
    /// `len` (up to the whole space) and is always false for `len == 0`; the special
    /// zero-window cases of the acceptability test belong to the caller.
    pub fn in_window(self, start: SeqNumber, len: usize) -> bool {
        (self.0.wrapping_sub(start.0) as usize) < len
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;

    /// Advances by `n` octets, wrapping at 2^32 (see [`offset`] for the limit on `n`).
    fn add(self, n: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(offset(n)))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;

    /// Steps back by `n` octets, wrapping at 2^32 (see [`offset`] for the limit on `n`).
    fn sub(self, n: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(offset(n)))
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;

    /// The number of octets from `other` up to `self`. Saturates to 0 when `self` is
    /// before `other` in modular order, so `snd_nxt - snd_una` style distances never go
    /// negative; callers that care about the order must compare first.
    fn sub(self, other: SeqNumber) -> usize {
        let diff = self.0.wrapping_sub(other.0) as i32;
        if diff < 0 {
            0
        } else {
            diff as usize
        }
    }
}

impl PartialOrd for SeqNumber {
    /// Orders by the sign of the 32-bit difference (RFC 9293 section 3.4, as smoltcp's
    /// `TcpSeqNumber`): `a < b` iff `(b - a) mod 2^32` is in `1..2^31`. Always `Some`.
    ///
    /// This is not a total order and deliberately not `Ord`: it is not transitive over
    /// spans wider than 2^31 (`0 < 2^30 < 2^31 < 3 * 2^30 < 0`), and numbers exactly 2^31
    /// apart are each "less" than the other. Only compare numbers known to lie within one
    /// window of each other.
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some((self.0.wrapping_sub(other.0) as i32).cmp(&0))
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOP: SeqNumber = SeqNumber(u32::MAX - 9);

    #[test]
    fn add_and_sub_wrap_at_2_pow_32() {
        assert_eq!(TOP + 10, SeqNumber(0));
        assert_eq!(TOP + 15, SeqNumber(5));
        assert_eq!(SeqNumber(5) - 15, TOP);
        let mut snd_nxt = TOP;
        snd_nxt += 1460;
        assert_eq!(snd_nxt, SeqNumber(1450));
    }

    #[test]
    fn distance_across_the_wrap() {
        assert_eq!(SeqNumber(5) - TOP, 15);
        assert_eq!(SeqNumber(1000) - SeqNumber(1000), 0);
        assert_eq!(SeqNumber(1000) - SeqNumber(400), 600);
    }

    #[test]
    fn distance_saturates_when_behind() {
        assert_eq!(SeqNumber(400) - SeqNumber(1000), 0);
        assert_eq!(TOP - SeqNumber(5), 0);
    }

    #[test]
    fn ordering_is_modular() {
        assert!(TOP < SeqNumber(0));
        assert!(SeqNumber(0) > TOP);
        assert!(SeqNumber(0x7fff_ffff) > SeqNumber(0));
        assert!(SeqNumber(0x8000_0001) < SeqNumber(0));
        assert!(SeqNumber(7) <= SeqNumber(7) && SeqNumber(7) >= SeqNumber(7));
        assert_eq!(
            SeqNumber(7).partial_cmp(&SeqNumber(7)),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn ordering_is_not_transitive_over_half_the_space() {
        let q = 1u32 << 30;
        let (a, b, c, d) = (
            SeqNumber(0),
            SeqNumber(q),
            SeqNumber(2 * q),
            SeqNumber(3 * q),
        );
        assert!(a < b && b < c && c < d && d < a);
        // Exactly 2^31 apart: each is before the other.
        assert!(a < c && c < a);
    }

    #[test]
    fn max_and_min_follow_modular_order() {
        assert_eq!(TOP.max(SeqNumber(3)), SeqNumber(3));
        assert_eq!(SeqNumber(3).max(TOP), SeqNumber(3));
        assert_eq!(TOP.min(SeqNumber(3)), TOP);
        assert_eq!(SeqNumber(3).min(TOP), TOP);
    }

    #[test]
    fn window_straddling_the_wrap() {
        // rcv_nxt = 2^32 - 10, rcv_wnd = 20: accepts 2^32 - 10 ..= 9.
        assert!(TOP.in_window(TOP, 20));
        assert!(SeqNumber(0).in_window(TOP, 20));
        assert!(SeqNumber(9).in_window(TOP, 20));
        assert!(!SeqNumber(10).in_window(TOP, 20));
        assert!(!(TOP - 1).in_window(TOP, 20));
        assert!(!TOP.in_window(TOP, 0));
    }

    #[test]
    fn prints_the_number() {
        assert_eq!(format!("{}", SeqNumber(42)), "42");
        assert_eq!(format!("{:?}", SeqNumber(u32::MAX)), "4294967295");
    }

    proptest! {
        #[test]
        fn add_then_distance_is_identity(a in any::<u32>(), n in 0usize..=MAX_OFFSET) {
            let a = SeqNumber(a);
            prop_assert_eq!((a + n) - a, n);
            prop_assert_eq!((a + n) - n, a);
            prop_assert!(a + n >= a);
            prop_assert_eq!(a - (a + n), 0);
        }

        #[test]
        fn window_matches_ordering(
            start in any::<u32>(),
            off in 0usize..=MAX_OFFSET,
            len in 0usize..=MAX_OFFSET,
        ) {
            let start = SeqNumber(start);
            let s = start + off;
            prop_assert_eq!(s.in_window(start, len), start <= s && s < start + len);
        }
    }
}
