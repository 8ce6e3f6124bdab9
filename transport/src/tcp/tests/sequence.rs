//! Sequence space: numbers are modulo 2^32 (RFC 9293 section 3.4), so a long connection
//! comes back to its own initial sequence number.

use super::*;

/// Period of the test stream: a prime, so that a stream shifted by any number of bytes
/// smaller than it shows.
const PERIOD: usize = 251;

/// Byte `i` of the test stream.
fn stream_byte(i: u64) -> u8 {
    (i % PERIOD as u64) as u8 ^ 0x5a
}

/// The sequence number of stream byte `offset` (the first data byte is ISS + 1).
fn seq_at(offset: u64) -> SeqNumber {
    SeqNumber((u64::from(ISS.0) + 1 + offset) as u32)
}

/// RFC 9293 section 3.4: sequence numbers wrap at 2^32, and the SYN occupies the first
/// one only once. A connection that sends more than 4 GiB, in writes that are not
/// multiples of the MSS, and receives an ACK landing exactly on ISS + 2^32 (which reads
/// as ISS again) removes exactly the acknowledged bytes from its send buffer and goes on
/// sending the exact stream.
#[test]
fn ack_on_iss_after_2_pow_32_bytes_keeps_the_stream_rfc9293_3_4() {
    let big_mss: u16 = 65_000;
    let mut s = syn_sent(TcpConfig {
        mss: big_mss,
        window_scaling: true,
        send_buffer: 4 << 20,
        nodelay: true,
        ..cfg()
    });
    s.now += RTT;
    send!(
        s,
        Segment {
            seq: IRS,
            ack: ISS + 1,
            flags: SYN_ACK,
            options: TcpOptions {
                mss: Some(big_mss),
                window_scale: Some(14),
                ..NO_OPTIONS
            },
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.state(), State::Established);
    assert!(s.conn.poll_transmit(s.now).is_some(), "the handshake's ACK");
    // The first byte of data is ISS + 1, so ISS + 2^32 follows 2^32 - 1 bytes.
    let total: u64 = (1 << 32) + 16 * 1_000_003;
    let wrap_at: u64 = (1 << 32) - 1;
    assert_eq!(seq_at(wrap_at), ISS);
    // A write of 1_000_003 bytes from the stream, starting at any phase of the period.
    let source: Vec<u8> = (0..1_000_003 + PERIOD as u64).map(stream_byte).collect();
    let (mut written, mut sent, mut acked_at_iss) = (0u64, 0u64, false);
    while sent < total {
        while written < total {
            let phase = (written % PERIOD as u64) as usize;
            let len = (total - written).min(1_000_003) as usize;
            let n = s.send(&source[phase..phase + len]).unwrap();
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        let mut ends = Vec::new();
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            let offset = sent;
            assert_eq!(seg.seq, seq_at(offset));
            let phase = (offset % PERIOD as u64) as usize;
            assert!(
                seg.payload == &source[phase..phase + seg.payload.len()],
                "stream bytes differ at offset {offset}"
            );
            sent += seg.payload.len() as u64;
            ends.push(sent);
        }
        assert!(!ends.is_empty(), "stalled at {sent} of {total}");
        for end in ends {
            if !acked_at_iss && end > wrap_at {
                // The peer acknowledges exactly up to ISS + 2^32 first.
                send!(s, peer_ack(ISS));
                acked_at_iss = true;
            }
            send!(s, peer_ack(seq_at(end)));
        }
    }
    assert!(acked_at_iss);
    assert_eq!(s.send_queue(), 0);
    assert_eq!(s.stats().retransmits, 0);
}
