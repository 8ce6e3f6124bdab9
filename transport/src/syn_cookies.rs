//! SYN cookies (RFC 4987 section 3.6), as Linux lays them out: when a listener's SYN
//! queue is full, the SYN-ACK's sequence number carries what the connection needs and
//! the listener keeps nothing; the handshake's ACK brings it back.
//!
//! The cookie is `F1 + ISN_peer + (count << 24) + ((F2(count) + mss_index) mod 2^24)`,
//! with `F1`, `F2` the stack's keyed hash of the 4-tuple (the one behind its ISNs, RFC
//! 6528) and `count` a minute counter. When the peer sent timestamps, the low six bits of
//! our TSval carry its window scale (four bits, 15 for none) and SACK-permitted (one bit),
//! and come back in the TSecr. Without timestamps the connection has neither window
//! scaling nor SACK, as on Linux.

use crate::net::link::{Duration, Instant};
use crate::tcp::seq::SeqNumber;

/// The MSS values a cookie can carry (Linux's IPv4 table); the peer's MSS is rounded down
/// to one of them.
pub(crate) const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// One tick of the cookie counter (Linux: 60 s).
const PERIOD: Duration = Duration::from_secs(60);
/// Ticks a cookie stays valid for (Linux `MAX_SYNCOOKIE_AGE`).
const MAX_AGE: u32 = 2;
/// The ACK of a cookie is looked for only this long after the listener last sent one
/// (Linux checks for a recent overflow the same way), so that a stray ACK outside a
/// flood gets its RST without a guess at a cookie.
pub(crate) const VALID_FOR: Duration = Duration::from_secs(60 * (MAX_AGE as u64 + 1));
/// Bits of TSval that carry the options.
const TS_OPTION_BITS: u32 = 6;
const TS_WSCALE_MASK: u32 = 0xf;
const TS_SACK_BIT: u32 = 1 << 4;
const COUNT_SHIFT: u32 = 24;
const LOW_MASK: u32 = (1 << COUNT_SHIFT) - 1;

/// The keyed hash of one 4-tuple: `hash(count, salt)`.
pub(crate) trait CookieHash {
    fn hash(&self, count: u32, salt: u8) -> u32;
}

impl<F: Fn(u32, u8) -> u32> CookieHash for F {
    fn hash(&self, count: u32, salt: u8) -> u32 {
        self(count, salt)
    }
}

/// The cookie counter at `now`.
pub(crate) fn counter(now: Instant) -> u32 {
    (now.total_millis() / PERIOD.as_millis() as u64) as u32
}

/// Index into [`MSS_TABLE`] of the largest value not above the peer's MSS (536 when it
/// announced none, RFC 9293 section 3.7.1).
fn mss_index(peer_mss: Option<u16>) -> u32 {
    let mss = peer_mss.unwrap_or(MSS_TABLE[0]);
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// Our ISN for a SYN from `peer_isn` announcing `peer_mss`.
pub(crate) fn encode(
    key: &impl CookieHash,
    peer_isn: SeqNumber,
    count: u32,
    peer_mss: Option<u16>,
) -> SeqNumber {
    // The cookie keeps the counter's low eight bits; the hash sees the same.
    let count = count & (u32::MAX >> COUNT_SHIFT);
    let low = key.hash(count, 1).wrapping_add(mss_index(peer_mss)) & LOW_MASK;
    let value = (count << COUNT_SHIFT).wrapping_add(low);
    // The cookie is a number, not a position in the stream: plain modular arithmetic.
    SeqNumber(peer_isn.0.wrapping_add(key.hash(0, 0)).wrapping_add(value))
}

/// The MSS a cookie carries, if `cookie` is one we made for `peer_isn` within
/// [`MAX_AGE`] ticks of `count`.
pub(crate) fn decode(
    key: &impl CookieHash,
    peer_isn: SeqNumber,
    cookie: SeqNumber,
    count: u32,
) -> Option<u16> {
    let value = cookie
        .0
        .wrapping_sub(peer_isn.0)
        .wrapping_sub(key.hash(0, 0));
    let made = value >> COUNT_SHIFT;
    if (count.wrapping_sub(made) & (u32::MAX >> COUNT_SHIFT)) > MAX_AGE {
        return None;
    }
    let index = value.wrapping_sub(key.hash(made, 1)) & LOW_MASK;
    MSS_TABLE.get(index as usize).copied()
}

/// Our TSval at `ts_now` carrying the peer's window scale and SACK-permitted, never
/// above `ts_now` (RFC 7323 section 5.4: our clock must not run backwards later).
pub(crate) fn encode_ts(ts_now: u32, window_scale: Option<u8>, sack: bool) -> u32 {
    let scale = window_scale.map_or(TS_WSCALE_MASK, |s| u32::from(s).min(14));
    let options = scale | if sack { TS_SACK_BIT } else { 0 };
    let low = (1 << TS_OPTION_BITS) - 1;
    let ts = (ts_now & !low) | options;
    if options > ts_now & low {
        ts.wrapping_sub(1 << TS_OPTION_BITS)
    } else {
        ts
    }
}

/// The peer's window scale and SACK-permitted from the TSecr echoing [`encode_ts`].
pub(crate) fn decode_ts(tsecr: u32) -> (Option<u8>, bool) {
    let scale = tsecr & TS_WSCALE_MASK;
    let window_scale = (scale != TS_WSCALE_MASK).then_some(scale as u8);
    (window_scale, tsecr & TS_SACK_BIT != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(secret: u32) -> impl Fn(u32, u8) -> u32 {
        move |count: u32, salt: u8| {
            (secret ^ count.wrapping_mul(0x9e37_79b9) ^ u32::from(salt).wrapping_mul(0x85eb_ca6b))
                .rotate_left(13)
                .wrapping_mul(0xc2b2_ae35)
        }
    }

    proptest! {
        /// A cookie decodes to the table MSS at or below the peer's, for up to two ticks.
        #[test]
        fn cookie_round_trips_within_its_age(
            secret in any::<u32>(),
            isn in any::<u32>(),
            count in any::<u32>(),
            mss in proptest::option::of(any::<u16>()),
            age in 0u32..=MAX_AGE,
        ) {
            let k = key(secret);
            let cookie = encode(&k, SeqNumber(isn), count, mss);
            let got = decode(&k, SeqNumber(isn), cookie, count.wrapping_add(age));
            let want = MSS_TABLE[mss_index(mss) as usize];
            prop_assert_eq!(got, Some(want));
            prop_assert!(want <= mss.unwrap_or(536).max(536));
        }

        /// The window scale and SACK bits come back from the echoed TSval, which is never
        /// ahead of the clock and at most 127 ms behind.
        #[test]
        fn timestamp_carries_the_options(
            ts_now in any::<u32>(),
            ws in proptest::option::of(0u8..=14),
            sack in any::<bool>(),
        ) {
            let ts = encode_ts(ts_now, ws, sack);
            prop_assert!(ts_now.wrapping_sub(ts) < 128);
            prop_assert_eq!(decode_ts(ts), (ws, sack));
        }
    }

    /// Too old a cookie, another 4-tuple's (another key), or one for an ISN far from the
    /// peer's is refused (as in Linux's layout, an ISN a few apart shifts the MSS index).
    #[test]
    fn stale_or_foreign_cookies_are_refused() {
        let (k, other) = (key(1), key(2));
        let isn = SeqNumber(5000);
        let cookie = encode(&k, isn, 100, Some(1460));
        assert_eq!(decode(&k, isn, cookie, 102), Some(1460));
        assert_eq!(decode(&k, isn, cookie, 103), None);
        assert_eq!(decode(&k, isn, cookie, 99), None);
        assert_eq!(decode(&other, isn, cookie, 100), None);
        assert_eq!(decode(&k, isn + 1000, cookie, 100), None);
    }
}
