//! [`Runtime`]: one host on a real device, driven by the wall clock on its own thread.
//! Any thread may call it. A device with a descriptor is waited on in ppoll(2) together
//! with a [`Waker`] the callers ring, until the next timer to the microsecond; a link
//! without one (a simulated link shared by wall-clock runtimes) falls back to short
//! sleeps on the call channel.
//!
//! With [`RuntimeOptions::busy_poll`] the driver does not sleep for that long after the
//! last packet or call: it keeps reading the device and the call channel, as Linux's
//! SO_BUSY_POLL (net.core.busy_poll) keeps polling the NIC's queue before a socket
//! sleeps. A request arriving in that window is served without the wake-up of a
//! sleeping thread (tens of microseconds on an idle CPU, more in a VM), at the price of
//! a CPU kept busy for the window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use super::engine::{BoxLink, Call, Engine, Reply};
use super::{Caller, Msg, RuntimeError, Wakeup};
use crate::link::poll::{precise_timers, Waker, WakerStats};
use crate::link::{Clock, Duration, Instant, Link};
use crate::transport::stack::Stack;

/// One host on a real device, driven by the wall clock on its own thread.
pub struct Runtime {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<Stack<BoxLink>>>,
    stop: Sender<()>,
    wake: Option<Arc<Wakeup>>,
    link_errors: Arc<AtomicU64>,
}

/// How the wall-clock driver waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Keep polling the device and the call channel for this long after the last packet
    /// or call before sleeping (`--busy-poll`); the socket side likewise spins this long
    /// on a reply before blocking. Off (`None`) by default: it keeps a CPU busy.
    pub busy_poll: Option<Duration>,
}

/// How long the wall-clock driver sleeps at most between looks at a link it cannot poll.
const WALL_TICK: Duration = Duration::from_millis(1);
/// How long it sleeps in ppoll(2) on a device with nothing scheduled.
const WALL_IDLE: Duration = Duration::from_millis(100);
/// How long it sleeps when something is already due after a round served everything
/// (it should not be): long enough not to spin on it, short enough not to matter.
const WALL_DUE_SLEEP: Duration = Duration::from_micros(50);

impl Runtime {
    /// Starts the driver thread for `stack` on a wall clock whose epoch is now.
    pub fn start(stack: Stack<BoxLink>) -> Runtime {
        Runtime::start_with_clock(stack, Clock::wall())
    }

    /// Starts the driver with a given clock (runtimes sharing a simulated link share one).
    pub fn start_with_clock(stack: Stack<BoxLink>, clock: Clock) -> Runtime {
        Runtime::start_with_options(stack, clock, RuntimeOptions::default())
    }

    /// Starts the driver with a given clock and options.
    pub fn start_with_options(
        stack: Stack<BoxLink>,
        clock: Clock,
        options: RuntimeOptions,
    ) -> Runtime {
        let (tx, rx) = unbounded::<Msg>();
        let (stop, stopped) = bounded::<()>(1);
        let has_fd = stack.interface().link().fd().is_some();
        let wake = has_fd.then(Waker::new).and_then(Result::ok).map(|waker| {
            Arc::new(Wakeup {
                waker,
                spin: options.busy_poll,
            })
        });
        let mut engine = Engine::new(clock.now());
        engine.add_host(stack);
        let link_errors = Arc::new(AtomicU64::new(0));
        let driver = Driver {
            engine,
            link_errors: link_errors.clone(),
            waiting: Vec::new(),
            clock,
            rx,
            stopped,
            waker: wake.clone(),
            busy_poll: options.busy_poll,
            peak_connections: 0,
        };
        let thread = std::thread::Builder::new()
            .name("ustack-runtime".into())
            .spawn(move || driver.run())
            .expect("spawn the runtime thread");
        Runtime {
            tx,
            thread: Some(thread),
            stop,
            wake,
            link_errors,
        }
    }

    /// What the waker between callers and the driver has done (`None` on a link without
    /// a descriptor, where callers never ring).
    pub fn wake_stats(&self) -> Option<WakerStats> {
        self.wake.as_ref().map(|w| w.waker.stats())
    }

    /// Receive errors the device has reported so far.
    pub fn link_errors(&self) -> u64 {
        self.link_errors.load(Ordering::Relaxed)
    }

    /// A caller for any thread.
    pub fn caller(&self) -> Caller {
        Caller {
            tx: self.tx.clone(),
            participant: 0,
            host: 0,
            wake: self.wake.clone(),
        }
    }

    /// Stops the driver and returns the stack (for its counters).
    pub fn stop(mut self) -> Option<Stack<BoxLink>> {
        self.signal_stop();
        self.thread.take().and_then(|t| t.join().ok())
    }

    fn signal_stop(&self) {
        let _ = self.stop.send(());
        if let Some(w) = &self.wake {
            w.waker.wake();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The runtime thread's state.
struct Driver {
    engine: Engine,
    /// Calls that cannot complete yet, tried again after every change.
    waiting: Vec<Call>,
    clock: Clock,
    rx: Receiver<Msg>,
    stopped: Receiver<()>,
    /// Present when the device has a descriptor to sleep on.
    waker: Option<Arc<Wakeup>>,
    /// The engine's count of link receive errors, for [`Runtime::link_errors`].
    link_errors: Arc<AtomicU64>,
    /// [`RuntimeOptions::busy_poll`].
    busy_poll: Option<Duration>,
    /// Most connections the stack held since memory was last given back.
    peak_connections: usize,
}

/// Connections a stack must have held before [`Driver::give_back_memory`] trims.
const TRIM_PEAK: usize = 1024;

/// How long the driver keeps polling after a socket call, or after answering one that
/// waited, even without busy-poll: a socket thread that just got its answer usually
/// makes its next call within microseconds (an echo's write after its read, a sender's
/// next write), and going to sleep in between costs that call an eventfd write, a
/// ppoll(2) wake-up and a read to clear it. Measured on a 1-byte TCP echo ping-pong: three writes per round trip become
/// one, and the runtime's CPU time per round trip halves. Clock reads and sleeps do not
/// count; an idle stack sleeps at once.
const CALL_LINGER: Duration = Duration::from_micros(20);

/// How long to keep polling after a round that served (or answered) socket calls and/or
/// saw packets arrive: [`CALL_LINGER`] after a call, the busy-poll window after either.
fn busy_window(busy_poll: Option<Duration>, socket_calls: bool, traffic: bool) -> Option<Duration> {
    let linger = socket_calls.then_some(CALL_LINGER);
    let busy = busy_poll.filter(|_| socket_calls || traffic);
    linger.max(busy)
}

/// What the driver does after a round that found nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Poll again at once (busy-poll window still open, or a timer came due while the
    /// round ran).
    Spin,
    /// Sleep on the device and the waker for this long at most.
    Sleep(Duration),
}

/// The wait after an idle round that began at `round` and ended at `now`: spin while
/// `busy_until` is ahead, else sleep until `next_event` exactly (ppoll's precision),
/// [`WALL_IDLE`] at most. An event that came due while the round ran gets another round
/// at once; one that was due when it began and is still due gets [`WALL_DUE_SLEEP`] (a
/// round that leaves something due must not make the driver spin on it).
fn idle_plan(
    round: Instant,
    now: Instant,
    next_event: Option<Instant>,
    busy_until: Option<Instant>,
) -> Idle {
    if busy_until.is_some_and(|t| now < t) {
        return Idle::Spin;
    }
    match next_event {
        None => Idle::Sleep(WALL_IDLE),
        Some(t) if t <= round => Idle::Sleep(WALL_DUE_SLEEP),
        Some(t) if t <= now => Idle::Spin,
        Some(t) => Idle::Sleep((t - now).min(WALL_IDLE)),
    }
}

impl Driver {
    /// Runs until stopped (or the device fails, or every caller is gone); returns the
    /// stack.
    fn run(mut self) -> Stack<BoxLink> {
        // Protocol timers (pacing, delayed ACKs) are slept for to the microsecond; a
        // failure only leaves the default slack.
        let _ = precise_timers();
        let mut busy_until = None;
        while self.stopped.try_recv().is_err() {
            self.engine.now = self.clock.now();
            let packets = self.packets_in();
            self.engine.settle();
            self.link_errors
                .store(self.engine.link_errors(0), Ordering::Relaxed);
            let retried = self.engine.retry(&mut self.waiting);
            let go_on = if self.waker.is_some() {
                let (served, socket_calls) = self.serve_queued();
                let socket_calls = socket_calls || retried.socket_call;
                let traffic = self.packets_in() != packets;
                if let Some(window) = busy_window(self.busy_poll, socket_calls, traffic) {
                    let until = self.clock.now() + window;
                    busy_until = busy_until.max(Some(until));
                }
                let next = self.engine.next_event(&self.waiting);
                // An answered call may leave work due for the stack (a read that opens
                // the window): another round does it at once.
                let left_due = retried.any && next.is_some_and(|t| t <= self.engine.now);
                served
                    || left_due
                    || match idle_plan(self.engine.now, self.clock.now(), next, busy_until) {
                        Idle::Spin => {
                            // Gives way to a thread the round waits for (a socket caller,
                            // the peer) if one is runnable on this CPU.
                            std::thread::yield_now();
                            true
                        }
                        Idle::Sleep(wait) => {
                            self.give_back_memory();
                            self.sleep_on_device(wait)
                        }
                    }
            } else {
                self.serve_one_or_tick()
            };
            if !go_on {
                break;
            }
        }
        self.engine.hosts.pop().expect("the runtime's one host")
    }

    /// Packets (or frames) the device has delivered so far: a change means traffic, which
    /// opens a busy-poll window.
    fn packets_in(&self) -> u64 {
        let stats = self.engine.hosts[0].interface().stats();
        stats.rx_packets + stats.rx_frames
    }

    /// How long nothing is scheduled, at most `cap`.
    fn idle_for(&self, cap: Duration) -> Duration {
        self.engine
            .next_event(&self.waiting)
            .map(|t| t - self.engine.now)
            .unwrap_or(cap)
            .min(cap)
    }

    fn serve(&mut self, call: Call) {
        self.engine.now = self.clock.now();
        self.engine.serve(call, &mut self.waiting);
    }

    /// Serves every queued call; returns whether there was any message, and whether one
    /// was a socket operation (not a clock read or a sleep), which is traffic for the
    /// busy-poll window.
    fn serve_queued(&mut self) -> (bool, bool) {
        let (mut served, mut socket_calls) = (false, false);
        while let Ok(msg) = self.rx.try_recv() {
            served = true;
            if let Msg::Call(call) = msg {
                socket_calls |= !call.op.is_clock();
                self.serve(call);
            }
        }
        (served, socket_calls)
    }

    /// Sleeps on the device and the waker for `wait` at most, unless a call or a stop
    /// came in meanwhile; false if the device failed (every waiting call is then
    /// answered `Stopped`).
    /// Once the stack holds half or less of the connections it held at its peak (of at
    /// least [`TRIM_PEAK`]), returns the heap memory their close freed to the OS. The
    /// stack frees a closed connection at once, but glibc's malloc keeps the chunks for
    /// reuse: after 100 000 connections closed, the process kept 350 MiB resident
    /// (`ustack demo scale`) where a trim brings it back to 20 MiB. Linux frees a socket's
    /// memory to its slab caches, which the kernel reclaims the same way under pressure.
    fn give_back_memory(&mut self) {
        let now = self.engine.hosts[0].connections();
        self.peak_connections = self.peak_connections.max(now);
        if self.peak_connections >= TRIM_PEAK && now <= self.peak_connections / 2 {
            super::return_free_memory();
            self.peak_connections = now;
        }
    }

    fn sleep_on_device(&mut self, wait: Duration) -> bool {
        let waker = self.waker.as_ref().expect("a device driver has a waker");
        let device = self.engine.hosts[0].interface().link().fd();
        let device = device.expect("a link with a waker has a descriptor");
        let (rx, stopped) = (&self.rx, &self.stopped);
        let pending = || !rx.is_empty() || !stopped.is_empty();
        // An error of poll itself (not of the device) only ends this sleep.
        if !waker
            .waker
            .wait_with(device, wait, pending)
            .is_ok_and(|d| d.failed)
        {
            return true;
        }
        eprintln!("ustack: the device failed; the stack stops");
        for call in self.waiting.drain(..) {
            let _ = call.reply.send(Reply::Err(RuntimeError::Stopped.into()));
        }
        false
    }

    /// Waits on the call channel until the next timer (at most a tick) and serves what
    /// arrives; false once every caller is gone.
    fn serve_one_or_tick(&mut self) -> bool {
        match self.rx.recv_timeout(self.idle_for(WALL_TICK)) {
            Ok(Msg::Call(call)) => self.serve(call),
            Ok(Msg::Exit(_) | Msg::Idle(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, BorrowedFd};

    use nix::sys::eventfd::{EfdFlags, EventFd};

    use super::*;
    use crate::link::{LinkError, Medium, TxInfo};
    use crate::runtime::{Op, Reply};
    use crate::transport::stack::StackConfig;

    const T0: Instant = Instant::from_secs(1);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn socket_calls_linger_and_traffic_opens_the_busy_poll_window() {
        assert_eq!(busy_window(None, false, true), None);
        assert_eq!(busy_window(None, true, false), Some(CALL_LINGER));
        assert_eq!(busy_window(Some(us(5)), true, false), Some(CALL_LINGER));
        assert_eq!(busy_window(Some(us(50)), false, true), Some(us(50)));
        assert_eq!(busy_window(Some(us(50)), true, true), Some(us(50)));
        assert_eq!(busy_window(Some(us(50)), false, false), None);
    }

    #[test]
    fn a_timer_is_slept_for_to_the_microsecond() {
        assert_eq!(
            idle_plan(T0, T0, Some(T0 + us(300)), None),
            Idle::Sleep(us(300))
        );
        assert_eq!(
            idle_plan(T0, T0, Some(T0 + us(1)), None),
            Idle::Sleep(us(1))
        );
    }

    #[test]
    fn nothing_scheduled_sleeps_the_idle_cap() {
        assert_eq!(idle_plan(T0, T0, None, None), Idle::Sleep(WALL_IDLE));
        let far = T0 + Duration::from_secs(30);
        assert_eq!(idle_plan(T0, T0, Some(far), None), Idle::Sleep(WALL_IDLE));
    }

    #[test]
    fn something_due_already_does_not_make_the_driver_spin() {
        assert_eq!(
            idle_plan(T0, T0, Some(T0), None),
            Idle::Sleep(WALL_DUE_SLEEP)
        );
        let past = Instant::from_millis(2);
        assert_eq!(
            idle_plan(T0, T0, Some(past), None),
            Idle::Sleep(WALL_DUE_SLEEP)
        );
    }

    #[test]
    fn a_timer_that_came_due_during_the_round_gets_another_round_at_once() {
        let end = T0 + us(30);
        assert_eq!(idle_plan(T0, end, Some(T0 + us(10)), None), Idle::Spin);
        assert_eq!(idle_plan(T0, end, Some(end), None), Idle::Spin);
        assert_eq!(
            idle_plan(T0, end, Some(T0), None),
            Idle::Sleep(WALL_DUE_SLEEP)
        );
        assert_eq!(
            idle_plan(T0, end, Some(end + us(7)), None),
            Idle::Sleep(us(7))
        );
    }

    #[test]
    fn the_busy_poll_window_spins_then_sleeps() {
        let until = Some(T0 + us(50));
        assert_eq!(idle_plan(T0, T0, None, until), Idle::Spin);
        assert_eq!(
            idle_plan(T0 + us(49), T0 + us(49), Some(T0), until),
            Idle::Spin
        );
        assert_eq!(
            idle_plan(T0 + us(50), T0 + us(50), None, until),
            Idle::Sleep(WALL_IDLE)
        );
        let later = T0 + us(60);
        assert_eq!(
            idle_plan(later, later, Some(later + us(5)), until),
            Idle::Sleep(us(5))
        );
    }

    /// A device with a descriptor that never becomes readable and nothing to read.
    struct QuietDevice {
        fd: EventFd,
    }

    impl Link for QuietDevice {
        fn medium(&self) -> Medium {
            Medium::Ip
        }
        fn mtu(&self) -> usize {
            1500
        }
        fn send(&mut self, _now: Instant, _packet: &[u8]) -> Result<TxInfo, LinkError> {
            Ok(TxInfo::default())
        }
        fn recv(&mut self, _now: Instant, _buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
            Ok(None)
        }
        fn fd(&self) -> Option<BorrowedFd<'_>> {
            Some(self.fd.as_fd())
        }
        fn poll_at(&self, _now: Instant) -> Option<Instant> {
            None
        }
    }

    fn quiet_runtime(options: RuntimeOptions) -> Runtime {
        let fd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK).unwrap();
        let link: BoxLink = Box::new(QuietDevice { fd });
        let stack = crate::sim::stack(link, crate::sim::host_addr(1), StackConfig::default());
        Runtime::start_with_options(stack, Clock::wall(), options)
    }

    fn now_calls(runtime: &Runtime, n: u64) {
        let caller = runtime.caller();
        for _ in 0..n {
            assert!(matches!(caller.call(Op::Now, None), Reply::Now(_)));
        }
    }

    /// Socket calls that change nothing (no listener on the port).
    fn unlisten_calls(runtime: &Runtime, n: u64) {
        let caller = runtime.caller();
        for _ in 0..n {
            let reply = caller.call(Op::TcpUnlisten { port: 7 }, None);
            assert!(matches!(reply, Reply::Done));
        }
    }

    #[test]
    fn every_call_rings_or_skips_the_waker_once() {
        let runtime = quiet_runtime(RuntimeOptions::default());
        now_calls(&runtime, 20);
        let stats = runtime.wake_stats().expect("a device with a descriptor");
        assert_eq!(stats.rung + stats.skipped, 20);
        assert!(runtime.stop().is_some());
    }

    /// While the busy-poll window a socket call opened is open the driver never sleeps,
    /// so callers after the first find it awake and write nothing to its eventfd.
    #[test]
    fn calls_during_busy_poll_do_not_ring() {
        let hour = Duration::from_secs(3600);
        let runtime = quiet_runtime(RuntimeOptions {
            busy_poll: Some(hour),
        });
        unlisten_calls(&runtime, 20);
        let stats = runtime.wake_stats().expect("a device with a descriptor");
        assert_eq!(stats.rung + stats.skipped, 20);
        assert!(stats.rung <= 1, "{stats:?}");
        assert!(stats.sleeps <= 1, "{stats:?}");
        // The stop ends the spin as it ends a sleep.
        assert!(runtime.stop().is_some());
    }
}
