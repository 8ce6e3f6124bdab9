//! Fuzzes the receive path of an established TCP connection: segments decoded from the
//! input by `wire::parse` (sequence and ACK numbers taken relative to the connection's, the
//! checksum fixed up so the segment gets past it) mixed with sends, reads, closes and
//! timers. Any panic is a bug, and every segment the connection sends must survive
//! `wire::emit` and `wire::parse`.
//!
//! Input: one byte of options (bit 0 window scaling, 1 timestamps, 2 SACK, 3 nodelay),
//! then records of [command][wait, in 10 ms][segment length, 2 bytes][segment bytes].
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use ustack_transport::net::link::{Duration, Instant};
use ustack_transport::tcp::wire::{self, Flags, Segment, TcpOptions};
use ustack_transport::tcp::{Connection, Opening, SeqNumber, TcpConfig};

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
const ISS: SeqNumber = SeqNumber(1000);
const IRS: SeqNumber = SeqNumber(5000);
/// Offsets of the sequence number, ACK number and checksum in the TCP header.
const SEQ: std::ops::Range<usize> = 4..8;
const ACK: std::ops::Range<usize> = 8..12;
const CHECKSUM: std::ops::Range<usize> = 16..18;

/// RFC 9293 section 3.1 checksum over the IPv4 pseudo-header and `tcp`.
fn checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6]);
    add(&(tcp.len() as u16).to_be_bytes());
    add(tcp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends everything the connection has; each segment must encode and decode unchanged
/// (but for SACK blocks that did not fit).
fn drain(conn: &mut Connection, now: Instant, out: &mut Vec<u8>) {
    for _ in 0..100_000 {
        let Some(seg) = conn.poll_transmit(now) else {
            return;
        };
        let blocks = wire::emit(&seg, *LOCAL.ip(), *REMOTE.ip(), out);
        let mut expected = seg;
        for slot in expected.options.sack_blocks.iter_mut().skip(blocks) {
            *slot = None;
        }
        assert_eq!(wire::parse(*LOCAL.ip(), *REMOTE.ip(), out), Ok(expected));
    }
    panic!("poll_transmit never returned None: {}", conn.summary());
}

fuzz_target!(|data: &[u8]| {
    let Some((&bits, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = TcpConfig {
        window_scaling: bits & 1 != 0,
        timestamps: bits & 2 != 0,
        sack: bits & 4 != 0,
        nodelay: bits & 8 != 0,
        recv_buffer: 64 * 1024,
        ..TcpConfig::default()
    };
    let mut now = Instant::from_secs(10);
    let mut out = Vec::new();
    let mut conn = Connection::connect(
        now,
        Opening {
            local: LOCAL,
            remote: REMOTE,
            iss: ISS,
            ts_offset: 0,
        },
        cfg.clone(),
    );
    drain(&mut conn, now, &mut out);
    now += Duration::from_millis(50);
    let syn_ack = Segment {
        src_port: REMOTE.port(),
        dst_port: LOCAL.port(),
        seq: IRS,
        ack: ISS + 1,
        flags: Flags {
            syn: true,
            ack: true,
            ..Flags::default()
        },
        window: 65535,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: cfg.window_scaling.then_some(7),
            sack_permitted: cfg.sack,
            timestamps: cfg.timestamps.then_some((1, 10_000)),
            ..TcpOptions::default()
        },
        payload: &[],
    };
    conn.handle_segment(now, &syn_ack);
    drain(&mut conn, now, &mut out);

    let pattern: Vec<u8> = (0..=255).cycle().take(64 * 1024).collect();
    let mut buf = vec![0; 64 * 1024];
    let mut bytes = Vec::new();
    while let [command, wait, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (segment, next) = tail.split_at(len);
        rest = next;

        let until = now + Duration::from_millis(u64::from(*wait) * 10);
        while let Some(at) = conn.poll_timeout().filter(|&at| at <= until) {
            now = at;
            conn.on_timeout(now);
            drain(&mut conn, now, &mut out);
        }
        now = until;

        match command & 0x0f {
            1 => {
                let n = usize::from(*wait) * 97 % pattern.len();
                let _ = conn.send(&pattern[..n]);
            }
            2 => {
                let _ = conn.recv(&mut buf[..usize::from(*wait) * 257]);
            }
            3 => conn.shutdown_write(),
            4 if *command == 0xf4 => conn.abort(),
            _ => {}
        }
        drain(&mut conn, now, &mut out);

        if segment.len() < wire::MIN_HEADER_LEN {
            continue;
        }
        // Sequence and ACK numbers as offsets from RCV.NXT and SND.UNA at the start, so
        // that small values land in the windows; then a valid checksum.
        bytes.clear();
        bytes.extend_from_slice(segment);
        let relative = |field: &[u8], base: SeqNumber| {
            let offset = u32::from_be_bytes(field.try_into().unwrap());
            base.0.wrapping_add(offset).to_be_bytes()
        };
        let seq = relative(&bytes[SEQ], IRS + 1);
        let ack = relative(&bytes[ACK], ISS + 1);
        bytes[SEQ].copy_from_slice(&seq);
        bytes[ACK].copy_from_slice(&ack);
        bytes[CHECKSUM].fill(0);
        let sum = checksum(*REMOTE.ip(), *LOCAL.ip(), &bytes);
        bytes[CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        if let Ok(seg) = wire::parse(*REMOTE.ip(), *LOCAL.ip(), &bytes) {
            conn.handle_segment(now, &seg);
            drain(&mut conn, now, &mut out);
        }
    }
});
