//! `PcapTap`: wraps any [`Link`] and writes what crosses it to a pcapng file.
//!
//! Format: pcapng, one interface description block per tapped link, link type RAW (101)
//! for IP links and ETHERNET (1) for Ethernet links, nanosecond timestamps taken from the
//! `now` the stack passes in (so a simulated run shows virtual time, starting at the Unix
//! epoch plus [`PcapSink::with_epoch`]). Every packet carries the pcapng direction flag
//! (inbound or outbound). What the impairment engine did to a sent packet is written as a
//! packet comment starting with `ustack-impair:`, e.g. `ustack-impair: dropped (loss)` or
//! `ustack-impair: corrupted in flight (byte 21, bit 3)`; in Wireshark filter with
//! `frame.comment contains "ustack-impair"`.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use crate::link::{Link, LinkError, Medium, TxInfo};
use crate::time::{Duration, Instant};

/// pcapng `epb_flags` direction bits (pcapng spec, section 4.3.1).
const EPB_FLAG_INBOUND: u32 = 0b01;
const EPB_FLAG_OUTBOUND: u32 = 0b10;
/// `if_tsresol` for nanoseconds (10^-9), which pcap-file's timestamps are written in.
const TSRESOL_NANOS: u8 = 9;

struct SinkInner {
    writer: PcapNgWriter<Box<dyn Write + Send>>,
    epoch: Duration,
    packets: u64,
    write_errors: u64,
    first_error: Option<Arc<pcap_file::PcapError>>,
}

/// Packets a [`PcapSink`] could not write, reported by [`PcapSink::flush`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{count} pcap write errors, first: {first}")]
pub struct PcapWriteErrors {
    pub count: u64,
    #[source]
    pub first: Arc<pcap_file::PcapError>,
}

/// A pcapng file shared by any number of taps (one interface each).
#[derive(Clone)]
pub struct PcapSink {
    inner: Arc<Mutex<SinkInner>>,
}

impl std::fmt::Debug for PcapSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSink").finish_non_exhaustive()
    }
}

fn pcap_io(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}

impl PcapSink {
    /// Creates (truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<PcapSink> {
        let file = File::create(path.as_ref()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", path.as_ref().display()),
            )
        })?;
        PcapSink::new(Box::new(BufWriter::new(file)))
    }

    /// Writes to any sink, for tests (a `Vec<u8>` behind a shared buffer, say).
    pub fn new(writer: Box<dyn Write + Send>) -> io::Result<PcapSink> {
        let writer = PcapNgWriter::new(writer).map_err(pcap_io)?;
        Ok(PcapSink {
            inner: Arc::new(Mutex::new(SinkInner {
                writer,
                epoch: Duration::ZERO,
                packets: 0,
                write_errors: 0,
                first_error: None,
            })),
        })
    }

    /// Adds `epoch` (time since 1970) to every timestamp.
    pub fn with_epoch(self, epoch: Duration) -> PcapSink {
        self.lock().epoch = epoch;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares an interface; returns its id for [`PcapTap`].
    pub fn add_interface(&self, name: &str, medium: Medium) -> io::Result<u32> {
        let mut inner = self.lock();
        let id = inner.writer.interfaces().len() as u32;
        let block = InterfaceDescriptionBlock {
            linktype: match medium {
                Medium::Ip => DataLink::RAW,
                Medium::Ethernet => DataLink::ETHERNET,
            },
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOS),
            ],
        };
        inner.writer.write_pcapng_block(block).map_err(pcap_io)?;
        Ok(id)
    }

    fn write(
        &self,
        interface: u32,
        now: Instant,
        data: &[u8],
        outbound: bool,
        note: Option<String>,
    ) {
        let mut inner = self.lock();
        let mut options = vec![EnhancedPacketOption::Flags(if outbound {
            EPB_FLAG_OUTBOUND
        } else {
            EPB_FLAG_INBOUND
        })];
        if let Some(note) = note {
            options.push(EnhancedPacketOption::Comment(Cow::Owned(note)));
        }
        let block = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: inner.epoch + now.since_epoch(),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options,
        };
        match inner.writer.write_pcapng_block(block) {
            Ok(_) => inner.packets += 1,
            Err(e) => {
                inner.write_errors += 1;
                if inner.first_error.is_none() {
                    inner.first_error = Some(Arc::new(e));
                }
            }
        }
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.lock().packets
    }

    /// Flushes buffered blocks; reports the first write error seen, if any.
    pub fn flush(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if let Some(first) = &inner.first_error {
            return Err(io::Error::other(PcapWriteErrors {
                count: inner.write_errors,
                first: first.clone(),
            }));
        }
        inner.writer.get_mut().flush()
    }
}

/// The comment a [`PcapTap`] attaches to a sent packet, if the link impaired it.
pub fn impairment_note(info: &TxInfo) -> Option<String> {
    if !info.is_impaired() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(reason) = info.dropped {
        parts.push(format!("dropped ({})", reason.as_str()));
    }
    if let Some((byte, bit)) = info.corrupted {
        parts.push(format!("corrupted in flight (byte {byte}, bit {bit})"));
    }
    if info.duplicated {
        parts.push("duplicated".to_string());
    }
    if info.reordered {
        parts.push("reordered (held back)".to_string());
    }
    Some(format!("ustack-impair: {}", parts.join(", ")))
}

/// `link` boxed, captured into `sink` as interface `name` when there is a sink: how a
/// tool with an optional `--pcap` builds its device.
pub fn tap_boxed<L: Link + Send + 'static>(
    link: L,
    sink: Option<&PcapSink>,
    name: &str,
) -> io::Result<Box<dyn Link + Send>> {
    Ok(match sink {
        Some(sink) => Box::new(PcapTap::new(link, sink.clone(), name)?),
        None => Box::new(link),
    })
}

/// Wraps a link and records every packet sent and received through it.
#[derive(Debug)]
pub struct PcapTap<L: Link> {
    inner: L,
    sink: PcapSink,
    interface: u32,
}

impl<L: Link> PcapTap<L> {
    /// Taps `inner` as interface `name` of `sink`.
    pub fn new(inner: L, sink: PcapSink, name: &str) -> io::Result<PcapTap<L>> {
        let interface = sink.add_interface(name, inner.medium())?;
        Ok(PcapTap {
            inner,
            sink,
            interface,
        })
    }

    pub fn sink(&self) -> &PcapSink {
        &self.sink
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    pub fn into_inner(self) -> L {
        self.inner
    }
}

impl<L: Link> Link for PcapTap<L> {
    fn medium(&self) -> Medium {
        self.inner.medium()
    }

    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> Result<TxInfo, LinkError> {
        let info = self.inner.send(now, packet)?;
        self.sink
            .write(self.interface, now, packet, true, impairment_note(&info));
        Ok(info)
    }

    fn flush(&mut self, now: Instant) -> Result<(), LinkError> {
        self.inner.flush(now)
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        let got = self.inner.recv(now, buf)?;
        if let Some(n) = got {
            self.sink.write(self.interface, now, &buf[..n], false, None);
        }
        Ok(got)
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.inner.poll_at(now)
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.fd()
    }

    fn capabilities(&self) -> crate::link::Capabilities {
        self.inner.capabilities()
    }

    /// Records the packet as the stack sees it: a coalesced super-segment whole, with the
    /// partial checksum a `NEEDS_CSUM` packet carries.
    fn recv_offload(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<(usize, crate::link::RxOffload)>, LinkError> {
        let got = self.inner.recv_offload(now, buf)?;
        if let Some((n, _)) = got {
            self.sink.write(self.interface, now, &buf[..n], false, None);
        }
        Ok(got)
    }

    /// Records the packet as [`PcapTap::recv_offload`] does, in the buffer the inner
    /// link handed over.
    fn recv_swap(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(usize, crate::link::RxOffload)>, LinkError> {
        let got = self.inner.recv_swap(now, buf)?;
        if let Some((n, _)) = got {
            self.sink
                .write(self.interface, now, &buf[..n.min(buf.len())], false, None);
        }
        Ok(got)
    }

    /// Records the TSO super-segment as the stack built it, before the device splits it.
    fn send_offload(
        &mut self,
        now: Instant,
        packet: &[u8],
        segment_size: u16,
    ) -> Result<TxInfo, LinkError> {
        let info = self.inner.send_offload(now, packet, segment_size)?;
        self.sink
            .write(self.interface, now, packet, true, impairment_note(&info));
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, SimLink};
    use pcap_file::pcapng::{Block, PcapNgReader};

    /// A `Write` into a buffer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tap_records_both_directions_and_marks_drops() {
        let cfg = SimConfig::default().with_partition_a_to_b("1s+1s".parse().unwrap());
        let (a, mut b) = SimLink::pair(cfg, 9).unwrap();
        let out = Shared::default();
        let sink = PcapSink::new(Box::new(out.clone())).unwrap();
        let mut a = PcapTap::new(a, sink.clone(), "sim-a").unwrap();
        let packet = [0x45u8; 40];
        a.send(Instant::ZERO, &packet).unwrap();
        a.send(Instant::from_millis(1500), &packet).unwrap();
        b.send(Instant::ZERO, &[0x45u8; 28]).unwrap();
        let mut buf = [0u8; 1500];
        assert_eq!(a.recv(Instant::ZERO, &mut buf).unwrap(), Some(28));
        sink.flush().unwrap();

        let bytes = out.0.lock().unwrap().clone();
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => assert_eq!(idb.linktype, DataLink::RAW),
                Block::EnhancedPacket(epb) => packets.push(epb.into_owned()),
                _ => {}
            }
        }
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[1].timestamp, Duration::from_millis(1500));
        let comment = |p: &EnhancedPacketBlock| {
            p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            })
        };
        assert_eq!(comment(&packets[0]), None);
        assert_eq!(
            comment(&packets[1]).as_deref(),
            Some("ustack-impair: dropped (outage)")
        );
        assert!(packets[2]
            .options
            .contains(&EnhancedPacketOption::Flags(EPB_FLAG_INBOUND)));
        assert_eq!(sink.packets(), 3);
    }

    #[test]
    fn notes_describe_every_decision() {
        let info = TxInfo {
            corrupted: Some((21, 3)),
            duplicated: true,
            ..TxInfo::default()
        };
        assert_eq!(
            impairment_note(&info).unwrap(),
            "ustack-impair: corrupted in flight (byte 21, bit 3), duplicated"
        );
    }
}
