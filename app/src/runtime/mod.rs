//! The stack runtime: owns the hosts' stacks on one thread and serves blocking socket
//! calls from application threads over channels.
//!
//! Two drivers share the same call execution (`engine.rs`):
//! - [`SimWorld`] (`sim_world.rs`): hosts on simulated links and a virtual clock.
//!   Application threads are spawned by the world (participants). The world advances
//!   virtual time only when every participant is blocked in a socket call or a sleep, and
//!   executes calls in participant order at each such point, so a run depends only on its
//!   seeds, never on thread scheduling. A two-minute outage passes in milliseconds.
//! - [`Runtime`] (`wall_clock.rs`): one host on a real device and the wall clock; any
//!   thread may call.
//!
//! This file holds what both share on the application side: the [`Caller`] sockets hold
//! and the messages it sends.

mod engine;
pub mod service;
mod sim_world;
mod wall_clock;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};

use crate::link::poll::Waker;
use crate::link::{Duration, Instant};
pub use engine::{BoxLink, HostId, TcpInfo};
pub(crate) use engine::{Call, CallError, Op, Reply};
pub use sim_world::{SimWorld, WorldError};
pub use wall_clock::{Runtime, RuntimeOptions};

/// Why the runtime could not serve a call at all, whatever the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// Every participant waits and nothing in the network will ever wake one.
    #[error("the simulation is deadlocked: every application waits and the network is idle")]
    Deadlock,
    /// The simulation hit its virtual time limit.
    #[error("the simulation reached its time limit")]
    TimeLimit,
    /// Every ordinary participant finished; servers are asked to stop.
    #[error("the simulation is over: every application finished")]
    Shutdown,
    /// The runtime thread is gone (stopped, or its device failed).
    #[error("the stack's runtime has stopped")]
    Stopped,
    /// The runtime answered a call with a reply meant for another kind of call.
    #[error("the runtime answered with a {0} reply (a bug in ustack)")]
    WrongReply(&'static str),
}

impl RuntimeError {
    pub fn kind(&self) -> std::io::ErrorKind {
        match self {
            RuntimeError::Stopped => std::io::ErrorKind::NotConnected,
            RuntimeError::Deadlock
            | RuntimeError::TimeLimit
            | RuntimeError::Shutdown
            | RuntimeError::WrongReply(_) => std::io::ErrorKind::Other,
        }
    }
}

impl Op {
    /// A clock read or a sleep: no network traffic, and no reply worth spinning for.
    pub(crate) fn is_clock(&self) -> bool {
        matches!(self, Op::Now | Op::Sleep { .. })
    }
}

/// Where the runtime sends a call's answer: the channel a blocked thread waits on, or the
/// slot an async task polls (it wakes the task).
pub(crate) enum ReplyTo {
    Channel(Sender<Reply>),
    Slot(Arc<ReplySlot>),
}

impl ReplyTo {
    /// Delivers `reply`; gives it back if nobody will take it (the caller is gone), so the
    /// runtime can undo what it stands for (close a connection nobody will own).
    pub(crate) fn send(&self, reply: Reply) -> Result<(), Reply> {
        match self {
            ReplyTo::Channel(tx) => tx.send(reply).map_err(|e| e.into_inner()),
            ReplyTo::Slot(slot) => slot.fill(reply),
        }
    }
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplyTo::Channel(_) => "Channel",
            ReplyTo::Slot(_) => "Slot",
        })
    }
}

/// One answer on its way to an async task: the runtime fills it and wakes the task that
/// polled it last.
#[derive(Debug, Default)]
pub(crate) struct ReplySlot {
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    reply: Option<Reply>,
    waker: Option<std::task::Waker>,
    /// The task gave up on the answer (its socket was dropped).
    abandoned: bool,
}

impl ReplySlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves plain data behind: use it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fill(&self, reply: Reply) -> Result<(), Reply> {
        let mut state = self.lock();
        if state.abandoned {
            return Err(reply);
        }
        state.reply = Some(reply);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// The answer if it came; otherwise `cx`'s task is woken when it does.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Reply> {
        let mut state = self.lock();
        match state.reply.take() {
            Some(reply) => Poll::Ready(reply),
            None => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Nobody will take the answer: the runtime hands it back instead ([`ReplyTo::send`]).
    /// Returns an answer that already came.
    pub(crate) fn abandon(&self) -> Option<Reply> {
        let mut state = self.lock();
        state.abandoned = true;
        state.waker = None;
        state.reply.take()
    }
}

/// Returns the heap memory the process freed to the OS (glibc's `malloc_trim(0)`; a
/// no-op elsewhere): after many connections closed, the allocator would otherwise keep
/// all of it resident. No crate wraps this glibc call.
pub fn return_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a size and only releases free heap pages; no pointer of
    // ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident memory of process `pid` (this process for `None`) in bytes: the second field
/// of `/proc/PID/statm`, in pages. `None` if it cannot be read (the process is gone).
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/statm".to_string(),
        |p| format!("/proc/{p}/statm"),
    );
    let pages: u64 = std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64);
    Some(pages * page)
}

/// Messages to the runtime thread.
pub(crate) enum Msg {
    Call(Call),
    /// A participant finished (its thread returned or panicked).
    Exit(usize),
    /// An async participant of a simulation has nothing to do until a call of its is
    /// answered ([`SimWorld::spawn_async`]).
    Idle(usize),
}

/// The sending side of the runtime, as sockets hold it.
#[derive(Clone, Debug)]
pub struct Caller {
    tx: Sender<Msg>,
    participant: usize,
    host: HostId,
    /// Wakes a wall-clock runtime sleeping in ppoll(2) on its device.
    wake: Option<Arc<Wakeup>>,
}

/// How a caller reaches a wall-clock runtime that sleeps on a device.
#[derive(Debug)]
pub(crate) struct Wakeup {
    /// Rung after each call is queued (a no-op while the runtime is awake).
    waker: Waker,
    /// How long a caller spins on its reply before blocking (the runtime's busy-poll).
    spin: Option<Duration>,
}

/// Waits for `answer` by polling it for up to `limit`, the socket side of busy-polling:
/// a reply that comes within the window is taken without the futex sleep and wake-up of
/// a blocked thread. Each empty look yields the CPU (sched_yield(2)), so that on a busy
/// machine the spin gives way to the runtime thread or the peer it waits for. `None` if
/// the reply did not come (or the runtime is gone).
fn spin_recv(answer: &Receiver<Reply>, limit: Duration) -> Option<Reply> {
    let start = std::time::Instant::now();
    loop {
        match answer.try_recv() {
            Ok(reply) => return Some(reply),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if start.elapsed() >= limit => return None,
            Err(TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Call(c) => write!(f, "Call({:?})", c.op),
            Msg::Exit(p) => write!(f, "Exit({p})"),
            Msg::Idle(p) => write!(f, "Idle({p})"),
        }
    }
}

impl Caller {
    /// Makes a call and blocks for its answer.
    pub(crate) fn call(&self, op: Op, timeout: Option<Duration>) -> Reply {
        let (reply, answer) = bounded(1);
        let is_clock = op.is_clock();
        if !self.post(op, timeout, ReplyTo::Channel(reply)) {
            return Reply::Err(RuntimeError::Stopped.into());
        }
        // A sleep's answer comes when it ends: spinning for it buys nothing.
        let spin = self
            .wake
            .as_ref()
            .and_then(|w| w.spin)
            .filter(|_| !is_clock);
        if let Some(reply) = spin.and_then(|limit| spin_recv(&answer, limit)) {
            return reply;
        }
        answer
            .recv()
            .unwrap_or(Reply::Err(RuntimeError::Stopped.into()))
    }

    /// Makes a call without waiting: the answer comes in the returned slot, which wakes
    /// the task that polls it (the async sockets). No busy-poll spin: an async task yields.
    pub(crate) fn submit(&self, op: Op) -> Arc<ReplySlot> {
        let slot = Arc::new(ReplySlot::default());
        if !self.post(op, None, ReplyTo::Slot(slot.clone())) {
            let _ = slot.fill(Reply::Err(RuntimeError::Stopped.into()));
        }
        slot
    }

    /// Queues a call for the runtime and wakes it if it sleeps on a device; false if the
    /// runtime is gone.
    fn post(&self, op: Op, timeout: Option<Duration>, reply: ReplyTo) -> bool {
        let call = Call {
            participant: self.participant,
            host: self.host,
            op,
            timeout,
            deadline: None,
            reply,
        };
        if self.tx.send(Msg::Call(call)).is_err() {
            return false;
        }
        if let Some(w) = &self.wake {
            w.waker.wake();
        }
        true
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
