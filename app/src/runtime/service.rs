//! Built-in TCP services that run inside the runtime's poll loop, against the stack
//! itself: echo (RFC 862), discard (RFC 863) and character generator (RFC 864, "source").
//! After every round of polling the engine lets each service move bytes between its
//! connections' buffers and accept new connections. No channel hop, no thread per
//! connection, no `Vec` per read: a received segment is consumed in the same wake-up
//! that read it from the device, and the ACK or the echoed data goes out in that
//! wake-up's flush.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::iperf3::Pacer;
use crate::link::Instant;
use crate::runtime::{CallError, Caller, Op, Reply, RuntimeError};
use crate::socket::BindError;
use crate::transport::stack::{Stack, TcpHandle};

use super::engine::{BoxLink, HostId};

/// Which service a port runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// RFC 862: every byte received is sent back.
    Echo,
    /// RFC 863: every byte received is thrown away.
    Discard,
    /// RFC 864 (character generator, "source" in benchmarks): sends a repeating pattern
    /// as fast as the peer's window and the congestion window allow; what it receives is
    /// thrown away.
    Source,
}

impl ServiceKind {
    /// The well-known port of the service.
    pub fn port(self) -> u16 {
        match self {
            ServiceKind::Echo => 7,
            ServiceKind::Discard => 9,
            ServiceKind::Source => 19,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Echo => "echo",
            ServiceKind::Discard => "discard",
            ServiceKind::Source => "source",
        }
    }
}

/// Starts `kind` on its well-known port of the caller's host, with an accept queue of
/// `backlog`; it runs inside the runtime until the runtime stops.
pub fn serve(caller: &Caller, kind: ServiceKind, backlog: usize) -> Result<(), BindError> {
    match caller.call(Op::TcpServe { kind, backlog }, None) {
        Reply::Done => Ok(()),
        Reply::Err(e) => Err(e.into()),
        other => Err(CallError::Ended(RuntimeError::WrongReply(other.name())).into()),
    }
}

/// RFC 864: lines of 72 printable characters, each starting one character further along
/// the 95 printable ASCII characters, ending in CR LF; after 95 lines the pattern repeats.
const LINE: usize = 72;
const PRINTABLE: usize = 95;
const CYCLE: usize = PRINTABLE * (LINE + 2);

/// Two cycles of the RFC 864 pattern, so that one cycle starts at any offset below
/// [`CYCLE`].
fn chargen_pattern() -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * CYCLE);
    for line in 0..2 * PRINTABLE {
        out.extend((0..LINE).map(|i| b' ' + ((line + i) % PRINTABLE) as u8));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One connection of a service.
#[derive(Debug)]
struct ServiceConn {
    h: TcpHandle,
    /// Where the next byte of the pattern starts (source only), below [`CYCLE`].
    offset: usize,
}

/// A service on one port of one host, and the connections it accepted.
#[derive(Debug)]
pub(crate) struct TcpService {
    host: HostId,
    kind: ServiceKind,
    /// By handle: a round visits the ones with an event.
    conns: BTreeMap<TcpHandle, ServiceConn>,
    /// Turns given to connections so far (what a round costs), for the tests.
    #[cfg(test)]
    turns: u64,
    /// The RFC 864 pattern (source only).
    pattern: Vec<u8>,
}

/// What a connection's turn came to.
enum Turn {
    Open,
    /// The peer finished, or the connection failed: closed and let go.
    Closed,
}

impl TcpService {
    pub fn new(host: HostId, kind: ServiceKind) -> TcpService {
        TcpService {
            host,
            kind,
            conns: BTreeMap::new(),
            #[cfg(test)]
            turns: 0,
            pattern: if kind == ServiceKind::Source {
                chargen_pattern()
            } else {
                Vec::new()
            },
        }
    }

    pub fn host(&self) -> HostId {
        self.host
    }

    /// Turns given to connections so far.
    #[cfg(test)]
    pub fn turns(&self) -> u64 {
        self.turns
    }

    /// Connections the service holds.
    #[cfg(test)]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Accepts what is queued and gives its turn to every connection accepted now or
    /// named in `ready` (the connections with an event since the last turn: nothing
    /// changed for the others, whose turn would do nothing). `scratch` carries echoed
    /// bytes from the receive buffer to the send buffer.
    pub fn poll(
        &mut self,
        stack: &mut Stack<BoxLink>,
        scratch: &mut [u8],
        ready: &BTreeSet<TcpHandle>,
    ) {
        let port = self.kind.port();
        let mut fresh = Vec::new();
        while let Some(h) = stack.tcp_accept(port) {
            // Echo answers each request at once: a ping-pong must not wait for Nagle.
            if self.kind == ServiceKind::Echo {
                let _ = stack.tcp_set_nodelay(h, true);
            }
            self.conns.insert(h, ServiceConn { h, offset: 0 });
            if !ready.contains(&h) {
                fresh.push(h);
            }
        }
        for h in ready.iter().chain(&fresh) {
            let Some(c) = self.conns.get_mut(h) else {
                continue;
            };
            #[cfg(test)]
            {
                self.turns += 1;
            }
            let turn = match self.kind {
                ServiceKind::Discard => discard(stack, c.h),
                ServiceKind::Echo => echo(stack, c.h, scratch),
                ServiceKind::Source => match discard(stack, c.h) {
                    Turn::Open => source(stack, c, &self.pattern),
                    Turn::Closed => Turn::Closed,
                },
            };
            if matches!(turn, Turn::Closed) {
                self.conns.remove(h);
            }
        }
    }
}

/// A failed read or write ends the connection: FIN after anything queued once the peer
/// finished (RFC 9293 section 3.10.4), and the handle is let go; the stack reaps it.
fn end(stack: &mut Stack<BoxLink>, h: TcpHandle) -> Turn {
    let _ = stack.tcp_close(h);
    Turn::Closed
}

fn discard(stack: &mut Stack<BoxLink>, h: TcpHandle) -> Turn {
    match stack.tcp_discard(h, usize::MAX) {
        Ok(_) => Turn::Open,
        Err(_) => end(stack, h),
    }
}

/// Reads no more than the send buffer takes, so everything read is queued at once.
fn echo(stack: &mut Stack<BoxLink>, h: TcpHandle, scratch: &mut [u8]) -> Turn {
    loop {
        let room = match stack.tcp(h) {
            Ok(conn) => conn.send_capacity().min(scratch.len()),
            Err(_) => return end(stack, h),
        };
        if room == 0 {
            // Full: read nothing, so the receive window closes on a peer that does not
            // read its echo. The end of the stream is still noticed.
            return match stack.tcp(h) {
                Ok(conn) if conn.at_eof() || conn.error().is_some() => end(stack, h),
                _ => Turn::Open,
            };
        }
        match stack.tcp_recv(h, &mut scratch[..room]) {
            Ok(0) => return Turn::Open,
            Ok(n) => {
                if !matches!(stack.tcp_send(h, &scratch[..n]), Ok(sent) if sent == n) {
                    return end(stack, h);
                }
            }
            // The end of the stream (everything echoed is queued before the FIN), or
            // the connection failed.
            Err(_) => return end(stack, h),
        }
    }
}

/// Fills the send buffer with the pattern, from where the last write stopped.
fn source(stack: &mut Stack<BoxLink>, c: &mut ServiceConn, pattern: &[u8]) -> Turn {
    loop {
        match stack.tcp_send(c.h, &pattern[c.offset..c.offset + CYCLE]) {
            Ok(0) => return Turn::Open,
            Ok(n) => c.offset = (c.offset + n) % CYCLE,
            Err(_) => return end(stack, c.h),
        }
    }
}

/// What an adopted data stream does (an iperf3 test's TCP stream, handed over by the
/// control thread once its cookie checked out): iperf3's receiver reads and counts
/// (iperf_tcp_recv), its sender writes blocks of one byte as fast as the stack takes
/// them or at the test's bitrate (iperf_tcp_send, `-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRole {
    /// Counts and throws away what arrives.
    Receive,
    /// Sends `fill` bytes, paced at `rate` bits/s in blocks of `block` (0: unpaced).
    Send { fill: u8, block: usize, rate: u64 },
}

/// What an adopted stream shares with the thread that handed it over: the bytes it
/// moved so far (received, or taken by the stack to send), readable at any time, and
/// whether it ended on its own (the peer closed it, or it failed).
#[derive(Debug, Default)]
pub struct StreamCounters {
    bytes: AtomicU64,
    ended: AtomicBool,
}

impl StreamCounters {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

/// Hands the connection `h` of `caller`'s host to the runtime, which runs it as `role`
/// until [`release`] (or until it ends), counting into `counters`. If the runtime
/// refuses it, the connection is closed.
pub(crate) fn adopt(
    caller: &Caller,
    h: TcpHandle,
    role: StreamRole,
    counters: Arc<StreamCounters>,
) -> Result<(), CallError> {
    let failed = match caller.call(Op::TcpAdopt { h, role, counters }, None) {
        Reply::Done => return Ok(()),
        Reply::Err(e) => e,
        other => CallError::Ended(RuntimeError::WrongReply(other.name())),
    };
    let _ = caller.call(Op::TcpClose { h }, None);
    Err(failed)
}

/// Stops an adopted stream and closes it (FIN after anything queued); its counters
/// hold the final figures once this returns.
pub(crate) fn release(caller: &Caller, h: TcpHandle) {
    let _ = caller.call(Op::TcpRelease { h }, None);
}

/// Largest piece of fill a sending stream offers the stack at once.
const FILL_CHUNK: usize = 64 * 1024;

/// One adopted stream.
#[derive(Debug)]
struct DataStream {
    role: StreamRole,
    counters: Arc<StreamCounters>,
    /// The fill bytes (senders only).
    fill: Vec<u8>,
    /// Paced senders: the bucket, the bytes of the current block not yet sent, and when
    /// the next block may go if the bucket said wait.
    pacer: Option<Pacer>,
    owed: usize,
    wake: Option<Instant>,
}

/// The adopted data streams of one host, visited like the services: when their
/// connection had an event, when just adopted, or when a paced sender's next block is
/// due.
#[derive(Debug)]
pub(crate) struct DataStreams {
    host: HostId,
    conns: BTreeMap<TcpHandle, DataStream>,
    /// Adopted since the last turn: they get one even without an event (data may have
    /// arrived before, a sender has its buffer to fill).
    fresh: Vec<TcpHandle>,
}

impl DataStreams {
    pub fn new(host: HostId) -> DataStreams {
        DataStreams {
            host,
            conns: BTreeMap::new(),
            fresh: Vec::new(),
        }
    }

    pub fn host(&self) -> HostId {
        self.host
    }

    pub fn adopt(
        &mut self,
        now: Instant,
        h: TcpHandle,
        role: StreamRole,
        counters: Arc<StreamCounters>,
    ) {
        let (fill, pacer) = match role {
            StreamRole::Receive => (Vec::new(), None),
            StreamRole::Send { fill, block, rate } => (
                vec![fill; block.clamp(1, FILL_CHUNK)],
                (rate > 0).then(|| Pacer::new(now, rate, block.max(1))),
            ),
        };
        self.conns.insert(
            h,
            DataStream {
                role,
                counters,
                fill,
                pacer,
                owed: 0,
                wake: None,
            },
        );
        self.fresh.push(h);
    }

    /// Lets go of `h` and closes it, if it is still running (one that ended was closed
    /// then, and its handle may name another connection by now).
    pub fn release(&mut self, stack: &mut Stack<BoxLink>, h: TcpHandle) {
        if self.conns.remove(&h).is_some() {
            let _ = stack.tcp_close(h);
        }
    }

    /// When a paced sender's next block is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.wake).min()
    }

    /// Gives a turn to the streams in `ready`, the fresh ones, and the paced senders
    /// whose next block is due at `now`.
    pub fn poll(&mut self, stack: &mut Stack<BoxLink>, now: Instant, ready: &BTreeSet<TcpHandle>) {
        let mut turns: BTreeSet<TcpHandle> = std::mem::take(&mut self.fresh).into_iter().collect();
        turns.extend(ready.iter().filter(|h| self.conns.contains_key(h)));
        turns.extend(
            self.conns
                .iter()
                .filter(|(_, c)| c.wake.is_some_and(|w| w <= now))
                .map(|(h, _)| *h),
        );
        for h in turns {
            let Some(c) = self.conns.get_mut(&h) else {
                continue;
            };
            if matches!(stream_turn(stack, now, h, c), Turn::Closed) {
                c.counters.ended.store(true, Ordering::Relaxed);
                self.conns.remove(&h);
            }
        }
    }
}

/// One turn of an adopted stream: what arrived is counted (a receiver) or dropped (a
/// sender: iperf3's client sends nothing on a reverse stream), then a sender fills the
/// send buffer as far as its pacer allows.
fn stream_turn(stack: &mut Stack<BoxLink>, now: Instant, h: TcpHandle, c: &mut DataStream) -> Turn {
    match stack.tcp_discard(h, usize::MAX) {
        Ok(n) if c.role == StreamRole::Receive => {
            c.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            return Turn::Open;
        }
        Ok(_) => {}
        Err(_) => return end(stack, h),
    }
    let StreamRole::Send { block, .. } = c.role else {
        return Turn::Open;
    };
    c.wake = None;
    let mut sent = 0u64;
    let turn = loop {
        if let Some(pacer) = &mut c.pacer {
            if c.owed == 0 {
                match pacer.poll(now, block) {
                    Ok(()) => c.owed = block,
                    Err(wait) => {
                        c.wake = Some(now + wait);
                        break Turn::Open;
                    }
                }
            }
        }
        let len = if c.pacer.is_some() {
            c.owed.min(c.fill.len())
        } else {
            c.fill.len()
        };
        match stack.tcp_send(h, &c.fill[..len]) {
            Ok(0) => break Turn::Open,
            Ok(n) => {
                sent += n as u64;
                if c.pacer.is_some() {
                    c.owed -= n;
                }
            }
            Err(_) => break end(stack, h),
        }
    };
    c.counters.bytes.fetch_add(sent, Ordering::Relaxed);
    turn
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::SocketAddrV4;

    use super::*;
    use crate::link::{Duration, SimConfig};
    use crate::runtime::{HostId, SimWorld};
    use crate::sim::{host_addr, two_hosts};
    use crate::socket::TcpStream;
    use crate::transport::stack::StackConfig;

    /// A world whose host 2 runs `kinds` inside its runtime (started by a participant
    /// that returns at once: the services outlive it).
    fn world_serving(kinds: &[ServiceKind]) -> (SimWorld, HostId, HostId) {
        let (mut world, client, server, _) =
            two_hosts(SimConfig::default(), StackConfig::default(), 7).expect("sim");
        let kinds = kinds.to_vec();
        world.spawn(server, "start", move |caller| {
            for kind in kinds {
                serve(&caller, kind, 16).expect("serve");
            }
        });
        world.run(Duration::from_secs(1)).expect("started");
        (world, client, server)
    }

    fn addr(kind: ServiceKind) -> SocketAddrV4 {
        SocketAddrV4::new(host_addr(2), kind.port())
    }

    /// Lets the closing handshakes finish, then checks that the server holds nothing:
    /// every connection the services accepted was closed and reaped.
    fn assert_no_leak(world: &mut SimWorld, server: HostId) {
        world.spawn(server, "wait", |caller| {
            caller.sleep(Duration::from_secs(5))
        });
        world.run(Duration::from_secs(10)).expect("quiet");
        assert_eq!(world.host(server).connections(), 0);
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i * 7 + seed) as u8).collect()
    }

    /// RFC 862, from one client: writes `data` in pieces and reads each piece back
    /// before the next; then closes its side and expects the service's FIN.
    fn echo_client(caller: &crate::runtime::Caller, data: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(caller, addr(ServiceKind::Echo), None).unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0; 100_000];
        for piece in data.chunks(100_000) {
            s.write_all(piece).unwrap();
            s.read_exact(&mut buf[..piece.len()]).unwrap();
            back.extend_from_slice(&buf[..piece.len()]);
        }
        s.shutdown().unwrap();
        assert_eq!(
            s.read(&mut buf).unwrap(),
            0,
            "the service closes after the client"
        );
        back
    }

    /// RFC 863, from one client: everything is taken; the service closes after it.
    fn discard_client(caller: &crate::runtime::Caller, data: &[u8]) {
        let mut s = TcpStream::connect(caller, addr(ServiceKind::Discard), None).unwrap();
        s.write_all(data).unwrap();
        s.shutdown().unwrap();
        let mut buf = [0; 16];
        assert_eq!(
            s.read(&mut buf).unwrap(),
            0,
            "nothing comes back but the FIN"
        );
    }

    /// RFC 864, from one client: reads `len` bytes of the pattern, then closes.
    fn source_client(caller: &crate::runtime::Caller, len: usize) -> Vec<u8> {
        let mut s = TcpStream::connect(caller, addr(ServiceKind::Source), None).unwrap();
        let mut got = vec![0; len];
        s.read_exact(&mut got).unwrap();
        got
    }

    /// RFC 862: what the client sends comes back byte for byte, a megabyte at that; the
    /// service closes after the client does, and lets go of the connection.
    #[test]
    fn echo_sends_everything_back() {
        let (mut world, client, server) = world_serving(&[ServiceKind::Echo]);
        let data = pattern(1_000_000, 1);
        let sent = data.clone();
        let got = world.spawn(client, "client", move |caller| echo_client(&caller, &sent));
        world.run(Duration::from_secs(60)).expect("echoed");
        assert_eq!(got.join().unwrap(), data);
        assert_no_leak(&mut world, server);
    }

    /// RFC 863: four megabytes go in, nothing comes back but the FIN once the client
    /// finished; the stack counts every byte in.
    #[test]
    fn discard_takes_everything() {
        let (mut world, client, server) = world_serving(&[ServiceKind::Discard]);
        let data = pattern(4 << 20, 2);
        let done = world.spawn(client, "client", move |caller| {
            discard_client(&caller, &data)
        });
        world.run(Duration::from_secs(60)).expect("discarded");
        done.join().unwrap();
        assert_no_leak(&mut world, server);
        assert!(world.host(server).stats().tcp.bytes_in >= 4 << 20);
    }

    /// RFC 864: the client reads the pattern, line after line, across many cycles; when
    /// it closes (with the service's data still arriving) the service lets go.
    #[test]
    fn source_sends_the_pattern_until_the_client_closes() {
        let (mut world, client, server) = world_serving(&[ServiceKind::Source]);
        let len = 3 * CYCLE * 100 + 5;
        let got = world.spawn(client, "client", move |caller| source_client(&caller, len));
        world.run(Duration::from_secs(60)).expect("sourced");
        let got = got.join().unwrap();
        let p = chargen_pattern();
        for (i, chunk) in got.chunks(CYCLE).enumerate() {
            assert_eq!(chunk, &p[..chunk.len()], "cycle {i}");
        }
        assert_no_leak(&mut world, server);
    }

    /// All three services on one host, each with many clients at once: every client
    /// gets its own bytes, and no connection is left behind.
    #[test]
    fn many_concurrent_connections() {
        let kinds = [ServiceKind::Echo, ServiceKind::Discard, ServiceKind::Source];
        let (mut world, client, server) = world_serving(&kinds);
        let mut echoes = Vec::new();
        let mut others = Vec::new();
        for i in 0..8u32 {
            let data = pattern(150_000, i);
            echoes.push((
                data.clone(),
                world.spawn(client, "echo", move |caller| echo_client(&caller, &data)),
            ));
            let data = pattern(300_000, i);
            others.push(world.spawn(client, "discard", move |caller| {
                discard_client(&caller, &data)
            }));
            others.push(world.spawn(client, "source", move |caller| {
                let got = source_client(&caller, 200_000);
                assert_eq!(&got[..CYCLE], &chargen_pattern()[..CYCLE]);
            }));
        }
        world.run(Duration::from_secs(120)).expect("served");
        for (data, got) in echoes {
            assert_eq!(got.join().unwrap(), data);
        }
        for done in others {
            done.join().unwrap();
        }
        assert_no_leak(&mut world, server);
    }

    /// RFC 864: 72 characters a line, CR LF, each line starting one character later.
    #[test]
    fn the_pattern_is_rfc_864s() {
        let p = chargen_pattern();
        assert_eq!(p.len(), 2 * CYCLE);
        assert_eq!(&p[..LINE], &(b' '..=b'g').collect::<Vec<u8>>()[..]);
        assert_eq!(&p[LINE..LINE + 2], b"\r\n");
        assert_eq!(p[LINE + 2], b'!');
        assert_eq!(&p[..CYCLE], &p[CYCLE..]);
        assert!(p
            .iter()
            .all(|&b| b == b'\r' || b == b'\n' || (32..127).contains(&b)));
    }

    /// Waits out TIME-WAIT (the server closed first, as iperf3's does at the end of a
    /// reverse test), then checks that the server holds nothing.
    fn assert_no_leak_after_time_wait(world: &mut SimWorld, server: HostId) {
        world.spawn(server, "wait", |caller| {
            caller.sleep(Duration::from_secs(70))
        });
        world.run(Duration::from_secs(80)).expect("quiet");
        assert_eq!(world.host(server).connections(), 0);
    }

    /// A paced sender (iperf3 `-R -b`) sends at its bitrate on the runtime's clock: 8
    /// Mbit/s for 2 virtual seconds is 2 MB, give or take the first block and the
    /// 5 ms burst.
    #[test]
    fn an_adopted_sender_keeps_its_bitrate() {
        use crate::socket::TcpListener;
        let (mut world, client, server, _) =
            two_hosts(SimConfig::default(), StackConfig::default(), 7).expect("sim");
        let served = world.spawn(server, "server", |caller| {
            let listener = TcpListener::bind(&caller, 5000, 4).expect("bind");
            let (s, _) = listener.accept().expect("accept");
            let (c, h) = s.into_raw();
            let counters = Arc::new(StreamCounters::default());
            let role = StreamRole::Send {
                fill: 0x5a,
                block: 1000,
                rate: 8_000_000,
            };
            adopt(&c, h, role, counters.clone()).expect("adopted");
            caller.sleep(Duration::from_secs(2));
            release(&caller, h);
            counters.bytes()
        });
        let got = world.spawn(client, "client", |caller| {
            let at = SocketAddrV4::new(host_addr(2), 5000);
            let mut down = TcpStream::connect(&caller, at, None).unwrap();
            let mut buf = vec![0; 65536];
            let mut total = 0u64;
            while let n @ 1.. = down.read(&mut buf).unwrap() {
                total += n as u64;
            }
            total
        });
        world.run(Duration::from_secs(30)).expect("ran");
        let sent = served.join().unwrap();
        assert!((1_990_000..=2_010_000).contains(&sent), "{sent}");
        assert_eq!(got.join().unwrap(), sent);
        assert_no_leak_after_time_wait(&mut world, server);
    }
}
