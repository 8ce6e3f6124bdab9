//! Bringing ustack up on a real device: open the TUN or TAP device or the raw interface,
//! wrap it in a capture if one was asked for, and start a [`Runtime`] with a stack on it.
//! `ustack up`, `ustack iperf3` and `ustack impair` open their devices here and nowhere
//! else.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;

use crate::link::{tap_boxed, Clock, Duration, Link, PcapSink, RawLink, TunLink};
use crate::net::{Config, GatewayError, Interface, Ipv4Cidr, MacAddr};
use crate::options::cidr;
use crate::runtime::{BoxLink, Caller, Runtime, RuntimeOptions};
use crate::transport::ports::EPHEMERAL_PORTS;
use crate::transport::stack::{Stack, StackConfig};
use crate::transport::tcp::Algorithm;

/// The MTU of a device unless `--mtu` says otherwise (Ethernet's).
pub const DEFAULT_MTU: usize = 1500;

/// Which device to run on, and how.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct DeviceArgs {
    /// TUN device to create or attach to (IP packets).
    #[arg(long, conflicts_with_all = ["tap", "raw"])]
    pub tun: Option<String>,
    /// TAP device to create or attach to (Ethernet frames; ustack answers ARP from a
    /// MAC of its own).
    #[arg(long, conflicts_with = "raw")]
    pub tap: Option<String>,
    /// Ethernet interface to bind a raw AF_PACKET socket to, e.g. one end of a veth
    /// pair; give ustack an address the kernel does not own there (see README).
    #[arg(long, value_name = "IFACE")]
    pub raw: Option<String>,
    /// Put the --raw interface in promiscuous mode (frames to other MACs reach ustack,
    /// which drops them).
    #[arg(long, requires = "raw")]
    pub promisc: bool,
    /// Our address and prefix on the device, e.g. 198.18.0.2/24.
    #[arg(long, value_parser = cidr)]
    pub addr: Option<Ipv4Cidr>,
    /// Default gateway: hosts off our subnet are reached through it (must be on it).
    #[arg(long, value_name = "A.B.C.D")]
    pub gateway: Option<Ipv4Addr>,
    /// MTU of a TUN or TAP device (a --raw link takes its interface's).
    #[arg(long, default_value_t = DEFAULT_MTU)]
    pub mtu: usize,
    /// TUN only: open the device with IFF_VNET_HDR and checksum and TCP segmentation
    /// offload (TUN_F_CSUM, TUN_F_TSO4). The kernel hands over its GRO/GSO TCP
    /// super-segments of up to 64 KiB with partial checksums, and cuts the TSO
    /// super-segments ustack sends (up to 64 KiB, whole MSS-sized segments). A --pcap
    /// capture shows what the stack saw and sent: the super-segments, not the wire's
    /// segments, and received ones with the partial checksum (which Wireshark flags).
    #[arg(long)]
    pub offload: bool,
    /// TUN without --offload: write each round's packets on a thread of their own, which
    /// takes the kernel's receive work of every packet (what a TUN write costs) off the
    /// stack's thread. Faster sending while a core is free, slower when every core is
    /// busy; off by default.
    #[arg(long, conflicts_with = "offload")]
    pub tx_thread: bool,
    /// Busy-poll: after the last packet or socket call, keep polling the device (and
    /// spin on socket replies) for this many microseconds before sleeping, like Linux's
    /// SO_BUSY_POLL. Cuts request/response latency by the wake-up of a sleeping thread,
    /// but burns a CPU for as long as traffic keeps coming. Off (0) by default.
    #[arg(long, value_name = "MICROS", default_value_t = 0)]
    pub busy_poll: u64,
    /// TUN only: open the device with this many queues (IFF_MULTI_QUEUE) and run a
    /// stack on each, on a thread of its own, all with the same address. The kernel
    /// keeps each flow on one queue, so connections are spread over the stacks by their
    /// 4-tuple; each stack takes its own slice of the ephemeral ports.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub queues: u16,
    /// Write a pcapng capture of the device.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Congestion control of the stack's TCP connections: cubic, reno or bbr (iperf3's
    /// -C).
    #[arg(short = 'C', long)]
    pub congestion: Option<Algorithm>,
}

/// Why a device could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    #[error(
        "give the device ustack runs on with --tun NAME --addr A.B.C.D/LEN (or --tap NAME \
         or --raw IFACE instead of --tun)"
    )]
    Unspecified,
    #[error("--gateway: {0}")]
    Gateway(#[from] GatewayError),
    #[error("{0}")]
    Open(io::Error),
    #[error("cannot write the capture: {0}")]
    Capture(io::Error),
    #[error("cannot read random bytes from the OS for the stack's secrets: {0}")]
    Random(io::Error),
    #[error("cannot handle SIGINT and SIGTERM: {0}")]
    Signals(io::Error),
}

impl DeviceError {
    /// Whether the command line asked for something impossible (rather than the device
    /// failing).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DeviceError::NotImplemented(_) | DeviceError::Unspecified | DeviceError::Gateway(_)
        )
    }
}

/// The kind of device the flags name, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// A TUN device: IP packets.
    Tun(String),
    /// A TAP device: Ethernet frames, ARP.
    Tap(String),
    /// A raw AF_PACKET socket on an Ethernet interface: Ethernet frames, ARP.
    Raw(String),
}

impl DeviceKind {
    pub fn name(&self) -> &str {
        match self {
            DeviceKind::Tun(name) | DeviceKind::Tap(name) | DeviceKind::Raw(name) => name,
        }
    }
}

impl DeviceArgs {
    /// The device and address to use, or why the flags do not name them (before any
    /// device is touched).
    pub fn target(&self) -> Result<(DeviceKind, Ipv4Cidr), DeviceError> {
        let kind = match (&self.tun, &self.tap, &self.raw) {
            (Some(tun), None, None) => DeviceKind::Tun(tun.clone()),
            (None, Some(tap), None) => DeviceKind::Tap(tap.clone()),
            (None, None, Some(raw)) => DeviceKind::Raw(raw.clone()),
            _ => return Err(DeviceError::Unspecified),
        };
        // Flags only a TUN device has, with the error a TAP or raw device gets for each.
        let tun_only = [
            (
                self.offload,
                "--offload on a TAP or raw device (it is for --tun)",
            ),
            (
                self.tx_thread,
                "--tx-thread on a TAP or raw device (it is for --tun)",
            ),
            (
                self.queues > 1,
                "--queues on a TAP or raw device (it is for --tun)",
            ),
        ];
        if !matches!(kind, DeviceKind::Tun(_)) {
            if let Some(&(_, what)) = tun_only.iter().find(|(given, _)| *given) {
                return Err(DeviceError::NotImplemented(what));
            }
        }
        let addr = self.addr.ok_or(DeviceError::Unspecified)?;
        self.interface_config(addr)?;
        Ok((kind, addr))
    }

    /// How the runtime waits (`--busy-poll`; 0 is off).
    pub fn runtime_options(&self) -> RuntimeOptions {
        RuntimeOptions {
            busy_poll: (self.busy_poll > 0).then(|| Duration::from_micros(self.busy_poll)),
        }
    }

    /// The interface settings the flags give for `addr`: the default gateway, checked to
    /// be a host on our network (RFC 1122 section 3.3.1.1).
    fn interface_config(&self, addr: Ipv4Cidr) -> Result<Config, DeviceError> {
        let cfg = Config::new(addr);
        Ok(match self.gateway {
            Some(gateway) => cfg.with_gateway(gateway)?,
            None => cfg,
        })
    }
}

/// A stack running on a device.
pub struct Device {
    /// The stack of the device (of its first queue, with `--queues`).
    pub runtime: Runtime,
    /// The stacks of the other queues of a multi-queue TUN (`--queues`), in order.
    pub queues: Vec<Runtime>,
    pub kind: DeviceKind,
    pub addr: Ipv4Cidr,
    /// The MAC the stack sends from, on an Ethernet device (TAP or raw).
    pub mac: Option<MacAddr>,
    /// The capture, if one was asked for (the stack's link writes to it).
    pub capture: Option<PcapSink>,
    /// The runtime's clock, to drive the stack on after the runtime stopped.
    clock: Clock,
}

/// What one queue's stack did, reported when the device shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// IP packets its queue delivered.
    pub packets_in: u64,
    /// TCP connections its listeners accepted.
    pub connections_accepted: u64,
}

/// How long a shutdown lets connections close with FIN before it resets them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often a shutdown looks at the device while connections close.
const SHUTDOWN_TICK: std::time::Duration = std::time::Duration::from_millis(5);

/// SIGINT and SIGTERM set the returned flag instead of ending the process, so that the
/// command can stop accepting, close its connections and flush its capture, then exit
/// 0. A second signal once the flag is set ends the process at once (status 1), for a
/// shutdown that hangs.
pub fn stop_signals() -> Result<Arc<AtomicBool>, DeviceError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // The conditional shutdown goes first, so the first signal only sets the flag.
        flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| flag::register(signal, stop.clone()))
            .map_err(DeviceError::Signals)?;
    }
    Ok(stop)
}

impl Device {
    /// Stops the stack in order: stops its runtime, stops listening, closes every
    /// connection (FIN; RST where data was left unread), drives the stack on the wall
    /// clock until they are closed or `grace` passes, resets what is left, and flushes
    /// the capture.
    pub fn shut_down(self, grace: Duration) -> Result<Vec<QueueStats>, DeviceError> {
        let Device {
            runtime,
            queues,
            capture,
            clock,
            ..
        } = self;
        let mut stats = Vec::new();
        for queue in std::iter::once(runtime).chain(queues) {
            if let Some(stack) = queue.stop() {
                stats.push(QueueStats {
                    packets_in: stack.interface().stats().rx_packets,
                    connections_accepted: stack.stats().connections_accepted,
                });
                close_in_order(stack, &clock, grace);
            }
        }
        if let Some(sink) = capture {
            sink.flush().map_err(DeviceError::Capture)?;
        }
        Ok(stats)
    }

    /// Callers of every queue's stack, the first queue's first.
    pub fn callers(&self) -> Vec<Caller> {
        std::iter::once(&self.runtime)
            .chain(&self.queues)
            .map(Runtime::caller)
            .collect()
    }
}

/// Closes every connection of a stopped stack (FIN; RST where data was left unread),
/// drives it on the wall clock until they are closed or `grace` passes, and resets
/// what is left.
fn close_in_order(mut stack: Stack<BoxLink>, clock: &Clock, grace: Duration) {
    stack.tcp_close_all();
    let end = clock.now() + grace;
    loop {
        let now = clock.now();
        let _ = stack.poll(now);
        if stack.tcp_closing() == 0 || now >= end {
            break;
        }
        std::thread::sleep(SHUTDOWN_TICK);
    }
    stack.tcp_abort_all();
    let _ = stack.poll(clock.now());
}

/// Opens (or creates) the TUN device `name`.
pub fn open(name: &str, mtu: usize) -> Result<TunLink, DeviceError> {
    TunLink::open(name, mtu).map_err(DeviceError::Open)
}

/// Creates the capture file, if there is one.
pub fn capture(path: Option<&Path>) -> Result<Option<PcapSink>, DeviceError> {
    path.map(PcapSink::create)
        .transpose()
        .map_err(DeviceError::Capture)
}

/// `link`, recorded as interface `name` of `sink` if there is one.
pub fn tap<L: Link + Send + 'static>(
    link: L,
    sink: Option<&PcapSink>,
    name: &str,
) -> Result<BoxLink, DeviceError> {
    tap_boxed(link, sink, name).map_err(DeviceError::Capture)
}

/// The settings of a stack on a real device, on the wall clock: the stack seed, which
/// keys the RFC 6528 ISN function and the RFC 7323 timestamp offsets and picks where
/// the ephemeral ports start (RFC 6056), comes from the OS, as does the first IP
/// identification. Only the simulator runs with a fixed seed, so that a run replays.
pub fn stack_config(mut iface: Config) -> Result<(Config, StackConfig), DeviceError> {
    let seed = os_random_seed().map_err(DeviceError::Random)?;
    iface.first_ident = crate::link::seed::derive(seed, IDENT_STREAM) as u16;
    Ok((
        iface,
        StackConfig {
            seed,
            ..StackConfig::default()
        },
    ))
}

/// Seed stream of the first IP identification (the stack derives its own from the seed).
const IDENT_STREAM: u64 = 0x1d;

/// 64 random bits from the kernel's CSPRNG, read from /dev/urandom with std (no extra
/// crate: it never blocks once the pool is initialised, which it is long before a user
/// can start ustack).
fn os_random_seed() -> io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

/// Seed stream of the MAC a stack on a TAP device sends from.
const MAC_STREAM: u64 = 0x3ac;

/// A MAC of the stack's own for a TAP device (whose own MAC is the kernel's side):
/// `02:xx:xx:xx:xx:xx`, locally administered and unicast (IEEE 802, first octet bit 1
/// set, bit 0 clear), the rest derived from the stack seed.
pub fn local_mac(seed: u64) -> MacAddr {
    let b = crate::link::seed::derive(seed, MAC_STREAM).to_be_bytes();
    MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
}

/// Opens the device the flags name and starts a stack on it, on the wall clock.
pub fn bring_up(args: &DeviceArgs) -> Result<Device, DeviceError> {
    let (kind, addr) = args.target()?;
    let (mut iface_cfg, mut stack_cfg) = stack_config(args.interface_config(addr)?)?;
    if let Some(congestion) = args.congestion {
        stack_cfg.tcp.congestion = congestion;
    }
    let sink = capture(args.pcap.as_deref())?;
    let name = kind.name();
    let (links, mac) = match &kind {
        DeviceKind::Tun(_) => {
            let queues = usize::from(args.queues);
            let mut devs = if queues > 1 {
                TunLink::open_queues(name, args.mtu, queues, args.offload)
            } else if args.offload {
                TunLink::open_offload(name, args.mtu).map(|dev| vec![dev])
            } else {
                TunLink::open(name, args.mtu).map(|dev| vec![dev])
            }
            .map_err(DeviceError::Open)?;
            if args.tx_thread {
                for dev in &mut devs {
                    dev.use_writer_thread().map_err(DeviceError::Open)?;
                }
            }
            // One queue is recorded as the device; more as DEVICE/qN each.
            let one = devs.len() == 1;
            let links = devs
                .into_iter()
                .enumerate()
                .map(|(i, dev)| {
                    if one {
                        tap(dev, sink.as_ref(), name)
                    } else {
                        tap(dev, sink.as_ref(), &format!("{name}/q{i}"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            (links, None)
        }
        DeviceKind::Tap(_) => {
            let dev = TunLink::open_tap(name, args.mtu).map_err(DeviceError::Open)?;
            let mac = local_mac(stack_cfg.seed);
            (vec![tap(dev, sink.as_ref(), name)?], Some(mac))
        }
        DeviceKind::Raw(_) => {
            let dev = RawLink::open(name, args.promisc).map_err(DeviceError::Open)?;
            let mac = MacAddr(dev.mac());
            (vec![tap(dev, sink.as_ref(), name)?], Some(mac))
        }
    };
    iface_cfg.mac = mac;
    let clock = Clock::wall();
    let n = links.len();
    let mut runtimes: Vec<Runtime> = links
        .into_iter()
        .enumerate()
        .map(|(i, link)| {
            let (iface, cfg) = if n == 1 {
                (iface_cfg.clone(), stack_cfg.clone())
            } else {
                queue_config(i, n, &iface_cfg, &stack_cfg)
            };
            let stack = Stack::new(Interface::new(link, iface), cfg);
            Runtime::start_with_options(stack, clock, args.runtime_options())
        })
        .collect();
    let runtime = runtimes.remove(0);
    Ok(Device {
        runtime,
        queues: runtimes,
        kind,
        addr,
        mac,
        capture: sink,
        clock,
    })
}

/// Slice `i` of `n` of the ephemeral port range, for the stack of queue `i`.
fn ephemeral_slice(i: usize, n: usize) -> std::ops::RangeInclusive<u16> {
    let (lo, hi) = (
        u32::from(*EPHEMERAL_PORTS.start()),
        u32::from(*EPHEMERAL_PORTS.end()),
    );
    let span = (hi - lo + 1) / n as u32;
    let start = lo + span * i as u32;
    let end = if i + 1 == n { hi } else { start + span - 1 };
    start as u16..=end as u16
}

/// The settings of the stack of queue `i` of `n` on a multi-queue TUN (`--queues`): its
/// own seed, IP identification start and slice of the ephemeral ports; the same address.
fn queue_config(
    i: usize,
    n: usize,
    iface_cfg: &Config,
    stack_cfg: &StackConfig,
) -> (Config, StackConfig) {
    let seed = crate::link::seed::derive(stack_cfg.seed, QUEUE_STREAM + i as u64);
    let cfg = StackConfig {
        seed,
        ephemeral_ports: ephemeral_slice(i, n),
        ..stack_cfg.clone()
    };
    let mut iface = iface_cfg.clone();
    iface.first_ident = crate::link::seed::derive(seed, IDENT_STREAM) as u16;
    (iface, cfg)
}

/// Seed streams of the stacks of a multi-queue TUN (one per queue from here on).
const QUEUE_STREAM: u64 = 0x9000;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::link::{Instant, SimConfig, SimLink};
    use crate::net::ipv4::{self, HeaderFields};
    use crate::net::IpNumber;
    use crate::transport::tcp::wire::{self, Flags, Segment, TcpOptions};
    use crate::transport::tcp::SeqNumber;

    const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// The initial sequence number a stack built with these settings answers one fixed
    /// SYN (same 4-tuple, same time) with.
    fn isn((iface_cfg, stack_cfg): (Config, StackConfig)) -> SeqNumber {
        let (ours, mut peer) = SimLink::pair(SimConfig::default(), 1).unwrap();
        let iface = Interface::new(ours, iface_cfg);
        let mut stack = Stack::new(iface, stack_cfg);
        stack.tcp_listen(80, 1).unwrap();
        let syn = Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(1),
            ack: SeqNumber(0),
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            window: 65535,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        let mut tcp = Vec::new();
        wire::emit(&syn, PEER, US, &mut tcp);
        let fields = HeaderFields {
            src: PEER,
            dst: US,
            protocol: IpNumber::TCP,
            ttl: 64,
            ident: 1,
            dont_fragment: true,
            tos: 0,
        };
        let mut packet = fields
            .build(tcp.len(), 0, false)
            .unwrap()
            .to_bytes()
            .to_vec();
        packet.extend_from_slice(&tcp);
        let t = Instant::from_secs(5);
        peer.send(t, &packet).unwrap();
        stack.poll(Instant::from_secs(6)).unwrap();
        let mut buf = vec![0; 1500];
        let n = peer.recv(Instant::from_secs(7), &mut buf).unwrap().unwrap();
        let ip = ipv4::parse(&buf[..n]).unwrap();
        let reply = wire::parse(ip.src(), ip.dst(), ip.payload).unwrap();
        assert!(reply.flags.syn && reply.flags.ack);
        reply.seq
    }

    /// RFC 6528 section 3: the ISN function's secret must not be guessable, so a stack
    /// on a real device takes it from the OS; two such stacks answer the same SYN at the
    /// same time with different ISNs. The simulator keeps its fixed seed, so that a run
    /// replays (the default settings give equal ISNs).
    #[test]
    fn wall_clock_stacks_take_their_secret_from_the_os_rfc6528_3() {
        let addr = Ipv4Cidr {
            addr: US,
            prefix_len: 24,
        };
        let a = isn(stack_config(Config::new(addr)).unwrap());
        let b = isn(stack_config(Config::new(addr)).unwrap());
        assert_ne!(a, b);
        let sim = || (Config::new(addr), StackConfig::default());
        assert_eq!(isn(sim()), isn(sim()));
    }

    /// IEEE 802 addressing: the MAC a stack picks for a TAP device is unicast (first
    /// octet bit 0 clear) and locally administered (bit 1 set), and follows the seed.
    #[test]
    fn a_tap_stack_picks_a_locally_administered_unicast_mac() {
        let mac = local_mac(7);
        assert_eq!(mac.0[0] & 0b11, 0b10, "{mac}");
        assert_eq!(local_mac(7), mac);
        assert_ne!(local_mac(8), mac);
        assert_eq!(
            MacAddr([2, 0, 0xab, 1, 2, 3]).to_string(),
            "02:00:ab:01:02:03"
        );
    }

    /// `--offload` (IFF_VNET_HDR) is a TUN device's: with --tun it is accepted, with a
    /// TAP or raw device it is a usage error before any device is touched.
    #[test]
    fn offload_is_for_tun_devices() {
        let addr: Ipv4Cidr = "198.18.0.2/24".parse().unwrap();
        let tun = DeviceArgs {
            tun: Some("tun0".into()),
            addr: Some(addr),
            offload: true,
            ..DeviceArgs::default()
        };
        assert_eq!(
            tun.target().unwrap(),
            (DeviceKind::Tun("tun0".into()), addr)
        );
        for args in [
            DeviceArgs {
                tun: None,
                tap: Some("tap0".into()),
                ..tun.clone()
            },
            DeviceArgs {
                tun: None,
                raw: Some("veth0".into()),
                ..tun.clone()
            },
        ] {
            let err = args.target().unwrap_err();
            assert!(err.is_usage(), "{err}");
            assert!(err.to_string().contains("--offload"), "{err}");
        }
    }

    /// `--tx-thread` is a plain TUN device's: a usage error with a TAP or raw device,
    /// and clap refuses it beside --offload.
    #[test]
    fn tx_thread_is_for_plain_tun_devices() {
        let addr: Ipv4Cidr = "198.18.0.2/24".parse().unwrap();
        let tun = DeviceArgs {
            tun: Some("tun0".into()),
            addr: Some(addr),
            tx_thread: true,
            ..DeviceArgs::default()
        };
        assert!(tun.target().is_ok());
        let tap = DeviceArgs {
            tun: None,
            tap: Some("tap0".into()),
            ..tun.clone()
        };
        let err = tap.target().unwrap_err();
        assert!(
            err.is_usage() && err.to_string().contains("--tx-thread"),
            "{err}"
        );
        #[derive(clap::Parser)]
        struct Up {
            #[command(flatten)]
            device: DeviceArgs,
        }
        let parse = |args: &[&str]| {
            <Up as clap::Parser>::try_parse_from(args).map(|up| up.device.tx_thread)
        };
        assert!(parse(&["up", "--tx-thread"]).unwrap());
        assert!(!parse(&["up"]).unwrap());
        assert!(parse(&["up", "--tx-thread", "--offload"]).is_err());
    }

    /// The flags name exactly one device; a gateway must be on our network (RFC 1122
    /// section 3.3.1), and is not our own address.
    #[test]
    fn busy_poll_is_off_unless_given_in_microseconds() {
        #[derive(clap::Parser)]
        struct Up {
            #[command(flatten)]
            device: DeviceArgs,
        }
        let options = |args: &[&str]| {
            let up = <Up as clap::Parser>::try_parse_from(args).unwrap();
            up.device.runtime_options()
        };
        assert_eq!(options(&["up"]), RuntimeOptions::default());
        assert_eq!(options(&["up", "--busy-poll", "0"]).busy_poll, None);
        assert_eq!(
            options(&["up", "--busy-poll", "50"]).busy_poll,
            Some(Duration::from_micros(50))
        );
    }

    #[test]
    fn the_flags_name_one_device_and_an_on_link_gateway() {
        let addr: Ipv4Cidr = "198.18.0.2/24".parse().unwrap();
        let args = DeviceArgs {
            raw: Some("veth0".into()),
            addr: Some(addr),
            gateway: Some(Ipv4Addr::new(198, 18, 0, 1)),
            ..DeviceArgs::default()
        };
        assert_eq!(
            args.target().unwrap(),
            (DeviceKind::Raw("veth0".into()), addr)
        );
        for gateway in [Ipv4Addr::new(198, 18, 1, 1), addr.addr] {
            let off = DeviceArgs {
                gateway: Some(gateway),
                ..args.clone()
            };
            assert!(matches!(off.target(), Err(DeviceError::Gateway(_))));
        }
        let none = DeviceArgs {
            raw: None,
            ..args.clone()
        };
        assert!(matches!(none.target(), Err(DeviceError::Unspecified)));
    }
}
