//! Counters of a TCP connection; the stack sums them with its own.

/// Per-connection counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    pub paws_drops: u64,
    pub window_updates: u64,
    pub zero_window_probes: u64,
    pub keepalive_probes: u64,
    /// ICMP errors about data in flight (RFC 5461 soft errors, or hard ones in SYN-SENT).
    pub icmp_errors: u64,
    /// ICMP errors quoting a sequence number not in flight (RFC 5927), ignored.
    pub icmp_errors_ignored: u64,
}

impl ConnStats {
    /// `(name, value)` pairs in a fixed order.
    pub fn counters(&self) -> [(&'static str, u64); 22] {
        [
            ("segs_in", self.segs_in),
            ("segs_out", self.segs_out),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("bytes_acked", self.bytes_acked),
            ("retransmits", self.retransmits),
            ("fast_retransmits", self.fast_retransmits),
            ("timeouts", self.timeouts),
            ("dup_acks_in", self.dup_acks_in),
            ("out_of_order", self.out_of_order),
            ("dup_segments", self.dup_segments),
            ("ooo_dropped", self.ooo_dropped),
            ("rsts_in", self.rsts_in),
            ("rsts_out", self.rsts_out),
            ("challenge_acks", self.challenge_acks),
            ("challenge_acks_suppressed", self.challenge_acks_suppressed),
            ("paws_drops", self.paws_drops),
            ("window_updates", self.window_updates),
            ("zero_window_probes", self.zero_window_probes),
            ("keepalive_probes", self.keepalive_probes),
            ("icmp_errors", self.icmp_errors),
            ("icmp_errors_ignored", self.icmp_errors_ignored),
        ]
    }

    /// Adds another connection's counters (for stack totals).
    pub fn add(&mut self, other: &ConnStats) {
        let mut mine = self.counters().map(|(_, v)| v);
        for (m, (_, o)) in mine.iter_mut().zip(other.counters()) {
            *m += o;
        }
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v] = mine;
        *self = ConnStats {
            segs_in: a,
            segs_out: b,
            bytes_in: c,
            bytes_out: d,
            bytes_acked: e,
            retransmits: f,
            fast_retransmits: g,
            timeouts: h,
            dup_acks_in: i,
            out_of_order: j,
            dup_segments: k,
            ooo_dropped: l,
            rsts_in: m,
            rsts_out: n,
            challenge_acks: o,
            challenge_acks_suppressed: p,
            paws_drops: q,
            window_updates: r,
            zero_window_probes: s,
            keepalive_probes: t,
            icmp_errors: u,
            icmp_errors_ignored: v,
        };
    }
}
