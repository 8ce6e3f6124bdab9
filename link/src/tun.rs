//! `TunLink`: a Linux TUN device (bare IPv4 packets, `IFF_TUN | IFF_NO_PI`) or TAP device
//! (Ethernet II frames, `IFF_TAP | IFF_NO_PI`), read and written without blocking; a
//! driver sleeps on [`Link::fd`] with [`crate::poll`].
//!
//! The device is opened with std and read and written as a file. The one call nix has no
//! safe wrapper for is the TUNSETIFF ioctl: nix only generates the (unsafe) function for
//! it, since the kernel reads an `ifreq` through the pointer; that `unsafe` stays here.
//!
//! **Offload** ([`TunLink::open_offload`]): `IFF_VNET_HDR` puts a `struct virtio_net_hdr`
//! ([`crate::vnet`]) before every packet, TUNSETVNETHDRSZ sets its size (10 bytes) and
//! TUNSETOFFLOAD enables `TUN_F_CSUM | TUN_F_TSO4`: the kernel then hands over its
//! GRO/GSO TCP super-segments (up to 64 KiB, partial checksum) and splits the TSO
//! super-segments we write. The three ioctls are our own, through nix's ioctl macros,
//! rather than the `tun-rs` crate's offload path: this file already opens the device with
//! one ioctl and std, `tun-rs` would replace that and bring its own device, async and
//! GRO-table layers the stack does not use, and the virtio header is ten bytes
//! ([`crate::vnet`] parses and writes it, with counted drops). The header and the packet
//! go in one `readv`/`writev` so that neither is copied to sit beside the other.
//!
//! **Batched reads**: without offload every packet is a read of its own, so the device
//! is read through a [`BatchReader`] (io_uring) where the kernel allows it: up to 32
//! reads per system call, each packet handed over in the buffer it was read into
//! ([`Link::recv_swap`]).
//!
//! **Batched writes**: likewise, once the driver flushes its rounds ([`Link::flush`]),
//! the packets of a round are written through a [`BatchWriter`] (io_uring), all in one
//! system call at the flush; a lone packet is still one write(2). With
//! [`TunLink::use_writer_thread`] a thread of their own writes the batches.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::link::{Capabilities, Link, LinkError, Medium, RxOffload, TxInfo, ETHERNET_HEADER_LEN};
use crate::time::Instant;
use crate::uring::{BatchReader, BatchStats};
use crate::uring_tx::{BatchWriter, WriteStats};
use crate::vnet::{TsoHeaders, VnetHeader, VnetStats, VNET_HDR_LEN};

// TUNSETIFF is `_IOW('T', 202, int)` in linux/if_tun.h although the kernel reads a whole
// `struct ifreq`: the request code is built from the size of an int (a "bad" ioctl in
// nix's terms), the argument is a pointer to the ifreq.
nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);
// TUNSETVNETHDRSZ is `_IOW('T', 216, int)`: the kernel reads an int through the pointer.
nix::ioctl_write_ptr!(tun_set_vnet_hdr_sz, b'T', 216, libc::c_int);
// TUNSETOFFLOAD is `_IOW('T', 208, unsigned int)` but takes the flags by value.
nix::ioctl_write_int!(tun_set_offload, b'T', 208);

/// The largest IPv4 packet: what GRO hands over and TSO takes with offload.
const MAX_OFFLOAD_PACKET: usize = 65535;

/// A TUN or TAP device owned by this process; it disappears when dropped (unless
/// persistent).
#[derive(Debug)]
pub struct TunLink {
    file: File,
    name: String,
    mtu: usize,
    medium: Medium,
    /// With offload (`IFF_VNET_HDR`): what went through the virtio headers.
    vnet: Option<VnetStats>,
    /// Without offload, where io_uring is available: many reads per system call.
    batch: Option<BatchReader>,
    /// Without offload, where io_uring is available: many writes per system call.
    writer: Option<BatchWriter>,
    /// The driver calls [`Link::flush`]: sends may wait for it in the writer.
    flushed: bool,
}

impl TunLink {
    /// Creates (or attaches to) the TUN device `name`. Needs CAP_NET_ADMIN.
    pub fn open(name: &str, mtu: usize) -> io::Result<TunLink> {
        TunLink::open_as(name, mtu, Medium::Ip, false, false)
    }

    /// The TUN device `name` with `queues` queues (IFF_MULTI_QUEUE, Linux's
    /// `Documentation/networking/tuntap.rst` section 3.3): one descriptor, and so one
    /// `TunLink`, per queue. The kernel picks a queue per flow (`tun_automq_select_queue`:
    /// the queue that last sent the flow's packets, else the flow's hash), so every
    /// packet of one TCP connection arrives on the queue that answers it. One queue is
    /// the plain device of [`TunLink::open`].
    pub fn open_queues(
        name: &str,
        mtu: usize,
        queues: usize,
        offload: bool,
    ) -> io::Result<Vec<TunLink>> {
        let multi = queues > 1;
        (0..queues.max(1))
            .map(|_| TunLink::open_as(name, mtu, Medium::Ip, offload, multi))
            .collect()
    }

    /// [`TunLink::open`] with checksum and segmentation offload: IFF_VNET_HDR, a 10-byte
    /// virtio header (TUNSETVNETHDRSZ), and TUNSETOFFLOAD with `TUN_F_CSUM | TUN_F_TSO4`
    /// (IPv4 only, so no TSO6). Packets of up to 64 KiB go both ways.
    pub fn open_offload(name: &str, mtu: usize) -> io::Result<TunLink> {
        TunLink::open_as(name, mtu, Medium::Ip, true, false)
    }

    /// With offload, the counts of super-segments in and out and of malformed headers.
    pub fn vnet_stats(&self) -> Option<&VnetStats> {
        self.vnet.as_ref()
    }

    /// Creates (or attaches to) the TAP device `name`: Ethernet frames of up to `mtu`
    /// bytes of payload. The device's own MAC is the kernel's side; the stack on it
    /// picks another one for itself. Needs CAP_NET_ADMIN.
    pub fn open_tap(name: &str, mtu: usize) -> io::Result<TunLink> {
        TunLink::open_as(name, mtu, Medium::Ethernet, false, false)
    }

    fn open_as(
        name: &str,
        mtu: usize,
        medium: Medium,
        offload: bool,
        multi_queue: bool,
    ) -> io::Result<TunLink> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a valid interface name (1 to 15 bytes)"),
            ));
        }
        // std opens with O_CLOEXEC.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e}")))?;
        let (mode, kind) = match medium {
            Medium::Ip => (libc::IFF_TUN, "TUN"),
            Medium::Ethernet => (libc::IFF_TAP, "TAP"),
        };
        let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let req = libc::ifreq {
            ifr_name,
            ifr_ifru: libc::__c_anonymous_ifr_ifru {
                ifru_flags: (mode
                    | libc::IFF_NO_PI
                    | if offload { libc::IFF_VNET_HDR } else { 0 }
                    | if multi_queue {
                        libc::IFF_MULTI_QUEUE
                    } else {
                        0
                    }) as libc::c_short,
            },
        };
        // SAFETY: `file` is an open /dev/net/tun descriptor and `req` a fully initialised
        // ifreq that lives across the call; the kernel only reads it.
        unsafe { tun_set_iff(file.as_raw_fd(), &req) }.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot create {kind} device {name}: {e}"),
            )
        })?;
        if offload {
            let len = VNET_HDR_LEN as libc::c_int;
            let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
            // SAFETY: `file` is the TUN descriptor just set up; TUNSETVNETHDRSZ reads the
            // int `len` points to during the call, TUNSETOFFLOAD takes its flags by value.
            unsafe { tun_set_vnet_hdr_sz(file.as_raw_fd(), &len) }
                .and_then(|_| unsafe {
                    tun_set_offload(
                        file.as_raw_fd(),
                        features as nix::sys::ioctl::ioctl_param_type,
                    )
                })
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot enable checksum and segmentation offload on {name}: {e}"),
                    )
                })?;
        }
        // A device without offload hands over one packet per read; with offload one
        // read carries up to 64 KiB and batching gains little.
        let batch = if offload {
            None
        } else {
            BatchReader::new().ok().map(|mut reader| {
                // The link owns the device's file as long as the reader.
                reader.register_file(file.as_fd());
                reader
            })
        };
        Ok(TunLink {
            file,
            name: name.to_string(),
            mtu,
            medium,
            vnet: offload.then(VnetStats::default),
            batch,
            writer: if offload {
                None
            } else {
                BatchWriter::new().ok()
            },
            flushed: false,
        })
    }

    /// Writes `parts` (virtio header, then the packet in pieces) as one packet.
    fn write_parts(&mut self, parts: &[IoSlice<'_>]) -> Result<TxInfo, LinkError> {
        match nix::sys::uio::writev(&self.file, parts) {
            Ok(_) => Ok(TxInfo::default()),
            Err(nix::errno::Errno::EAGAIN) => Err(LinkError::WouldBlock),
            Err(e) => Err(LinkError::Io(e.into())),
        }
    }

    /// Without offload: `TooBig` for a packet (or frame) longer than the MTU allows.
    fn fits(&self, packet: &[u8]) -> Result<(), LinkError> {
        let max = match self.medium {
            Medium::Ip => self.mtu,
            Medium::Ethernet => self.mtu + ETHERNET_HEADER_LEN,
        };
        if packet.len() > max {
            return Err(LinkError::TooBig {
                len: packet.len(),
                mtu: max,
            });
        }
        Ok(())
    }

    /// Reads one packet after its virtio header, dropping (and counting) those whose
    /// header is malformed.
    fn recv_vnet(&mut self, buf: &mut [u8]) -> Result<Option<(usize, RxOffload)>, LinkError> {
        loop {
            let mut hdr = [0u8; VNET_HDR_LEN];
            let n = {
                let mut parts = [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)];
                match nix::sys::uio::readv(&self.file, &mut parts) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
                    Err(e) => return Err(LinkError::Io(e.into())),
                }
            };
            let stats = self.vnet.as_mut().expect("recv_vnet on an offload device");
            let len = n.saturating_sub(VNET_HDR_LEN);
            let header = match VnetHeader::parse(&hdr[..n.min(VNET_HDR_LEN)], len) {
                Ok(header) => header,
                Err(reason) => {
                    stats.drops.increment(reason);
                    continue;
                }
            };
            let offload = RxOffload {
                checksum_trusted: header.checksum_trusted(),
                segment_size: header.segment_size(),
            };
            if offload.checksum_trusted {
                stats.csum_trusted_in += 1;
            }
            if offload.segment_size > 0 {
                stats.gso_in += 1;
                let payload = len.saturating_sub(usize::from(header.hdr_len));
                stats.gso_in_segments +=
                    payload.div_ceil(usize::from(offload.segment_size)).max(1) as u64;
            }
            return Ok(Some((len, offload)));
        }
    }

    /// Without offload: batches of writes go through a writer thread of their own (see
    /// [`BatchWriter::with_thread`]), which takes the kernel's receive work of every
    /// packet off the caller's thread. Fails where io_uring is missing, and on a device
    /// with offload, whose writes are one super-segment each.
    pub fn use_writer_thread(&mut self) -> io::Result<()> {
        if self.vnet.is_some() || self.writer.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: a writer thread needs batched writes (io_uring, no offload)",
                    self.name
                ),
            ));
        }
        let threaded = BatchWriter::with_thread(self.file.try_clone()?.into())?;
        if let Some(mut old) = self.writer.replace(threaded) {
            // What it holds goes first.
            old.flush(self.file.as_fd())?;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Without offload: how the device's reads were batched through io_uring (`None`
    /// where io_uring is not available and every read is a read(2)).
    pub fn batch_stats(&self) -> Option<BatchStats> {
        self.batch.as_ref().map(BatchReader::stats)
    }

    /// Without offload: how the device's writes were batched through io_uring (`None`
    /// where io_uring is not available and every write is a write(2)).
    pub fn write_stats(&self) -> Option<WriteStats> {
        self.writer.as_ref().map(BatchWriter::stats)
    }
}

impl Link for TunLink {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
        if self.vnet.is_some() {
            if packet.len() > self.mtu {
                return Err(LinkError::TooBig {
                    len: packet.len(),
                    mtu: self.mtu,
                });
            }
            // Everything that is not a TSO super-segment goes with a zero header: no
            // segmentation, checksums complete.
            let hdr = VnetHeader::default().to_bytes();
            return self.write_parts(&[IoSlice::new(&hdr), IoSlice::new(packet)]);
        }
        self.fits(packet)?;
        if let Some(writer) = self.writer.as_mut().filter(|_| self.flushed) {
            return writer
                .queue(self.file.as_fd(), packet)
                .map(|()| TxInfo::default())
                .map_err(LinkError::Io);
        }
        match self.file.write(packet) {
            Ok(_) => Ok(TxInfo::default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(LinkError::WouldBlock),
            Err(e) => Err(LinkError::Io(e)),
        }
    }

    /// Queued for the flush in the writer without a copy ([`BatchWriter::queue_swap`])
    /// where [`Link::send`] would queue a copy; else as [`Link::send`].
    fn send_swap(&mut self, now: Instant, buf: &mut Vec<u8>) -> Result<TxInfo, LinkError> {
        if self.vnet.is_some() || !self.flushed || self.writer.is_none() {
            return self.send(now, buf);
        }
        self.fits(buf)?;
        let writer = self.writer.as_mut().expect("checked above");
        writer
            .queue_swap(self.file.as_fd(), buf)
            .map(|()| TxInfo::default())
            .map_err(LinkError::Io)
    }

    /// Writes what the writer holds (see [`BatchWriter::flush`]); from the first call
    /// on, [`Link::send`] queues packets for the next one.
    fn flush(&mut self, _now: Instant) -> Result<(), LinkError> {
        self.flushed = true;
        match self.writer.as_mut() {
            Some(writer) => writer.flush(self.file.as_fd()).map_err(LinkError::Io),
            None => Ok(()),
        }
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        if self.vnet.is_some() {
            return Ok(self.recv_offload(now, buf)?.map(|(n, _)| n));
        }
        if let Some(batch) = self.batch.as_mut() {
            return batch.recv(self.file.as_fd(), buf).map_err(LinkError::Io);
        }
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(LinkError::Io(e)),
        }
    }

    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        None
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn capabilities(&self) -> Capabilities {
        match self.vnet {
            Some(_) => Capabilities {
                tso_max: MAX_OFFLOAD_PACKET,
            },
            None => Capabilities::default(),
        }
    }

    fn recv_offload(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<(usize, RxOffload)>, LinkError> {
        if self.vnet.is_some() {
            return self.recv_vnet(buf);
        }
        Ok(self.recv(now, buf)?.map(|n| (n, RxOffload::default())))
    }

    /// Without offload and with io_uring, the buffer the packet was read into in a batch
    /// replaces `buf` ([`BatchReader::recv_swap`]); else as [`Link::recv_offload`].
    fn recv_swap(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(usize, RxOffload)>, LinkError> {
        match self.batch.as_mut() {
            Some(batch) => Ok(batch
                .recv_swap(self.file.as_fd(), buf)
                .map_err(LinkError::Io)?
                .map(|n| (n, RxOffload::default()))),
            None => self.recv_offload(now, buf),
        }
    }

    /// With offload, a TCP/IPv4 packet longer than the MTU goes with a virtio header
    /// asking the kernel to cut it into `segment_size` segments and checksum them
    /// (`NEEDS_CSUM`, `GSO_TCPV4`); anything else as [`Link::send`] sends it.
    fn send_offload(
        &mut self,
        now: Instant,
        packet: &[u8],
        segment_size: u16,
    ) -> Result<TxInfo, LinkError> {
        if self.vnet.is_none() || packet.len() <= self.mtu {
            return self.send(now, packet);
        }
        if packet.len() > MAX_OFFLOAD_PACKET {
            return Err(LinkError::TooBig {
                len: packet.len(),
                mtu: MAX_OFFLOAD_PACKET,
            });
        }
        let Some(tso) = TsoHeaders::new(packet, segment_size) else {
            return Err(LinkError::TooBig {
                len: packet.len(),
                mtu: self.mtu,
            });
        };
        let hdr = tso.vnet.to_bytes();
        let info = self.write_parts(&[
            IoSlice::new(&hdr),
            IoSlice::new(tso.headers()),
            IoSlice::new(&packet[tso.headers().len()..]),
        ])?;
        if let Some(stats) = self.vnet.as_mut() {
            stats.gso_out += 1;
            stats.gso_out_segments += tso.segments(packet.len());
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        assert_eq!(
            TunLink::open("", 1500).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            TunLink::open("a-name-far-too-long", 1500)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    /// A TAP device carries Ethernet frames: the kernel, pinging an address out of it,
    /// broadcasts an ARP request (RFC 826) from the device's MAC, and the link refuses a
    /// frame longer than MTU plus the Ethernet header.
    #[test]
    fn a_tap_device_carries_ethernet_frames_rfc826() {
        use crate::testnet::{mac_of, must, own_netns, recv_ethertype, skip_unless_root};
        if skip_unless_root() {
            return;
        }
        own_netns();
        let mut tap = TunLink::open_tap("utap0", 1500).unwrap();
        assert_eq!(tap.medium(), Medium::Ethernet);
        assert!(must(&["ip", "-d", "link", "show", "utap0"]).contains("tap"));
        must(&["ip", "addr", "add", "198.18.9.1/24", "dev", "utap0"]);
        must(&["ip", "link", "set", "utap0", "up"]);
        let mut ping = std::process::Command::new("ping")
            .args(["-c", "2", "-i", "0.3", "-W", "1", "198.18.9.2"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let request = recv_ethertype(&mut tap, 0x0806);
        let _ = ping.kill();
        let _ = ping.wait();
        assert_eq!(&request[..6], &[0xff; 6]);
        assert_eq!(&request[6..12], &mac_of("utap0"));
        assert_eq!(&request[38..42], &[198, 18, 9, 2]);
        assert!(matches!(
            tap.send(Instant::ZERO, &[0; 1515]),
            Err(LinkError::TooBig {
                len: 1515,
                mtu: 1514
            })
        ));
        assert_eq!(TunLink::open("utun0", 1500).unwrap().medium(), Medium::Ip);
    }

    /// Without offload, packets the kernel queued on the device come out one per call,
    /// whole and in the order sent, though many are read per system call (io_uring); a
    /// short buffer cuts a packet as read(2) would.
    #[test]
    fn queued_packets_are_read_in_batches_in_order() {
        use crate::poll::wait_readable;
        use crate::testnet::{must, own_netns, skip_unless_root};
        use crate::time::Duration;
        if skip_unless_root() {
            return;
        }
        own_netns();
        let mut tun = TunLink::open("utun1", 1500).unwrap();
        if tun.batch_stats().is_none() {
            eprintln!("skipped: io_uring is not available here");
            return;
        }
        must(&["ip", "addr", "add", "198.18.9.1/24", "dev", "utun1"]);
        must(&["ip", "link", "set", "utun1", "up"]);
        let socket = std::net::UdpSocket::bind("198.18.9.1:0").unwrap();
        const SENT: u32 = 200;
        for i in 0..SENT {
            socket.send_to(&i.to_be_bytes(), "198.18.9.2:9").unwrap();
        }
        let mut buf = vec![0u8; 2048];
        let mut next = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while next < SENT && std::time::Instant::now() < deadline {
            wait_readable([tun.fd().unwrap()], Duration::from_millis(100)).unwrap();
            while let Some((n, _)) = tun.recv_swap(Instant::ZERO, &mut buf).unwrap() {
                assert!(buf.len() >= 2048, "the buffer handed over is as long");
                let packet = &buf[..n];
                // IPv4 to 198.18.9.2, UDP to port 9 (the kernel may send others).
                if n == 20 + 8 + 4 && packet[9] == 17 && packet[16..20] == [198, 18, 9, 2] {
                    assert_eq!(packet[22..24], 9u16.to_be_bytes());
                    assert_eq!(packet[28..32], next.to_be_bytes(), "in order");
                    next += 1;
                }
            }
        }
        assert_eq!(next, SENT, "every datagram arrived");
        let stats = tun.batch_stats().unwrap();
        assert!(stats.packets >= u64::from(SENT), "{stats:?}");
        assert!(stats.calls * 4 < stats.packets, "{stats:?}");
        // A buffer shorter than the packet: cut to the buffer, as read(2) cuts it.
        socket.send_to(&[7u8; 100], "198.18.9.2:9").unwrap();
        let mut short = [0u8; 24];
        let mut got = None;
        while got.is_none() && std::time::Instant::now() < deadline {
            wait_readable([tun.fd().unwrap()], Duration::from_millis(100)).unwrap();
            while let Some(n) = tun.recv(Instant::ZERO, &mut short).unwrap() {
                if short[9] == 17 && short[16..20] == [198, 18, 9, 2] {
                    got = Some(n);
                }
            }
        }
        assert_eq!(got, Some(24));
    }

    /// Without offload, a driver that flushes its rounds gets each round's packets
    /// written in one io_uring call, in order; before its first flush (a driver that
    /// never flushes) every packet goes at once with write(2).
    #[test]
    fn a_flushed_round_is_written_in_one_call_in_order() {
        use crate::testnet::{must, own_netns, skip_unless_root};
        if skip_unless_root() {
            return;
        }
        own_netns();
        let mut tun = TunLink::open("utun2", 1500).unwrap();
        if tun.write_stats().is_none() {
            eprintln!("skipped: io_uring is not available here");
            return;
        }
        must(&["ip", "addr", "add", "198.18.9.1/24", "dev", "utun2"]);
        must(&["ip", "link", "set", "utun2", "up"]);
        let socket = std::net::UdpSocket::bind("198.18.9.1:5009").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        // 198.18.9.2:7 -> 198.18.9.1:5009, UDP checksum 0 (none, RFC 768).
        let datagram = |i: u32| {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ipv4([198, 18, 9, 2], [198, 18, 9, 1], 64)
                .udp(7, 5009)
                .write(&mut out, &i.to_be_bytes())
                .unwrap();
            out
        };
        let next = |socket: &std::net::UdpSocket| {
            let mut buf = [0u8; 16];
            let n = socket.recv(&mut buf).unwrap();
            u32::from_be_bytes(buf[..n].try_into().unwrap())
        };
        tun.send(Instant::ZERO, &datagram(0)).unwrap();
        assert_eq!(next(&socket), 0, "sent before any flush");
        tun.flush(Instant::ZERO).unwrap();
        const ROUND: u32 = 20;
        for i in 1..=ROUND {
            // Copied into the writer, or (every other one) handed over in its buffer.
            if i % 2 == 0 {
                tun.send_swap(Instant::ZERO, &mut datagram(i)).unwrap();
            } else {
                tun.send(Instant::ZERO, &datagram(i)).unwrap();
            }
        }
        let before = tun.write_stats().unwrap();
        assert_eq!(before.batched, 0, "held until the flush");
        tun.flush(Instant::ZERO).unwrap();
        for i in 1..=ROUND {
            assert_eq!(next(&socket), i, "in order");
        }
        let stats = tun.write_stats().unwrap();
        assert_eq!(
            (stats.calls, stats.batched, stats.errors),
            (1, u64::from(ROUND), 0)
        );
        // A lone packet in a round: one write(2).
        tun.send(Instant::ZERO, &datagram(99)).unwrap();
        tun.flush(Instant::ZERO).unwrap();
        assert_eq!(next(&socket), 99);
        assert_eq!(tun.write_stats().unwrap().single_writes, 1);
    }
}
