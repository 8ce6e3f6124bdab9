//! `ustack-bench-peer`: the yardsticks `ustack bench` measures ustack against, and the one
//! client it measures every stack with.
//!
//! - `smoltcp --tun NAME --addr A.B.C.D/LEN`: smoltcp 0.14 on a TUN device (Medium::Ip),
//!   answering ICMP echo and serving TCP echo (7), discard (9) and source (19), with CUBIC
//!   and 4 MiB send and receive buffers per connection, until SIGTERM or SIGINT.
//! - `serve --addr A.B.C.D`: the same three TCP services on the kernel's stack.
//! - `client --target A.B.C.D --mode discard|source|pingpong|connect|hold --seconds N
//!   [--count N] [--json]`: a kernel-socket client that prints one JSON line with what it
//!   measured (`hold` prints one when its connections are open and one when they closed).
//!
//! smoltcp is used here only, never by the ustack crates. This is a small tool with three
//! subcommands and a handful of flags each, so it parses its arguments by hand instead of
//! adding clap's derive machinery to a second binary.

mod client;
mod kernel;
mod smol;

use std::process::ExitCode;

/// TCP echo (RFC 862).
pub const ECHO: u16 = 7;
/// TCP discard (RFC 863).
pub const DISCARD: u16 = 9;
/// TCP character generator (RFC 864): here a repeating pattern, as fast as the window
/// allows.
pub const SOURCE: u16 = 19;

/// What `source` sends, over and over: RFC 864's 95 printable ASCII characters.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b' ' + (i % 95) as u8).collect()
}

const USAGE: &str = "usage:
  ustack-bench-peer smoltcp --tun NAME --addr A.B.C.D/LEN
  ustack-bench-peer serve --addr A.B.C.D
  ustack-bench-peer client --target A.B.C.D --mode discard|source|pingpong|connect|hold --seconds N [--count N] [--json]";

/// `--name value` pairs and bare `--flag`s after the subcommand.
struct Flags(Vec<String>);

impl Flags {
    fn value(&self, name: &str) -> Result<&str, String> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
            .ok_or_else(|| format!("missing {flag} VALUE"))
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| *a == format!("--{name}"))
    }

    fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let v = self.value(name)?;
        v.parse()
            .map_err(|_| format!("--{name}: cannot parse {v:?}"))
    }
}

/// Why the peer stopped: exit status 2 for a bad command line, 1 for a failed run.
enum Failure {
    Usage(String),
    Run(String),
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Usage(why)
    }
}

fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage(USAGE.into()));
    };
    let flags = Flags(rest.to_vec());
    match command.as_str() {
        "smoltcp" => {
            let (tun, addr) = (flags.value("tun")?, smol::cidr(flags.value("addr")?)?);
            smol::run(tun, addr).map_err(Failure::Run)
        }
        "serve" => kernel::serve(flags.parse("addr")?).map_err(Failure::Run),
        "client" => {
            let mode = flags.value("mode")?.parse()?;
            let (target, seconds) = (flags.parse("target")?, flags.parse("seconds")?);
            let count = if flags.has("count") {
                flags.parse("count")?
            } else {
                10_000
            };
            let report = client::run(target, mode, seconds, count, flags.has("json"))
                .map_err(Failure::Run)?;
            if flags.has("json") {
                println!("{report}");
            } else {
                println!("{report:#}");
            }
            Ok(())
        }
        _ => Err(Failure::Usage(USAGE.into())),
    }
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("ustack-bench-peer: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("ustack-bench-peer: {e}");
            ExitCode::from(1)
        }
    }
}
