//! The `struct virtio_net_hdr` (virtio 1.2 section 5.1.6, `linux/virtio_net.h`) that a
//! TUN device opened with `IFF_VNET_HDR` puts before every packet in both directions: how
//! the kernel hands over GRO/GSO super-segments with partial checksums, and how the stack
//! asks it to segment (TSO) and checksum what it sends.
//!
//! Hand-written: etherparse has no virtio header, and the 10 bytes are six plain fields.
//! TUN uses the legacy (pre-virtio-1.0) layout, whose 16-bit fields are in the host's
//! byte order unless TUNSETVNETLE/BE says otherwise, which we never set.

use etherparse::checksum::Sum16BitWords;

/// Length of `struct virtio_net_hdr` (without the `num_buffers` of the mergeable-buffer
/// variant); what TUNSETVNETHDRSZ is set to.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the end is still to
/// be computed and stored at `csum_start + csum_offset`; that field holds the
/// pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the device verified the checksum.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_F_RSC_INFO`: receive-segment-coalescing information (ignored).
pub const F_RSC_INFO: u8 = 4;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: a TCP/IPv4 super-segment of `gso_size`-byte segments.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_ECN`: the segments carry ECN (CWR on the first only).
pub const GSO_ECN: u8 = 0x80;

/// Offset of the checksum in a TCP header (RFC 9293 section 3.1).
const TCP_CHECKSUM_OFFSET: u16 = 16;
/// Offset of the data-offset nibble in a TCP header.
const TCP_DATA_OFFSET: usize = 12;

crate::counters! {
    /// Why a packet from the device was dropped for its virtio header.
    pub enum VnetDrop => pub struct VnetDrops {
        /// Shorter than the header.
        Short => short,
        /// A flag bit we do not know.
        BadFlags => bad_flags,
        /// A segmentation type other than TCP/IPv4 (the offloads we set exclude them).
        UnsupportedGso => unsupported_gso,
        /// A super-segment of 0-byte segments.
        ZeroGsoSize => zero_gso_size,
        /// `csum_start` and `csum_offset` point past the packet.
        BadChecksumOffsets => bad_csum_offsets,
    }
}

crate::counters! {
    /// What went through a device's virtio headers.
    pub struct VnetStats {
        /// Coalesced super-segments received (GRO/GSO from the kernel).
        pub gso_in: u64,
        /// Segments they carried (their length over `gso_size`, rounded up).
        pub gso_in_segments: u64,
        /// Received packets whose checksum was partial (`NEEDS_CSUM`) or verified
        /// (`DATA_VALID`), which the stack does not verify.
        pub csum_trusted_in: u64,
        /// TSO super-segments sent for the kernel to split.
        pub gso_out: u64,
        /// Segments they become.
        pub gso_out_segments: u64,
    }
    /// Packets dropped for a malformed header, by reason.
    pub drops: VnetDrops => "drop.",
}

/// One `struct virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (IP and TCP) of a super-segment.
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-segment.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Parses the header at the start of what the device delivered and checks it against
    /// the `packet_len` bytes that follow: only the flags and the TCP/IPv4 segmentation
    /// we enabled, a non-zero `gso_size` with segmentation, and a checksum field inside
    /// the packet (the checks Linux's `virtio_net_hdr_to_skb` makes in the other
    /// direction).
    pub fn parse(bytes: &[u8], packet_len: usize) -> Result<VnetHeader, VnetDrop> {
        let Some(b) = bytes.get(..VNET_HDR_LEN) else {
            return Err(VnetDrop::Short);
        };
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        let header = VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        };
        if header.flags & !(F_NEEDS_CSUM | F_DATA_VALID | F_RSC_INFO) != 0 {
            return Err(VnetDrop::BadFlags);
        }
        match header.gso_type & !GSO_ECN {
            GSO_NONE => {}
            GSO_TCPV4 if header.gso_size == 0 => return Err(VnetDrop::ZeroGsoSize),
            GSO_TCPV4 => {}
            _ => return Err(VnetDrop::UnsupportedGso),
        }
        if header.flags & F_NEEDS_CSUM != 0 {
            let field_end = usize::from(header.csum_start) + usize::from(header.csum_offset) + 2;
            if field_end > packet_len {
                return Err(VnetDrop::BadChecksumOffsets);
            }
        }
        Ok(header)
    }

    /// The 10 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Whether the stack may skip verifying the transport checksum.
    pub fn checksum_trusted(&self) -> bool {
        self.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0
    }

    /// The segment size of a TCP super-segment, 0 for an ordinary packet.
    pub fn segment_size(&self) -> u16 {
        if self.gso_type & !GSO_ECN == GSO_TCPV4 {
            self.gso_size
        } else {
            0
        }
    }
}

/// A TCP/IPv4 packet made ready for the kernel to segment (TSO): its virtio header, and
/// the IP and TCP headers with the TCP checksum field replaced by the pseudo-header sum
/// (`NEEDS_CSUM`), as Linux's `__tcp_v4_send_check` leaves it for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsoHeaders {
    pub vnet: VnetHeader,
    headers: [u8; MAX_HEADERS_LEN],
}

/// The longest IPv4 and TCP headers, with all their options.
const MAX_HEADERS_LEN: usize = 120;

impl TsoHeaders {
    /// For `packet`, an IPv4 datagram carrying one TCP segment, to be cut into segments of
    /// `segment_size` payload bytes: `None` if it is not one (then it goes out as it is).
    /// The pseudo-header partial sum is computed with etherparse's `Sum16BitWords` over
    /// the pseudo-header only (RFC 9293 section 3.1; RFC 1071 folding), not complemented.
    pub fn new(packet: &[u8], segment_size: u16) -> Option<TsoHeaders> {
        let ip = etherparse::Ipv4HeaderSlice::from_slice(packet).ok()?;
        if ip.protocol() != etherparse::IpNumber::TCP
            || ip.is_fragmenting_payload()
            || usize::from(ip.total_len()) != packet.len()
            || segment_size == 0
        {
            return None;
        }
        let ihl = ip.slice().len();
        let tcp = packet.get(ihl..)?;
        let thl = usize::from(*tcp.get(TCP_DATA_OFFSET)? >> 4) * 4;
        if thl < 20 || thl > tcp.len() {
            return None;
        }
        let tcp_len = u16::try_from(tcp.len()).ok()?;
        let partial = !Sum16BitWords::new()
            .add_4bytes(ip.source())
            .add_4bytes(ip.destination())
            .add_2bytes([0, etherparse::IpNumber::TCP.0])
            .add_2bytes(tcp_len.to_be_bytes())
            .ones_complement();
        let mut headers = [0; MAX_HEADERS_LEN];
        headers[..ihl + thl].copy_from_slice(&packet[..ihl + thl]);
        let field = ihl + usize::from(TCP_CHECKSUM_OFFSET);
        // Sum16BitWords adds the words in the host's byte order; its result goes back to
        // the wire in that order.
        headers[field..field + 2].copy_from_slice(&partial.to_ne_bytes());
        Some(TsoHeaders {
            vnet: VnetHeader {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: (ihl + thl) as u16,
                gso_size: segment_size,
                csum_start: ihl as u16,
                csum_offset: TCP_CHECKSUM_OFFSET,
            },
            headers,
        })
    }

    /// The packet's IP and TCP headers, the TCP checksum field patched; the payload
    /// after them goes out unchanged.
    pub fn headers(&self) -> &[u8] {
        &self.headers[..usize::from(self.vnet.hdr_len)]
    }

    /// How many segments the kernel cuts the packet of `len` bytes into.
    pub fn segments(&self, len: usize) -> u64 {
        let payload = len.saturating_sub(usize::from(self.vnet.hdr_len));
        payload
            .div_ceil(usize::from(self.vnet.gso_size).max(1))
            .max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_packet(payload_len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
        let builder = PacketBuilder::ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 5201, 1, 65535)
            .ack(9);
        let mut out = Vec::new();
        builder.write(&mut out, &payload).unwrap();
        out
    }

    /// The kernel's GSO super-segment as TUN hands it over: NEEDS_CSUM with the checksum
    /// field of the TCP header, TCPV4 with its segment size.
    #[test]
    fn a_kernel_super_segment_header_parses() {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let bytes = h.to_bytes();
        assert_eq!(VnetHeader::parse(&bytes, 20000), Ok(h));
        assert!(h.checksum_trusted());
        assert_eq!(h.segment_size(), 1448);
        let plain = VnetHeader::default();
        assert_eq!(VnetHeader::parse(&plain.to_bytes(), 40), Ok(plain));
        assert!(!plain.checksum_trusted());
        assert_eq!(plain.segment_size(), 0);
        let ecn = VnetHeader {
            gso_type: GSO_TCPV4 | GSO_ECN,
            ..h
        };
        assert_eq!(
            VnetHeader::parse(&ecn.to_bytes(), 20000)
                .unwrap()
                .segment_size(),
            1448
        );
    }

    /// Malformed headers are errors with a reason, never a panic.
    #[test]
    fn malformed_headers_have_a_reason() {
        let good = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 40,
            gso_size: 1460,
            csum_start: 20,
            csum_offset: 16,
        };
        let cases = [
            (good.to_bytes()[..9].to_vec(), 100, VnetDrop::Short),
            (
                VnetHeader { flags: 8, ..good }.to_bytes().to_vec(),
                100,
                VnetDrop::BadFlags,
            ),
            (
                VnetHeader {
                    gso_type: 4, // TCPV6
                    ..good
                }
                .to_bytes()
                .to_vec(),
                100,
                VnetDrop::UnsupportedGso,
            ),
            (
                VnetHeader {
                    gso_size: 0,
                    ..good
                }
                .to_bytes()
                .to_vec(),
                100,
                VnetDrop::ZeroGsoSize,
            ),
            (good.to_bytes().to_vec(), 37, VnetDrop::BadChecksumOffsets),
            (
                VnetHeader {
                    csum_start: u16::MAX,
                    csum_offset: u16::MAX,
                    ..good
                }
                .to_bytes()
                .to_vec(),
                70000,
                VnetDrop::BadChecksumOffsets,
            ),
        ];
        for (bytes, len, reason) in cases {
            assert_eq!(VnetHeader::parse(&bytes, len), Err(reason), "{bytes:?}");
        }
        assert_eq!(VnetHeader::parse(&good.to_bytes(), 38), Ok(good));
        let mut drops = VnetDrops::default();
        drops.increment(VnetDrop::Short);
        assert_eq!(drops.to_string(), "short 1\n");
    }

    proptest::proptest! {
        /// Any bytes parse to a header or a reason.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..12), len in 0usize..70000) {
            let _ = VnetHeader::parse(&bytes, len);
        }
    }

    /// TSO: NEEDS_CSUM with csum_start at the TCP header and csum_offset 16, gso_size the
    /// segment size, hdr_len the IP and TCP headers, and the checksum field holding the
    /// pseudo-header sum: adding the TCP header and payload to it and complementing gives
    /// the full checksum (what the kernel does per segment).
    #[test]
    fn tso_headers_carry_the_pseudo_header_sum() {
        let packet = tcp_packet(3 * 1448 + 100);
        let tso = TsoHeaders::new(&packet, 1448).unwrap();
        assert_eq!(
            tso.vnet,
            VnetHeader {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 40,
                gso_size: 1448,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        assert_eq!(tso.headers().len(), 40);
        assert_eq!(tso.segments(packet.len()), 4);
        let full = [packet[36], packet[37]];
        let mut tcp = tso.headers()[20..].to_vec();
        tcp.extend_from_slice(&packet[40..]);
        // The partial sum sits in the field; zero it and fold it back in as the device does.
        let partial = [tcp[16], tcp[17]];
        tcp[16] = 0;
        tcp[17] = 0;
        let done = Sum16BitWords::new()
            .add_2bytes(partial)
            .add_slice(&tcp)
            .ones_complement();
        assert_eq!(done.to_ne_bytes(), full);
        assert_eq!(tso.headers()[..20], packet[..20]);
    }

    /// Only a whole TCP/IPv4 datagram can be segmented.
    #[test]
    fn tso_needs_a_tcp_ipv4_datagram() {
        let packet = tcp_packet(100);
        assert!(TsoHeaders::new(&packet, 0).is_none());
        assert!(TsoHeaders::new(&packet[..30], 1448).is_none());
        assert!(TsoHeaders::new(&[0x45, 0, 0], 1448).is_none());
        let udp = {
            let mut out = Vec::new();
            PacketBuilder::ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1, 2)
                .write(&mut out, &[0; 10])
                .unwrap();
            out
        };
        assert!(TsoHeaders::new(&udp, 1448).is_none());
    }
}
