//! Counters of the network layer: every packet in is either delivered, answered, held for
//! reassembly, or dropped for exactly one counted reason.

ustack_link::counters! {
    /// Why a received packet was dropped.
    pub enum RxDrop => pub struct RxDrops {
        /// Shorter than its IPv4 header or its total length says.
        Truncated => truncated,
        /// Version field is not 4.
        BadVersion => bad_version,
        /// IHL below 5 (RFC 791 section 3.1).
        BadHeaderLen => bad_header_len,
        /// Total length smaller than the header.
        BadTotalLen => bad_total_len,
        /// Header checksum mismatch.
        BadChecksum => bad_checksum,
        /// Source address is broadcast, multicast or unspecified (RFC 1122 section 3.2.1.3).
        BadSource => bad_source,
        /// Source in 0.0.0.0/8 or 127.0.0.0/8, which never appear on a wire (RFC 1122
        /// section 3.2.1.3 (a) and (g)).
        MartianSource => martian_source,
        /// Destination is not one of our addresses (hosts do not forward).
        NotForUs => not_for_us,
        /// No handler for the IP protocol number; answered with ICMP protocol unreachable.
        UnknownProtocol => unknown_protocol,
        /// A fragment that cannot be part of a valid datagram (misaligned, beyond 65535
        /// bytes, or conflicting with the end another fragment set).
        BadFragment => bad_fragment,
        /// Reassembly memory caps reached (per source or overall).
        FragmentMemory => fragment_memory,
        /// A fragment overlapping data already held with different bytes: the whole
        /// datagram is discarded (RFC 5722 section 4, applied to IPv4 as Linux does).
        FragmentOverlap => fragment_overlap,
        /// Reassembly not completed within the timeout; counted once per datagram.
        FragmentTimeout => fragment_timeout,
        /// ICMP message too short or of a malformed shape.
        IcmpMalformed => icmp_malformed,
        /// ICMP checksum mismatch.
        IcmpBadChecksum => icmp_bad_checksum,
        /// ICMP event queue full (the application is not reading them).
        IcmpQueueFull => icmp_queue_full,
        /// Echo request to a broadcast address (ignored, as Linux does by default).
        IcmpBroadcastEcho => icmp_broadcast_echo,
        /// The link delivered a packet larger than the receive buffer.
        Oversized => oversized,
        /// Ethernet frame shorter than its 14-byte header.
        EthTruncated => eth_truncated,
        /// Ethernet frame to another station's unicast address, or to a group we are not
        /// in (what a NIC in promiscuous mode or a hub lets through).
        EthNotForUs => eth_not_for_us,
        /// Ethernet frame whose source is a group address (never valid, IEEE 802.3) or
        /// our own address (our frame looped back).
        EthBadSource => eth_bad_source,
        /// IPv4 datagram to our unicast address in a link-layer broadcast frame (RFC 1122
        /// section 3.3.6: discarded).
        LinkBroadcastUnicast => link_broadcast_unicast,
        /// EtherType other than IPv4 and ARP.
        EthUnknownType => eth_unknown_type,
        /// ARP packet shorter than its fixed part or than its address lengths say.
        ArpTruncated => arp_truncated,
        /// ARP hardware type not Ethernet (1) or hardware address length not 6.
        ArpBadHardware => arp_bad_hardware,
        /// ARP protocol type not IPv4 (0x0800) or protocol address length not 4.
        ArpBadProtocol => arp_bad_protocol,
        /// ARP opcode other than request (1) and reply (2).
        ArpBadOperation => arp_bad_operation,
        /// ARP sender hardware address is zero, broadcast, multicast or ours.
        ArpBadSenderMac => arp_bad_sender_mac,
        /// ARP sender protocol address cannot be a neighbour's: broadcast, multicast,
        /// martian, or off our network.
        ArpBadSenderIp => arp_bad_sender_ip,
        /// ARP reply from a sender we never asked about (no cache entry is made).
        ArpUnsolicited => arp_unsolicited,
        /// ARP request for another host's address, from a sender we do not know.
        ArpNotForUs => arp_not_for_us,
    }
}

ustack_link::counters! {
    /// Counters of one interface.
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
        /// Receive calls the link failed (other than for a packet too big for the buffer,
        /// which is dropped as `oversized`).
        pub rx_link_errors: u64,
        pub icmp_echo_requests_in: u64,
        pub icmp_echo_replies_out: u64,
        pub icmp_echo_requests_out: u64,
        pub icmp_echo_replies_in: u64,
        pub icmp_errors_in: u64,
        pub icmp_errors_out: u64,
        /// ICMP errors not sent: suppressed by RFC 1122 section 3.2.2 rules or rate limited.
        pub icmp_errors_suppressed: u64,
        pub icmp_other_in: u64,
        /// Ethernet frames received (on Ethernet links; IPv4 ones are also `rx_packets`).
        pub rx_frames: u64,
        pub arp_requests_in: u64,
        pub arp_replies_in: u64,
        /// Requests sent: broadcast on a miss, unicast to confirm a stale entry.
        pub arp_requests_out: u64,
        pub arp_replies_out: u64,
        /// Gratuitous ARPs sent (at start, and defending our address).
        pub arp_announcements_out: u64,
        /// Addresses being resolved that got an answer (a reply, or any ARP packet from
        /// the address, RFC 826 merge).
        pub arp_resolved: u64,
        /// Addresses given up on after unanswered requests or probes.
        pub arp_failed: u64,
        /// Packets dropped from a full resolution queue (the oldest goes).
        pub arp_queue_overflow: u64,
        /// Packets dropped because their next hop never answered.
        pub arp_unresolved_dropped: u64,
        /// New cache entries refused because every entry was being resolved.
        pub arp_cache_full: u64,
        /// ARP packets from another station claiming our address (RFC 5227 section 2.4).
        pub arp_conflicts: u64,
    }
    /// Received packets dropped, by reason; printed as `drop.<reason>`.
    drops: RxDrops => "drop.",
}

impl Stats {
    pub fn dropped(&self, reason: RxDrop) -> u64 {
        self.drops.get(reason)
    }

    pub fn total_dropped(&self) -> u64 {
        self.drops.counters().iter().map(|(_, n)| n).sum()
    }

    pub(crate) fn drop(&mut self, reason: RxDrop) {
        self.drops.increment(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_name() {
        let mut stats = Stats::default();
        for (i, reason) in RxDrop::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
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
