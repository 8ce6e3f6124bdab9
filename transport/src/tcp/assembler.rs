//! Out-of-order data waiting for a hole to fill (RFC 9293 section 3.10.7.4, "segment
//! text"): disjoint blocks of received bytes beyond RCV.NXT, kept sorted, merged as they
//! touch, and reported as SACK blocks (RFC 2018 section 4) most recent first.

use super::seq::SeqNumber;

#[derive(Debug, Clone)]
struct Block {
    start: SeqNumber,
    data: Vec<u8>,
    /// Insertion counter of the latest segment merged into this block.
    touched: u64,
}

impl Block {
    fn end(&self) -> SeqNumber {
        self.start + self.data.len()
    }
}

/// The reassembly buffer is full (too many separate blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyHoles;

/// Out-of-order segments of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Assembler {
    blocks: Vec<Block>,
    max_blocks: usize,
    counter: u64,
}

impl Assembler {
    pub(crate) fn new(max_blocks: usize) -> Assembler {
        Assembler {
            blocks: Vec::new(),
            max_blocks,
            counter: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum()
    }

    /// Number of separate blocks (one more than the holes between them).
    pub(crate) fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Stores `data` received at `seq` (beyond RCV.NXT). Bytes already held are kept;
    /// returns how many bytes were new.
    pub(crate) fn insert(&mut self, seq: SeqNumber, data: &[u8]) -> Result<usize, TooManyHoles> {
        if data.is_empty() {
            return Ok(0);
        }
        let before = self.len();
        let end = seq + data.len();
        self.counter += 1;
        // First block that ends at or after our start: the only one we may touch from
        // the left; later ones may be swallowed.
        let i = self
            .blocks
            .iter()
            .position(|b| b.end() >= seq)
            .unwrap_or(self.blocks.len());
        if i == self.blocks.len() || self.blocks[i].start > end {
            if self.blocks.len() >= self.max_blocks {
                return Err(TooManyHoles);
            }
            self.blocks.insert(
                i,
                Block {
                    start: seq,
                    data: data.to_vec(),
                    touched: self.counter,
                },
            );
            return Ok(data.len());
        }
        let block = &mut self.blocks[i];
        block.touched = self.counter;
        if seq < block.start {
            let mut merged = data[..block.start - seq].to_vec();
            merged.extend_from_slice(&block.data);
            block.data = merged;
            block.start = seq;
        }
        if end > block.end() {
            let from = block.end() - seq;
            block.data.extend_from_slice(&data[from..]);
        }
        // Swallow following blocks the grown block now reaches.
        while i + 1 < self.blocks.len() && self.blocks[i + 1].start <= self.blocks[i].end() {
            let next = self.blocks.remove(i + 1);
            let block = &mut self.blocks[i];
            if next.end() > block.end() {
                let from = block.end() - next.start;
                block.data.extend_from_slice(&next.data[from..]);
            }
        }
        Ok(self.len() - before)
    }

    /// Takes the data that has become contiguous with `rcv_nxt`, if any, discarding
    /// bytes before it.
    pub(crate) fn pop_ready(&mut self, rcv_nxt: SeqNumber) -> Option<Vec<u8>> {
        while let Some(first) = self.blocks.first() {
            if first.start > rcv_nxt {
                return None;
            }
            let block = self.blocks.remove(0);
            if block.end() > rcv_nxt {
                let skip = rcv_nxt - block.start;
                let mut data = block.data;
                data.drain(..skip);
                return Some(data);
            }
        }
        None
    }

    /// Up to four SACK blocks `(left, right)`, the most recently changed first.
    pub(crate) fn sack_blocks(&self) -> [Option<(SeqNumber, SeqNumber)>; 4] {
        let mut order: Vec<&Block> = self.blocks.iter().collect();
        order.sort_by_key(|b| std::cmp::Reverse(b.touched));
        let mut out = [None; 4];
        for (slot, block) in out.iter_mut().zip(order) {
            *slot = Some((block.start, block.end()));
        }
        out
    }

    pub(crate) fn clear(&mut self) {
        self.blocks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn holes_fill_and_merge() {
        let mut a = Assembler::new(8);
        assert_eq!(a.insert(s(110), b"klmno"), Ok(5));
        assert_eq!(a.insert(s(120), b"uvw"), Ok(3));
        assert_eq!(a.blocks(), 2);
        assert_eq!(a.pop_ready(s(100)), None);
        assert_eq!(a.insert(s(112), b"mnopqrst"), Ok(5));
        assert_eq!(a.blocks(), 1);
        assert_eq!(a.sack_blocks()[0], Some((s(110), s(123))));
        assert_eq!(a.pop_ready(s(110)).unwrap(), b"klmnopqrstuvw");
        assert!(a.is_empty());
    }

    #[test]
    fn duplicates_add_nothing_and_sack_reports_most_recent_first() {
        let mut a = Assembler::new(8);
        a.insert(s(10), b"aa").unwrap();
        a.insert(s(20), b"bb").unwrap();
        assert_eq!(a.insert(s(10), b"aa"), Ok(0));
        let sack = a.sack_blocks();
        assert_eq!(sack[0], Some((s(10), s(12))));
        assert_eq!(sack[1], Some((s(20), s(22))));
        assert_eq!(sack[2], None);
    }

    #[test]
    fn bounded_number_of_blocks() {
        let mut a = Assembler::new(2);
        a.insert(s(10), b"a").unwrap();
        a.insert(s(20), b"b").unwrap();
        assert_eq!(a.insert(s(30), b"c"), Err(TooManyHoles));
        // Merging into an existing block is still fine.
        assert_eq!(a.insert(s(11), b"x"), Ok(1));
    }

    #[test]
    fn works_across_sequence_wrap() {
        let mut a = Assembler::new(4);
        a.insert(s(u32::MAX - 1), b"ab").unwrap();
        a.insert(s(0), b"cd").unwrap();
        assert_eq!(a.blocks(), 1);
        assert_eq!(a.pop_ready(s(u32::MAX - 1)).unwrap(), b"abcd");
    }

    proptest! {
        /// Any arrival order of any overlapping pieces yields exactly the original bytes.
        #[test]
        fn any_order_any_overlap_gives_the_stream(
            base in any::<u32>(),
            pieces in proptest::collection::vec((0usize..2000, 1usize..300), 1..60),
        ) {
            let stream: Vec<u8> = (0..2300).map(|i| (i * 13 % 251) as u8).collect();
            let mut a = Assembler::new(1000);
            let mut covered = vec![false; stream.len()];
            for (off, len) in &pieces {
                let end = (off + len).min(stream.len());
                a.insert(SeqNumber(base) + *off + 1, &stream[*off..end]).unwrap();
                for c in &mut covered[*off..end] { *c = true; }
            }
            prop_assert_eq!(a.len(), covered.iter().filter(|c| **c).count());
            // Deliver from the first covered byte's run at offset 0 if present.
            let rcv = SeqNumber(base) + 1;
            if covered[0] {
                let run = covered.iter().take_while(|c| **c).count();
                let got = a.pop_ready(rcv).unwrap();
                prop_assert_eq!(&got[..], &stream[..run]);
            } else {
                prop_assert_eq!(a.pop_ready(rcv), None);
            }
        }
    }
}
