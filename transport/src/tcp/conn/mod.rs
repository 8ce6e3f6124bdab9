//! One TCP connection as a sans-IO state machine (RFC 9293), quinn-proto's shape. Time,
//! the initial sequence number and the timestamp offset come from the caller; nothing in
//! here reads a clock, draws a random number or touches a socket.
//!
//! # Calling contract
//!
//! 1. Feed what happened: [`Connection::handle_segment`] for a segment that arrived,
//!    [`Connection::on_timeout`] when the deadline of [`Connection::poll_timeout`] has
//!    passed, [`Connection::on_icmp_error`] for an ICMP error quoting one of our segments,
//!    or an application call ([`Connection::send`], [`Connection::recv`],
//!    [`Connection::shutdown_write`], [`Connection::abort`]).
//! 2. Then call [`Connection::poll_transmit`] until it returns `None`, sending each
//!    segment it returns.
//! 3. Then ask [`Connection::poll_timeout`] when to call [`Connection::on_timeout`] next.
//!
//! Skipping step 2 leaves ACKs, retransmissions and RSTs unsent; skipping step 3 leaves
//! the timers unserved.
//!
//! A driver that reads a batch of segments in one go may feed several before step 2 (the
//! batch is then acknowledged once, as Linux acknowledges a GRO segment), but must do
//! step 2 right after any segment for which [`Connection::ack_due`] is true.
//!
//! # Files
//!
//! - `mod.rs`: the state, the connection's fields, opening, accessors and the
//!   application's calls.
//! - `input.rs`: segments and ICMP errors that arrive (RFC 9293 section 3.10.7).
//! - `output.rs`: the windows we advertise and the segments we send.
//! - `timers.rs`: retransmission, delayed ACK, probes, keep-alive, TIME-WAIT, user
//!   timeout.
//! - `recovery.rs`: loss recovery (RFC 5681, RFC 6582 NewReno, RFC 6675 SACK, RFC 8985
//!   RACK-TLP).
//!
//! # Debugging a seed
//!
//! Every state change is logged at `debug` level through the `log` crate, with the
//! connection's 4-tuple. Nothing prints unless a logger is installed and asks for it. The
//! transport tests install `env_logger` (a dev-dependency), so the history of a failing
//! test or seed prints with `RUST_LOG=ustack_transport=debug`, e.g.
//! `RUST_LOG=ustack_transport=debug USTACK_TCP_FIRST_SEED=N USTACK_TCP_SEEDS=1 cargo test --release --test
//! tcp_props`.

mod input;
mod output;
mod recovery;
mod timers;

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::ops::Range;

use self::recovery::Recovery;
use super::assembler::Assembler;
use super::autotune::RecvAutotune;
use super::config::TcpConfig;
use super::congestion::Congestion;
use super::delivery::DeliveryRate;
use super::error::{ConnectionError, RecvError, SendError};
use super::rack::Rack;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::seq::SeqNumber;
use super::stats::ConnStats;
use super::time_wait::TimeWait;
use super::timer::{Timer, TimerTable};
use super::wire::{Segment, MAX_WINDOW_SCALE};
use crate::net::link::{Duration, Instant};

/// RFC 9293 section 3.3.2 connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// States in which our data (or FIN) may still be in flight and be sent: after the
    /// handshake, before our FIN is acknowledged (RFC 9293 section 3.3.2).
    pub(crate) fn sends_data(self) -> bool {
        matches!(
            self,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// States after the handshake in which the peer's sequence numbers are known.
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }
}

/// When the ACK for received data goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckPending {
    None,
    /// At the delayed-ACK timer, or with the next segment we send.
    Delayed,
    Now,
}

/// What [`Connection::poll_transmit`] owes the peer besides data, SYN and FIN.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingOutput {
    /// A RST answering one unacceptable segment (RFC 9293 section 3.10.7); the
    /// connection lives on. Boxed: rare, and a connection's state stays small (issue 12).
    reset_reply: Option<Box<Segment<'static>>>,
    /// The application aborted (RFC 9293 section 3.10.5): a RST at SND.MAX, then CLOSED.
    abort_reset: bool,
    /// A zero-window or keep-alive probe: one old byte's sequence number, SND.UNA - 1.
    probe: bool,
    /// Resend the segment at SND.UNA (fast retransmit, NewReno partial ACK). It stays
    /// requested until the next transmit even if the recovery episode ends first.
    retransmit_una: bool,
    /// The RFC 1122 section 4.2.3.4 override timeout passed: the next data segment may
    /// be smaller than sender silly-window avoidance allows.
    sws_override: bool,
    /// The tail loss probe timeout passed: send one probe (RFC 8985 section 7.3).
    tlp: bool,
    /// The ACK for received data.
    ack: AckPending,
}

impl Default for PendingOutput {
    fn default() -> PendingOutput {
        PendingOutput {
            reset_reply: None,
            abort_reset: false,
            probe: false,
            retransmit_una: false,
            sws_override: false,
            tlp: false,
            ack: AckPending::None,
        }
    }
}

/// RFC 9293 section 3.7.1: MSS assumed when the peer announces none.
const DEFAULT_MSS: usize = 536;
/// Floor of the MSS we send with, whatever the peer announces (RFC 9293 section 3.7.1
/// sets none), so that a tiny announced MSS cannot make us send floods of tiny segments
/// (Linux's floor, `TCP_MIN_MSS`, is 88).
const MIN_SND_MSS: usize = 64;
/// Bytes of a timestamps option as sent (with two NOPs), reducing the payload per segment
/// (RFC 7323 section 3.2, laid out as in its appendix A).
const TIMESTAMP_OPTION_LEN: usize = 12;
/// SACKed ranges the sender remembers (RFC 6675 section 3 keeps them all): more than
/// the holes a burst of tail drops leaves in a full window, and than the out-of-order
/// blocks a receiver like ours keeps, so that recovery does not resend what the peer has.
const MAX_SCOREBOARD_BLOCKS: usize = 256;
/// Capacity of a drained send or receive buffer small enough to keep without arming
/// the reclaim timer: a request-response connection that moves a few bytes at a time
/// does not run a timer per exchange, and an idle connection still holds little (its
/// state, about 1.6 KiB, and at most this much per buffer: under issue 12's 4 KiB).
const RETAINED_BUFFER: usize = 512;
/// How long a drained send or receive buffer must stay empty before its memory goes back
/// (Linux's delayed-ACK ceiling, `TCP_DELACK_MAX`, one of the timers that reclaim socket
/// memory there): a busy connection that drains and refills its buffers keeps them, an
/// idle one holds none (issue 12: at most 4 KiB per idle connection).
const RECLAIM_DELAY: Duration = Duration::from_millis(200);
/// In-order bytes a batch of arriving segments may hold its ACK back for (see
/// [`Connection::ack_due`]). Linux acknowledges a GRO super-segment (up to 64 KiB) as one
/// segment, and since 6.5 (`tcp_backlog_ack_defer`, on by default) defers the ACKs of a
/// whole socket backlog, the segments that arrived while the application held the socket,
/// to one sent from `tcp_release_cb`: receiving a bulk transfer over veth on this kernel
/// it sent 2.4 ACKs per MB, one per ~420 KB. A poll's batch is our backlog (the
/// application runs between polls); 256 KiB keeps us above that rate (4 ACKs per MB).
pub(crate) const MAX_ACK_BATCH: usize = 256 * 1024;
/// RFC 5961 section 7: challenge ACKs are limited per this interval.
const CHALLENGE_ACK_INTERVAL: Duration = Duration::from_secs(1);

/// A TCP connection.
#[derive(Debug)]
pub struct Connection {
    state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    cfg: TcpConfig,

    // Send sequence space (RFC 9293 section 3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent so far (snd_nxt goes back on a timeout).
    snd_max: SeqNumber,
    snd_wnd: usize,
    max_snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Bytes from snd_una on (the SYN and FIN are not in it).
    send_buf: VecDeque<u8>,
    /// The application closed its sending side: a FIN follows the data.
    fin_queued: bool,
    /// Our FIN has been sent at least once (it is within snd_max).
    fin_sent: bool,
    /// The application let go of the connection (closed both directions): nothing will
    /// read what arrives.
    orphaned: bool,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Right edge of the window we last advertised.
    rcv_adv: SeqNumber,
    recv_buf: VecDeque<u8>,
    /// The receive buffer's size, grown by autotuning.
    rcv_space: RecvAutotune,
    /// The send buffer's size, grown with the congestion window (Linux
    /// `tcp_sndbuf_expand`).
    snd_buf_limit: usize,
    ooo: Assembler,
    /// Sequence number of the peer's FIN, if seen (perhaps beyond a hole).
    fin_seq: Option<SeqNumber>,
    fin_received: bool,

    // Negotiated options.
    snd_mss: usize,
    snd_shift: u8,
    rcv_shift: u8,
    /// Both SYNs carried the window scale option.
    ws_enabled: bool,
    ts_enabled: bool,
    ts_recent: u32,
    ts_offset: u32,
    last_ack_sent: SeqNumber,
    sack_enabled: bool,

    // Timers and loss recovery.
    timers: TimerTable,
    rtt: RttEstimator,
    cc: Congestion,
    /// Delivery-rate samples, when the congestion control uses them (BBR). Boxed, so a
    /// connection without them does not carry their room (issue 12: small connections).
    rate: Option<Box<DeliveryRate>>,
    /// Pacing: when the next data segment may leave.
    next_send_time: Instant,
    /// When data waiting for its pacing time was to be released: how late the caller
    /// came back for it is time the schedule lets it catch up on.
    pacing_release: Option<Instant>,
    /// Retransmissions of the current oldest unacknowledged data (or SYN).
    retries: u32,
    /// Karn: the segment being timed, `(end seq, sent at)`, cleared on retransmission.
    timed: Option<(SeqNumber, Instant)>,
    /// The end of the highest data (or SYN) retransmitted and the TSval of the latest
    /// retransmission, until an ACK covers that end: a timestamp echo older than that
    /// TSval may answer an earlier copy and is no round trip (RFC 7323 section 4.3).
    retransmitted: Option<(SeqNumber, u32)>,
    /// Duplicate ACKs in a row (RFC 5681 section 2).
    dupacks: u32,
    recovery: Recovery,
    /// What the peer SACKed above snd_una (RFC 6675 scoreboard).
    scoreboard: Scoreboard,
    /// RFC 8985 RACK: when each segment in flight was sent (kept only with RACK on).
    rack: Rack,
    /// RFC 8985 section 7: the outstanding tail loss probe, `(TLP.end_seq,
    /// TLP.is_retrans)`; no other probe is sent until an ACK covers it.
    tlp_probe: Option<(SeqNumber, bool)>,
    /// Zero-window probes sent since the window last opened: their backoff exponent.
    zero_window_backoff: u32,
    keepalive_probes_sent: u32,
    pending: PendingOutput,
    /// The last arriving segment asked for an ACK that must leave before the next one
    /// is processed (see [`Connection::ack_due`]); valid until the next segment.
    ack_before_next: bool,
    /// Full-sized segments received since the last ACK we sent.
    unacked_segments: u32,
    /// The largest segment the peer sent in order, at most our MSS: what counts as
    /// full-sized for delayed ACKs (Linux's rcv_mss).
    rcv_mss: usize,
    /// Start of the current RFC 5961 section 7 interval and the challenge ACKs sent in it.
    challenge_window: (Instant, u32),
    error: Option<ConnectionError>,
    /// The payload of the segment `poll_transmit` builds, when it is not one contiguous
    /// run of the send buffer (see `tx_ring`): only where the buffer's ring wraps.
    tx_payload: Vec<u8>,
    /// The payload of the segment `poll_transmit` builds as offsets into the send buffer
    /// when they lie in one of its two slices: the emitter copies it from there straight
    /// into the packet (one copy from the send buffer to the device's buffer).
    tx_ring: Option<Range<usize>>,
    /// The segment size the link is to cut the last segment out of `poll_transmit` into
    /// (TSO), 0 if it is one segment.
    tx_segment: u16,
    stats: ConnStats,
}

/// What names a new connection and what the stack chose for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// Our initial sequence number (RFC 9293 section 3.4.1, RFC 6528).
    pub iss: SeqNumber,
    /// Added to our millisecond clock in the timestamps we send (RFC 7323 section 5.4).
    pub ts_offset: u32,
}

impl Connection {
    fn new(now: Instant, opening: Opening, cfg: TcpConfig) -> Connection {
        let Opening {
            local,
            remote,
            iss,
            ts_offset,
        } = opening;
        let mss = usize::from(cfg.mss);
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        let cc = Congestion::new(cfg.congestion, mss).with_pacing(cfg.pacing);
        let rate = cc.wants_rate_samples().then(Box::<DeliveryRate>::default);
        let rcv_space = RecvAutotune::new(cfg.recv_buffer, cfg.recv_buffer_max, mss);
        let rcv_shift = if cfg.window_scaling {
            window_shift(rcv_space.max())
        } else {
            0
        };
        Connection {
            state: State::Closed,
            local,
            remote,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            send_buf: VecDeque::new(),
            fin_queued: false,
            fin_sent: false,
            orphaned: false,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            recv_buf: VecDeque::new(),
            rcv_space,
            snd_buf_limit: cfg.send_buffer,
            ooo: Assembler::new(cfg.max_ooo_blocks),
            fin_seq: None,
            fin_received: false,
            snd_mss: DEFAULT_MSS,
            snd_shift: 0,
            rcv_shift,
            ws_enabled: false,
            ts_enabled: false,
            ts_recent: 0,
            ts_offset,
            last_ack_sent: SeqNumber(0),
            sack_enabled: false,
            timers: TimerTable::default(),
            rtt,
            cc,
            rate,
            next_send_time: now,
            pacing_release: None,
            retries: 0,
            timed: None,
            retransmitted: None,
            dupacks: 0,
            recovery: Recovery::Open,
            scoreboard: Scoreboard::new(MAX_SCOREBOARD_BLOCKS),
            rack: Rack::default(),
            tlp_probe: None,
            zero_window_backoff: 0,
            keepalive_probes_sent: 0,
            pending: PendingOutput::default(),
            ack_before_next: false,
            unacked_segments: 0,
            rcv_mss: DEFAULT_MSS.min(mss),
            challenge_window: (now, 0),
            error: None,
            tx_payload: Vec::new(),
            tx_ring: None,
            tx_segment: 0,
            stats: ConnStats::default(),
            cfg,
        }
    }

    /// Active open (RFC 9293 section 3.10.1): a connection in SYN-SENT whose SYN goes out
    /// with the next [`Connection::poll_transmit`].
    pub fn connect(now: Instant, opening: Opening, cfg: TcpConfig) -> Connection {
        let mut c = Connection::new(now, opening, cfg);
        c.set_state(State::SynSent);
        c.arm_user_timeout(now);
        c
    }

    /// Passive open: a listener got `syn`; the connection answers it in SYN-RECEIVED
    /// (RFC 9293 section 3.10.7.2).
    pub(crate) fn accept(
        now: Instant,
        opening: Opening,
        syn: &Segment<'_>,
        cfg: TcpConfig,
    ) -> Connection {
        let mut c = Connection::new(now, opening, cfg);
        c.take_syn_options(syn);
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.rcv_adv = c.rcv_nxt;
        c.snd_wnd = usize::from(syn.window);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq;
        c.set_state(State::SynReceived);
        c.arm_user_timeout(now);
        c
    }

    /// Passive open from a SYN cookie (RFC 4987 section 3.6): the listener answered
    /// `syn` (rebuilt from the cookie) without keeping state, so the connection stands in
    /// SYN-RECEIVED as if its SYN-ACK, with the window a SYN carries, had been sent; the
    /// handshake's ACK completes it.
    pub(crate) fn accept_cookie(
        now: Instant,
        opening: Opening,
        syn: &Segment<'_>,
        cfg: TcpConfig,
    ) -> Connection {
        let mut c = Connection::accept(now, opening, syn, cfg);
        c.snd_nxt = c.iss + 1;
        c.snd_max = c.snd_nxt;
        c.rcv_adv = c.rcv_nxt + c.rcv_space.limit().min(usize::from(u16::MAX));
        c
    }

    // ---- accessors ----

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// The error that ended the connection, if it failed.
    pub fn error(&self) -> Option<ConnectionError> {
        self.error
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Smoothed RTT, current RTO, congestion window: for progress displays.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    pub fn cwnd(&self) -> usize {
        self.cc.cwnd()
    }

    /// The congestion control this connection runs.
    pub fn congestion(&self) -> crate::tcp::Algorithm {
        self.cfg.congestion
    }

    /// Turns Nagle's algorithm off (`true`) or on (RFC 9293 section 3.7.4).
    pub(crate) fn set_nodelay(&mut self, nodelay: bool) {
        self.cfg.nodelay = nodelay;
    }

    /// One line of the variables that matter when debugging a transfer.
    pub fn summary(&self) -> String {
        format!(
            "{:?} una={} nxt={} max={} wnd={} cwnd={}+{} rto={:?} retries={} rec={:?} | rcv_nxt={} adv={} ooo={} rq={} sq={}",
            self.state,
            self.snd_una - self.iss,
            self.snd_nxt - self.iss,
            self.snd_max - self.iss,
            self.snd_wnd,
            self.cc.cwnd(),
            self.recovery.inflation(),
            self.rtt.rto(),
            self.retries,
            self.recovery.recover().map(|r| r - self.iss),
            self.rcv_nxt - self.irs,
            self.rcv_adv - self.rcv_nxt,
            self.ooo.blocks(),
            self.recv_buf.len(),
            self.send_buf.len(),
        )
    }

    /// Payload bytes per segment we send.
    #[cfg(test)]
    pub(crate) fn effective_mss(&self) -> usize {
        self.snd_mss
    }

    #[cfg(test)]
    pub(crate) fn ssthresh(&self) -> usize {
        self.cc.ssthresh()
    }

    #[cfg(test)]
    pub(crate) fn send_window(&self) -> usize {
        self.snd_wnd
    }

    /// Bytes the application may still queue.
    pub fn send_capacity(&self) -> usize {
        self.snd_buf_limit.saturating_sub(self.send_buf.len())
    }

    /// The receive buffer's size now (the most we advertise), grown by autotuning from
    /// [`TcpConfig::recv_buffer`] up to [`TcpConfig::recv_buffer_max`]. A limit, not
    /// memory: see [`Connection::buffer_capacity`].
    pub fn recv_buffer_size(&self) -> usize {
        self.rcv_space.limit()
    }

    /// The send buffer's size now, grown with the congestion window from
    /// [`TcpConfig::send_buffer`] up to [`TcpConfig::send_buffer_max`].
    pub fn send_buffer_size(&self) -> usize {
        self.snd_buf_limit
    }

    /// Bytes queued and not yet acknowledged.
    #[cfg(test)]
    pub(crate) fn send_queue(&self) -> usize {
        self.send_buf.len()
    }

    /// Bytes of memory the connection's buffers hold (send, receive, reassembly and the
    /// outgoing payload), used or not.
    pub fn buffer_capacity(&self) -> usize {
        self.send_buf.capacity()
            + self.recv_buf.capacity()
            + self.ooo.capacity()
            + self.tx_payload.capacity()
    }

    /// Bytes ready for [`Connection::recv`].
    pub fn recv_queue(&self) -> usize {
        self.recv_buf.len()
    }

    /// Whether `recv` would return something now (data, end of stream or an error).
    pub fn can_recv(&self) -> bool {
        !self.recv_buf.is_empty() || self.fin_received || self.error.is_some()
    }

    /// The one place the state changes; logs the transition (see the module doc).
    fn set_state(&mut self, state: State) {
        if self.state != state {
            log::debug!(
                "tcp {} -> {}: {:?} -> {:?}",
                self.local,
                self.remote,
                self.state,
                state
            );
            self.state = state;
        }
    }

    fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    fn fail(&mut self, error: ConnectionError) {
        self.error = Some(error);
        self.timers.stop_all();
        self.send_buf.clear();
        self.ooo.clear();
        self.rack.clear();
        self.set_state(State::Closed);
    }

    // ---- application side ----

    /// Queues bytes for sending; returns how many fit in the send buffer.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        if self.fin_queued {
            return Err(SendError::Closed);
        }
        if !matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        ) {
            return Err(SendError::NotConnected);
        }
        let n = data.len().min(self.send_capacity());
        self.send_buf.extend(&data[..n]);
        Ok(n)
    }

    /// Takes received bytes in order. `Ok(0)` means nothing has arrived yet;
    /// `Err(RecvError::Finished)` is the end of the stream (the peer sent FIN and
    /// everything before it was read). The buffer keeps its memory: the driver calls
    /// [`Connection::reclaim_later`] once it is drained.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if !self.readable()? {
            return Ok(0);
        }
        // Slice copies from the ring's two halves (a byte-wise drain was a third of the
        // runtime thread's time under iperf3); reading a VecDeque cannot fail.
        let n = std::io::Read::read(&mut self.recv_buf, buf).unwrap_or(0);
        self.consumed();
        Ok(n)
    }

    /// Takes up to `max` received bytes in order and drops them, without copying: what
    /// a discard service (RFC 863) does with its input. Same results as [`Connection::recv`].
    pub fn discard(&mut self, max: usize) -> Result<usize, RecvError> {
        if !self.readable()? {
            return Ok(0);
        }
        let n = max.min(self.recv_buf.len());
        self.recv_buf.drain(..n);
        self.consumed();
        Ok(n)
    }

    /// A buffer was drained at `now` (for the receive buffer, the driver's latest time:
    /// the application's read carries none): if it holds more than [`RETAINED_BUFFER`],
    /// the memory of every empty buffer goes back once they stay empty for
    /// [`RECLAIM_DELAY`] (see [`Connection::reclaim`]). A buffer emptied and refilled
    /// within that time keeps its memory: giving it back on every drain cost a third of
    /// the runtime in page faults and regrowth under a bulk transfer, and made the
    /// receive path allocate about once every ten segments.
    pub fn reclaim_later(&mut self, now: Instant) {
        let big = |b: &VecDeque<u8>| b.is_empty() && b.capacity() > RETAINED_BUFFER;
        if big(&self.send_buf) || big(&self.recv_buf) {
            self.timers.set(Timer::Reclaim, now + RECLAIM_DELAY);
        }
    }

    /// Linux `sk_mem_reclaim` (from its delayed-ACK and write timers): the memory of
    /// every empty buffer and per-segment list goes back, so an idle connection holds its
    /// state and nothing else. What is in use stays.
    fn reclaim(&mut self) {
        release_if_empty(&mut self.send_buf);
        release_if_empty(&mut self.recv_buf);
        if self.ooo.is_empty() {
            self.ooo.release();
        }
        if self.tx_payload.is_empty() {
            self.tx_payload = Vec::new();
        }
        self.scoreboard.release_if_empty();
        self.rack.release_if_empty();
        if let Some(rate) = &mut self.rate {
            rate.release_if_empty();
        }
    }

    /// Whether there are bytes to read; the end of the stream or the connection's error
    /// once everything was read.
    fn readable(&self) -> Result<bool, RecvError> {
        if !self.recv_buf.is_empty() {
            return Ok(true);
        }
        if let Some(e) = self.error {
            return Err(e.into());
        }
        if self.fin_received {
            return Err(RecvError::Finished);
        }
        Ok(false)
    }

    /// After the application took bytes: a window update if due.
    fn consumed(&mut self) {
        if self.state == State::TimeWait && self.recv_buf.is_empty() {
            self.recv_buf = VecDeque::new();
        }
        // Window update once the window we would advertise exceeds the one the peer knows
        // by the threshold, however many reads freed it (RFC 1122 section 4.2.3.3, RFC
        // 9293 section 3.8.6.2.2, receiver side silly-window avoidance), and is at least
        // twice what the peer has left (Linux `tcp_cleanup_rbuf`: `new_window >= 2 *
        // rcv_window_now`). A peer with half its window left is still sending, and the
        // ACKs of that data carry the new window; an update on top costs a segment (and
        // the sender's processing of it) per read in a bulk transfer.
        let threshold = self.receive_sws_threshold(2);
        let (free, known) = (self.window_to_advertise(), self.advertised());
        if self.state.is_synchronized() && free >= known + threshold && free >= 2 * known {
            self.pending.ack = AckPending::Now;
            self.stats.window_updates += 1;
        }
    }

    /// Whether the ACK the last segment asked for must go out before the next segment of
    /// the same batch is processed. A driver that reads many segments per wake-up
    /// acknowledges in-order data once at the batch's end, as Linux does with GRO (one
    /// ACK per coalesced segment: `tcp_ack_snd_check` sees more than one full-sized
    /// segment) and with a socket backlog (`__tcp_ack_snd_check` defers the ACK to
    /// `tcp_release_cb` while the socket is owned), but not beyond `MAX_ACK_BATCH`
    /// (256 KiB). RFC 5681
    /// section 4.2: out-of-order data, a segment filling a hole and a duplicate are
    /// acknowledged at once, so each still yields its own duplicate ACK or SACK.
    pub fn ack_due(&self) -> bool {
        self.pending.ack == AckPending::Now
            && (self.ack_before_next || self.rcv_nxt - self.last_ack_sent >= MAX_ACK_BATCH)
    }

    /// Whether the peer has closed its side and everything was read.
    pub fn at_eof(&self) -> bool {
        self.fin_received && self.recv_buf.is_empty()
    }

    /// Closes the sending side: a FIN follows the queued data (RFC 9293 section 3.10.4).
    pub fn shutdown_write(&mut self) {
        match self.state {
            State::SynSent | State::Listen | State::Closed => {
                self.set_state(State::Closed);
            }
            // RFC 9293 section 3.10.4: in SYN-RECEIVED the FIN waits for ESTABLISHED (the
            // handshake's ACK then moves to FIN-WAIT-1); the SYN-ACK goes out first.
            State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => {}
        }
    }

    /// The application closed the connection and let go of it (an orphan, in Linux's
    /// words): what it would have read is freed, data arriving from now on resets the
    /// connection (RFC 1122 section 4.2.2.13), FIN-WAIT-2 times out and zero-window
    /// probes are capped. Idempotent.
    pub(crate) fn orphan(&mut self, now: Instant) {
        if self.orphaned {
            return;
        }
        self.orphaned = true;
        self.ooo.release();
        if self.recv_buf.is_empty() {
            self.recv_buf = VecDeque::new();
        }
        self.arm_fin_wait2_timeout(now);
    }

    /// Linux `tcp_time_wait`: the compact [`TimeWait`] that answers for this connection
    /// from now on, if it is in TIME-WAIT with nothing left to send or read; `None`
    /// otherwise (it then stays a connection).
    pub(crate) fn time_wait(&mut self) -> Option<TimeWait> {
        let deadline = self.timers.get(Timer::TimeWait)?;
        let rcv_wnd = self.advertised().max(self.window_to_advertise());
        let quiet = self.state == State::TimeWait
            && self.error.is_none()
            && self.pending == PendingOutput::default()
            && self.snd_una == self.snd_max
            && self.snd_nxt == self.snd_max
            && self.recv_buf.is_empty()
            && self.ooo.is_empty();
        if !quiet || rcv_wnd == 0 {
            return None;
        }
        Some(TimeWait {
            local: self.local,
            remote: self.remote,
            snd_nxt: self.snd_nxt,
            rcv_nxt: self.rcv_nxt,
            window: self.window_field(),
            rcv_wnd: rcv_wnd.min(u32::MAX as usize) as u32,
            snd_wl1: self.snd_wl1,
            snd_wl2: self.snd_wl2,
            max_snd_wnd: self.max_snd_wnd.min(u32::MAX as usize) as u32,
            snd_shift: self.snd_shift,
            ts_enabled: self.ts_enabled,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            last_ack_sent: self.last_ack_sent,
            challenge_window: self.challenge_window,
            challenge_ack_limit: self.cfg.challenge_ack_limit,
            deadline,
            length: self.cfg.time_wait,
        })
    }

    /// Gives up an orphan: a RST (as Linux sends), then CLOSED with `error`.
    fn abort_orphan(&mut self, error: ConnectionError) {
        self.abort();
        self.error = Some(error);
    }

    /// Abort (RFC 9293 section 3.10.5): send a RST and forget the connection.
    pub fn abort(&mut self) {
        if self.state.is_synchronized() || self.state == State::SynReceived {
            self.pending.abort_reset = true;
        } else {
            self.set_state(State::Closed);
        }
        self.error = Some(ConnectionError::Aborted);
        self.send_buf.clear();
    }
}

/// Gives back the memory of an empty buffer.
fn release_if_empty(buf: &mut VecDeque<u8>) {
    if buf.is_empty() {
        *buf = VecDeque::new();
    }
}

/// The shift that makes `buffer` fit a 16-bit window field (RFC 7323 section 2.2).
fn window_shift(buffer: usize) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SCALE && (buffer >> shift) > usize::from(u16::MAX) {
        shift += 1;
    }
    shift
}
