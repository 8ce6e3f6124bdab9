//! The option structs of the `ustack` command line, declared once here (as quinn's `perf`
//! keeps its options in the library) so the binary only parses, dispatches and prints.
//!
//! A flag that is not given is `None` and leaves the value of the command's configuration
//! `Default` (`TcpDemoConfig::default()`, ...), so defaults are stated in one place.

use std::path::PathBuf;

use clap::Args;

use crate::demo::ping::PingConfig;
use crate::demo::tcp::TcpDemoConfig;
use crate::demo::udp::UdpDemoConfig;
use crate::device::{DeviceArgs, DEFAULT_MTU};
use crate::impair::ImpairConfig;
use crate::link::time::{parse_duration, ParseDurationError};
use crate::link::{Duration, ImpairError, Impairments, Outage};
use crate::net::route::ParseCidrError;
use crate::net::Ipv4Cidr;
use crate::transport::tcp::Algorithm;

/// The impairment flags, shared by the demos and `ustack impair`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct FaultArgs {
    /// Probability that a packet is lost, each direction (0 to 1).
    #[arg(long, value_parser = probability)]
    pub loss: Option<f64>,
    /// Probability that a packet is held back so later ones overtake it.
    #[arg(long, value_parser = probability)]
    pub reorder: Option<f64>,
    /// Probability that a packet is delivered twice.
    #[arg(long, value_parser = probability)]
    pub duplicate: Option<f64>,
    /// Probability that one bit of a packet is flipped (checksums must catch it).
    #[arg(long, value_parser = probability)]
    pub corrupt: Option<f64>,
    /// One-way delay, e.g. 25ms.
    #[arg(long, value_parser = duration)]
    pub delay: Option<Duration>,
    /// Delay variation (keeps order; use --reorder to reorder).
    #[arg(long, value_parser = duration)]
    pub jitter: Option<Duration>,
    /// Rate limit in Mbit/s, each direction (0: no limit).
    #[arg(long)]
    pub rate_mbit: Option<u64>,
    /// Link down from START for LEN, e.g. 2s+5s (times from the start of the run);
    /// repeatable. Replaces the command's default outage.
    #[arg(long, value_parser = outage)]
    pub outage: Vec<Outage>,
    /// No outage at all (instead of the command's default one).
    #[arg(long, conflicts_with = "outage")]
    pub no_outage: bool,
}

impl FaultArgs {
    /// `imp` with the flags that were given.
    pub fn apply(&self, mut imp: Impairments) -> Impairments {
        let set = |field: &mut f64, flag: Option<f64>| *field = flag.unwrap_or(*field);
        set(&mut imp.loss, self.loss);
        set(&mut imp.reorder, self.reorder);
        set(&mut imp.duplicate, self.duplicate);
        set(&mut imp.corrupt, self.corrupt);
        imp.delay = self.delay.unwrap_or(imp.delay);
        imp.jitter = self.jitter.unwrap_or(imp.jitter);
        if let Some(mbit) = self.rate_mbit {
            imp.rate_bps = (mbit > 0).then(|| mbit * 1_000_000);
        }
        if self.no_outage {
            imp.outages.clear();
        } else if !self.outage.is_empty() {
            imp.outages = self.outage.clone();
        }
        imp
    }
}

/// Flags every demo has.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct DemoArgs {
    /// Seed of the run; the same seed replays the same run, capture included.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write a pcapng capture (host A's link; client 0's in the UDP demo).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
}

/// `ustack demo ping`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct PingArgs {
    /// Echo requests to send.
    #[arg(long)]
    pub count: Option<u16>,
    /// Time between requests (virtual), e.g. 20ms.
    #[arg(long, value_parser = duration)]
    pub interval: Option<Duration>,
    /// ICMP data bytes per request; above 1472 the requests are fragmented.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=65507))]
    pub size: Option<u16>,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub demo: DemoArgs,
}

impl PingArgs {
    pub fn config(&self) -> PingConfig {
        let d = PingConfig::default();
        PingConfig {
            count: self.count.unwrap_or(d.count),
            interval: self.interval.unwrap_or(d.interval),
            size: self.size.map_or(d.size, usize::from),
            impairments: self.faults.apply(d.impairments),
            seed: self.demo.seed.unwrap_or(d.seed),
            pcap: self.demo.pcap.clone(),
            ..d
        }
    }
}

/// `ustack demo scale`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ScaleArgs {
    /// Connections to open at once (1 to 1 000 000).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seed of the run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
}

impl ScaleArgs {
    pub fn config(&self) -> crate::demo::scale::ScaleConfig {
        let d = crate::demo::scale::ScaleConfig::default();
        crate::demo::scale::ScaleConfig {
            connections: self.connections.unwrap_or(d.connections),
            seed: self.seed.unwrap_or(d.seed),
        }
    }
}

/// `ustack demo tcp`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct TcpDemoArgs {
    /// File size in bytes, at most 1G (suffixes K, M, G for KiB, MiB, GiB).
    #[arg(long, value_parser = size)]
    pub size: Option<u64>,
    /// Give up after this much virtual time without the whole file across.
    #[arg(long, value_parser = duration)]
    pub give_up_after: Option<Duration>,
    /// Congestion control of both hosts: cubic, reno or bbr.
    #[arg(long)]
    pub cc: Option<Algorithm>,
    /// RACK-TLP loss detection (RFC 8985) on both hosts: on or off.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub rack: Option<bool>,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub demo: DemoArgs,
}

impl TcpDemoArgs {
    pub fn config(&self) -> TcpDemoConfig {
        let d = TcpDemoConfig::default();
        TcpDemoConfig {
            size: self.size.unwrap_or(d.size),
            impairments: self.faults.apply(d.impairments),
            seed: self.demo.seed.unwrap_or(d.seed),
            pcap: self.demo.pcap.clone(),
            give_up_after: self.give_up_after.unwrap_or(d.give_up_after),
            progress: !self.demo.json,
            congestion: self.cc.unwrap_or(d.congestion),
            rack: self.rack.unwrap_or(d.rack),
        }
    }
}

/// `on` or `off`.
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}

/// `ustack demo udp`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct UdpDemoArgs {
    /// Ticket purchases in all (spread over the clients).
    #[arg(long)]
    pub requests: Option<u32>,
    /// Clients buying at once (1 to 200).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub clients: Option<u16>,
    /// Seats for sale; purchases beyond them are answered "sold out".
    #[arg(long)]
    pub seats: Option<u32>,
    /// Primary cut off from the clients only, from START for LEN; repeatable.
    #[arg(long, value_parser = outage)]
    pub partition: Vec<Outage>,
    /// The primary crashes at this time; the backup takes over.
    #[arg(long, value_parser = duration)]
    pub crash_primary_at: Option<Duration>,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub demo: DemoArgs,
}

impl UdpDemoArgs {
    pub fn config(&self) -> UdpDemoConfig {
        let d = UdpDemoConfig::default();
        UdpDemoConfig {
            requests: self.requests.unwrap_or(d.requests),
            clients: self.clients.map_or(d.clients, usize::from),
            seats: self.seats.unwrap_or(d.seats),
            impairments: self.faults.apply(d.impairments),
            partitions: self.partition.clone(),
            crash_primary_at: self.crash_primary_at,
            seed: self.demo.seed.unwrap_or(d.seed),
            pcap: self.demo.pcap.clone(),
            ..d
        }
    }
}

/// `ustack impair`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ImpairArgs {
    /// First TUN device (created if missing).
    #[arg(long)]
    pub tun_a: String,
    /// Second TUN device.
    #[arg(long)]
    pub tun_b: String,
    #[command(flatten)]
    pub faults: FaultArgs,
    /// Seed of the impairment engine; the same seed makes the same decisions.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = DEFAULT_MTU)]
    pub mtu: usize,
    /// Capture device A's side to pcapng (impairment decisions as packet comments).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Stop after this long instead of running until killed.
    #[arg(long = "for", value_parser = duration)]
    pub run_for: Option<Duration>,
}

impl ImpairArgs {
    pub fn config(&self) -> ImpairConfig {
        let d = ImpairConfig::new(&self.tun_a, &self.tun_b);
        ImpairConfig {
            mtu: self.mtu,
            a_to_b: self.faults.apply(d.a_to_b),
            b_to_a: self.faults.apply(d.b_to_a),
            seed: self.seed.unwrap_or(d.seed),
            pcap: self.pcap.clone(),
            run_for: self.run_for,
            ..d
        }
    }
}

/// `ustack iperf3`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct Iperf3Args {
    /// Run as server (on the device given by --tun/--addr, like `ustack up`).
    #[arg(short = 's', long, conflicts_with = "client")]
    pub server: bool,
    /// Run as client, connecting to HOST (an iperf3 server, the kernel's for instance).
    #[arg(short = 'c', long)]
    pub client: Option<std::net::Ipv4Addr>,
    /// Test length in seconds.
    #[arg(short = 't', long, default_value_t = 10)]
    pub time: u64,
    /// Reverse: the server sends, we receive.
    #[arg(short = 'R', long)]
    pub reverse: bool,
    /// UDP test: datagrams paced at -b, loss and jitter measured as iperf3 does.
    #[arg(short = 'u', long)]
    pub udp: bool,
    /// Target bitrate per stream, in bits/s (K, M, G: powers of 1000; 0: unlimited);
    /// if not given, 1 Mbit/s for UDP and unlimited for TCP, as in iperf3.
    #[arg(short = 'b', long, value_parser = bitrate)]
    pub bitrate: Option<u64>,
    /// Bytes per datagram (UDP, default 1460; above the MTU they are fragmented) or per
    /// write (TCP, default 128K); K, M: powers of 1024.
    #[arg(short = 'l', long, value_parser = length)]
    pub length: Option<usize>,
    /// Parallel streams.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub parallel: usize,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `ustack bench`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct BenchArgs {
    /// Short runs (1 run of 1 s per throughput test, 50 pings) instead of 3 runs of 5 s
    /// and 500 pings.
    #[arg(long)]
    pub quick: bool,
    /// Runs of every measurement (default 3, with --quick 1); the table shows the median.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: Option<u32>,
    /// Also write every raw number (min, median, max and all samples per column) and the
    /// configuration as JSON to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the table as grouped bars, one group per measurement, in an SVG FILE.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Measure only these rows (comma-separated keys, as in the JSON: receive, send,
    /// offload_receive, pingpong_p50, ping_p50, lossy1_send_bbr, ...); an unknown key lists
    /// them all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The flags that would give `imp`, as `--loss 0.2 --delay 25ms ...`.
fn fault_flags(imp: &Impairments) -> String {
    let mut flags = Vec::new();
    for (name, p) in [
        ("loss", imp.loss),
        ("reorder", imp.reorder),
        ("duplicate", imp.duplicate),
        ("corrupt", imp.corrupt),
    ] {
        if p > 0.0 {
            flags.push(format!("--{name} {p}"));
        }
    }
    for (name, d) in [("delay", imp.delay), ("jitter", imp.jitter)] {
        if !d.is_zero() {
            flags.push(format!("--{name} {d:?}"));
        }
    }
    if let Some(bps) = imp.rate_bps {
        flags.push(format!("--rate-mbit {}", bps / 1_000_000));
    }
    for o in &imp.outages {
        flags.push(format!("--outage {:?}+{:?}", o.start, o.len));
    }
    if flags.is_empty() {
        flags.push("a perfect wire".to_string());
    }
    flags.join(" ")
}

/// The help's closing line for `demo ping`: its defaults, read from [`PingConfig`].
pub fn ping_defaults() -> String {
    let d = PingConfig::default();
    format!(
        "Defaults: --count {} --interval {:?} --size {} {} --seed {}",
        d.count,
        d.interval,
        d.size,
        fault_flags(&d.impairments),
        d.seed
    )
}

/// The help's closing line for `demo tcp`, read from [`TcpDemoConfig`].
pub fn tcp_defaults() -> String {
    let d = TcpDemoConfig::default();
    format!(
        "Defaults: --size {}M {} --give-up-after {:?} --seed {}",
        d.size >> 20,
        fault_flags(&d.impairments),
        d.give_up_after,
        d.seed
    )
}

/// The help's closing line for `demo udp`, read from [`UdpDemoConfig`].
pub fn udp_defaults() -> String {
    let d = UdpDemoConfig::default();
    format!(
        "Defaults: --requests {} --clients {} --seats {} {} --seed {}",
        d.requests,
        d.clients,
        d.seats,
        fault_flags(&d.impairments),
        d.seed
    )
}

/// The help's closing line for `impair`, read from [`ImpairConfig::new`].
pub fn impair_defaults() -> String {
    let d = ImpairConfig::new("a", "b");
    format!(
        "Defaults: {} --seed {}, until killed",
        fault_flags(&d.a_to_b),
        d.seed
    )
}

pub fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability between 0 and 1")),
    }
}

pub fn duration(s: &str) -> Result<Duration, ParseDurationError> {
    parse_duration(s)
}

/// The largest file the TCP demo moves: both hosts hold the whole file in memory.
const MAX_SIZE: u64 = 1 << 30;

/// A byte count such as `1000`, `64K`, `32M` or `1G` (binary units), from 1 byte to 1 GiB.
pub fn size(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a size (examples: 1000, 64K, 32M, 1G)");
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    let total = n.checked_mul(scale).ok_or_else(bad)?;
    if total == 0 || total > MAX_SIZE {
        return Err(format!("`{s}`: the size must be between 1 byte and 1 GiB"));
    }
    Ok(total)
}

/// A bitrate as iperf3 reads `-b`: `50M`, `1.5G`, `800K`, `1000000` (bits/s, decimal units).
pub fn bitrate(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a bitrate (examples: 1000000, 800K, 50M, 1G)");
    let (number, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'm' | 'M')) => (&s[..i], 1e6),
        Some((i, 'g' | 'G')) => (&s[..i], 1e9),
        _ => (s, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n >= 0.0 && (n * scale) < 1e15 => Ok((n * scale).round() as u64),
        _ => Err(bad()),
    }
}

/// A length as iperf3 reads `-l`: `1460`, `8K`, `1M` (binary units).
pub fn length(s: &str) -> Result<usize, String> {
    let bad = || format!("`{s}` is not a length (examples: 1460, 8000, 64K)");
    let (digits, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        _ => (s, 1),
    };
    let n: usize = digits.parse().map_err(|_| bad())?;
    n.checked_mul(scale).filter(|&l| l > 0).ok_or_else(bad)
}

pub fn cidr(s: &str) -> Result<Ipv4Cidr, ParseCidrError> {
    s.parse()
}

pub fn outage(s: &str) -> Result<Outage, ImpairError> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_not_given_keep_the_configured_defaults() {
        assert_eq!(TcpDemoArgs::default().config(), TcpDemoConfig::default());
        assert_eq!(UdpDemoArgs::default().config(), UdpDemoConfig::default());
        assert_eq!(PingArgs::default().config(), PingConfig::default());
    }

    #[test]
    fn given_flags_replace_defaults_and_no_outage_clears_them() {
        let faults = FaultArgs {
            loss: Some(0.5),
            rate_mbit: Some(0),
            no_outage: true,
            ..FaultArgs::default()
        };
        let imp = faults.apply(TcpDemoConfig::default().impairments);
        assert_eq!(imp.loss, 0.5);
        assert_eq!(imp.rate_bps, None);
        assert!(imp.outages.is_empty());
        assert_eq!(imp.delay, TcpDemoConfig::default().impairments.delay);
    }

    #[test]
    fn the_help_states_the_configured_defaults() {
        assert_eq!(
            tcp_defaults(),
            "Defaults: --size 32M --delay 10ms --rate-mbit 20 --outage 5s+10s \
             --give-up-after 3600s --seed 1"
        );
        assert!(ping_defaults().contains("--loss 0.2 --reorder 0.2"));
        assert!(udp_defaults().contains("--outage 2s+10s"));
        assert!(impair_defaults().contains("a perfect wire"));
    }

    #[test]
    fn sizes_read_binary_units_and_refuse_the_rest() {
        assert_eq!(size("32M"), Ok(32 << 20));
        assert_eq!(size("1000"), Ok(1000));
        assert!(size("12X").unwrap_err().contains("is not a size"));
        assert!(size("2G").unwrap_err().contains("between 1 byte and 1 GiB"));
        assert!(probability("1.5").is_err());
    }

    /// iperf3's units: `-b` in powers of 1000, `-l` in powers of 1024.
    #[test]
    fn bitrates_are_decimal_and_lengths_binary_as_iperf3_reads_them() {
        assert_eq!(bitrate("50M"), Ok(50_000_000));
        assert_eq!(bitrate("1.5g"), Ok(1_500_000_000));
        assert_eq!(bitrate("0"), Ok(0));
        assert!(bitrate("fast").is_err() && bitrate("-1M").is_err());
        assert_eq!(length("8000"), Ok(8000));
        assert_eq!(length("64K"), Ok(65536));
        assert!(length("0").is_err() && length("1.5K").is_err());
    }
}
