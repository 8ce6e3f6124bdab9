//! `TunLink`: a Linux TUN device (bare IPv4 packets, `IFF_TUN | IFF_NO_PI`), read and
//! written without blocking; [`Link::wait`] sleeps in poll(2) on the device.
//!
//! The ioctl is made with libc directly: the interface request is three fields, and
//! the offload variant (IFF_VNET_HDR, a later issue) needs further ioctls of its own.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::link::{Link, LinkError, Medium, TxInfo};
use crate::time::{Duration, Instant};

/// `_IOW('T', 202, int)` from linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// A TUN device owned by this process; it disappears when dropped (unless persistent).
#[derive(Debug)]
pub struct TunLink {
    fd: OwnedFd,
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
        let path = CString::new("/dev/net/tun").expect("no NUL in a literal");
        // SAFETY: a valid C string and flags; the result is checked.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open /dev/net/tun: {e}"),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF takes a pointer to an ifreq that lives across the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create TUN device {name}: {e}"),
            ));
        }
        Ok(TunLink {
            fd,
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
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                LinkError::WouldBlock
            } else {
                LinkError::Io(e)
            });
        }
        Ok(TxInfo::default())
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(LinkError::Io(e)),
            };
        }
        Ok(Some(n as usize))
    }

    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        None
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn wait(&mut self, _now: Instant, timeout: Option<Duration>) -> Result<bool, LinkError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(LinkError::Io(e));
        }
        Ok(rc > 0 && pfd.revents & libc::POLLIN != 0)
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
