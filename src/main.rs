//! The `ustack` command line: argument parsing, output and exit codes only. Everything it
//! runs, and the option structs it parses, live in `ustack-app`.
//!
//! Exit status: 0 when the command did its job, 1 when it ran and failed (a demo whose
//! audit or checksum failed, a device or capture file that cannot be opened), 2 for a
//! usage error (bad or missing flags, or a command that is not built yet).

use std::fmt::Display;
use std::io::stdout;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ustack_app::demo::{ping, scale, tcp, udp, Outcome};
use ustack_app::device::{bring_up, stop_signals, DeviceArgs, SHUTDOWN_GRACE};
use ustack_app::options::{
    BenchArgs, ImpairArgs, Iperf3Args, PingArgs, ScaleArgs, TcpDemoArgs, UdpDemoArgs,
};
use ustack_app::{bench, impair, iperf3, options, up};

/// ustack: a user-space TCP/IP stack. Runs on a simulated network, a TUN or TAP device or
/// a raw interface; see README.md.
#[derive(Parser, Debug)]
#[command(name = "ustack", version, about, long_about = None, after_help = EXIT_STATUS_HELP)]
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
    /// Run the stack on a TUN or TAP device or a raw interface (answers ping, ARP, echo 7,
    /// discard 9, source 19, iperf3 5201).
    #[command(mut_arg("addr", |a| a.required(true)))]
    Up(DeviceArgs),
    /// iperf3-compatible server and client.
    Iperf3(Iperf3Args),
    /// User-space netem: forward between two TUN devices through the impairment engine.
    #[command(after_help = options::impair_defaults())]
    Impair(ImpairArgs),
    /// Side-by-side benchmarks of the kernel, ustack and smoltcp.
    Bench(BenchArgs),
}

#[derive(Subcommand, Debug)]
enum Demo {
    /// Ping between two simulated hosts over a lossy, reordering link.
    #[command(after_help = options::ping_defaults())]
    Ping(PingArgs),
    /// TCP file transfer through an outage, verified by sha256; reconnects and resumes.
    #[command(after_help = options::tcp_defaults())]
    Tcp(TcpDemoArgs),
    /// UDP ticket-selling RPC with at-most-once semantics and fail-over to a backup.
    #[command(after_help = options::udp_defaults())]
    Udp(UdpDemoArgs),
    /// Many TCP connections on one simulated stack pair: time to open them, memory per
    /// idle connection, memory after they close (default 10 000).
    Scale(ScaleArgs),
}

/// The command ran and failed.
const EXIT_RUN_FAILED: u8 = 1;
/// The command line asked for something impossible, or for a command not built yet.
const EXIT_USAGE: u8 = 2;

const EXIT_STATUS_HELP: &str = "Exit status: 0 done; 1 the run failed (a demo's check, a \
device or capture file that cannot be opened); 2 usage (bad flags, or not implemented yet).";

/// Why a command did not succeed: the one sentence it prints, and its exit status.
struct Failure {
    status: u8,
    why: String,
}

impl Failure {
    fn run(why: impl Display) -> Failure {
        Failure {
            status: EXIT_RUN_FAILED,
            why: why.to_string(),
        }
    }

    fn usage(why: impl Display) -> Failure {
        Failure {
            status: EXIT_USAGE,
            why: why.to_string(),
        }
    }

    /// A run failure, or a usage error when `is_usage`.
    fn of(why: impl Display, is_usage: bool) -> Failure {
        if is_usage {
            Failure::usage(why)
        } else {
            Failure::run(why)
        }
    }
}

type Ran = Result<(), Failure>;

/// The one exit path: says why `ustack {command}` failed, on stderr, and picks the status.
fn exit(command: &str, ran: Ran) -> ExitCode {
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, why }) => {
            eprintln!("ustack {command}: {why}");
            ExitCode::from(status)
        }
    }
}

/// The one JSON printer: the summary as the last line when `--json` asked for it, then
/// the run's verdict.
fn conclude(report: &impl Outcome, json: bool) -> Ran {
    if json {
        println!("{}", report.to_json());
    }
    report
        .failure()
        .map_or(Ok(()), |why| Err(Failure::run(why)))
}

fn demo_ping(args: &PingArgs) -> Ran {
    let report = ping::run(&args.config(), &mut stdout()).map_err(Failure::run)?;
    conclude(&report, args.demo.json)
}

fn demo_tcp(args: &TcpDemoArgs) -> Ran {
    let report = tcp::run(&args.config(), &mut stdout()).map_err(Failure::run)?;
    conclude(&report, args.demo.json)
}

fn demo_udp(args: &UdpDemoArgs) -> Ran {
    let report = udp::run(&args.config(), &mut stdout()).map_err(Failure::run)?;
    conclude(&report, args.demo.json)
}

fn demo_scale(args: &ScaleArgs) -> Ran {
    let report = scale::run(&args.config(), &mut stdout()).map_err(|e| match e {
        scale::ScaleError::Count => Failure::usage(e),
        e => Failure::run(e),
    })?;
    conclude(&report, args.json)
}

/// `ustack demo`: the three demos with their defaults (a short ping).
fn demo_all() -> ExitCode {
    println!("== ping over a lossy, reordering simulated link ==");
    let ping = PingArgs {
        count: Some(10),
        ..PingArgs::default()
    };
    let ping = exit("demo ping", demo_ping(&ping));
    println!("\n== TCP file transfer through a 10 s outage ==");
    let tcp = exit("demo tcp", demo_tcp(&TcpDemoArgs::default()));
    println!("\n== UDP ticket office through a 10 s outage, at most once ==");
    let udp = exit("demo udp", demo_udp(&UdpDemoArgs::default()));
    if [ping, tcp, udp].iter().all(|c| *c == ExitCode::SUCCESS) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RUN_FAILED)
    }
}

fn run_up(args: &DeviceArgs) -> Ran {
    up::run(args, &mut stdout()).map_err(|e| Failure::of(&e, e.is_usage()))
}

fn run_iperf3(args: &Iperf3Args) -> Ran {
    if args.server {
        return run_up(&args.device);
    }
    let device_error = |e: ustack_app::device::DeviceError| Failure::of(&e, e.is_usage());
    let Some(host) = args.client else {
        args.device.target().map_err(device_error)?;
        return Err(Failure::usage("give -s or -c HOST"));
    };
    let test = iperf3::ClientTest::from_args(args, host).map_err(Failure::usage)?;
    // SIGINT or SIGTERM ends the test early, with its report; then the stack shuts down
    // in order (connections closed, capture flushed) and the exit status is 0.
    let stop = stop_signals().map_err(device_error)?;
    let device = bring_up(&args.device).map_err(device_error)?;
    let report = iperf3::client(&device.runtime.caller(), &test, &stop);
    device.shut_down(SHUTDOWN_GRACE).map_err(device_error)?;
    let report = report.map_err(Failure::run)?;
    println!("{report}");
    conclude(&report, args.json)
}

fn run_impair(args: &ImpairArgs) -> Ran {
    let stats = impair::run(&args.config(), &mut stdout()).map_err(Failure::run)?;
    println!("{stats}");
    Ok(())
}

fn run_bench(args: &BenchArgs) -> Ran {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ustack"));
    let mut cfg = bench::BenchConfig::new(args.quick, exe);
    if let Some(runs) = args.runs {
        cfg.runs = runs as usize;
    }
    cfg.only.clone_from(&args.only);
    let report = bench::run_bench(&cfg, &mut stdout()).map_err(Failure::run)?;
    let cannot_write =
        |path: &PathBuf, e| Failure::run(format_args!("cannot write {}: {e}", path.display()));
    if let Some(path) = &args.json {
        report.write_json(path).map_err(|e| cannot_write(path, e))?;
    }
    if let Some(path) = &args.svg {
        report.write_svg(path).map_err(|e| cannot_write(path, e))?;
    }
    let failures = report.failures();
    if !failures.is_empty() {
        return Err(Failure::run(format_args!(
            "{} measurement(s) failed: {}",
            failures.len(),
            failures.join("; ")
        )));
    }
    Ok(())
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo { which: None } => demo_all(),
        Command::Demo {
            which: Some(Demo::Ping(args)),
        } => exit("demo ping", demo_ping(&args)),
        Command::Demo {
            which: Some(Demo::Tcp(args)),
        } => exit("demo tcp", demo_tcp(&args)),
        Command::Demo {
            which: Some(Demo::Udp(args)),
        } => exit("demo udp", demo_udp(&args)),
        Command::Demo {
            which: Some(Demo::Scale(args)),
        } => exit("demo scale", demo_scale(&args)),
        Command::Up(args) => exit("up", run_up(&args)),
        Command::Iperf3(args) => exit("iperf3", run_iperf3(&args)),
        Command::Impair(args) => exit("impair", run_impair(&args)),
        Command::Bench(args) => exit("bench", run_bench(&args)),
    }
}
