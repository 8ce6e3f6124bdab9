//! The transport header an ICMP error quotes: which of our TCP connections or UDP
//! sockets the error is about (RFC 1122 section 4.2.3.9 for TCP, 4.1.3.3 for UDP).

use core::ops::Range;
use std::net::SocketAddrV4;

use etherparse::UdpHeaderSlice;

use crate::net::icmp::QUOTED_PAYLOAD;
use crate::net::{IpNumber, Original};
use crate::tcp::seq::SeqNumber;

/// Source and destination port: the first four bytes of a TCP header (RFC 9293 section
/// 3.1) as of a UDP header (RFC 768).
const SRC_PORT: Range<usize> = 0..2;
const DST_PORT: Range<usize> = 2..4;
/// The TCP sequence number, the last of the 64 bits an ICMP error quotes (RFC 792).
const TCP_SEQ: Range<usize> = 4..8;

/// A TCP segment or UDP datagram we sent, as an ICMP error quotes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// [`IpNumber::TCP`] or [`IpNumber::UDP`].
    pub protocol: IpNumber,
    /// Our end: the source of the quoted datagram.
    pub local: SocketAddrV4,
    /// The peer: its destination.
    pub remote: SocketAddrV4,
    /// TCP: the quoted segment's sequence number, which the connection checks against
    /// what it has in flight (RFC 5927 section 4.1). `None` for UDP.
    pub tcp_seq: Option<SeqNumber>,
}

impl Quoted {
    /// Reads the quoted header of a TCP segment or UDP datagram. `None` for another
    /// protocol or a quote shorter than the 8 bytes RFC 792 requires. UDP goes through
    /// etherparse; TCP is read by hand because etherparse's TCP view needs the whole
    /// 20-byte header.
    pub fn parse(original: &Original) -> Option<Quoted> {
        let head = original.head.get(..QUOTED_PAYLOAD)?;
        let (src_port, dst_port, tcp_seq) = match original.protocol {
            IpNumber::UDP => {
                let udp = UdpHeaderSlice::from_slice(head).ok()?;
                (udp.source_port(), udp.destination_port(), None)
            }
            IpNumber::TCP => {
                let field = |r: Range<usize>| head[r].iter().fold(0, |v, &b| v << 8 | u32::from(b));
                (
                    field(SRC_PORT) as u16,
                    field(DST_PORT) as u16,
                    Some(SeqNumber(field(TCP_SEQ))),
                )
            }
            _ => return None,
        };
        Some(Quoted {
            protocol: original.protocol,
            local: SocketAddrV4::new(original.src, src_port),
            remote: SocketAddrV4::new(original.dst, dst_port),
            tcp_seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::tcp::wire::{self, Segment};
    use crate::udp::{UdpConfig, UdpTable};

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn original(protocol: IpNumber, head: &[u8]) -> Original {
        Original {
            src: A,
            dst: B,
            protocol,
            ident: 1,
            total_len: 20 + head.len() as u16,
            head: head.to_vec(),
        }
    }

    #[test]
    fn tcp_quote_gives_ports_and_sequence_number() {
        let seg = Segment::reset(40000, 80, SeqNumber(0x0102_0304), None);
        let mut bytes = Vec::new();
        wire::emit(&seg, A, B, &mut bytes);
        let quoted = Quoted::parse(&original(IpNumber::TCP, &bytes[..8])).unwrap();
        assert_eq!(
            quoted,
            Quoted {
                protocol: IpNumber::TCP,
                local: SocketAddrV4::new(A, 40000),
                remote: SocketAddrV4::new(B, 80),
                tcp_seq: Some(SeqNumber(0x0102_0304)),
            }
        );
        // More than 8 bytes quoted (Linux quotes more): the same.
        assert_eq!(
            Quoted::parse(&original(IpNumber::TCP, &bytes)),
            Some(quoted)
        );
        for short in [0, 3, 4, 7] {
            assert_eq!(
                Quoted::parse(&original(IpNumber::TCP, &bytes[..short])),
                None
            );
        }
    }

    #[test]
    fn udp_quote_gives_ports_only() {
        let mut table = UdpTable::new(UdpConfig::default());
        let h = table.bind(SocketAddrV4::new(A, 1)).unwrap();
        let mut bytes = Vec::new();
        table
            .encode(h, A, SocketAddrV4::new(B, 8), b"?", &mut bytes)
            .unwrap();
        let quoted = Quoted::parse(&original(IpNumber::UDP, &bytes)).unwrap();
        assert_eq!((quoted.local.port(), quoted.remote.port()), (1, 8));
        assert_eq!(quoted.tcp_seq, None);
        assert_eq!(Quoted::parse(&original(IpNumber::UDP, &bytes[..7])), None);
        assert_eq!(Quoted::parse(&original(IpNumber::ICMP, &bytes)), None);
    }
}
