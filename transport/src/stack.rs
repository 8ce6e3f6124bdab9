//! `Stack`: the transport layer on one network [`Interface`]. It owns the interface,
//! demultiplexes arriving segments and datagrams to TCP connections, listeners and UDP
//! sockets by port and 4-tuple, runs the connections' timers, and sends what they
//! produce. Sans-IO like everything below it: the caller passes `now` and drives
//! [`Stack::poll`] whenever [`Stack::poll_at`] says.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::icmpv4::CODE_DST_UNREACH_PORT;

use crate::net::link::{Instant, Link, LinkError};
use crate::net::{IcmpEvent, Interface, IpNumber, Received, SendOptions};
use crate::ports::{PortAllocator, EPHEMERAL_PORTS};
use crate::quoted::Quoted;
use crate::tcp::conn::{Connection, Opening, State};
use crate::tcp::error::{ConnectionError, RecvError, SendError};
use crate::tcp::seq::SeqNumber;
use crate::tcp::stats::ConnStats;
use crate::tcp::wire::{self, Segment, WireError};
use crate::tcp::TcpConfig;
use crate::udp::{UdpConfig, UdpHandle, UdpInput, UdpTable};

/// Settings of a [`Stack`].
#[derive(Debug, Clone, PartialEq)]
pub struct StackConfig {
    pub tcp: TcpConfig,
    pub udp: UdpConfig,
    /// Seeds the RFC 6528 ISN secret, timestamp offsets and ephemeral ports, so that a
    /// simulation replays exactly.
    pub seed: u64,
    /// Half-open connections a listener holds (SYN queue).
    pub syn_backlog: usize,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        StackConfig {
            tcp: TcpConfig::default(),
            udp: UdpConfig::default(),
            seed: 0,
            syn_backlog: 256,
        }
    }
}

/// A TCP connection owned by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpHandle {
    index: usize,
    generation: u32,
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
    conn: Connection,
    generation: u32,
    /// Listener port, while the connection waits in its SYN or accept queue.
    listener: Option<u16>,
    /// In the listener's accept queue (established, not yet accepted).
    queued: bool,
    /// The application let go: reap once closed.
    detached: bool,
    /// Key of this connection's entry in the timer index.
    timer_key: Option<Instant>,
}

#[derive(Debug)]
struct Listener {
    backlog: usize,
    half_open: usize,
    ready: VecDeque<usize>,
}

type FourTuple = (SocketAddrV4, SocketAddrV4);

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
    rx: Vec<u8>,
    tx: Vec<u8>,
    stats: TransportStats,
    closed_stats: ConnStats,
}

impl<L: Link> Stack<L> {
    pub fn new(mut iface: Interface<L>, cfg: StackConfig) -> Stack<L> {
        iface.accept_protocol(IpNumber::TCP);
        iface.accept_protocol(IpNumber::UDP);
        Stack {
            iface,
            udp: UdpTable::seeded(cfg.udp.clone(), cfg.seed),
            tcp_ports: PortAllocator::seeded(EPHEMERAL_PORTS, cfg.seed),
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            by_tuple: BTreeMap::new(),
            listeners: BTreeMap::new(),
            dirty: BTreeSet::new(),
            timers: BTreeSet::new(),
            rx: Vec::new(),
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
        self.by_tuple.len()
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
        let port = self
            .tcp_ports
            .pick(|port| {
                let local = SocketAddrV4::new(local_ip, port);
                by_tuple.contains_key(&(local, remote)) || listeners.contains_key(&port)
            })
            .ok_or(StackError::NoEphemeralPort(remote))?;
        let local = SocketAddrV4::new(local_ip, port);
        let opening = self.opening(now, local, remote);
        let conn = Connection::connect(now, opening, self.cfg.tcp.clone());
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
        self.slot(h).map(|s| &s.conn)
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
        if n > 0 {
            self.dirty.insert(h.index);
        }
        Ok(n)
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
        if !self.dirty.is_empty() {
            return Some(now);
        }
        let timer = self.timers.first().map(|(t, _)| *t);
        match (self.iface.poll_at(now), timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes everything due at `now`: arrivals, timers, and transmissions. A link
    /// receive error (counted by the interface as `rx_link_errors`) ends only the
    /// receiving: ICMP events, timers and transmissions still run, and the error is
    /// returned after them.
    pub fn poll(&mut self, now: Instant) -> Result<(), LinkError> {
        let mut payload = std::mem::take(&mut self.rx);
        let received = loop {
            match self.iface.recv(now, &mut payload) {
                Ok(Some(r)) if r.protocol == IpNumber::TCP => self.on_tcp(now, &r, &payload),
                Ok(Some(r)) if r.protocol == IpNumber::UDP => self.on_udp(now, &r, &payload),
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.rx = payload;
        while let Some(event) = self.iface.poll_icmp() {
            self.on_icmp(event);
        }
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
        received
    }

    /// ICMP errors about our TCP segments go to their connection (RFC 1122 section
    /// 4.2.3.9); echo replies and the rest are counted and left (ping is not a socket).
    fn on_icmp(&mut self, event: IcmpEvent) {
        let (code, original) = match event {
            IcmpEvent::DestUnreachable { code, original, .. } => (Some(code), original),
            IcmpEvent::TimeExceeded { original, .. } => (None, original),
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
                slot.conn.on_icmp_error(seq, code);
                self.dirty.insert(index);
            }
        }
    }

    /// RFC 1122 section 4.1.3.1: a datagram for a port nobody listens on gets ICMP port
    /// unreachable.
    fn on_udp(&mut self, now: Instant, r: &Received, payload: &[u8]) {
        if self.udp.receive(r.src, r.dst, payload) == UdpInput::PortUnreachable {
            self.iface.send_port_unreachable(now, r, payload);
        }
    }

    fn on_tcp(&mut self, now: Instant, r: &Received, payload: &[u8]) {
        self.stats.tcp_segs_in += 1;
        let seg = match wire::parse(r.src, r.dst, payload) {
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
                self.dirty.insert(index);
                return;
            }
        }
        let f = seg.flags;
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
                    return;
                }
                if listener.ready.len() >= listener.backlog {
                    self.stats.accept_queue_overflows += 1;
                    return;
                }
                let opening = self.opening(now, local, remote);
                let conn = Connection::accept(now, opening, &seg, self.cfg.tcp.clone());
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
            conn,
            generation: self.generations[index],
            listener,
            queued: false,
            detached: false,
            timer_key: None,
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
        let (local, remote) = (slot.conn.local(), slot.conn.remote());
        let opts = SendOptions {
            dont_fragment: true,
            ..SendOptions::default()
        };
        while let Some(seg) = slot.conn.poll_transmit(now) {
            wire::emit(&seg, *local.ip(), *remote.ip(), &mut self.tx);
            if self
                .iface
                .send_with(now, *remote.ip(), IpNumber::TCP, &opts, &self.tx)
                .is_err()
            {
                self.stats.send_errors += 1;
            }
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
        }
    }

    fn remove(&mut self, index: usize) {
        if let Some(slot) = self.slots[index].take() {
            if let Some(key) = slot.timer_key {
                self.timers.remove(&(key, index));
            }
            self.by_tuple
                .remove(&(slot.conn.local(), slot.conn.remote()));
            self.closed_stats.add(slot.conn.stats());
            self.free.push(index);
        }
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
}
