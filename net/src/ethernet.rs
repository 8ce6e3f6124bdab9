//! Ethernet II framing (RFC 894: IPv4 datagrams in Ethernet II frames, EtherType 0x0800;
//! ARP is 0x0806). Headers are read and written with etherparse; what a host accepts is
//! decided here and in the [`Interface`](crate::Interface).

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use etherparse::{EtherType, Ethernet2Header, Ethernet2HeaderSlice};

use crate::stats::RxDrop;

pub use ustack_link::ETHERNET_HEADER_LEN as HEADER_LEN;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == MacAddr::BROADCAST
    }

    /// The group bit (least significant bit of the first octet, IEEE 802); broadcast is a
    /// group address too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// An address one station can own: not a group address and not all zeros.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != MacAddr::ZERO
    }

    /// A locally administered unicast address (`02:00:` and the four octets of `ip`),
    /// for links whose device gives us no address of our own (simulated links).
    pub fn local_for(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x02, 0x00, o[0], o[1], o[2], o[3]])
    }

    /// The group address of an IPv4 multicast group: `01:00:5e` and the low 23 bits of
    /// the group (RFC 1112 section 6.4).
    pub fn ipv4_multicast(group: Ipv4Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Text that is not six hexadecimal octets separated by colons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (example: 02:00:c6:12:00:01)")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<MacAddr, ParseMacError> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut mac {
            let part = parts.next().ok_or_else(|| ParseMacError(s.to_string()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(ParseMacError(s.to_string()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.to_string()));
        }
        Ok(MacAddr(mac))
    }
}

/// A received Ethernet II frame's header fields and payload (without FCS: devices strip
/// it). The payload may end in padding up to the 60-byte minimum frame; IPv4 and ARP
/// carry their own lengths.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ether_type: EtherType,
    pub payload: &'a [u8],
}

/// Splits `frame` into header and payload.
pub fn parse(frame: &[u8]) -> Result<Frame<'_>, RxDrop> {
    let header = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| RxDrop::EthTruncated)?;
    Ok(Frame {
        dst: MacAddr(header.destination()),
        src: MacAddr(header.source()),
        ether_type: header.ether_type(),
        payload: &frame[HEADER_LEN..],
    })
}

/// The 14 header bytes of a frame from `src` to `dst`.
pub fn header(dst: MacAddr, src: MacAddr, ether_type: EtherType) -> [u8; HEADER_LEN] {
    Ethernet2Header {
        source: src.0,
        destination: dst.0,
        ether_type,
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_round_trips_and_rejects_junk() {
        let mac: MacAddr = "02:00:c6:12:00:0a".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0xc6, 0x12, 0, 0x0a]));
        assert_eq!(mac.to_string(), "02:00:c6:12:00:0a");
        for bad in [
            "",
            "02:00:c6:12:00",
            "02:00:c6:12:00:0a:01",
            "02:00:c6:12:00:xx",
            "020:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn address_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(MacAddr::local_for(Ipv4Addr::new(198, 18, 0, 1)).is_unicast());
        assert_eq!(
            MacAddr::ipv4_multicast(Ipv4Addr::new(224, 129, 2, 3)),
            MacAddr([1, 0, 0x5e, 1, 2, 3])
        );
    }

    #[test]
    fn header_round_trips_and_short_frames_are_truncated() {
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST);
        let mut frame = header(b, a, EtherType::ARP).to_vec();
        frame.extend_from_slice(b"payload");
        let f = parse(&frame).unwrap();
        assert_eq!((f.dst, f.src, f.ether_type), (b, a, EtherType::ARP));
        assert_eq!(f.payload, b"payload");
        assert_eq!(parse(&frame[..13]).unwrap_err(), RxDrop::EthTruncated);
    }
}
