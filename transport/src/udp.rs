//! UDP (RFC 768) as a sans-IO socket table.
//!
//! The table never touches an [`net::Interface`](crate::net::Interface): the caller hands
//! it each UDP datagram the network layer delivered ([`UdpTable::receive`]) and sends what
//! [`UdpTable::encode`] builds. When `receive` answers [`UdpInput::PortUnreachable`], the
//! caller reports it with `Interface::send_port_unreachable` (RFC 1122 section 4.1.3.1).
//!
//! Every datagram in is counted exactly once: delivered (`datagrams_in`), `no_port`,
//! or dropped for one [`UdpDrop`] reason.

use core::fmt;
use core::ops::RangeInclusive;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{UdpHeader, UdpHeaderSlice};

use crate::net::ipv4::{MAX_DATAGRAM_LEN, MIN_HEADER_LEN};
use crate::ports::{PortAllocator, EPHEMERAL_PORTS};

/// The largest payload of one UDP datagram over IPv4 without options: 65535 - 20 - 8.
pub const MAX_PAYLOAD_LEN: usize = MAX_DATAGRAM_LEN - MIN_HEADER_LEN - UdpHeader::LEN;

/// Settings of a [`UdpTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Datagrams a socket holds before arrivals are dropped as [`UdpDrop::QueueFull`].
    pub recv_queue_datagrams: usize,
    /// Payload bytes a socket holds; a datagram that would exceed it is dropped.
    pub recv_queue_bytes: usize,
    /// Ports that [`UdpTable::bind`] picks from for port 0 (RFC 6335 section 6 range by
    /// default).
    pub ephemeral_ports: RangeInclusive<u16>,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig {
            recv_queue_datagrams: 256,
            recv_queue_bytes: 1 << 20,
            ephemeral_ports: EPHEMERAL_PORTS,
        }
    }
}

/// A socket of a [`UdpTable`]. Handles are never reused, so a closed handle stays closed
/// even after its port is bound again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpHandle(u64);

impl fmt::Display for UdpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp#{}", self.0)
    }
}

/// What [`UdpTable::receive`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpInput {
    /// Queued on this socket.
    Delivered(UdpHandle),
    /// Valid, but no socket is bound to its destination: the caller sends ICMP port
    /// unreachable.
    PortUnreachable,
    /// Discarded and counted.
    Dropped(UdpDrop),
}

crate::net::link::counters! {
    /// Counters of a [`UdpTable`], named after Linux's UDP MIB where one exists.
    pub struct UdpStats {
        /// Datagrams queued on a socket (Linux `InDatagrams`).
        pub datagrams_in: u64,
        /// Datagrams encoded for sending (`OutDatagrams`).
        pub datagrams_out: u64,
        /// Payload bytes of `datagrams_in`.
        pub bytes_in: u64,
        /// Payload bytes of `datagrams_out`.
        pub bytes_out: u64,
        /// Valid datagrams for a port nobody is bound to (`NoPorts`).
        pub no_port: u64,
        /// Dropped: [`UdpDrop::BadChecksum`] (`InCsumErrors`).
        pub checksum_errors: u64,
        /// Dropped: [`UdpDrop::QueueFull`] (`RcvbufErrors`).
        pub queue_full: u64,
        /// Dropped: [`UdpDrop::Truncated`].
        pub truncated: u64,
        /// Accepted datagrams that carried no checksum (zero, RFC 768).
        pub no_checksum: u64,
        /// Datagrams cut short by a [`UdpTable::recv_from`] buffer smaller than them.
        pub recv_truncated: u64,
        /// [`UdpTable::encode`] calls refused with a [`UdpSendError`].
        pub send_errors: u64,
    }
}

crate::net::link::counters! {
    /// Why a received datagram was discarded, and the [`UdpStats`] counter it adds to.
    pub enum UdpDrop in UdpStats {
        /// Shorter than the 8-byte header, or a length field below 8 or beyond the bytes
        /// received (RFC 768: length counts header and data).
        Truncated => truncated,
        /// Non-zero checksum that does not match the pseudo header, header and data.
        BadChecksum => checksum_errors,
        /// The socket's receive queue is at its datagram or byte bound.
        QueueFull => queue_full,
    }
}

/// Why [`UdpTable::bind`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The port is bound to the same address, or one of the two addresses is 0.0.0.0.
    #[error("UDP port {0} is already in use")]
    AddrInUse(u16),
    #[error("no free UDP port left in the ephemeral range")]
    NoEphemeralPort,
}

/// Why [`UdpTable::encode`] refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpSendError {
    #[error("UDP socket is closed")]
    Closed,
    #[error("UDP payload of {len} bytes exceeds the IPv4 maximum of {MAX_PAYLOAD_LEN}")]
    TooLarge { len: usize },
    /// Destination port 0 or address 0.0.0.0.
    #[error("cannot send UDP to {0}")]
    BadDestination(SocketAddrV4),
    /// The socket is bound to one address and the caller sends from another: the
    /// checksum would not match what the receiver's pseudo header holds.
    #[error("UDP socket bound to {bound} cannot send from {src}")]
    SourceMismatch { bound: Ipv4Addr, src: Ipv4Addr },
}

/// Why [`UdpTable::recv_from`] failed. A buffer smaller than the datagram is not an
/// error: as with `std::net::UdpSocket::recv_from`, the rest is discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpRecvError {
    #[error("UDP socket is closed")]
    Closed,
}

/// Validates a datagram from `src` to `dst`: RFC 768 length and checksum (zero means the
/// sender computed none). Bytes beyond the length field are link padding and ignored.
/// `verify` false: the device vouched for the checksum (see [`UdpTable::receive_trusted`]).
fn parse(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    datagram: &[u8],
    verify: bool,
) -> Result<(UdpHeader, &[u8]), UdpDrop> {
    let header = UdpHeaderSlice::from_slice(datagram)
        .map_err(|_| UdpDrop::Truncated)?
        .to_header();
    let len = usize::from(header.length);
    if len < UdpHeader::LEN || len > datagram.len() {
        return Err(UdpDrop::Truncated);
    }
    let payload = &datagram[UdpHeader::LEN..len];
    if verify && header.checksum != 0 {
        let expected = header
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload)
            .map_err(|_| UdpDrop::Truncated)?;
        if expected != header.checksum {
            return Err(UdpDrop::BadChecksum);
        }
    }
    Ok((header, payload))
}

/// The header of a datagram from the socket bound to `local`, sent from `src_ip` to
/// `dst`, with its checksum over the pseudo header (RFC 768).
fn header(
    local: SocketAddrV4,
    src_ip: Ipv4Addr,
    dst: SocketAddrV4,
    data: &[u8],
) -> Result<UdpHeader, UdpSendError> {
    let too_large = UdpSendError::TooLarge { len: data.len() };
    if data.len() > MAX_PAYLOAD_LEN {
        return Err(too_large);
    }
    if dst.port() == 0 || dst.ip().is_unspecified() {
        return Err(UdpSendError::BadDestination(dst));
    }
    let bound = *local.ip();
    if !bound.is_unspecified() && bound != src_ip {
        return Err(UdpSendError::SourceMismatch { bound, src: src_ip });
    }
    let mut header = UdpHeader::without_ipv4_checksum(local.port(), dst.port(), data.len())
        .map_err(|_| too_large)?;
    header.checksum = header
        .calc_checksum_ipv4_raw(src_ip.octets(), dst.ip().octets(), data)
        .map_err(|_| too_large)?;
    Ok(header)
}

/// Whether any socket is bound to `port`, on any address.
fn port_in_use(bindings: &BTreeMap<(u16, Ipv4Addr), UdpHandle>, port: u16) -> bool {
    let all = (port, Ipv4Addr::UNSPECIFIED)..=(port, Ipv4Addr::BROADCAST);
    bindings.range(all).next().is_some()
}

#[derive(Debug)]
struct Queued {
    from: SocketAddrV4,
    data: Box<[u8]>,
}

#[derive(Debug)]
struct Socket {
    local: SocketAddrV4,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
}

/// All UDP sockets of one host.
#[derive(Debug)]
pub struct UdpTable {
    cfg: UdpConfig,
    sockets: BTreeMap<UdpHandle, Socket>,
    /// `(port, local address)` to socket; 0.0.0.0 is the wildcard.
    bindings: BTreeMap<(u16, Ipv4Addr), UdpHandle>,
    next_handle: u64,
    ephemeral: PortAllocator,
    stats: UdpStats,
}

impl UdpTable {
    /// A table whose first ephemeral port is the first of the range.
    pub fn new(cfg: UdpConfig) -> UdpTable {
        let ephemeral = PortAllocator::new(cfg.ephemeral_ports.clone());
        UdpTable::with_ports(cfg, ephemeral)
    }

    /// A table whose first ephemeral port is derived from `seed` (the stack's seed).
    pub fn seeded(cfg: UdpConfig, seed: u64) -> UdpTable {
        let ephemeral = PortAllocator::seeded(cfg.ephemeral_ports.clone(), seed);
        UdpTable::with_ports(cfg, ephemeral)
    }

    fn with_ports(cfg: UdpConfig, ephemeral: PortAllocator) -> UdpTable {
        UdpTable {
            ephemeral,
            cfg,
            sockets: BTreeMap::new(),
            bindings: BTreeMap::new(),
            next_handle: 0,
            stats: UdpStats::default(),
        }
    }

    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// Binds a socket to `local`. Port 0 picks the next free port of the ephemeral range
    /// after the last one picked, wrapping around (see [`PortAllocator`]); a picked port
    /// is free on every address.
    pub fn bind(&mut self, local: SocketAddrV4) -> Result<UdpHandle, BindError> {
        let addr = *local.ip();
        let port = match local.port() {
            0 => {
                let bindings = &self.bindings;
                self.ephemeral
                    .pick(|port| port_in_use(bindings, port))
                    .ok_or(BindError::NoEphemeralPort)?
            }
            port if self.conflicts(addr, port) => return Err(BindError::AddrInUse(port)),
            port => port,
        };
        let handle = UdpHandle(self.next_handle);
        self.next_handle += 1;
        self.bindings.insert((port, addr), handle);
        self.sockets.insert(
            handle,
            Socket {
                local: SocketAddrV4::new(addr, port),
                queue: VecDeque::new(),
                queued_bytes: 0,
            },
        );
        Ok(handle)
    }

    /// Unbinds the socket and discards what it has queued. Closing twice is harmless.
    pub fn close(&mut self, h: UdpHandle) {
        if let Some(socket) = self.sockets.remove(&h) {
            self.bindings
                .remove(&(socket.local.port(), *socket.local.ip()));
        }
    }

    pub fn local_addr(&self, h: UdpHandle) -> Option<SocketAddrV4> {
        self.sockets.get(&h).map(|s| s.local)
    }

    fn conflicts(&self, addr: Ipv4Addr, port: u16) -> bool {
        if addr.is_unspecified() {
            port_in_use(&self.bindings, port)
        } else {
            self.bindings.contains_key(&(port, addr))
                || self.bindings.contains_key(&(port, Ipv4Addr::UNSPECIFIED))
        }
    }

    /// The socket for a datagram to `addr:port`: bound to exactly that address, else to
    /// 0.0.0.0.
    fn lookup(&self, addr: Ipv4Addr, port: u16) -> Option<UdpHandle> {
        self.bindings
            .get(&(port, addr))
            .or_else(|| self.bindings.get(&(port, Ipv4Addr::UNSPECIFIED)))
            .copied()
    }

    /// A UDP datagram (header and payload, as the network layer delivers it) from `src`
    /// to `dst`: validated (RFC 768), then queued on the socket bound to its destination
    /// within the queue bounds. The checksum is checked before the port, as Linux does,
    /// so a corrupted datagram is never answered with port unreachable.
    pub fn receive(&mut self, src: Ipv4Addr, dst: Ipv4Addr, datagram: &[u8]) -> UdpInput {
        self.receive_checked(src, dst, datagram, true)
    }

    /// [`UdpTable::receive`] of a datagram whose device vouched for its checksum: it
    /// verified it (virtio `DATA_VALID`), or the datagram came from the local kernel with
    /// only the pseudo-header sum in the field (virtio `NEEDS_CSUM`), which Linux's
    /// `skb_csum_unnecessary` does not verify either.
    pub fn receive_trusted(&mut self, src: Ipv4Addr, dst: Ipv4Addr, datagram: &[u8]) -> UdpInput {
        self.receive_checked(src, dst, datagram, false)
    }

    fn receive_checked(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        datagram: &[u8],
        verify: bool,
    ) -> UdpInput {
        let (header, payload) = match parse(src, dst, datagram, verify) {
            Ok(parsed) => parsed,
            Err(reason) => {
                self.stats.increment(reason);
                return UdpInput::Dropped(reason);
            }
        };
        let found = self.lookup(dst, header.destination_port);
        let Some((handle, socket)) = found.and_then(|h| self.sockets.get_mut(&h).map(|s| (h, s)))
        else {
            self.stats.no_port += 1;
            return UdpInput::PortUnreachable;
        };
        if socket.queue.len() >= self.cfg.recv_queue_datagrams
            || socket.queued_bytes + payload.len() > self.cfg.recv_queue_bytes
        {
            self.stats.increment(UdpDrop::QueueFull);
            return UdpInput::Dropped(UdpDrop::QueueFull);
        }
        socket.queue.push_back(Queued {
            from: SocketAddrV4::new(src, header.source_port),
            data: payload.into(),
        });
        socket.queued_bytes += payload.len();
        if header.checksum == 0 {
            self.stats.no_checksum += 1;
        }
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        UdpInput::Delivered(handle)
    }

    /// Encodes header and `data` from socket `h` to `dst` into `out` (cleared first),
    /// ready for `Interface::send(now, *dst.ip(), IpNumber::UDP, out)`. `src_ip` is the
    /// address the network layer sends from; it enters the checksum's pseudo header.
    /// RFC 768: a computed checksum of zero is sent as all ones (etherparse does this).
    pub fn encode(
        &mut self,
        h: UdpHandle,
        src_ip: Ipv4Addr,
        dst: SocketAddrV4,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), UdpSendError> {
        out.clear();
        let header = self
            .sockets
            .get(&h)
            .ok_or(UdpSendError::Closed)
            .and_then(|socket| header(socket.local, src_ip, dst, data));
        match header {
            Ok(header) => {
                out.reserve(UdpHeader::LEN + data.len());
                out.extend_from_slice(&header.to_bytes());
                out.extend_from_slice(data);
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.stats.send_errors += 1;
                Err(e)
            }
        }
    }

    /// The next queued datagram of `h`, copied into `buf`: `(bytes copied, sender)`.
    /// Like `std::net::UdpSocket::recv_from`, a datagram longer than `buf` is cut to fit
    /// and the rest discarded (counted as `recv_truncated`); [`UdpTable::peek_len`] tells
    /// the size to expect. `Ok(None)`: nothing queued.
    pub fn recv_from(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddrV4)>, UdpRecvError> {
        let socket = self.sockets.get_mut(&h).ok_or(UdpRecvError::Closed)?;
        let Some(datagram) = socket.queue.pop_front() else {
            return Ok(None);
        };
        socket.queued_bytes -= datagram.data.len();
        let n = datagram.data.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram.data[..n]);
        if n < datagram.data.len() {
            self.stats.recv_truncated += 1;
        }
        Ok(Some((n, datagram.from)))
    }

    /// Payload length of the next queued datagram of `h`.
    pub fn peek_len(&self, h: UdpHandle) -> Option<usize> {
        self.sockets.get(&h)?.queue.front().map(|d| d.data.len())
    }

    pub fn has_data(&self, h: UdpHandle) -> bool {
        self.sockets.get(&h).is_some_and(|s| !s.queue.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn table() -> UdpTable {
        UdpTable::new(UdpConfig::default())
    }

    fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip, port)
    }

    /// A datagram from `src` to `dst` with a correct checksum, built by a throwaway
    /// sender table.
    fn datagram(src: SocketAddrV4, dst: SocketAddrV4, data: &[u8]) -> Vec<u8> {
        let mut sender = table();
        let h = sender.bind(src).unwrap();
        let mut out = Vec::new();
        sender.encode(h, *src.ip(), dst, data, &mut out).unwrap();
        out
    }

    fn recv(t: &mut UdpTable, h: UdpHandle) -> Option<(Vec<u8>, SocketAddrV4)> {
        let mut buf = [0u8; 2048];
        let (n, from) = t.recv_from(h, &mut buf).unwrap()?;
        Some((buf[..n].to_vec(), from))
    }

    /// Datagrams accounted for by the counters of `receive`.
    fn accounted(s: &UdpStats) -> u64 {
        s.datagrams_in + s.no_port + UdpDrop::ALL.iter().map(|r| s.get(*r)).sum::<u64>()
    }

    #[test]
    fn bind_explicit_ephemeral_and_addr_in_use() {
        let mut t = table();
        let dns = t.bind(sa(A, 53)).unwrap();
        assert_eq!(t.local_addr(dns), Some(sa(A, 53)));
        assert_eq!(t.bind(sa(A, 53)), Err(BindError::AddrInUse(53)));
        assert_eq!(
            t.bind(sa(Ipv4Addr::UNSPECIFIED, 53)),
            Err(BindError::AddrInUse(53))
        );
        let dns_b = t.bind(sa(B, 53)).unwrap();
        assert_ne!(dns, dns_b);

        let any = t.bind(sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
        assert_eq!(t.bind(sa(A, 7)), Err(BindError::AddrInUse(7)));
        t.close(any);
        t.bind(sa(A, 7)).unwrap();

        let e1 = t.bind(sa(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let e2 = t.bind(sa(A, 0)).unwrap();
        assert_eq!(t.local_addr(e1), Some(sa(Ipv4Addr::UNSPECIFIED, 49152)));
        assert_eq!(t.local_addr(e2), Some(sa(A, 49153)));
        // The next pick follows the last one, not the lowest free port.
        t.close(e1);
        let e3 = t.bind(sa(B, 0)).unwrap();
        assert_eq!(t.local_addr(e3), Some(sa(B, 49154)));
    }

    #[test]
    fn ephemeral_range_wraps_skips_bound_ports_and_runs_out() {
        let mut t = UdpTable::new(UdpConfig {
            ephemeral_ports: 50000..=50003,
            ..UdpConfig::default()
        });
        let taken = t.bind(sa(A, 50001)).unwrap();
        let mut pick = || {
            let h = t.bind(sa(A, 0)).unwrap();
            (h, t.local_addr(h).unwrap().port())
        };
        let picked = [pick(), pick(), pick()];
        assert_eq!(picked.map(|(_, port)| port), [50000, 50002, 50003]);
        assert_eq!(t.bind(sa(B, 0)), Err(BindError::NoEphemeralPort));

        // After 50003 the search wraps to the start of the range.
        t.close(taken);
        t.close(picked[0].0);
        let h = t.bind(sa(B, 0)).unwrap();
        assert_eq!(t.local_addr(h), Some(sa(B, 50000)));
        let h = t.bind(sa(B, 0)).unwrap();
        assert_eq!(t.local_addr(h), Some(sa(B, 50001)));

        let mut empty = UdpTable::new(UdpConfig {
            ephemeral_ports: RangeInclusive::new(5, 4),
            ..UdpConfig::default()
        });
        assert_eq!(empty.bind(sa(A, 0)), Err(BindError::NoEphemeralPort));
        let mut zero = UdpTable::new(UdpConfig {
            ephemeral_ports: 0..=0,
            ..UdpConfig::default()
        });
        assert_eq!(zero.bind(sa(A, 0)), Err(BindError::NoEphemeralPort));
    }

    #[test]
    fn encode_then_receive_round_trip() {
        let mut client = table();
        let mut server = table();
        let c = client.bind(sa(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let s = server.bind(sa(B, 7)).unwrap();

        let mut wire = Vec::new();
        client.encode(c, A, sa(B, 7), b"hello", &mut wire).unwrap();
        // 49152 -> 7, length 13, checksum over the pseudo header, then the data.
        assert_eq!(&wire[..6], &[0xc0, 0x00, 0x00, 0x07, 0x00, 0x0d]);
        assert_ne!(&wire[6..8], &[0, 0]);
        assert_eq!(&wire[8..], b"hello");
        assert_eq!(client.stats().datagrams_out, 1);
        assert_eq!(client.stats().bytes_out, 5);

        assert!(!server.has_data(s));
        assert_eq!(server.receive(A, B, &wire), UdpInput::Delivered(s));
        assert!(server.has_data(s));
        assert_eq!(server.peek_len(s), Some(5));
        assert_eq!(
            recv(&mut server, s),
            Some((b"hello".to_vec(), sa(A, 49152)))
        );
        assert_eq!(recv(&mut server, s), None);
        assert!(!server.has_data(s));

        let st = server.stats();
        assert_eq!((st.datagrams_in, st.bytes_in, st.no_checksum), (1, 5, 0));

        // The reply goes back to where the request came from.
        server.encode(s, B, sa(A, 49152), b"", &mut wire).unwrap();
        assert_eq!(wire.len(), 8);
        assert_eq!(client.receive(B, A, &wire), UdpInput::Delivered(c));
        assert_eq!(recv(&mut client, c), Some((Vec::new(), sa(B, 7))));
    }

    /// A datagram the device vouched for (virtio NEEDS_CSUM: only the pseudo-header sum
    /// in the field) is delivered without the check the same bytes fail otherwise.
    #[test]
    fn a_trusted_checksum_is_not_verified() {
        let mut t = table();
        let s = t.bind(sa(B, 7)).unwrap();
        let mut partial = datagram(sa(A, 1000), sa(B, 7), b"payload");
        partial[6] ^= 0x5a;
        assert_eq!(
            t.receive(A, B, &partial),
            UdpInput::Dropped(UdpDrop::BadChecksum)
        );
        assert_eq!(t.receive_trusted(A, B, &partial), UdpInput::Delivered(s));
        assert_eq!(
            t.receive_trusted(A, B, &partial[..7]),
            UdpInput::Dropped(UdpDrop::Truncated)
        );
    }

    #[test]
    fn corrupted_datagrams_fail_the_checksum() {
        let mut t = table();
        let s = t.bind(sa(B, 7)).unwrap();
        let good = datagram(sa(A, 1000), sa(B, 7), b"payload");

        let mut flipped = good.clone();
        flipped[10] ^= 0x01;
        assert_eq!(
            t.receive(A, B, &flipped),
            UdpInput::Dropped(UdpDrop::BadChecksum)
        );
        let mut bad_sum = good.clone();
        bad_sum[7] ^= 0x80;
        assert_eq!(
            t.receive(A, B, &bad_sum),
            UdpInput::Dropped(UdpDrop::BadChecksum)
        );
        // The pseudo header counts: the same bytes from another source fail too.
        let other = Ipv4Addr::new(198, 18, 0, 3);
        assert_eq!(
            t.receive(other, B, &good),
            UdpInput::Dropped(UdpDrop::BadChecksum)
        );
        // Checked before the port: a corrupted datagram earns no port unreachable.
        let stray = datagram(sa(A, 1000), sa(B, 9), b"x");
        let mut stray_bad = stray.clone();
        stray_bad[8] ^= 0xff;
        assert_eq!(
            t.receive(A, B, &stray_bad),
            UdpInput::Dropped(UdpDrop::BadChecksum)
        );

        assert_eq!(t.stats().checksum_errors, 4);
        assert!(!t.has_data(s));
        assert_eq!(t.receive(A, B, &good), UdpInput::Delivered(s));
    }

    #[test]
    fn zero_checksum_means_none_and_is_accepted() {
        let mut t = table();
        let s = t.bind(sa(B, 53)).unwrap();
        // 12345 -> 53, length 12, checksum 0 (not computed), "ping".
        let wire = [
            0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'p', b'i', b'n', b'g',
        ];
        assert_eq!(t.receive(A, B, &wire), UdpInput::Delivered(s));
        assert_eq!(recv(&mut t, s), Some((b"ping".to_vec(), sa(A, 12345))));
        assert_eq!(t.stats().no_checksum, 1);
    }

    #[test]
    fn computed_zero_checksum_is_sent_as_all_ones() {
        let mut t = table();
        let h = t.bind(sa(A, 4000)).unwrap();
        let mut wire = Vec::new();
        t.encode(h, A, sa(B, 5000), &[0, 0], &mut wire).unwrap();
        // Data equal to the checksum of zero data makes the one's complement sum all
        // ones, so the computed checksum is zero (RFC 768).
        let data = [wire[6], wire[7]];
        t.encode(h, A, sa(B, 5000), &data, &mut wire).unwrap();
        assert_eq!(&wire[6..8], &[0xff, 0xff]);

        let mut rx = table();
        let s = rx.bind(sa(B, 5000)).unwrap();
        assert_eq!(rx.receive(A, B, &wire), UdpInput::Delivered(s));
        assert_eq!(rx.stats().no_checksum, 0);
    }

    #[test]
    fn length_field_must_fit_header_and_bytes_given() {
        let mut t = table();
        let s = t.bind(sa(B, 7)).unwrap();
        let truncated = UdpInput::Dropped(UdpDrop::Truncated);
        assert_eq!(t.receive(A, B, &[]), truncated);
        assert_eq!(
            t.receive(A, B, &[0x30, 0x39, 0x00, 0x07, 0x00, 0x08, 0x00]),
            truncated
        );
        // Length 7: below the header.
        let short_len = [0x30, 0x39, 0x00, 0x07, 0x00, 0x07, 0x00, 0x00, 0xaa];
        assert_eq!(t.receive(A, B, &short_len), truncated);
        // Length 0 (a jumbogram marker only in IPv6): below the header too.
        let zero_len = [0x30, 0x39, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(t.receive(A, B, &zero_len), truncated);
        // Length 13 but only 12 bytes arrived.
        let mut cut = datagram(sa(A, 1), sa(B, 7), b"hello");
        cut.pop();
        assert_eq!(t.receive(A, B, &cut), truncated);
        assert_eq!(t.stats().truncated, 5);

        // Bytes beyond the length field are padding: ignored, checksum still good.
        let mut padded = datagram(sa(A, 1), sa(B, 7), b"hello");
        padded.extend_from_slice(&[0, 0, 0xde, 0xad]);
        assert_eq!(t.receive(A, B, &padded), UdpInput::Delivered(s));
        assert_eq!(recv(&mut t, s), Some((b"hello".to_vec(), sa(A, 1))));
        // Header only, length 8: an empty datagram.
        let empty = [0x30, 0x39, 0x00, 0x07, 0x00, 0x08, 0x00, 0x00];
        assert_eq!(t.receive(A, B, &empty), UdpInput::Delivered(s));
        assert_eq!(recv(&mut t, s), Some((Vec::new(), sa(A, 12345))));
    }

    #[test]
    fn receive_queue_is_bounded_in_datagrams_and_bytes() {
        let mut t = UdpTable::new(UdpConfig {
            recv_queue_datagrams: 2,
            recv_queue_bytes: 10,
            ..UdpConfig::default()
        });
        let s = t.bind(sa(B, 7)).unwrap();
        let six = datagram(sa(A, 1), sa(B, 7), b"sixsix");
        let four = datagram(sa(A, 1), sa(B, 7), b"four");
        let none = datagram(sa(A, 1), sa(B, 7), b"");
        let full = UdpInput::Dropped(UdpDrop::QueueFull);

        assert_eq!(t.receive(A, B, &six), UdpInput::Delivered(s));
        assert_eq!(t.receive(A, B, &six), full, "12 bytes > 10");
        assert_eq!(t.receive(A, B, &four), UdpInput::Delivered(s));
        assert_eq!(t.receive(A, B, &none), full, "3 datagrams > 2");
        assert_eq!(t.stats().queue_full, 2);

        assert_eq!(recv(&mut t, s).unwrap().0, b"sixsix");
        assert_eq!(t.receive(A, B, &six), UdpInput::Delivered(s));
        assert_eq!(recv(&mut t, s).unwrap().0, b"four");
        assert_eq!(recv(&mut t, s).unwrap().0, b"sixsix");
        assert_eq!(recv(&mut t, s), None);
        assert_eq!(t.stats().datagrams_in, 3);
    }

    #[test]
    fn no_socket_means_port_unreachable() {
        let mut t = table();
        assert_eq!(
            t.receive(A, B, &datagram(sa(A, 1), sa(B, 7), b"?")),
            UdpInput::PortUnreachable
        );
        // A socket on another of our addresses does not take it; the wildcard does.
        let on_a = t.bind(sa(A, 7)).unwrap();
        let to_b = datagram(sa(A, 1), sa(B, 7), b"?");
        assert_eq!(t.receive(A, B, &to_b), UdpInput::PortUnreachable);
        let to_a = datagram(sa(B, 1), sa(A, 7), b"!");
        assert_eq!(t.receive(B, A, &to_a), UdpInput::Delivered(on_a));
        let any = t.bind(sa(Ipv4Addr::UNSPECIFIED, 8)).unwrap();
        let to_b8 = datagram(sa(A, 1), sa(B, 8), b"?");
        assert_eq!(t.receive(A, B, &to_b8), UdpInput::Delivered(any));
        assert_eq!(t.stats().no_port, 2);
    }

    #[test]
    fn closed_handle_is_dead_even_when_its_port_is_bound_again() {
        let mut t = table();
        let old = t.bind(sa(B, 7)).unwrap();
        let wire = datagram(sa(A, 1), sa(B, 7), b"old");
        assert_eq!(t.receive(A, B, &wire), UdpInput::Delivered(old));
        t.close(old);
        t.close(old);
        assert_eq!(t.receive(A, B, &wire), UdpInput::PortUnreachable);

        let new = t.bind(sa(B, 7)).unwrap();
        assert_ne!(new, old);
        assert_eq!(t.receive(A, B, &wire), UdpInput::Delivered(new));
        assert_eq!(t.local_addr(old), None);
        assert!(!t.has_data(old));
        assert_eq!(t.peek_len(old), None);
        assert_eq!(t.recv_from(old, &mut [0; 8]), Err(UdpRecvError::Closed));
        let mut out = vec![1, 2, 3];
        assert_eq!(
            t.encode(old, B, sa(A, 1), b"x", &mut out),
            Err(UdpSendError::Closed)
        );
        assert!(out.is_empty());
        // What the old socket had queued went with it.
        assert_eq!(recv(&mut t, new), Some((b"old".to_vec(), sa(A, 1))));
        assert_eq!(recv(&mut t, new), None);
    }

    #[test]
    fn short_buffer_truncates_like_std() {
        let mut t = table();
        let s = t.bind(sa(B, 7)).unwrap();
        t.receive(A, B, &datagram(sa(A, 1), sa(B, 7), b"abcdef"));
        t.receive(A, B, &datagram(sa(A, 1), sa(B, 7), b"gh"));
        let mut buf = [0u8; 4];
        assert_eq!(t.recv_from(s, &mut buf), Ok(Some((4, sa(A, 1)))));
        assert_eq!(&buf, b"abcd");
        assert_eq!(t.recv_from(s, &mut buf), Ok(Some((2, sa(A, 1)))));
        assert_eq!(&buf[..2], b"gh");
        assert_eq!(t.stats().recv_truncated, 1);
    }

    #[test]
    fn send_errors_are_typed_and_counted() {
        let mut t = table();
        let h = t.bind(sa(A, 9)).unwrap();
        let mut out = Vec::new();
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            t.encode(h, A, sa(B, 9), &big, &mut out),
            Err(UdpSendError::TooLarge { len: 65508 })
        );
        t.encode(h, A, sa(B, 9), &big[..MAX_PAYLOAD_LEN], &mut out)
            .unwrap();
        assert_eq!(out.len(), 65515);
        assert_eq!(&out[4..6], &[0xff, 0xeb]);
        assert_eq!(
            t.encode(h, A, sa(B, 0), b"x", &mut out),
            Err(UdpSendError::BadDestination(sa(B, 0)))
        );
        assert_eq!(
            t.encode(h, A, sa(Ipv4Addr::UNSPECIFIED, 9), b"x", &mut out),
            Err(UdpSendError::BadDestination(sa(Ipv4Addr::UNSPECIFIED, 9)))
        );
        assert_eq!(
            t.encode(h, B, sa(A, 9), b"x", &mut out),
            Err(UdpSendError::SourceMismatch { bound: A, src: B })
        );
        assert_eq!(t.stats().send_errors, 4);
        assert_eq!(t.stats().datagrams_out, 1);
        assert_eq!(
            UdpSendError::TooLarge { len: 65508 }.to_string(),
            "UDP payload of 65508 bytes exceeds the IPv4 maximum of 65507"
        );
    }

    #[test]
    fn counters_have_unique_names_and_print_non_zero() {
        let mut t = table();
        t.receive(A, B, &[1, 2, 3]);
        let names: std::collections::BTreeSet<_> =
            t.stats().counters().iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), t.stats().counters().len());
        for reason in UdpDrop::ALL {
            assert!(names.contains(reason.as_str()));
        }
        assert_eq!(t.stats().to_string(), "truncated 1\n");
    }

    proptest! {
        /// Any bytes at all: never a panic, and every datagram is counted exactly once.
        /// Some are aimed at the bound port with a plausible length and no checksum, so
        /// the queue and its bounds are reached too.
        #[test]
        fn arbitrary_datagrams_never_panic(cases in proptest::collection::vec(
            (0u8..3, proptest::collection::vec(any::<u8>(), 0..64)), 1..40)) {
            let mut t = UdpTable::new(UdpConfig { recv_queue_datagrams: 4, ..UdpConfig::default() });
            let s = t.bind(sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
            for (aim, mut bytes) in cases.iter().cloned() {
                if aim > 0 && bytes.len() >= UdpHeader::LEN {
                    let len = bytes.len() as u16 - u16::from(aim - 1) * 4;
                    bytes[2..4].copy_from_slice(&7u16.to_be_bytes());
                    bytes[4..6].copy_from_slice(&len.to_be_bytes());
                    bytes[6..8].copy_from_slice(&[0, 0]);
                }
                if t.receive(A, B, &bytes) == UdpInput::Delivered(s) && bytes[0] % 2 == 0 {
                    recv(&mut t, s);
                }
            }
            prop_assert_eq!(accounted(t.stats()), cases.len() as u64);
        }

        #[test]
        fn any_payload_round_trips(
            sport in 1u16.., dport in 1u16.., data in proptest::collection::vec(any::<u8>(), 0..1500)
        ) {
            let mut rx = table();
            let s = rx.bind(sa(B, dport)).unwrap();
            let wire = datagram(sa(A, sport), sa(B, dport), &data);
            prop_assert_eq!(rx.receive(A, B, &wire), UdpInput::Delivered(s));
            prop_assert_eq!(recv(&mut rx, s), Some((data, sa(A, sport))));
        }

        /// A one-bit error in the data changes one 16-bit word by a power of two, which
        /// the one's complement sum always catches.
        #[test]
        fn any_payload_bit_flip_is_caught(
            data in proptest::collection::vec(any::<u8>(), 1..200), pick in any::<usize>(), bit in 0u8..8
        ) {
            let mut rx = table();
            rx.bind(sa(B, 7)).unwrap();
            let mut wire = datagram(sa(A, 1), sa(B, 7), &data);
            wire[UdpHeader::LEN + pick % data.len()] ^= 1 << bit;
            prop_assert_eq!(rx.receive(A, B, &wire), UdpInput::Dropped(UdpDrop::BadChecksum));
        }
    }
}
