//! Counters of a TCP connection; the stack sums them with its own.

crate::net::link::counters! {
    /// Per-connection counters.
    #[derive(Copy)]
    pub struct ConnStats {
        pub segs_in: u64,
        pub segs_out: u64,
        /// Payload bytes delivered in order to the receive buffer.
        pub bytes_in: u64,
        /// Payload bytes sent, retransmissions included.
        pub bytes_out: u64,
        /// Payload bytes the peer acknowledged.
        pub bytes_acked: u64,
        /// Segments sent again (timeouts, fast retransmits, partial ACKs).
        pub retransmits: u64,
        pub fast_retransmits: u64,
        /// Segments RACK marked lost (RFC 8985 section 6.2).
        pub rack_lost: u64,
        /// Tail loss probes sent (RFC 8985 section 7.3).
        pub tlp_probes: u64,
        /// Probes that repaired a loss: the window was reduced (RFC 8985 section 7.4).
        pub tlp_recoveries: u64,
        /// Retransmission timer expiries.
        pub timeouts: u64,
        pub dup_acks_in: u64,
        /// Segments that arrived beyond a hole.
        pub out_of_order: u64,
        /// Segments wholly duplicate or outside the window, dropped and re-ACKed.
        pub dup_segments: u64,
        /// Out-of-order segments dropped because the reassembly buffer had no room.
        pub ooo_dropped: u64,
        pub rsts_in: u64,
        pub rsts_out: u64,
        pub challenge_acks: u64,
        pub challenge_acks_suppressed: u64,
        /// ACKs to invalid segments without data (PAWS failures, out of window, ACKs of
        /// unsent data) left unsent by the RFC 5961 section 7 limit.
        pub invalid_acks_suppressed: u64,
        pub paws_drops: u64,
        /// Segments with both SYN and FIN, dropped in SYN-SENT (as Linux does).
        pub syn_fin_drops: u64,
        pub window_updates: u64,
        /// Times receive-buffer autotuning grew the buffer (Linux `tcp_rcv_space_adjust`).
        pub recv_buffer_grown: u64,
        pub zero_window_probes: u64,
        /// Connections reset because data arrived after the application closed them
        /// (RFC 1122 section 4.2.2.13; Linux TCPAbortOnData).
        pub aborts_on_data: u64,
        /// Connections given up after the application closed them: FIN-WAIT-2 timeout,
        /// or the peer's window stayed shut through `orphan_retries` probes.
        pub orphans_timed_out: u64,
        /// RFC 1122 section 4.2.3.4 override timeouts that let held-back data go out.
        pub sws_overrides: u64,
        pub keepalive_probes: u64,
        /// ICMP errors about data in flight (RFC 5461 soft errors, or hard ones in SYN-SENT).
        pub icmp_errors: u64,
        /// ICMP errors quoting a sequence number not in flight (RFC 5927), ignored.
        pub icmp_errors_ignored: u64,
        /// Times the path MTU shrank under the segments we send (RFC 1191), lowering the
        /// send MSS.
        pub path_mtu_reductions: u64,
        /// Times data waited for its pacing time (BBR, or `TcpConfig::pacing`).
        pub pacing_waits: u64,
    }
}
