//! Waiting on real devices: poll(2) over a few descriptors, and an eventfd [`Waker`] that
//! another thread rings to end the wait early. The one wrapper every blocking loop on a
//! device uses: the wall-clock runtime (its device and its waker) and the `ustack impair`
//! forwarder (two TUN devices). Simulated links have no descriptor and are never waited on.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::time::Duration;

/// What poll(2) reported for one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Data is waiting (POLLIN).
    pub readable: bool,
    /// The descriptor reported an error or a hang-up (POLLERR, POLLHUP, POLLNVAL): the
    /// device behind it is gone.
    pub failed: bool,
}

impl Readiness {
    fn of(fd: &PollFd<'_>) -> Readiness {
        let events = fd.revents().unwrap_or(PollFlags::empty());
        Readiness {
            readable: events.contains(PollFlags::POLLIN),
            failed: events
                .intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL),
        }
    }
}

/// Sleeps until one of `fds` is readable or `timeout` passes (in whole milliseconds, the
/// resolution of poll(2): a shorter timeout polls without sleeping), and reports each
/// descriptor. A signal (EINTR) ends the sleep early with nothing ready.
pub fn wait_readable<const N: usize>(
    fds: [BorrowedFd<'_>; N],
    timeout: Duration,
) -> io::Result<[Readiness; N]> {
    let mut polled = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut polled, timeout) {
        Ok(_) => Ok(polled.each_ref().map(Readiness::of)),
        Err(Errno::EINTR) => Ok([Readiness::default(); N]),
        Err(e) => Err(e.into()),
    }
}

/// An eventfd that a thread sleeping in [`Waker::wait_with`] polls beside its device, so
/// that another thread can wake it at once (a socket call for the runtime thread).
#[derive(Debug)]
pub struct Waker {
    fd: EventFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let fd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Waker { fd })
    }

    /// Ends the current or next [`Waker::wait_with`] early.
    pub fn wake(&self) {
        // A full counter (EAGAIN) means the sleeper is already woken.
        let _ = self.fd.write(1);
    }

    /// Sleeps until `device` is readable, [`Waker::wake`] is called, or `timeout` passes
    /// (see [`wait_readable`]); then clears the wake-up and reports the device.
    pub fn wait_with(&self, device: BorrowedFd<'_>, timeout: Duration) -> io::Result<Readiness> {
        let [device, _] = wait_readable([device, self.fd.as_fd()], timeout)?;
        // EAGAIN when nobody rang: nothing to clear.
        let _ = self.fd.read();
        Ok(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_ends_the_wait_and_is_cleared_by_it() {
        let waker = Waker::new().unwrap();
        let other = Waker::new().unwrap();
        waker.wake();
        let started = std::time::Instant::now();
        let device = waker
            .wait_with(other.fd.as_fd(), Duration::from_secs(5))
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(device, Readiness::default());
        // Cleared: the next wait sleeps for its timeout.
        let device = waker
            .wait_with(other.fd.as_fd(), Duration::from_millis(20))
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!device.readable);
    }

    #[test]
    fn wait_readable_reports_the_ready_descriptor() {
        let (quiet, rung) = (Waker::new().unwrap(), Waker::new().unwrap());
        rung.wake();
        let [q, r] =
            wait_readable([quiet.fd.as_fd(), rung.fd.as_fd()], Duration::from_secs(5)).unwrap();
        assert!(!q.readable && r.readable);
        assert!(!q.failed && !r.failed);
    }
}
