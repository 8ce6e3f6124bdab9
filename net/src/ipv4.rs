//! IPv4 header validation on receive and construction on send (RFC 791 section 3.1,
//! RFC 1122 section 3.2.1). Parsing and writing go through etherparse; the checks it
//! leaves to the caller (header checksum, total length against the buffer) are here.

use std::net::Ipv4Addr;

use etherparse::checksum::Sum16BitWords;
use etherparse::err::ipv4::{HeaderError, HeaderSliceError};
use etherparse::{IpFragOffset, IpNumber, Ipv4Header, Ipv4HeaderSlice};

use crate::stats::RxDrop;

/// Smallest and largest IPv4 header (IHL 5 and 15).
pub const MIN_HEADER_LEN: usize = 20;
pub const MAX_HEADER_LEN: usize = 60;
/// Largest IPv4 datagram (16-bit total length).
pub const MAX_DATAGRAM_LEN: usize = 65535;

/// A validated IPv4 packet: its header and exactly the payload its total length covers
/// (link padding after it is ignored).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<'a> {
    pub header: Ipv4HeaderSlice<'a>,
    pub payload: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    pub fn src(&self) -> Ipv4Addr {
        self.header.source_addr()
    }

    pub fn dst(&self) -> Ipv4Addr {
        self.header.destination_addr()
    }

    pub fn is_fragment(&self) -> bool {
        self.header.more_fragments() || self.header.fragments_offset().value() != 0
    }
}

/// Validates `packet` as an IPv4 datagram: version, IHL, total length, header checksum.
/// Every failure is a [`RxDrop`] reason, never a panic. The TTL is not checked: a host
/// does not forward, and RFC 1122 section 3.2.1.7 says a datagram addressed to it must
/// not be dropped for a TTL of 0 or 1.
pub fn parse(packet: &[u8]) -> Result<Ipv4Packet<'_>, RxDrop> {
    let header = Ipv4HeaderSlice::from_slice(packet).map_err(|e| match e {
        HeaderSliceError::Len(_) => RxDrop::Truncated,
        HeaderSliceError::Content(HeaderError::UnexpectedVersion { .. }) => RxDrop::BadVersion,
        HeaderSliceError::Content(HeaderError::HeaderLengthSmallerThanHeader { .. }) => {
            RxDrop::BadHeaderLen
        }
    })?;
    let header_len = header.slice().len();
    let total_len = usize::from(header.total_len());
    if total_len < header_len {
        return Err(RxDrop::BadTotalLen);
    }
    if total_len > packet.len() {
        return Err(RxDrop::Truncated);
    }
    if Sum16BitWords::new()
        .add_slice(header.slice())
        .ones_complement()
        != 0
    {
        return Err(RxDrop::BadChecksum);
    }
    Ok(Ipv4Packet {
        header,
        payload: &packet[header_len..total_len],
    })
}

/// Whether `addr` may appear as a source (RFC 1122 section 3.2.1.3: not broadcast,
/// multicast, unspecified or class E). See also [`is_martian_source`].
pub fn is_valid_source(addr: Ipv4Addr) -> bool {
    !(addr.is_broadcast()
        || addr.is_multicast()
        || addr.is_unspecified()
        || addr.octets()[0] >= 240)
}

/// Whether `addr` is in 0.0.0.0/8 ("this host on this network", RFC 1122 section 3.2.1.3
/// (a) and (b): only as a source while learning its own address, which a configured host
/// never sees from a peer) or 127.0.0.0/8 (loopback, (g): "MUST NOT appear outside a
/// host"). Datagrams from such sources are dropped, as Linux does with martians.
pub fn is_martian_source(addr: Ipv4Addr) -> bool {
    matches!(addr.octets()[0], 0 | 127)
}

/// Fields of an outgoing datagram's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpNumber,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    /// DSCP (upper 6 bits) and ECN (lower 2 bits) as in the old TOS byte.
    pub tos: u8,
}

impl HeaderFields {
    /// The header of a datagram (or fragment) carrying `payload_len` bytes at byte
    /// `offset` of the original payload, checksum filled in.
    pub fn build(
        &self,
        payload_len: usize,
        offset: usize,
        more_fragments: bool,
    ) -> Result<Ipv4Header, crate::SendError> {
        let too_big = || crate::SendError::DatagramTooLarge {
            len: payload_len + offset + MIN_HEADER_LEN,
        };
        let len = u16::try_from(payload_len).map_err(|_| too_big())?;
        let mut header = Ipv4Header::new(
            len,
            self.ttl,
            self.protocol,
            self.src.octets(),
            self.dst.octets(),
        )
        .map_err(|_| too_big())?;
        header.identification = self.ident;
        header.dont_fragment = self.dont_fragment;
        header.more_fragments = more_fragments;
        let offset_units = u16::try_from(offset / 8).map_err(|_| too_big())?;
        header.fragment_offset = IpFragOffset::try_new(offset_units).map_err(|_| too_big())?;
        header.dscp = etherparse::IpDscp::try_new(self.tos >> 2).unwrap_or_default();
        header.ecn = etherparse::IpEcn::try_new(self.tos & 0b11).unwrap_or_default();
        header.header_checksum = header.calc_header_checksum();
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> Vec<u8> {
        let fields = HeaderFields {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            protocol: IpNumber::UDP,
            ttl: 64,
            ident: 7,
            dont_fragment: true,
            tos: 0,
        };
        let mut out = fields
            .build(payload.len(), 0, false)
            .unwrap()
            .to_bytes()
            .to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn valid_packet_parses_and_padding_is_ignored() {
        let mut p = sample(b"hello");
        p.extend_from_slice(&[0; 6]);
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.payload, b"hello");
        assert_eq!(parsed.src(), Ipv4Addr::new(198, 18, 0, 1));
        assert!(!parsed.is_fragment());
    }

    #[test]
    fn each_defect_has_its_reason() {
        let good = sample(b"hello");
        assert_eq!(parse(&good[..19]).unwrap_err(), RxDrop::Truncated);

        let mut p = good.clone();
        p[0] = 0x65;
        assert_eq!(parse(&p).unwrap_err(), RxDrop::BadVersion);

        let mut p = good.clone();
        p[0] = 0x44;
        assert_eq!(parse(&p).unwrap_err(), RxDrop::BadHeaderLen);

        let mut p = good.clone();
        p[0] = 0x4f; // IHL 15 = 60 bytes, longer than the packet
        assert_eq!(parse(&p).unwrap_err(), RxDrop::Truncated);

        let mut p = good.clone();
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(parse(&p).unwrap_err(), RxDrop::BadTotalLen);

        let mut p = good.clone();
        p[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(parse(&p).unwrap_err(), RxDrop::Truncated);

        let mut p = good.clone();
        p[12] ^= 0x01; // source address bit, checksum now wrong
        assert_eq!(parse(&p).unwrap_err(), RxDrop::BadChecksum);

        let fields = HeaderFields {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            protocol: IpNumber::UDP,
            ttl: 0,
            ident: 0,
            dont_fragment: false,
            tos: 0,
        };
        // RFC 1122 section 3.2.1.7: TTL 0 is no defect for a datagram to a host.
        let p = fields.build(0, 0, false).unwrap().to_bytes().to_vec();
        assert_eq!(parse(&p).unwrap().header.ttl(), 0);
    }

    #[test]
    fn source_rules() {
        assert!(is_valid_source(Ipv4Addr::new(198, 18, 0, 1)));
        for bad in [
            Ipv4Addr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(240, 0, 0, 1),
        ] {
            assert!(!is_valid_source(bad), "{bad}");
        }
    }
}
