//! `RawLink`: an AF_PACKET `SOCK_RAW` socket bound to one Ethernet interface, carrying
//! whole Ethernet II frames (packet(7)). Non-blocking; a driver sleeps on [`Link::fd`]
//! with [`crate::poll`].
//!
//! Why nix and not pnet's `datalink` (the design card's first idea): pnet's channel hides
//! its descriptor behind a blocking (or timed) iterator, so the runtime could not put it
//! in the one poll(2) set it sleeps on beside its waker, and would need a reader thread
//! and a queue per device. With nix the socket is a plain non-blocking descriptor, read
//! and written on the runtime's own thread like a TUN device, with no extra dependency.
//!
//! Set-up rules the kernel imposes (README, "On a raw interface"):
//! - the stack needs an address that the kernel does not own on that interface, or both
//!   answer ARP and TCP for it;
//! - the sending peer must not hand over GSO super-frames or frames with partial
//!   checksums: on a veth pair, `ethtool -K PEER tso off gso off tx off` on the other end
//!   (a packet socket sees a TSO frame as one frame of up to 64 KiB).
//!
//! nix has safe wrappers for socket, bind, send and recv; what it lacks (a constructor
//! for `sockaddr_ll`, the `PACKET_*` socket options, the `SIOCGIF*` ioctls' bodies) is
//! done with `unsafe` here, each with its reason.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    bind, recv, send, setsockopt, socket, sockopt, AddressFamily, LinkAddr, MsgFlags, SockFlag,
    SockType, SockaddrLike,
};

use crate::link::{Link, LinkError, Medium, TxInfo, ETHERNET_HEADER_LEN};
use crate::time::Instant;

// SIOCGIFMTU and SIOCGIFHWADDR read a `struct ifreq` (netdevice(7)); nix generates only
// the unsafe call, since the kernel writes through the pointer.
nix::ioctl_read_bad!(siocgifmtu, libc::SIOCGIFMTU, libc::ifreq);
nix::ioctl_read_bad!(siocgifhwaddr, libc::SIOCGIFHWADDR, libc::ifreq);
nix::ioctl_read_bad!(siocgifflags, libc::SIOCGIFFLAGS, libc::ifreq);

/// Receive buffer of the socket: the default (`net.core.rmem_default`, about 200 KiB,
/// some 90 full frames at their kernel size) overflows under a kernel TCP sender at line
/// rate on a veth pair, and every frame lost there is a retransmission.
const RECV_BUFFER: usize = 4 << 20;

/// An AF_PACKET socket bound to one interface.
#[derive(Debug)]
pub struct RawLink {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
    mtu: usize,
    mac: [u8; 6],
    promiscuous: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn os_error(what: &str, name: &str, e: Errno) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{what} {name}: {e}"))
}

/// An all-zero `ifreq` naming `name` (checked to fit, so NUL-terminated).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value (and leaves no byte of
    // the union uninitialised for the kernel to read).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// `sockaddr_ll` for bind(2): every protocol (ETH_P_ALL) on interface `ifindex`.
fn bind_addr(ifindex: u32) -> LinkAddr {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: nix's LinkAddr has no constructor, only `from_raw`; the pointer is to a
    // live, initialised sockaddr_ll of exactly `len` bytes with family AF_PACKET.
    unsafe { LinkAddr::from_raw(std::ptr::addr_of!(sll).cast(), Some(len)) }
        .expect("a sockaddr_ll of the right size and family")
}

/// setsockopt(SOL_PACKET, `opt`, `value`); nix has no sockopt for the PACKET_* options.
fn set_packet_opt<T>(fd: BorrowedFd<'_>, opt: libc::c_int, value: &T) -> Result<(), Errno> {
    // SAFETY: `value` is a live `T` of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

impl RawLink {
    /// Opens an AF_PACKET socket on the Ethernet interface `name`, which must exist and
    /// be up. With `promiscuous`, the interface also passes frames addressed to other
    /// MACs (PACKET_MR_PROMISC, undone when the link is dropped). Frames the socket sends
    /// are not received back (PACKET_IGNORE_OUTGOING). Needs CAP_NET_RAW.
    pub fn open(name: &str, promiscuous: bool) -> io::Result<RawLink> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(invalid(format!(
                "`{name}` is not a valid interface name (1 to 15 bytes)"
            )));
        }
        let ifindex =
            if_nametoindex(name).map_err(|e| os_error("there is no interface", name, e))?;
        // Protocol 0 until bind: a socket created with ETH_P_ALL would receive from every
        // interface in the window between socket(2) and bind(2).
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| os_error("cannot open a packet socket for", name, e))?;
        let mut req = ifreq(name);
        // SAFETY: `req` is an initialised ifreq naming the interface; the kernel writes
        // the hardware address into it.
        unsafe { siocgifhwaddr(fd.as_raw_fd(), &mut req) }
            .map_err(|e| os_error("cannot read the hardware address of", name, e))?;
        // SAFETY: SIOCGIFHWADDR filled `ifru_hwaddr`.
        let hwaddr = unsafe { req.ifr_ifru.ifru_hwaddr };
        if hwaddr.sa_family != libc::ARPHRD_ETHER {
            return Err(invalid(format!(
                "{name} is not an Ethernet interface (hardware type {}); for a TUN device use --tun",
                hwaddr.sa_family
            )));
        }
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(hwaddr.sa_data) {
            *dst = src as u8;
        }
        let mut req = ifreq(name);
        // SAFETY: as above; the kernel writes `ifru_flags`.
        unsafe { siocgifflags(fd.as_raw_fd(), &mut req) }
            .map_err(|e| os_error("cannot read the flags of", name, e))?;
        // SAFETY: SIOCGIFFLAGS filled `ifru_flags`.
        if libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags }) & libc::IFF_UP == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{name} is down; bring it up first: ip link set {name} up"),
            ));
        }
        let mut req = ifreq(name);
        // SAFETY: as above; the kernel writes `ifru_mtu`.
        unsafe { siocgifmtu(fd.as_raw_fd(), &mut req) }
            .map_err(|e| os_error("cannot read the MTU of", name, e))?;
        // SAFETY: SIOCGIFMTU filled `ifru_mtu`.
        let mtu = usize::try_from(unsafe { req.ifr_ifru.ifru_mtu }).unwrap_or(0);
        // Linux 4.20 and later; without it the stack would read back every frame it sends.
        set_packet_opt(fd.as_fd(), libc::PACKET_IGNORE_OUTGOING, &1 as &libc::c_int)
            .map_err(|e| os_error("cannot ignore outgoing frames on", name, e))?;
        // SO_RCVBUFFORCE passes net.core.rmem_max (we have CAP_NET_ADMIN as root);
        // without it, SO_RCVBUF up to that limit; a small buffer only costs speed.
        if setsockopt(&fd, sockopt::RcvBufForce, &RECV_BUFFER).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RECV_BUFFER);
        }
        bind(fd.as_raw_fd(), &bind_addr(ifindex))
            .map_err(|e| os_error("cannot bind a packet socket to", name, e))?;
        if promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as libc::c_int,
                mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            set_packet_opt(fd.as_fd(), libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|e| os_error("cannot make promiscuous", name, e))?;
        }
        Ok(RawLink {
            fd,
            name: name.to_string(),
            ifindex,
            mtu,
            mac,
            promiscuous,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's MAC address, which the stack sends from.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn is_promiscuous(&self) -> bool {
        self.promiscuous
    }
}

impl Link for RawLink {
    fn medium(&self) -> Medium {
        Medium::Ethernet
    }

    /// The interface's MTU (frame payload), read when the link was opened.
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, _now: Instant, frame: &[u8]) -> Result<TxInfo, LinkError> {
        if frame.len() > self.mtu + ETHERNET_HEADER_LEN {
            return Err(LinkError::TooBig {
                len: frame.len(),
                mtu: self.mtu + ETHERNET_HEADER_LEN,
            });
        }
        match send(self.fd.as_raw_fd(), frame, MsgFlags::empty()) {
            Ok(_) => Ok(TxInfo::default()),
            // ENOBUFS: the device queue (or a veth peer's backlog) is full.
            Err(Errno::EAGAIN | Errno::ENOBUFS) => Err(LinkError::WouldBlock),
            Err(e) => Err(LinkError::Io(os_error("cannot send on", &self.name, e))),
        }
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        // MSG_TRUNC: a packet socket then returns the frame's real length, so a frame
        // larger than `buf` is reported, not silently cut.
        match recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
            Ok(n) if n > buf.len() => Err(LinkError::BufferTooSmall {
                len: n,
                buf: buf.len(),
            }),
            Ok(n) => Ok(Some(n)),
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
            Err(e) => Err(LinkError::Io(os_error("cannot receive on", &self.name, e))),
        }
    }

    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        None
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::testnet::{mac_of, must, own_netns, recv_ethertype, skip_unless_root};

    #[test]
    fn bad_and_missing_names_are_refused() {
        assert_eq!(
            RawLink::open("", false).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            RawLink::open("a-name-far-too-long", false)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let err = RawLink::open("ustk-none0", false).unwrap_err();
        assert!(err.to_string().contains("no interface"), "{err}");
    }

    /// A network namespace of this thread's own with a veth pair in it: `ua` (no
    /// address, ours) and `ub` (198.18.9.1/24, the kernel's).
    fn veth_in_own_netns() {
        own_netns();
        must(&[
            "ip", "link", "add", "ua", "type", "veth", "peer", "name", "ub",
        ]);
        must(&["ip", "link", "set", "ua", "mtu", "1400", "up"]);
        must(&["ip", "addr", "add", "198.18.9.1/24", "dev", "ub"]);
        must(&["ip", "link", "set", "ub", "mtu", "1400", "up"]);
    }

    /// The kernel, pinging an address nobody owns out of `ub`, broadcasts an ARP request
    /// (RFC 826) that arrives on our socket on `ua`; our hand-made reply makes the kernel
    /// send the echo request to our MAC, and no frame sent from our MAC (our reply, the
    /// kernel's own) comes back to us (PACKET_IGNORE_OUTGOING). MTU and MAC are the
    /// interface's.
    #[test]
    fn frames_cross_a_veth_pair_both_ways_rfc826() {
        if skip_unless_root() {
            return;
        }
        veth_in_own_netns();
        let mut link = RawLink::open("ua", false).unwrap();
        assert_eq!(link.medium(), Medium::Ethernet);
        assert_eq!(link.mtu(), 1400);
        assert_eq!(link.mac(), mac_of("ua"));
        let kernel_mac = mac_of("ub");
        let mut ping = Command::new("ping")
            .args(["-c", "3", "-i", "0.3", "-W", "1", "198.18.9.2"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let request = recv_ethertype(&mut link, 0x0806);
        assert_eq!(&request[..6], &[0xff; 6], "an ARP request is broadcast");
        assert_eq!(&request[6..12], &kernel_mac);
        assert_eq!(&request[20..22], &[0, 1], "opcode request");
        assert_eq!(
            &request[38..42],
            &[198, 18, 9, 2],
            "target protocol address"
        );
        // The reply: Ethernet header, then hardware type 1, protocol 0x0800, lengths 6
        // and 4, opcode 2, sender (our MAC, 198.18.9.2), target (the requester).
        let mut reply = Vec::new();
        reply.extend_from_slice(&kernel_mac);
        reply.extend_from_slice(&link.mac());
        reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        reply.extend_from_slice(&link.mac());
        reply.extend_from_slice(&[198, 18, 9, 2]);
        reply.extend_from_slice(&kernel_mac);
        reply.extend_from_slice(&[198, 18, 9, 1]);
        link.send(Instant::ZERO, &reply).unwrap();
        // Nothing sent from our MAC comes back: not our reply, not the kernel's own
        // frames out of `ua` (both are outgoing on the interface).
        let mut seen = Vec::new();
        let mut buf = vec![0; 2048];
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        while std::time::Instant::now() < until {
            if let Some(n) = link.recv(Instant::ZERO, &mut buf).unwrap() {
                seen.push(buf[..n].to_vec());
            }
        }
        assert!(seen.iter().all(|f| f[6..12] != link.mac()), "{seen:?}");
        let echo = match seen.iter().find(|f| f[12..14] == [0x08, 0x00]) {
            Some(echo) => echo.clone(),
            None => recv_ethertype(&mut link, 0x0800),
        };
        assert_eq!(
            &echo[..6],
            &link.mac(),
            "the echo request is sent to our MAC"
        );
        assert_eq!(echo[14 + 9], 1, "ICMP");
        let _ = ping.kill();
        let _ = ping.wait();
        // Too big for the interface: refused before the kernel sees it.
        let big = vec![0u8; 1400 + ETHERNET_HEADER_LEN + 1];
        assert!(matches!(
            link.send(Instant::ZERO, &big),
            Err(LinkError::TooBig { .. })
        ));
    }

    /// Promiscuous mode is asked for only when wanted and ends with the socket.
    #[test]
    fn promiscuous_mode_only_when_asked_and_only_while_open() {
        if skip_unless_root() {
            return;
        }
        veth_in_own_netns();
        // A packet socket's membership counts in `promiscuity`, not in the flags.
        let promisc = || !must(&["ip", "-d", "link", "show", "ua"]).contains("promiscuity 0");
        let plain = RawLink::open("ua", false).unwrap();
        assert!(!promisc());
        let link = RawLink::open("ua", true).unwrap();
        assert!(link.is_promiscuous() && promisc());
        drop(link);
        assert!(!promisc());
        drop(plain);
        must(&["ip", "link", "set", "ub", "down"]);
        must(&["ip", "link", "set", "ua", "down"]);
        let err = RawLink::open("ua", false).unwrap_err();
        assert!(err.to_string().contains("is down"), "{err}");
        let err = RawLink::open("lo", false).unwrap_err();
        assert!(
            err.to_string().contains("not an Ethernet interface"),
            "{err}"
        );
    }
}
