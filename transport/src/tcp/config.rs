//! Settings of TCP connections, with the defaults a Linux host would use where the RFCs
//! leave a choice.

use super::congestion::Algorithm;
use super::wire;
use crate::net::ipv4;
use crate::net::link::Duration;

/// The MSS that fills an IPv4 datagram of `mtu` bytes: the MTU less the 20-byte IPv4 and
/// 20-byte TCP headers (RFC 879, RFC 9293 section 3.7.1; RFC 6691: options are not
/// counted here).
pub fn mss_for_mtu(mtu: usize) -> usize {
    mtu.saturating_sub(ipv4::MIN_HEADER_LEN + wire::MIN_HEADER_LEN)
}

/// Per-connection TCP settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    /// Largest MSS we announce. The stack lowers it to the interface MTU less 40 bytes of
    /// IPv4 and TCP headers ([`mss_for_mtu`]) for each new connection.
    pub mss: u16,
    /// Initial receive buffer: the most we advertise as window until autotuning grows it
    /// (Linux `tcp_rmem[1]`).
    pub recv_buffer: usize,
    /// Largest receive buffer autotuning may grow to, from the rate data arrives at per
    /// round trip (Linux `tcp_rmem[2]`, `tcp_rcv_space_adjust`); the window scale of our
    /// SYN is chosen for it. At most `recv_buffer` (or below it) keeps the buffer fixed.
    pub recv_buffer_max: usize,
    /// Initial send buffer: the most the application may queue ahead of
    /// acknowledgements (Linux `tcp_wmem[1]`).
    pub send_buffer: usize,
    /// Largest send buffer, grown to twice the congestion window as it opens (Linux
    /// `tcp_wmem[2]`, `tcp_sndbuf_expand`). At most `send_buffer` keeps it fixed.
    pub send_buffer_max: usize,
    /// Offer RFC 7323 window scaling, timestamps, and RFC 2018 SACK.
    pub window_scaling: bool,
    pub timestamps: bool,
    pub sack: bool,
    /// RFC 8985 RACK: with SACK, time-based loss detection replaces the three-duplicate-
    /// ACK trigger (Linux `tcp_recovery` bit 1), and a lost retransmission is found from
    /// the SACKs of segments sent after it instead of by the RTO. On by default, as Linux.
    pub rack: bool,
    /// RFC 8985 section 7 tail loss probe, with RACK and SACK (Linux `tcp_early_retrans`).
    /// On by default, as Linux.
    pub tlp: bool,
    /// RFC 6298: initial, minimum and maximum retransmission timeout.
    pub initial_rto: Duration,
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// RFC 9293 section 3.8.3 R2 for SYN segments and for data: retransmissions before
    /// the connection is given up.
    pub syn_retries: u32,
    pub data_retries: u32,
    /// RFC 5482 user timeout: data unacknowledged this long aborts the connection.
    pub user_timeout: Duration,
    /// TIME-WAIT length, 2*MSL.
    pub time_wait: Duration,
    /// How long a connection the application closed waits in FIN-WAIT-2 for the peer's
    /// FIN (Linux `tcp_fin_timeout`).
    pub fin_wait2_timeout: Duration,
    /// Zero-window probes a connection the application closed sends without the window
    /// opening before it gives up (Linux `tcp_orphan_retries`, 0 there meaning 8).
    pub orphan_retries: u32,
    /// RFC 9293 section 3.8.6.3: delay of a delayed ACK (at most 500 ms; we cap at 200).
    pub delayed_ack: Duration,
    /// Disable Nagle's algorithm (RFC 9293 section 3.7.4).
    pub nodelay: bool,
    /// RFC 9293 section 3.8.4: idle time before keep-alive probes; `None` is off.
    pub keepalive: Option<Duration>,
    pub keepalive_interval: Duration,
    pub keepalive_probes: u32,
    pub congestion: Algorithm,
    /// Pace CUBIC and NewReno at cwnd / SRTT (2x in slow start, 1.2x after), as Linux
    /// does with `fq` or its internal pacing. BBR always paces, at its own rate.
    pub pacing: bool,
    /// Out-of-order blocks kept before further ones are dropped.
    pub max_ooo_blocks: usize,
    /// TSO: the largest payload of one super-segment handed to a link that cuts it into
    /// MSS-sized segments itself (Linux `sk_gso_max_size`); 0, the default, sends one
    /// MSS per segment. The stack sets it from the link's capabilities.
    pub tso_max: usize,
    /// RFC 5961 section 7: challenge ACKs per second per connection.
    pub challenge_ack_limit: u32,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            mss: 1460,
            recv_buffer: 64 * 1024,
            recv_buffer_max: 6 * 1024 * 1024,
            send_buffer: 64 * 1024,
            send_buffer_max: 4 * 1024 * 1024,
            window_scaling: true,
            timestamps: true,
            sack: true,
            // On, as Linux. On `ustack demo tcp` (seed 1, drop-tail; measured before
            // CUBIC had HyStart) it retransmitted 668 times against 582 without (86 more
            // queue drops, no spurious retransmission: the receiver saw 1 duplicate
            // segment either way), because it repairs the lost
            // retransmissions of the first recovery without the two RTOs (8 -> 6) that
            // collapse the window to one segment without RACK; the transfer ends sooner.
            rack: true,
            tlp: true,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            syn_retries: 6,
            data_retries: 15,
            user_timeout: Duration::from_secs(60),
            time_wait: Duration::from_secs(60),
            fin_wait2_timeout: Duration::from_secs(60),
            orphan_retries: 8,
            delayed_ack: Duration::from_millis(40),
            nodelay: false,
            keepalive: None,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            congestion: Algorithm::Cubic,
            pacing: false,
            max_ooo_blocks: 64,
            tso_max: 0,
            challenge_ack_limit: 10,
        }
    }
}
