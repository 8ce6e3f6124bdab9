//! An iperf3-compatible server and client (TCP and UDP tests, normal and reverse, any
//! number of parallel streams), so the real `iperf3` can measure ustack and be measured
//! by it. The control protocol is iperf3's: a 37-byte cookie, one state byte at a time,
//! and JSON blobs prefixed by a 32-bit big-endian length (PARAM_EXCHANGE and
//! EXCHANGE_RESULTS). The UDP data streams are in [`udp`].

mod pacer;
pub mod udp;

pub use pacer::Pacer;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant as WallInstant;

use crate::link::Duration;
use crate::runtime::service::{self, StreamCounters, StreamRole};
use crate::runtime::Caller;
use crate::socket::{TcpListener, TcpStream, UdpSocket};
use crate::transport::stack::TcpHandle;

/// iperf3's default port.
pub const PORT: u16 = 5201;
const COOKIE_LEN: usize = 37;
/// Control states (iperf_api.h).
const TEST_START: u8 = 1;
const TEST_RUNNING: u8 = 2;
const TEST_END: u8 = 4;
const PARAM_EXCHANGE: u8 = 9;
const CREATE_STREAMS: u8 = 10;
const EXCHANGE_RESULTS: u8 = 13;
const DISPLAY_RESULTS: u8 = 14;
const IPERF_DONE: u8 = 16;
/// ACCESS_DENIED (-1 as a signed byte): the server is busy with another test.
const ACCESS_DENIED: u8 = 0xff;
/// SERVER_ERROR is -2 as a signed byte.
const SERVER_ERROR: u8 = 0xfe;
/// iperf3's IEINITTEST ("test initialization failed", iperf_api.h since 3.0), sent
/// after SERVER_ERROR.
const IEINITTEST: i32 = 101;
/// Linux's EPROTONOSUPPORT, the errno sent with it.
const EPROTONOSUPPORT: i32 = 93;
/// Largest JSON blob accepted from a client.
const MAX_JSON: usize = 1 << 20;
/// Receive buffer of a client's stream thread.
const RECV_BUF: usize = 256 * 1024;
/// iperf3's default block for TCP (what the client writes, and the server assumes).
const DEFAULT_BLOCK: usize = 128 * 1024;
/// How long a reverse-test reader waits for the server to close a stream after TEST_END.
const REVERSE_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often stream threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Why a test ended early.
#[derive(Debug, thiserror::Error)]
pub enum Iperf3Error {
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer sent a {0}-byte JSON blob (at most 1 MiB is accepted)")]
    JsonTooLarge(usize),
    #[error("bad JSON from the peer: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the server is busy running a test")]
    Busy,
    #[error("the server reported an error")]
    ServerError,
    #[error("expected control state {want}, got {got}")]
    UnexpectedState { want: u8, got: u8 },
    #[error("the UDP streams did not connect within 10 s (no connect datagram or reply)")]
    UdpConnect,
}

/// The protocol of a test's data streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP, its sender paced at `rate` bits/s per stream (0: as fast as the stack takes
    /// the data, iperf3's default for TCP).
    Tcp {
        rate: u64,
    },
    Udp(udp::Udp),
}

/// One stream's numbers as iperf3 exchanges them in EXCHANGE_RESULTS (send_results in
/// iperf_api.c): bytes sent or received, and for UDP the receiver's jitter (seconds),
/// loss (`errors`) and packet count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamResult {
    pub bytes: u64,
    /// -1 when not known (a receiver, or UDP).
    pub retransmits: i64,
    pub jitter: f64,
    pub errors: u64,
    pub packets: u64,
    /// Counted by a UDP receiver; iperf3 does not exchange it.
    pub out_of_order: u64,
}

impl StreamResult {
    fn to_json(self, id: u64, elapsed: f64) -> serde_json::Value {
        serde_json::json!({
            "id": id, "bytes": self.bytes, "retransmits": self.retransmits,
            "jitter": self.jitter, "errors": self.errors, "omitted_errors": 0,
            "packets": self.packets, "omitted_packets": 0,
            "start_time": 0, "end_time": elapsed,
        })
    }

    fn from_json(v: &serde_json::Value) -> StreamResult {
        let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        StreamResult {
            bytes: num("bytes"),
            retransmits: v.get("retransmits").and_then(|x| x.as_i64()).unwrap_or(-1),
            jitter: v.get("jitter").and_then(|x| x.as_f64()).unwrap_or(0.0),
            errors: num("errors"),
            packets: num("packets"),
            out_of_order: 0,
        }
    }
}

/// The EXCHANGE_RESULTS blob for `results`, stream `i` under id `ids[i]`.
fn results_json(
    results: &[StreamResult],
    ids: &[u64],
    elapsed: f64,
    sender_has_retransmits: i64,
    congestion: &str,
) -> serde_json::Value {
    let streams: Vec<serde_json::Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = ids.get(i).copied().unwrap_or_else(|| stream_id(i));
            r.to_json(id, elapsed)
        })
        .collect();
    serde_json::json!({
        "cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
        "sender_has_retransmits": sender_has_retransmits,
        "congestion_used": congestion,
        "streams": streams,
    })
}

/// The congestion control the stack runs on `ctrl` (all of a test's connections share
/// the stack's configuration), by Linux's name, for iperf3's `congestion_used`.
fn congestion_of(ctrl: &TcpStream) -> &'static str {
    ctrl.info()
        .map(|i| i.congestion.name())
        .unwrap_or(crate::transport::tcp::Algorithm::default().name())
}

/// iperf3's id for the `i`-th stream (0-based): 1, 3, 4, 5, ... (a quirk of
/// iperf_add_stream that clients check).
fn stream_id(i: usize) -> u64 {
    if i == 0 {
        1
    } else {
        i as u64 + 2
    }
}

/// Writes blocks of `fill` until `stop` is set, looking at it every [`POLL`], paced at
/// `rate` bits/s (0: unpaced); returns the bytes the stack took.
fn send_until(s: &mut TcpStream, stop: &AtomicBool, fill: u8, block: usize, rate: u64) -> u64 {
    s.set_write_timeout(Some(POLL));
    let data = vec![fill; block];
    let clock = crate::link::Clock::wall();
    let mut pacer = Pacer::new(clock.now(), rate, block);
    let mut bytes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Err(wait) = pacer.poll(clock.now(), block) {
            std::thread::sleep(wait.min(POLL));
            continue;
        }
        match s.write(&data) {
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    bytes
}

/// Reads and counts until the stream ends or fails, or until `drain` after `stop` is
/// set (a reverse client waits that long at most for the server to close the stream).
fn receive_until(s: &mut TcpStream, stop: &AtomicBool, drain: std::time::Duration) -> u64 {
    s.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; RECV_BUF];
    let mut bytes = 0u64;
    let mut drain_until = None;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if stop.load(Ordering::Relaxed) {
            let until = *drain_until.get_or_insert_with(|| WallInstant::now() + drain);
            if WallInstant::now() >= until {
                break;
            }
        }
    }
    bytes
}

/// The longest a receiving test's streams are drained after TEST_END (each [`POLL`]
/// without data ends it sooner).
const DRAIN_LIMIT: u32 = 100;

/// Waits on `caller`'s clock until no stream of `running` received anything for a
/// [`POLL`], or all ended, or [`DRAIN_LIMIT`] polls passed.
fn drain_until_idle(caller: &Caller, running: &[(Caller, TcpHandle, Arc<StreamCounters>)]) {
    let total = || running.iter().map(|(_, _, c)| c.bytes()).sum::<u64>();
    let mut last = total();
    for _ in 0..DRAIN_LIMIT {
        if running.iter().all(|(_, _, c)| c.ended()) || !caller.sleep(POLL) {
            return;
        }
        let now = total();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Stops and closes the adopted streams.
fn release_all(running: &[(Caller, TcpHandle, Arc<StreamCounters>)]) {
    for (caller, h, _) in running {
        service::release(caller, *h);
    }
}

/// Runs `work` on each stream in a thread of its own; `stop` ends the test.
fn spawn_streams<S: Send + 'static, T: Send + 'static>(
    streams: Vec<S>,
    stop: &Arc<AtomicBool>,
    work: impl Fn(&mut S, &AtomicBool) -> T + Send + Clone + 'static,
) -> Vec<std::thread::JoinHandle<T>> {
    streams
        .into_iter()
        .map(|mut s| {
            let (stop, work) = (stop.clone(), work.clone());
            std::thread::spawn(move || work(&mut s, &stop))
        })
        .collect()
}

fn read_json(s: &mut TcpStream) -> Result<serde_json::Value, Iperf3Error> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_JSON {
        return Err(Iperf3Error::JsonTooLarge(len));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(serde_json::from_slice(&buf)?)
}

fn write_json(s: &mut TcpStream, v: &serde_json::Value) -> Result<(), Iperf3Error> {
    let body = v.to_string().into_bytes();
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg)?;
    Ok(())
}

/// The iperf3 port of every stack a server runs on (one per queue of a multi-queue TUN,
/// `ustack up --queues`): a thread per listener hands each connection over, so a test's
/// control and data connections may arrive on different stacks.
struct Acceptor {
    conns: crossbeam_channel::Receiver<std::io::Result<TcpStream>>,
    /// The stacks' callers, the first queue's first.
    callers: Vec<Caller>,
}

impl Acceptor {
    fn bind(callers: &[Caller]) -> Result<Acceptor, Iperf3Error> {
        let (tx, conns) = crossbeam_channel::bounded(64);
        for caller in callers {
            let listener = TcpListener::bind(caller, PORT, 16).map_err(std::io::Error::from)?;
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("iperf3-accept".into())
                .spawn(move || loop {
                    let conn = listener.accept().map(|(s, _)| s).map_err(Into::into);
                    let failed = conn.is_err();
                    if tx.send(conn).is_err() || failed {
                        return;
                    }
                })?;
        }
        Ok(Acceptor {
            conns,
            callers: callers.to_vec(),
        })
    }

    fn accept(&self) -> std::io::Result<TcpStream> {
        self.conns
            .recv()
            .unwrap_or_else(|_| Err(ErrorKind::NotConnected.into()))
    }
}

/// Serves tests one after another for ever (until a listener fails), on the stacks of
/// `callers` (one, or one per queue of a multi-queue TUN).
pub fn serve(callers: &[Caller]) -> Result<(), Iperf3Error> {
    let acceptor = Acceptor::bind(callers)?;
    loop {
        let mut ctrl = acceptor.accept()?;
        // A failed test (client gone, bad parameters) must not stop the server.
        let _ = run_test(&acceptor, &mut ctrl);
    }
}

/// One test, from the control connection's cookie to IPERF_DONE.
fn run_test(acceptor: &Acceptor, ctrl: &mut TcpStream) -> Result<(), Iperf3Error> {
    let mut cookie = [0u8; COOKIE_LEN];
    ctrl.read_exact(&mut cookie)?;
    ctrl.write_all(&[PARAM_EXCHANGE])?;
    let params = read_json(ctrl)?;
    // iperf3 sets "udp", "reverse", "udp_counters_64bit" by their presence (true or 1).
    let flag = |k: &str| {
        params
            .get(k)
            .is_some_and(|v| v.as_bool() != Some(false) && v.as_u64() != Some(0))
    };
    let number = |k: &str| params.get(k).and_then(|v| v.as_u64());
    let parallel = number("parallel").unwrap_or(1).clamp(1, 128) as usize;
    let reverse = flag("reverse");
    if flag("udp") {
        let [caller] = acceptor.callers.as_slice() else {
            // A UDP stream's datagrams reach whichever queue the kernel hashes them to,
            // where no socket of the test may be bound: refuse the test, do not lose it.
            eprintln!("ustack iperf3 server: UDP tests need a single queue (--queues 1)");
            // After SERVER_ERROR iperf3 reads its own error number and errno, 32-bit
            // big-endian each: IEINITTEST (101) and EPROTONOSUPPORT (93), which iperf3
            // prints as a failed test initialization: "Protocol not supported".
            let mut msg = vec![SERVER_ERROR];
            msg.extend_from_slice(&IEINITTEST.to_be_bytes());
            msg.extend_from_slice(&EPROTONOSUPPORT.to_be_bytes());
            ctrl.write_all(&msg)?;
            return Ok(());
        };
        let udp = udp::Udp {
            // iperf3 leaves "bandwidth" out for an unlimited test (-b 0).
            rate: number("bandwidth").unwrap_or(0),
            counter: if flag("udp_counters_64bit") {
                udp::Counter::Bits64
            } else {
                udp::Counter::Bits32
            },
        };
        let len = number("len").unwrap_or(udp::DEFAULT_LEN as u64) as usize;
        let len = len.clamp(udp::MIN_LEN, udp::MAX_LEN);
        return udp::serve_test(caller, ctrl, parallel, reverse, len, udp);
    }
    let block = number("len")
        .unwrap_or(DEFAULT_BLOCK as u64)
        .clamp(1, MAX_BLOCK as u64) as usize;
    let rate = number("bandwidth").unwrap_or(0);
    ctrl.write_all(&[CREATE_STREAMS])?;
    let mut streams = Vec::with_capacity(parallel);
    while streams.len() < parallel {
        let mut s = acceptor.accept()?;
        let mut c = [0u8; COOKIE_LEN];
        s.read_exact(&mut c)?;
        if c == cookie {
            streams.push(s);
        }
    }
    // The streams run inside their stacks' runtimes from here on (no thread each, no
    // copy per read or write): a receiver counts what arrives, a sender writes iperf3's
    // fill as fast as the stack takes it or at the test's bitrate.
    let role = if reverse {
        StreamRole::Send {
            fill: 0x5a,
            block,
            rate,
        }
    } else {
        StreamRole::Receive
    };
    let mut running = Vec::with_capacity(streams.len());
    for s in streams {
        let (caller, h) = s.into_raw();
        let counters = Arc::new(StreamCounters::default());
        if let Err(e) = service::adopt(&caller, h, role, counters.clone()) {
            release_all(&running);
            return Err(std::io::Error::from(crate::socket::SocketError::from(e)).into());
        }
        running.push((caller, h, counters));
    }
    let start = WallInstant::now();
    let begun = ctrl.write_all(&[TEST_START, TEST_RUNNING]);
    // The client says TEST_END when its time is up (or leaves: treat like the end).
    let mut state = [0u8; 1];
    let ended = begun.is_ok() && ctrl.read_exact(&mut state).is_ok() && state[0] == TEST_END;
    let elapsed = start.elapsed().as_secs_f64();
    if !reverse {
        // The client stopped writing before TEST_END, but what it wrote may still be on
        // its way: count until the streams fall quiet for a [`POLL`] (or end).
        drain_until_idle(&acceptor.callers[0], &running);
    }
    // Stopped and closed: a sender's FIN follows what it queued, which the client
    // reads to the end before it exchanges results.
    release_all(&running);
    let results: Vec<StreamResult> = running
        .iter()
        .map(|(_, _, counters)| StreamResult {
            bytes: counters.bytes(),
            retransmits: -1,
            ..StreamResult::default()
        })
        .collect();
    begun?;
    if !ended {
        return Ok(());
    }
    finish_server_test(ctrl, &results, elapsed, if reverse { 0 } else { -1 })
}

/// The server's end of a test after TEST_END: results exchanged, then IPERF_DONE.
fn finish_server_test(
    ctrl: &mut TcpStream,
    results: &[StreamResult],
    elapsed: f64,
    sender_has_retransmits: i64,
) -> Result<(), Iperf3Error> {
    ctrl.write_all(&[EXCHANGE_RESULTS])?;
    let client_results = read_json(ctrl)?;
    // Stream ids must be the client's: it checks them. They come in creation order,
    // which is the order the data connections arrived in; iperf3 numbers them 1, 3, 4,
    // 5, ... (a quirk of iperf_add_stream), used if the client sent none.
    let client_ids: Vec<u64> = client_results
        .get("streams")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.get("id")?.as_u64()).collect())
        .unwrap_or_default();
    let congestion = congestion_of(ctrl);
    let ours = results_json(
        results,
        &client_ids,
        elapsed,
        sender_has_retransmits,
        congestion,
    );
    write_json(ctrl, &ours)?;
    ctrl.write_all(&[DISPLAY_RESULTS])?;
    let mut done = [0u8; 1];
    let _ = ctrl.read_exact(&mut done);
    let _ = done[0] == IPERF_DONE;
    Ok(())
}

/// Datagrams, loss and jitter of a UDP test as iperf3's summary gives them: the local
/// datagram count (sent, or the highest counter received), and the receiving side's loss
/// and jitter (averaged over the streams).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UdpSummary {
    pub packets: u64,
    pub lost_packets: u64,
    pub jitter_ms: f64,
    /// Known when this side received (reverse); iperf3 does not exchange it.
    pub out_of_order: u64,
}

impl UdpSummary {
    pub fn lost_percent(&self) -> f64 {
        if self.packets > 0 {
            self.lost_packets as f64 * 100.0 / self.packets as f64
        } else {
            0.0
        }
    }
}

/// What the client measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientReport {
    pub reverse: bool,
    pub streams: usize,
    /// Bytes this side sent (normal) or received (reverse), over `seconds`.
    pub bytes: u64,
    /// What the server reported for the same direction.
    pub server_bytes: u64,
    pub seconds: f64,
    pub retransmits: u64,
    /// A UDP test's datagrams, loss and jitter (`None` for TCP).
    pub udp: Option<UdpSummary>,
}

impl ClientReport {
    pub fn gbit_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1e9
        } else {
            0.0
        }
    }

    /// The summary; a UDP test adds `sum` with the fields of iperf3's `-J` `end.sum`
    /// (`bytes`, `packets`, `lost_packets`, `lost_percent`, `jitter_ms`, ...).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "tool": "ustack iperf3",
            "protocol": if self.udp.is_some() { "udp" } else { "tcp" },
            "reverse": self.reverse,
            "streams": self.streams,
            "bytes": self.bytes,
            "server_bytes": self.server_bytes,
            "seconds": self.seconds,
            "gbit_per_s": self.gbit_per_s(),
            "retransmits": self.retransmits,
        });
        if let Some(u) = &self.udp {
            v["sum"] = serde_json::json!({
                "seconds": self.seconds,
                "bytes": self.bytes,
                "bits_per_second": self.gbit_per_s() * 1e9,
                "jitter_ms": u.jitter_ms,
                "lost_packets": u.lost_packets,
                "packets": u.packets,
                "lost_percent": u.lost_percent(),
                "out_of_order": u.out_of_order,
                "sender": !self.reverse,
            });
        }
        v
    }
}

/// The line `ustack iperf3 -c` prints.
impl std::fmt::Display for ClientReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.reverse { "received" } else { "sent" };
        if let Some(u) = &self.udp {
            return write!(
                f,
                "{verb} {} bytes in {:.2} s over {} UDP stream(s): {:.2} Mbit/s, {} datagrams, \
                 {} lost ({:.2}%), jitter {:.3} ms, {} out of order (the server counted {} bytes)",
                self.bytes,
                self.seconds,
                self.streams,
                self.gbit_per_s() * 1e3,
                u.packets,
                u.lost_packets,
                u.lost_percent(),
                u.jitter_ms,
                u.out_of_order,
                self.server_bytes,
            );
        }
        write!(
            f,
            "{verb} {} bytes in {:.2} s over {} stream(s): {:.2} Gbit/s (the server counted {} bytes), {} retransmits",
            self.bytes,
            self.seconds,
            self.streams,
            self.gbit_per_s(),
            self.server_bytes,
            self.retransmits
        )
    }
}

impl crate::demo::Outcome for ClientReport {
    fn to_json(&self) -> serde_json::Value {
        ClientReport::to_json(self)
    }

    fn failure(&self) -> Option<String> {
        None
    }
}

fn expect_state(ctrl: &mut TcpStream, want: u8) -> Result<(), Iperf3Error> {
    let mut b = [0u8; 1];
    ctrl.read_exact(&mut b)?;
    if b[0] == want {
        return Ok(());
    }
    Err(match b[0] {
        ACCESS_DENIED => Iperf3Error::Busy,
        SERVER_ERROR => Iperf3Error::ServerError,
        got => Iperf3Error::UnexpectedState { want, got },
    })
}

/// How often a running client test looks at its interrupt flag.
const INTERRUPT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// What `ustack iperf3 -c` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTest {
    pub server: SocketAddrV4,
    pub seconds: u64,
    pub reverse: bool,
    pub parallel: usize,
    /// Bytes per write (TCP) or per datagram (UDP); iperf3's default if `None`.
    pub len: Option<usize>,
    pub protocol: Protocol,
}

impl ClientTest {
    /// The test the flags of `ustack iperf3 -c HOST` describe, or why they describe none.
    pub fn from_args(
        args: &crate::options::Iperf3Args,
        host: std::net::Ipv4Addr,
    ) -> Result<ClientTest, String> {
        let protocol = if args.udp {
            Protocol::Udp(udp::Udp {
                rate: args.bitrate.unwrap_or(udp::DEFAULT_RATE),
                ..udp::Udp::default()
            })
        } else {
            Protocol::Tcp {
                rate: args.bitrate.unwrap_or(0),
            }
        };
        let lengths = match protocol {
            Protocol::Tcp { .. } => 1..=MAX_BLOCK,
            Protocol::Udp(_) => udp::MIN_LEN..=udp::MAX_LEN,
        };
        if let Some(len) = args.length.filter(|l| !lengths.contains(l)) {
            return Err(format!(
                "-l {len}: give {} to {} bytes for this test",
                lengths.start(),
                lengths.end()
            ));
        }
        Ok(ClientTest {
            server: SocketAddrV4::new(host, PORT),
            seconds: args.time,
            reverse: args.reverse,
            parallel: args.parallel,
            len: args.length,
            protocol,
        })
    }
}

/// The largest TCP block either side uses.
const MAX_BLOCK: usize = 1 << 20;

/// A client's data streams between CREATE_STREAMS and TEST_START.
enum Streams {
    Tcp(Vec<TcpStream>),
    Udp(Vec<Arc<UdpSocket>>),
}

/// Runs one test against an iperf3 server, like `iperf3 -c`.
///
/// `interrupt` (set by SIGINT or SIGTERM) ends the test early, the usual way (TEST_END,
/// results exchanged), so an interrupted run still reports what it measured.
pub fn client(
    caller: &Caller,
    test: &ClientTest,
    interrupt: &AtomicBool,
) -> Result<ClientReport, Iperf3Error> {
    let (server, reverse, seconds) = (test.server, test.reverse, test.seconds);
    let connect = |c: &Caller| {
        TcpStream::connect(c, server, Some(Duration::from_secs(10))).map_err(std::io::Error::from)
    };
    let mut ctrl = connect(caller)?;
    // 36 printable characters and a NUL, unique enough per run.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut cookie: Vec<u8> = (0..36u64)
        .map(|i| {
            b"abcdefghijklmnopqrstuvwxyz234567"[(crate::link::seed::derive(nanos, i) % 32) as usize]
        })
        .collect();
    cookie.push(0);
    ctrl.write_all(&cookie)?;
    expect_state(&mut ctrl, PARAM_EXCHANGE)?;
    let parallel = test.parallel.clamp(1, 128);
    let mut params = serde_json::json!({
        "omit": 0, "time": seconds, "num": 0, "blockcount": 0,
        "parallel": parallel, "pacing_timer": 1000,
        "client_version": concat!("ustack-", env!("CARGO_PKG_VERSION")),
    });
    // iperf3 reads "udp", "reverse" and "udp_counters_64bit" by their presence.
    let len = match test.protocol {
        Protocol::Tcp { rate } => {
            params["tcp"] = true.into();
            if rate > 0 {
                params["bandwidth"] = rate.into();
            }
            test.len.unwrap_or(DEFAULT_BLOCK)
        }
        Protocol::Udp(u) => {
            params["udp"] = true.into();
            params["bandwidth"] = u.rate.into();
            if u.counter == udp::Counter::Bits64 {
                params["udp_counters_64bit"] = 1.into();
            }
            test.len.unwrap_or(udp::DEFAULT_LEN)
        }
    };
    params["len"] = len.into();
    if reverse {
        params["reverse"] = true.into();
    }
    write_json(&mut ctrl, &params)?;
    expect_state(&mut ctrl, CREATE_STREAMS)?;
    let streams = match test.protocol {
        Protocol::Tcp { .. } => {
            let mut streams = Vec::with_capacity(parallel);
            for _ in 0..parallel {
                let mut s = connect(caller)?;
                s.write_all(&cookie)?;
                streams.push(s);
            }
            Streams::Tcp(streams)
        }
        Protocol::Udp(_) => Streams::Udp(udp::connect_streams(caller, server, parallel)?),
    };
    expect_state(&mut ctrl, TEST_START)?;
    expect_state(&mut ctrl, TEST_RUNNING)?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = WallInstant::now();
    // UDP sockets stay open until the test is over: a datagram still in flight after
    // TEST_END must not be answered "port unreachable", which iperf3 takes for a failed
    // write.
    let mut udp_sockets = Vec::new();
    let workers = match (streams, test.protocol) {
        (Streams::Tcp(streams), protocol) => spawn_streams(streams, &stop, move |s, stop| {
            let bytes = if reverse {
                // Read until the server closes the stream after TEST_END: dropping a
                // stream with unread data would reset it, and iperf3 then aborts the
                // whole test.
                receive_until(s, stop, REVERSE_DRAIN_LIMIT)
            } else {
                let rate = match protocol {
                    Protocol::Tcp { rate } => rate,
                    Protocol::Udp(_) => 0,
                };
                send_until(s, stop, 0x75, len, rate)
            };
            let retransmits = s.info().map(|i| i.stats.retransmits).unwrap_or(0);
            StreamResult {
                bytes,
                retransmits: if reverse { -1 } else { retransmits as i64 },
                ..StreamResult::default()
            }
        }),
        (Streams::Udp(socks), Protocol::Udp(u)) => {
            udp_sockets.clone_from(&socks);
            spawn_streams(socks, &stop, move |s, stop| {
                udp::client_stream(s, server, stop, reverse, len, u)
            })
        }
        (Streams::Udp(_), Protocol::Tcp { .. }) => unreachable!("UDP streams belong to a UDP test"),
    };
    let length = std::time::Duration::from_secs(seconds);
    while start.elapsed() < length && !interrupt.load(Ordering::Relaxed) {
        let left = length.saturating_sub(start.elapsed());
        std::thread::sleep(left.min(INTERRUPT_POLL));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Normal: stop sending, then say TEST_END. Reverse: say TEST_END first, so the
    // server stops and closes the streams our readers are draining.
    if reverse {
        ctrl.write_all(&[TEST_END])?;
    }
    stop.store(true, Ordering::Relaxed);
    let ours: Vec<StreamResult> = workers
        .into_iter()
        .map(|w| w.join().unwrap_or_default())
        .collect();
    if !reverse {
        ctrl.write_all(&[TEST_END])?;
    }
    expect_state(&mut ctrl, EXCHANGE_RESULTS)?;
    let ids: Vec<u64> = (0..ours.len()).map(stream_id).collect();
    let sender_has_retransmits = match test.protocol {
        Protocol::Tcp { .. } if !reverse => 1,
        _ => -1,
    };
    let congestion = congestion_of(&ctrl);
    write_json(
        &mut ctrl,
        &results_json(&ours, &ids, elapsed, sender_has_retransmits, congestion),
    )?;
    let theirs: Vec<StreamResult> = read_json(&mut ctrl)?
        .get("streams")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().map(StreamResult::from_json).collect())
        .unwrap_or_default();
    expect_state(&mut ctrl, DISPLAY_RESULTS)?;
    ctrl.write_all(&[IPERF_DONE])?;
    drop(udp_sockets);
    let udp = matches!(test.protocol, Protocol::Udp(_)).then(|| {
        let receiver = if reverse { &ours } else { &theirs };
        let sum = |rs: &[StreamResult], f: fn(&StreamResult) -> u64| rs.iter().map(f).sum();
        let packets = match sum(&ours, |r| r.packets) {
            0 => sum(&theirs, |r| r.packets),
            n => n,
        };
        let jitter: f64 = receiver.iter().map(|r| r.jitter).sum();
        UdpSummary {
            packets,
            lost_packets: sum(receiver, |r| r.errors),
            jitter_ms: jitter / receiver.len().max(1) as f64 * 1e3,
            out_of_order: sum(receiver, |r| r.out_of_order),
        }
    });
    Ok(ClientReport {
        reverse,
        streams: ours.len(),
        bytes: ours.iter().map(|r| r.bytes).sum(),
        server_bytes: theirs.iter().map(|r| r.bytes).sum(),
        seconds: elapsed,
        retransmits: ours.iter().map(|r| r.retransmits.max(0) as u64).sum(),
        udp,
    })
}
