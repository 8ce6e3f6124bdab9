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
//! Measured again on Linux 6.18 (kernel BBR client -> discard 9, process CPU per MB by
//! perf stat task-clock, interleaved runs on a shared 2-core machine): these batches
//! 0.77 / 0.89 / 1.06 ms/MB, one read(2) per packet into the same buffer 0.95 / 1.24 /
//! 1.32. Doubling `MAX_BATCH` to 64 halved the io_uring_enter(2) calls (22 -> 11 per MB)
//! but moved CPU per MB by less than the noise (medians 0.88 and 0.86 ms over six pairs).
//!
//! The device is the ring's registered file (`IORING_REGISTER_FILES`): a read of a
//! registered file skips the
//! `fget`/`fput` of the descriptor that each plain read request pays (`fget` was 1.6% of
//! the runtime thread receiving from a plain TUN device).
//!
//! **Multishot reads were tried and not kept** (commit 741805a, reverted after it):
//! one armed `IORING_OP_READ_MULTISHOT` request with a ring of 256 provided buffers
//! (`IORING_REGISTER_PBUF_RING`), `COOP_TASKRUN`, the runtime sleeping on the ring's
//! descriptor. io_uring_enter(2) fell from 22 to 2.7 calls per MB received, but process
//! CPU per MB rose (perf stat task-clock, kernel BBR client -> discard 9, interleaved
//! runs on a shared machine: 0.96 / 1.24 / 1.07 ms against 0.88 / 0.85 / 1.03 batched):
//! each packet then pays a `vfs_poll` of the device (`tun_chr_poll` 2.9% of the thread),
//! the buffer group's lookup (`xa_load` 1.6%) and a CQE posted under the completion lock,
//! about what the SQE set-up costs here, and a task-work run reads up to the whole buffer
//! ring (370 KB) before the stack touches the first packet. 32 or 64 buffers, or
//! interrupting task work instead of `COOP_TASKRUN`, were no better (0.91-1.22 ms/MB).
//! A 1-byte TCP ping-pong was no faster either (p50 56 us in three runs, against 12-56
//! us batched).
//!
//! The `io-uring` crate (tokio-rs) is used for the ring's set-up, memory mapping and
//! queue indices, which are subtle to write by hand.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use io_uring::{opcode, types, IoUring};

/// Most reads issued in one call.
const MAX_BATCH: usize = 32;
/// Reads of the first batch after single reads found a queue.
const FIRST_BATCH: usize = 4;
/// Packets in a row that single reads find before batches start: one io_uring_enter(2)
/// costs more than a read(2) (a 1-byte TCP ping-pong took 2 us longer per round trip
/// when every wake-up read through the ring), so a lone packet (a request, an ACK, a
/// ping) and the read that finds the queue empty after it stay two read(2)s.
const STREAK_TO_BATCH: u32 = 2;
/// Marks a cancellation request's completion, apart from the reads' slot indices.
const CANCEL_TAG: u64 = u64::MAX;

/// What the reads of a device through a [`BatchReader`] came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// io_uring_enter(2) calls that issued reads.
    pub calls: u64,
    /// Reads issued.
    pub reads: u64,
    /// Reads that returned a packet (batched or single).
    pub packets: u64,
    /// Single read(2) calls, made while traffic is light.
    pub single_reads: u64,
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
    /// what the last one found otherwise; 1 is a single read(2).
    batch: usize,
    /// Packets single reads found in a row.
    streak: u32,
    /// The last batch found the device empty before its end: the next read after its
    /// packets reports "nothing" without a system call, as the read(2) that would
    /// have returned `EAGAIN` does.
    drained: bool,
    /// An error a read of the last batch returned, reported once its packets are out.
    error: Option<io::Error>,
    /// The descriptor registered as the ring's file 0 ([`BatchReader::register_file`]).
    registered: Option<RawFd>,
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
            batch: 1,
            streak: 0,
            drained: false,
            error: None,
            registered: None,
            stats: BatchStats::default(),
        })
    }

    pub fn stats(&self) -> BatchStats {
        self.stats
    }

    /// The next packet from `fd` into `buf`: its length, `None` when there is none now,
    /// as read(2) of a nonblocking descriptor answers (`EAGAIN` and `EINTR` are `None`).
    pub fn recv(&mut self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.single() {
            return self.read_one(fd, buf);
        }
        let Some((slot, len)) = self.next(fd, buf.len())? else {
            return Ok(None);
        };
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&self.slots[slot][..n]);
        Ok(Some(n))
    }

    /// [`BatchReader::recv`] without the copy: `buf` is exchanged for the buffer the
    /// packet was read into (as long as `buf` was or longer), and takes that one's place.
    pub fn recv_swap(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<usize>> {
        if self.single() {
            return self.read_one(fd, buf);
        }
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

    /// Whether the next read is a single read(2): traffic is light and no packet or
    /// error of a batch is waiting.
    fn single(&self) -> bool {
        self.batch == 1 && self.ready.is_empty() && self.error.is_none() && !self.drained
    }

    /// One read(2) into `buf`; the second packet in a row starts batches.
    fn read_one(&mut self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.stats.single_reads += 1;
        match nix::unistd::read(fd, buf) {
            Ok(n) => {
                self.stats.packets += 1;
                self.streak += 1;
                if self.streak >= STREAK_TO_BATCH {
                    self.streak = 0;
                    self.batch = FIRST_BATCH;
                }
                Ok(Some(n))
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                self.streak = 0;
                Ok(None)
            }
            Err(e) => {
                self.streak = 0;
                Err(e.into())
            }
        }
    }

    /// The slot and length of the next packet, reading a batch if none is left.
    fn next(&mut self, fd: BorrowedFd<'_>, size: usize) -> io::Result<Option<(usize, usize)>> {
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

    /// Makes `fd` the ring's registered file (a one-entry table): reads of `fd` then go
    /// through it. The caller keeps `fd` open as long as this reader lives (a TUN link
    /// owns both), so its number cannot come to name another file meanwhile. Without a
    /// table (an old kernel) reads name the descriptor as before.
    pub fn register_file(&mut self, fd: BorrowedFd<'_>) {
        let fd = fd.as_raw_fd();
        if self.ring.submitter().register_files(&[fd]).is_ok() {
            self.registered = Some(fd);
        }
    }

    /// Issues a batch of reads into the slots and collects what they read.
    fn fill(&mut self, fd: BorrowedFd<'_>, size: usize) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let fixed = self.registered == Some(fd);
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
                let read = if fixed {
                    opcode::Read::new(types::Fixed(0), slot.as_mut_ptr(), len).build()
                } else {
                    opcode::Read::new(types::Fd(fd), slot.as_mut_ptr(), len).build()
                }
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
            (found * 2).clamp(1, MAX_BATCH)
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
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    /// A nonblocking datagram socket stands in for a TUN device: one message per read.
    fn pair() -> (UnixDatagram, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    fn reader() -> Option<BatchReader> {
        let reader = BatchReader::new().ok();
        if reader.is_none() {
            eprintln!("skipped: io_uring is not available here");
        }
        reader
    }

    #[test]
    fn packets_come_out_one_per_call_in_the_order_they_were_queued() {
        let Some(mut reader) = reader() else { return };
        let (tx, rx) = pair();
        let mut buf = [0u8; 64];
        assert_eq!(reader.recv(rx.as_fd(), &mut buf).unwrap(), None);
        for i in 0..100u8 {
            tx.send(&[i; 10][..usize::from(i % 10) + 1]).unwrap();
        }
        for i in 0..100u8 {
            let n = reader.recv(rx.as_fd(), &mut buf).unwrap();
            assert_eq!(n, Some(usize::from(i % 10) + 1), "packet {i}");
            assert!(buf[..n.unwrap()].iter().all(|&b| b == i), "packet {i}");
        }
        assert_eq!(reader.recv(rx.as_fd(), &mut buf).unwrap(), None);
        // Many packets per system call once packets queue up.
        let stats = reader.stats();
        assert_eq!(stats.packets, 100);
        assert!(stats.calls + stats.single_reads < 20, "{stats:?}");
        // A packet queued after the device was found empty is read by the next call.
        tx.send(b"late").unwrap();
        assert_eq!(reader.recv(rx.as_fd(), &mut buf).unwrap(), Some(4));
        assert_eq!(&buf[..4], b"late");
    }

    /// Reads of the registered file go through the ring's file table, in order, and a
    /// descriptor that is not the registered one is still read (by its number).
    #[test]
    fn a_registered_file_is_read_through_the_table() {
        let Some(mut reader) = reader() else { return };
        let (tx, rx) = pair();
        reader.register_file(rx.as_fd());
        assert_eq!(reader.registered, Some(rx.as_raw_fd()));
        let mut buf = vec![0u8; 64];
        for i in 0..50u8 {
            tx.send(&[i; 3]).unwrap();
        }
        for i in 0..50u8 {
            assert_eq!(reader.recv_swap(rx.as_fd(), &mut buf).unwrap(), Some(3));
            assert_eq!(buf[..3], [i; 3], "packet {i}");
        }
        assert_eq!(reader.recv_swap(rx.as_fd(), &mut buf).unwrap(), None);
        assert!(reader.stats().calls > 0);
        let (tx2, rx2) = pair();
        for i in 0..5u8 {
            tx2.send(&[i]).unwrap();
        }
        for i in 0..5u8 {
            assert_eq!(reader.recv_swap(rx2.as_fd(), &mut buf).unwrap(), Some(1));
            assert_eq!(buf[0], i);
        }
    }

    /// Light traffic, one packet per wake-up (a ping-pong), is read by read(2): the packet
    /// and the read that finds the queue empty, without the ring.
    #[test]
    fn a_lone_packet_is_a_single_read() {
        let Some(mut reader) = reader() else { return };
        let (tx, rx) = pair();
        let mut buf = vec![0u8; 64];
        for round in 0..10u8 {
            tx.send(&[round]).unwrap();
            assert_eq!(reader.recv_swap(rx.as_fd(), &mut buf).unwrap(), Some(1));
            assert_eq!(buf[0], round);
            assert_eq!(reader.recv_swap(rx.as_fd(), &mut buf).unwrap(), None);
        }
        let stats = reader.stats();
        assert_eq!((stats.calls, stats.single_reads), (0, 20), "{stats:?}");
    }

    /// A read error is an error value, whether a single read or a batch met it, and the
    /// reader goes on afterwards.
    #[test]
    fn a_read_error_is_reported() {
        let Some(mut reader) = reader() else { return };
        let mut buf = [0u8; 16];
        // A descriptor open for writing only: every read fails with EBADF.
        let write_only = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let err = reader.recv(write_only.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        // Two packets in a row start batches; the batch meets the error.
        let (tx, rx) = pair();
        tx.send(b"a").unwrap();
        tx.send(b"b").unwrap();
        assert_eq!(reader.recv(rx.as_fd(), &mut buf).unwrap(), Some(1));
        assert_eq!(reader.recv(rx.as_fd(), &mut buf).unwrap(), Some(1));
        let err = reader.recv(write_only.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert_eq!(reader.stats().calls, 1);
        tx.send(b"x").unwrap();
        assert_eq!(reader.recv(rx.as_fd(), &mut buf).unwrap(), Some(1));
        assert_eq!(&buf[..1], b"x");
    }
}
