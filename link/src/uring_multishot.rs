//! [`MultishotReader`]: a device's packets read by the kernel into a ring of our buffers
//! as they arrive, through one armed io_uring request (`IORING_OP_READ_MULTISHOT`,
//! Linux 6.7, with a provided-buffer ring, `IORING_REGISTER_PBUF_RING`, Linux 5.19), for
//! a device that hands over one packet per read(2) and can be polled (a TUN or TAP device
//! without `IFF_VNET_HDR`).
//!
//! The batched reads of [`crate::uring::BatchReader`] pay io_uring's per-read set-up for
//! every packet (an SQE to fill, `io_submit_sqes`, `io_prep_rw`, `io_issue_sqe`,
//! `kiocb_done`: about 15% of the runtime thread receiving from a plain TUN device) and a
//! read that finds the device empty at the end of each batch. A multishot read is set up
//! once: the kernel arms a poll on the device, and each time the device's wait queue is
//! woken it reads every queued packet (`io_read_mshot`, which retries until `EAGAIN`),
//! each into the next buffer of the ring, posting one completion per packet with the
//! buffer's id. The packets are then taken from the completion queue without a system
//! call; the buffer a packet was read into is exchanged for the caller's
//! ([`MultishotReader::recv_swap`]), and the caller's buffer goes back into the ring in
//! its place, so no packet is copied.
//!
//! **Task work.** The reads run as task work of the thread that armed the request. The
//! ring is made with `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`: a packet
//! that arrives while the thread runs does not interrupt it (no IPI); the reads happen at
//! its next system call (an ACK write), or when [`MultishotReader::recv_swap`] finds the
//! completion queue empty and the ring's `IORING_SQ_TASKRUN` flag set, with one
//! io_uring_enter(2). A thread asleep on the ring's descriptor is woken by the task work
//! (`TIF_NOTIFY_SIGNAL`), runs it on the way out of its sleep and finds the ring readable,
//! so [`MultishotReader::fd`] is what a driver sleeps on. `IORING_SETUP_DEFER_TASKRUN`
//! would run the reads only inside io_uring_enter(2) and does not wake a ppoll(2) on the
//! ring, so it is not used. `IORING_SETUP_SINGLE_ISSUER` is: the ring is made by the
//! thread that reads (at the first read, not when the device is opened).
//!
//! **Ending and re-arming.** The kernel ends the request (a completion without
//! `IORING_CQE_F_MORE`) when the ring of buffers runs dry (`ENOBUFS`; the packets wait
//! in the device's queue meanwhile) or on an error; it is armed again when the completion
//! queue is empty, when every buffer is back in the ring. An error is reported once and
//! the reader stops ([`MultishotReader::failed`]): the device then goes back to its
//! other reads, whose errors and poll (a hang-up) say what happened.
//!
//! The `io-uring` crate (tokio-rs) sets up the ring; the buffer ring is ours (page-aligned
//! memory whose entries and tail we write, as liburing's `io_uring_buf_ring_add` does),
//! since the crate only has the registration call.

use std::alloc::{self, Layout};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, types, IoUring, Probe};

/// Buffers in the ring: packets the kernel may read ahead of the stack. A stack poll
/// takes up to 256 KiB (about 180 full-sized packets) before it lets the rest run.
const BUFFERS: u16 = 256;
/// The buffer group id of the ring.
const GROUP: u16 = 0;
/// Marks the multishot read's completions.
const READ_TAG: u64 = 1;
/// Marks a cancellation's completion.
const CANCEL_TAG: u64 = 2;

/// What the reads through a [`MultishotReader`] came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MultishotStats {
    /// Multishot reads armed (the first, and one after each end).
    pub arms: u64,
    /// io_uring_enter(2) calls: arming, and running the reads' task work.
    pub calls: u64,
    /// Packets read.
    pub packets: u64,
    /// Ends because the ring of buffers ran dry (`ENOBUFS`).
    pub no_buffers: u64,
}

/// The ring and its buffers, made by the reading thread.
struct Ring {
    ring: IoUring,
    /// The provided-buffer ring: `BUFFERS` entries, page-aligned; entry 0's last field is
    /// the tail we publish.
    entries: *mut BufRingEntry,
    layout: Layout,
    /// Our count of buffers given to the kernel (the tail before masking).
    tail: u16,
    /// The buffers, by buffer id.
    bufs: Vec<Vec<u8>>,
    /// The registered file's descriptor (file 0).
    fd: RawFd,
    /// The multishot read is armed (no completion without `IORING_CQE_F_MORE` yet).
    armed: bool,
    /// The thread that made the ring, the only one that may use it
    /// (`IORING_SETUP_SINGLE_ISSUER`) and the one the reads run on.
    owner: std::thread::ThreadId,
}

// SAFETY: `entries` points to memory the ring owns alone (no alias outside it), so the
// ring may move to another thread; it is used there only if that thread made it
// (`MultishotReader::next` checks `owner`).
unsafe impl Send for Ring {}

/// Reads a pollable nonblocking descriptor through one multishot read (see the module
/// doc).
pub struct MultishotReader {
    ring: Option<Ring>,
    /// Packets taken from the completion queue and not handed out yet (buffer id,
    /// length): completions are taken in a batch to save the queue's index updates.
    ready: VecDeque<(u16, usize)>,
    /// The kernel cannot do it, or a read failed: the caller reads another way.
    failed: bool,
    /// [`MultishotReader::unsupported`]: the first read fails as on an old kernel.
    refuse: bool,
    stats: MultishotStats,
}

impl std::fmt::Debug for MultishotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultishotReader")
            .field("started", &self.ring.is_some())
            .field("failed", &self.failed)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Why the reader cannot read (the caller then reads another way).
fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}

impl Ring {
    /// A ring for the calling thread, with `fd` as its registered file and `BUFFERS`
    /// buffers of `size` bytes; `Unsupported` where the kernel lacks multishot reads or
    /// buffer rings.
    fn new(fd: RawFd, size: usize) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_cqsize(2 * u32::from(BUFFERS))
            .build(4)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::ReadMulti::CODE) {
            return Err(unsupported("io_uring has no multishot read (Linux < 6.7)"));
        }
        ring.submitter().register_files(&[fd])?;
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>();
        let layout = Layout::from_size_align(bytes, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            alloc::handle_alloc_error(layout);
        }
        let mut me = Ring {
            ring,
            entries,
            layout,
            tail: 0,
            // Zeroed buffers: calloc may hand over zero pages that become resident only
            // as packets are written to them.
            bufs: (0..BUFFERS).map(|_| vec![0; size.max(1)]).collect(),
            fd,
            armed: false,
            owner: std::thread::current().id(),
        };
        // SAFETY: `entries` is page-aligned memory for `BUFFERS` entries that lives as
        // long as the ring (freed in `Drop` after the ring is closed).
        unsafe {
            me.ring
                .submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)
        }
        .map_err(|e| unsupported(&format!("io_uring has no buffer rings: {e}")))?;
        for bid in 0..BUFFERS {
            me.give(bid, size);
        }
        Ok(me)
    }

    /// Puts buffer `bid` (grown to `size` bytes if shorter) at the ring's tail and
    /// publishes it (liburing's `io_uring_buf_ring_add` and `_advance`).
    fn give(&mut self, bid: u16, size: usize) {
        let buf = &mut self.bufs[usize::from(bid)];
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let mask = BUFFERS - 1;
        // SAFETY: the index is below `BUFFERS`; the kernel reads this entry only once the
        // tail published below passes it.
        let entry = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        entry.set_addr(buf.as_mut_ptr() as u64);
        entry.set_len(u32::try_from(buf.len()).unwrap_or(u32::MAX));
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field of entry 0 is a u16 in memory we own, which the kernel
        // reads with an acquire load.
        unsafe {
            let tail = BufRingEntry::tail(self.entries)
                .cast_mut()
                .cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Arms the multishot read; its first reads happen within this call.
    fn arm(&mut self, stats: &mut MultishotStats) -> io::Result<()> {
        let read = opcode::ReadMulti::new(types::Fixed(0), 0, GROUP)
            .build()
            .user_data(READ_TAG);
        // SAFETY: the read writes only into the ring's buffers, which live (and stay
        // where they are, or are replaced in the ring before being handed out) until the
        // request ends: `Drop` cancels it and waits for its end.
        unsafe { self.ring.submission().push(&read) }
            .map_err(|_| io::Error::other("io_uring full"))?;
        self.ring.submit()?;
        self.armed = true;
        stats.arms += 1;
        stats.calls += 1;
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.armed {
            let cancel = opcode::AsyncCancel::new(READ_TAG)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancellation refers to no memory of ours.
            if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
                // The read's last completion comes with or after the cancellation's;
                // bounded, in case the kernel never answers.
                for _ in 0..64 {
                    if self.ring.submit_and_wait(1).is_err() {
                        break;
                    }
                    for cqe in self.ring.completion() {
                        if cqe.user_data() == READ_TAG && !cqueue::more(cqe.flags()) {
                            self.armed = false;
                        }
                    }
                    if !self.armed {
                        break;
                    }
                }
            }
        }
        if self.armed && std::thread::current().id() != self.owner {
            // Not cancelled (only the owner may submit): the reads' task work may still
            // run on the owner's thread while the ring closes, so its buffers are left
            // to it rather than freed. Not reached by the stack, whose runtime thread
            // makes, reads and drops the link's reader.
            std::mem::forget(std::mem::take(&mut self.bufs));
        }
        // Closing the ring kills any request left; the buffer ring's pages are pinned by
        // the kernel, not borrowed, so freeing our mapping of them is safe.
        let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        // SAFETY: allocated in `Ring::new` with this layout.
        unsafe { alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

impl Default for MultishotReader {
    fn default() -> Self {
        MultishotReader::new()
    }
}

impl MultishotReader {
    /// A reader whose ring is made at its first read, by the thread that reads (a link
    /// is often opened by one thread and read by another).
    pub fn new() -> MultishotReader {
        MultishotReader {
            ring: None,
            ready: VecDeque::with_capacity(usize::from(BUFFERS)),
            failed: false,
            refuse: false,
            stats: MultishotStats::default(),
        }
    }

    /// A reader whose first read fails with `Unsupported`, as on a kernel without
    /// multishot reads: what a fallback is tested with.
    pub fn unsupported() -> MultishotReader {
        MultishotReader {
            refuse: true,
            ..MultishotReader::new()
        }
    }

    pub fn stats(&self) -> MultishotStats {
        self.stats
    }

    /// The kernel cannot read this way, or a read failed: read the device another way.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The ring's descriptor, once made: readable when a packet is waiting for
    /// [`MultishotReader::recv_swap`] (the device's own descriptor is not, since the
    /// kernel takes its packets off its queue).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the ring's descriptor stays open as long as `self` is borrowed.
        self.ring
            .as_ref()
            .map(|r| unsafe { BorrowedFd::borrow_raw(r.ring.as_raw_fd()) })
    }

    /// The next packet from `fd`, its buffer exchanged for `buf` (as long as `buf` was or
    /// longer; the packet is cut where a read into `buf` would cut it); `None` when there
    /// is none now. `fd` must stay open and the same device while the reader lives. The
    /// first call makes the ring; an `Unsupported` error then means the kernel cannot
    /// do it, and the reader is [`MultishotReader::failed`].
    pub fn recv_swap(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<usize>> {
        let size = buf.len();
        let Some((bid, len)) = self.next(fd, size)? else {
            return Ok(None);
        };
        let ring = self.ring.as_mut().expect("a packet came from the ring");
        std::mem::swap(&mut ring.bufs[usize::from(bid)], buf);
        ring.give(bid, size);
        Ok(Some(len.min(size)))
    }

    /// [`MultishotReader::recv_swap`] with a copy into `buf`.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some((bid, len)) = self.next(fd, buf.len())? else {
            return Ok(None);
        };
        let ring = self.ring.as_mut().expect("a packet came from the ring");
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&ring.bufs[usize::from(bid)][..n]);
        let size = ring.bufs[usize::from(bid)].len();
        ring.give(bid, size);
        Ok(Some(n))
    }

    /// The buffer id and length of the next packet.
    fn next(&mut self, fd: BorrowedFd<'_>, size: usize) -> io::Result<Option<(u16, usize)>> {
        if let Some(next) = self.ready.pop_front() {
            return Ok(Some(next));
        }
        if self.failed {
            return Err(unsupported("multishot reads stopped"));
        }
        if self.ring.is_none() {
            let made = if self.refuse {
                Err(unsupported("multishot reads refused (test)"))
            } else {
                Ring::new(fd.as_raw_fd(), size)
            };
            match made {
                Ok(ring) => self.ring = Some(ring),
                Err(e) => {
                    self.failed = true;
                    return Err(unsupported(&format!("no multishot reads: {e}")));
                }
            }
        }
        // At most: the completions there are; the task work run; a re-arm.
        for _ in 0..3 {
            self.harvest()?;
            if let Some(next) = self.ready.pop_front() {
                return Ok(Some(next));
            }
            let ring = self.ring.as_mut().expect("made above");
            if ring.fd != fd.as_raw_fd() || ring.owner != std::thread::current().id() {
                self.failed = true;
                return Err(unsupported(
                    "multishot reads are for one device, read by the thread that began",
                ));
            }
            let sq = ring.ring.submission();
            let (taskrun, overflow) = (sq.taskrun(), sq.cq_overflow());
            drop(sq);
            if taskrun || overflow {
                // Reads are waiting as task work (or completions beyond the queue).
                ring.ring.submit()?;
                self.stats.calls += 1;
            } else if !ring.armed {
                if let Err(e) = ring.arm(&mut self.stats) {
                    self.failed = true;
                    return Err(e);
                }
            } else {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Takes the completions in the queue into `ready`; a read's error stops the reader
    /// and is returned after the packets before it.
    fn harvest(&mut self) -> io::Result<()> {
        let ring = self.ring.as_mut().expect("harvest after the ring is made");
        let mut error = None;
        // Buffers that came back empty (not expected of a device), given back after.
        let mut empty = Vec::new();
        for cqe in ring.ring.completion() {
            if cqe.user_data() != READ_TAG {
                continue;
            }
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                ring.armed = false;
            }
            let res = cqe.result();
            match cqueue::buffer_select(flags) {
                Some(bid) if bid < BUFFERS && res > 0 => {
                    self.stats.packets += 1;
                    self.ready.push_back((bid, res as usize));
                }
                // A buffer with nothing in it goes straight back.
                Some(bid) if bid < BUFFERS => empty.push(bid),
                _ => {}
            }
            if res == -libc::ENOBUFS {
                self.stats.no_buffers += 1;
            } else if res < 0 {
                error.get_or_insert(io::Error::from_raw_os_error(-res));
            }
        }
        for bid in empty {
            let size = ring.bufs[usize::from(bid)].len();
            ring.give(bid, size);
        }
        match error {
            Some(e) if self.ready.is_empty() => {
                self.failed = true;
                Err(e)
            }
            Some(_) => {
                // Reported at the next call once these packets are out: stop then.
                self.failed = true;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    /// A nonblocking datagram socket stands in for a TUN device: one message per read,
    /// pollable.
    fn pair() -> (UnixDatagram, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    /// A reader that has made its ring, or `None` (the test skips) where the kernel
    /// has no multishot reads.
    fn reader(rx: &UnixDatagram) -> Option<MultishotReader> {
        let mut reader = MultishotReader::new();
        let mut buf = vec![0u8; 64];
        match reader.recv_swap(rx.as_fd(), &mut buf) {
            Ok(None) => Some(reader),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("skipped: {e}");
                None
            }
            other => panic!("an empty socket read {other:?}"),
        }
    }

    #[test]
    fn packets_come_out_in_order_without_a_system_call_each() {
        let (tx, rx) = pair();
        let Some(mut reader) = reader(&rx) else {
            return;
        };
        let mut buf = vec![0u8; 64];
        for i in 0..100u8 {
            tx.send(&[i; 10][..usize::from(i % 10) + 1]).unwrap();
        }
        for i in 0..100u8 {
            let n = reader.recv_swap(rx.as_fd(), &mut buf).unwrap();
            assert_eq!(n, Some(usize::from(i % 10) + 1), "packet {i}");
            assert!(buf.len() >= 64, "the buffer handed over is as long");
            assert!(buf[..n.unwrap()].iter().all(|&b| b == i), "packet {i}");
        }
        assert_eq!(reader.recv_swap(rx.as_fd(), &mut buf).unwrap(), None);
        let stats = reader.stats();
        assert_eq!(stats.packets, 100);
        assert_eq!(stats.arms, 1, "{stats:?}");
        assert!(stats.calls < 10, "{stats:?}");
        // A packet that arrives later is read by the armed request.
        tx.send(b"late").unwrap();
        let mut copy = [0u8; 16];
        let mut got = None;
        for _ in 0..1000 {
            got = reader.recv(rx.as_fd(), &mut copy).unwrap();
            if got.is_some() {
                break;
            }
            crate::poll::wait_readable(
                [reader.fd().unwrap()],
                crate::time::Duration::from_millis(10),
            )
            .unwrap();
        }
        assert_eq!(got, Some(4));
        assert_eq!(&copy[..4], b"late");
        assert_eq!(reader.stats().arms, 1);
    }

    /// The ring's descriptor is what a driver sleeps on: it becomes readable when a
    /// packet arrives (the reads' task work runs as the sleep ends).
    #[test]
    fn the_ring_wakes_a_sleeper_when_a_packet_arrives() {
        let (tx, rx) = pair();
        let Some(mut reader) = reader(&rx) else {
            return;
        };
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            tx.send(b"wake").unwrap();
            tx
        });
        let started = std::time::Instant::now();
        let [ring] =
            crate::poll::wait_readable([reader.fd().unwrap()], crate::time::Duration::from_secs(5))
                .unwrap();
        assert!(ring.readable);
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
        let mut buf = vec![0u8; 64];
        assert_eq!(reader.recv_swap(rx.as_fd(), &mut buf).unwrap(), Some(4));
        assert_eq!(&buf[..4], b"wake");
        let _tx = sender.join().unwrap();
    }

    /// More packets than buffers: the kernel's request ends with `ENOBUFS` when the ring
    /// runs dry, and is armed again once the buffers are back; nothing is lost.
    #[test]
    fn a_dry_ring_is_rearmed_and_loses_nothing() {
        let (tx, rx) = pair();
        let Some(mut reader) = reader(&rx) else {
            return;
        };
        let total = 3 * u32::from(BUFFERS);
        let mut buf = vec![0u8; 64];
        let mut next = 0u32;
        let mut sent = 0u32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while next < total && std::time::Instant::now() < deadline {
            // Queue more than a ring's worth before reading.
            while sent < total && sent < next + u32::from(BUFFERS) + 50 {
                if tx.send(&sent.to_be_bytes()).is_err() {
                    break;
                }
                sent += 1;
            }
            while let Some(n) = reader.recv_swap(rx.as_fd(), &mut buf).unwrap() {
                assert_eq!(n, 4);
                assert_eq!(buf[..4], next.to_be_bytes(), "in order");
                next += 1;
            }
        }
        assert_eq!(next, total);
        let stats = reader.stats();
        assert!(stats.no_buffers >= 1, "{stats:?}");
        assert_eq!(stats.arms, stats.no_buffers + 1, "{stats:?}");
    }

    /// A read error stops the reader with the error; later calls say it stopped.
    #[test]
    fn a_read_error_stops_the_reader() {
        let write_only = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let mut reader = MultishotReader::new();
        let mut buf = vec![0u8; 16];
        let err = reader.recv_swap(write_only.as_fd(), &mut buf).unwrap_err();
        if err.kind() == io::ErrorKind::Unsupported && reader.stats().arms == 0 {
            eprintln!("skipped: {err}");
            return;
        }
        assert!(reader.failed());
        assert_ne!(err.raw_os_error(), None, "{err}");
        assert!(reader.recv_swap(write_only.as_fd(), &mut buf).is_err());
    }

    #[test]
    fn an_unsupported_reader_fails_at_once() {
        let (_tx, rx) = pair();
        let mut reader = MultishotReader::unsupported();
        let mut buf = vec![0u8; 16];
        let err = reader.recv_swap(rx.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(reader.failed());
        assert!(reader.fd().is_none());
    }
}
