//! Out-of-order data waiting for a hole to fill (RFC 9293 section 3.10.7.4, "segment
//! text"): disjoint blocks of received bytes beyond RCV.NXT, kept sorted, merged as they
//! touch, and reported as SACK blocks (RFC 2018 section 4) most recent first. The work is
//! linear in the bytes stored: a block grows at either end without moving its bytes, and
//! merging two blocks copies the smaller one.

use std::collections::VecDeque;

use super::seq::SeqNumber;

#[derive(Debug, Clone)]
struct Block {
    start: SeqNumber,
    /// A deque, so that bytes arriving just below the block go in front of it without
    /// moving the block's bytes (linear reassembly of data arriving back to front).
    data: VecDeque<u8>,
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
pub struct TooManyHoles;

/// Out-of-order segments of one connection.
#[derive(Debug, Clone, Default)]
pub struct Assembler {
    blocks: Vec<Block>,
    max_blocks: usize,
    counter: u64,
    /// Bytes held that were copied again inside the buffer (prepends and merges).
    copied: u64,
}

impl Assembler {
    pub fn new(max_blocks: usize) -> Assembler {
        Assembler {
            blocks: Vec::new(),
            max_blocks,
            counter: 0,
            copied: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum()
    }

    /// Bytes already held that were copied again to make room for others (prepends and
    /// merges): what reassembly costs beyond storing each byte once.
    pub fn bytes_copied(&self) -> u64 {
        self.copied
    }

    /// Bytes of memory held, used or not.
    pub fn capacity(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.blocks.iter().map(|b| b.data.capacity()).sum::<usize>()
    }

    /// Number of separate blocks (one more than the holes between them).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Stores `data` received at `seq` (beyond RCV.NXT). Bytes already held are kept;
    /// returns how many bytes were new.
    pub fn insert(&mut self, seq: SeqNumber, data: &[u8]) -> Result<usize, TooManyHoles> {
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
                    data: data.iter().copied().collect(),
                    touched: self.counter,
                },
            );
            return Ok(data.len());
        }
        let block = &mut self.blocks[i];
        block.touched = self.counter;
        if seq < block.start {
            // In front of the block's bytes, which stay where they are.
            let prefix = &data[..block.start - seq];
            block.data.reserve(prefix.len());
            for &byte in prefix.iter().rev() {
                block.data.push_front(byte);
            }
            block.start = seq;
        }
        if end > block.end() {
            let from = block.end() - seq;
            block.data.extend(&data[from..]);
        }
        // Swallow following blocks the grown block now reaches, copying the smaller side
        // of each merge only.
        while i + 1 < self.blocks.len() && self.blocks[i + 1].start <= self.blocks[i].end() {
            let mut next = self.blocks.remove(i + 1);
            let block = &mut self.blocks[i];
            if next.end() <= block.end() {
                continue;
            }
            let overlap = block.end() - next.start;
            if block.data.len() <= next.data.len() - overlap {
                next.data.drain(..overlap);
                next.data.reserve(block.data.len());
                for &byte in block.data.iter().rev() {
                    next.data.push_front(byte);
                }
                self.copied += block.data.len() as u64;
                block.data = next.data;
            } else {
                self.copied += (next.data.len() - overlap) as u64;
                block.data.extend(next.data.range(overlap..));
            }
        }
        Ok(self.len() - before)
    }

    /// Takes the data that has become contiguous with `rcv_nxt`, if any, discarding
    /// bytes before it.
    pub fn pop_ready(&mut self, rcv_nxt: SeqNumber) -> Option<Vec<u8>> {
        while let Some(first) = self.blocks.first() {
            if first.start > rcv_nxt {
                return None;
            }
            let mut block = self.blocks.remove(0);
            if block.end() > rcv_nxt {
                let skip = rcv_nxt - block.start;
                block.data.drain(..skip);
                return Some(block.data.into());
            }
        }
        None
    }

    /// Up to four SACK blocks `(left, right)`, the most recently changed first.
    pub fn sack_blocks(&self) -> [Option<(SeqNumber, SeqNumber)>; 4] {
        let mut order: Vec<&Block> = self.blocks.iter().collect();
        order.sort_by_key(|b| std::cmp::Reverse(b.touched));
        let mut out = [None; 4];
        for (slot, block) in out.iter_mut().zip(order) {
            *slot = Some((block.start, block.end()));
        }
        out
    }

    pub fn clear(&mut self) {
        self.blocks.clear();
    }

    /// Empties the buffer and frees its memory.
    pub fn release(&mut self) {
        self.blocks = Vec::new();
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

    /// Issue 8 item 14: 1-byte pieces in descending order each prepend to the block above
    /// them; reassembly must not copy the block each time (N^2/2 bytes), only store each
    /// byte once.
    #[test]
    fn reassembly_of_descending_pieces_is_linear() {
        const N: u32 = 20_000;
        let mut a = Assembler::new(64);
        for off in (1..=N).rev() {
            a.insert(s(off), &[off as u8]).unwrap();
        }
        assert_eq!(a.blocks(), 1);
        assert!(
            a.bytes_copied() <= u64::from(N),
            "copied {} bytes for {N} one-byte pieces",
            a.bytes_copied()
        );
        let got = a.pop_ready(s(1)).unwrap();
        assert!(got.iter().zip(1..=N).all(|(b, off)| *b == off as u8));
    }

    /// Issue 8 item 14: a small block merged with a large one above it (a hole filled
    /// just below a long run) must not copy the large one.
    #[test]
    fn filling_a_hole_below_a_long_block_is_linear() {
        const N: u32 = 10_000;
        let mut a = Assembler::new(64);
        a.insert(s(2 * N + 1), b"z").unwrap();
        for k in (0..N).rev() {
            a.insert(s(2 * k + 1), b"a").unwrap();
            a.insert(s(2 * k + 2), b"b").unwrap();
        }
        assert_eq!(a.blocks(), 1);
        assert_eq!(a.len(), 2 * N as usize + 1);
        assert!(
            a.bytes_copied() <= 4 * u64::from(N),
            "copied {} bytes for {} bytes held",
            a.bytes_copied(),
            a.len()
        );
    }

    proptest! {
        /// Any insertion order of the pieces of a stream yields the same bytes, with the
        /// same bytes held and the same block count as inserting in order.
        #[test]
        fn any_insertion_order_gives_the_same_bytes(
            base in any::<u32>(),
            (pieces, order) in proptest::collection::vec(1usize..40, 1..80)
                .prop_flat_map(|lens| {
                    let n = lens.len();
                    (Just(lens), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
                }),
        ) {
            let mut bounds = vec![0usize];
            for len in &pieces {
                bounds.push(bounds.last().unwrap() + len);
            }
            let stream: Vec<u8> = (0..*bounds.last().unwrap()).map(|i| (i * 7 % 253) as u8).collect();
            let rcv = SeqNumber(base);
            let mut a = Assembler::new(1000);
            // Piece 0 is the hole at RCV.NXT: it arrives last, in order.
            for &i in order.iter().filter(|&&i| i != 0) {
                a.insert(rcv + bounds[i], &stream[bounds[i]..bounds[i + 1]]).unwrap();
            }
            prop_assert_eq!(a.len(), stream.len() - bounds[1]);
            if pieces.len() > 1 {
                prop_assert_eq!(a.blocks(), 1);
                let got = a.pop_ready(rcv + bounds[1]).unwrap();
                prop_assert_eq!(&got[..], &stream[bounds[1]..]);
            }
            prop_assert!(a.is_empty());
        }
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
