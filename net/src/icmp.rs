//! ICMP for IPv4 (RFC 792, with the host rules of RFC 1122 section 3.2.2): what an
//! incoming message means, and the shape of the errors we send.

use std::net::Ipv4Addr;

use etherparse::checksum::Sum16BitWords;
use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{Icmpv4Slice, Icmpv4Type, IpNumber, Ipv4HeaderSlice};

use crate::stats::RxDrop;

/// Bytes of the offending datagram's payload quoted in an ICMP error (RFC 792: 64 bits).
pub const QUOTED_PAYLOAD: usize = 8;

/// The datagram an ICMP error is about, as quoted in the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpNumber,
    pub ident: u16,
    /// Its total length (RFC 1191 section 5 guesses a path MTU from it).
    pub total_len: u16,
    /// The first bytes of its payload (ports for TCP and UDP).
    pub head: Vec<u8>,
}

/// What an incoming ICMP message tells the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpEvent {
    EchoReply {
        from: Ipv4Addr,
        ident: u16,
        seq: u16,
        ttl: u8,
        payload: Vec<u8>,
    },
    DestUnreachable {
        from: Ipv4Addr,
        code: u8,
        /// Next-hop MTU of code 4, "fragmentation needed" (RFC 1191).
        next_hop_mtu: u16,
        original: Original,
    },
    TimeExceeded {
        from: Ipv4Addr,
        code: u8,
        original: Original,
    },
}

/// An ICMP error this host can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpError {
    DestUnreachable(DestUnreachableHeader),
    TimeExceeded(TimeExceededCode),
}

impl IcmpError {
    pub(crate) fn icmp_type(&self) -> Icmpv4Type {
        match self {
            IcmpError::DestUnreachable(h) => Icmpv4Type::DestinationUnreachable(h.clone()),
            IcmpError::TimeExceeded(c) => Icmpv4Type::TimeExceeded(*c),
        }
    }
}

/// A received ICMP message, checked.
pub(crate) enum Incoming<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        payload: &'a [u8],
    },
    Event(IcmpEvent),
    /// A valid message we have no use for (timestamps, redirects, ...).
    Other,
}

/// Checks the checksum and shape of an ICMP message from `from`.
pub(crate) fn parse(from: Ipv4Addr, ttl: u8, message: &[u8]) -> Result<Incoming<'_>, RxDrop> {
    let slice = Icmpv4Slice::from_slice(message).map_err(|_| RxDrop::IcmpMalformed)?;
    if Sum16BitWords::new().add_slice(message).ones_complement() != 0 {
        return Err(RxDrop::IcmpBadChecksum);
    }
    Ok(match slice.icmp_type() {
        Icmpv4Type::EchoRequest(echo) => Incoming::EchoRequest {
            ident: echo.id,
            seq: echo.seq,
            payload: slice.payload(),
        },
        Icmpv4Type::EchoReply(echo) => Incoming::Event(IcmpEvent::EchoReply {
            from,
            ident: echo.id,
            seq: echo.seq,
            ttl,
            payload: slice.payload().to_vec(),
        }),
        Icmpv4Type::DestinationUnreachable(h) => {
            let next_hop_mtu = match h {
                DestUnreachableHeader::FragmentationNeeded { next_hop_mtu } => next_hop_mtu,
                _ => 0,
            };
            Incoming::Event(IcmpEvent::DestUnreachable {
                from,
                code: slice.code_u8(),
                next_hop_mtu,
                original: original(slice.payload())?,
            })
        }
        Icmpv4Type::TimeExceeded(_) => Incoming::Event(IcmpEvent::TimeExceeded {
            from,
            code: slice.code_u8(),
            original: original(slice.payload())?,
        }),
        _ => Incoming::Other,
    })
}

/// Reads the quoted header and payload head of an ICMP error.
fn original(quoted: &[u8]) -> Result<Original, RxDrop> {
    let header = Ipv4HeaderSlice::from_slice(quoted).map_err(|_| RxDrop::IcmpMalformed)?;
    let rest = &quoted[header.slice().len()..];
    Ok(Original {
        src: header.source_addr(),
        dst: header.destination_addr(),
        protocol: header.protocol(),
        ident: header.identification(),
        total_len: header.total_len(),
        head: rest[..rest.len().min(QUOTED_PAYLOAD)].to_vec(),
    })
}

/// Whether an ICMP error may be sent about a datagram (RFC 1122 section 3.2.2): not about
/// an ICMP error, a datagram to a broadcast or multicast address, a non-initial fragment,
/// or one whose source is not a unicast host.
pub(crate) fn may_report(
    header: &Ipv4HeaderSlice<'_>,
    payload: &[u8],
    dst_is_broadcast: bool,
) -> bool {
    if dst_is_broadcast || header.destination_addr().is_multicast() {
        return false;
    }
    if !crate::ipv4::is_valid_source(header.source_addr()) {
        return false;
    }
    if header.fragments_offset().value() != 0 {
        return false;
    }
    if header.protocol() == IpNumber::ICMP {
        // Only queries (echo, timestamp, ...) may be answered with errors.
        let is_error = matches!(payload.first(), Some(3 | 4 | 5 | 11 | 12));
        if is_error || payload.is_empty() {
            return false;
        }
    }
    true
}
