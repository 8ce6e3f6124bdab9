//! TCP segments on the wire (RFC 9293 section 3.1) with the options a modern peer sends:
//! MSS (RFC 9293 section 3.7.1, RFC 6691), window scale and timestamps (RFC 7323) and
//! SACK (RFC 2018).
//!
//! The fixed header, option decoding and the checksum go through etherparse. Hand-written
//! here: the walk over the option list (etherparse stops at the first unknown kind, RFC
//! 9293 requires skipping it), the option layout on emit, and the checksum verification.
//! The checksum on emit is `ustack_net::checksum` (64-bit words, see there why).

use std::net::Ipv4Addr;

use etherparse::err::tcp::HeaderSliceError;
use etherparse::tcp_option::{
    LEN_MAXIMUM_SEGMENT_SIZE, LEN_NOOP, LEN_SELECTIVE_ACK_PERMITTED, LEN_TIMESTAMP,
    LEN_WINDOW_SCALE,
};
use etherparse::{
    IpNumber, TcpHeader, TcpHeaderSlice, TcpOptionElement, TcpOptionReadError, TcpOptionsIterator,
};

use super::seq::SeqNumber;
use crate::net::checksum;
use crate::net::ipv4::MIN_HEADER_LEN as IPV4_HEADER_LEN;

/// Length of the fixed header, without options (data offset 5).
pub const MIN_HEADER_LEN: usize = TcpHeader::MIN_LEN;
/// Room for options: data offset 15 words minus the fixed header (RFC 9293 section 3.1).
pub(crate) const MAX_OPTIONS_LEN: usize = etherparse::TcpOptions::MAX_LEN;
/// Largest window shift; larger received values are used as 14 (RFC 7323 section 2.3).
pub(crate) const MAX_WINDOW_SCALE: u8 = 14;
/// SACK blocks one option can carry in 40 bytes (RFC 2018 section 3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// Kind and length octets that start every option but NOP and EOL (RFC 9293 section 3.1).
const OPTION_TLV_HEADER_LEN: usize = 2;
/// Offset of the length octet within an option.
const OPTION_LEN_OFFSET: usize = 1;
/// Left and right edge of one SACK block (RFC 2018 section 3).
pub(crate) const SACK_BLOCK_LEN: usize = 8;
/// NOP padding that 4-byte aligns the 2- or 10-byte options the way Linux does.
const TWO_NOPS: usize = 2 * LEN_NOOP as usize;
/// Most elements [`encode_options`] emits: MSS, NOP NOP TS, NOP WS, NOP NOP SACK.
const MAX_OPTION_ELEMENTS: usize = 9;

/// Control bits (RFC 9293 section 3.1; ECE and CWR from RFC 3168).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub fin: bool,
    pub syn: bool,
    pub rst: bool,
    pub psh: bool,
    pub ack: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
}

/// The options this stack understands, decoded. Unknown options are dropped on parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (RFC 9293 section 3.7.1, RFC 6691).
    pub mss: Option<u16>,
    /// Window shift count; values above [`MAX_WINDOW_SCALE`] are clamped on parse
    /// (RFC 7323 section 2.3) and written as given on emit.
    pub window_scale: Option<u8>,
    /// SACK-permitted (RFC 2018 section 2).
    pub sack_permitted: bool,
    /// SACK blocks as (left edge, right edge) (RFC 2018 section 3). Parse fills them from
    /// index 0; emit writes the `Some` entries in order and skips `None`.
    pub sack_blocks: [Option<(SeqNumber, SeqNumber)>; MAX_SACK_BLOCKS],
    /// Timestamps as (TSval, TSecr) (RFC 7323 section 3.2).
    pub timestamps: Option<(u32, u32)>,
}

/// A TCP segment as plain values, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    /// Meaningful only if `flags.ack`; parse returns the raw field, emit writes it as is.
    pub ack: SeqNumber,
    pub flags: Flags,
    /// The raw window field, not scaled.
    pub window: u16,
    /// Raw urgent pointer, meaningful only if `flags.urg`.
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl Segment<'static> {
    /// A reset (RFC 9293 section 3.10.7.1): `<SEQ=seq><CTL=RST>`, or with `ack`
    /// `<SEQ=seq><ACK=ack><CTL=RST,ACK>`; no options, no data.
    pub(crate) fn reset(
        src_port: u16,
        dst_port: u16,
        seq: SeqNumber,
        ack: Option<SeqNumber>,
    ) -> Segment<'static> {
        Segment {
            src_port,
            dst_port,
            seq,
            ack: ack.unwrap_or(SeqNumber(0)),
            flags: Flags {
                rst: true,
                ack: ack.is_some(),
                ..Flags::default()
            },
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        }
    }
}

impl Segment<'_> {
    /// The reset answering this segment when it belongs to no connection or is
    /// unacceptable (RFC 9293 section 3.10.7.1): `<SEQ=SEG.ACK><CTL=RST>` if it carries an
    /// ACK, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`; from the ports it was sent
    /// to. Never answer a RST with one.
    pub fn reset_reply(&self) -> Segment<'static> {
        let (seq, ack) = if self.flags.ack {
            (self.ack, None)
        } else {
            (SeqNumber(0), Some(self.seq + self.seq_len()))
        };
        Segment::reset(self.dst_port, self.src_port, seq, ack)
    }

    /// Sequence space the segment occupies: payload length plus one each for SYN and FIN
    /// (RFC 9293 section 3.4).
    pub fn seq_len(&self) -> usize {
        self.payload.len() + usize::from(self.flags.syn) + usize::from(self.flags.fin)
    }

    /// Header length this segment will have when emitted: 20 bytes plus its options as
    /// [`emit`] lays them out (SACK blocks that do not fit left out), a multiple of 4.
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + encode_options(&self.options).0.len()
    }
}

/// Why a received segment was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("segment shorter than the 20-byte TCP header")]
    Truncated,
    #[error("segment longer than an IPv4 payload can be")]
    TooLong,
    #[error("data offset below 5 words or past the end of the segment")]
    BadDataOffset,
    #[error("TCP checksum mismatch")]
    BadChecksum,
    #[error("malformed TCP option")]
    BadOptions,
}

/// Parses and verifies a TCP segment carried in an IPv4 datagram from `src` to `dst`,
/// `bytes` being exactly the IP payload. The checksum covers the pseudo-header of RFC 9293
/// section 3.1. Options of unknown kind are skipped (RFC 9293 section 3.2, MUST-6); an
/// option whose length is below 2, wrong for its kind, or runs past the header is
/// [`WireError::BadOptions`] (MUST-7). Never panics on any input.
pub fn parse<'a>(src: Ipv4Addr, dst: Ipv4Addr, bytes: &'a [u8]) -> Result<Segment<'a>, WireError> {
    parse_checked(src, dst, bytes, true)
}

/// [`parse`] without verifying the checksum, for a segment whose device vouched for it:
/// verified in hardware (virtio `DATA_VALID`) or handed over by the local kernel with
/// only the pseudo-header sum in the field (virtio `NEEDS_CSUM`, Linux
/// `CHECKSUM_PARTIAL`), as Linux's `skb_csum_unnecessary` skips it.
pub fn parse_trusted<'a>(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    bytes: &'a [u8],
) -> Result<Segment<'a>, WireError> {
    parse_checked(src, dst, bytes, false)
}

fn parse_checked<'a>(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    bytes: &'a [u8],
    verify: bool,
) -> Result<Segment<'a>, WireError> {
    let tcp_len = u16::try_from(bytes.len()).map_err(|_| WireError::TooLong)?;
    let header = TcpHeaderSlice::from_slice(bytes).map_err(|e| match e {
        HeaderSliceError::Len(_) if bytes.len() < MIN_HEADER_LEN => WireError::Truncated,
        HeaderSliceError::Len(_) | HeaderSliceError::Content(_) => WireError::BadDataOffset,
    })?;
    // Summing over the checksum field too and expecting zero (RFC 1071 section 1) accepts
    // both encodings of a zero sum, 0x0000 and 0xffff; comparing against a recomputed
    // value, as etherparse's `calc_checksum_ipv4` would have us do, rejects one of them.
    // The sum is `net::checksum`'s (deferred carries, vectorised), not etherparse's:
    // it is the receive path's one pass over every payload byte.
    if verify {
        let pseudo = checksum::pseudo_header(src.octets(), dst.octets(), IpNumber::TCP.0, tcp_len);
        if !checksum::verifies(checksum::add(pseudo, bytes)) {
            return Err(WireError::BadChecksum);
        }
    }
    let options = parse_options(header.options())?;
    Ok(Segment {
        src_port: header.source_port(),
        dst_port: header.destination_port(),
        seq: SeqNumber(header.sequence_number()),
        ack: SeqNumber(header.acknowledgment_number()),
        flags: Flags {
            fin: header.fin(),
            syn: header.syn(),
            rst: header.rst(),
            psh: header.psh(),
            ack: header.ack(),
            urg: header.urg(),
            ece: header.ece(),
            cwr: header.cwr(),
        },
        window: header.window_size(),
        urgent: header.urgent_pointer(),
        options,
        payload: &bytes[header.slice().len()..],
    })
}

/// Walks the option list. etherparse's iterator decodes and length-checks each known
/// option but ends at the first unknown kind, so unknown ones are stepped over here by
/// their length octet and the iterator restarted after them.
fn parse_options(mut rest: &[u8]) -> Result<TcpOptions, WireError> {
    let mut options = TcpOptions::default();
    loop {
        let mut elements = TcpOptionsIterator::from_slice(rest);
        match elements.next() {
            // End of the header or End of Option List: what follows is padding.
            None => return Ok(options),
            Some(Ok(element)) => {
                options.apply(element);
                rest = elements.rest();
            }
            Some(Err(TcpOptionReadError::UnknownId(_))) => {
                let len = rest
                    .get(OPTION_LEN_OFFSET)
                    .map(|&len| usize::from(len))
                    .filter(|len| (OPTION_TLV_HEADER_LEN..=rest.len()).contains(len))
                    .ok_or(WireError::BadOptions)?;
                rest = &rest[len..];
            }
            Some(Err(_)) => return Err(WireError::BadOptions),
        }
    }
}

impl TcpOptions {
    /// Records one decoded option; a repeated option overrides the earlier one.
    fn apply(&mut self, element: TcpOptionElement) {
        match element {
            TcpOptionElement::Noop => {}
            TcpOptionElement::MaximumSegmentSize(mss) => self.mss = Some(mss),
            TcpOptionElement::WindowScale(shift) => {
                self.window_scale = Some(shift.min(MAX_WINDOW_SCALE));
            }
            TcpOptionElement::SelectiveAcknowledgementPermitted => self.sack_permitted = true,
            TcpOptionElement::SelectiveAcknowledgement(first, more) => {
                let edges = |(left, right)| (SeqNumber(left), SeqNumber(right));
                self.sack_blocks = [
                    Some(edges(first)),
                    more[0].map(edges),
                    more[1].map(edges),
                    more[2].map(edges),
                ];
            }
            TcpOptionElement::Timestamp(tsval, tsecr) => self.timestamps = Some((tsval, tsecr)),
        }
    }
}

/// Writes `seg` (header, options, payload) into `out`, which is cleared first, with the
/// checksum over the RFC 9293 section 3.1 pseudo-header filled in. Returns the number of
/// SACK blocks written.
///
/// Options are laid out 4-byte aligned in Linux's order: MSS; then SACK-permitted
/// Timestamps, or NOP NOP Timestamps, or NOP NOP SACK-permitted; then NOP Window scale;
/// then NOP NOP SACK. A SYN with everything thus reads MSS, SACK-permitted, Timestamps,
/// NOP, Window scale (20 bytes). Options are written whatever the flags say: which belong
/// on which segment is the connection's business. Trailing SACK blocks that would take
/// the options past 40 bytes are left out (RFC 2018 section 3: at most 3 next to
/// timestamps), which is why the count is returned.
///
/// # Panics
///
/// If header and payload exceed 65535 bytes, which no IPv4 datagram could carry.
pub fn emit(seg: &Segment<'_>, src: Ipv4Addr, dst: Ipv4Addr, out: &mut Vec<u8>) -> usize {
    emit_at(seg, src, dst, out, 0)
}

/// Byte offset of the checksum field in the TCP header (RFC 9293 section 3.1).
const CHECKSUM_OFFSET: usize = 16;
/// Byte of the TCP header whose high four bits are the data offset (RFC 9293 section
/// 3.1): the header's length in 32-bit words.
const DATA_OFFSET_BYTE: usize = 12;

/// Bytes of data in the TCP segment `bytes` after the header its data offset gives,
/// without parsing or checking anything else (what a receive budget counts); a segment
/// too short to say is all data.
pub fn data_len(bytes: &[u8]) -> usize {
    let header = bytes
        .get(DATA_OFFSET_BYTE)
        .map_or(0, |b| usize::from(b >> 4) * 4);
    bytes.len().saturating_sub(header)
}

/// [`emit`] after `headroom` bytes left for the headers below (the IP header, and the
/// link's), so that the interface fills them in place and the segment is never copied
/// again on its way to the device (`Interface::send_prebuilt`). The checksum is summed
/// over the written header, and over the payload while it is copied in
/// (`ustack_net::checksum::copy_add`).
///
/// # Panics
///
/// As [`emit`].
pub fn emit_at(
    seg: &Segment<'_>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    out: &mut Vec<u8>,
    headroom: usize,
) -> usize {
    let (options, sack_blocks) = encode_options(&seg.options);
    let header = TcpHeader {
        source_port: seg.src_port,
        destination_port: seg.dst_port,
        sequence_number: seg.seq.0,
        acknowledgment_number: seg.ack.0,
        ns: false,
        fin: seg.flags.fin,
        syn: seg.flags.syn,
        rst: seg.flags.rst,
        psh: seg.flags.psh,
        ack: seg.flags.ack,
        urg: seg.flags.urg,
        ece: seg.flags.ece,
        cwr: seg.flags.cwr,
        window_size: seg.window,
        checksum: 0,
        urgent_pointer: seg.urgent,
        options,
    };
    out.clear();
    out.resize(headroom, 0);
    // Written straight into `out` (`to_bytes` would build the header in an ArrayVec
    // first, to be copied again: about 3% of the tcp_send window bench).
    header.write(out).expect("writing to a Vec does not fail");
    let len = u16::try_from(out.len() - headroom + seg.payload.len())
        .ok()
        .filter(|len| usize::from(*len) + IPV4_HEADER_LEN <= usize::from(u16::MAX))
        .expect("TCP segment larger than an IPv4 datagram");
    let sum = checksum::pseudo_header(src.octets(), dst.octets(), IpNumber::TCP.0, len);
    // The header's length is a multiple of 4, so the payload starts at an even offset;
    // it is summed as it is copied in (one pass, `checksum::copy_add`).
    let sum = checksum::add(sum, &out[headroom..]);
    let field = checksum::finish(checksum::copy_add(sum, out, seg.payload));
    out[headroom + CHECKSUM_OFFSET..headroom + CHECKSUM_OFFSET + 2]
        .copy_from_slice(&field.to_be_bytes());
    sack_blocks
}

/// Elements of the option list in emit order, counting their bytes as they go.
struct OptionList {
    elements: [TcpOptionElement; MAX_OPTION_ELEMENTS],
    count: usize,
    len: usize,
}

impl OptionList {
    fn push(&mut self, element: TcpOptionElement, len: u8) {
        self.elements[self.count] = element;
        self.count += 1;
        self.len += usize::from(len);
    }
}

/// Lays `options` out in Linux order (see [`emit`]) and encodes them with etherparse.
/// Returns the encoded options and the number of SACK blocks that fit. etherparse can
/// write every element, NOPs included, so only the order and the SACK budget are ours.
fn encode_options(options: &TcpOptions) -> (etherparse::TcpOptions, usize) {
    use TcpOptionElement::{
        MaximumSegmentSize, Noop, SelectiveAcknowledgement, SelectiveAcknowledgementPermitted,
        Timestamp, WindowScale,
    };
    let mut list = OptionList {
        elements: std::array::from_fn(|_| Noop),
        count: 0,
        len: 0,
    };
    if let Some(mss) = options.mss {
        list.push(MaximumSegmentSize(mss), LEN_MAXIMUM_SEGMENT_SIZE);
    }
    match (options.timestamps, options.sack_permitted) {
        (Some((tsval, tsecr)), true) => {
            list.push(
                SelectiveAcknowledgementPermitted,
                LEN_SELECTIVE_ACK_PERMITTED,
            );
            list.push(Timestamp(tsval, tsecr), LEN_TIMESTAMP);
        }
        (Some((tsval, tsecr)), false) => {
            list.push(Noop, LEN_NOOP);
            list.push(Noop, LEN_NOOP);
            list.push(Timestamp(tsval, tsecr), LEN_TIMESTAMP);
        }
        (None, true) => {
            list.push(Noop, LEN_NOOP);
            list.push(Noop, LEN_NOOP);
            list.push(
                SelectiveAcknowledgementPermitted,
                LEN_SELECTIVE_ACK_PERMITTED,
            );
        }
        (None, false) => {}
    }
    if let Some(shift) = options.window_scale {
        list.push(Noop, LEN_NOOP);
        list.push(WindowScale(shift), LEN_WINDOW_SCALE);
    }
    let room = MAX_OPTIONS_LEN.saturating_sub(list.len + TWO_NOPS + OPTION_TLV_HEADER_LEN);
    let mut blocks = options
        .sack_blocks
        .iter()
        .flatten()
        .take(room / SACK_BLOCK_LEN)
        .map(|&(left, right)| (left.0, right.0));
    let mut sack_blocks = 0;
    if let Some(first) = blocks.next() {
        let more: [Option<(u32, u32)>; MAX_SACK_BLOCKS - 1] =
            std::array::from_fn(|_| blocks.next());
        sack_blocks = 1 + more.iter().flatten().count();
        let len = OPTION_TLV_HEADER_LEN + sack_blocks * SACK_BLOCK_LEN;
        list.push(Noop, LEN_NOOP);
        list.push(Noop, LEN_NOOP);
        list.push(SelectiveAcknowledgement(first, more), len as u8);
    }
    let encoded = etherparse::TcpOptions::try_from_elements(&list.elements[..list.count])
        .expect("options are budgeted to fit 40 bytes");
    debug_assert_eq!(encoded.len(), list.len);
    (encoded, sack_blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Option kinds (RFC 9293 section 3.2, RFC 7323, RFC 2018), as etherparse names them.
    use etherparse::tcp_option::{
        KIND_END, KIND_MAXIMUM_SEGMENT_SIZE, KIND_NOOP, KIND_SELECTIVE_ACK,
        KIND_SELECTIVE_ACK_PERMITTED, KIND_TIMESTAMP, KIND_WINDOW_SCALE,
    };
    use etherparse::TcpSlice;
    use proptest::prelude::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const CHECKSUM: std::ops::Range<usize> = 16..18;
    /// An option kind this stack does not implement.
    const UNKNOWN: u8 = 30;

    fn segment() -> Segment<'static> {
        Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(1000),
            ack: SeqNumber(0),
            flags: Flags::default(),
            window: 64240,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        }
    }

    fn flags(bits: u8) -> Flags {
        let bit = |n: u8| bits & (1 << n) != 0;
        Flags {
            fin: bit(0),
            syn: bit(1),
            rst: bit(2),
            psh: bit(3),
            ack: bit(4),
            urg: bit(5),
            ece: bit(6),
            cwr: bit(7),
        }
    }

    fn sack(blocks: &[(u32, u32)]) -> [Option<(SeqNumber, SeqNumber)>; MAX_SACK_BLOCKS] {
        std::array::from_fn(|i| blocks.get(i).map(|&(l, r)| (SeqNumber(l), SeqNumber(r))))
    }

    fn wire(seg: &Segment<'_>) -> Vec<u8> {
        let mut out = vec![0xaa; 7]; // emit clears what was there
        emit(seg, CLIENT, SERVER, &mut out);
        out
    }

    /// Recomputes the checksum of a hand-made or tampered segment from CLIENT to SERVER.
    fn fix_checksum(bytes: &mut [u8]) {
        bytes[CHECKSUM].fill(0);
        let sum = etherparse::checksum::Sum16BitWords::new()
            .add_4bytes(CLIENT.octets())
            .add_4bytes(SERVER.octets())
            .add_2bytes([0, IpNumber::TCP.0])
            .add_2bytes((bytes.len() as u16).to_be_bytes())
            .add_slice(bytes)
            .ones_complement();
        // Sum16BitWords adds native-endian words, so its result goes back the same way.
        bytes[CHECKSUM].copy_from_slice(&sum.to_ne_bytes());
    }

    /// A plain segment whose option bytes are `options` verbatim (a multiple of 4 long).
    fn with_raw_options(options: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let mut bytes = wire(&segment());
        bytes.extend_from_slice(options);
        bytes[DATA_OFFSET_BYTE] = ((bytes.len() / 4) as u8) << 4;
        fix_checksum(&mut bytes);
        bytes
    }

    /// RFC 9293 section 3.1: the data is what follows the header the data offset gives,
    /// options included in the header.
    #[test]
    fn data_len_is_what_follows_the_header() {
        let seg = Segment {
            payload: b"hello",
            ..segment()
        };
        assert_eq!(data_len(&wire(&seg)), 5);
        assert_eq!(data_len(&with_raw_options(&[KIND_NOOP; 8])), 0);
        assert_eq!(
            data_len(&wire(&segment())[..DATA_OFFSET_BYTE]),
            DATA_OFFSET_BYTE
        );
    }

    fn options_of(bytes: &[u8]) -> &[u8] {
        &bytes[MIN_HEADER_LEN..usize::from(bytes[DATA_OFFSET_BYTE] >> 4) * 4]
    }

    #[test]
    fn syn_with_every_option_is_laid_out_like_linux() {
        let syn = Segment {
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((0x0102_0304, 0)),
                ..TcpOptions::default()
            },
            ..segment()
        };
        let bytes = wire(&syn);
        #[rustfmt::skip]
        assert_eq!(options_of(&bytes), [
            KIND_MAXIMUM_SEGMENT_SIZE, 4, 0x05, 0xb4,
            KIND_SELECTIVE_ACK_PERMITTED, 2,
            KIND_TIMESTAMP, 10, 1, 2, 3, 4, 0, 0, 0, 0,
            KIND_NOOP,
            KIND_WINDOW_SCALE, 3, 7,
        ]);
        assert_eq!(syn.header_len(), 40);
        assert_eq!(bytes.len(), 40);
        assert_eq!(syn.seq_len(), 1);
        let etherparse_sum = TcpSlice::from_slice(&bytes)
            .unwrap()
            .calc_checksum_ipv4(CLIENT.octets(), SERVER.octets())
            .unwrap();
        assert_eq!(bytes[CHECKSUM], etherparse_sum.to_be_bytes());
        assert_eq!(parse(CLIENT, SERVER, &bytes), Ok(syn));
    }

    #[test]
    fn data_ack_with_timestamps_and_three_sack_blocks() {
        let data = Segment {
            seq: SeqNumber(1001),
            ack: SeqNumber(5001),
            flags: Flags {
                ack: true,
                psh: true,
                ..Flags::default()
            },
            options: TcpOptions {
                timestamps: Some((200, 100)),
                sack_blocks: sack(&[(7001, 8001), (9001, 10001), (11001, 12001)]),
                ..TcpOptions::default()
            },
            payload: b"GET / HTTP/1.1\r\n\r\n",
            ..segment()
        };
        let mut bytes = Vec::new();
        assert_eq!(emit(&data, CLIENT, SERVER, &mut bytes), 3);
        let options = options_of(&bytes);
        assert_eq!(options.len(), MAX_OPTIONS_LEN);
        assert_eq!(options[..3], [KIND_NOOP, KIND_NOOP, KIND_TIMESTAMP]);
        assert_eq!(
            options[12..16],
            [KIND_NOOP, KIND_NOOP, KIND_SELECTIVE_ACK, 26]
        );
        assert_eq!(data.header_len(), 60);
        assert_eq!(data.seq_len(), 18);
        assert_eq!(parse(CLIENT, SERVER, &bytes), Ok(data));
    }

    #[test]
    fn fourth_sack_block_is_dropped_next_to_timestamps() {
        let blocks = [(10, 20), (30, 40), (50, 60), (70, 80)];
        let ack = Segment {
            flags: Flags {
                ack: true,
                ..Flags::default()
            },
            options: TcpOptions {
                timestamps: Some((1, 2)),
                sack_blocks: sack(&blocks),
                ..TcpOptions::default()
            },
            ..segment()
        };
        let mut bytes = Vec::new();
        assert_eq!(emit(&ack, CLIENT, SERVER, &mut bytes), 3);
        assert_eq!(ack.header_len(), 60);
        let parsed = parse(CLIENT, SERVER, &bytes).unwrap();
        assert_eq!(parsed.options.sack_blocks, sack(&blocks[..3]));
    }

    #[test]
    fn four_sack_blocks_fit_without_timestamps() {
        let blocks = [(10, 20), (30, 40), (50, 60), (70, 80)];
        let ack = Segment {
            options: TcpOptions {
                sack_blocks: sack(&blocks),
                ..TcpOptions::default()
            },
            ..segment()
        };
        let mut bytes = Vec::new();
        assert_eq!(emit(&ack, CLIENT, SERVER, &mut bytes), 4);
        assert_eq!(bytes.len(), MIN_HEADER_LEN + 2 + 34);
        assert_eq!(parse(CLIENT, SERVER, &bytes), Ok(ack));
    }

    #[test]
    fn fin_round_trip() {
        let fin = Segment {
            flags: Flags {
                fin: true,
                ack: true,
                ..Flags::default()
            },
            ack: SeqNumber(u32::MAX),
            payload: b"bye",
            ..segment()
        };
        assert_eq!(fin.seq_len(), 4);
        assert_eq!(parse(CLIENT, SERVER, &wire(&fin)), Ok(fin));
    }

    #[test]
    fn rst_round_trip() {
        let rst = Segment {
            flags: Flags {
                rst: true,
                ..Flags::default()
            },
            window: 0,
            ..segment()
        };
        assert_eq!(rst.seq_len(), 0);
        assert_eq!(rst.header_len(), MIN_HEADER_LEN);
        assert_eq!(parse(CLIENT, SERVER, &wire(&rst)), Ok(rst));
    }

    #[test]
    fn wrong_addresses_fail_the_checksum() {
        let bytes = wire(&segment());
        assert_eq!(
            parse(CLIENT, Ipv4Addr::new(198, 51, 100, 8), &bytes),
            Err(WireError::BadChecksum)
        );
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let small = Segment {
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            options: TcpOptions {
                mss: Some(536),
                ..TcpOptions::default()
            },
            payload: b"hi!",
            ..segment()
        };
        let bytes = wire(&small);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 0x80 >> (bit % 8);
            let err = parse(CLIENT, SERVER, &flipped).unwrap_err();
            if bit / 8 == DATA_OFFSET_BYTE && bit % 8 < 4 {
                assert!(
                    matches!(err, WireError::BadDataOffset | WireError::BadChecksum),
                    "bit {bit}: {err:?}"
                );
            } else {
                assert_eq!(err, WireError::BadChecksum, "bit {bit}");
            }
        }
    }

    #[test]
    fn zero_checksum_has_two_encodings() {
        let mut bytes = wire(&Segment {
            payload: &[0, 0],
            ..segment()
        });
        // Payload words equal to the checksum make the sum 0xffff: the checksum becomes 0.
        let payload_at = bytes.len() - 2;
        let checksum: [u8; 2] = bytes[CHECKSUM].try_into().unwrap();
        bytes[payload_at..].copy_from_slice(&checksum);
        fix_checksum(&mut bytes);
        assert_eq!(bytes[CHECKSUM], [0, 0]);
        assert!(parse(CLIENT, SERVER, &bytes).is_ok());
        bytes[CHECKSUM].copy_from_slice(&[0xff, 0xff]);
        assert!(parse(CLIENT, SERVER, &bytes).is_ok());
    }

    #[test]
    fn truncated_inputs() {
        let seg = Segment {
            options: TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            },
            payload: b"data",
            ..segment()
        };
        let bytes = wire(&seg);
        for len in 0..bytes.len() {
            let expected = match len {
                0..MIN_HEADER_LEN => WireError::Truncated,
                MIN_HEADER_LEN..24 => WireError::BadDataOffset,
                _ => WireError::BadChecksum,
            };
            assert_eq!(parse(CLIENT, SERVER, &bytes[..len]), Err(expected), "{len}");
        }
        assert_eq!(parse(CLIENT, SERVER, &[0; 65536]), Err(WireError::TooLong));
    }

    #[test]
    fn bad_data_offset() {
        for (offset, extra) in [(0u8, 0), (4, 0), (6, 0), (15, 20)] {
            let mut bytes = wire(&segment());
            bytes.resize(MIN_HEADER_LEN + extra, 0);
            bytes[DATA_OFFSET_BYTE] = offset << 4;
            fix_checksum(&mut bytes);
            assert_eq!(
                parse(CLIENT, SERVER, &bytes),
                Err(WireError::BadDataOffset),
                "data offset {offset}"
            );
        }
    }

    #[test]
    fn malformed_option_lengths() {
        #[rustfmt::skip]
        let cases: [&[u8]; 8] = [
            &[UNKNOWN, 0, 0, 0],                                    // length 0
            &[UNKNOWN, 1, 0, 0],                                    // length 1
            &[KIND_NOOP, KIND_NOOP, KIND_NOOP, UNKNOWN],            // no length octet
            &[KIND_NOOP, KIND_NOOP, UNKNOWN, 4],                    // past the header
            &[KIND_NOOP, KIND_NOOP, KIND_MAXIMUM_SEGMENT_SIZE, 4],  // past the header
            &[KIND_MAXIMUM_SEGMENT_SIZE, 0, 0, 0],                  // length 0, known kind
            &[KIND_WINDOW_SCALE, 4, 7, KIND_NOOP],                  // wrong for the kind
            &[KIND_SELECTIVE_ACK, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // not 2 + 8n
        ];
        for options in cases {
            assert_eq!(
                parse(CLIENT, SERVER, &with_raw_options(options)),
                Err(WireError::BadOptions),
                "{options:?}"
            );
        }
    }

    #[test]
    fn unknown_options_are_skipped_and_eol_ends_the_list() {
        #[rustfmt::skip]
        let bytes = with_raw_options(&[
            UNKNOWN, 6, 0xde, 0xad, 0xbe, 0xef,
            KIND_MAXIMUM_SEGMENT_SIZE, 4, 0x05, 0xb4,
            KIND_END, KIND_WINDOW_SCALE, 1, 0, 0, 0, // after EOL: padding, not options
        ]);
        let seg = parse(CLIENT, SERVER, &bytes).unwrap();
        assert_eq!(
            seg.options,
            TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            }
        );
    }

    #[test]
    fn window_scale_above_14_is_clamped() {
        for (shift, used) in [(14, 14), (15, 14), (255, 14)] {
            let bytes = with_raw_options(&[KIND_NOOP, KIND_WINDOW_SCALE, 3, shift]);
            let seg = parse(CLIENT, SERVER, &bytes).unwrap();
            assert_eq!(seg.options.window_scale, Some(used));
        }
    }

    fn any_options() -> impl Strategy<Value = TcpOptions> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=MAX_SACK_BLOCKS),
            proptest::option::of(any::<(u32, u32)>()),
        )
            .prop_map(|(mss, window_scale, sack_permitted, blocks, timestamps)| {
                TcpOptions {
                    mss,
                    window_scale,
                    sack_permitted,
                    sack_blocks: sack(&blocks),
                    timestamps,
                }
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            src in any::<u32>(),
            dst in any::<u32>(),
        ) {
            let _ = parse(Ipv4Addr::from(src), Ipv4Addr::from(dst), &bytes);
        }

        #[test]
        fn parse_never_panics_past_a_good_checksum(
            mut bytes in proptest::collection::vec(any::<u8>(), MIN_HEADER_LEN..100),
        ) {
            fix_checksum(&mut bytes);
            if let Ok(seg) = parse(CLIENT, SERVER, &bytes) {
                prop_assert!(seg.payload.len() <= bytes.len() - MIN_HEADER_LEN);
            }
        }

        #[test]
        fn emit_then_parse_round_trips(
            (src_port, dst_port) in any::<(u16, u16)>(),
            (seq, ack) in any::<(u32, u32)>(),
            flag_bits in any::<u8>(),
            (window, urgent) in any::<(u16, u16)>(),
            options in any_options(),
            payload in proptest::collection::vec(any::<u8>(), 0..=1460),
        ) {
            let seg = Segment {
                src_port,
                dst_port,
                seq: SeqNumber(seq),
                ack: SeqNumber(ack),
                flags: flags(flag_bits),
                window,
                urgent,
                options,
                payload: &payload,
            };
            let mut bytes = Vec::new();
            let written = emit(&seg, CLIENT, SERVER, &mut bytes);
            let header_len = bytes.len() - payload.len();
            prop_assert_eq!(seg.header_len(), header_len);
            prop_assert!(header_len <= MIN_HEADER_LEN + MAX_OPTIONS_LEN);
            let given = options.sack_blocks.iter().flatten().count();
            prop_assert!(written <= given);
            if written < given {
                let next_block = SACK_BLOCK_LEN + if written == 0 { 4 } else { 0 };
                prop_assert!(header_len + next_block > MIN_HEADER_LEN + MAX_OPTIONS_LEN);
            }
            let mut expected = seg;
            expected.options.window_scale = options.window_scale.map(|s| s.min(MAX_WINDOW_SCALE));
            expected.options.sack_blocks[written..].fill(None);
            prop_assert_eq!(parse(CLIENT, SERVER, &bytes), Ok(expected));
            // With headroom: the same bytes after it, the checksum the same as etherparse's.
            let mut framed = vec![0xaa; 7];
            prop_assert_eq!(emit_at(&seg, CLIENT, SERVER, &mut framed, 34), written);
            prop_assert_eq!(&framed[..34], &[0u8; 34][..]);
            prop_assert_eq!(&framed[34..], &bytes[..]);
            let header = TcpHeaderSlice::from_slice(&bytes).unwrap().to_header();
            let theirs = header
                .calc_checksum_ipv4_raw(CLIENT.octets(), SERVER.octets(), &payload)
                .unwrap();
            prop_assert_eq!(header.checksum, theirs);
        }
    }
}
