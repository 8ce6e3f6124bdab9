//! The stack runtime: owns the hosts' stacks on one thread and serves blocking socket
//! calls from application threads over channels.
//!
//! Two drivers share the same call execution ([`engine`]):
//! - [`SimWorld`]: hosts on simulated links and a virtual clock. Application threads are
//!   spawned by the world (participants). The world advances virtual time only when every
//!   participant is blocked in a socket call or a sleep, and executes calls in participant
//!   order at each such point, so a run depends only on its seeds, never on thread
//!   scheduling. A two-minute outage passes in milliseconds.
//! - [`Runtime`]: one host on a real device and the wall clock; any thread may call.

mod engine;

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use crate::link::poll::Waker;
use crate::link::{Clock, Duration, Instant, Link};
use crate::transport::stack::Stack;
use engine::Engine;
pub use engine::{BoxLink, HostId, TcpInfo};
pub(crate) use engine::{Call, CallError, Op, Reply};

/// Messages to the runtime thread.
pub(crate) enum Msg {
    Call(Call),
    /// A participant finished (its thread returned or panicked).
    Exit(usize),
}

/// The sending side of the runtime, as sockets hold it.
#[derive(Clone, Debug)]
pub struct Caller {
    tx: Sender<Msg>,
    participant: usize,
    host: HostId,
    /// Wakes a wall-clock runtime sleeping in poll(2) on its device.
    wake: Option<std::sync::Arc<Waker>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Call(c) => write!(f, "Call({:?})", c.op),
            Msg::Exit(p) => write!(f, "Exit({p})"),
        }
    }
}

impl Caller {
    /// Makes a call and blocks for its answer.
    pub(crate) fn call(&self, op: Op, timeout: Option<Duration>) -> Reply {
        let (reply, answer) = bounded(1);
        let call = Call {
            participant: self.participant,
            host: self.host,
            op,
            timeout,
            deadline: None,
            reply,
        };
        if self.tx.send(Msg::Call(call)).is_err() {
            return Reply::Err(CallError::Stopped);
        }
        if let Some(w) = &self.wake {
            w.wake();
        }
        answer.recv().unwrap_or(Reply::Err(CallError::Stopped))
    }

    pub fn host(&self) -> HostId {
        self.host
    }

    /// The runtime's clock: virtual time in a simulation.
    pub fn now(&self) -> Instant {
        match self.call(Op::Now, None) {
            Reply::Now(t) => t,
            _ => Instant::ZERO,
        }
    }

    /// Sleeps on the runtime's clock; false if the runtime is gone (or the simulation
    /// ended) instead.
    pub fn sleep(&self, length: Duration) -> bool {
        let op = Op::Sleep {
            until: None,
            length,
        };
        matches!(self.call(op, None), Reply::Done)
    }

    /// The same caller on another host (an application with a foot on two hosts).
    pub fn on_host(&self, host: HostId) -> Caller {
        Caller {
            host,
            ..self.clone()
        }
    }
}

/// Why a simulation run ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    #[error("the simulation reached its time limit of {0:?} with participants still running")]
    TimeLimit(Duration),
    #[error("every participant is blocked and nothing in the network can wake one")]
    Deadlock,
}

/// Hosts on simulated links, a virtual clock, and the application threads using them.
pub struct SimWorld {
    engine: Engine,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    alive: usize,
    next_participant: usize,
    /// Participants that serve others (servers); the world ends when only they remain.
    daemons: std::collections::BTreeSet<usize>,
    daemons_alive: usize,
}

impl Default for SimWorld {
    fn default() -> Self {
        SimWorld::new()
    }
}

/// Sends `Exit` when the participant's closure ends, even by panic.
struct ExitGuard {
    tx: Sender<Msg>,
    participant: usize,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Exit(self.participant));
    }
}

impl SimWorld {
    pub fn new() -> SimWorld {
        let (tx, rx) = unbounded();
        SimWorld {
            engine: Engine {
                hosts: Vec::new(),
                now: Instant::ZERO,
            },
            tx,
            rx,
            alive: 0,
            next_participant: 0,
            daemons: std::collections::BTreeSet::new(),
            daemons_alive: 0,
        }
    }

    /// Adds a host; its stack must sit on a link driven by this world's clock.
    pub fn add_host(&mut self, stack: Stack<BoxLink>) -> HostId {
        self.engine.hosts.push(stack);
        self.engine.hosts.len() - 1
    }

    pub fn host(&self, id: HostId) -> &Stack<BoxLink> {
        &self.engine.hosts[id]
    }

    pub fn host_mut(&mut self, id: HostId) -> &mut Stack<BoxLink> {
        &mut self.engine.hosts[id]
    }

    pub fn now(&self) -> Instant {
        self.engine.now
    }

    /// Starts an application thread on `host`. It runs when [`SimWorld::run`] drives the
    /// world; its sockets are made from the [`Caller`] it gets.
    pub fn spawn<T, F>(&mut self, host: HostId, name: &str, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> T + Send + 'static,
    {
        self.spawn_participant(host, name, false, f)
    }

    /// Starts a server thread: like [`SimWorld::spawn`], but the world does not wait for
    /// it. Once every ordinary participant has finished, the daemon's calls fail with
    /// [`SocketError::Shutdown`](crate::socket::SocketError) and it is expected to return.
    pub fn spawn_daemon<T, F>(&mut self, host: HostId, name: &str, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> T + Send + 'static,
    {
        self.spawn_participant(host, name, true, f)
    }

    fn spawn_participant<T, F>(
        &mut self,
        host: HostId,
        name: &str,
        daemon: bool,
        f: F,
    ) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> T + Send + 'static,
    {
        let participant = self.next_participant;
        if daemon {
            self.daemons.insert(participant);
            self.daemons_alive += 1;
        }
        self.next_participant += 1;
        self.alive += 1;
        let caller = Caller {
            tx: self.tx.clone(),
            participant,
            host,
            wake: None,
        };
        let guard = ExitGuard {
            tx: self.tx.clone(),
            participant,
        };
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _guard = guard;
                f(caller)
            })
            .expect("spawn a participant thread")
    }

    /// Drives the world until every participant has finished, or `limit` of virtual time
    /// has passed (then every waiting call fails and the error says so).
    pub fn run(&mut self, limit: Duration) -> Result<(), WorldError> {
        let end = self.engine.now + limit;
        let mut pending: Vec<Call> = Vec::new();
        let mut waiting: Vec<Call> = Vec::new();
        let mut deadlocked = false;
        loop {
            // Wait until every live participant is inside a call.
            while pending.len() + waiting.len() < self.alive {
                match self.rx.recv() {
                    Ok(Msg::Call(call)) => pending.push(call),
                    Ok(Msg::Exit(p)) => self.exited(p),
                    Err(_) => return Ok(()),
                }
            }
            // Collect any exits that raced in, without blocking.
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Call(call) => pending.push(call),
                    Msg::Exit(p) => self.exited(p),
                }
            }
            // Only servers left: tell them to stop.
            if self.alive > 0 && self.alive == self.daemons_alive {
                for call in pending.drain(..).chain(waiting.drain(..)) {
                    let _ = call.reply.send(Reply::Err(CallError::Shutdown));
                }
                self.drain_exits(CallError::Shutdown);
            }
            if self.alive == 0 && pending.is_empty() && waiting.is_empty() {
                return if deadlocked {
                    Err(WorldError::Deadlock)
                } else {
                    Ok(())
                };
            }
            // Execute in participant order: deterministic whatever the threads did.
            pending.sort_by_key(|c| c.participant);
            let mut answered = false;
            for call in pending.drain(..) {
                answered |= self.engine.serve(call, &mut waiting);
            }
            self.engine.settle();
            answered |= self.recheck(&mut waiting);
            if answered {
                continue;
            }
            // Everyone waits: move the clock to the next event.
            match self.engine.next_event(&waiting) {
                Some(t) if t <= end => {
                    // A stack that claims work at the current instant after settling
                    // would spin the world: step the clock by the smallest tick instead.
                    let t = if t > self.engine.now {
                        t
                    } else {
                        self.engine.now + Duration::from_micros(1)
                    };
                    self.engine.now = t;
                    self.engine.settle();
                    self.recheck(&mut waiting);
                }
                Some(_) => {
                    self.engine.now = end;
                    for call in waiting.drain(..) {
                        let _ = call.reply.send(Reply::Err(CallError::TimeLimit));
                    }
                    self.drain_exits(CallError::TimeLimit);
                    return Err(WorldError::TimeLimit(limit));
                }
                None => {
                    deadlocked = true;
                    for call in waiting.drain(..) {
                        let _ = call.reply.send(Reply::Err(CallError::Deadlock));
                    }
                }
            }
        }
    }

    fn recheck(&mut self, waiting: &mut Vec<Call>) -> bool {
        waiting.sort_by_key(|c| c.participant);
        self.engine.retry(waiting)
    }

    fn exited(&mut self, participant: usize) {
        self.alive -= 1;
        if self.daemons.remove(&participant) {
            self.daemons_alive -= 1;
        }
    }

    /// At the end: answer every call with `error` until the participants are gone.
    fn drain_exits(&mut self, error: CallError) {
        while self.alive > 0 {
            match self.rx.recv() {
                Ok(Msg::Call(call)) => {
                    let _ = call.reply.send(Reply::Err(error.clone()));
                }
                Ok(Msg::Exit(p)) => self.exited(p),
                Err(_) => return,
            }
        }
    }
}

/// One host on a real device, driven by the wall clock on its own thread.
pub struct Runtime {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<Stack<BoxLink>>>,
    stop: Sender<()>,
    wake: Option<std::sync::Arc<Waker>>,
}

/// How long the wall-clock driver sleeps at most between looks at a link it cannot poll.
const WALL_TICK: Duration = Duration::from_millis(1);
/// How long it sleeps in poll(2) on a device with nothing scheduled.
const WALL_IDLE: Duration = Duration::from_millis(100);

impl Runtime {
    /// Starts the driver thread for `stack` on a wall clock whose epoch is now.
    pub fn start(stack: Stack<BoxLink>) -> Runtime {
        Runtime::start_with_clock(stack, Clock::wall())
    }

    /// Starts the driver with a given clock (runtimes sharing a simulated link share one).
    pub fn start_with_clock(stack: Stack<BoxLink>, clock: Clock) -> Runtime {
        let (tx, rx) = unbounded::<Msg>();
        let (stop, stopped) = bounded::<()>(1);
        // A device with a descriptor is waited on in poll(2) together with an eventfd
        // the callers ring; a simulated link falls back to short sleeps on the channel.
        let has_fd = stack.interface().link().fd().is_some();
        let wake = has_fd
            .then(Waker::new)
            .and_then(Result::ok)
            .map(std::sync::Arc::new);
        let waker = wake.clone();
        let thread = std::thread::Builder::new()
            .name("ustack-runtime".into())
            .spawn(move || {
                let mut engine = Engine {
                    hosts: vec![stack],
                    now: clock.now(),
                };
                let mut waiting: Vec<Call> = Vec::new();
                loop {
                    if stopped.try_recv().is_ok() {
                        break;
                    }
                    engine.now = clock.now();
                    engine.settle();
                    engine.retry(&mut waiting);
                    if let Some(w) = &waker {
                        // Serve every queued call, then sleep on the device and the
                        // eventfd until the next timer.
                        let mut served = false;
                        while let Ok(msg) = rx.try_recv() {
                            served = true;
                            if let Msg::Call(call) = msg {
                                engine.now = clock.now();
                                engine.serve(call, &mut waiting);
                            }
                        }
                        if !served {
                            let wait = engine
                                .next_event(&waiting)
                                .map(|t| t - engine.now)
                                .unwrap_or(WALL_IDLE)
                                .min(WALL_IDLE);
                            let device = engine.hosts[0].interface().link().fd();
                            let device = device.expect("a link with a waker has a descriptor");
                            // poll(2) waits whole milliseconds: at least one, so that a
                            // timer due in under a millisecond does not spin. An error of
                            // poll itself (not of the device) only ends this sleep.
                            let wait = wait.clamp(Duration::from_millis(1), WALL_IDLE);
                            if w.wait_with(device, wait).is_ok_and(|d| d.failed) {
                                eprintln!("ustack: the device failed; the stack stops");
                                for call in waiting.drain(..) {
                                    let _ = call.reply.send(Reply::Err(CallError::Stopped));
                                }
                                break;
                            }
                        }
                        continue;
                    }
                    let wait = engine
                        .next_event(&waiting)
                        .map(|t| t - engine.now)
                        .unwrap_or(WALL_TICK)
                        .min(WALL_TICK);
                    match rx.recv_timeout(wait) {
                        Ok(Msg::Call(call)) => {
                            engine.now = clock.now();
                            engine.serve(call, &mut waiting);
                        }
                        Ok(Msg::Exit(_)) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                engine.hosts.pop().expect("the runtime's one host")
            })
            .expect("spawn the runtime thread");
        Runtime {
            tx,
            thread: Some(thread),
            stop,
            wake,
        }
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
        let _ = self.stop.send(());
        if let Some(w) = &self.wake {
            w.wake();
        }
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(w) = &self.wake {
            w.wake();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
