//! [`Runtime`]: one host on a real device, driven by the wall clock on its own thread.
//! Any thread may call it. A device with a descriptor is waited on in poll(2) together
//! with a [`Waker`] the callers ring; a link without one (a simulated link shared by
//! wall-clock runtimes) falls back to short sleeps on the call channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use super::engine::{BoxLink, Call, Engine, Reply};
use super::{Caller, Msg, RuntimeError};
use crate::link::poll::Waker;
use crate::link::{Clock, Duration, Link};
use crate::transport::stack::Stack;

/// One host on a real device, driven by the wall clock on its own thread.
pub struct Runtime {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<Stack<BoxLink>>>,
    stop: Sender<()>,
    wake: Option<Arc<Waker>>,
    link_errors: Arc<AtomicU64>,
}

/// How long the wall-clock driver sleeps at most between looks at a link it cannot poll.
const WALL_TICK: Duration = Duration::from_millis(1);
/// How long it sleeps in poll(2) on a device with nothing scheduled.
const WALL_IDLE: Duration = Duration::from_millis(100);
/// The shortest sleep in poll(2), whose resolution is a millisecond: a timer due sooner
/// must not make the driver spin.
const WALL_MIN_SLEEP: Duration = Duration::from_millis(1);

impl Runtime {
    /// Starts the driver thread for `stack` on a wall clock whose epoch is now.
    pub fn start(stack: Stack<BoxLink>) -> Runtime {
        Runtime::start_with_clock(stack, Clock::wall())
    }

    /// Starts the driver with a given clock (runtimes sharing a simulated link share one).
    pub fn start_with_clock(stack: Stack<BoxLink>, clock: Clock) -> Runtime {
        let (tx, rx) = unbounded::<Msg>();
        let (stop, stopped) = bounded::<()>(1);
        let has_fd = stack.interface().link().fd().is_some();
        let wake = has_fd.then(Waker::new).and_then(Result::ok).map(Arc::new);
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
            w.wake();
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
    waker: Option<Arc<Waker>>,
    /// The engine's count of link receive errors, for [`Runtime::link_errors`].
    link_errors: Arc<AtomicU64>,
}

impl Driver {
    /// Runs until stopped (or the device fails, or every caller is gone); returns the
    /// stack.
    fn run(mut self) -> Stack<BoxLink> {
        while self.stopped.try_recv().is_err() {
            self.engine.now = self.clock.now();
            self.engine.settle();
            self.link_errors
                .store(self.engine.link_errors(0), Ordering::Relaxed);
            self.engine.retry(&mut self.waiting);
            let go_on = if self.waker.is_some() {
                self.serve_queued() || self.sleep_on_device()
            } else {
                self.serve_one_or_tick()
            };
            if !go_on {
                break;
            }
        }
        self.engine.hosts.pop().expect("the runtime's one host")
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

    /// Serves every queued call; returns whether there was any message.
    fn serve_queued(&mut self) -> bool {
        let mut served = false;
        while let Ok(msg) = self.rx.try_recv() {
            served = true;
            if let Msg::Call(call) = msg {
                self.serve(call);
            }
        }
        served
    }

    /// Sleeps on the device and the waker until the next timer; false if the device
    /// failed (every waiting call is then answered `Stopped`).
    fn sleep_on_device(&mut self) -> bool {
        let wait = self.idle_for(WALL_IDLE).clamp(WALL_MIN_SLEEP, WALL_IDLE);
        let waker = self.waker.as_ref().expect("a device driver has a waker");
        let device = self.engine.hosts[0].interface().link().fd();
        let device = device.expect("a link with a waker has a descriptor");
        // An error of poll itself (not of the device) only ends this sleep.
        if !waker.wait_with(device, wait).is_ok_and(|d| d.failed) {
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
            Ok(Msg::Exit(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        true
    }
}
