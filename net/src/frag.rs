//! Fragmentation on send (RFC 791 section 3.2, "Fragmentation and Reassembly") and
//! reassembly on receive with bounded memory and a timeout.
//!
//! Each datagram's hole bookkeeping (RFC 815's idea: track the filled ranges, the datagram
//! is whole when one range covers 0..end) is etherparse's `IpDefragBuf`. Its pool has no
//! defence against memory exhaustion, so the pool here is our own: a cap per source, a
//! cap overall, and a timeout counted from the first fragment. Pending datagrams are also
//! kept in deadline order, so timeouts and evictions take the oldest without a scan.
//!
//! Overlaps (RFC 5722 section 4, which Linux applies to IPv4 since 4.19): a fragment that
//! overlaps data already held with different bytes discards the whole datagram, so that
//! no later fragment can rewrite bytes (a transport header) an earlier one set. An
//! overlap with the same bytes (a duplicate) is accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};
use ustack_link::{Duration, Instant};

use crate::ipv4::{MAX_DATAGRAM_LEN, MIN_HEADER_LEN};
use crate::stats::RxDrop;

/// `(offset, len, more_fragments)` of each fragment needed to send `payload_len` bytes
/// behind a `header_len`-byte header over a link of `mtu` bytes. Every fragment but the
/// last carries a multiple of 8 bytes. Returns `None` if the MTU cannot carry even 8
/// payload bytes. An iterator, not a `Vec`: every packet sent goes through here, and
/// nearly all are one piece.
pub fn plan(
    payload_len: usize,
    header_len: usize,
    mtu: usize,
) -> Option<impl ExactSizeIterator<Item = (usize, usize, bool)>> {
    let fits = header_len + payload_len <= mtu;
    let per_fragment = if fits {
        payload_len
    } else {
        mtu.checked_sub(header_len)? / 8 * 8
    };
    if !fits && per_fragment == 0 {
        return None;
    }
    let count = if fits {
        1
    } else {
        payload_len.div_ceil(per_fragment)
    };
    Some((0..count).map(move |i| {
        let offset = i * per_fragment;
        let len = per_fragment.min(payload_len - offset);
        (offset, len, i + 1 < count)
    }))
}

/// Limits of the reassembly buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// A datagram not complete this long after its first fragment is discarded.
    pub timeout: Duration,
    /// Bytes one source address may hold in incomplete datagrams.
    pub per_source_bytes: usize,
    /// Bytes all incomplete datagrams may hold together.
    pub total_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> ReassemblyConfig {
        ReassemblyConfig {
            timeout: Duration::from_secs(30),
            per_source_bytes: 256 * 1024,
            total_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Bookkeeping cost charged per incomplete datagram on top of its data, so that floods
/// of tiny fragments also hit the caps.
const ENTRY_OVERHEAD: usize = 128;

/// Identifies the datagram a fragment belongs to (RFC 791: source, destination,
/// protocol and identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FragmentKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ident: u16,
}

#[derive(Debug)]
struct Pending {
    buf: IpDefragBuf,
    deadline: Instant,
    cost: usize,
    /// Largest end offset seen, to refuse a final fragment that ends before data we hold.
    max_end: usize,
    /// Header and first 8 payload bytes of the offset-0 fragment, for ICMP time exceeded.
    first: Option<Vec<u8>>,
}

/// A datagram whose reassembly timed out; `first` is the header plus 8 bytes of its first
/// fragment if that arrived (RFC 792: only then is Time Exceeded code 1 sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub key: FragmentKey,
    pub first: Option<Vec<u8>>,
}

/// Incomplete datagrams, keyed by [`FragmentKey`], and the same keys in deadline order
/// (ties broken by key, so timeouts fire in a deterministic order).
#[derive(Debug, Default)]
pub struct Reassembler {
    cfg: ReassemblyConfig,
    pending: BTreeMap<FragmentKey, Pending>,
    by_deadline: BTreeSet<(Instant, FragmentKey)>,
    per_source: BTreeMap<Ipv4Addr, usize>,
    total: usize,
}

impl Reassembler {
    pub fn new(cfg: ReassemblyConfig) -> Reassembler {
        Reassembler {
            cfg,
            ..Reassembler::default()
        }
    }

    /// Incomplete datagrams held.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes charged against the overall cap.
    pub fn memory(&self) -> usize {
        self.total
    }

    /// When the next incomplete datagram times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    fn release(&mut self, key: &FragmentKey) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.by_deadline.remove(&(p.deadline, *key));
        self.total -= p.cost;
        if let Some(used) = self.per_source.get_mut(&key.src) {
            *used -= p.cost;
            if *used == 0 {
                self.per_source.remove(&key.src);
            }
        }
        Some(p)
    }

    fn charge(&mut self, key: &FragmentKey, delta: usize) {
        if let Some(p) = self.pending.get_mut(key) {
            p.cost += delta;
        }
        self.total += delta;
        *self.per_source.entry(key.src).or_default() += delta;
    }

    /// Drops every datagram whose deadline has passed.
    /// Earliest deadline first.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        let mut out = Vec::new();
        while let Some(&(deadline, key)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            match self.release(&key) {
                Some(p) => out.push(Expired {
                    key,
                    first: p.first,
                }),
                None => {
                    self.by_deadline.pop_first();
                }
            }
        }
        out
    }

    /// Whether `payload` at `offset` overlaps bytes already held for `key` with
    /// different bytes.
    fn conflicts(&self, key: &FragmentKey, offset: usize, payload: &[u8]) -> bool {
        let Some(p) = self.pending.get(key) else {
            return false;
        };
        let end = offset + payload.len();
        let data = p.buf.data();
        p.buf.sections().iter().any(|section| {
            let from = offset.max(usize::from(section.start));
            let to = end.min(usize::from(section.end));
            from < to && data[from..to] != payload[from - offset..to - offset]
        })
    }

    /// Adds one fragment: `offset` in bytes, `header` the fragment's IP header (kept from
    /// the first fragment for ICMP). Returns the whole payload once complete.
    pub fn add(
        &mut self,
        now: Instant,
        key: FragmentKey,
        offset: usize,
        more_fragments: bool,
        payload: &[u8],
        header: &[u8],
    ) -> Result<Option<Vec<u8>>, RxDrop> {
        let end = offset + payload.len();
        if end + MIN_HEADER_LEN > MAX_DATAGRAM_LEN || (more_fragments && payload.len() % 8 != 0) {
            return Err(RxDrop::BadFragment);
        }
        if more_fragments && payload.is_empty() {
            return Err(RxDrop::BadFragment);
        }
        let (held, old_max_end) = match self.pending.get(&key) {
            Some(p) => (p.buf.data().len(), p.max_end),
            None => (0, 0),
        };
        if !more_fragments && end < old_max_end {
            return Err(RxDrop::BadFragment);
        }
        if self.conflicts(&key, offset, payload) {
            self.release(&key);
            return Err(RxDrop::FragmentOverlap);
        }
        let delta = end.saturating_sub(held)
            + if held == 0 && old_max_end == 0 {
                ENTRY_OVERHEAD
            } else {
                0
            };
        let used = self.per_source.get(&key.src).copied().unwrap_or(0);
        if used + delta > self.cfg.per_source_bytes {
            return Err(RxDrop::FragmentMemory);
        }
        // Over the overall cap: make room by evicting the oldest datagrams of other
        // sources, so one flood cannot lock everyone out until the timeout.
        while self.total + delta > self.cfg.total_bytes {
            let victim = self
                .by_deadline
                .iter()
                .map(|(_, k)| *k)
                .find(|k| k.src != key.src);
            match victim {
                Some(v) => {
                    self.release(&v);
                }
                None => return Err(RxDrop::FragmentMemory),
            }
        }

        let deadline = now + self.cfg.timeout;
        if !self.pending.contains_key(&key) {
            self.by_deadline.insert((deadline, key));
        }
        let entry = self.pending.entry(key).or_insert_with(|| Pending {
            buf: IpDefragBuf::new(IpNumber(key.protocol), Vec::new(), Vec::new()),
            deadline,
            cost: 0,
            max_end: 0,
            first: None,
        });
        let frag_offset =
            IpFragOffset::try_new((offset / 8) as u16).map_err(|_| RxDrop::BadFragment)?;
        if entry.buf.add(frag_offset, more_fragments, payload).is_err() {
            return Err(RxDrop::BadFragment);
        }
        entry.max_end = entry.max_end.max(end);
        if offset == 0 && entry.first.is_none() {
            let mut first = header.to_vec();
            first.extend_from_slice(&payload[..payload.len().min(8)]);
            entry.first = Some(first);
        }
        let complete = entry.buf.is_complete();
        self.charge(&key, delta);
        if !complete {
            return Ok(None);
        }
        let done = self.release(&key).expect("entry exists");
        let (data, _) = done.buf.take_bufs();
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(src: u8, ident: u16) -> FragmentKey {
        FragmentKey {
            src: Ipv4Addr::new(198, 18, 0, src),
            dst: Ipv4Addr::new(198, 18, 0, 1),
            protocol: 17,
            ident,
        }
    }

    fn fragments(payload: &[u8], mtu: usize) -> Vec<(usize, bool, Vec<u8>)> {
        plan(payload.len(), 20, mtu)
            .unwrap()
            .map(|(off, len, more)| (off, more, payload[off..off + len].to_vec()))
            .collect()
    }

    #[test]
    fn plan_respects_mtu_and_alignment() {
        let plan = |len, header, mtu| plan(len, header, mtu).map(Vec::from_iter);
        assert_eq!(plan(100, 20, 1500).unwrap(), vec![(0, 100, false)]);
        assert_eq!(plan(0, 20, 1500).unwrap(), vec![(0, 0, false)]);
        let p = plan(4000, 20, 1500).unwrap();
        assert_eq!(
            p,
            vec![(0, 1480, true), (1480, 1480, true), (2960, 1040, false)]
        );
        let p = plan(100, 20, 68).unwrap();
        assert!(p
            .iter()
            .all(|(_, len, more)| len + 20 <= 68 && (!more || len % 8 == 0)));
        assert_eq!(plan(100, 20, 27), None);
    }

    #[test]
    fn reassembles_in_any_order() {
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let mut frags = fragments(&payload, 1500);
        frags.reverse();
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut out = None;
        for (off, more, data) in frags {
            out = r
                .add(Instant::ZERO, key(2, 1), off, more, &data, &[0x45; 20])
                .unwrap();
        }
        assert_eq!(out.unwrap(), payload);
        assert!(r.is_empty());
        assert_eq!(r.memory(), 0);
    }

    #[test]
    fn timeout_reports_first_fragment_only_when_it_arrived() {
        let payload = vec![7u8; 3000];
        let frags = fragments(&payload, 1500);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let (off, more, data) = &frags[0];
        r.add(Instant::ZERO, key(2, 1), *off, *more, data, &[0x45; 20])
            .unwrap();
        let (off, more, data) = &frags[1];
        r.add(
            Instant::from_secs(1),
            key(3, 1),
            *off,
            *more,
            data,
            &[0x45; 20],
        )
        .unwrap();
        assert_eq!(r.next_deadline(), Some(Instant::from_secs(30)));
        assert!(r.expire(Instant::from_secs(29)).is_empty());
        let expired = r.expire(Instant::from_secs(31));
        assert_eq!(expired.len(), 2);
        assert_eq!(expired[0].first.as_ref().unwrap().len(), 28);
        assert_eq!(expired[1].first, None);
        assert_eq!(r.memory(), 0);
    }

    #[test]
    fn hostile_fragments_are_refused() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let h = [0x45; 20];
        // Misaligned middle fragment.
        assert_eq!(
            r.add(Instant::ZERO, key(2, 1), 0, true, &[0; 13], &h),
            Err(RxDrop::BadFragment)
        );
        // Past 65535 bytes ("ping of death").
        assert_eq!(
            r.add(Instant::ZERO, key(2, 2), 65528, false, &[0; 16], &h),
            Err(RxDrop::BadFragment)
        );
        // A last fragment ending before data already held.
        r.add(Instant::ZERO, key(2, 3), 800, true, &[0; 800], &h)
            .unwrap();
        assert_eq!(
            r.add(Instant::ZERO, key(2, 3), 0, false, &[0; 8], &h),
            Err(RxDrop::BadFragment)
        );
        // A fragment beyond the end a last fragment set.
        r.add(Instant::ZERO, key(2, 4), 8, false, &[0; 8], &h)
            .unwrap();
        assert_eq!(
            r.add(Instant::ZERO, key(2, 4), 16, true, &[0; 8], &h),
            Err(RxDrop::BadFragment)
        );
    }

    #[test]
    fn memory_caps_hold_per_source_and_overall() {
        let cfg = ReassemblyConfig {
            per_source_bytes: 10_000,
            total_bytes: 20_000,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(cfg);
        let h = [0x45; 20];
        let mut refused = 0;
        for ident in 0..100 {
            if r.add(Instant::ZERO, key(2, ident), 0, true, &[0; 1000], &h)
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused > 0 && r.memory() <= 10_000);
        // A second source still gets room; a third evicts the oldest of the others.
        for src in [3, 4] {
            for ident in 0..8 {
                r.add(
                    Instant::from_millis(src as u64),
                    key(src, ident),
                    0,
                    true,
                    &[0; 1000],
                    &h,
                )
                .unwrap();
            }
        }
        assert!(r.memory() <= 20_000, "{}", r.memory());
    }

    /// RFC 5722 section 4, applied to IPv4 as Linux does since 4.19: a fragment that
    /// overlaps data already held with different bytes (which could rewrite a transport
    /// header that a filter already passed) discards the whole datagram, counted; an
    /// exact duplicate is harmless and kept.
    #[test]
    fn overlap_with_different_bytes_drops_the_datagram_rfc5722_4() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let h = [0x45; 20];
        assert_eq!(
            r.add(Instant::ZERO, key(2, 1), 0, true, &[1; 16], &h),
            Ok(None)
        );
        // The same bytes again, overlapping: fine.
        assert_eq!(
            r.add(Instant::ZERO, key(2, 1), 8, true, &[1; 8], &h),
            Ok(None)
        );
        // Bytes 8..16 again but different: the whole datagram goes.
        assert_eq!(
            r.add(Instant::ZERO, key(2, 1), 8, false, &[2; 16], &h),
            Err(RxDrop::FragmentOverlap)
        );
        assert!(r.is_empty());
        assert_eq!(r.memory(), 0);
        assert_eq!(r.next_deadline(), None);
        // What would have completed the old datagram now starts a new one, which
        // completes only with all of its own fragments.
        assert_eq!(
            r.add(Instant::ZERO, key(2, 1), 16, false, &[1; 8], &h),
            Ok(None)
        );
        assert_eq!(
            r.add(Instant::ZERO, key(2, 1), 0, true, &[1; 16], &h),
            Ok(Some(vec![1; 24]))
        );
    }

    /// Incomplete datagrams time out in the order of their deadlines (RFC 791's timer
    /// per datagram), whatever their keys; the reassembler keeps them in deadline order
    /// instead of scanning every pending datagram on each packet.
    #[test]
    fn datagrams_expire_in_deadline_order() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let h = [0x45; 20];
        // Keys in descending order, deadlines ascending.
        for (i, src) in [9u8, 7, 5, 3].into_iter().enumerate() {
            r.add(
                Instant::from_secs(i as u64),
                key(src, 1),
                0,
                true,
                &[0; 8],
                &h,
            )
            .unwrap();
        }
        assert_eq!(r.next_deadline(), Some(Instant::from_secs(30)));
        let expired: Vec<u8> = r
            .expire(Instant::from_secs(32))
            .into_iter()
            .map(|e| e.key.src.octets()[3])
            .collect();
        assert_eq!(expired, vec![9, 7, 5]);
        assert_eq!(r.next_deadline(), Some(Instant::from_secs(33)));
        assert_eq!(r.len(), 1);
    }

    proptest! {
        /// Any order, any duplication, and missing fragments: the payload comes back
        /// exactly when every fragment arrived at least once, and never otherwise.
        #[test]
        fn round_trip_under_shuffle_duplication_and_loss(
            len in 1usize..9000,
            mtu in 68usize..1600,
            order in proptest::collection::vec(any::<u32>(), 0..64),
            dup in proptest::collection::vec(any::<bool>(), 64),
            lose in proptest::option::of(0usize..64),
        ) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let frags = fragments(&payload, mtu);
            let n = frags.len();
            let mut schedule: Vec<usize> = (0..n).collect();
            for (i, r) in order.iter().enumerate() {
                schedule.swap(i % n, *r as usize % n);
            }
            let mut sends = Vec::new();
            for (i, idx) in schedule.iter().enumerate() {
                sends.push(*idx);
                if dup[i % dup.len()] { sends.push(*idx); }
            }
            let lost = lose.map(|l| l % n).filter(|_| n > 1);
            sends.retain(|i| Some(*i) != lost);
            let mut r = Reassembler::new(ReassemblyConfig::default());
            let mut results = Vec::new();
            for i in sends {
                let (off, more, data) = &frags[i];
                match r.add(Instant::ZERO, key(2, 9), *off, *more, data, &[0x45; 20]) {
                    Ok(Some(p)) => results.push(p),
                    Ok(None) => {}
                    Err(e) => prop_assert!(false, "fragment refused: {e}"),
                }
            }
            if lost.is_some() {
                prop_assert!(results.is_empty());
                prop_assert_eq!(r.len(), 1);
            } else {
                // A duplicate arriving after completion starts a new datagram that never
                // completes (it times out), as in real stacks; the first result is exact.
                prop_assert!(!results.is_empty());
                prop_assert_eq!(&results[0], &payload);
            }
        }
    }
}
