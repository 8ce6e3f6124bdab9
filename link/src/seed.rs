//! Deriving many independent seeds from one: each direction of a link, each pair on a
//! hub, each stack's ISN secret gets its own stream, so adding one never shifts another.

/// The `stream`-th seed derived from `seed`: the SplitMix64 finaliser (Steele, Lea and
/// Flood 2014) over `seed ^ stream * golden ratio`. Four lines, so written here rather
/// than pulled in from a crate.
pub fn derive(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        assert_eq!(derive(1, 2), derive(1, 2));
        assert_ne!(derive(1, 2), derive(1, 3));
        assert_ne!(derive(1, 2), derive(2, 2));
        let distinct: std::collections::HashSet<u64> = (0..1000).map(|i| derive(7, i)).collect();
        assert_eq!(distinct.len(), 1000);
    }
}
