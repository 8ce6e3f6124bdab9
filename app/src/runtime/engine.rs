//! The part of the runtime shared by the simulator and the wall-clock driver: the hosts'
//! stacks and the execution of socket calls against them. A call either completes now or
//! waits (with an optional deadline) until the stacks' state lets it complete.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;

use std::sync::Arc;

use super::service::{DataStreams, ServiceKind, StreamCounters, StreamRole, TcpService};
use super::{ReplyTo, RuntimeError};
use crate::link::{Duration, Instant, Link};
use crate::transport::stack::{Stack, StackError, TcpEvents, TcpHandle, UdpSendFailure};
use crate::transport::tcp::{ConnectionError, RecvError, State};
use crate::transport::udp::{UdpHandle, UdpRecvError};

/// A link of any kind behind a host's stack.
pub type BoxLink = Box<dyn Link + Send>;

/// Index of a host in the runtime.
pub type HostId = usize;

/// What a socket asks of the runtime.
#[derive(Debug)]
pub(crate) enum Op {
    Now,
    Sleep {
        until: Option<Instant>,
        length: Duration,
    },
    TcpListen {
        port: u16,
        backlog: usize,
    },
    TcpUnlisten {
        port: u16,
    },
    /// Runs a built-in service on its well-known port inside the runtime.
    TcpServe {
        kind: ServiceKind,
        backlog: usize,
    },
    TcpAccept {
        port: u16,
    },
    /// Hands an open connection to the runtime, which runs it as an iperf3 data stream
    /// ([`super::service::adopt`]).
    TcpAdopt {
        h: TcpHandle,
        role: StreamRole,
        counters: Arc<StreamCounters>,
    },
    /// Stops an adopted stream and closes it.
    TcpRelease {
        h: TcpHandle,
    },
    TcpConnect {
        remote: SocketAddrV4,
        started: Option<TcpHandle>,
    },
    TcpRead {
        h: TcpHandle,
        max: usize,
    },
    TcpWrite {
        h: TcpHandle,
        data: Vec<u8>,
    },
    TcpShutdown {
        h: TcpHandle,
    },
    TcpClose {
        h: TcpHandle,
    },
    TcpInfo {
        h: TcpHandle,
    },
    TcpSetNodelay {
        h: TcpHandle,
        nodelay: bool,
    },
    UdpBind {
        local: SocketAddrV4,
    },
    UdpSendTo {
        u: UdpHandle,
        dst: SocketAddrV4,
        data: Vec<u8>,
    },
    UdpRecvFrom {
        u: UdpHandle,
        max: usize,
    },
    UdpClose {
        u: UdpHandle,
    },
}

/// A snapshot of a connection for `TcpStream::info`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpInfo {
    pub state: State,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub error: Option<ConnectionError>,
    pub srtt: Option<Duration>,
    pub rto: Duration,
    pub cwnd: usize,
    pub congestion: crate::transport::tcp::Algorithm,
    pub stats: crate::transport::tcp::stats::ConnStats,
}

/// The runtime's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Now(Instant),
    Done,
    Stream {
        h: TcpHandle,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    },
    Data(Vec<u8>),
    Written(usize),
    Udp {
        u: UdpHandle,
        local: SocketAddrV4,
    },
    Datagram(Vec<u8>, SocketAddrV4),
    Info(Box<TcpInfo>),
    Err(CallError),
}

impl Reply {
    /// What kind of answer this is, for the error that reports a mismatched one.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Now(_) => "Now",
            Reply::Done => "Done",
            Reply::Stream { .. } => "Stream",
            Reply::Data(_) => "Data",
            Reply::Written(_) => "Written",
            Reply::Udp { .. } => "Udp",
            Reply::Datagram(..) => "Datagram",
            Reply::Info(_) => "Info",
            Reply::Err(_) => "Err",
        }
    }
}

/// Why a call failed inside the runtime; each socket operation turns it into its own
/// error type.
#[derive(Debug)]
pub(crate) enum CallError {
    Stack(StackError),
    UdpBind(crate::transport::udp::BindError),
    UdpSend(UdpSendFailure),
    UdpClosed,
    /// The call's own timeout (read timeout, connect timeout) passed.
    Deadline,
    /// The runtime no longer serves calls.
    Ended(RuntimeError),
}

impl From<RuntimeError> for CallError {
    fn from(e: RuntimeError) -> CallError {
        CallError::Ended(e)
    }
}

/// A call in flight: who made it, on which host, how to answer.
#[derive(Debug)]
pub(crate) struct Call {
    pub participant: usize,
    pub host: HostId,
    pub op: Op,
    pub timeout: Option<Duration>,
    pub deadline: Option<Instant>,
    pub reply: ReplyTo,
}

/// What [`Engine::retry`] answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retried {
    /// Some parked call was answered.
    pub any: bool,
    /// One of them was a socket operation (not a clock read or a sleep): a socket thread
    /// about to call again.
    pub socket_call: bool,
}

/// What changed on one host (its stack's [`TcpEvents`]) and who has yet to see it:
/// the built-in services and the parked calls each take their own copy, so a round
/// visits only the connections that had an event, not all of them.
#[derive(Debug, Default)]
struct Readiness {
    /// For the services: connections, in handle order.
    services: BTreeSet<TcpHandle>,
    /// For the parked calls: connections and listener ports.
    calls: BTreeSet<TcpHandle>,
    listeners: BTreeSet<u16>,
}

/// The hosts, their clock, and the built-in services running on them.
pub(crate) struct Engine {
    pub hosts: Vec<Stack<BoxLink>>,
    pub now: Instant,
    services: Vec<TcpService>,
    /// Adopted data streams, one set per host that has any.
    streams: Vec<DataStreams>,
    /// Echo's bytes on their way from a receive buffer to a send buffer.
    scratch: Vec<u8>,
    /// Per host, what changed and has not been looked at yet.
    ready: Vec<Readiness>,
    /// Where a stack's events are taken into.
    taken: TcpEvents,
}

/// How much one echo connection moves per step.
const ECHO_CHUNK: usize = 64 * 1024;

/// How many link receive errors one [`Engine::settle`] round takes from one host before
/// it leaves the host for the next round (a device that fails on every read must not
/// hold the driver; the wall-clock driver's poll(2) reports a device that went away).
const LINK_ERRORS_PER_ROUND: usize = 16;

fn stack_err(e: StackError) -> Reply {
    Reply::Err(CallError::Stack(e))
}

impl Engine {
    pub fn new(now: Instant) -> Engine {
        Engine {
            hosts: Vec::new(),
            now,
            services: Vec::new(),
            streams: Vec::new(),
            scratch: Vec::new(),
            ready: Vec::new(),
            taken: TcpEvents::default(),
        }
    }

    pub fn add_host(&mut self, mut stack: Stack<BoxLink>) -> HostId {
        // From now on the stack collects its events for the runtime.
        stack.take_events(&mut self.taken);
        self.hosts.push(stack);
        self.ready.push(Readiness::default());
        self.hosts.len() - 1
    }

    /// Takes every stack's events into [`Readiness`], for the services and the calls.
    fn collect_events(&mut self) {
        for (stack, ready) in self.hosts.iter_mut().zip(&mut self.ready) {
            stack.take_events(&mut self.taken);
            for &h in &self.taken.conns {
                ready.services.insert(h);
                ready.calls.insert(h);
            }
            ready.listeners.extend(&self.taken.listeners);
        }
    }

    /// Whether a parked call may complete now: its deadline passed, or its connection
    /// (or listener) had an event since the calls were last tried. Clock and UDP calls
    /// are always tried (they have no connection events).
    fn may_complete(
        &self,
        call: &Call,
        calls: &BTreeSet<TcpHandle>,
        ports: &BTreeSet<u16>,
    ) -> bool {
        if call.deadline.is_some_and(|d| d <= self.now) {
            return true;
        }
        match &call.op {
            Op::TcpRead { h, .. }
            | Op::TcpWrite { h, .. }
            | Op::TcpConnect {
                started: Some(h), ..
            } => calls.contains(h),
            Op::TcpAccept { port } => ports.contains(port),
            _ => true,
        }
    }

    /// Receive errors that host `id`'s link has reported so far (the interface counts
    /// them as `rx_link_errors`).
    pub fn link_errors(&self, id: HostId) -> u64 {
        self.hosts[id].interface().stats().rx_link_errors
    }

    /// Tries to complete `call` at the current time. `None`: it must wait.
    pub fn attempt(&mut self, call: &mut Call) -> Option<Reply> {
        if call.deadline.is_none() {
            call.deadline = call.timeout.map(|t| self.now + t);
        }
        let now = self.now;
        let Some(stack) = self.hosts.get_mut(call.host) else {
            return Some(stack_err(StackError::BadHandle));
        };
        let reply = match &mut call.op {
            Op::Now => Some(Reply::Now(now)),
            Op::Sleep { until, length } => {
                let until = *until.get_or_insert(now + *length);
                (now >= until).then_some(Reply::Done)
            }
            Op::TcpListen { port, backlog } => Some(match stack.tcp_listen(*port, *backlog) {
                Ok(()) => Reply::Done,
                Err(e) => stack_err(e),
            }),
            Op::TcpUnlisten { port } => {
                stack.tcp_unlisten(*port);
                Some(Reply::Done)
            }
            Op::TcpServe { kind, backlog } => Some(match stack.tcp_listen(kind.port(), *backlog) {
                Ok(()) => {
                    self.services.push(TcpService::new(call.host, *kind));
                    Reply::Done
                }
                Err(e) => stack_err(e),
            }),
            Op::TcpAdopt { h, role, counters } => Some(match stack.tcp(*h) {
                Err(e) => stack_err(e),
                Ok(_) => {
                    let streams = match self.streams.iter().position(|s| s.host() == call.host) {
                        Some(i) => &mut self.streams[i],
                        None => {
                            self.streams.push(DataStreams::new(call.host));
                            self.streams.last_mut().expect("just pushed")
                        }
                    };
                    streams.adopt(now, *h, *role, counters.clone());
                    Reply::Done
                }
            }),
            Op::TcpRelease { h } => {
                if let Some(s) = self.streams.iter_mut().find(|s| s.host() == call.host) {
                    s.release(stack, *h);
                }
                Some(Reply::Done)
            }
            Op::TcpAccept { port } => stack.tcp_accept(*port).map(|h| {
                let conn = stack.tcp(h).expect("accepted handle is live");
                Reply::Stream {
                    h,
                    local: conn.local(),
                    remote: conn.remote(),
                }
            }),
            Op::TcpConnect { remote, started } => {
                let h = match started {
                    Some(h) => *h,
                    None => match stack.tcp_connect(now, *remote) {
                        Ok(h) => *started.insert(h),
                        Err(e) => return Some(stack_err(e)),
                    },
                };
                match stack.tcp(h) {
                    Err(e) => Some(stack_err(e)),
                    Ok(conn) => match (conn.error(), conn.state()) {
                        (Some(e), _) => {
                            let _ = stack.tcp_abort(h);
                            Some(stack_err(StackError::Tcp(e)))
                        }
                        (None, State::SynSent | State::SynReceived) => None,
                        (None, _) => Some(Reply::Stream {
                            h,
                            local: conn.local(),
                            remote: conn.remote(),
                        }),
                    },
                }
            }
            Op::TcpRead { h, max } => match stack.tcp(*h) {
                Err(e) => Some(stack_err(e)),
                Ok(conn) if !conn.can_recv() => None,
                Ok(conn) => {
                    // Only what is there: zeroing the caller's whole `max` on every read
                    // showed in the iperf3 server's profile.
                    let mut buf = vec![0; (*max).min(conn.recv_queue())];
                    Some(match stack.tcp_recv(*h, &mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            Reply::Data(buf)
                        }
                        // End of stream: no data, as std's `Read` reports it.
                        Err(StackError::Recv(RecvError::Finished)) => Reply::Data(Vec::new()),
                        Err(e) => stack_err(e),
                    })
                }
            },
            Op::TcpWrite { h, data } => match stack.tcp_send(*h, data) {
                Ok(0) if !data.is_empty() => None,
                Ok(n) => Some(Reply::Written(n)),
                Err(e) => Some(stack_err(e)),
            },
            Op::TcpShutdown { h } => Some(match stack.tcp_shutdown(*h) {
                Ok(()) => Reply::Done,
                Err(e) => stack_err(e),
            }),
            Op::TcpClose { h } => {
                let _ = stack.tcp_close(*h);
                Some(Reply::Done)
            }
            Op::TcpInfo { h } => Some(match stack.tcp(*h) {
                Ok(c) => Reply::Info(Box::new(TcpInfo {
                    state: c.state(),
                    local: c.local(),
                    remote: c.remote(),
                    error: c.error(),
                    srtt: c.srtt(),
                    rto: c.rto(),
                    cwnd: c.cwnd(),
                    congestion: c.congestion(),
                    stats: *c.stats(),
                })),
                Err(e) => stack_err(e),
            }),
            Op::TcpSetNodelay { h, nodelay } => Some(match stack.tcp_set_nodelay(*h, *nodelay) {
                Ok(()) => Reply::Done,
                Err(e) => stack_err(e),
            }),
            Op::UdpBind { local } => Some(match stack.udp_bind(*local) {
                Ok(u) => {
                    let local = stack.udp().local_addr(u).unwrap_or(*local);
                    Reply::Udp { u, local }
                }
                Err(e) => Reply::Err(CallError::UdpBind(e)),
            }),
            Op::UdpSendTo { u, dst, data } => Some(match stack.udp_send_to(now, *u, *dst, data) {
                Ok(()) => Reply::Written(data.len()),
                Err(e) => Reply::Err(CallError::UdpSend(e)),
            }),
            Op::UdpRecvFrom { u, max } => {
                // A parked receive is tried after every round: it allocates only once a
                // datagram is queued, and only that datagram's size (a zeroed 64 KiB
                // buffer per round was 15% of an idle runtime's time per ICMP echo).
                let len = stack.udp().peek_len(*u).unwrap_or(0);
                let mut buf = vec![0; len.min(*max)];
                match stack.udp_recv_from(*u, &mut buf) {
                    Ok(Some((n, from))) => {
                        buf.truncate(n);
                        Some(Reply::Datagram(buf, from))
                    }
                    Ok(None) => None,
                    Err(UdpRecvError::Closed) => Some(Reply::Err(CallError::UdpClosed)),
                }
            }
            Op::UdpClose { u } => {
                stack.udp_close(*u);
                Some(Reply::Done)
            }
        };
        if reply.is_some() {
            return reply;
        }
        match call.deadline {
            Some(d) if d <= now => {
                if let Op::TcpConnect {
                    started: Some(h), ..
                } = call.op
                {
                    let _ = stack.tcp_abort(h);
                }
                Some(Reply::Err(CallError::Deadline))
            }
            _ => None,
        }
    }

    /// Tries `call` now: answers it (true), or parks it in `waiting` (false).
    pub fn serve(&mut self, mut call: Call, waiting: &mut Vec<Call>) -> bool {
        match self.attempt(&mut call) {
            Some(reply) => {
                // A connection whose caller is gone (an async connect or accept dropped
                // before its answer) would be nobody's: reset it.
                if let Err(Reply::Stream { h, .. }) = call.reply.send(reply) {
                    if let Some(stack) = self.hosts.get_mut(call.host) {
                        let _ = stack.tcp_abort(h);
                    }
                }
                true
            }
            None => {
                waiting.push(call);
                false
            }
        }
    }

    /// Tries again, in the order given, every parked call whose connection had an event
    /// since the last retry (or that may complete for another reason, see
    /// [`Engine::may_complete`]); says which kinds were answered. The others could not
    /// complete now: trying them would cost a look at each of them every round.
    pub fn retry(&mut self, waiting: &mut Vec<Call>) -> Retried {
        self.collect_events();
        let ready: Vec<(BTreeSet<TcpHandle>, BTreeSet<u16>)> = self
            .ready
            .iter_mut()
            .map(|r| {
                (
                    std::mem::take(&mut r.calls),
                    std::mem::take(&mut r.listeners),
                )
            })
            .collect();
        let mut retried = Retried::default();
        for call in std::mem::take(waiting) {
            let may = match ready.get(call.host) {
                Some((calls, ports)) => self.may_complete(&call, calls, ports),
                None => true,
            };
            if !may {
                waiting.push(call);
                continue;
            }
            let socket_call = !call.op.is_clock();
            if self.serve(call, waiting) {
                retried.any = true;
                retried.socket_call |= socket_call;
            }
        }
        retried
    }

    /// Earliest time something may change: a stack event or a waiting call's deadline
    /// (sleeps included).
    pub fn next_event(&self, waiting: &[Call]) -> Option<Instant> {
        let stacks = self.hosts.iter().filter_map(|s| s.poll_at(self.now));
        let deadlines = waiting.iter().filter_map(|c| match c.op {
            Op::Sleep { until, .. } => until,
            _ => c.deadline,
        });
        let streams = self.streams.iter().filter_map(|s| s.next_wake());
        stacks.chain(deadlines).chain(streams).min()
    }

    /// Polls every stack until none has work at the current time. After each round the
    /// built-in services take what arrived and queue what they send, and their stacks
    /// send it at once (before reading the link again): one wake-up reads a batch of
    /// segments, consumes it, and acknowledges (or answers) it.
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            for stack in &mut self.hosts {
                // A link receive error (never on a simulated link) is counted by the
                // interface and ends that poll's reading, after its timers and output
                // have run: poll again for the packets behind it.
                for _ in 0..LINK_ERRORS_PER_ROUND {
                    if stack.poll(self.now).is_ok() {
                        break;
                    }
                }
            }
            self.run_services();
            let now = self.now;
            let busy = self
                .hosts
                .iter()
                .any(|stack| stack.poll_at(now).is_some_and(|t| t <= now));
            if !busy {
                return;
            }
        }
    }

    /// Gives each service its turn on the connections that had an event (and the ones
    /// it accepts now).
    fn run_services(&mut self) {
        self.collect_events();
        if self.services.is_empty() && self.streams.is_empty() {
            return;
        }
        if self.scratch.len() < ECHO_CHUNK {
            self.scratch.resize(ECHO_CHUNK, 0);
        }
        let ready: Vec<BTreeSet<TcpHandle>> = self
            .ready
            .iter_mut()
            .map(|r| std::mem::take(&mut r.services))
            .collect();
        for service in &mut self.services {
            let host = service.host();
            if let (Some(stack), Some(ready)) = (self.hosts.get_mut(host), ready.get(host)) {
                service.poll(stack, &mut self.scratch, ready);
                stack.transmit(self.now);
            }
        }
        for streams in &mut self.streams {
            let host = streams.host();
            if let (Some(stack), Some(ready)) = (self.hosts.get_mut(host), ready.get(host)) {
                streams.poll(stack, self.now, ready);
                stack.transmit(self.now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{LinkError, Medium, TxInfo};
    use crate::transport::stack::StackConfig;

    /// A device whose first `failures` reads fail, then has nothing to read.
    struct FailingLink {
        failures: u32,
    }

    impl Link for FailingLink {
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
            if self.failures == 0 {
                return Ok(None);
            }
            self.failures -= 1;
            Err(LinkError::Closed)
        }
        fn poll_at(&self, _now: Instant) -> Option<Instant> {
            None
        }
    }

    /// Runs `engine` from event to event until `until` (no calls waiting).
    fn run_until(engine: &mut Engine, until: Instant) {
        loop {
            engine.settle();
            match engine.next_event(&[]) {
                Some(t) if t <= until => {
                    engine.now = t.max(engine.now + Duration::from_micros(1));
                }
                _ => break,
            }
        }
        engine.now = until;
        engine.settle();
    }

    /// Issue 12 item 3: a round gives a turn only to the service connections that had an
    /// event, so an echo beside many idle connections costs a few turns, not one per
    /// idle connection per round.
    #[test]
    fn services_visit_only_connections_with_an_event() {
        use crate::link::{SimConfig, SimLink};
        use crate::sim::host_addr;
        const IDLE: usize = 50;
        let (la, lb) = SimLink::pair(SimConfig::default(), 1).unwrap();
        let mut engine = Engine::new(Instant::ZERO);
        let stack = |link: SimLink, n| {
            crate::sim::stack(Box::new(link), host_addr(n), StackConfig::default())
        };
        let client = engine.add_host(stack(la, 1));
        let server = engine.add_host(stack(lb, 2));
        let (reply, _answers) = crossbeam_channel::unbounded();
        let mut serve = Call {
            participant: 0,
            host: server,
            op: Op::TcpServe {
                kind: ServiceKind::Echo,
                backlog: 64,
            },
            timeout: None,
            deadline: None,
            reply: crate::runtime::ReplyTo::Channel(reply),
        };
        assert!(matches!(engine.attempt(&mut serve), Some(Reply::Done)));
        let echo = SocketAddrV4::new(host_addr(2), ServiceKind::Echo.port());
        let conns: Vec<TcpHandle> = (0..=IDLE)
            .map(|_| engine.hosts[client].tcp_connect(engine.now, echo).unwrap())
            .collect();
        run_until(&mut engine, Instant::from_secs(2));
        assert_eq!(engine.services[0].connections(), IDLE + 1);
        let before = engine.services[0].turns();
        // One connection's request and its echo, beside the idle ones.
        engine.hosts[client].tcp_send(conns[0], b"ping").unwrap();
        run_until(&mut engine, Instant::from_secs(3));
        let mut buf = [0u8; 8];
        assert_eq!(engine.hosts[client].tcp_recv(conns[0], &mut buf), Ok(4));
        assert_eq!(&buf[..4], b"ping");
        let turns = engine.services[0].turns() - before;
        assert!((1..=4).contains(&turns), "{turns} turns for one echo");
    }

    #[test]
    fn settle_counts_link_receive_errors_and_finishes_the_tick() {
        let mut engine = Engine::new(Instant::ZERO);
        let link: BoxLink = Box::new(FailingLink { failures: 3 });
        let host = engine.add_host(crate::sim::stack(
            link,
            crate::sim::host_addr(1),
            StackConfig::default(),
        ));
        engine.settle();
        assert_eq!(engine.link_errors(host), 3);
        assert!(engine.hosts[host].poll(engine.now).is_ok());
    }
}
