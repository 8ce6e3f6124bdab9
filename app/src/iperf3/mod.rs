//! An iperf3-compatible server (TCP tests, normal and reverse, any number of parallel
//! streams), so the real `iperf3 -c` can measure ustack. The control protocol is iperf3's:
//! a 37-byte cookie, one state byte at a time, and JSON blobs prefixed by a 32-bit
//! big-endian length (PARAM_EXCHANGE and EXCHANGE_RESULTS).

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant as WallInstant;

use crate::link::Duration;
use crate::runtime::Caller;
use crate::socket::{TcpListener, TcpStream};

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
/// iperf_error.h: "not implemented yet".
const IEUNIMP: i32 = 13;
/// Largest JSON blob accepted from a client.
const MAX_JSON: usize = 1 << 20;
/// Receive buffer of a stream thread.
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
    #[error("the client asked for UDP, which this server does not do yet")]
    Udp,
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

/// Writes blocks of `fill` until `stop` is set, looking at it every [`POLL`]; returns the
/// bytes the stack took.
fn send_until(s: &mut TcpStream, stop: &AtomicBool, fill: u8, block: usize) -> u64 {
    s.set_write_timeout(Some(POLL));
    let data = vec![fill; block];
    let mut bytes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match s.write(&data) {
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    bytes
}

/// How a receiving stream ends once the test is stopped.
#[derive(Debug, Clone, Copy)]
enum Drain {
    /// At the first [`POLL`] without data (the server: the client stopped sending).
    UntilIdle,
    /// When the sender closes the stream, or after this long.
    UntilClosed(std::time::Duration),
}

/// Reads and counts until the stream ends, fails, or `drain` says the test is over.
fn receive_until(s: &mut TcpStream, stop: &AtomicBool, drain: Drain) -> u64 {
    s.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; RECV_BUF];
    let mut bytes = 0u64;
    let mut drain_until = None;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if matches!(drain, Drain::UntilIdle) && stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => break,
        }
        if let Drain::UntilClosed(limit) = drain {
            if stop.load(Ordering::Relaxed) {
                let until = *drain_until.get_or_insert_with(|| WallInstant::now() + limit);
                if WallInstant::now() >= until {
                    break;
                }
            }
        }
    }
    bytes
}

/// Runs `work` on each stream in a thread of its own; `stop` ends the test.
fn spawn_streams<T: Send + 'static>(
    streams: Vec<TcpStream>,
    stop: &Arc<AtomicBool>,
    work: impl Fn(&mut TcpStream, &AtomicBool) -> T + Send + Clone + 'static,
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

/// Serves tests one after another for ever (until the listener fails).
pub fn serve(caller: &Caller) -> Result<(), Iperf3Error> {
    let listener = TcpListener::bind(caller, PORT, 16).map_err(std::io::Error::from)?;
    loop {
        let (mut ctrl, _) = listener.accept().map_err(std::io::Error::from)?;
        // A failed test (client gone, bad parameters) must not stop the server.
        let _ = run_test(&listener, &mut ctrl);
    }
}

/// One test, from the control connection's cookie to IPERF_DONE.
fn run_test(listener: &TcpListener, ctrl: &mut TcpStream) -> Result<(), Iperf3Error> {
    let mut cookie = [0u8; COOKIE_LEN];
    ctrl.read_exact(&mut cookie)?;
    ctrl.write_all(&[PARAM_EXCHANGE])?;
    let params = read_json(ctrl)?;
    if params.get("udp").and_then(|v| v.as_bool()) == Some(true) {
        // SERVER_ERROR is followed by the server's i_errno and errno (network order);
        // the client prints "not implemented yet".
        let mut msg = vec![SERVER_ERROR];
        msg.extend_from_slice(&IEUNIMP.to_be_bytes());
        msg.extend_from_slice(&0i32.to_be_bytes());
        ctrl.write_all(&msg)?;
        return Err(Iperf3Error::Udp);
    }
    let parallel = params
        .get("parallel")
        .and_then(|v| v.as_u64())
        .unwrap_or(1)
        .clamp(1, 128) as usize;
    let reverse = params
        .get("reverse")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let block = params
        .get("len")
        .and_then(|v| v.as_u64())
        .unwrap_or(DEFAULT_BLOCK as u64)
        .clamp(1, 1 << 20) as usize;
    ctrl.write_all(&[CREATE_STREAMS])?;
    let mut streams = Vec::with_capacity(parallel);
    while streams.len() < parallel {
        let (mut s, _) = listener.accept().map_err(std::io::Error::from)?;
        let mut c = [0u8; COOKIE_LEN];
        s.read_exact(&mut c)?;
        if c == cookie {
            streams.push(s);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = WallInstant::now();
    let workers = spawn_streams(streams, &stop, move |s, stop| {
        if reverse {
            send_until(s, stop, 0x5a, block)
        } else {
            receive_until(s, stop, Drain::UntilIdle)
        }
    });
    ctrl.write_all(&[TEST_START, TEST_RUNNING])?;
    // The client says TEST_END when its time is up (or leaves: treat like the end).
    let mut state = [0u8; 1];
    let ended = ctrl.read_exact(&mut state).is_ok() && state[0] == TEST_END;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let totals: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap_or(0)).collect();
    if !ended {
        return Ok(());
    }
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
    let streams: Vec<serde_json::Value> = totals
        .iter()
        .enumerate()
        .map(|(i, &bytes)| {
            let id = client_ids.get(i).copied().unwrap_or_else(|| stream_id(i));
            serde_json::json!({
                "id": id, "bytes": bytes, "retransmits": -1, "jitter": 0, "errors": 0,
                "omitted_errors": 0, "packets": 0, "omitted_packets": 0,
                "start_time": 0, "end_time": elapsed,
            })
        })
        .collect();
    let results = serde_json::json!({
        "cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
        "sender_has_retransmits": if reverse { 0 } else { -1 },
        "congestion_used": "cubic",
        "streams": streams,
    });
    write_json(ctrl, &results)?;
    ctrl.write_all(&[DISPLAY_RESULTS])?;
    let mut done = [0u8; 1];
    let _ = ctrl.read_exact(&mut done);
    let _ = done[0] == IPERF_DONE;
    Ok(())
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
}

impl ClientReport {
    pub fn gbit_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1e9
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tool": "ustack iperf3",
            "reverse": self.reverse,
            "streams": self.streams,
            "bytes": self.bytes,
            "server_bytes": self.server_bytes,
            "seconds": self.seconds,
            "gbit_per_s": self.gbit_per_s(),
            "retransmits": self.retransmits,
        })
    }
}

/// The line `ustack iperf3 -c` prints.
impl std::fmt::Display for ClientReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} bytes in {:.2} s over {} stream(s): {:.2} Gbit/s (the server counted {} bytes), {} retransmits",
            if self.reverse { "received" } else { "sent" },
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

/// Runs one TCP test against an iperf3 server at `server`, like `iperf3 -c`.
///
/// `interrupt` (set by SIGINT or SIGTERM) ends the test early, the usual way (TEST_END,
/// results exchanged), so an interrupted run still reports what it measured.
pub fn client(
    caller: &Caller,
    server: std::net::SocketAddrV4,
    seconds: u64,
    reverse: bool,
    parallel: usize,
    interrupt: &AtomicBool,
) -> Result<ClientReport, Iperf3Error> {
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
    let parallel = parallel.clamp(1, 128);
    let mut params = serde_json::json!({
        "tcp": true, "omit": 0, "time": seconds, "num": 0, "blockcount": 0,
        "parallel": parallel, "len": DEFAULT_BLOCK, "pacing_timer": 1000,
        "client_version": concat!("ustack-", env!("CARGO_PKG_VERSION")),
    });
    if reverse {
        params["reverse"] = serde_json::Value::Bool(true);
    }
    write_json(&mut ctrl, &params)?;
    expect_state(&mut ctrl, CREATE_STREAMS)?;
    let mut streams = Vec::with_capacity(parallel);
    for _ in 0..parallel {
        let mut s = connect(caller)?;
        s.write_all(&cookie)?;
        streams.push(s);
    }
    expect_state(&mut ctrl, TEST_START)?;
    expect_state(&mut ctrl, TEST_RUNNING)?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = WallInstant::now();
    let workers = spawn_streams(streams, &stop, move |s, stop| {
        let bytes = if reverse {
            // Read until the server closes the stream after TEST_END: dropping a stream
            // with unread data would reset it, and iperf3 then aborts the whole test.
            receive_until(s, stop, Drain::UntilClosed(REVERSE_DRAIN_LIMIT))
        } else {
            send_until(s, stop, 0x75, DEFAULT_BLOCK)
        };
        let retransmits = s.info().map(|i| i.stats.retransmits).unwrap_or(0);
        (bytes, retransmits)
    });
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
    let mut totals = Vec::new();
    for w in workers {
        totals.push(w.join().unwrap_or((0, 0)));
    }
    if !reverse {
        ctrl.write_all(&[TEST_END])?;
    }
    expect_state(&mut ctrl, EXCHANGE_RESULTS)?;
    let ids: Vec<u64> = (0..totals.len()).map(stream_id).collect();
    let ours: Vec<serde_json::Value> = totals
        .iter()
        .zip(&ids)
        .map(|(&(bytes, retr), &id)| {
            serde_json::json!({
                "id": id, "bytes": bytes, "retransmits": if reverse { -1 } else { retr as i64 },
                "jitter": 0, "errors": 0, "omitted_errors": 0, "packets": 0,
                "omitted_packets": 0, "start_time": 0, "end_time": elapsed,
            })
        })
        .collect();
    write_json(
        &mut ctrl,
        &serde_json::json!({
            "cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
            "sender_has_retransmits": if reverse { -1 } else { 1 },
            "congestion_used": "cubic", "streams": ours,
        }),
    )?;
    let theirs = read_json(&mut ctrl)?;
    let server_bytes = theirs
        .get("streams")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.get("bytes")?.as_u64()).sum())
        .unwrap_or(0);
    expect_state(&mut ctrl, DISPLAY_RESULTS)?;
    ctrl.write_all(&[IPERF_DONE])?;
    Ok(ClientReport {
        reverse,
        streams: totals.len(),
        bytes: totals.iter().map(|t| t.0).sum(),
        server_bytes,
        seconds: elapsed,
        retransmits: totals.iter().map(|t| t.1).sum(),
    })
}
