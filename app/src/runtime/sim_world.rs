//! [`SimWorld`]: hosts on simulated links, a virtual clock, and the application threads
//! (participants) using them. Time moves only when every participant waits, and calls
//! run in participant order, so a run depends on its seeds alone.

use std::collections::BTreeSet;
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
                    let _ = call.reply.send(Reply::Err(RuntimeError::Shutdown.into()));
                }
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
                        let _ = call.reply.send(Reply::Err(RuntimeError::TimeLimit.into()));
                    }
                    self.drain_exits(RuntimeError::TimeLimit);
                    return Err(WorldError::TimeLimit(limit));
                }
                None => {
                    deadlocked = true;
                    for call in waiting.drain(..) {
                        let _ = call.reply.send(Reply::Err(RuntimeError::Deadlock.into()));
                    }
                }
            }
        }
    }

    fn recheck(&mut self, waiting: &mut Vec<Call>) -> bool {
        waiting.sort_by_key(|c| c.participant);
        self.engine.retry(waiting).any
    }

    fn exited(&mut self, participant: usize) {
        self.alive -= 1;
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
                Err(_) => return,
            }
        }
    }
}
