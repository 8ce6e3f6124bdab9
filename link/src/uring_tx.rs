//! [`BatchWriter`]: the packets a round of the stack sends to a device without offload
//! (a TUN or TAP device without `IFF_VNET_HDR`, one packet per write(2)), written with
//! one io_uring_enter(2) at the end of the round instead of one write(2) each.
//!
//! [`BatchWriter::queue_swap`] keeps the packet's buffer in a slot and hands the caller
//! the slot's old one for its next packet ([`BatchWriter::queue`] copies the packet in
//! instead: the copy was 3% of the runtime thread sending at line rate), and
//! [`BatchWriter::flush`] writes what the round queued: a lone
//! packet (an ACK, an echo, a ping reply) with a plain write(2), so latency is what it
//! was, and two or more as one batch of `IORING_OP_WRITE`s. The descriptor is
//! `O_NONBLOCK` and TUN writes support `IOCB_NOWAIT`, so io_uring issues each write at
//! once inside io_uring_enter(2), in submission order, and their completions are in the
//! ring when the call returns: the slots are then free again.
//!
//! On a plain TUN device the write's cost is the kernel's receive path of the packet
//! (`tun_get_user` -> `netif_receive_skb` -> `tcp_v4_rcv` of the peer socket), which runs
//! in the writer's context; batching saves only the system-call entries and exits
//! (`do_syscall_64`, `ksys_write`, `fdget_pos`: about 6% of the runtime thread sending at
//! line rate), less io_uring's own work per write (`io_write`, `io_submit_sqes`,
//! `kiocb_done`: about 5%). Measured on the send benchmark (perf stat task-clock of the
//! process) the runtime's CPU per Gbit still fell by 10-20%. Writes on an io-wq worker
//! (`IOSQE_ASYNC`, one worker to keep them in order), to move the kernel's receive
//! path off this thread, halved the throughput instead and were not kept.
//!
//! **Writer thread** ([`BatchWriter::with_thread`], `ustack up --tx-thread`): a plain
//! thread of ours takes that kernel work instead. At the flush the round's packets go to
//! it as one batch over a bounded channel ([`HANDOFF_DEPTH`] batches; the runtime waits
//! when it is full), it writes them with a ring of its own, in order, and hands the
//! buffers back for reuse. A lone packet is still one write(2) from the caller, but only
//! while the thread holds nothing, so that it never overtakes a batch. On the send
//! benchmark with a core to spare (kernel client <- source 19, plain TUN, `ustack bench
//! --quick`), 4.00/4.09/3.82 Gbit/s became 4.85/4.67/4.18 at the same process CPU per
//! Gbit (247/242/259 -> 247/255/168 ms); when other work keeps both cores busy, the
//! third runnable thread lost 10-15% instead (3.88/3.71 -> 3.38/3.26), so it is an
//! option, off by default. An idle thread sleeps in the channel and costs nothing.
//!
//! A failed write (the device went down, `EIO`; its queue was full, `EAGAIN`) cannot be
//! reported to the sender of that packet, whose [`crate::Link::send`] returned already:
//! it is counted ([`WriteStats::errors`]) and the packet is lost as a dropped one would
//! be; TCP retransmits it. The first error of a flush is also returned by it.
//!
//! The `io-uring` crate (tokio-rs) sets up and maps the ring, as for
//! [`crate::uring::BatchReader`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use io_uring::{opcode, types, IoUring};

/// Most packets written in one call; a round that queues more flushes as it goes.
pub const MAX_WRITE_BATCH: usize = 64;

/// What the writes through a [`BatchWriter`] came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// io_uring_enter(2) calls that issued writes.
    pub calls: u64,
    /// Packets written in batches.
    pub batched: u64,
    /// Lone packets written with write(2).
    pub single_writes: u64,
    /// Writes that failed (the packet is lost).
    pub errors: u64,
}

/// Queues packets and writes them many per system call (see the module doc).
pub struct BatchWriter {
    ring: IoUring,
    /// One buffer per packet of the batch being built: `slots[..queued]` hold the
    /// packets, each exactly as long.
    slots: Vec<Vec<u8>>,
    queued: usize,
    /// The ring failed: every packet goes with write(2).
    broken: bool,
    stats: WriteStats,
    /// With a writer thread: where a round's packets go at the flush.
    handoff: Option<Handoff>,
}

/// Batches a writer thread has been handed and not written yet, at most.
const HANDOFF_DEPTH: usize = 4;

/// The runtime's end of a writer thread (see [`BatchWriter::with_thread`]).
struct Handoff {
    batches: Option<SyncSender<Vec<Vec<u8>>>>,
    /// Written batches come back, their buffers to be reused.
    returned: Receiver<Vec<Vec<u8>>>,
    /// Batches handed over and not yet written: a lone packet goes inline only at 0.
    in_flight: Arc<AtomicUsize>,
    stats: Arc<Mutex<WriteStats>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Handoff {
    /// Closes the channel and waits until the thread has written what it holds.
    fn drop(&mut self) {
        self.batches.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("queued", &self.queued)
            .field("stats", &self.stats)
            .field("thread", &self.handoff.is_some())
            .finish()
    }
}

impl BatchWriter {
    /// A writer with its own ring; fails where io_uring is missing or disabled, and the
    /// caller then writes one packet per call.
    pub fn new() -> io::Result<BatchWriter> {
        Ok(BatchWriter {
            ring: IoUring::new(MAX_WRITE_BATCH as u32)?,
            slots: Vec::with_capacity(MAX_WRITE_BATCH),
            queued: 0,
            broken: false,
            stats: WriteStats::default(),
            handoff: None,
        })
    }

    /// A writer whose batches are written by a thread of its own on `fd` (the device's
    /// descriptor, duplicated): the kernel's receive path of the packets runs there, on
    /// another core, while the caller builds its next round. Packets keep their order: a
    /// lone packet is written inline only while the thread holds nothing.
    pub fn with_thread(fd: OwnedFd) -> io::Result<BatchWriter> {
        let mut writer = BatchWriter::new()?;
        let mut ring = IoUring::new(MAX_WRITE_BATCH as u32)?;
        let (batches, inbox) = sync_channel::<Vec<Vec<u8>>>(HANDOFF_DEPTH);
        let (give_back, returned) = std::sync::mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(Mutex::new(WriteStats::default()));
        let (thread_in_flight, thread_stats) = (Arc::clone(&in_flight), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("ustack-tx".into())
            .spawn(move || {
                let mut broken = false;
                let mut local = WriteStats::default();
                while let Ok(batch) = inbox.recv() {
                    let mut keep = true;
                    for chunk in batch.chunks(MAX_WRITE_BATCH) {
                        if broken || chunk.len() == 1 {
                            let _ = write_each(fd.as_fd(), chunk, &mut local);
                        } else if write_ring(&mut ring, fd.as_fd(), chunk, &mut local).is_err() {
                            broken = true;
                            keep = false;
                        }
                    }
                    *thread_stats.lock().unwrap_or_else(|e| e.into_inner()) = local;
                    thread_in_flight.fetch_sub(1, Ordering::Release);
                    if keep {
                        let _ = give_back.send(batch);
                    } else {
                        // Writes the ring did not reap may still read these buffers.
                        std::mem::forget(batch);
                    }
                }
            })?;
        writer.handoff = Some(Handoff {
            batches: Some(batches),
            returned,
            in_flight,
            stats,
            thread: Some(thread),
        });
        Ok(writer)
    }

    pub fn stats(&self) -> WriteStats {
        let mut stats = self.stats;
        if let Some(handoff) = &self.handoff {
            let t = *handoff.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.calls += t.calls;
            stats.batched += t.batched;
            stats.single_writes += t.single_writes;
            stats.errors += t.errors;
        }
        stats
    }

    /// Packets queued and not written yet.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Queues a copy of `packet` for the next [`BatchWriter::flush`] (which this call
    /// makes first if the batch is full).
    pub fn queue(&mut self, fd: BorrowedFd<'_>, packet: &[u8]) -> io::Result<()> {
        let (slot, flushed) = self.next_slot(fd);
        slot.clear();
        slot.extend_from_slice(packet);
        flushed
    }

    /// [`BatchWriter::queue`] without the copy: the packet's buffer, `packet` (exactly
    /// as long as the packet), takes a slot's place and that slot's buffer (contents
    /// unspecified) comes back in `packet` for the caller's next packet.
    pub fn queue_swap(&mut self, fd: BorrowedFd<'_>, packet: &mut Vec<u8>) -> io::Result<()> {
        let (slot, flushed) = self.next_slot(fd);
        std::mem::swap(slot, packet);
        flushed
    }

    /// The slot for the next packet, after a flush if the batch is full (its result).
    fn next_slot(&mut self, fd: BorrowedFd<'_>) -> (&mut Vec<u8>, io::Result<()>) {
        let flushed = if self.queued == MAX_WRITE_BATCH {
            self.flush(fd)
        } else {
            Ok(())
        };
        let i = self.queued;
        if self.slots.len() == i {
            self.slots.push(Vec::new());
        }
        self.queued += 1;
        (&mut self.slots[i], flushed)
    }

    /// Writes every queued packet, in the order queued: one write(2) for a lone one,
    /// else one io_uring_enter(2) for all. Every packet is tried; failures are counted
    /// and the first is returned.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let n = self.queued;
        self.queued = 0;
        if n == 0 {
            return Ok(());
        }
        if let Some(handoff) = self.handoff.as_mut() {
            if n > 1 || handoff.in_flight.load(Ordering::Acquire) > 0 {
                // The buffers of a written batch, or new ones, take the slots' place.
                let next = handoff.returned.try_recv().unwrap_or_default();
                let mut batch = std::mem::replace(&mut self.slots, next);
                self.slots.extend(batch.drain(n..));
                handoff.in_flight.fetch_add(1, Ordering::AcqRel);
                let sent = handoff.batches.as_ref().map(|tx| tx.send(batch));
                if !matches!(sent, Some(Ok(()))) {
                    handoff.in_flight.fetch_sub(1, Ordering::AcqRel);
                    self.stats.errors += n as u64;
                    return Err(io::Error::other("the writer thread is gone"));
                }
                return Ok(());
            }
        }
        if n == 1 || self.broken {
            return write_each(fd, &self.slots[..n], &mut self.stats);
        }
        match write_ring(&mut self.ring, fd, &self.slots[..n], &mut self.stats) {
            Ok(result) => result,
            Err(Broken(e)) => {
                // The ring cannot be trusted with the slots any more: the writes not
                // reaped may still read them. Keep them alive (leaked) and write
                // one packet per write(2) from now on.
                std::mem::forget(std::mem::take(&mut self.slots));
                self.broken = true;
                Err(e)
            }
        }
    }
}

/// io_uring_enter(2) itself failed with writes possibly still reading their buffers.
struct Broken(io::Error);

/// One write(2) per packet; failures counted, the first returned.
fn write_each(fd: BorrowedFd<'_>, packets: &[Vec<u8>], stats: &mut WriteStats) -> io::Result<()> {
    let mut first_error = None;
    for packet in packets {
        stats.single_writes += 1;
        if let Err(e) = nix::unistd::write(fd, packet) {
            stats.errors += 1;
            first_error.get_or_insert(io::Error::from(e));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Writes `packets` (at most [`MAX_WRITE_BATCH`]) as one batch of `IORING_OP_WRITE`s in
/// one io_uring_enter(2), in order, and reaps every completion. The outer error is a
/// failed ring; the inner one the first failed write.
fn write_ring(
    ring: &mut IoUring,
    fd: BorrowedFd<'_>,
    packets: &[Vec<u8>],
    stats: &mut WriteStats,
) -> Result<io::Result<()>, Broken> {
    let n = packets.len();
    let fd = types::Fd(fd.as_raw_fd());
    {
        let mut sq = ring.submission();
        for (i, packet) in packets.iter().enumerate() {
            let entry = opcode::Write::new(fd, packet.as_ptr(), packet.len() as u32)
                .build()
                .user_data(i as u64);
            // SAFETY: the packet stays alive and unchanged until the write's completion
            // is reaped below (the call waits for all `n`, or the caller leaks the
            // buffers on `Broken`); the ring has MAX_WRITE_BATCH >= n entries and is
            // empty between calls.
            if unsafe { sq.push(&entry) }.is_err() {
                return Ok(Err(io::Error::other("io_uring submission queue full")));
            }
        }
    }
    let mut first_error = None;
    let mut done = 0;
    while done < n {
        match ring.submit_and_wait(n - done) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                stats.errors += (n - done) as u64;
                return Err(Broken(e));
            }
        }
        for cqe in ring.completion() {
            done += 1;
            if cqe.result() < 0 {
                stats.errors += 1;
                first_error.get_or_insert(io::Error::from_raw_os_error(-cqe.result()));
            }
        }
    }
    stats.calls += 1;
    stats.batched += n as u64;
    Ok(first_error.map_or(Ok(()), Err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    /// Packets queued in a round come out in the order queued, the batch in one
    /// io_uring_enter(2), a lone packet with write(2), and nothing before the flush.
    /// (A pipe stands in for the device: both take one write per packet.)
    #[test]
    fn a_round_is_written_in_order_in_one_call() {
        let Ok(mut writer) = BatchWriter::new() else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let readable = |rx: &std::fs::File| {
            let mut fds = [nix::poll::PollFd::new(
                rx.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() > 0
        };
        let mut rx = std::fs::File::from(rx);
        let packets: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        for p in &packets {
            writer.queue(tx.as_fd(), p).unwrap();
        }
        assert_eq!(writer.queued(), packets.len());
        let mut buf = vec![0u8; 4096];
        assert!(!readable(&rx), "nothing is written before the flush");
        writer.flush(tx.as_fd()).unwrap();
        assert_eq!(writer.queued(), 0);
        let n = rx.read(&mut buf).unwrap();
        assert_eq!(buf[..n], packets.concat()[..]);
        let stats = writer.stats();
        assert_eq!(
            (stats.calls, stats.batched, stats.single_writes),
            (1, 40, 0)
        );
        // Without a copy: the caller gets a buffer of the writer's back.
        let mut owned = b"swapped".to_vec();
        writer.queue_swap(tx.as_fd(), &mut owned).unwrap();
        assert_ne!(owned, b"swapped");
        writer.queue(tx.as_fd(), b"two").unwrap();
        writer.flush(tx.as_fd()).unwrap();
        let n = rx.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"swappedtwo");
        assert_eq!(writer.stats().calls, 2);
        writer.queue(tx.as_fd(), b"one").unwrap();
        writer.flush(tx.as_fd()).unwrap();
        assert_eq!(rx.read(&mut buf).unwrap(), 3);
        assert_eq!(writer.stats().single_writes, 1);
        assert_eq!(writer.stats().calls, 2);
    }

    /// More than a batch in one round: the full batch goes out when the next packet is
    /// queued, the rest at the flush, all in order.
    #[test]
    fn a_long_round_flushes_as_it_goes() {
        let Ok(mut writer) = BatchWriter::new() else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let mut rx = std::fs::File::from(rx);
        let total = MAX_WRITE_BATCH + 5;
        for i in 0..total {
            writer.queue(tx.as_fd(), &(i as u32).to_be_bytes()).unwrap();
        }
        writer.flush(tx.as_fd()).unwrap();
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        let want: Vec<u8> = (0..total as u32).flat_map(u32::to_be_bytes).collect();
        assert_eq!(got, want);
        assert_eq!(writer.stats().calls, 2);
        assert_eq!(writer.stats().batched, total as u64);
    }

    /// With a writer thread: rounds keep their order whether they went through the
    /// thread (batches) or inline (a lone packet, only while the thread holds nothing),
    /// and dropping the writer waits until the thread has written everything.
    #[test]
    fn a_writer_thread_keeps_every_packet_in_order() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let Ok(mut writer) = BatchWriter::with_thread(tx.try_clone().unwrap()) else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let mut rx = std::fs::File::from(rx);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let mut want = Vec::new();
        let mut seq = 0u32;
        let mut owned = Vec::new();
        // Rounds of 1 to 150 packets (more than a ring's batch), some handed over without
        // a copy.
        for round in 0..200usize {
            let count = if round % 3 == 0 {
                1
            } else {
                (round * 37) % 150 + 1
            };
            for _ in 0..count {
                let packet = seq.to_be_bytes();
                want.extend_from_slice(&packet);
                if seq % 3 == 0 {
                    owned.clear();
                    owned.extend_from_slice(&packet);
                    writer.queue_swap(tx.as_fd(), &mut owned).unwrap();
                } else {
                    writer.queue(tx.as_fd(), &packet).unwrap();
                }
                seq += 1;
            }
            writer.flush(tx.as_fd()).unwrap();
        }
        drop(writer);
        drop(tx);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "a packet was reordered");
    }

    /// A lone packet with nothing handed over goes inline, as without a thread.
    #[test]
    fn a_lone_packet_goes_inline_while_the_thread_is_idle() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let Ok(mut writer) = BatchWriter::with_thread(tx.try_clone().unwrap()) else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let mut rx = std::fs::File::from(rx);
        writer.queue(tx.as_fd(), b"ping").unwrap();
        writer.flush(tx.as_fd()).unwrap();
        // Written before flush returned: no thread involved.
        let mut buf = [0u8; 16];
        assert_eq!(rx.read(&mut buf).unwrap(), 4);
        assert_eq!((writer.stats().single_writes, writer.stats().calls), (1, 0));
        writer.queue(tx.as_fd(), b"a").unwrap();
        writer.queue(tx.as_fd(), b"b").unwrap();
        writer.flush(tx.as_fd()).unwrap();
        drop(writer);
        assert_eq!(rx.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"ab");
    }

    /// A write that fails is counted and reported by the flush; the others still go.
    #[test]
    fn a_failed_write_is_counted() {
        let Ok(mut writer) = BatchWriter::new() else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let (rx, tx) = nix::unistd::pipe().unwrap();
        drop(rx);
        // The reader is gone: every write fails with EPIPE (SIGPIPE blocked on this
        // thread, which the io_uring writes run on).
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGPIPE);
        set.thread_block().unwrap();
        writer.queue(tx.as_fd(), b"a").unwrap();
        writer.queue(tx.as_fd(), b"b").unwrap();
        assert!(writer.flush(tx.as_fd()).is_err());
        assert_eq!(writer.stats().errors, 2);
    }
}
