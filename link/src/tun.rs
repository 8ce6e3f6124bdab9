//! `TunLink`: a Linux TUN device (bare IPv4 packets, `IFF_TUN | IFF_NO_PI`) or TAP device
//! (Ethernet II frames, `IFF_TAP | IFF_NO_PI`), read and written without blocking; a
//! driver sleeps on [`Link::fd`] with [`crate::poll`].
//!
//! The device is opened with std and read and written as a file. The one call nix has no
//! safe wrapper for is the TUNSETIFF ioctl: nix only generates the (unsafe) function for
//! it, since the kernel reads an `ifreq` through the pointer; that `unsafe` stays here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::link::{Link, LinkError, Medium, TxInfo, ETHERNET_HEADER_LEN};
use crate::time::Instant;

// TUNSETIFF is `_IOW('T', 202, int)` in linux/if_tun.h although the kernel reads a whole
// `struct ifreq`: the request code is built from the size of an int (a "bad" ioctl in
// nix's terms), the argument is a pointer to the ifreq.
nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);

/// A TUN or TAP device owned by this process; it disappears when dropped (unless
/// persistent).
#[derive(Debug)]
pub struct TunLink {
    file: File,
    name: String,
    mtu: usize,
    medium: Medium,
}

impl TunLink {
    /// Creates (or attaches to) the TUN device `name`. Needs CAP_NET_ADMIN.
    pub fn open(name: &str, mtu: usize) -> io::Result<TunLink> {
        TunLink::open_as(name, mtu, Medium::Ip)
    }

    /// Creates (or attaches to) the TAP device `name`: Ethernet frames of up to `mtu`
    /// bytes of payload. The device's own MAC is the kernel's side; the stack on it
    /// picks another one for itself. Needs CAP_NET_ADMIN.
    pub fn open_tap(name: &str, mtu: usize) -> io::Result<TunLink> {
        TunLink::open_as(name, mtu, Medium::Ethernet)
    }

    fn open_as(name: &str, mtu: usize, medium: Medium) -> io::Result<TunLink> {
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
                ifru_flags: (mode | libc::IFF_NO_PI) as libc::c_short,
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
        Ok(TunLink {
            file,
            name: name.to_string(),
            mtu,
            medium,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
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
        match self.file.write(packet) {
            Ok(_) => Ok(TxInfo::default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(LinkError::WouldBlock),
            Err(e) => Err(LinkError::Io(e)),
        }
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
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
}
