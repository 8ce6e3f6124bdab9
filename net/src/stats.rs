//! Counters of the network layer: every packet in is either delivered, answered, held for
//! reassembly, or dropped for exactly one counted reason.

use core::fmt;

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxDrop {
    /// Shorter than its IPv4 header or its total length says.
    Truncated,
    /// Version field is not 4.
    BadVersion,
    /// IHL below 5 (RFC 791 section 3.1).
    BadHeaderLen,
    /// Total length smaller than the header.
    BadTotalLen,
    /// Header checksum mismatch.
    BadChecksum,
    /// TTL of zero (RFC 791 section 3.2: "the datagram must be destroyed").
    TtlZero,
    /// Source address is broadcast, multicast or unspecified (RFC 1122 section 3.2.1.3).
    BadSource,
    /// Destination is not one of our addresses (hosts do not forward).
    NotForUs,
    /// No handler for the IP protocol number; answered with ICMP protocol unreachable.
    UnknownProtocol,
    /// A fragment that cannot be part of a valid datagram (misaligned, beyond 65535
    /// bytes, or conflicting with the end another fragment set).
    BadFragment,
    /// Reassembly memory caps reached (per source or overall).
    FragmentMemory,
    /// Reassembly not completed within the timeout; counted once per datagram.
    FragmentTimeout,
    /// ICMP message too short or of a malformed shape.
    IcmpMalformed,
    /// ICMP checksum mismatch.
    IcmpBadChecksum,
    /// ICMP event queue full (the application is not reading them).
    IcmpQueueFull,
    /// Echo request to a broadcast address (ignored, as Linux does by default).
    IcmpBroadcastEcho,
    /// The link delivered a packet larger than the receive buffer.
    Oversized,
}

impl RxDrop {
    pub const ALL: [RxDrop; 17] = [
        RxDrop::Truncated,
        RxDrop::BadVersion,
        RxDrop::BadHeaderLen,
        RxDrop::BadTotalLen,
        RxDrop::BadChecksum,
        RxDrop::TtlZero,
        RxDrop::BadSource,
        RxDrop::NotForUs,
        RxDrop::UnknownProtocol,
        RxDrop::BadFragment,
        RxDrop::FragmentMemory,
        RxDrop::FragmentTimeout,
        RxDrop::IcmpMalformed,
        RxDrop::IcmpBadChecksum,
        RxDrop::IcmpQueueFull,
        RxDrop::IcmpBroadcastEcho,
        RxDrop::Oversized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RxDrop::Truncated => "truncated",
            RxDrop::BadVersion => "bad_version",
            RxDrop::BadHeaderLen => "bad_header_len",
            RxDrop::BadTotalLen => "bad_total_len",
            RxDrop::BadChecksum => "bad_checksum",
            RxDrop::TtlZero => "ttl_zero",
            RxDrop::BadSource => "bad_source",
            RxDrop::NotForUs => "not_for_us",
            RxDrop::UnknownProtocol => "unknown_protocol",
            RxDrop::BadFragment => "bad_fragment",
            RxDrop::FragmentMemory => "fragment_memory",
            RxDrop::FragmentTimeout => "fragment_timeout",
            RxDrop::IcmpMalformed => "icmp_malformed",
            RxDrop::IcmpBadChecksum => "icmp_bad_checksum",
            RxDrop::IcmpQueueFull => "icmp_queue_full",
            RxDrop::IcmpBroadcastEcho => "icmp_broadcast_echo",
            RxDrop::Oversized => "oversized",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RxDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Datagrams handed to the transport layer.
    pub rx_delivered: u64,
    pub rx_fragments: u64,
    /// Datagrams rebuilt from fragments.
    pub reassembled: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Datagrams that were split into fragments on send.
    pub tx_fragmented: u64,
    pub tx_no_route: u64,
    pub tx_too_big: u64,
    pub tx_link_errors: u64,
    pub icmp_echo_requests_in: u64,
    pub icmp_echo_replies_out: u64,
    pub icmp_echo_requests_out: u64,
    pub icmp_echo_replies_in: u64,
    pub icmp_errors_in: u64,
    pub icmp_errors_out: u64,
    /// ICMP errors not sent: suppressed by RFC 1122 section 3.2.2 rules or rate limited.
    pub icmp_errors_suppressed: u64,
    pub icmp_other_in: u64,
    drops: [u64; RxDrop::ALL.len()],
}

impl Stats {
    pub fn dropped(&self, reason: RxDrop) -> u64 {
        self.drops[reason.index()]
    }

    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn drop(&mut self, reason: RxDrop) {
        self.drops[reason.index()] += 1;
    }

    /// `(name, value)` of every counter, in a fixed order, for printing and JSON.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut out = vec![
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("rx_delivered", self.rx_delivered),
            ("rx_fragments", self.rx_fragments),
            ("reassembled", self.reassembled),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("tx_fragmented", self.tx_fragmented),
            ("tx_no_route", self.tx_no_route),
            ("tx_too_big", self.tx_too_big),
            ("tx_link_errors", self.tx_link_errors),
            ("icmp_echo_requests_in", self.icmp_echo_requests_in),
            ("icmp_echo_replies_out", self.icmp_echo_replies_out),
            ("icmp_echo_requests_out", self.icmp_echo_requests_out),
            ("icmp_echo_replies_in", self.icmp_echo_replies_in),
            ("icmp_errors_in", self.icmp_errors_in),
            ("icmp_errors_out", self.icmp_errors_out),
            ("icmp_errors_suppressed", self.icmp_errors_suppressed),
            ("icmp_other_in", self.icmp_other_in),
        ];
        for reason in RxDrop::ALL {
            out.push((reason.as_str(), self.dropped(reason)));
        }
        out
    }
}

impl fmt::Display for Stats {
    /// Non-zero counters, one `name value` per line; drop reasons prefixed `drop.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let drops: Vec<&str> = RxDrop::ALL.iter().map(|r| r.as_str()).collect();
        for (name, value) in self.counters() {
            if value != 0 {
                let prefix = if drops.contains(&name) { "drop." } else { "" };
                writeln!(f, "{prefix}{name} {value}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_name() {
        let mut stats = Stats::default();
        for (i, reason) in RxDrop::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            for _ in 0..=i {
                stats.drop(*reason);
            }
        }
        for (i, reason) in RxDrop::ALL.iter().enumerate() {
            assert_eq!(stats.dropped(*reason), i as u64 + 1);
        }
        let names: std::collections::HashSet<_> = RxDrop::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), RxDrop::ALL.len());
        assert!(stats.to_string().contains("drop.bad_checksum 5\n"));
    }
}
