//! The `ustack` command line: argument parsing, output and exit codes only. Everything it
//! runs lives in `ustack-app`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ustack_app::demo::ping::{self, PingConfig};
use ustack_app::demo::tcp::{self as tcp_demo, TcpDemoConfig};
use ustack_app::demo::udp::{self as udp_demo, UdpDemoConfig};
use ustack_app::link::time::parse_duration;
use ustack_app::link::{Duration, Outage};
use ustack_app::net::Ipv4Cidr;

/// ustack: a user-space TCP/IP stack. Runs on a simulated network, a TUN device or a raw
/// interface; see README.md.
#[derive(Parser, Debug)]
#[command(name = "ustack", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the demos on the embedded simulated network (no root needed).
    Demo {
        #[command(subcommand)]
        which: Option<Demo>,
    },
    /// Run the stack on a TUN device or raw interface (answers ping, echo, discard, iperf3).
    Up(UpArgs),
    /// iperf3-compatible server and client.
    Iperf3(Iperf3Args),
    /// User-space netem: forward between two TUN devices through the impairment engine.
    Impair(ImpairArgs),
    /// Side-by-side benchmarks of the kernel, ustack and smoltcp.
    Bench(BenchArgs),
}

#[derive(Subcommand, Debug)]
enum Demo {
    /// Ping between two simulated hosts over a lossy, reordering link.
    Ping(PingArgs),
    /// TCP file transfer through an outage, verified by sha256; reconnects and resumes.
    Tcp(TcpDemoArgs),
    /// UDP ticket-selling RPC with at-most-once semantics and fail-over to a backup.
    Udp(UdpDemoArgs),
}

#[derive(Args, Debug)]
struct PingArgs {
    /// Echo requests to send.
    #[arg(long, default_value_t = 50)]
    count: u16,
    /// Time between requests (virtual), e.g. 20ms.
    #[arg(long, value_parser = duration, default_value = "20ms")]
    interval: Duration,
    /// ICMP data bytes per request; above 1472 the requests are fragmented.
    #[arg(long, default_value_t = 56, value_parser = clap::value_parser!(u16).range(0..=65507))]
    size: u16,
    /// Probability that a packet is lost, each direction (0 to 1).
    #[arg(long, value_parser = probability, default_value = "0.2")]
    loss: f64,
    /// Probability that a packet is held back so later ones overtake it.
    #[arg(long, value_parser = probability, default_value = "0.2")]
    reorder: f64,
    /// Probability that a packet is delivered twice.
    #[arg(long, value_parser = probability, default_value = "0")]
    duplicate: f64,
    /// Probability that one bit of a packet is flipped (checksums must catch it).
    #[arg(long, value_parser = probability, default_value = "0")]
    corrupt: f64,
    /// One-way delay.
    #[arg(long, value_parser = duration, default_value = "25ms")]
    delay: Duration,
    /// Delay variation (keeps order; use --reorder to reorder).
    #[arg(long, value_parser = duration, default_value = "5ms")]
    jitter: Duration,
    /// Link down from START for LEN, e.g. 0.3s+0.2s; repeatable.
    #[arg(long, value_parser = outage)]
    outage: Vec<Outage>,
    /// Seed of the impairment engine; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a pcapng capture of host A's link.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct TcpDemoArgs {
    /// File size in bytes, at most 1G (suffixes K, M, G for KiB, MiB, GiB).
    #[arg(long, value_parser = size, default_value = "32M")]
    size: u64,
    /// Probability that a packet is lost, each direction (0 to 1).
    #[arg(long, value_parser = probability, default_value = "0")]
    loss: f64,
    /// Link down from START for LEN, e.g. 3s+120s; repeatable. Default: 5s+10s.
    #[arg(long, value_parser = outage)]
    outage: Vec<Outage>,
    /// No outage at all (instead of the default one).
    #[arg(long, conflicts_with = "outage")]
    no_outage: bool,
    /// Link rate in Mbit/s.
    #[arg(long, default_value_t = 20)]
    rate_mbit: u64,
    /// Give up after this much virtual time without the whole file across.
    #[arg(long, value_parser = duration, default_value = "1h")]
    give_up_after: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a pcapng capture of host A's link.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct UdpDemoArgs {
    /// Ticket purchases in all (spread over the clients).
    #[arg(long, default_value_t = 200)]
    requests: u32,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seats for sale; purchases beyond them are answered "sold out".
    #[arg(long, default_value_t = 150)]
    seats: u32,
    /// Probability that a packet is lost, on every path (0 to 1).
    #[arg(long, value_parser = probability, default_value = "0.05")]
    loss: f64,
    /// Probability that a packet is delivered twice.
    #[arg(long, value_parser = probability, default_value = "0.02")]
    duplicate: f64,
    /// Whole network down from START for LEN; repeatable. Default: 2s+10s.
    #[arg(long, value_parser = outage)]
    outage: Vec<Outage>,
    /// No outage at all (instead of the default one).
    #[arg(long, conflicts_with = "outage")]
    no_outage: bool,
    /// Primary cut off from the clients only, from START for LEN; repeatable.
    #[arg(long, value_parser = outage)]
    partition: Vec<Outage>,
    /// The primary crashes at this time; the backup takes over.
    #[arg(long, value_parser = duration)]
    crash_primary_at: Option<Duration>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a pcapng capture of client 0's link.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct UpArgs {
    /// TUN device to create or attach to.
    #[arg(long, conflicts_with = "raw")]
    tun: Option<String>,
    /// Interface to bind a raw AF_PACKET socket to (not built yet).
    #[arg(long)]
    raw: Option<String>,
    /// Our address and prefix, e.g. 198.18.0.2/24.
    #[arg(long, value_parser = cidr)]
    addr: Ipv4Cidr,
    /// MTU of the device.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Use IFF_VNET_HDR checksum and segmentation offload (not built yet).
    #[arg(long)]
    offload: bool,
    /// Write a pcapng capture of the device.
    #[arg(long)]
    pcap: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct Iperf3Args {
    /// Run as server (on the device given by --tun/--addr, like `ustack up`).
    #[arg(short = 's', long, conflicts_with = "client")]
    server: bool,
    /// Run as client, connecting to HOST (an iperf3 server, the kernel's for instance).
    #[arg(short = 'c', long)]
    client: Option<std::net::Ipv4Addr>,
    /// Test length in seconds.
    #[arg(short = 't', long, default_value_t = 10)]
    time: u64,
    /// Reverse: the server sends, we receive.
    #[arg(short = 'R', long)]
    reverse: bool,
    /// UDP test (not built yet).
    #[arg(short = 'u', long)]
    udp: bool,
    /// Parallel streams.
    #[arg(short = 'P', long, default_value_t = 1)]
    parallel: usize,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
    /// TUN device ustack runs on.
    #[arg(long)]
    tun: Option<String>,
    /// Our address and prefix on the device, e.g. 198.18.1.2/24.
    #[arg(long, value_parser = cidr)]
    addr: Option<Ipv4Cidr>,
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
}

#[derive(Args, Debug)]
struct ImpairArgs {
    /// First TUN device (created if missing).
    #[arg(long)]
    tun_a: String,
    /// Second TUN device.
    #[arg(long)]
    tun_b: String,
    /// Probability that a packet is lost, each direction (0 to 1).
    #[arg(long, value_parser = probability, default_value = "0")]
    loss: f64,
    /// Probability that a packet is held back so later ones overtake it.
    #[arg(long, value_parser = probability, default_value = "0")]
    reorder: f64,
    /// Probability that a packet is delivered twice.
    #[arg(long, value_parser = probability, default_value = "0")]
    duplicate: f64,
    /// Probability that one bit of a packet is flipped.
    #[arg(long, value_parser = probability, default_value = "0")]
    corrupt: f64,
    /// One-way delay.
    #[arg(long, value_parser = duration, default_value = "0ms")]
    delay: Duration,
    /// Delay variation (keeps order).
    #[arg(long, value_parser = duration, default_value = "0ms")]
    jitter: Duration,
    /// Rate limit in Mbit/s, each direction (0: none).
    #[arg(long, default_value_t = 0)]
    rate_mbit: u64,
    /// Both directions down from START for LEN (times from the start of forwarding).
    #[arg(long, value_parser = outage)]
    outage: Vec<Outage>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Capture device A's side to pcapng (impairment decisions as packet comments).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Stop after this long instead of running until killed.
    #[arg(long = "for", value_parser = duration)]
    run_for: Option<Duration>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Short runs (1 s per throughput test, 50 pings).
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the results as SVG (not built yet).
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability between 0 and 1")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn size(s: &str) -> Result<u64, String> {
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
    // Both hosts hold the whole file in memory.
    if total == 0 || total > 1 << 30 {
        return Err(format!("`{s}`: the size must be between 1 byte and 1 GiB"));
    }
    Ok(total)
}

fn cidr(s: &str) -> Result<Ipv4Cidr, String> {
    s.parse::<Ipv4Cidr>().map_err(|e| e.to_string())
}

fn outage(s: &str) -> Result<Outage, String> {
    s.parse::<Outage>().map_err(|e| e.to_string())
}

/// Exit status of a command that is part of the contract but not built yet.
const NOT_IMPLEMENTED: u8 = 2;

fn not_implemented(what: &str) -> ExitCode {
    eprintln!("ustack {what}: not implemented yet");
    ExitCode::from(NOT_IMPLEMENTED)
}

fn run_ping(args: &PingArgs) -> ExitCode {
    let mut cfg = PingConfig {
        count: args.count,
        interval: args.interval,
        size: usize::from(args.size),
        seed: args.seed,
        pcap: args.pcap.clone(),
        ..PingConfig::default()
    };
    cfg.impairments.loss = args.loss;
    cfg.impairments.reorder = args.reorder;
    cfg.impairments.duplicate = args.duplicate;
    cfg.impairments.corrupt = args.corrupt;
    cfg.impairments.delay = args.delay;
    cfg.impairments.jitter = args.jitter;
    cfg.impairments.outages = args.outage.clone();
    let mut out = std::io::stdout();
    match ping::run(&cfg, &mut out) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            }
            if report.mismatched > 0 {
                eprintln!(
                    "ustack demo ping: {} replies did not match their request",
                    report.mismatched
                );
                return ExitCode::from(1);
            }
            if report.received() == 0 {
                eprintln!("ustack demo ping: no replies from {}", ping::HOST_B);
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ustack demo ping: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_tcp_demo(args: &TcpDemoArgs) -> ExitCode {
    let mut cfg = TcpDemoConfig {
        size: args.size,
        loss: args.loss,
        seed: args.seed,
        pcap: args.pcap.clone(),
        rate_bps: args.rate_mbit.max(1) * 1_000_000,
        give_up_after: args.give_up_after,
        progress: !args.json,
        ..TcpDemoConfig::default()
    };
    if args.no_outage {
        cfg.outages.clear();
    } else if !args.outage.is_empty() {
        cfg.outages = args.outage.clone();
    }
    let mut out = std::io::stdout();
    match tcp_demo::run(&cfg, &mut out) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            }
            if report.sha256_match() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "ustack demo tcp: {}",
                    report
                        .failure
                        .as_deref()
                        .unwrap_or("the received file does not match")
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ustack demo tcp: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_udp_demo(args: &UdpDemoArgs) -> ExitCode {
    let mut cfg = UdpDemoConfig {
        requests: args.requests,
        clients: args.clients,
        seats: args.seats,
        loss: args.loss,
        duplicate: args.duplicate,
        partitions: args.partition.clone(),
        crash_primary_at: args.crash_primary_at,
        seed: args.seed,
        pcap: args.pcap.clone(),
        ..UdpDemoConfig::default()
    };
    if args.no_outage {
        cfg.outages.clear();
    } else if !args.outage.is_empty() {
        cfg.outages = args.outage.clone();
    }
    let mut out = std::io::stdout();
    match udp_demo::run(&cfg, &mut out) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            }
            if report.audit_ok() && report.gave_up == 0 {
                ExitCode::SUCCESS
            } else if !report.audit_ok() {
                eprintln!("ustack demo udp: the audit failed");
                ExitCode::from(1)
            } else {
                eprintln!(
                    "ustack demo udp: {} purchases got no answer before the clients gave up",
                    report.gave_up
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ustack demo udp: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_up(args: &UpArgs) -> ExitCode {
    if args.raw.is_some() {
        return not_implemented("up --raw");
    }
    if args.offload {
        return not_implemented("up --offload");
    }
    let Some(tun) = args.tun.clone() else {
        eprintln!("ustack up: give a device with --tun NAME");
        return ExitCode::from(2);
    };
    let cfg = ustack_app::up::UpConfig {
        tun,
        addr: args.addr,
        mtu: args.mtu,
        pcap: args.pcap.clone(),
    };
    match ustack_app::up::run(&cfg, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ustack up: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_iperf3(args: &Iperf3Args) -> ExitCode {
    if args.udp {
        return not_implemented("iperf3 -u");
    }
    let (Some(tun), Some(addr)) = (args.tun.clone(), args.addr) else {
        eprintln!(
            "ustack iperf3: give the device ustack runs on with --tun NAME --addr A.B.C.D/LEN"
        );
        return ExitCode::from(2);
    };
    if args.server {
        return run_up(&UpArgs {
            tun: Some(tun),
            raw: None,
            addr,
            mtu: args.mtu,
            offload: false,
            pcap: None,
        });
    }
    let Some(host) = args.client else {
        eprintln!("ustack iperf3: give -s or -c HOST");
        return ExitCode::from(2);
    };
    let link = match ustack_app::link::TunLink::open(&tun, args.mtu) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ustack iperf3: {e}");
            return ExitCode::from(1);
        }
    };
    let iface = ustack_app::net::Interface::new(
        Box::new(link) as ustack_app::runtime::BoxLink,
        ustack_app::net::Config::new(addr),
    );
    let stack = ustack_app::transport::stack::Stack::new(iface, Default::default());
    let runtime = ustack_app::runtime::Runtime::start(stack);
    let server = std::net::SocketAddrV4::new(host, ustack_app::iperf3::PORT);
    match ustack_app::iperf3::client(
        &runtime.caller(),
        server,
        args.time,
        args.reverse,
        args.parallel,
    ) {
        Ok(r) => {
            println!(
                "{} {} bytes in {:.2} s over {} stream(s): {:.2} Gbit/s (the server counted {} bytes), {} retransmits",
                if r.reverse { "received" } else { "sent" },
                r.bytes,
                r.seconds,
                r.streams,
                r.gbit_per_s(),
                r.server_bytes,
                r.retransmits
            );
            if args.json {
                println!("{}", r.to_json());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ustack iperf3: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_bench(args: &BenchArgs) -> ExitCode {
    if args.svg.is_some() {
        return not_implemented("bench --svg");
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ustack"));
    let cfg = ustack_app::bench::BenchConfig::new(args.quick, exe);
    match ustack_app::bench::run_bench(&cfg, &mut std::io::stdout()) {
        Ok(rows) => {
            if let Some(path) = &args.json {
                if let Err(e) = ustack_app::bench::write_json(&rows, path) {
                    eprintln!("ustack bench: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ustack bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_impair(args: &ImpairArgs) -> ExitCode {
    let imp = ustack_app::link::Impairments {
        loss: args.loss,
        reorder: args.reorder,
        duplicate: args.duplicate,
        corrupt: args.corrupt,
        delay: args.delay,
        jitter: args.jitter,
        rate_bps: (args.rate_mbit > 0).then(|| args.rate_mbit * 1_000_000),
        outages: args.outage.clone(),
        ..ustack_app::link::Impairments::none()
    };
    let cfg = ustack_app::impair::ImpairConfig {
        tun_a: args.tun_a.clone(),
        tun_b: args.tun_b.clone(),
        mtu: args.mtu,
        a_to_b: imp.clone(),
        b_to_a: imp,
        seed: args.seed,
        pcap: args.pcap.clone(),
        run_for: args.run_for,
    };
    match ustack_app::impair::run(&cfg, &mut std::io::stdout()) {
        Ok(stats) => {
            println!(
                "a->b: {} packets, {} lost, {} outage-dropped, {} reordered, {} duplicated, {} corrupted",
                stats.a_to_b.packets,
                stats.a_to_b.lost + stats.a_to_b.burst_lost,
                stats.a_to_b.outage_dropped,
                stats.a_to_b.reordered,
                stats.a_to_b.duplicated,
                stats.a_to_b.corrupted
            );
            println!(
                "b->a: {} packets, {} lost, {} outage-dropped, {} reordered, {} duplicated, {} corrupted",
                stats.b_to_a.packets,
                stats.b_to_a.lost + stats.b_to_a.burst_lost,
                stats.b_to_a.outage_dropped,
                stats.b_to_a.reordered,
                stats.b_to_a.duplicated,
                stats.b_to_a.corrupted
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ustack impair: {e}");
            ExitCode::from(1)
        }
    }
}

/// The values a subcommand's arguments take when none are given (for `ustack demo`).
fn defaults<A: Args>() -> A {
    #[derive(Parser)]
    struct Wrapper<A: Args> {
        #[command(flatten)]
        args: A,
    }
    Wrapper::<A>::parse_from(["ustack"]).args
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { which: None } => {
            println!("== ping over a lossy, reordering simulated link ==");
            let ping = run_ping(&PingArgs {
                count: 10,
                ..defaults::<PingArgs>()
            });
            println!("\n== TCP file transfer through a 10 s outage ==");
            let tcp = run_tcp_demo(&defaults::<TcpDemoArgs>());
            println!("\n== UDP ticket office through a 10 s outage, at most once ==");
            let udp = run_udp_demo(&defaults::<UdpDemoArgs>());
            if [ping, tcp, udp].iter().all(|c| *c == ExitCode::SUCCESS) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Demo {
            which: Some(Demo::Ping(args)),
        } => run_ping(&args),
        Command::Demo {
            which: Some(Demo::Tcp(args)),
        } => run_tcp_demo(&args),
        Command::Demo {
            which: Some(Demo::Udp(args)),
        } => run_udp_demo(&args),
        Command::Up(args) => run_up(&args),
        Command::Iperf3(args) => run_iperf3(&args),
        Command::Impair(args) => run_impair(&args),
        Command::Bench(args) => run_bench(&args),
    }
}
