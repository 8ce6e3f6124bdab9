//! One TCP connection as a sans-IO state machine (RFC 9293), quinn-proto's shape:
//! [`Connection::handle_segment`] takes what arrived, [`Connection::poll_transmit`] gives
//! what to send, [`Connection::poll_timeout`] / [`Connection::on_timeout`] run the timers.
//! Time and the initial sequence number come from the caller.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use super::assembler::Assembler;
use super::config::TcpConfig;
use super::congestion::CongestionControl;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::seq::SeqNumber;
use super::stats::ConnStats;
use super::timer::{Timer, TimerTable};
use super::wire::{Flags, Segment, TcpOptions};
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
    /// States after the handshake in which the peer's sequence numbers are known.
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }
}

/// Why a connection failed, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    #[error("connection refused")]
    Refused,
    #[error("connection reset by peer")]
    Reset,
    #[error("connection timed out")]
    TimedOut,
    #[error("connection aborted")]
    Aborted,
    #[error("the sending side is shut down")]
    SendClosed,
    #[error("not connected")]
    NotConnected,
}

/// When the ACK for received data goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckPending {
    None,
    /// At the delayed-ACK timer, or with the next segment we send.
    Delayed,
    Now,
}

/// Largest shift of RFC 7323 section 2.3.
const MAX_WINDOW_SHIFT: u8 = 14;
/// RFC 9293 section 3.7.1: MSS assumed when the peer announces none.
const DEFAULT_MSS: usize = 536;
/// Bytes of a timestamps option as sent (with two NOPs), reducing the payload per segment.
const TIMESTAMP_OPTION_LEN: usize = 12;
/// Duplicate ACKs that trigger fast retransmit (RFC 5681 section 3.2).
const DUPACK_THRESHOLD: u32 = 3;
/// SACKed ranges the sender remembers.
const MAX_SCOREBOARD_BLOCKS: usize = 32;

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

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Right edge of the window we last advertised.
    rcv_adv: SeqNumber,
    recv_buf: VecDeque<u8>,
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
    cc: Box<dyn CongestionControl>,
    /// Retransmissions of the current oldest unacknowledged data (or SYN).
    retries: u32,
    /// Karn: the segment being timed, `(end seq, sent at)`, cleared on retransmission.
    timed: Option<(SeqNumber, Instant)>,
    dupacks: u32,
    /// RFC 6582 `recover`: in fast recovery until this is acknowledged.
    recovery: Option<SeqNumber>,
    /// Window inflation during fast recovery (RFC 5681 section 3.2 steps 3 and 4).
    inflation: usize,
    /// Resend the segment at snd_una on the next transmit (fast retransmit).
    retransmit_head: bool,
    /// What the peer SACKed above snd_una (RFC 6675 scoreboard).
    scoreboard: Scoreboard,
    /// RFC 6675 HighRxt: the highest sequence number retransmitted in this recovery.
    high_rxt: SeqNumber,
    /// The current recovery is SACK-based (RFC 6675) rather than NewReno.
    sack_recovery: bool,
    send_probe: bool,
    /// Zero-window probes sent since the window last opened: their backoff exponent.
    zero_window_backoff: u32,
    keepalive_probes_sent: u32,
    ack: AckPending,
    /// Full-sized segments received since the last ACK we sent.
    unacked_segments: u32,
    /// Abort: send a RST at snd_nxt, then close.
    send_rst: bool,
    /// A RST answering one bad segment, `(seq, ack)`; the connection lives on.
    pending_rst: Option<(SeqNumber, Option<SeqNumber>)>,
    challenge_window: (Instant, u32),
    error: Option<TcpError>,
    tx_payload: Vec<u8>,
    stats: ConnStats,
}

impl Connection {
    fn new(
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        cfg: TcpConfig,
        ts_offset: u32,
    ) -> Connection {
        let mss = usize::from(cfg.mss);
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        let cc = cfg.congestion.build(mss);
        let rcv_shift = if cfg.window_scaling {
            window_shift(cfg.recv_buffer)
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
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            recv_buf: VecDeque::new(),
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
            retries: 0,
            timed: None,
            dupacks: 0,
            recovery: None,
            inflation: 0,
            retransmit_head: false,
            scoreboard: Scoreboard::new(MAX_SCOREBOARD_BLOCKS),
            high_rxt: iss,
            sack_recovery: false,
            send_probe: false,
            zero_window_backoff: 0,
            keepalive_probes_sent: 0,
            ack: AckPending::None,
            unacked_segments: 0,
            send_rst: false,
            pending_rst: None,
            challenge_window: (now, 0),
            error: None,
            tx_payload: Vec::new(),
            stats: ConnStats::default(),
            cfg,
        }
    }

    /// Active open (RFC 9293 section 3.10.1): a connection in SYN-SENT whose SYN goes out
    /// with the next [`Connection::poll_transmit`].
    pub fn connect(
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        cfg: TcpConfig,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(now, local, remote, iss, cfg, ts_offset);
        c.set_state(State::SynSent);
        c.arm_user_timeout(now);
        c
    }

    /// Passive open: a listener got `syn`; the connection answers it in SYN-RECEIVED
    /// (RFC 9293 section 3.10.7.2).
    pub fn accept(
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &Segment<'_>,
        iss: SeqNumber,
        cfg: TcpConfig,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(now, local, remote, iss, cfg, ts_offset);
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
    pub fn error(&self) -> Option<TcpError> {
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

    /// Turns Nagle's algorithm off (`true`) or on (RFC 9293 section 3.7.4).
    pub fn set_nodelay(&mut self, nodelay: bool) {
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
            self.inflation,
            self.rtt.rto(),
            self.retries,
            self.recovery.map(|r| r - self.iss),
            self.rcv_nxt - self.irs,
            self.rcv_adv - self.rcv_nxt,
            self.ooo.blocks(),
            self.recv_buf.len(),
            self.send_buf.len(),
        )
    }

    pub fn congestion_name(&self) -> &'static str {
        self.cc.name()
    }

    /// Payload bytes per segment we send.
    pub fn effective_mss(&self) -> usize {
        self.snd_mss
    }

    pub fn send_window(&self) -> usize {
        self.snd_wnd
    }

    /// Bytes the application may still queue.
    pub fn send_capacity(&self) -> usize {
        self.cfg.send_buffer.saturating_sub(self.send_buf.len())
    }

    /// Bytes queued and not yet acknowledged.
    pub fn send_queue(&self) -> usize {
        self.send_buf.len()
    }

    /// Bytes ready for [`Connection::recv`].
    pub fn recv_queue(&self) -> usize {
        self.recv_buf.len()
    }

    /// Whether `recv` would return something now (data, end of stream or an error).
    pub fn can_recv(&self) -> bool {
        !self.recv_buf.is_empty() || self.fin_received || self.error.is_some()
    }

    pub fn can_send(&self) -> bool {
        self.error.is_none()
            && !self.fin_queued
            && matches!(self.state, State::Established | State::CloseWait)
            && self.send_capacity() > 0
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
        }
    }

    fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    fn arm_user_timeout(&mut self, now: Instant) {
        self.timers
            .set(Timer::UserTimeout, now + self.cfg.user_timeout);
    }

    fn fail(&mut self, error: TcpError) {
        self.error = Some(error);
        self.timers.stop_all();
        self.send_buf.clear();
        self.ooo.clear();
        self.set_state(State::Closed);
    }

    // ---- application side ----

    /// Queues bytes for sending; returns how many fit in the send buffer.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.fin_queued {
            return Err(TcpError::SendClosed);
        }
        if !matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        ) {
            return Err(TcpError::NotConnected);
        }
        let n = data.len().min(self.send_capacity());
        self.send_buf.extend(&data[..n]);
        Ok(n)
    }

    /// Takes received bytes in order. `Ok(0)` with a non-empty `buf` is the end of the
    /// stream (the peer sent FIN and everything before it was read).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        if self.recv_buf.is_empty() {
            if let Some(e) = self.error {
                return Err(e);
            }
            return Ok(0);
        }
        let before = self.window_to_advertise();
        let n = buf.len().min(self.recv_buf.len());
        for (dst, src) in buf.iter_mut().zip(self.recv_buf.drain(..n)) {
            *dst = src;
        }
        // Window update once reading opened the window enough (RFC 9293 section
        // 3.8.6.2.2, receiver side silly-window avoidance).
        let after = self.window_to_advertise();
        let threshold = (self.cfg.recv_buffer / 2).min(2 * usize::from(self.cfg.mss));
        if self.state.is_synchronized() && after >= before + threshold && after > self.advertised()
        {
            self.ack = AckPending::Now;
            self.stats.window_updates += 1;
        }
        Ok(n)
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

    /// Abort (RFC 9293 section 3.10.5): send a RST and forget the connection.
    pub fn abort(&mut self) {
        if self.state.is_synchronized() || self.state == State::SynReceived {
            self.send_rst = true;
        } else {
            self.set_state(State::Closed);
        }
        self.error = Some(TcpError::Aborted);
        self.send_buf.clear();
    }

    // ---- windows ----

    /// Free receive buffer space, measured from rcv_nxt.
    fn window_to_advertise(&self) -> usize {
        self.cfg.recv_buffer.saturating_sub(self.recv_buf.len())
    }

    /// What the peer believes our window is now.
    fn advertised(&self) -> usize {
        self.rcv_adv - self.rcv_nxt
    }

    /// The window field of the next segment, never moving the right edge left.
    fn window_field(&mut self) -> u16 {
        let free = self.window_to_advertise();
        let current = self.advertised();
        // Receiver SWS avoidance: only move the right edge by a worthwhile amount.
        let threshold = (self.cfg.recv_buffer / 2).min(usize::from(self.cfg.mss));
        let mut window = if free >= current + threshold || free < current {
            free.max(current)
        } else {
            current
        };
        let max = usize::from(u16::MAX) << self.rcv_shift;
        window = window.min(max);
        // Round down to the scale's granularity so the edge we record is the one sent.
        let field = window >> self.rcv_shift;
        let edge = self.rcv_nxt + (field << self.rcv_shift);
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
        field as u16
    }

    /// Bytes sent and not acknowledged.
    fn flight(&self) -> usize {
        self.snd_nxt - self.snd_una
    }

    fn usable_window(&self) -> usize {
        if self.sack_recovery {
            // RFC 6675 section 5: send while pipe < cwnd; the peer's window still
            // bounds new data beyond snd_una.
            let by_cwnd = self.cc.cwnd().saturating_sub(self.pipe());
            return by_cwnd.min(self.snd_wnd.saturating_sub(self.flight()));
        }
        let cwnd = self.cc.cwnd() + self.inflation;
        // Data the peer SACKed is not in the network, even below SND.NXT, so it does not
        // count against cwnd; the peer's window still counts from SND.UNA.
        let in_network = self
            .flight()
            .saturating_sub(self.scoreboard.sacked_below(self.snd_nxt));
        let by_cwnd = cwnd.saturating_sub(in_network);
        by_cwnd.min(self.snd_wnd.saturating_sub(self.flight()))
    }

    /// RFC 6675 section 4 SetPipe, simplified: bytes in flight are those sent and not
    /// acknowledged, less those SACKed, less the holes below the highest SACK that were
    /// not yet retransmitted (presumed lost).
    fn pipe(&self) -> usize {
        let lost = self.scoreboard.hole_bytes(self.high_rxt.max(self.snd_una));
        self.flight()
            .saturating_sub(self.scoreboard.sacked_bytes())
            .saturating_sub(lost)
    }

    /// Enters loss recovery (RFC 5681 section 3.2 / RFC 6675 section 5).
    fn enter_recovery(&mut self, now: Instant) {
        self.recovery = Some(self.snd_max);
        self.cc.on_loss(now, self.flight());
        self.stats.fast_retransmits += 1;
        if self.sack_enabled && !self.scoreboard.is_empty() {
            self.sack_recovery = true;
            self.inflation = 0;
            self.high_rxt = self.snd_una;
        } else {
            self.inflation = DUPACK_THRESHOLD as usize * self.snd_mss;
            self.retransmit_head = true;
        }
    }

    // ---- incoming segments ----

    fn take_syn_options(&mut self, syn: &Segment<'_>) {
        let o = &syn.options;
        let ours = usize::from(self.cfg.mss);
        self.snd_mss = usize::from(o.mss.unwrap_or(DEFAULT_MSS as u16))
            .min(ours)
            .max(64);
        match o.window_scale {
            Some(shift) if self.cfg.window_scaling => {
                self.ws_enabled = true;
                self.snd_shift = shift.min(MAX_WINDOW_SHIFT);
            }
            _ => {
                self.ws_enabled = false;
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        if self.cfg.timestamps {
            if let Some((tsval, _)) = o.timestamps {
                self.ts_enabled = true;
                self.ts_recent = tsval;
            }
        }
        self.sack_enabled = self.cfg.sack && o.sack_permitted;
        if self.ts_enabled {
            self.snd_mss -= TIMESTAMP_OPTION_LEN;
        }
        self.cc.set_mss(self.snd_mss);
    }

    /// RFC 5961 section 7: at most `challenge_ack_limit` challenge ACKs a second.
    fn challenge_ack(&mut self, now: Instant) {
        let (start, _) = self.challenge_window;
        if now - start >= Duration::from_secs(1) {
            self.challenge_window = (now, 0);
        }
        if self.challenge_window.1 < self.cfg.challenge_ack_limit {
            self.challenge_window.1 += 1;
            self.ack = AckPending::Now;
            self.stats.challenge_acks += 1;
        } else {
            self.stats.challenge_acks_suppressed += 1;
        }
    }

    /// A segment for this connection arrived (RFC 9293 section 3.10.7).
    pub fn handle_segment(&mut self, now: Instant, seg: &Segment<'_>) {
        self.stats.segs_in += 1;
        if seg.flags.rst {
            self.stats.rsts_in += 1;
        }
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.on_syn_sent(now, seg),
            _ => self.on_synchronized(now, seg),
        }
        // After the state change, so the segment that completes a handshake arms it.
        self.touch_keepalive(now);
    }

    /// RFC 9293 section 3.10.7.3.
    fn on_syn_sent(&mut self, now: Instant, seg: &Segment<'_>) {
        let f = seg.flags;
        if f.ack && (seg.ack <= self.iss || seg.ack > self.snd_max) {
            if !f.rst {
                self.send_rst_for(seg);
            }
            return;
        }
        if f.rst {
            if f.ack {
                self.fail(TcpError::Refused);
            }
            return;
        }
        if !f.syn {
            return;
        }
        self.take_syn_options(seg);
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        if f.ack {
            self.snd_una = seg.ack;
            // RFC 7323 section 2.2: the window of a SYN-ACK is never scaled.
            self.snd_wnd = usize::from(seg.window);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.sample_rtt(now, seg);
            self.retries = 0;
            self.timers.stop(Timer::Retransmit);
            // RFC 5482: the user timeout runs while data is unacknowledged; nothing is
            // now, and the first send arms it again.
            self.timers.stop(Timer::UserTimeout);
            if self.ts_enabled {
                if let Some((tsval, _)) = seg.options.timestamps {
                    self.ts_recent = tsval;
                }
            }
            self.set_state(State::Established);
            self.ack = AckPending::Now;
        } else {
            // Simultaneous open: answer with SYN-ACK from SYN-RECEIVED.
            self.snd_wnd = usize::from(seg.window);
            self.snd_wl1 = seg.seq;
            self.snd_nxt = self.iss;
            self.set_state(State::SynReceived);
        }
    }

    /// RFC 9293 section 3.10.7.4 sequence number check, against the window the peer
    /// knows or the room we actually have, whichever is larger.
    fn acceptable(&self, seg: &Segment<'_>) -> bool {
        let len = seg.seq_len();
        let wnd = self.advertised().max(self.window_to_advertise());
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => seg.seq.in_window(self.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => {
                seg.seq.in_window(self.rcv_nxt, wnd)
                    || (seg.seq + (len - 1)).in_window(self.rcv_nxt, wnd)
            }
        }
    }

    fn on_synchronized(&mut self, now: Instant, seg: &Segment<'_>) {
        let f = seg.flags;
        // RFC 7323 section 5.3 PAWS.
        if self.ts_enabled && !f.rst {
            if let Some((tsval, _)) = seg.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.stats.paws_drops += 1;
                    self.ack = AckPending::Now;
                    return;
                }
            }
        }
        if f.syn && !f.ack && self.state == State::SynReceived && seg.seq == self.irs {
            // Our SYN-ACK was lost: the peer retransmitted its SYN. It sits below RCV.NXT,
            // so this comes before the window test, which would answer a bare ACK.
            self.snd_nxt = self.iss;
            return;
        }
        if !self.acceptable(seg) {
            if !f.rst {
                // An old duplicate or out of window: re-ACK (RFC 9293 3.10.7.4).
                self.stats.dup_segments += 1;
                self.ack = AckPending::Now;
                if self.state == State::TimeWait && f.fin {
                    // RFC 9293 section 3.10.7.4, TIME-WAIT: a retransmitted FIN (always
                    // below RCV.NXT, hence here) restarts the 2 MSL timeout.
                    self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
                }
            }
            return;
        }
        if f.rst {
            // RFC 5961 section 3.2: only an exact match resets; else challenge.
            if seg.seq == self.rcv_nxt {
                let error = if self.state == State::SynReceived {
                    TcpError::Refused
                } else {
                    TcpError::Reset
                };
                self.fail(error);
            } else {
                self.challenge_ack(now);
            }
            return;
        }
        if f.syn {
            // RFC 5961 section 4.2.
            self.challenge_ack(now);
            return;
        }
        if !f.ack {
            return;
        }
        if self.state == State::SynReceived {
            if seg.ack > self.snd_una && seg.ack <= self.snd_max {
                self.snd_wnd = usize::from(seg.window) << self.snd_shift;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.set_state(if self.fin_queued {
                    State::FinWait1
                } else {
                    State::Established
                });
            } else {
                self.send_rst_for(seg);
                return;
            }
        }
        if !self.process_ack(now, seg) {
            return;
        }
        // RFC 7323 section 4.3: remember the timestamp to echo.
        if let Some((tsval, _)) = seg.options.timestamps {
            if self.ts_enabled && seg.seq <= self.last_ack_sent {
                self.ts_recent = tsval;
            }
        }
        if matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            self.process_data(now, seg);
        } else if self.state == State::TimeWait && f.fin {
            // A retransmitted FIN: ACK it and restart 2*MSL.
            self.ack = AckPending::Now;
            self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
        } else if seg.seq_len() > 0 {
            self.ack = AckPending::Now;
        }
    }

    fn sample_rtt(&mut self, now: Instant, seg: &Segment<'_>) {
        if self.ts_enabled {
            if let Some((_, tsecr)) = seg.options.timestamps {
                if tsecr != 0 {
                    let ms = self.ts_now(now).wrapping_sub(tsecr);
                    if ms < 60_000 {
                        self.rtt.sample(Duration::from_millis(u64::from(ms.max(1))));
                        self.timed = None;
                        return;
                    }
                }
            }
        }
        if let Some((end, sent_at)) = self.timed {
            if seg.ack >= end {
                self.rtt.sample(now - sent_at);
                self.timed = None;
            }
        }
    }

    /// ACK field processing; false if the segment is to be dropped.
    fn process_ack(&mut self, now: Instant, seg: &Segment<'_>) -> bool {
        let ack = seg.ack;
        if ack > self.snd_max {
            // Acknowledges something never sent (RFC 9293: send ACK, drop).
            self.ack = AckPending::Now;
            return false;
        }
        // RFC 5961 section 5.2: too old an ACK is suspicious.
        if ack < self.snd_una - self.max_snd_wnd.min(1 << 30) {
            self.challenge_ack(now);
            return false;
        }
        if ack > self.snd_una {
            let acked = ack - self.snd_una;
            // The SYN takes the first sequence number (RFC 9293 section 3.4) but no byte
            // of the send buffer, which may already hold data queued in SYN-RECEIVED.
            let syn_acked = usize::from(self.snd_una == self.iss);
            let data_acked = (acked - syn_acked).min(self.send_buf.len());
            self.send_buf.drain(..data_acked);
            self.snd_una = ack;
            self.scoreboard.prune(ack);
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            self.stats.bytes_acked += data_acked as u64;
            self.sample_rtt(now, seg);
            self.rtt.reset_backoff();
            self.retries = 0;
            self.keepalive_probes_sent = 0;
            match self.recovery {
                Some(recover) if ack >= recover => {
                    // RFC 6582 section 3.2 step 3: full acknowledgement ends recovery.
                    self.recovery = None;
                    self.inflation = 0;
                    self.sack_recovery = false;
                }
                Some(_) if self.sack_recovery => {
                    // RFC 6675: the scoreboard drives retransmission; nothing to inflate.
                }
                Some(_) => {
                    // Partial acknowledgement: retransmit the next hole, deflate.
                    self.retransmit_head = true;
                    self.inflation = self.inflation.saturating_sub(acked) + self.snd_mss;
                }
                None => self.cc.on_ack(now, acked, self.rtt.srtt()),
            }
            self.dupacks = 0;
            if self.snd_una == self.snd_max {
                self.timers.stop(Timer::Retransmit);
                self.timers.stop(Timer::UserTimeout);
            } else {
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                self.arm_user_timeout(now);
            }
        } else if ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.fin
            && self.snd_max > self.snd_una
            && usize::from(seg.window) << self.snd_shift == self.snd_wnd
        {
            // RFC 5681 section 2 duplicate ACK.
            self.stats.dup_acks_in += 1;
            self.dupacks += 1;
            if self.dupacks == DUPACK_THRESHOLD && self.recovery.is_none() {
                self.enter_recovery(now);
            } else if self.dupacks > DUPACK_THRESHOLD
                && self.recovery.is_some()
                && !self.sack_recovery
            {
                self.inflation += self.snd_mss;
            }
        }
        if self.sack_enabled && ack >= self.snd_una {
            self.scoreboard
                .update(self.snd_una, self.snd_max, &seg.options.sack_blocks);
            // RFC 6675 section 5 IsLost(SND.UNA): more than (DupThresh - 1) * SMSS bytes
            // SACKed above it also starts recovery, without waiting for three duplicates.
            let threshold = (DUPACK_THRESHOLD as usize - 1) * self.snd_mss;
            if self.recovery.is_none() && self.scoreboard.sacked_bytes() > threshold {
                self.enter_recovery(now);
            }
        }
        // Window update (RFC 9293 3.10.7.4, SND.WL1/SND.WL2 rule).
        if self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack) {
            self.snd_wnd = usize::from(seg.window) << self.snd_shift;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.timers.stop(Timer::ZeroWindowProbe);
                self.zero_window_backoff = 0;
            }
        }
        // Our FIN acknowledged?
        let fin_acked = self.fin_sent && self.send_buf.is_empty() && self.snd_una == self.snd_max;
        match self.state {
            State::FinWait1 if fin_acked => self.set_state(State::FinWait2),
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => {
                self.timers.stop_all();
                self.set_state(State::Closed);
                return false;
            }
            _ => {}
        }
        true
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.timers.stop_all();
        self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
        self.set_state(State::TimeWait);
    }

    /// Segment text and FIN (RFC 9293 section 3.10.7.4, eighth step).
    fn process_data(&mut self, now: Instant, seg: &Segment<'_>) {
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        // Trim what we already have.
        if seq < self.rcv_nxt {
            let dup = (self.rcv_nxt - seq).min(payload.len());
            payload = &payload[dup..];
            seq += dup;
        }
        // Trim what does not fit the window.
        let room = self.window_to_advertise().max(self.advertised());
        let offset = seq - self.rcv_nxt;
        let mut fin = seg.flags.fin;
        if offset + payload.len() > room {
            payload = &payload[..room.saturating_sub(offset).min(payload.len())];
            fin = false;
        }
        if fin {
            self.fin_seq = Some(seg.seq + seg.payload.len());
        }
        if !payload.is_empty() {
            if seq == self.rcv_nxt {
                self.recv_buf.extend(payload);
                self.rcv_nxt += payload.len();
                self.stats.bytes_in += payload.len() as u64;
                let filled_hole = !self.ooo.is_empty();
                while let Some(data) = self.ooo.pop_ready(self.rcv_nxt) {
                    self.stats.bytes_in += data.len() as u64;
                    self.rcv_nxt += data.len();
                    self.recv_buf.extend(data);
                }
                if filled_hole {
                    self.ack = AckPending::Now;
                } else {
                    if payload.len() >= self.snd_mss.min(usize::from(self.cfg.mss)) {
                        self.unacked_segments += 1;
                    }
                    if self.unacked_segments >= 2 || self.cfg.delayed_ack.is_zero() {
                        self.ack = AckPending::Now;
                    } else if self.ack == AckPending::None {
                        self.ack = AckPending::Delayed;
                        self.timers.set(
                            Timer::DelayedAck,
                            now + self.cfg.delayed_ack.min(Duration::from_millis(200)),
                        );
                    }
                }
            } else {
                self.stats.out_of_order += 1;
                match self.ooo.insert(seq, payload) {
                    Ok(0) => self.stats.dup_segments += 1,
                    Ok(_) => {}
                    Err(_) => self.stats.ooo_dropped += 1,
                }
                // RFC 5681 section 4.2: out-of-order data is acknowledged at once.
                self.ack = AckPending::Now;
            }
        } else if seg.seq_len() > 0 && !fin {
            self.ack = AckPending::Now;
        }
        if let Some(fin_seq) = self.fin_seq {
            if fin_seq == self.rcv_nxt && !self.fin_received {
                self.rcv_nxt += 1;
                self.fin_received = true;
                self.ack = AckPending::Now;
                match self.state {
                    State::Established => self.set_state(State::CloseWait),
                    State::FinWait1 => self.set_state(State::Closing),
                    State::FinWait2 => self.enter_time_wait(now),
                    _ => {}
                }
            }
        }
    }

    /// An ICMP error quoting one of our segments with sequence number `seq` arrived
    /// (`code`: destination unreachable code, `None` for time exceeded). RFC 5927: only
    /// errors quoting data in flight count, so a blind attacker cannot forge them. RFC
    /// 1122 section 4.2.3.9 and RFC 5461: protocol and port unreachable are hard errors
    /// that abort a connection still in SYN-SENT (ECONNREFUSED, as Linux does); every
    /// other error is soft: counted, and the retransmission timer keeps trying.
    pub fn on_icmp_error(&mut self, seq: SeqNumber, code: Option<u8>) {
        let in_flight = seq >= self.snd_una && seq < self.snd_max.max(self.snd_una + 1);
        if !in_flight {
            self.stats.icmp_errors_ignored += 1;
            return;
        }
        self.stats.icmp_errors += 1;
        const PROTOCOL_UNREACHABLE: u8 = 2;
        const PORT_UNREACHABLE: u8 = 3;
        let hard = matches!(code, Some(PROTOCOL_UNREACHABLE | PORT_UNREACHABLE));
        if hard && self.state == State::SynSent {
            self.fail(TcpError::Refused);
        }
    }

    /// RFC 9293 section 3.10.7.1-style reset for an unacceptable segment.
    fn send_rst_for(&mut self, seg: &Segment<'_>) {
        self.pending_rst = Some(reset_for(seg));
    }

    // ---- outgoing segments ----

    fn options(&self, now: Instant, syn: bool) -> TcpOptions {
        let mut o = TcpOptions::default();
        if syn {
            o.mss = Some(self.cfg.mss);
            let answering = self.state == State::SynReceived;
            if self.cfg.window_scaling && (!answering || self.ws_enabled) {
                o.window_scale = Some(self.rcv_shift);
            }
            o.sack_permitted = self.cfg.sack && (!answering || self.sack_enabled);
            if self.cfg.timestamps && (!answering || self.ts_enabled) {
                o.timestamps = Some((self.ts_now(now), if answering { self.ts_recent } else { 0 }));
            }
        } else {
            if self.ts_enabled {
                o.timestamps = Some((self.ts_now(now), self.ts_recent));
            }
            if self.sack_enabled && !self.ooo.is_empty() {
                o.sack_blocks = self.ooo.sack_blocks();
            }
        }
        o
    }

    /// Bytes the SACK option will take on the next segment (with its two NOPs), given
    /// the 40-byte option space shared with timestamps.
    fn sack_option_len(&self) -> usize {
        if !self.sack_enabled || self.ooo.is_empty() {
            return 0;
        }
        let room = super::wire::MAX_OPTIONS_LEN
            - if self.ts_enabled {
                TIMESTAMP_OPTION_LEN
            } else {
                0
            };
        let fit = (room - 4) / 8;
        4 + 8 * self.ooo.blocks().min(fit).min(super::wire::MAX_SACK_BLOCKS)
    }

    /// Builds a segment; payload is whatever is in `tx_payload`.
    fn segment(&mut self, now: Instant, seq: SeqNumber, mut flags: Flags) -> Segment<'_> {
        let syn = flags.syn;
        let has_ack = self.state != State::SynSent || flags.ack;
        flags.ack = has_ack;
        let window = if syn {
            // RFC 7323 section 2.2: the window in a SYN is never scaled.
            let window = self.cfg.recv_buffer.min(usize::from(u16::MAX));
            if self.state == State::SynReceived {
                self.rcv_adv = self.rcv_nxt + window;
            }
            window as u16
        } else {
            self.window_field()
        };
        let options = self.options(now, syn);
        if has_ack {
            self.ack = AckPending::None;
            self.unacked_segments = 0;
            self.timers.stop(Timer::DelayedAck);
            self.last_ack_sent = self.rcv_nxt;
        }
        self.stats.segs_out += 1;
        Segment {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ack: if has_ack { self.rcv_nxt } else { SeqNumber(0) },
            flags,
            window,
            urgent: 0,
            options,
            payload: &self.tx_payload,
        }
    }

    /// The next segment to send, if any: RSTs, SYNs, data and FIN within the windows,
    /// probes, and pure ACKs. Call until it returns `None` after every event.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment<'_>> {
        self.tx_payload.clear();
        if let Some((seq, ack)) = self.pending_rst.take() {
            self.stats.rsts_out += 1;
            self.stats.segs_out += 1;
            return Some(Segment::reset(
                self.local.port(),
                self.remote.port(),
                seq,
                ack,
            ));
        }
        if self.send_rst {
            self.send_rst = false;
            self.timers.stop_all();
            self.set_state(State::Closed);
            self.stats.rsts_out += 1;
            let seq = self.snd_max;
            let flags = Flags {
                rst: true,
                ack: true,
                ..Flags::default()
            };
            return Some(self.segment(now, seq, flags));
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    let retransmit = self.snd_max != self.iss;
                    self.snd_nxt = self.iss + 1;
                    self.snd_max = self.snd_max.max(self.snd_nxt);
                    if retransmit {
                        self.stats.retransmits += 1;
                        self.timed = None;
                    } else {
                        self.timed = Some((self.snd_nxt, now));
                    }
                    if !self.timers.is_armed(Timer::Retransmit) {
                        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                    }
                    let flags = Flags {
                        syn: true,
                        ack: self.state == State::SynReceived,
                        ..Flags::default()
                    };
                    let iss = self.iss;
                    return Some(self.segment(now, iss, flags));
                }
                if self.state == State::SynSent {
                    return None;
                }
            }
            _ => {}
        }
        if matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        ) {
            if let Some((seq, flags)) = self.next_data(now) {
                return Some(self.segment(now, seq, flags));
            }
        }
        if self.send_probe {
            self.send_probe = false;
            let seq = self.snd_una - 1;
            return Some(self.segment(now, seq, Flags::default()));
        }
        if self.ack == AckPending::Now && self.state != State::SynSent {
            // SND.NXT may have gone back for a retransmission (go-back-N); a pure ACK
            // carries the highest sequence number sent, which the peer's window accepts.
            let seq = self.snd_max;
            return Some(self.segment(now, seq, Flags::default()));
        }
        None
    }

    /// Chooses the next data (or FIN) segment, copies its payload into `tx_payload` and
    /// advances snd_nxt. Sender SWS avoidance and Nagle (RFC 9293 section 3.8.6.2.1).
    fn next_data(&mut self, now: Instant) -> Option<(SeqNumber, Flags)> {
        let data_end = self.snd_una + self.send_buf.len();
        // RFC 6691: the MSS excludes options, so SACK blocks riding on a data segment
        // take their room from the payload (timestamps are already in snd_mss).
        let max_len = self.snd_mss - self.sack_option_len();
        let hole = if self.sack_recovery && self.pipe() < self.cc.cwnd() {
            self.scoreboard.next_hole(self.high_rxt.max(self.snd_una))
        } else {
            None
        };
        let (seq, len) = if let Some((start, hole_len)) = hole {
            // RFC 6675 NextSeg rule 1: the first hole not yet retransmitted.
            let len = max_len
                .min(hole_len)
                .min(self.send_buf.len().saturating_sub(start - self.snd_una));
            self.high_rxt = start + len;
            (start, len)
        } else if self.retransmit_head {
            self.retransmit_head = false;
            (self.snd_una, max_len.min(self.send_buf.len()))
        } else {
            // Going back N after a timeout: skip what the peer SACKed, and stop each
            // segment at the next SACKed block.
            if self.snd_nxt < self.snd_max {
                if let Some(end) = self.scoreboard.sacked_end(self.snd_nxt) {
                    self.snd_nxt = end;
                }
            }
            let offset = self.snd_nxt - self.snd_una;
            let unsent = self.send_buf.len().saturating_sub(offset);
            let mut len = max_len.min(unsent).min(self.usable_window());
            if self.snd_nxt < self.snd_max {
                if let Some(start) = self.scoreboard.next_sacked(self.snd_nxt) {
                    len = len.min(start - self.snd_nxt);
                }
            }
            let fin_next =
                self.fin_queued && self.snd_nxt + len == data_end && self.snd_nxt <= data_end;
            if len == 0 {
                if unsent > 0 && self.snd_wnd == 0 && self.flight() == 0 {
                    // Zero window: probe it (RFC 9293 section 3.8.6.1).
                    if !self.timers.is_armed(Timer::ZeroWindowProbe) {
                        self.timers
                            .set(Timer::ZeroWindowProbe, now + self.rtt.rto());
                    }
                }
                if !(fin_next && unsent == 0) {
                    return None;
                }
            } else if len < max_len && !fin_next {
                let nagle_ok = self.cfg.nodelay || self.flight() == 0;
                let all_of_it = len == unsent;
                let big_enough = self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2;
                if !((nagle_ok && all_of_it) || big_enough) {
                    return None;
                }
            }
            (self.snd_nxt, len)
        };
        let offset = seq - self.snd_una;
        let fin = self.fin_queued && seq + len == data_end;
        if len == 0 && !fin {
            return None;
        }
        let (a, b) = self.send_buf.as_slices();
        let range = offset..offset + len;
        if range.end <= a.len() {
            self.tx_payload.extend_from_slice(&a[range]);
        } else if range.start >= a.len() {
            self.tx_payload
                .extend_from_slice(&b[range.start - a.len()..range.end - a.len()]);
        } else {
            self.tx_payload.extend_from_slice(&a[range.start..]);
            self.tx_payload.extend_from_slice(&b[..range.end - a.len()]);
        }
        let end = seq + len + usize::from(fin);
        if seq < self.snd_max {
            self.stats.retransmits += 1;
            if self.timed.is_some_and(|(t, _)| t > seq) {
                self.timed = None;
            }
        } else if self.timed.is_none() && len > 0 {
            self.timed = Some((end, now));
        }
        if fin {
            self.fin_sent = true;
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        self.stats.bytes_out += len as u64;
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if !self.timers.is_armed(Timer::UserTimeout) {
            self.arm_user_timeout(now);
        }
        Some((
            seq,
            Flags {
                fin,
                psh: len > 0 && seq + len == data_end,
                ..Flags::default()
            },
        ))
    }

    // ---- timers ----

    /// When [`Connection::on_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.expire(now) {
            match timer {
                Timer::Retransmit => self.on_retransmit_timeout(now),
                Timer::DelayedAck => {
                    if self.ack == AckPending::Delayed {
                        self.ack = AckPending::Now;
                    }
                }
                Timer::ZeroWindowProbe => {
                    if self.snd_wnd == 0 && !self.send_buf.is_empty() {
                        self.send_probe = true;
                        self.stats.zero_window_probes += 1;
                        // Backoff per episode, not over the connection's lifetime.
                        self.zero_window_backoff += 1;
                        let backoff = self.zero_window_backoff.min(10);
                        let wait = self
                            .rtt
                            .rto()
                            .saturating_mul(1 << backoff)
                            .min(self.cfg.max_rto);
                        self.timers.set(Timer::ZeroWindowProbe, now + wait);
                    }
                }
                Timer::KeepAlive => {
                    if self.keepalive_probes_sent >= self.cfg.keepalive_probes {
                        self.fail(TcpError::TimedOut);
                    } else {
                        self.keepalive_probes_sent += 1;
                        self.stats.keepalive_probes += 1;
                        self.send_probe = true;
                        self.timers
                            .set(Timer::KeepAlive, now + self.cfg.keepalive_interval);
                    }
                }
                Timer::TimeWait => {
                    self.timers.stop_all();
                    self.set_state(State::Closed);
                }
                Timer::UserTimeout => {
                    let waiting = self.snd_max > self.snd_una
                        || matches!(self.state, State::SynSent | State::SynReceived);
                    if waiting {
                        self.fail(TcpError::TimedOut);
                    }
                }
            }
        }
    }

    /// RFC 6298 section 5.4-5.6 and RFC 5681 section 3.1: retransmit the earliest
    /// unacknowledged segment, back off, collapse the window; give up after the retry
    /// limit (RFC 9293 section 3.8.3).
    fn on_retransmit_timeout(&mut self, now: Instant) {
        let handshake = matches!(self.state, State::SynSent | State::SynReceived);
        if !handshake && self.snd_max == self.snd_una {
            return;
        }
        self.retries += 1;
        let limit = if handshake {
            self.cfg.syn_retries
        } else {
            self.cfg.data_retries
        };
        if self.retries > limit {
            self.fail(TcpError::TimedOut);
            return;
        }
        self.stats.timeouts += 1;
        self.rtt.on_timeout();
        self.timed = None;
        if !handshake {
            self.cc.on_rto(now, self.flight());
        }
        self.recovery = None;
        self.inflation = 0;
        self.dupacks = 0;
        self.retransmit_head = false;
        // RFC 2018 section 8: the receiver may renege on what it SACKed. The first
        // timeout keeps the scoreboard, so going back N skips SACKed data (as Linux
        // does); a second one in a row drops it and resends everything, which also
        // recovers from a receiver that did renege.
        if self.retries > 1 {
            self.scoreboard.clear();
        }
        self.sack_recovery = false;
        // Go back N: resend from the oldest unacknowledged byte (or the SYN).
        self.snd_nxt = if handshake { self.iss } else { self.snd_una };
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// Re-arms keep-alive after traffic (call on every segment received).
    fn touch_keepalive(&mut self, now: Instant) {
        if let Some(idle) = self.cfg.keepalive {
            if self.state == State::Established {
                self.keepalive_probes_sent = 0;
                self.timers.set(Timer::KeepAlive, now + idle);
            }
        }
    }
}

/// The shift that makes `buffer` fit a 16-bit window field (RFC 7323 section 2.2).
fn window_shift(buffer: usize) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (buffer >> shift) > usize::from(u16::MAX) {
        shift += 1;
    }
    shift
}

/// The reset answering a segment that belongs to no connection (RFC 9293 section
/// 3.10.7.1): `(seq, ack)`; never call it for a RST.
pub fn reset_for(seg: &Segment<'_>) -> (SeqNumber, Option<SeqNumber>) {
    if seg.flags.ack {
        (seg.ack, None)
    } else {
        (SeqNumber(0), Some(seg.seq + seg.seq_len()))
    }
}
