//! The connection's timers as one small table (quinn-proto's `TimerTable` shape): each
//! kind has at most one deadline, and the connection asks for the earliest.

use crate::net::link::Instant;

/// Every timer a TCP connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// RFC 8985 section 7.2 tail loss probe timeout (PTO). Before `Retransmit`, so that
    /// when both are due the probe goes out and re-arms the retransmission timer (as
    /// Linux fires the probe in place of the RTO when the RTO comes first).
    Tlp,
    /// RFC 6298 retransmission timer (also SYN and FIN retransmission).
    Retransmit,
    /// RFC 8985 section 6.2 step 5 reordering timer: segments sent before the latest
    /// one delivered become lost when it fires.
    Reorder,
    /// RFC 9293 section 3.8.6.3 delayed acknowledgement.
    DelayedAck,
    /// RFC 9293 section 3.8.6.1 zero-window probe (persist timer).
    ZeroWindowProbe,
    /// RFC 9293 section 3.8.4 keep-alive.
    KeepAlive,
    /// 2*MSL wait before the connection's 4-tuple may be reused; in FIN-WAIT-2, the
    /// FIN timeout of a connection the application closed.
    TimeWait,
    /// RFC 9293 section 3.8.3 / RFC 5482 user timeout: give up when data stays
    /// unacknowledged this long.
    UserTimeout,
    /// When the next data segment may leave under pacing (draft-ietf-ccwg-bbr section
    /// 4.6.2, Linux's internal pacing).
    Pacing,
    /// A send buffer that drained gives its memory back if it is still empty when this
    /// fires (Linux reclaims a socket's memory from its timers, `sk_mem_reclaim` in
    /// `tcp_delack_timer_handler` and `tcp_write_timer_handler`, not on every ACK).
    Reclaim,
}

impl Timer {
    pub(crate) const ALL: [Timer; 10] = [
        Timer::Tlp,
        Timer::Retransmit,
        Timer::Reorder,
        Timer::DelayedAck,
        Timer::ZeroWindowProbe,
        Timer::KeepAlive,
        Timer::TimeWait,
        Timer::UserTimeout,
        Timer::Pacing,
        Timer::Reclaim,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of every [`Timer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; Timer::ALL.len()];
    }

    /// The earliest deadline of all.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Removes and returns one timer due at `now`, earliest kind first.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Timer> {
        let due = Timer::ALL
            .iter()
            .copied()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .min_by_key(|t| self.get(*t))?;
        self.stop(due);
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_expires_first_and_only_when_due() {
        let mut t = TimerTable::default();
        t.set(Timer::DelayedAck, Instant::from_millis(40));
        t.set(Timer::Retransmit, Instant::from_millis(20));
        assert_eq!(t.next(), Some(Instant::from_millis(20)));
        assert_eq!(t.expire(Instant::from_millis(10)), None);
        assert_eq!(t.expire(Instant::from_millis(50)), Some(Timer::Retransmit));
        assert_eq!(t.expire(Instant::from_millis(50)), Some(Timer::DelayedAck));
        assert_eq!(t.expire(Instant::from_millis(50)), None);
        assert_eq!(t.next(), None);
    }
}
