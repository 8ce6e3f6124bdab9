//! The Internet checksum (RFC 1071) summed for speed on the receive path.
//!
//! etherparse's `Sum16BitWords::add_slice` adds one 8-byte word at a time with an
//! end-around carry after each, one long dependency chain; it showed as 6.8% of the
//! runtime thread in a profile of a 6 Gbit/s receive (one full segment verified per
//! packet). Here 32-bit words are added into 64-bit accumulators, which cannot overflow
//! for any slice shorter than 16 GiB, so there is no carry to propagate inside the loop
//! and the compiler vectorises it; the carries are folded once at the end (RFC 1071
//! section 2 (C), "deferred carries", and section 2 (B), byte-order independence: the
//! words are summed in native order and the folded sum is stored the same way).

/// A running one's-complement sum in native byte order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sum(u64);

impl Sum {
    /// An empty sum.
    pub const fn new() -> Sum {
        Sum(0)
    }

    /// Adds `bytes`, padded with a zero byte if its length is odd (RFC 1071 section
    /// 4.1). Only the last slice added may have an odd length.
    #[inline]
    pub fn add_slice(self, bytes: &[u8]) -> Sum {
        let mut chunks = bytes.chunks_exact(4);
        let words: u64 = (&mut chunks)
            .map(|c| u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .sum();
        let mut tail = 0u64;
        let rest = chunks.remainder();
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            tail += u64::from(u16::from_ne_bytes([p[0], p[1]]));
        }
        if let [last] = pairs.remainder() {
            tail += u64::from(u16::from_ne_bytes([*last, 0]));
        }
        // Two additions of at most 2^62 each: no overflow of the u64 before folding.
        Sum(fold32(self.0) + fold32(words) + tail)
    }

    /// The 16-bit one's-complement sum, folded (not yet complemented).
    pub fn folded(self) -> u16 {
        let mut s = fold32(self.0);
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// True when the sum over a packet including its checksum field is all ones, the
    /// receiver's check of RFC 1071 section 1 (either encoding of zero is accepted).
    pub fn verifies(self) -> bool {
        self.folded() == 0xffff
    }
}

/// Folds a 64-bit sum of 16-bit words into at most 33 bits, keeping its value mod 0xffff.
#[inline]
fn fold32(s: u64) -> u64 {
    let s = (s & 0xffff_ffff) + (s >> 32);
    (s & 0xffff_ffff) + (s >> 32)
}

#[cfg(test)]
mod tests {
    use etherparse::checksum::Sum16BitWords;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to dd f2 (big-endian).
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let s = Sum::new().add_slice(&bytes).folded();
        assert_eq!(s.to_ne_bytes(), [0xdd, 0xf2]);
    }

    #[test]
    fn a_packet_with_its_checksum_verifies_and_a_flipped_bit_does_not() {
        let mut packet: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
        packet[10] = 0;
        packet[11] = 0;
        let sum = !Sum::new().add_slice(&packet).folded();
        packet[10..12].copy_from_slice(&sum.to_ne_bytes());
        assert!(Sum::new().add_slice(&packet).verifies());
        packet[700] ^= 0x10;
        assert!(!Sum::new().add_slice(&packet).verifies());
    }

    proptest! {
        #[test]
        fn agrees_with_etherparse(
            head in proptest::collection::vec(any::<u8>(), 0..64usize).prop_map(|mut v| { v.truncate(v.len() & !1); v }),
            body in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let ours = Sum::new().add_slice(&head).add_slice(&body).folded();
            let theirs = Sum16BitWords::new().add_slice(&head).add_slice(&body).ones_complement();
            // etherparse's complement is in native order too.
            prop_assert_eq!(!ours, theirs);
        }
    }
}
