//! `Stack`: the transport layer on one network [`Interface`]. It owns the interface,
//! demultiplexes arriving segments and datagrams to TCP connections, listeners and UDP
//! sockets by port and 4-tuple, runs the connections' timers, and sends what they
//! produce. Sans-IO like everything below it: the caller passes `now` and drives
//! [`Stack::poll`] whenever [`Stack::poll_at`] says.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::icmpv4::{CODE_DST_UNREACH_NEED_FRAG, CODE_DST_UNREACH_PORT};

use crate::net::link::{Instant, Link, LinkError};
use crate::net::{
    IcmpEvent, Interface, IpNumber, Received, SendError as NetSendError, SendOptions,
};
use crate::ports::{PortAllocator, EPHEMERAL_PORTS};
use crate::quoted::Quoted;
use crate::syn_cookies;
use crate::tcp::conn::{Connection, Opening, State};
use crate::tcp::error::{ConnectionError, RecvError, SendError};
use crate::tcp::mss_for_mtu;
use crate::tcp::seq::SeqNumber;
use crate::tcp::stats::ConnStats;
use crate::tcp::time_wait::{TimeWait, TimeWaitInput};
use crate::tcp::wire::{self, Segment, WireError};
use crate::tcp::TcpConfig;
use crate::udp::{UdpConfig, UdpHandle, UdpInput, UdpTable};

/// Settings of a [`Stack`].
#[derive(Debug, Clone, PartialEq)]
pub struct StackConfig {
    pub tcp: TcpConfig,
    pub udp: UdpConfig,
    /// Seeds the RFC 6528 ISN secret, timestamp offsets and ephemeral ports, so that a
    /// simulation replays exactly. On a real device it must be unguessable: the app
    /// takes it from the OS there (`ustack_app::device::stack_config`).
    pub seed: u64,
    /// Half-open connections a listener holds (SYN queue).
    pub syn_backlog: usize,
    /// Answer SYNs with SYN cookies when the SYN queue is full (RFC 4987 section 3.6;
    /// Linux `tcp_syncookies = 1`), instead of dropping them.
    pub syn_cookies: bool,
    /// Connections the stack keeps in TIME-WAIT at once (Linux `tcp_max_tw_buckets`);
    /// one more closing when all are taken is freed at once.
    pub max_time_wait: usize,
    /// Local ports of TCP active opens (RFC 6335 section 6's dynamic range by default).
    /// Stacks that share an address (one per queue of a multi-queue TUN) get disjoint
    /// slices, so no two of them pick the same 4-tuple.
    pub ephemeral_ports: core::ops::RangeInclusive<u16>,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        StackConfig {
            tcp: TcpConfig::default(),
            udp: UdpConfig::default(),
            seed: 0,
            syn_backlog: 256,
            syn_cookies: true,
            max_time_wait: 16_384,
            ephemeral_ports: EPHEMERAL_PORTS,
        }
    }
}

/// A TCP connection owned by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpHandle {
    index: usize,
    generation: u32,
}

/// What may have changed for the application since [`Stack::take_events`] last ran: the
/// connections the stack worked on (data or a FIN arrived, room opened in the send
/// buffer, the handshake completed, the connection closed or failed or was reaped) and
/// the listeners whose accept queue grew. A driver visits only these instead of every
/// connection each round (readiness, as epoll reports it); an event may be spurious, a
/// change never goes unreported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpEvents {
    /// Each connection once, as the handle that named it when it changed.
    pub conns: Vec<TcpHandle>,
    /// Each port once.
    pub listeners: Vec<u16>,
}

impl TcpEvents {
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.listeners.is_empty()
    }

    pub fn clear(&mut self) {
        self.conns.clear();
        self.listeners.clear();
    }
}

/// Why a TCP call failed at the stack level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error("port {0} is already in use")]
    AddrInUse(u16),
    #[error("no free ephemeral port towards {0}")]
    NoEphemeralPort(SocketAddrV4),
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("the handle does not name a live connection")]
    BadHandle,
    /// The connection failed (how it ended).
    #[error(transparent)]
    Tcp(#[from] ConnectionError),
    #[error(transparent)]
    Send(#[from] SendError),
    /// `Recv(RecvError::Finished)` is the end of the stream.
    #[error(transparent)]
    Recv(#[from] RecvError),
}

crate::net::link::counters! {
    /// Stack-level counters, with the sum of every connection's counters.
    pub struct TransportStats {
        pub tcp_segs_in: u64,
        pub tcp_checksum_errors: u64,
        pub tcp_malformed: u64,
        /// Segments for no connection or listener (answered with RST unless they were RSTs).
        pub tcp_no_socket: u64,
        pub tcp_rsts_sent: u64,
        pub syn_queue_overflows: u64,
        /// SYN-ACKs carrying a SYN cookie (the SYN queue was full), RFC 4987 section 3.6.
        pub syn_cookies_sent: u64,
        /// Handshake ACKs whose cookie was valid: connections created from them.
        pub syn_cookies_accepted: u64,
        /// ACKs to a listener that had sent cookies, with no valid cookie (answered with
        /// RST as a segment for no connection).
        pub syn_cookies_rejected: u64,
        /// Connections freed on entering TIME-WAIT because `max_time_wait` were in it.
        pub time_wait_overflows: u64,
        /// SYNs with FIN set to a listener, dropped (as Linux does).
        pub tcp_syn_fin_drops: u64,
        pub accept_queue_overflows: u64,
        pub connections_opened: u64,
        pub connections_accepted: u64,
        pub send_errors: u64,
        /// ICMP errors received (about any protocol).
        pub icmp_errors_in: u64,
        /// ICMP port unreachable about datagrams we sent over UDP.
        pub udp_port_unreachable_in: u64,
    }
    /// Counters of every connection, closed ones included; printed as `tcp.<name>`.
    pub tcp: ConnStats => "tcp.",
}

#[derive(Debug)]
struct Slot {
    /// Boxed: a free slot then costs the table a few words, not a whole connection,
    /// and a closed connection's memory goes back at once (the table never shrinks).
    conn: Box<Connection>,
    generation: u32,
    /// Listener port, while the connection waits in its SYN or accept queue.
    listener: Option<u16>,
    /// In the listener's accept queue (established, not yet accepted).
    queued: bool,
    /// The application let go: reap once closed.
    detached: bool,
    /// Key of this connection's entry in the timer index.
    timer_key: Option<Instant>,
    /// Counted in [`Stack`]'s TIME-WAIT entries.
    time_wait: bool,
    /// Listed in the stack's pending [`TcpEvents`].
    event_pending: bool,
}

#[derive(Debug)]
struct Listener {
    backlog: usize,
    half_open: usize,
    ready: VecDeque<usize>,
    /// When the listener last answered a SYN with a cookie: ACKs for no connection are
    /// checked for one only for a while after.
    last_cookie: Option<Instant>,
    /// Listed in the stack's pending [`TcpEvents`].
    event_pending: bool,
}

type FourTuple = (SocketAddrV4, SocketAddrV4);

/// A connection the application let go of, in TIME-WAIT, in compact form.
#[derive(Debug)]
struct TimeWaitSlot {
    tw: TimeWait,
    /// Owes the ACK that goes out at the end of the batch (see [`TimeWaitInput`]).
    ack_pending: bool,
}

/// The transport layer.
#[derive(Debug)]
pub struct Stack<L: Link> {
    iface: Interface<L>,
    cfg: StackConfig,
    udp: UdpTable,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    by_tuple: BTreeMap<FourTuple, usize>,
    listeners: BTreeMap<u16, Listener>,
    /// Connections with something to send or whose state changed.
    dirty: BTreeSet<usize>,
    timers: BTreeSet<(Instant, usize)>,
    /// Local ports of active opens.
    tcp_ports: PortAllocator,
    /// Connections in TIME-WAIT, at most `cfg.max_time_wait`: those the application
    /// still holds, and the compact ones in `time_waits`.
    time_wait: usize,
    /// Connections in TIME-WAIT that nobody holds, as about 200 bytes each (with the
    /// map nodes) instead of a whole connection (Linux's timewait sockets), by 4-tuple.
    time_waits: BTreeMap<FourTuple, TimeWaitSlot>,
    /// When each of `time_waits` ends.
    time_wait_timers: BTreeSet<(Instant, FourTuple)>,
    /// Entries of `time_waits` owing an ACK at the end of the batch.
    time_wait_acks: Vec<FourTuple>,
    /// Changes not yet taken by [`Stack::take_events`].
    events: TcpEvents,
    /// Whether anyone takes the events (since the first [`Stack::take_events`]): a
    /// stack driven without a runtime does not collect them.
    events_on: bool,
    /// The time of the latest [`Stack::poll`] or [`Stack::transmit`]: when an application
    /// call (which carries no time) happened, near enough to schedule a reclaim.
    clock: Instant,
    /// Where the device reads packets into; their payloads are parsed in place.
    rx: Vec<u8>,
    /// The last [`Stack::poll`] stopped at its budget ([`POLL_BUDGET`]) with the link
    /// perhaps holding more: [`Stack::poll_at`] says "now".
    rx_budget_spent: bool,
    tx: Vec<u8>,
    stats: TransportStats,
    closed_stats: ConnStats,
}

/// Bytes of data (TCP payload; UDP and others whole) one [`Stack::poll`] reads from the
/// link before it returns, so that the applications take what arrived before more is
/// read (Linux's NAPI budget, 64 packets per device poll, lets the receiving process run
/// between polls likewise). A poll that read megabytes in one go (after the runtime
/// thread was descheduled, with the kernel sender filling the device queue meanwhile)
/// held them all in the receive buffers until it ended, and the window its ACKs
/// advertised shrank by as much: the kernel sender of `ustack bench`'s receive rows was
/// receive-window limited 3-4% of the time (`ss -ti`: rwnd_limited), 0-0.2% with the
/// budget. As much as an ACK may cover (`MAX_ACK_BATCH`, 256 KiB), so a budget's end
/// costs no extra ACK.
pub const POLL_BUDGET: usize = crate::tcp::conn::MAX_ACK_BATCH;

impl<L: Link> Stack<L> {
    pub fn new(mut iface: Interface<L>, cfg: StackConfig) -> Stack<L> {
        iface.accept_protocol(IpNumber::TCP);
        iface.accept_protocol(IpNumber::UDP);
        Stack {
            iface,
            udp: UdpTable::seeded(cfg.udp.clone(), cfg.seed),
            tcp_ports: PortAllocator::seeded(cfg.ephemeral_ports.clone(), cfg.seed),
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            by_tuple: BTreeMap::new(),
            listeners: BTreeMap::new(),
            dirty: BTreeSet::new(),
            timers: BTreeSet::new(),
            time_wait: 0,
            time_waits: BTreeMap::new(),
            time_wait_timers: BTreeSet::new(),
            time_wait_acks: Vec::new(),
            events: TcpEvents::default(),
            events_on: false,
            clock: Instant::ZERO,
            rx: Vec::new(),
            rx_budget_spent: false,
            tx: Vec::new(),
            stats: TransportStats::default(),
            closed_stats: ConnStats::default(),
        }
    }

    pub fn interface(&self) -> &Interface<L> {
        &self.iface
    }

    pub fn interface_mut(&mut self) -> &mut Interface<L> {
        &mut self.iface
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.iface.addr()
    }

    /// Stack counters, with the sum of every connection's counters.
    pub fn stats(&self) -> TransportStats {
        let mut s = self.stats.clone();
        s.tcp = self.closed_stats;
        for slot in self.slots.iter().flatten() {
            s.tcp.add(slot.conn.stats());
        }
        s
    }

    pub fn udp(&self) -> &UdpTable {
        &self.udp
    }

    /// Live connections (any state but reaped).
    pub fn connections(&self) -> usize {
        self.by_tuple.len() + self.time_waits.len()
    }

    // ---- TCP application calls ----

    /// Listens on `port` with an accept queue of `backlog` connections.
    pub fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<(), StackError> {
        if self.listeners.contains_key(&port) {
            return Err(StackError::AddrInUse(port));
        }
        self.listeners.insert(
            port,
            Listener {
                backlog: backlog.max(1),
                half_open: 0,
                ready: VecDeque::new(),
                event_pending: false,
                last_cookie: None,
            },
        );
        Ok(())
    }

    /// Stops listening; queued connections are reset.
    pub fn tcp_unlisten(&mut self, port: u16) {
        if let Some(l) = self.listeners.remove(&port) {
            for index in l.ready {
                if let Some(slot) = self.slots[index].as_mut() {
                    slot.conn.abort();
                    slot.detached = true;
                    self.dirty.insert(index);
                }
            }
        }
    }

    /// An established connection from the accept queue of `port`.
    pub fn tcp_accept(&mut self, port: u16) -> Option<TcpHandle> {
        let index = self.listeners.get_mut(&port)?.ready.pop_front()?;
        let slot = self.slots[index].as_mut()?;
        slot.listener = None;
        self.stats.connections_accepted += 1;
        Some(TcpHandle {
            index,
            generation: slot.generation,
        })
    }

    /// Starts an active open towards `remote` (RFC 9293 section 3.10.1).
    pub fn tcp_connect(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
    ) -> Result<TcpHandle, StackError> {
        if self.iface.routes().next_hop(*remote.ip()).is_none() {
            return Err(StackError::NoRoute(*remote.ip()));
        }
        let local_ip = self.iface.addr();
        let (by_tuple, listeners) = (&self.by_tuple, &self.listeners);
        let time_waits = &self.time_waits;
        let port = self
            .tcp_ports
            .pick(|port| {
                let local = SocketAddrV4::new(local_ip, port);
                by_tuple.contains_key(&(local, remote))
                    || time_waits.contains_key(&(local, remote))
                    || listeners.contains_key(&port)
            })
            .ok_or(StackError::NoEphemeralPort(remote))?;
        let local = SocketAddrV4::new(local_ip, port);
        let opening = self.opening(now, local, remote);
        let conn = Connection::connect(now, opening, self.tcp_config());
        let index = self.insert(conn, None);
        self.stats.connections_opened += 1;
        let generation = self.slots[index].as_ref().map_or(0, |s| s.generation);
        Ok(TcpHandle { index, generation })
    }

    fn slot(&self, h: TcpHandle) -> Result<&Slot, StackError> {
        match self.slots.get(h.index) {
            Some(Some(slot)) if slot.generation == h.generation && !slot.detached => Ok(slot),
            _ => Err(StackError::BadHandle),
        }
    }

    fn slot_mut(&mut self, h: TcpHandle) -> Result<&mut Slot, StackError> {
        match self.slots.get_mut(h.index) {
            Some(Some(slot)) if slot.generation == h.generation && !slot.detached => Ok(slot),
            _ => Err(StackError::BadHandle),
        }
    }

    /// The connection behind a handle, to read its state and counters.
    pub fn tcp(&self, h: TcpHandle) -> Result<&Connection, StackError> {
        self.slot(h).map(|s| &*s.conn)
    }

    /// Queues data; marks the connection for transmission only if something was queued,
    /// so a caller retrying on a full buffer does not keep the stack busy.
    pub fn tcp_send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, StackError> {
        let n = self.slot_mut(h)?.conn.send(data)?;
        if n > 0 {
            self.dirty.insert(h.index);
        }
        Ok(n)
    }

    /// Reads in order; `Ok(0)`: nothing yet, `Err(StackError::Recv(RecvError::Finished))`:
    /// end of stream.
    pub fn tcp_recv(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize, StackError> {
        let n = self.slot_mut(h)?.conn.recv(buf)?;
        self.consumed(h, n);
        Ok(n)
    }

    /// Drops up to `max` bytes in order without copying them (a discard service);
    /// results as [`Stack::tcp_recv`].
    pub fn tcp_discard(&mut self, h: TcpHandle, max: usize) -> Result<usize, StackError> {
        let n = self.slot_mut(h)?.conn.discard(max)?;
        self.consumed(h, n);
        Ok(n)
    }

    /// The application took `n` bytes from `h`: a window update may be due, and a
    /// drained receive buffer's memory goes back unless it refills soon.
    fn consumed(&mut self, h: TcpHandle, n: usize) {
        if n == 0 {
            return;
        }
        let clock = self.clock;
        if let Some(slot) = self.slots[h.index].as_mut() {
            slot.conn.reclaim_later(clock);
        }
        self.dirty.insert(h.index);
    }

    /// Closes the sending side (FIN after the queued data).
    pub fn tcp_shutdown(&mut self, h: TcpHandle) -> Result<(), StackError> {
        self.slot_mut(h)?.conn.shutdown_write();
        self.dirty.insert(h.index);
        Ok(())
    }

    /// Closes and lets go of the connection. Unread received data makes it an abort
    /// with RST (RFC 2525 section 2.17), as Linux does.
    pub fn tcp_close(&mut self, h: TcpHandle) -> Result<(), StackError> {
        let slot = self.slot_mut(h)?;
        if slot.conn.recv_queue() > 0 {
            slot.conn.abort();
        } else {
            slot.conn.shutdown_write();
        }
        slot.detached = true;
        self.dirty.insert(h.index);
        Ok(())
    }

    pub fn tcp_set_nodelay(&mut self, h: TcpHandle, nodelay: bool) -> Result<(), StackError> {
        self.slot_mut(h)?.conn.set_nodelay(nodelay);
        self.dirty.insert(h.index);
        Ok(())
    }

    pub fn tcp_abort(&mut self, h: TcpHandle) -> Result<(), StackError> {
        let slot = self.slot_mut(h)?;
        slot.conn.abort();
        slot.detached = true;
        self.dirty.insert(h.index);
        Ok(())
    }

    /// Shutting down (the process got SIGTERM, say): stops listening (queued
    /// connections are reset) and closes every connection as [`Stack::tcp_close`] does,
    /// with a FIN after the queued data, or a RST if received data was never read (RFC
    /// 2525 section 2.17). The stack lets go of them all: their handles no longer name
    /// a connection, and each is reaped once closed.
    pub fn tcp_close_all(&mut self) {
        let ports: Vec<u16> = self.listeners.keys().copied().collect();
        for port in ports {
            self.tcp_unlisten(port);
        }
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.conn.recv_queue() > 0 {
                slot.conn.abort();
            } else {
                slot.conn.shutdown_write();
            }
            slot.detached = true;
            self.dirty.insert(index);
        }
    }

    /// Connections not yet closed down to CLOSED or TIME-WAIT: what a shutdown still
    /// waits for.
    pub fn tcp_closing(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !matches!(s.conn.state(), State::Closed | State::TimeWait))
            .count()
    }

    /// The end of a shutdown's grace period: every connection still closing is reset
    /// (RFC 9293 section 3.10.5).
    pub fn tcp_abort_all(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if !matches!(slot.conn.state(), State::Closed | State::TimeWait) {
                slot.conn.abort();
                slot.detached = true;
                self.dirty.insert(index);
            }
        }
    }

    // ---- UDP application calls ----

    pub fn udp_bind(&mut self, local: SocketAddrV4) -> Result<UdpHandle, crate::udp::BindError> {
        self.udp.bind(local)
    }

    pub fn udp_close(&mut self, h: UdpHandle) {
        self.udp.close(h);
    }

    pub fn udp_send_to(
        &mut self,
        now: Instant,
        h: UdpHandle,
        dst: SocketAddrV4,
        data: &[u8],
    ) -> Result<(), UdpSendFailure> {
        let src_ip = self.iface.addr();
        self.udp.encode(h, src_ip, dst, data, &mut self.tx)?;
        self.iface.send(now, *dst.ip(), IpNumber::UDP, &self.tx)?;
        Ok(())
    }

    pub fn udp_recv_from(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddrV4)>, crate::udp::UdpRecvError> {
        self.udp.recv_from(h, buf)
    }

    // ---- driving ----

    /// Earliest connection timer and a summary of that connection (for debugging).
    pub fn next_timer(&self) -> Option<(Instant, String)> {
        let &(at, index) = self.timers.first()?;
        let summary = self.slots[index]
            .as_ref()
            .map(|s| s.conn.summary())
            .unwrap_or_default();
        Some((at, format!("{summary} dirty={}", self.dirty.len())))
    }

    /// When [`Stack::poll`] next has work: a packet arriving, a timer, or output pending.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if self.rx_budget_spent || !self.dirty.is_empty() || !self.time_wait_acks.is_empty() {
            return Some(now);
        }
        let timer = match (self.timers.first(), self.time_wait_timers.first()) {
            (Some(a), Some(b)) => Some(a.0.min(b.0)),
            (a, b) => a.map(|t| t.0).or(b.map(|t| t.0)),
        };
        match (self.iface.poll_at(now), timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes everything due at `now`: arrivals, timers, and transmissions. The
    /// packets waiting on the link are read in this one call, up to [`POLL_BUDGET`]
    /// bytes (then [`Stack::poll_at`] says "now" and the next call reads on), and each
    /// connection sends what it has once at the end: a batch of in-order segments gets
    /// one ACK (see [`Connection::ack_due`] for the ACKs that cannot wait). A link
    /// receive error (counted by the interface as `rx_link_errors`) ends only the
    /// receiving: ICMP events, timers and transmissions still run, and the error is
    /// returned after them.
    pub fn poll(&mut self, now: Instant) -> Result<(), LinkError> {
        let mut payload = std::mem::take(&mut self.rx);
        let mut budget = POLL_BUDGET;
        self.rx_budget_spent = false;
        let received = loop {
            // The payload is parsed where the device put it (no copy inside the interface).
            let len = match self.iface.recv_in_place(now, &mut payload) {
                Ok(Some((r, at))) if r.protocol == IpNumber::TCP => {
                    let segment = &payload[at];
                    self.on_tcp(now, &r, segment);
                    // The data, as `MAX_ACK_BATCH` counts it.
                    wire::data_len(segment)
                }
                Ok(Some((r, at))) if r.protocol == IpNumber::UDP => {
                    self.on_udp(now, &r, &payload[at]);
                    r.len
                }
                Ok(Some((r, _))) => r.len,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            budget = budget.saturating_sub(len);
            if budget == 0 {
                self.rx_budget_spent = true;
                break Ok(());
            }
        };
        self.rx = payload;
        while let Some(event) = self.iface.poll_icmp() {
            self.on_icmp(event);
        }
        self.transmit(now);
        received
    }

    /// Runs the timers due at `now` and sends what every connection has, without reading
    /// the link: for a driver whose application queued data right after a poll (an echo,
    /// a window update), so it leaves before the next read.
    pub fn transmit(&mut self, now: Instant) {
        self.clock = now;
        while let Some(&(at, index)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, index));
            if let Some(slot) = self.slots[index].as_mut() {
                slot.timer_key = None;
                slot.conn.on_timeout(now);
                self.dirty.insert(index);
            }
        }
        while let Some(index) = self.dirty.pop_first() {
            self.flush(now, index);
        }
        while let Some(&(at, tuple)) = self.time_wait_timers.first() {
            if at > now {
                break;
            }
            self.time_wait_timers.pop_first();
            if self.time_waits.remove(&tuple).is_some() {
                self.time_wait -= 1;
            }
        }
        for tuple in std::mem::take(&mut self.time_wait_acks) {
            // Unless an ACK that could not wait answered it meanwhile.
            if self.time_waits.get(&tuple).is_some_and(|e| e.ack_pending) {
                self.time_wait_ack(now, tuple);
            }
        }
        // The round's packets, on the device at once (one system call for a batch).
        self.iface.flush(now);
    }

    /// Sends the ACK of the compact TIME-WAIT `tuple` if it owes one.
    fn time_wait_ack(&mut self, now: Instant, tuple: FourTuple) {
        let Some(entry) = self.time_waits.get_mut(&tuple) else {
            return;
        };
        entry.ack_pending = false;
        let seg = entry.tw.ack(now, &mut self.closed_stats);
        let (local, remote) = tuple;
        let opts = SendOptions {
            dont_fragment: true,
            ..SendOptions::default()
        };
        let headroom = self.iface.tx_headroom();
        wire::emit_at(&seg, *local.ip(), *remote.ip(), &mut self.tx, headroom);
        if self
            .iface
            .send_prebuilt(now, *remote.ip(), IpNumber::TCP, &opts, &mut self.tx)
            .is_err()
        {
            self.stats.send_errors += 1;
        }
    }

    /// A segment for a compact TIME-WAIT entry (what its connection would have done with
    /// it, see [`TimeWait::handle_segment`]).
    fn on_time_wait(&mut self, now: Instant, tuple: FourTuple, seg: &Segment<'_>) {
        let Some(entry) = self.time_waits.get_mut(&tuple) else {
            return;
        };
        let deadline = entry.tw.deadline();
        match entry.tw.handle_segment(now, seg, &mut self.closed_stats) {
            TimeWaitInput::Nothing => {}
            TimeWaitInput::Ack => self.time_wait_ack(now, tuple),
            TimeWaitInput::AckLater => {
                if !entry.ack_pending {
                    entry.ack_pending = true;
                    self.time_wait_acks.push(tuple);
                }
            }
            TimeWaitInput::Closed => {
                self.time_waits.remove(&tuple);
                self.time_wait_timers.remove(&(deadline, tuple));
                self.time_wait -= 1;
                return;
            }
        }
        if let Some(entry) = self.time_waits.get(&tuple) {
            if entry.tw.deadline() != deadline {
                self.time_wait_timers.remove(&(deadline, tuple));
                self.time_wait_timers.insert((entry.tw.deadline(), tuple));
            }
        }
    }

    /// Hands over (into `events`, which is cleared first) what changed since the last
    /// call; see [`TcpEvents`]. The stack collects events from the first call on.
    pub fn take_events(&mut self, events: &mut TcpEvents) {
        self.events_on = true;
        events.clear();
        std::mem::swap(events, &mut self.events);
        for h in &events.conns {
            if let Some(slot) = self.slots[h.index].as_mut() {
                if slot.generation == h.generation {
                    slot.event_pending = false;
                }
            }
        }
        for port in &events.listeners {
            if let Some(l) = self.listeners.get_mut(port) {
                l.event_pending = false;
            }
        }
    }

    /// ICMP errors about our TCP segments go to their connection (RFC 1122 section
    /// 4.2.3.9), "fragmentation needed" as path MTU discovery (RFC 1191 section 6.1);
    /// echo replies and the rest are counted and left (ping is not a socket).
    fn on_icmp(&mut self, event: IcmpEvent) {
        let (code, next_hop_mtu, original) = match event {
            IcmpEvent::DestUnreachable {
                code,
                next_hop_mtu,
                original,
                ..
            } => (Some(code), next_hop_mtu, original),
            IcmpEvent::TimeExceeded { original, .. } => (None, 0, original),
            IcmpEvent::EchoReply { .. } => return,
        };
        self.stats.icmp_errors_in += 1;
        let Some(quoted) = Quoted::parse(&original) else {
            return;
        };
        let Some(seq) = quoted.tcp_seq else {
            // A UDP socket has no connection to fail; port unreachable is counted for the
            // operator (connected UDP sockets reporting ECONNREFUSED are future work).
            if code == Some(CODE_DST_UNREACH_PORT) {
                self.stats.udp_port_unreachable_in += 1;
            }
            return;
        };
        if let Some(&index) = self.by_tuple.get(&(quoted.local, quoted.remote)) {
            if let Some(slot) = self.slots[index].as_mut() {
                if code == Some(CODE_DST_UNREACH_NEED_FRAG) {
                    slot.conn
                        .on_fragmentation_needed(seq, next_hop_mtu, original.total_len);
                } else {
                    slot.conn.on_icmp_error(seq, code);
                }
                self.dirty.insert(index);
            }
        }
    }

    /// RFC 1122 section 4.1.3.1: a datagram for a port nobody listens on gets ICMP port
    /// unreachable.
    fn on_udp(&mut self, now: Instant, r: &Received, payload: &[u8]) {
        let input = if r.checksum_trusted {
            self.udp.receive_trusted(r.src, r.dst, payload)
        } else {
            self.udp.receive(r.src, r.dst, payload)
        };
        if input == UdpInput::PortUnreachable {
            self.iface.send_port_unreachable(now, r, payload);
        }
    }

    fn on_tcp(&mut self, now: Instant, r: &Received, payload: &[u8]) {
        self.stats.tcp_segs_in += 1;
        let parsed = if r.checksum_trusted {
            wire::parse_trusted(r.src, r.dst, payload)
        } else {
            wire::parse(r.src, r.dst, payload)
        };
        let seg = match parsed {
            Ok(seg) => seg,
            Err(WireError::BadChecksum) => {
                self.stats.tcp_checksum_errors += 1;
                return;
            }
            Err(_) => {
                self.stats.tcp_malformed += 1;
                return;
            }
        };
        if r.broadcast {
            self.stats.tcp_malformed += 1;
            return;
        }
        let local = SocketAddrV4::new(r.dst, seg.dst_port);
        let remote = SocketAddrV4::new(r.src, seg.src_port);
        if let Some(&index) = self.by_tuple.get(&(local, remote)) {
            if let Some(slot) = self.slots[index].as_mut() {
                slot.conn.handle_segment(now, &seg);
                // The rest of the batch is acknowledged at the end of the poll, unless
                // this segment's ACK cannot wait (RFC 5681 section 4.2, `MAX_ACK_BATCH`).
                if slot.conn.ack_due() {
                    self.dirty.remove(&index);
                    self.flush(now, index);
                } else {
                    self.dirty.insert(index);
                }
                return;
            }
        }
        if self.time_waits.contains_key(&(local, remote)) {
            self.on_time_wait(now, (local, remote), &seg);
            return;
        }
        let f = seg.flags;
        if f.ack && !f.syn && !f.rst && self.on_cookie_ack(now, local, remote, &seg) {
            return;
        }
        if f.syn && !f.ack && !f.rst {
            if let Some(listener) = self.listeners.get(&seg.dst_port) {
                if f.fin {
                    // SYN and FIN together only probe or fingerprint a stack: Linux drops
                    // them at a listener.
                    self.stats.tcp_syn_fin_drops += 1;
                    return;
                }
                if listener.half_open >= self.cfg.syn_backlog {
                    self.stats.syn_queue_overflows += 1;
                    if self.cfg.syn_cookies && listener.ready.len() < listener.backlog {
                        self.send_syn_cookie(now, local, remote, &seg);
                    }
                    return;
                }
                if listener.ready.len() >= listener.backlog {
                    self.stats.accept_queue_overflows += 1;
                    return;
                }
                let opening = self.opening(now, local, remote);
                let conn = Connection::accept(now, opening, &seg, self.tcp_config());
                let index = self.insert(conn, Some(seg.dst_port));
                if let Some(l) = self.listeners.get_mut(&seg.dst_port) {
                    l.half_open += 1;
                }
                self.dirty.insert(index);
                return;
            }
        }
        self.stats.tcp_no_socket += 1;
        if !f.rst {
            self.send_rst(now, local, remote, seg.reset_reply());
        }
    }

    /// RFC 4987 section 3.6: answers `syn` with a SYN-ACK whose sequence number is a
    /// cookie (see [`crate::syn_cookies`]), keeping nothing. The SYN-ACK is the one a
    /// connection accepting `syn` would send, with the options the cookie can carry: no
    /// window scaling or SACK unless timestamps carry them, as on Linux.
    fn send_syn_cookie(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &Segment<'_>,
    ) {
        let key = |count, salt| self.cookie_hash(local, remote, count, salt);
        let count = syn_cookies::counter(now);
        let mut opening = self.opening(now, local, remote);
        opening.iss = syn_cookies::encode(&key, syn.seq, count, syn.options.mss);
        let tcp = &self.cfg.tcp;
        let mut syn = *syn;
        if tcp.timestamps && syn.options.timestamps.is_some() {
            let window_scale = syn.options.window_scale.filter(|_| tcp.window_scaling);
            let sack = tcp.sack && syn.options.sack_permitted;
            let ms = now.total_millis() as u32;
            let tsval =
                syn_cookies::encode_ts(ms.wrapping_add(opening.ts_offset), window_scale, sack);
            opening.ts_offset = tsval.wrapping_sub(ms);
        } else {
            syn.options.window_scale = None;
            syn.options.sack_permitted = false;
        }
        let mut conn = Connection::accept(now, opening, &syn, tcp.clone());
        let Some(syn_ack) = conn.poll_transmit(now) else {
            return;
        };
        wire::emit(&syn_ack, *local.ip(), *remote.ip(), &mut self.tx);
        let opts = SendOptions {
            dont_fragment: true,
            ..SendOptions::default()
        };
        if self
            .iface
            .send_with(now, *remote.ip(), IpNumber::TCP, &opts, &self.tx)
            .is_err()
        {
            self.stats.send_errors += 1;
        }
        self.stats.syn_cookies_sent += 1;
        if let Some(l) = self.listeners.get_mut(&local.port()) {
            l.last_cookie = Some(now);
        }
    }

    /// An ACK for no connection, to a listener that sent cookies lately: if it returns a
    /// valid cookie (RFC 4987 section 3.6), the connection is created from it and the
    /// ACK completes its handshake. False if the ACK is not for us to take (then it is a
    /// segment for no connection).
    fn on_cookie_ack(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        ack: &Segment<'_>,
    ) -> bool {
        let Some(listener) = self.listeners.get(&local.port()) else {
            return false;
        };
        if listener
            .last_cookie
            .is_none_or(|at| now - at > syn_cookies::VALID_FOR)
        {
            return false;
        }
        let key = |count, salt| self.cookie_hash(local, remote, count, salt);
        let peer_isn = ack.seq - 1;
        let iss = ack.ack - 1;
        let Some(mss) = syn_cookies::decode(&key, peer_isn, iss, syn_cookies::counter(now)) else {
            self.stats.syn_cookies_rejected += 1;
            return false;
        };
        if listener.ready.len() >= listener.backlog {
            // As for a SYN: the peer retransmits its ACK (or data) later.
            self.stats.accept_queue_overflows += 1;
            return true;
        }
        let tcp = &self.cfg.tcp;
        let timestamps = ack.options.timestamps.filter(|_| tcp.timestamps);
        let (window_scale, sack_permitted) =
            timestamps.map_or((None, false), |(_, tsecr)| syn_cookies::decode_ts(tsecr));
        let syn = Segment {
            seq: peer_isn,
            ack: SeqNumber(0),
            flags: wire::Flags {
                syn: true,
                ..wire::Flags::default()
            },
            options: wire::TcpOptions {
                mss: Some(mss),
                window_scale,
                sack_permitted,
                timestamps: timestamps.map(|(tsval, _)| (tsval, 0)),
                ..wire::TcpOptions::default()
            },
            payload: &[],
            ..*ack
        };
        let mut opening = self.opening(now, local, remote);
        opening.iss = iss;
        let conn = Connection::accept_cookie(now, opening, &syn, tcp.clone());
        let index = self.insert(conn, Some(local.port()));
        if let Some(l) = self.listeners.get_mut(&local.port()) {
            l.half_open += 1;
        }
        if let Some(slot) = self.slots[index].as_mut() {
            slot.conn.handle_segment(now, ack);
        }
        self.stats.syn_cookies_accepted += 1;
        true
    }

    /// The keyed hash behind SYN cookies: the ISN's (see [`Stack::opening`]) over the
    /// secret and the 4-tuple, with the cookie counter and a salt.
    fn cookie_hash(&self, local: SocketAddrV4, remote: SocketAddrV4, count: u32, salt: u8) -> u32 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cfg.seed.hash(&mut h);
        local.hash(&mut h);
        remote.hash(&mut h);
        count.hash(&mut h);
        salt.hash(&mut h);
        h.finish() as u32
    }

    fn send_rst(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: Segment<'static>,
    ) {
        wire::emit(&seg, *local.ip(), *remote.ip(), &mut self.tx);
        if self
            .iface
            .send(now, *remote.ip(), IpNumber::TCP, &self.tx)
            .is_ok()
        {
            self.stats.tcp_rsts_sent += 1;
        } else {
            self.stats.send_errors += 1;
        }
    }

    fn insert(&mut self, conn: Connection, listener: Option<u16>) -> usize {
        let tuple = (conn.local(), conn.remote());
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        self.generations[index] = self.generations[index].wrapping_add(1);
        self.slots[index] = Some(Slot {
            conn: Box::new(conn),
            generation: self.generations[index],
            listener,
            queued: false,
            detached: false,
            timer_key: None,
            time_wait: false,
            event_pending: false,
        });
        self.by_tuple.insert(tuple, index);
        self.dirty.insert(index);
        index
    }

    /// Sends everything the connection has, files its timer, moves it between listener
    /// queues, and reaps it if it is closed and nobody holds it.
    fn flush(&mut self, now: Instant, index: usize) {
        let Some(slot) = self.slots[index].as_mut() else {
            return;
        };
        if slot.detached {
            slot.conn.orphan(now);
        }
        if self.events_on && !slot.event_pending {
            slot.event_pending = true;
            self.events.conns.push(TcpHandle {
                index,
                generation: slot.generation,
            });
        }
        let (local, remote) = (slot.conn.local(), slot.conn.remote());
        let mut opts = SendOptions {
            dont_fragment: true,
            ..SendOptions::default()
        };
        let headroom = self.iface.tx_headroom();
        while let Some(seg) = slot.conn.poll_transmit(now) {
            // Emitted after room for the IP (and link) header: sent without another copy.
            wire::emit_at(&seg, *local.ip(), *remote.ip(), &mut self.tx, headroom);
            opts.tso_segment = slot.conn.tso_segment();
            match self
                .iface
                .send_prebuilt(now, *remote.ip(), IpNumber::TCP, &opts, &mut self.tx)
            {
                Ok(()) => {}
                // RFC 1122 section 4.2.2.6: the local "needs fragmentation" reaches TCP,
                // which resends smaller (the link's MTU changed under the connection).
                Err(NetSendError::NeedsFragmentation { mtu, .. }) => {
                    self.stats.send_errors += 1;
                    slot.conn.on_path_mtu(mtu);
                }
                Err(_) => self.stats.send_errors += 1,
            }
        }
        // Linux `tcp_max_tw_buckets`: past the cap a connection skips TIME-WAIT.
        let in_time_wait = slot.conn.state() == State::TimeWait;
        if in_time_wait && !slot.time_wait {
            if self.time_wait < self.cfg.max_time_wait {
                self.time_wait += 1;
                slot.time_wait = true;
            } else {
                slot.conn.end_time_wait();
                self.stats.time_wait_overflows += 1;
            }
        } else if !in_time_wait && slot.time_wait {
            self.time_wait -= 1;
            slot.time_wait = false;
        }
        if let Some(key) = slot.timer_key.take() {
            self.timers.remove(&(key, index));
        }
        if let Some(at) = slot.conn.poll_timeout() {
            slot.timer_key = Some(at);
            self.timers.insert((at, index));
        }
        let state = slot.conn.state();
        if let Some(port) = slot.listener {
            let established = !matches!(state, State::SynReceived | State::Closed);
            if established && !slot.queued {
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.half_open = l.half_open.saturating_sub(1);
                    l.ready.push_back(index);
                    slot.queued = true;
                    if self.events_on && !l.event_pending {
                        l.event_pending = true;
                        self.events.listeners.push(port);
                    }
                }
            }
            if state == State::Closed {
                // Died before accept: forget it.
                if let Some(l) = self.listeners.get_mut(&port) {
                    if slot.queued {
                        l.ready.retain(|&i| i != index);
                    } else {
                        l.half_open = l.half_open.saturating_sub(1);
                    }
                }
                slot.detached = true;
            }
        }
        let reap = self.slots[index]
            .as_ref()
            .is_some_and(|s| s.detached && s.conn.is_closed());
        if reap {
            self.remove(index);
            return;
        }
        // Linux `tcp_time_wait`: a TIME-WAIT nobody holds becomes compact.
        let compact = self.slots[index]
            .as_mut()
            .filter(|s| s.detached && s.time_wait)
            .and_then(|s| s.conn.time_wait());
        if let Some(tw) = compact {
            self.remove(index);
            let tuple = (tw.local(), tw.remote());
            self.time_wait += 1;
            self.time_wait_timers.insert((tw.deadline(), tuple));
            self.time_waits.insert(
                tuple,
                TimeWaitSlot {
                    tw,
                    ack_pending: false,
                },
            );
        }
    }

    fn remove(&mut self, index: usize) {
        if let Some(slot) = self.slots[index].take() {
            if self.events_on && !slot.event_pending {
                self.events.conns.push(TcpHandle {
                    index,
                    generation: slot.generation,
                });
            }
            if let Some(key) = slot.timer_key {
                self.timers.remove(&(key, index));
            }
            if slot.time_wait {
                self.time_wait -= 1;
            }
            self.by_tuple
                .remove(&(slot.conn.local(), slot.conn.remote()));
            self.closed_stats.add(slot.conn.stats());
            self.free.push(index);
        }
    }

    /// The settings of a new connection: the configured ones, with the MSS we announce
    /// lowered to what the interface's MTU carries (RFC 9293 section 3.7.1: "the MSS
    /// value ... is based on the MTU of the local interface").
    fn tcp_config(&self) -> TcpConfig {
        let mut cfg = self.cfg.tcp.clone();
        let fits = mss_for_mtu(self.iface.link().mtu()).min(usize::from(u16::MAX));
        cfg.mss = cfg.mss.min(fits as u16);
        // TSO: a link that segments takes super-segments of up to its limit, our 20-byte
        // IPv4 header and the TCP header with the most options included.
        let headers =
            crate::net::ipv4::MIN_HEADER_LEN + wire::MIN_HEADER_LEN + wire::MAX_OPTIONS_LEN;
        cfg.tso_max = (self.iface.link().capabilities().tso_max).saturating_sub(headers);
        cfg
    }

    /// A new connection's 4-tuple with its ISN and timestamp offset. RFC 6528 section 3:
    /// ISN = M + F(4-tuple, secret), M a 4 µs clock. F is SipHash (std's `DefaultHasher`)
    /// over the secret and the 4-tuple; the secret comes from the stack seed so
    /// simulations replay. The per-connection timestamp offset (RFC 7323 section 5.4)
    /// comes from the same hash.
    fn opening(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> Opening {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cfg.seed.hash(&mut h);
        local.hash(&mut h);
        remote.hash(&mut h);
        let f = h.finish();
        let m = (now.total_micros() / 4) as u32;
        Opening {
            local,
            remote,
            iss: SeqNumber(m.wrapping_add(f as u32)),
            ts_offset: (f >> 32) as u32,
        }
    }
}

/// Why a UDP send failed: refused by the socket table, or by the network layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpSendFailure {
    #[error(transparent)]
    Udp(#[from] crate::udp::UdpSendError),
    #[error(transparent)]
    Net(#[from] crate::net::SendError),
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::net::link::{Medium, SimConfig, SimLink, TxInfo};
    use crate::net::{Config, Ipv4Cidr};

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// A [`SimLink`] whose next `recv` fails once when `fail` is set.
    #[derive(Debug)]
    struct Flaky {
        link: SimLink,
        fail: bool,
    }

    impl Link for Flaky {
        fn medium(&self) -> Medium {
            self.link.medium()
        }
        fn mtu(&self) -> usize {
            self.link.mtu()
        }
        fn send(&mut self, now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
            self.link.send(now, packet)
        }
        fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
            if std::mem::take(&mut self.fail) {
                return Err(std::io::Error::other("device hiccup").into());
            }
            self.link.recv(now, buf)
        }
        fn poll_at(&self, now: Instant) -> Option<Instant> {
            self.link.poll_at(now)
        }
    }

    fn stack<L: Link>(link: L, addr: Ipv4Addr) -> Stack<L> {
        let cidr = Ipv4Cidr {
            addr,
            prefix_len: 24,
        };
        Stack::new(
            Interface::new(link, Config::new(cidr)),
            StackConfig::default(),
        )
    }

    fn flaky_pair() -> (Stack<Flaky>, Stack<SimLink>) {
        let (la, lb) = SimLink::pair(SimConfig::default(), 1).unwrap();
        let a = stack(
            Flaky {
                link: la,
                fail: false,
            },
            A,
        );
        (a, stack(lb, B))
    }

    /// A [`SimLink`] that keeps a copy of every packet sent, and whose MTU can be
    /// lowered under a running stack (as a VPN or PPPoE link would have it).
    #[derive(Debug)]
    struct Recorder {
        link: SimLink,
        mtu: usize,
        sent: Vec<Vec<u8>>,
    }

    impl Link for Recorder {
        fn medium(&self) -> Medium {
            self.link.medium()
        }
        fn mtu(&self) -> usize {
            self.mtu
        }
        fn send(&mut self, now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
            self.sent.push(packet.to_vec());
            self.link.send(now, packet)
        }
        fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
            self.link.recv(now, buf)
        }
        fn poll_at(&self, now: Instant) -> Option<Instant> {
            self.link.poll_at(now)
        }
    }

    fn recorder_pair(mtu: usize) -> (Stack<Recorder>, Stack<Recorder>) {
        let (la, lb) = SimLink::pair(SimConfig::default().with_mtu(mtu), 1).unwrap();
        let rec = |link| Recorder {
            link,
            mtu,
            sent: Vec::new(),
        };
        (stack(rec(la), A), stack(rec(lb), B))
    }

    /// The TCP segments in the IPv4 packets a [`Recorder`] saw: (MSS option, TCP
    /// header and payload length).
    fn tcp_segments(packets: &[Vec<u8>]) -> Vec<(Option<u16>, usize)> {
        packets
            .iter()
            .filter_map(|p| {
                let ip = crate::net::ipv4::parse(p).ok()?;
                let seg = wire::parse(ip.src(), ip.dst(), ip.payload).ok()?;
                Some((seg.options.mss, ip.payload.len()))
            })
            .collect()
    }

    /// Runs both stacks until `done` or 60 s of virtual time.
    fn drive(
        a: &mut Stack<Recorder>,
        b: &mut Stack<Recorder>,
        mut now: Instant,
        mut done: impl FnMut(&mut Stack<Recorder>, &mut Stack<Recorder>) -> bool,
    ) -> Instant {
        let end = now + crate::net::link::Duration::from_secs(60);
        while now < end {
            a.poll(now).unwrap();
            b.poll(now).unwrap();
            if done(a, b) {
                break;
            }
            let next = [a.poll_at(now), b.poll_at(now)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            now = next
                .max(now + crate::net::link::Duration::from_micros(1))
                .min(end);
        }
        now
    }

    /// Sends `len` bytes from A to B; once B has read `lower_at` bytes, A's link MTU
    /// drops to `mtu`. Returns what B read and how many packets A had sent by the drop.
    fn bulk(
        a: &mut Stack<Recorder>,
        b: &mut Stack<Recorder>,
        len: usize,
        (lower_at, mtu): (usize, usize),
    ) -> (Vec<u8>, usize) {
        b.tcp_listen(80, 4).unwrap();
        let c = a
            .tcp_connect(Instant::ZERO, SocketAddrV4::new(B, 80))
            .unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (mut sent, mut got, mut server, mut lowered) = (0, Vec::new(), None, None);
        let mut buf = vec![0; 65536];
        drive(a, b, Instant::ZERO, |a, b| {
            if sent < len {
                sent += a.tcp_send(c, &data[sent..]).unwrap_or(0);
            }
            if server.is_none() {
                server = b.tcp_accept(80);
            }
            if let Some(h) = server {
                while let Ok(n @ 1..) = b.tcp_recv(h, &mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            if lowered.is_none() && got.len() >= lower_at {
                let link = a.interface_mut().link_mut();
                link.mtu = mtu;
                lowered = Some(link.sent.len());
            }
            got.len() == len
        });
        assert!(got == data[..got.len()], "stream corrupted");
        (got, lowered.unwrap_or(0))
    }

    /// RFC 9293 section 3.7.1 and RFC 879: the MSS we announce is the interface MTU less
    /// 40 bytes of IPv4 and TCP headers, and every segment fits it. On a 1280-byte link
    /// both SYNs announce 1240, and a bulk transfer completes in segments of at most 1240
    /// bytes of TCP payload and options.
    #[test]
    fn mss_comes_from_the_interface_mtu_rfc9293_3_7_1() {
        let (mut a, mut b) = recorder_pair(1280);
        let (got, _) = bulk(&mut a, &mut b, 200_000, (usize::MAX, 1280));
        assert_eq!(got.len(), 200_000);
        let from_a = tcp_segments(&a.interface().link().sent);
        let from_b = tcp_segments(&b.interface().link().sent);
        assert_eq!(from_a[0].0, Some(1240), "A's SYN");
        assert_eq!(from_b[0].0, Some(1240), "B's SYN-ACK");
        let largest = from_a.iter().map(|(_, len)| len - 20).max().unwrap();
        assert!(
            largest <= 1240 && largest > 1200,
            "largest segment {largest}"
        );
        assert_eq!(a.stats().send_errors, 0);
    }

    /// RFC 1122 section 4.2.2.6 and RFC 1191 section 3: when the link's MTU drops below
    /// the segments TCP sends, the network layer's "needs fragmentation" (DF set)
    /// reaches the connection, which sends smaller segments from then on, and the
    /// transfer completes.
    #[test]
    fn local_needs_fragmentation_lowers_the_segment_size_rfc1191_3() {
        let (mut a, mut b) = recorder_pair(1500);
        let (got, at) = bulk(&mut a, &mut b, 300_000, (50_000, 1000));
        assert_eq!(got.len(), 300_000);
        let from_a = tcp_segments(&a.interface().link().sent);
        assert!(from_a[..at].iter().any(|(_, len)| len + 20 > 1000));
        assert!(from_a[at..].iter().all(|(_, len)| len + 20 <= 1000));
        assert!(from_a[at..].iter().any(|(_, len)| len + 20 > 900));
        assert_eq!(a.stats().tcp.path_mtu_reductions, 1);
    }

    /// RFC 1191 section 6.1: ICMP "fragmentation needed" from a router on the path,
    /// quoting one of our segments in flight, reaches its connection, which sends no
    /// packet over the reported next-hop MTU from then on.
    #[test]
    fn icmp_fragmentation_needed_reaches_the_connection_rfc1191_6_1() {
        use etherparse::icmpv4::DestUnreachableHeader;
        use etherparse::{Icmpv4Header, Icmpv4Type};

        let (mut a, mut b) = recorder_pair(1500);
        b.tcp_listen(80, 4).unwrap();
        let c = a
            .tcp_connect(Instant::ZERO, SocketAddrV4::new(B, 80))
            .unwrap();
        let mut server = None;
        let now = drive(&mut a, &mut b, Instant::ZERO, |_, b| {
            server = server.or_else(|| b.tcp_accept(80));
            server.is_some()
        });
        let data = vec![7u8; 100_000];
        let sent = a.tcp_send(c, &data).unwrap();
        a.poll(now).unwrap();
        let packets = &a.interface().link().sent;
        let big = packets.iter().find(|p| p.len() == 1500).unwrap().clone();
        let before = packets.len();
        let message = {
            let t =
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1280,
                });
            let quote = &big[..28];
            let mut m = Icmpv4Header::with_checksum(t, quote).to_bytes().to_vec();
            m.extend_from_slice(quote);
            m
        };
        b.interface_mut()
            .send(now, A, IpNumber::ICMP, &message)
            .unwrap();
        let server = server.unwrap();
        let mut got = 0;
        let mut buf = vec![0; 65536];
        drive(&mut a, &mut b, now, |_, b| {
            while let Ok(n @ 1..) = b.tcp_recv(server, &mut buf) {
                got += n;
            }
            got == sent
        });
        assert_eq!(got, sent);
        assert_eq!(a.stats().tcp.path_mtu_reductions, 1);
        let later = &a.interface().link().sent[before..];
        assert!(later.iter().all(|p| p.len() <= 1280));
        assert!(later.iter().any(|p| p.len() == 1280));
    }

    /// A failing link read is counted and ends only the receiving part of the tick: the
    /// retransmission timer due in the same tick still fires and its SYN goes out.
    #[test]
    fn link_receive_error_is_counted_and_the_tick_goes_on() {
        let (mut a, mut b) = flaky_pair();
        let t0 = Instant::ZERO;
        a.tcp_connect(t0, SocketAddrV4::new(B, 80)).unwrap();
        a.poll(t0).unwrap();
        assert_eq!(a.interface().stats().tx_packets, 1);
        let rto = a.poll_at(t0).unwrap();
        assert!(rto > t0);

        a.interface_mut().link_mut().fail = true;
        let err = a.poll(rto).unwrap_err();
        assert!(err.to_string().contains("device hiccup"), "{err}");
        assert_eq!(a.interface().stats().rx_link_errors, 1);
        let stats = a.stats();
        assert_eq!((stats.tcp.timeouts, stats.tcp.retransmits), (1, 1));
        assert_eq!(a.interface().stats().tx_packets, 2);

        // Both SYNs arrive; the link reads again on the next tick.
        b.poll(rto).unwrap();
        assert_eq!(b.interface().stats().rx_packets, 2);
        a.poll(rto).unwrap();
        assert_eq!(a.interface().stats().rx_link_errors, 1);
        assert_eq!(a.interface().stats().rx_packets, 2);
    }

    /// The network layer's refusal reaches the caller typed, not as text.
    #[test]
    fn udp_send_failure_keeps_the_network_error() {
        let (mut a, _b) = flaky_pair();
        let h = a.udp_bind(SocketAddrV4::new(A, 0)).unwrap();
        let far = Ipv4Addr::new(203, 0, 113, 1);
        let err = a
            .udp_send_to(Instant::ZERO, h, SocketAddrV4::new(far, 9), b"x")
            .unwrap_err();
        let kept = err.clone();
        assert_eq!(
            kept,
            UdpSendFailure::Net(crate::net::SendError::NoRoute(far))
        );
        assert_eq!(err.to_string(), "no route to 203.0.113.1");
    }

    /// A device fed by the test: the packets queued in `inbox` arrive in one poll, and
    /// the acknowledgment numbers of the segments the stack sends are kept.
    #[derive(Debug, Default)]
    struct Batch {
        inbox: VecDeque<Vec<u8>>,
        acks: Vec<u32>,
        last: Vec<u8>,
    }

    impl Link for Batch {
        fn medium(&self) -> Medium {
            Medium::Ip
        }
        fn mtu(&self) -> usize {
            1500
        }
        fn send(&mut self, _now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
            let sliced = etherparse::SlicedPacket::from_ip(packet).expect("an IPv4 packet");
            if let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport {
                self.acks.push(tcp.acknowledgment_number());
            }
            self.last = packet.to_vec();
            Ok(TxInfo::default())
        }
        fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
            Ok(self.inbox.pop_front().map(|p| {
                buf[..p.len()].copy_from_slice(&p);
                p.len()
            }))
        }
        fn poll_at(&self, now: Instant) -> Option<Instant> {
            (!self.inbox.is_empty()).then_some(now)
        }
    }

    const PEER_ISN: u32 = 1000;
    const SEG: usize = 1460;

    /// A segment from A's port 40000 to B's port 80 (ACK set, window 65535 << 7).
    fn from_peer(seq: u32, ack: u32, payload: &[u8], syn: bool) -> Vec<u8> {
        let b =
            etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 64).tcp(40_000, 80, seq, 65535);
        let b = if syn {
            b.syn()
                .options(&[
                    etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                    etherparse::TcpOptionElement::WindowScale(7),
                ])
                .unwrap()
        } else {
            b.ack(ack)
        };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// B listening on port 80 with a 1 MiB receive buffer, with a connection from the
    /// peer established by a real handshake; returns our ISS + 1.
    fn batch_receiver() -> (Stack<Batch>, u32) {
        let cidr = Ipv4Cidr {
            addr: B,
            prefix_len: 24,
        };
        let mut cfg = StackConfig::default();
        cfg.tcp.recv_buffer = 1 << 20;
        let mut s = Stack::new(Interface::new(Batch::default(), Config::new(cidr)), cfg);
        s.tcp_listen(80, 1).unwrap();
        let now = Instant::ZERO;
        let syn = from_peer(PEER_ISN, 0, &[], true);
        s.interface_mut().link_mut().inbox.push_back(syn);
        s.poll(now).unwrap();
        let syn_ack = s.interface().link().last.clone();
        let sliced = etherparse::SlicedPacket::from_ip(&syn_ack).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("no SYN-ACK");
        };
        let iss1 = tcp.sequence_number().wrapping_add(1);
        let ack = from_peer(PEER_ISN + 1, iss1, &[], false);
        s.interface_mut().link_mut().inbox.push_back(ack);
        s.poll(now).unwrap();
        assert!(s.tcp_accept(80).is_some());
        s.interface_mut().link_mut().acks.clear();
        (s, iss1)
    }

    /// Queues the full-sized segments numbered `segments` (0 starts at the peer's ISN +
    /// 1) and polls once.
    fn deliver(s: &mut Stack<Batch>, iss1: u32, segments: impl Iterator<Item = u32>) {
        let payload = [0x42; SEG];
        for i in segments {
            let seq = PEER_ISN + 1 + i * SEG as u32;
            let p = from_peer(seq, iss1, &payload, false);
            s.interface_mut().link_mut().inbox.push_back(p);
        }
        // As a runtime drives it: polls until the stack has nothing more to do now.
        let now = Instant::from_millis(1);
        s.poll(now).unwrap();
        while s.poll_at(now) == Some(now) {
            s.poll(now).unwrap();
        }
    }

    fn acked(segments: u32) -> u32 {
        PEER_ISN + 1 + segments * SEG as u32
    }

    /// In-order segments read in one poll are acknowledged once, at the batch's end, as
    /// Linux acknowledges a GRO super-segment; RFC 5681 section 4.2's "every second
    /// full-sized segment" then counts the batch as one.
    #[test]
    fn a_batch_of_in_order_segments_gets_one_ack() {
        let (mut s, iss1) = batch_receiver();
        deliver(&mut s, iss1, 0..10);
        assert_eq!(s.interface().link().acks, [acked(10)]);
    }

    /// A batch is acknowledged at least every 256 KiB (`MAX_ACK_BATCH`, Linux's deferred
    /// ACK of a socket backlog): 400 segments of 1460 bytes get ACKs after the 180th and
    /// the 360th and at the end.
    #[test]
    fn a_long_batch_is_acknowledged_every_256_kib() {
        let (mut s, iss1) = batch_receiver();
        deliver(&mut s, iss1, 0..400);
        assert_eq!(
            s.interface().link().acks,
            [acked(180), acked(360), acked(400)]
        );
    }

    /// One poll reads at most `POLL_BUDGET` (256 KiB, 180 segments of 1460 bytes) from
    /// the link and then says it has more to do now, so the application can take the
    /// data before the next poll reads on (Linux's NAPI budget).
    #[test]
    fn a_poll_reads_at_most_its_budget() {
        let (mut s, iss1) = batch_receiver();
        let payload = [0x42; SEG];
        for i in 0..400 {
            let seq = PEER_ISN + 1 + i * SEG as u32;
            let p = from_peer(seq, iss1, &payload, false);
            s.interface_mut().link_mut().inbox.push_back(p);
        }
        let now = Instant::from_millis(1);
        s.poll(now).unwrap();
        assert_eq!(s.interface().link().inbox.len(), 400 - 180);
        assert_eq!(s.poll_at(now), Some(now));
        s.poll(now).unwrap();
        assert_eq!(s.interface().link().inbox.len(), 400 - 360);
        assert_eq!(s.poll_at(now), Some(now));
        s.poll(now).unwrap();
        assert!(s.interface().link().inbox.is_empty());
        assert!(s.poll_at(now).is_none_or(|t| t > now));
        assert_eq!(
            s.interface().link().acks,
            [acked(180), acked(360), acked(400)]
        );
    }

    /// RFC 5681 section 4.2: out-of-order segments in a batch each get an immediate
    /// duplicate ACK (the sender counts them), and the segment filling the hole an
    /// immediate ACK for everything.
    #[test]
    fn out_of_order_segments_in_a_batch_each_get_an_ack() {
        let (mut s, iss1) = batch_receiver();
        deliver(&mut s, iss1, (1..5).chain([0]));
        assert_eq!(
            s.interface().link().acks,
            [acked(0), acked(0), acked(0), acked(0), acked(5)]
        );
    }

    /// The runtime's readiness (issue 12 item 3): a connection that changed is reported
    /// once per take however often it changed, an idle one not at all, and a listener
    /// when its accept queue grows; a reaped connection is reported with its old handle.
    #[test]
    fn events_name_each_connection_that_changed_once() {
        let (mut a, mut b) = recorder_pair(1500);
        let mut events = TcpEvents::default();
        a.take_events(&mut events);
        b.take_events(&mut events);
        assert!(events.is_empty());
        b.tcp_listen(80, 4).unwrap();
        let c = a
            .tcp_connect(Instant::ZERO, SocketAddrV4::new(B, 80))
            .unwrap();
        let mut s = None;
        let now = drive(&mut a, &mut b, Instant::ZERO, |_, b| {
            s = s.or_else(|| b.tcp_accept(80));
            s.is_some()
        });
        let s = s.expect("accepted");
        a.take_events(&mut events);
        assert_eq!(events.conns, [c]);
        b.take_events(&mut events);
        assert_eq!(
            (&events.conns[..], &events.listeners[..]),
            (&[s][..], &[80][..])
        );
        // Nothing happened since: nothing to report.
        a.take_events(&mut events);
        assert!(events.is_empty());
        // Data in several segments: one event for the receiver.
        a.tcp_send(c, &[7; 5000]).unwrap();
        let now = drive(&mut a, &mut b, now, |_, b| {
            b.tcp(s).unwrap().recv_queue() == 5000
        });
        b.take_events(&mut events);
        assert_eq!(events.conns, [s]);
        // Closed and reaped: the handle the application held.
        b.tcp_abort(s).unwrap();
        b.poll(now).unwrap();
        b.take_events(&mut events);
        assert_eq!(events.conns, [s]);
        assert_eq!(b.connections(), 0);
    }

    /// A FIN (with ACK) from A's port 40000 to B's port 80.
    fn fin_from_peer(seq: u32, ack: u32) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 64)
            .tcp(40_000, 80, seq, 65535)
            .ack(ack)
            .fin();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    /// Linux `tcp_time_wait` (issue 12 item 2): a TIME-WAIT the application let go of is
    /// kept compact, and still re-ACKs the peer's retransmitted FIN at once, answers a
    /// batch of invalid ACKs with one ACK, and holds the 4-tuple until 2 MSL have passed.
    #[test]
    fn a_released_time_wait_is_compact_and_still_answers() {
        let (mut s, iss1) = batch_receiver();
        s.tcp_close_all();
        s.poll(Instant::from_millis(1)).unwrap();
        let fin_ack = |s: &mut Stack<Batch>, at: u64| {
            let fin = fin_from_peer(PEER_ISN + 1, iss1 + 1);
            s.interface_mut().link_mut().inbox.push_back(fin);
            s.poll(Instant::from_millis(at)).unwrap();
        };
        fin_ack(&mut s, 2);
        assert_eq!(s.interface().link().acks, [PEER_ISN + 1, PEER_ISN + 2]);
        assert_eq!((s.connections(), s.time_waits.len()), (1, 1));
        assert!(s.slots.iter().all(Option::is_none), "no connection left");
        assert_eq!(s.time_wait, 1);
        // The FIN again (our ACK was lost): re-ACKed.
        fin_ack(&mut s, 1000);
        assert_eq!(s.interface().link().acks[2..], [PEER_ISN + 2]);
        // Three ACKs of data never sent in one batch: one ACK answers them.
        for _ in 0..3 {
            let bogus = from_peer(PEER_ISN + 2, iss1 + 500, &[], false);
            s.interface_mut().link_mut().inbox.push_back(bogus);
        }
        s.poll(Instant::from_millis(1100)).unwrap();
        assert_eq!(s.interface().link().acks[3..], [PEER_ISN + 2]);
        // 2 MSL after the last FIN, the 4-tuple is free.
        s.poll(Instant::from_millis(60_999)).unwrap();
        assert_eq!(s.connections(), 1);
        s.poll(Instant::from_millis(61_000)).unwrap();
        assert_eq!((s.connections(), s.time_wait), (0, 0));
        assert!(s.time_wait_timers.is_empty());
    }
}
