//! [`SimWorld`]: hosts on simulated links, a virtual clock, and the application threads
//! (participants) using them. Time moves only when every participant waits, and calls
//! run in participant order, so a run depends on its seeds alone.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::engine::{BoxLink, Call, Engine, HostId, Reply};
use super::{Caller, Msg, RuntimeError};
use crate::link::{Duration, Instant};
use crate::transport::stack::Stack;

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
    daemons: BTreeSet<usize>,
    daemons_alive: usize,
    /// Participants that run a future ([`SimWorld::spawn_async`]), by participant.
    asyncs: BTreeMap<usize, AsyncParticipant>,
}

/// The world's side of an async participant.
#[derive(Debug)]
struct AsyncParticipant {
    /// It said it waits (all its futures pending) and was not resumed since.
    idle: bool,
    resume: Sender<Resume>,
}

/// What an idle async participant is told.
#[derive(Debug, Clone, Copy)]
enum Resume {
    /// Calls of its were answered: poll the future again.
    Go,
    /// The run is over: return this error.
    Stop(RuntimeError),
}

/// The top-level waker of an async participant: set when a future inside it wakes
/// another (a channel between two of its tasks), so it polls again before saying idle.
/// Answers from the world come only while it is idle, followed by [`Resume::Go`].
#[derive(Default)]
struct WokenFlag(AtomicBool);

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
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
            engine: Engine::new(Instant::ZERO),
            tx,
            rx,
            alive: 0,
            next_participant: 0,
            daemons: BTreeSet::new(),
            asyncs: BTreeMap::new(),
            daemons_alive: 0,
        }
    }

    /// Adds a host; its stack must sit on a link driven by this world's clock.
    pub fn add_host(&mut self, stack: Stack<BoxLink>) -> HostId {
        self.engine.add_host(stack)
    }

    /// Receive errors that host `id`'s link has reported so far (none on a simulated
    /// link).
    pub fn link_errors(&self, id: HostId) -> u64 {
        self.engine.link_errors(id)
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
    /// [`RuntimeError::Shutdown`] and it is expected to return.
    pub fn spawn_daemon<T, F>(&mut self, host: HostId, name: &str, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> T + Send + 'static,
    {
        self.spawn_participant(host, name, true, f)
    }

    /// Starts an async participant on `host`: a thread that runs the future `f` makes
    /// (async sockets from [`crate::aio`], any number of tasks joined inside it) on the
    /// world's executor. It counts as waiting when every future in it is pending; the
    /// world resumes it after answering its calls, all of one round at once, so the run
    /// stays deterministic. `Err` if the run ended first (deadlock, time limit, shutdown).
    pub fn spawn_async<T, F, Fut>(
        &mut self,
        host: HostId,
        name: &str,
        f: F,
    ) -> JoinHandle<Result<T, RuntimeError>>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        self.spawn_executor(host, name, false, f)
    }

    /// An async server: like [`SimWorld::spawn_async`], but the world does not wait for
    /// it; once every ordinary participant finished it gets `Err(Shutdown)`.
    pub fn spawn_async_daemon<T, F, Fut>(
        &mut self,
        host: HostId,
        name: &str,
        f: F,
    ) -> JoinHandle<Result<T, RuntimeError>>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        self.spawn_executor(host, name, true, f)
    }

    fn spawn_executor<T, F, Fut>(
        &mut self,
        host: HostId,
        name: &str,
        daemon: bool,
        f: F,
    ) -> JoinHandle<Result<T, RuntimeError>>
    where
        T: Send + 'static,
        F: FnOnce(Caller) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let (resume, resumed) = unbounded();
        let participant = self.next_participant;
        self.asyncs.insert(
            participant,
            AsyncParticipant {
                idle: false,
                resume,
            },
        );
        self.spawn_participant(host, name, daemon, move |caller: Caller| {
            let tx = caller.tx.clone();
            let future = std::pin::pin!(f(caller));
            run_until_idle(future, participant, &tx, &resumed)
        })
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
            // Wait until every live participant is inside a call (or idle, if async).
            while self.waiting_participants(&pending, &waiting) < self.alive {
                match self.rx.recv() {
                    Ok(Msg::Call(call)) => pending.push(call),
                    Ok(Msg::Exit(p)) => self.exited(p),
                    Ok(Msg::Idle(p)) => self.went_idle(p),
                    Err(_) => return Ok(()),
                }
            }
            // Collect any exits that raced in, without blocking.
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Call(call) => pending.push(call),
                    Msg::Exit(p) => self.exited(p),
                    Msg::Idle(p) => self.went_idle(p),
                }
            }
            // Only servers left: tell them to stop.
            if self.alive > 0 && self.alive == self.daemons_alive {
                for call in pending.drain(..).chain(waiting.drain(..)) {
                    let _ = call.reply.send(Reply::Err(RuntimeError::Shutdown.into()));
                }
                self.stop_idle(RuntimeError::Shutdown);
                self.drain_exits(RuntimeError::Shutdown);
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
            let mut woken = BTreeSet::new();
            for call in pending.drain(..) {
                let p = call.participant;
                if self.engine.serve(call, &mut waiting) {
                    answered = true;
                    woken.insert(p);
                }
            }
            self.engine.settle();
            answered |= self.recheck(&mut waiting, &mut woken);
            // Async participants run again once the round has answered all it could.
            self.resume(&woken);
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
                    let mut woken = BTreeSet::new();
                    self.recheck(&mut waiting, &mut woken);
                    self.resume(&woken);
                }
                Some(_) => {
                    self.engine.now = end;
                    for call in waiting.drain(..) {
                        let _ = call.reply.send(Reply::Err(RuntimeError::TimeLimit.into()));
                    }
                    self.stop_idle(RuntimeError::TimeLimit);
                    self.drain_exits(RuntimeError::TimeLimit);
                    return Err(WorldError::TimeLimit(limit));
                }
                None => {
                    deadlocked = true;
                    let mut woken = BTreeSet::new();
                    for call in waiting.drain(..) {
                        woken.insert(call.participant);
                        let _ = call.reply.send(Reply::Err(RuntimeError::Deadlock.into()));
                    }
                    // An async participant that waits on none of its calls waits on
                    // nothing the world can give: it ends.
                    let stuck: Vec<usize> = self
                        .asyncs
                        .iter()
                        .filter(|(p, a)| a.idle && !woken.contains(p))
                        .map(|(p, _)| *p)
                        .collect();
                    for p in stuck {
                        self.stop(p, RuntimeError::Deadlock);
                    }
                    self.resume(&woken);
                }
            }
        }
    }

    /// Retries the parked calls; adds the async participants it answered to `woken`.
    fn recheck(&mut self, waiting: &mut Vec<Call>, woken: &mut BTreeSet<usize>) -> bool {
        waiting.sort_by_key(|c| c.participant);
        let before = self.async_calls(waiting);
        let any = self.engine.retry(waiting).any;
        if any {
            let after = self.async_calls(waiting);
            woken.extend(
                before
                    .into_iter()
                    .filter(|(p, n)| after.get(p).copied().unwrap_or(0) < *n)
                    .map(|(p, _)| p),
            );
        }
        any
    }

    /// Parked calls per async participant.
    fn async_calls(&self, waiting: &[Call]) -> BTreeMap<usize, usize> {
        let mut calls = BTreeMap::new();
        for c in waiting
            .iter()
            .filter(|c| self.asyncs.contains_key(&c.participant))
        {
            *calls.entry(c.participant).or_insert(0) += 1;
        }
        calls
    }

    /// Participants waiting: ordinary ones inside a call (one each), async ones idle.
    fn waiting_participants(&self, pending: &[Call], waiting: &[Call]) -> usize {
        let in_calls = pending
            .iter()
            .chain(waiting)
            .filter(|c| !self.asyncs.contains_key(&c.participant))
            .count();
        in_calls + self.asyncs.values().filter(|a| a.idle).count()
    }

    fn went_idle(&mut self, participant: usize) {
        if let Some(a) = self.asyncs.get_mut(&participant) {
            a.idle = true;
        }
    }

    /// Tells each idle async participant in `woken` to poll again.
    fn resume(&mut self, woken: &BTreeSet<usize>) {
        for p in woken {
            if let Some(a) = self.asyncs.get_mut(p).filter(|a| a.idle) {
                a.idle = false;
                let _ = a.resume.send(Resume::Go);
            }
        }
    }

    fn stop(&mut self, participant: usize, error: RuntimeError) {
        if let Some(a) = self.asyncs.get_mut(&participant) {
            a.idle = false;
            let _ = a.resume.send(Resume::Stop(error));
        }
    }

    /// Ends every idle async participant with `error`.
    fn stop_idle(&mut self, error: RuntimeError) {
        let idle: Vec<usize> = self
            .asyncs
            .iter()
            .filter(|(_, a)| a.idle)
            .map(|(p, _)| *p)
            .collect();
        for p in idle {
            self.stop(p, error);
        }
    }

    fn exited(&mut self, participant: usize) {
        self.alive -= 1;
        self.asyncs.remove(&participant);
        if self.daemons.remove(&participant) {
            self.daemons_alive -= 1;
        }
    }

    /// At the end: answer every call with `error` until the participants are gone.
    fn drain_exits(&mut self, error: RuntimeError) {
        while self.alive > 0 {
            match self.rx.recv() {
                Ok(Msg::Call(call)) => {
                    let _ = call.reply.send(Reply::Err(error.into()));
                }
                Ok(Msg::Exit(p)) => self.exited(p),
                Ok(Msg::Idle(p)) => self.stop(p, error),
                Err(_) => return,
            }
        }
    }
}

/// The executor of an async participant: polls `future` until it is done; whenever it is
/// pending (and nothing inside it woke another part), says so to the world and waits to
/// be resumed.
fn run_until_idle<T>(
    mut future: std::pin::Pin<&mut impl Future<Output = T>>,
    participant: usize,
    world: &Sender<Msg>,
    resumed: &Receiver<Resume>,
) -> Result<T, RuntimeError> {
    let flag = Arc::new(WokenFlag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Ok(value);
        }
        if flag.0.swap(false, Ordering::SeqCst) {
            continue;
        }
        if world.send(Msg::Idle(participant)).is_err() {
            return Err(RuntimeError::Stopped);
        }
        match resumed.recv() {
            Ok(Resume::Go) => {}
            Ok(Resume::Stop(e)) => return Err(e),
            Err(_) => return Err(RuntimeError::Stopped),
        }
    }
}
