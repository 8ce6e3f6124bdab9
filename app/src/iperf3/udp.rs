//! iperf3's UDP test (`-u`), as iperf_udp.c runs it. After CREATE_STREAMS the client
//! "connects" each stream with one 4-byte datagram to the server's port and the server
//! answers with another. Then the sender paces datagrams at the test's bitrate; each
//! starts with its send time (seconds, microseconds) and a packet counter (32 bits, or 64
//! with `udp_counters_64bit`), all big-endian. The receiver counts gaps in the counter as
//! loss and estimates the interarrival jitter of RFC 1889 section 6.3.1 (RFC 3550 section
//! 6.4.1). Results travel on the control connection as for TCP ([`StreamResult`]).

use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant as WallInstant, SystemTime};

use super::pacer::Pacer;
use super::{
    finish_server_test, spawn_streams, Iperf3Error, StreamResult, CREATE_STREAMS, POLL, PORT,
    TEST_END, TEST_RUNNING, TEST_START,
};
use crate::link::{Clock, Instant};
use crate::net::SendError as NetSendError;
use crate::runtime::Caller;
use crate::socket::{SocketError, TcpStream, UdpSocket};
use crate::transport::stack::UdpSendFailure;

/// iperf3's default UDP bitrate, 1 Mbit/s (UDP_RATE in iperf.h: 1024 * 1024).
pub const DEFAULT_RATE: u64 = 1024 * 1024;
/// iperf3's default datagram payload (DEFAULT_UDP_BLKSIZE): one packet on a 1500-byte MTU.
pub const DEFAULT_LEN: usize = 1460;
/// The largest payload of one datagram (65535 - 20 - 8).
pub const MAX_LEN: usize = crate::transport::udp::MAX_PAYLOAD_LEN;
/// The smallest payload: the header with a 64-bit counter.
pub const MIN_LEN: usize = HEADER_LEN_64;

/// Header length with a 32-bit counter: sec, usec, counter.
const HEADER_LEN_32: usize = 12;
/// Header length with a 64-bit counter.
const HEADER_LEN_64: usize = 16;
/// iperf_udp_connect writes a C `int` in host order; older iperf3 sends this value...
const LEGACY_CONNECT_MSG: u32 = 123_456_789;
/// ...and its server answers with this one (the server takes any content as the message).
const LEGACY_CONNECT_REPLY: u32 = 987_654_321;
/// Later iperf3 sends ASCII "9876" (0x36373839 in little-endian order)...
const CONNECT_MSG: u32 = 0x3637_3839;
/// ...and answers "6789"; its client accepts this reply or the legacy one.
const CONNECT_REPLY: u32 = 0x3938_3736;
/// How long either side waits for the connect exchange of all streams.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The byte data datagrams are filled with after their header.
const FILL: u8 = 0x75;

/// Width of the packet counter (`udp_counters_64bit` in the test parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Counter {
    #[default]
    Bits32,
    Bits64,
}

impl Counter {
    fn header_len(self) -> usize {
        match self {
            Counter::Bits32 => HEADER_LEN_32,
            Counter::Bits64 => HEADER_LEN_64,
        }
    }
}

/// The front of a data datagram (iperf_udp_send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// Send time: seconds and microseconds of the sender's clock.
    pub sec: u32,
    pub usec: u32,
    /// Packet counter: 1 for a stream's first datagram.
    pub count: u64,
}

impl DataHeader {
    /// Datagram `count`, stamped with the time of day as iperf3 stamps it.
    fn now(count: u64) -> DataHeader {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        DataHeader {
            sec: t.as_secs() as u32,
            usec: t.subsec_micros(),
            count,
        }
    }

    /// Writes the header at the front of `buf`, which holds at least `counter`'s header.
    pub fn write(&self, counter: Counter, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&self.sec.to_be_bytes());
        buf[4..8].copy_from_slice(&self.usec.to_be_bytes());
        match counter {
            Counter::Bits32 => buf[8..12].copy_from_slice(&(self.count as u32).to_be_bytes()),
            Counter::Bits64 => buf[8..16].copy_from_slice(&self.count.to_be_bytes()),
        }
    }

    /// The header of `datagram`, or `None` if it is shorter than one.
    pub fn parse(datagram: &[u8], counter: Counter) -> Option<DataHeader> {
        let word = |at: usize| u32::from_be_bytes(datagram[at..at + 4].try_into().unwrap());
        if datagram.len() < counter.header_len() {
            return None;
        }
        let count = match counter {
            Counter::Bits32 => u64::from(word(8)),
            Counter::Bits64 => u64::from_be_bytes(datagram[8..16].try_into().unwrap()),
        };
        Some(DataHeader {
            sec: word(0),
            usec: word(4),
            count,
        })
    }

    fn sent_micros(&self) -> i64 {
        i64::from(self.sec) * 1_000_000 + i64::from(self.usec)
    }
}

/// The server's answer to a connect datagram, in the byte order the client wrote its
/// message in (iperf3 writes host-order integers).
fn connect_reply(msg: &[u8]) -> [u8; 4] {
    for (m, r) in [
        (LEGACY_CONNECT_MSG, LEGACY_CONNECT_REPLY),
        (CONNECT_MSG, CONNECT_REPLY),
    ] {
        if msg == m.to_be_bytes() {
            return r.to_be_bytes();
        }
        if msg == m.to_le_bytes() {
            return r.to_le_bytes();
        }
    }
    CONNECT_REPLY.to_le_bytes()
}

fn is_connect_reply(datagram: &[u8]) -> bool {
    [LEGACY_CONNECT_REPLY, CONNECT_REPLY]
        .iter()
        .any(|r| datagram == r.to_le_bytes() || datagram == r.to_be_bytes())
}

/// What the receiving side of one stream measured (iperf_udp_recv's counters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UdpReceiver {
    /// Payload bytes of the datagrams counted.
    pub bytes: u64,
    /// The highest packet counter seen (iperf3's `packet_count` on the receiving side).
    pub highest: u64,
    /// Datagrams missing below `highest`: a gap adds to it, a late arrival takes one back.
    pub lost: u64,
    /// Datagrams whose counter was not above every earlier one.
    pub out_of_order: u64,
    /// Interarrival jitter in seconds.
    pub jitter: f64,
    /// Datagrams too short for a header, not counted otherwise.
    pub malformed: u64,
    /// Transit time (arrival minus send time, in µs) of the previous datagram.
    prev_transit: Option<i64>,
}

impl UdpReceiver {
    /// Counts `datagram`, which arrived at `arrival` on the receiver's clock. The two
    /// clocks need not agree: jitter only looks at changes of the transit time.
    pub fn on_datagram(&mut self, arrival: Instant, datagram: &[u8], counter: Counter) {
        let Some(h) = DataHeader::parse(datagram, counter) else {
            self.malformed += 1;
            return;
        };
        self.bytes += datagram.len() as u64;
        if h.count > self.highest {
            self.lost += h.count - 1 - self.highest;
            self.highest = h.count;
        } else {
            // A late datagram fills a gap counted as loss (iperf3 assumes no duplicates).
            self.out_of_order += 1;
            self.lost = self.lost.saturating_sub(1);
        }
        // RFC 1889 section 6.3.1 and A.8: J += (|D(i-1,i)| - J) / 16.
        let transit = arrival.total_micros() as i64 - h.sent_micros();
        let d = transit.abs_diff(self.prev_transit.unwrap_or(transit)) as f64 / 1e6;
        self.prev_transit = Some(transit);
        self.jitter += (d - self.jitter) / 16.0;
    }

    /// The numbers iperf3 exchanges for this stream.
    pub fn result(&self) -> StreamResult {
        StreamResult {
            bytes: self.bytes,
            retransmits: -1,
            jitter: self.jitter,
            errors: self.lost,
            packets: self.highest,
            out_of_order: self.out_of_order,
        }
    }
}

/// A UDP test's settings, as the client sends them (PARAM_EXCHANGE `bandwidth`,
/// `udp_counters_64bit`; the datagram length is `len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp {
    /// Bits per second per stream; 0 is unlimited.
    pub rate: u64,
    pub counter: Counter,
}

impl Default for Udp {
    fn default() -> Udp {
        Udp {
            rate: DEFAULT_RATE,
            counter: Counter::Bits32,
        }
    }
}

/// Sends paced datagrams of `len` bytes to `to` until `stop` is set; what it sent, as
/// iperf3 reports a sending stream.
fn send_paced(
    sock: &UdpSocket,
    to: SocketAddrV4,
    stop: &AtomicBool,
    udp: Udp,
    len: usize,
) -> StreamResult {
    let clock = Clock::wall();
    let mut pacer = Pacer::new(clock.now(), udp.rate, len);
    let mut datagram = vec![FILL; len.max(udp.counter.header_len())];
    let (mut bytes, mut count) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        match pacer.poll(clock.now(), datagram.len()) {
            Ok(()) => {
                DataHeader::now(count + 1).write(udp.counter, &mut datagram);
                match sock.send_to(&datagram, to) {
                    Ok(n) => {
                        count += 1;
                        bytes += n as u64;
                    }
                    // The device refused the packet for now (a full queue): the datagram
                    // is not counted, as iperf3 does not count one its write refused
                    // with ENOBUFS.
                    Err(e) if is_link_error(&e) => std::thread::sleep(LINK_BACKOFF),
                    Err(_) => break,
                }
            }
            Err(wait) => std::thread::sleep(wait.min(POLL)),
        }
    }
    StreamResult {
        bytes,
        retransmits: -1,
        packets: count,
        ..StreamResult::default()
    }
}

/// How long a sender waits after the device refused a datagram.
const LINK_BACKOFF: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether a send failed in the device (worth trying again) rather than for good (no
/// route, socket closed, stack stopped).
fn is_link_error(e: &io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|e| e.downcast_ref::<SocketError>()),
        Some(SocketError::Send(UdpSendFailure::Net(NetSendError::Link(
            _
        ))))
    )
}

/// Receives until `stop` is set, counting each datagram for the stream `stream_of` its
/// sender picks (others are ignored). Reads at most the test's `len` bytes of a datagram,
/// as iperf3 does (the runtime allocates a buffer of that size per call).
fn receive(
    sock: &UdpSocket,
    stop: &AtomicBool,
    udp: Udp,
    len: usize,
    streams: usize,
    stream_of: impl Fn(SocketAddrV4) -> Option<usize>,
) -> Vec<UdpReceiver> {
    let clock = Clock::wall();
    let mut receivers = vec![UdpReceiver::default(); streams];
    let mut buf = vec![0u8; len.clamp(MIN_LEN, MAX_LEN)];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(r) = stream_of(from).and_then(|i| receivers.get_mut(i)) {
                    r.on_datagram(clock.now(), &buf[..n], udp.counter);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    receivers
}

/// The server's side of CREATE_STREAMS: one connect datagram from each of `streams`
/// clients' sockets, each answered.
fn accept_streams(sock: &UdpSocket, streams: usize) -> Result<Vec<SocketAddrV4>, Iperf3Error> {
    let deadline = WallInstant::now() + CONNECT_LIMIT;
    let mut peers = Vec::with_capacity(streams);
    let mut buf = [0u8; 64];
    while peers.len() < streams {
        if WallInstant::now() >= deadline {
            return Err(Iperf3Error::UdpConnect);
        }
        match sock.recv_from(&mut buf) {
            // Only a 4-byte datagram opens a stream: not a late one of an earlier test.
            Ok((4, from)) => {
                if !peers.contains(&from) {
                    peers.push(from);
                }
                sock.send_to(&connect_reply(&buf[..4]), from)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(peers)
}

/// Runs a UDP test on the server from CREATE_STREAMS on (the client's control
/// connection `ctrl` has sent its parameters).
pub(super) fn serve_test(
    caller: &Caller,
    ctrl: &mut TcpStream,
    parallel: usize,
    reverse: bool,
    len: usize,
    udp: Udp,
) -> Result<(), Iperf3Error> {
    // Bound before CREATE_STREAMS: the client sends its connect datagrams as soon as it
    // reads it, and one that finds no socket is answered "port unreachable".
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
    let mut sock = UdpSocket::bind(caller, any).map_err(io::Error::from)?;
    sock.set_read_timeout(Some(POLL));
    ctrl.write_all(&[CREATE_STREAMS])?;
    let peers = accept_streams(&sock, parallel)?;
    let sock = Arc::new(sock);
    let stop = Arc::new(AtomicBool::new(false));
    let start = WallInstant::now();
    let workers = if reverse {
        let targets: Vec<_> = peers.iter().map(|&p| (sock.clone(), p)).collect();
        spawn_streams(targets, &stop, move |(sock, to), stop| {
            vec![send_paced(sock, *to, stop, udp, len)]
        })
    } else {
        let peers = peers.clone();
        spawn_streams(vec![sock.clone()], &stop, move |sock, stop| {
            let streams = peers.len();
            let stream_of = |from| peers.iter().position(|&p| p == from);
            receive(sock, stop, udp, len, streams, stream_of)
                .iter()
                .map(UdpReceiver::result)
                .collect()
        })
    };
    ctrl.write_all(&[TEST_START, TEST_RUNNING])?;
    let mut state = [0u8; 1];
    let ended = std::io::Read::read_exact(ctrl, &mut state).is_ok() && state[0] == TEST_END;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let results: Vec<StreamResult> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    if !ended {
        return Ok(());
    }
    // The socket stays bound until the results are exchanged: datagrams still in flight
    // then are queued and dropped, not answered "port unreachable".
    finish_server_test(ctrl, &results, elapsed, if reverse { 0 } else { -1 })
}

/// The client's side of CREATE_STREAMS: `streams` sockets, each connected to the server
/// by the connect exchange.
pub(super) fn connect_streams(
    caller: &Caller,
    server: SocketAddrV4,
    streams: usize,
) -> Result<Vec<Arc<UdpSocket>>, Iperf3Error> {
    let mut socks = Vec::with_capacity(streams);
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    for _ in 0..streams {
        let mut sock = UdpSocket::bind(caller, any).map_err(io::Error::from)?;
        sock.set_read_timeout(Some(POLL));
        // Little-endian, as iperf3 on the usual hosts writes it: ASCII "9876".
        sock.send_to(&CONNECT_MSG.to_le_bytes(), server)?;
        let deadline = WallInstant::now() + CONNECT_LIMIT;
        let mut buf = [0u8; 64];
        loop {
            if WallInstant::now() >= deadline {
                return Err(Iperf3Error::UdpConnect);
            }
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if from.ip() == server.ip() && is_connect_reply(&buf[..n]) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        socks.push(Arc::new(sock));
    }
    Ok(socks)
}

/// What a client's UDP stream does from TEST_RUNNING until `stop`: send paced datagrams
/// to the server, or (reverse) receive them.
pub(super) fn client_stream(
    sock: &UdpSocket,
    server: SocketAddrV4,
    stop: &AtomicBool,
    reverse: bool,
    len: usize,
    udp: Udp,
) -> StreamResult {
    if reverse {
        let from_server = |from: SocketAddrV4| (from.ip() == server.ip()).then_some(0);
        receive(sock, stop, udp, len, 1, from_server)[0].result()
    } else {
        send_paced(sock, server, stop, udp, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(count: u64, sent_us: u64, len: usize) -> Vec<u8> {
        let mut d = vec![FILL; len];
        let h = DataHeader {
            sec: (sent_us / 1_000_000) as u32,
            usec: (sent_us % 1_000_000) as u32,
            count,
        };
        h.write(Counter::Bits32, &mut d);
        d
    }

    /// iperf_udp_send: sec, usec and the counter, big-endian, in the first 12 bytes (16
    /// with 64-bit counters).
    #[test]
    fn the_header_is_sec_usec_counter_big_endian() {
        let h = DataHeader {
            sec: 0x0102_0304,
            usec: 999_999,
            count: 0x0a0b_0c0d_0e0f_1011,
        };
        let mut b = [0u8; 16];
        h.write(Counter::Bits32, &mut b);
        assert_eq!(
            b[..12],
            [1, 2, 3, 4, 0, 0x0f, 0x42, 0x3f, 0x0e, 0x0f, 0x10, 0x11]
        );
        h.write(Counter::Bits64, &mut b);
        assert_eq!(b[8..], 0x0a0b_0c0d_0e0f_1011u64.to_be_bytes());
        assert_eq!(DataHeader::parse(&b, Counter::Bits64), Some(h));
        assert_eq!(DataHeader::parse(&b[..11], Counter::Bits32), None);
    }

    /// The connect exchange: the legacy 123456789 is answered 987654321 and the ASCII
    /// "9876" is answered "6789", each in the byte order the client wrote; any other
    /// content is answered "6789"; a client takes either reply in either order.
    #[test]
    fn the_connect_reply_matches_the_message_and_byte_order() {
        assert_eq!(
            connect_reply(&123_456_789u32.to_le_bytes()),
            987_654_321u32.to_le_bytes()
        );
        assert_eq!(
            connect_reply(&123_456_789u32.to_be_bytes()),
            987_654_321u32.to_be_bytes()
        );
        assert_eq!(connect_reply(b"9876"), *b"6789");
        assert_eq!(connect_reply(b"6789"), *b"9876");
        assert_eq!(connect_reply(b"abcd"), *b"6789");
        assert!(is_connect_reply(b"6789") && is_connect_reply(&987_654_321u32.to_le_bytes()));
        assert!(!is_connect_reply(b"9876x") && !is_connect_reply(&[0; 4]));
    }

    /// Evenly spaced datagrams with a constant transit time: no loss, no jitter, every
    /// byte counted (the sender's clock is an hour off ours: only changes matter).
    #[test]
    fn steady_arrivals_have_no_loss_and_no_jitter_rfc1889_6_3_1() {
        let mut r = UdpReceiver::default();
        for i in 1..=100u64 {
            let sent = 3_600_000_000 + i * 1000;
            r.on_datagram(
                Instant::from_micros(i * 1000 + 250),
                &datagram(i, sent, 1000),
                Counter::Bits32,
            );
        }
        assert_eq!(
            (r.bytes, r.highest, r.lost, r.out_of_order),
            (100_000, 100, 0, 0)
        );
        assert_eq!(r.jitter, 0.0);
    }

    /// A gap in the counter is loss; a datagram arriving late then fills one of it and
    /// counts as out of order (iperf_udp_recv).
    #[test]
    fn gaps_are_loss_and_late_datagrams_take_it_back() {
        let mut r = UdpReceiver::default();
        for (i, count) in [1u64, 2, 5, 3, 6].into_iter().enumerate() {
            let t = i as u64 * 1000;
            r.on_datagram(
                Instant::from_micros(t),
                &datagram(count, t, 100),
                Counter::Bits32,
            );
        }
        assert_eq!((r.highest, r.lost, r.out_of_order), (6, 1, 1));
        assert_eq!(r.result().packets, 6);
        assert_eq!(r.result().errors, 1);
        r.on_datagram(Instant::ZERO, &[0; 11], Counter::Bits32);
        assert_eq!((r.malformed, r.bytes), (1, 500));
    }

    /// RFC 1889 A.8: each change D of the transit time moves the estimate by (|D| - J)/16.
    #[test]
    fn jitter_moves_a_sixteenth_toward_each_transit_change_rfc1889_a8() {
        let mut r = UdpReceiver::default();
        let arrive = |r: &mut UdpReceiver, count: u64, sent: u64, at: u64| {
            r.on_datagram(
                Instant::from_micros(at),
                &datagram(count, sent, 64),
                Counter::Bits32,
            )
        };
        arrive(&mut r, 1, 0, 100);
        arrive(&mut r, 2, 1000, 1100);
        arrive(&mut r, 3, 2000, 2900); // transit 900 µs after 100: D = 800 µs
        assert!((r.jitter - 0.0008 / 16.0).abs() < 1e-12, "{}", r.jitter);
        arrive(&mut r, 4, 3000, 3100); // back to 100: D = 800 µs again
        let j = 0.0008 / 16.0;
        assert!((r.jitter - (j + (0.0008 - j) / 16.0)).abs() < 1e-12);
    }
}
