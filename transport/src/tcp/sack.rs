//! The sender's SACK scoreboard (RFC 6675 section 3): which bytes above SND.UNA the
//! receiver holds, from the SACK blocks of its ACKs (RFC 2018), so loss recovery resends
//! only the holes.

use super::seq::SeqNumber;

/// SACKed ranges above SND.UNA, sorted and disjoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scoreboard {
    blocks: Vec<(SeqNumber, SeqNumber)>,
    max_blocks: usize,
}

impl Scoreboard {
    pub(crate) fn new(max_blocks: usize) -> Scoreboard {
        Scoreboard {
            blocks: Vec::new(),
            max_blocks,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.blocks.clear();
    }

    /// Gives back the memory of an empty scoreboard (an idle connection's reclaim).
    pub(crate) fn release_if_empty(&mut self) {
        if self.blocks.is_empty() {
            self.blocks = Vec::new();
        }
    }

    /// Folds in the blocks of one ACK; parts outside `(una, max]` are ignored (they are
    /// D-SACKs or bogus). Returns the bytes newly marked.
    pub(crate) fn update(
        &mut self,
        una: SeqNumber,
        max: SeqNumber,
        sack: &[Option<(SeqNumber, SeqNumber)>],
    ) -> usize {
        let before = self.sacked_bytes();
        for &(left, right) in sack.iter().flatten() {
            let left = left.max(una);
            let right = right.min(max);
            if right > left {
                self.insert(left, right);
            }
        }
        self.sacked_bytes().saturating_sub(before)
    }

    fn insert(&mut self, left: SeqNumber, right: SeqNumber) {
        let (mut l, mut r) = (left, right);
        let mut out = Vec::with_capacity(self.blocks.len() + 1);
        let mut placed = false;
        for &(bl, br) in &self.blocks {
            if br < l {
                out.push((bl, br));
            } else if bl > r {
                if !placed {
                    out.push((l, r));
                    placed = true;
                }
                out.push((bl, br));
            } else {
                l = l.min(bl);
                r = r.max(br);
            }
        }
        if !placed {
            out.push((l, r));
        }
        // Keep the highest blocks if too many: they matter most for loss detection.
        if out.len() > self.max_blocks {
            let excess = out.len() - self.max_blocks;
            out.drain(..excess);
        }
        self.blocks = out;
    }

    /// Forgets everything at or below the new SND.UNA.
    pub(crate) fn prune(&mut self, una: SeqNumber) {
        self.blocks.retain(|&(_, r)| r > una);
        if let Some(first) = self.blocks.first_mut() {
            first.0 = first.0.max(una);
        }
    }

    pub(crate) fn sacked_bytes(&self) -> usize {
        self.blocks.iter().map(|&(l, r)| r - l).sum()
    }

    /// The right edge of the highest SACKed block.
    #[cfg(test)]
    pub(crate) fn highest(&self) -> Option<SeqNumber> {
        self.blocks.last().map(|&(_, r)| r)
    }

    /// The first unSACKed range at or after `from` and below the highest SACKed byte:
    /// `(start, len)` (RFC 6675 NextSeg, rule 1).
    pub(crate) fn next_hole(&self, from: SeqNumber) -> Option<(SeqNumber, usize)> {
        let mut cursor = from;
        for &(l, r) in &self.blocks {
            if cursor < l {
                return Some((cursor, l - cursor));
            }
            cursor = cursor.max(r);
        }
        None
    }

    /// If `seq` lies in a SACKed block, the block's right edge.
    pub(crate) fn sacked_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.blocks
            .iter()
            .find(|&&(l, r)| l <= seq && seq < r)
            .map(|&(_, r)| r)
    }

    /// SACKed bytes below `seq` (all blocks start above SND.UNA).
    pub(crate) fn sacked_below(&self, seq: SeqNumber) -> usize {
        self.blocks
            .iter()
            .filter(|&&(l, _)| l < seq)
            .map(|&(l, r)| r.min(seq) - l)
            .sum()
    }

    /// The left edge of the first SACKed block starting after `seq`.
    pub(crate) fn next_sacked(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.blocks.iter().map(|&(l, _)| l).find(|&l| l > seq)
    }

    /// UnSACKed bytes between `from` and the highest SACKed byte: presumed lost.
    pub(crate) fn hole_bytes(&self, from: SeqNumber) -> usize {
        let mut cursor = from;
        let mut total = 0;
        for &(l, r) in &self.blocks {
            if cursor < l {
                total += l - cursor;
            }
            cursor = cursor.max(r);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn blocks_merge_and_holes_are_found() {
        let mut sb = Scoreboard::new(8);
        assert_eq!(
            sb.update(
                s(100),
                s(1000),
                &[Some((s(300), s(400))), Some((s(500), s(600)))]
            ),
            200
        );
        assert_eq!(sb.next_hole(s(100)), Some((s(100), 200)));
        assert_eq!(sb.next_hole(s(300)), Some((s(400), 100)));
        assert_eq!(sb.next_hole(s(550)), None);
        assert_eq!(sb.hole_bytes(s(100)), 300);
        assert_eq!(sb.update(s(100), s(1000), &[Some((s(350), s(550)))]), 100);
        assert_eq!(sb.sacked_bytes(), 300);
        assert_eq!(sb.highest(), Some(s(600)));
        sb.prune(s(320));
        assert_eq!(sb.sacked_bytes(), 280);
        assert_eq!(sb.next_hole(s(320)), None);
    }

    #[test]
    fn blocks_outside_the_outstanding_range_are_ignored() {
        let mut sb = Scoreboard::new(8);
        assert_eq!(
            sb.update(
                s(100),
                s(200),
                &[Some((s(50), s(90))), Some((s(300), s(400)))]
            ),
            0
        );
        assert_eq!(sb.update(s(100), s(200), &[Some((s(150), s(300)))]), 50);
        assert!(sb.update(s(100), s(200), &[Some((s(180), s(170)))]) == 0);
    }

    #[test]
    fn sacked_ranges_are_found_for_skipping() {
        let mut sb = Scoreboard::new(8);
        sb.update(
            s(100),
            s(1000),
            &[Some((s(300), s(400))), Some((s(500), s(600)))],
        );
        assert_eq!(sb.sacked_end(s(300)), Some(s(400)));
        assert_eq!(sb.sacked_end(s(399)), Some(s(400)));
        assert_eq!(sb.sacked_end(s(400)), None);
        assert_eq!(sb.next_sacked(s(100)), Some(s(300)));
        assert_eq!(sb.next_sacked(s(300)), Some(s(500)));
        assert_eq!(sb.next_sacked(s(600)), None);
        assert_eq!(sb.sacked_below(s(350)), 50);
        assert_eq!(sb.sacked_below(s(1000)), 200);
        assert_eq!(sb.sacked_below(s(200)), 0);
    }

    #[test]
    fn the_number_of_blocks_is_bounded() {
        let mut sb = Scoreboard::new(2);
        for i in 0..5u32 {
            sb.update(s(0), s(10_000), &[Some((s(i * 100 + 10), s(i * 100 + 20)))]);
        }
        assert_eq!(sb.sacked_bytes(), 20);
        assert_eq!(sb.highest(), Some(s(420)));
    }
}
