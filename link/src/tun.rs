//! `TunLink`: a Linux TUN device (bare IPv4 packets, `IFF_TUN | IFF_NO_PI`), read and
//! written without blocking; a driver sleeps on [`Link::fd`] with [`crate::poll`].
//!
//! The device is opened with std and read and written as a file. The one call nix has no
//! safe wrapper for is the TUNSETIFF ioctl: nix only generates the (unsafe) function for
//! it, since the kernel reads an `ifreq` through the pointer; that `unsafe` stays here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::link::{Link, LinkError, Medium, TxInfo};
use crate::time::Instant;

// TUNSETIFF is `_IOW('T', 202, int)` in linux/if_tun.h although the kernel reads a whole
// `struct ifreq`: the request code is built from the size of an int (a "bad" ioctl in
// nix's terms), the argument is a pointer to the ifreq.
nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);

/// A TUN device owned by this process; it disappears when dropped (unless persistent).
#[derive(Debug)]
pub struct TunLink {
    file: File,
    name: String,
    mtu: usize,
}

impl TunLink {
    /// Creates (or attaches to) the TUN device `name`. Needs CAP_NET_ADMIN.
    pub fn open(name: &str, mtu: usize) -> io::Result<TunLink> {
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
        let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let req = libc::ifreq {
            ifr_name,
            ifr_ifru: libc::__c_anonymous_ifr_ifru {
                ifru_flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            },
        };
        // SAFETY: `file` is an open /dev/net/tun descriptor and `req` a fully initialised
        // ifreq that lives across the call; the kernel only reads it.
        unsafe { tun_set_iff(file.as_raw_fd(), &req) }.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot create TUN device {name}: {e}"),
            )
        })?;
        Ok(TunLink {
            file,
            name: name.to_string(),
            mtu,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Link for TunLink {
    fn medium(&self) -> Medium {
        Medium::Ip
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
        if packet.len() > self.mtu {
            return Err(LinkError::TooBig {
                len: packet.len(),
                mtu: self.mtu,
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
}
