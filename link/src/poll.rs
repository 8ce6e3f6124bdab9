//! Waiting on real devices: ppoll(2) over a few descriptors, and an eventfd [`Waker`]
//! that another thread rings to end the wait early. The one wrapper every blocking loop
//! on a device uses: the wall-clock runtime (its device and its waker) and the `ustack
//! impair` forwarder (two TUN devices). Simulated links have no descriptor and are never
//! waited on.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;

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

/// Sleeps until one of `fds` is readable or `timeout` passes, and reports each
/// descriptor. ppoll(2) takes the timeout in nanoseconds, so a timer due in 300 us is
/// slept for 300 us (plus the thread's timer slack, see [`precise_timers`]) rather than
/// rounded to poll(2)'s milliseconds; a zero timeout polls without sleeping. A signal
/// (EINTR) ends the sleep early with nothing ready.
pub fn wait_readable<const N: usize>(
    fds: [BorrowedFd<'_>; N],
    timeout: Duration,
) -> io::Result<[Readiness; N]> {
    let mut polled = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    match ppoll(&mut polled, Some(TimeSpec::from_duration(timeout)), None) {
        Ok(_) => Ok(polled.each_ref().map(Readiness::of)),
        Err(Errno::EINTR) => Ok([Readiness::default(); N]),
        Err(e) => Err(e.into()),
    }
}

/// The timer slack [`precise_timers`] sets: ppoll(2) may end this much after its timeout.
pub const PRECISE_TIMER_SLACK: Duration = Duration::from_micros(1);

/// Makes the calling thread's sleeps end within [`PRECISE_TIMER_SLACK`] of their
/// timeout instead of Linux's default 50 us slack (prctl(2) PR_SET_TIMERSLACK), for a
/// thread whose timeouts are protocol timers (pacing, delayed ACKs). Costs a few more
/// timer interrupts, never CPU while asleep.
pub fn precise_timers() -> io::Result<()> {
    let slack = PRECISE_TIMER_SLACK.as_nanos() as std::ffi::c_ulong;
    nix::sys::prctl::set_timerslack(slack).map_err(io::Error::from)
}

/// An eventfd that a thread sleeping in [`Waker::wait_with`] polls beside its device, so
/// that another thread can wake it at once (a socket call for the runtime thread).
///
/// The eventfd is written only while its owner sleeps (or is about to): a thread that is
/// awake, or busy-polling, finds the work on its own, and a write(2) per call plus a
/// read(2) to clear it would be two system calls for nothing. The owner announces the
/// sleep, then looks for work once more (`pending` of [`Waker::wait_with`]); a waker
/// publishes its work, then looks at the announcement. With a sequentially consistent
/// fence on both sides, at least one of them sees the other (Dekker's pattern), so no
/// wake-up is lost.
#[derive(Debug)]
pub struct Waker {
    fd: EventFd,
    /// The owner is in, or entering, the ppoll(2) of [`Waker::wait_with`].
    asleep: AtomicBool,
    rung: AtomicU64,
    skipped: AtomicU64,
    sleeps: AtomicU64,
}

/// What a [`Waker`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakerStats {
    /// Wake-ups that wrote the eventfd (the owner was asleep).
    pub rung: u64,
    /// Wake-ups that did not need to (the owner was awake).
    pub skipped: u64,
    /// Times the owner went to sleep in ppoll(2).
    pub sleeps: u64,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let fd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Waker {
            fd,
            asleep: AtomicBool::new(false),
            rung: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
        })
    }

    /// Ends the current [`Waker::wait_with`] early; call it after publishing the work
    /// the owner's `pending` looks for. Does nothing if the owner is awake.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            // A full counter (EAGAIN) means the sleeper is already woken.
            let _ = self.fd.write(1);
            self.rung.fetch_add(1, Ordering::Relaxed);
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sleeps until `device` is readable, [`Waker::wake`] is called, or `timeout` passes
    /// (see [`wait_readable`]); then clears the wake-up and reports the device. Does not
    /// sleep at all if `pending()`, asked after the sleep is announced, says there is
    /// work already (the device is then reported as not looked at).
    pub fn wait_with(
        &self,
        device: BorrowedFd<'_>,
        timeout: Duration,
        pending: impl FnOnce() -> bool,
    ) -> io::Result<Readiness> {
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if pending() {
            self.asleep.store(false, Ordering::SeqCst);
            return Ok(Readiness::default());
        }
        self.sleeps.fetch_add(1, Ordering::Relaxed);
        let polled = wait_readable([device, self.fd.as_fd()], timeout);
        self.asleep.store(false, Ordering::SeqCst);
        let [device, bell] = polled?;
        if bell.readable {
            // EAGAIN if another waiter cleared it: nothing to clear.
            let _ = self.fd.read();
        }
        Ok(device)
    }

    pub fn stats(&self) -> WakerStats {
        WakerStats {
            rung: self.rung.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            sleeps: self.sleeps.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `waker`'s eventfd holds a wake-up, without sleeping.
    fn rung(waker: &Waker) -> bool {
        let [bell] = wait_readable([waker.fd.as_fd()], Duration::ZERO).unwrap();
        bell.readable
    }

    #[test]
    fn a_wake_ends_the_wait_and_is_cleared_by_it() {
        let waker = std::sync::Arc::new(Waker::new().unwrap());
        let other = Waker::new().unwrap();
        let ringer = {
            let waker = waker.clone();
            std::thread::spawn(move || {
                while !waker.asleep.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                waker.wake();
            })
        };
        let started = std::time::Instant::now();
        let device = waker
            .wait_with(other.fd.as_fd(), Duration::from_secs(5), || false)
            .unwrap();
        ringer.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(device, Readiness::default());
        assert_eq!(waker.stats().rung, 1);
        // Cleared: the next wait sleeps for its timeout.
        assert!(!rung(&waker));
        let device = waker
            .wait_with(other.fd.as_fd(), Duration::from_millis(20), || false)
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!device.readable);
        assert_eq!(waker.stats().sleeps, 2);
    }

    #[test]
    fn a_wake_while_the_owner_is_awake_writes_nothing() {
        let waker = Waker::new().unwrap();
        waker.wake();
        waker.wake();
        assert!(!rung(&waker));
        let stats = waker.stats();
        assert_eq!((stats.rung, stats.skipped, stats.sleeps), (0, 2, 0));
    }

    /// The owner's last look for work, after it announced the sleep, is what catches a
    /// wake-up that came before the announcement: it does not sleep then.
    #[test]
    fn pending_work_found_after_the_announcement_skips_the_sleep() {
        let waker = Waker::new().unwrap();
        let other = Waker::new().unwrap();
        let mut asked = false;
        let device = waker
            .wait_with(other.fd.as_fd(), Duration::from_secs(30), || {
                asked = true;
                true
            })
            .unwrap();
        assert!(asked);
        assert_eq!(device, Readiness::default());
        assert_eq!(waker.stats().sleeps, 0);
        assert!(!waker.asleep.load(Ordering::SeqCst));
    }

    #[test]
    fn a_wake_during_the_announcement_rings() {
        let waker = Waker::new().unwrap();
        let other = Waker::new().unwrap();
        // The waker runs between the announcement and the owner's last look.
        let device = waker
            .wait_with(other.fd.as_fd(), Duration::from_secs(30), || {
                waker.wake();
                false
            })
            .unwrap();
        assert_eq!(device, Readiness::default());
        let stats = waker.stats();
        assert_eq!((stats.rung, stats.skipped, stats.sleeps), (1, 0, 1));
        assert!(!rung(&waker));
    }

    #[test]
    fn wait_readable_reports_the_ready_descriptor() {
        let (quiet, rung) = (Waker::new().unwrap(), Waker::new().unwrap());
        rung.asleep.store(true, Ordering::SeqCst);
        rung.wake();
        let [q, r] =
            wait_readable([quiet.fd.as_fd(), rung.fd.as_fd()], Duration::from_secs(5)).unwrap();
        assert!(!q.readable && r.readable);
        assert!(!q.failed && !r.failed);
    }

    #[test]
    fn precise_timers_sets_the_slack() {
        std::thread::spawn(|| {
            precise_timers().unwrap();
            let slack = nix::sys::prctl::get_timerslack().unwrap();
            assert_eq!(slack as u128, PRECISE_TIMER_SLACK.as_nanos());
        })
        .join()
        .unwrap();
    }
}
