//! [`BatchReader`]: many reads of a nonblocking device in one system call, through
//! io_uring(7), for a device that hands over one packet per read(2) (a TUN or TAP device
//! without `IFF_VNET_HDR`).
//!
//! Receiving at line rate from a plain TUN device costs one read(2) per 1500-byte packet,
//! and the system call's entry and exit were the largest single item of the runtime
//! thread's profile (`do_syscall_64` about 13% self, more in the syscall-exit path), as
//! much as the stack's own work on the packet. Linux has no recvmmsg(2) for a character
//! device; io_uring is its way to issue a batch of reads at once: up to `MAX_BATCH` reads
//! go in with one io_uring_enter(2), each executes at once (the descriptor is
//! `O_NONBLOCK`, so an empty queue completes the read with `EAGAIN` rather than arming a
//! poll), and their completions are in the ring when the call returns. The packets are
//! then handed out one by one in the order they were read, each by exchanging the
//! buffer it was read into for the caller's ([`BatchReader::recv_swap`]: copying it out
//! cost as much as the system calls saved).
//!
//! The `io-uring` crate (tokio-rs) is used for the ring's set-up, memory mapping and
//! queue indices, which are subtle to write by hand.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

/// Most reads issued in one call.
const MAX_BATCH: usize = 32;
/// Reads issued when the device was last found nearly empty: a lone packet (an ACK, a
/// ping) costs little more than a read(2).
const MIN_BATCH: usize = 2;
/// Marks a cancellation request's completion, apart from the reads' slot indices.
const CANCEL_TAG: u64 = u64::MAX;

/// What the reads of a device through a [`BatchReader`] came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// io_uring_enter(2) calls that issued reads.
    pub calls: u64,
    /// Reads issued.
    pub reads: u64,
    /// Reads that returned a packet.
    pub packets: u64,
}

/// Reads a nonblocking descriptor many packets at a time (see the module doc).
pub struct BatchReader {
    ring: IoUring,
    /// Buffers the reads go to, added as batches grow, each as long as the caller's
    /// buffer was when it was made (a packet is cut where a read(2) into that buffer
    /// would cut it); [`BatchReader::recv_swap`] exchanges them with the caller's.
    slots: Vec<Vec<u8>>,
    /// Slots holding a packet not handed out yet, in the order they were read, with its
    /// length.
    ready: VecDeque<(usize, usize)>,
    /// Reads to issue next: doubled after a batch that came back full, down to twice
    /// what the last one found otherwise.
    batch: usize,
    /// The last batch found the device empty before its end: the next read after its
    /// packets reports "nothing" without a system call, as the read(2) that would
    /// have returned `EAGAIN` does.
    drained: bool,
    /// An error a read of the last batch returned, reported once its packets are out.
    error: Option<io::Error>,
    stats: BatchStats,
}

impl std::fmt::Debug for BatchReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReader")
            .field("ready", &self.ready.len())
            .field("batch", &self.batch)
            .field("stats", &self.stats)
            .finish()
    }
}

impl BatchReader {
    /// A reader with its own ring; fails where io_uring is missing or disabled
    /// (`kernel.io_uring_disabled`), and the caller then reads one packet per call.
    pub fn new() -> io::Result<BatchReader> {
        Ok(BatchReader {
            // One more entry than reads, for the cancellation of a read left pending.
            ring: IoUring::new((MAX_BATCH + 1).next_power_of_two() as u32)?,
            slots: Vec::with_capacity(MAX_BATCH),
            ready: VecDeque::with_capacity(MAX_BATCH),
            batch: MIN_BATCH,
            drained: false,
            error: None,
            stats: BatchStats::default(),
        })
    }

    pub fn stats(&self) -> BatchStats {
        self.stats
    }

    /// The next packet from `fd` into `buf`: its length, `None` when there is none now,
    /// as read(2) of a nonblocking descriptor answers (`EAGAIN` and `EINTR` are `None`).
    pub fn recv(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some((slot, len)) = self.next(fd, buf.len())? else {
            return Ok(None);
        };
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&self.slots[slot][..n]);
        Ok(Some(n))
    }

    /// [`BatchReader::recv`] without the copy: `buf` is exchanged for the buffer the
    /// packet was read into (as long as `buf` was or longer), and takes that one's place.
    pub fn recv_swap(&mut self, fd: RawFd, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let size = buf.len();
        let Some((slot, len)) = self.next(fd, size)? else {
            return Ok(None);
        };
        std::mem::swap(&mut self.slots[slot], buf);
        // The caller's buffer is the slot's now, for later reads: at least as long as the
        // caller asks for.
        if self.slots[slot].len() < size {
            self.slots[slot].resize(size, 0);
        }
        Ok(Some(len))
    }

    /// The slot and length of the next packet, reading a batch if none is left.
    fn next(&mut self, fd: RawFd, size: usize) -> io::Result<Option<(usize, usize)>> {
        if self.ready.is_empty() {
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            if std::mem::take(&mut self.drained) {
                return Ok(None);
            }
            self.fill(fd, size)?;
        }
        let Some(next) = self.ready.pop_front() else {
            // The batch found nothing: that was this call's read.
            self.drained = false;
            return self.error.take().map_or(Ok(None), Err);
        };
        Ok(Some(next))
    }

    /// Issues a batch of reads into the slots and collects what they read.
    fn fill(&mut self, fd: RawFd, size: usize) -> io::Result<()> {
        let batch = self.batch;
        // Zeroed buffers: calloc may hand over zero pages that become resident only as
        // packets are written to them.
        while self.slots.len() < batch {
            self.slots.push(vec![0; size.max(1)]);
        }
        {
            let mut sq = self.ring.submission();
            for (i, slot) in self.slots.iter_mut().take(batch).enumerate() {
                // A caller whose buffer grew gets slots as long.
                if slot.len() < size {
                    slot.resize(size, 0);
                }
                let len = u32::try_from(slot.len()).unwrap_or(u32::MAX);
                let read = opcode::Read::new(types::Fd(fd), slot.as_mut_ptr(), len)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the slot stays allocated, unmoved and untouched until the
                // read's completion is reaped below (or it is cancelled and reaped), and
                // the ring has room for `MAX_BATCH` entries, all reaped before the next
                // batch.
                unsafe { sq.push(&read) }.map_err(|_| io::Error::other("io_uring full"))?;
            }
        }
        self.ring.submit()?;
        self.stats.calls += 1;
        self.stats.reads += batch as u64;
        let mut results = [None::<i32>; MAX_BATCH];
        let mut done = self.reap(&mut results);
        if done < batch {
            // Not expected of an O_NONBLOCK descriptor: a read was left waiting. Cancel
            // every one still pending and wait for them, so no read writes into a slot
            // after this call.
            self.cancel_pending(&mut results, &mut done, batch)?;
        }
        let mut found = 0;
        for (slot, result) in results.iter().take(batch).enumerate() {
            match *result {
                Some(n) if n >= 0 => {
                    found += 1;
                    self.ready
                        .push_back((slot, (n as usize).min(self.slots[slot].len())));
                }
                Some(e) if e == -libc::EAGAIN || e == -libc::EINTR || e == -libc::ECANCELED => {
                    self.drained = true;
                }
                Some(e) => {
                    self.error.get_or_insert(io::Error::from_raw_os_error(-e));
                }
                None => {}
            }
        }
        self.stats.packets += found as u64;
        self.batch = if found == batch {
            (batch * 2).min(MAX_BATCH)
        } else {
            (found * 2).clamp(MIN_BATCH, MAX_BATCH)
        };
        Ok(())
    }

    /// Completions in the ring into `results` by slot; returns how many reads completed.
    fn reap(&mut self, results: &mut [Option<i32>; MAX_BATCH]) -> usize {
        let mut done = 0;
        for cqe in self.ring.completion() {
            if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                *r = Some(cqe.result());
                done += 1;
            }
        }
        done
    }

    fn cancel_pending(
        &mut self,
        results: &mut [Option<i32>; MAX_BATCH],
        done: &mut usize,
        batch: usize,
    ) -> io::Result<()> {
        for (slot, result) in results.iter().take(batch).enumerate() {
            if result.is_none() {
                let cancel = opcode::AsyncCancel::new(slot as u64)
                    .build()
                    .user_data(CANCEL_TAG);
                // SAFETY: a cancellation request refers to no memory of ours.
                while unsafe { self.ring.submission().push(&cancel) }.is_err() {
                    self.ring.submit()?;
                }
            }
        }
        while *done < batch {
            self.ring.submit_and_wait(1)?;
            *done += self.reap(results);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    /// A nonblocking datagram socket stands in for a TUN device: one message per read.
    fn pair() -> (UnixDatagram, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    #[test]
    fn packets_come_out_one_per_call_in_the_order_they_were_queued() {
        let Ok(mut reader) = BatchReader::new() else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let (tx, rx) = pair();
        let mut buf = [0u8; 64];
        assert_eq!(reader.recv(rx.as_raw_fd(), &mut buf).unwrap(), None);
        for i in 0..100u8 {
            tx.send(&[i; 10][..usize::from(i % 10) + 1]).unwrap();
        }
        for i in 0..100u8 {
            let n = reader.recv(rx.as_raw_fd(), &mut buf).unwrap();
            assert_eq!(n, Some(usize::from(i % 10) + 1), "packet {i}");
            assert!(buf[..n.unwrap()].iter().all(|&b| b == i), "packet {i}");
        }
        assert_eq!(reader.recv(rx.as_raw_fd(), &mut buf).unwrap(), None);
        // More than one packet per system call once packets queue up.
        let stats = reader.stats();
        assert_eq!(stats.packets, 100);
        assert!(stats.calls < 30, "{stats:?}");
        // A packet queued after the device was found empty is read by the next call.
        tx.send(b"late").unwrap();
        assert_eq!(reader.recv(rx.as_raw_fd(), &mut buf).unwrap(), Some(4));
        assert_eq!(&buf[..4], b"late");
    }

    #[test]
    fn a_read_error_is_reported_after_the_packets_before_it() {
        let Ok(mut reader) = BatchReader::new() else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let mut buf = [0u8; 16];
        // A descriptor that is not open: every read fails with EBADF.
        let err = reader.recv(-1, &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        // The reader goes on with a good descriptor.
        let (tx, rx) = pair();
        tx.send(b"x").unwrap();
        assert_eq!(reader.recv(rx.as_raw_fd(), &mut buf).unwrap(), Some(1));
    }
}
