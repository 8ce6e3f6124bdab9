//! `ustack bench`: the kernel, ustack and smoltcp measured side by side in one run on this
//! machine, in network namespaces the bench creates and deletes (198.18.3.0/24 to
//! 198.18.7.0/24, 198.18.14.0/24 to 198.18.16.0/24), with the same kernel-socket client
//! (`ustack-bench-peer client`) against every stack, so the columns differ only in the
//! stack under test:
//! - kernel: the kernel's TCP/IP over a veth pair (`ustack-bench-peer serve`, iperf3 -s);
//! - ustack: `ustack up` on a TUN device (`--offload`, `--busy-poll`, `--queues 2` and
//!   `--tx-thread` for the rows named so);
//! - smoltcp: `ustack-bench-peer smoltcp`, smoltcp 0.14 on a TUN device set up the same way.
//!
//! The lossy-path rows (issue 11) put the kernel's iperf3 and ustack at the ends of a path
//! through `ustack impair` (1% loss with 10 ms each way; 0.1% loss with 50 ms each way),
//! in namespaces of their own (198.18.8.0/24 to 198.18.13.0/24, see `targets::lossy`):
//! kernel and ustack senders with CUBIC and with BBR into the kernel's `iperf3 -s`, and the
//! kernel's BBR sender into the kernel's `iperf3 -s` and into `ustack up`. They have no
//! smoltcp column.
//!
//! Every measurement runs `runs` times (interleaved across the stacks, so a noisy moment
//! hits all columns alike); the table shows medians, the JSON keeps every sample.
//!
//! Adding a row: a probe function in `probes.rs` returning one number per row, and one
//! entry in [`MEASUREMENTS`].

mod probes;
mod svg;
mod targets;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use probes::ProbeFn;
pub use targets::StackKind;
use targets::{LossyPath, Target, Unavailable};

use crate::netns::NetnsError;
use crate::transport::tcp::TcpConfig;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Runs of every measurement (the table prints the median).
    pub runs: usize,
    /// Seconds per throughput and ping-pong test.
    pub seconds: u64,
    /// Seconds per lossy-path test (iperf3 `-t`).
    pub lossy_seconds: u64,
    /// Pings per ICMP latency test.
    pub pings: u32,
    /// Bytes for the in-process SimLink test.
    pub sim_bytes: usize,
    /// The `ustack` binary to start for the device tests.
    pub ustack: PathBuf,
    /// The reference peer (`ustack-bench-peer`): smoltcp, the kernel's services, the client.
    pub peer: PathBuf,
    /// Row keys to measure (`--only`); empty measures every row. A measurement runs when
    /// any of its rows is named.
    pub only: Vec<String>,
}

/// The peer's file name; `ustack bench` looks for it next to its own executable.
pub const PEER: &str = "ustack-bench-peer";

/// MTU of every device (the TUN default of `ustack up` and of the kernel's veth).
const MTU: usize = 1500;

impl BenchConfig {
    /// Defaults: 3 runs of 5 s (5 s on the lossy paths), 500 pings; `quick`: 1 run of 1 s
    /// (2 s on the lossy paths: enough to see each column move data, not a steady state),
    /// 50 pings. The peer is the `ustack-bench-peer` beside `ustack`.
    pub fn new(quick: bool, ustack: PathBuf) -> BenchConfig {
        let peer = ustack.with_file_name(PEER);
        BenchConfig {
            runs: if quick { 1 } else { 3 },
            seconds: if quick { 1 } else { 5 },
            lossy_seconds: if quick { 2 } else { 5 },
            pings: if quick { 50 } else { 500 },
            sim_bytes: if quick { 256 << 20 } else { 1 << 30 },
            ustack,
            peer,
            only: Vec::new(),
        }
    }

    /// Whether `m` is one of the measurements `only` asks for.
    fn selects(&self, m: &Measurement) -> bool {
        self.only.is_empty() || m.rows.iter().any(|r| self.only.iter().any(|k| k == r.key))
    }

    /// Buffer sizes and congestion control of each stack, as the output states them.
    pub fn stacks_config(&self) -> serde_json::Value {
        let tcp = TcpConfig::default();
        let sysctl = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "?".into())
        };
        serde_json::json!({
            "kernel": {
                "congestion_control": sysctl("tcp_congestion_control"),
                "tcp_rmem": sysctl("tcp_rmem"),
                "tcp_wmem": sysctl("tcp_wmem"),
            },
            "ustack": {
                "congestion_control": tcp.congestion.name(),
                "receive_buffer": format!("{} KiB, autotuned up to {} MiB",
                    tcp.recv_buffer >> 10, tcp.recv_buffer_max >> 20),
                "send_buffer": format!("{} KiB, grown up to {} MiB",
                    tcp.send_buffer >> 10, tcp.send_buffer_max >> 20),
            },
            "smoltcp": {
                "version": "0.14",
                "congestion_control": "cubic",
                "receive_buffer": "4 MiB, fixed",
                "send_buffer": "4 MiB, fixed",
            },
        })
    }
}

/// Every row key `--only` may name, in table order.
pub fn row_keys() -> Vec<&'static str> {
    MEASUREMENTS
        .iter()
        .flat_map(|m| m.rows.iter().map(|r| r.key))
        .collect()
}

/// An error naming the first key of `only` that is no row, with the list of rows.
fn check_only(only: &[String]) -> Result<(), BenchError> {
    let keys = row_keys();
    match only.iter().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(BenchError::UnknownRow(k.clone(), keys.join(", "))),
        None => Ok(()),
    }
}

/// Why the bench could not run, or one measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("ustack bench needs root (network namespaces and TUN devices)")]
    NotRoot,
    #[error("--only {0}: no such row; the rows are {1}")]
    UnknownRow(String, String),
    #[error("`{0}` is needed and was not found (apt-get install {1})")]
    Missing(&'static str, &'static str),
    #[error(
        "the reference peer {0} is missing: build it with cargo build --release (a default \
         workspace member; cargo build -p ustack-bench-peer beside a debug ustack)"
    )]
    NoPeer(PathBuf),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("iperf3 -J printed no JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// iperf3's own message (its JSON `error` field).
    #[error("iperf3 gave no result: {0}")]
    Iperf3(String),
    #[error("no ping replies from {0}")]
    NoPingReplies(String),
    #[error("cannot make a latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("the {0} client failed: {1}")]
    Client(String, String),
    #[error("{0} is not answering: {1}")]
    Down(&'static str, String),
    #[error("the SimLink transfer failed: {0}")]
    Sim(String),
}

/// The three columns of every row.
pub const COLUMNS: [&str; 3] = ["kernel", "ustack", "smoltcp"];
const KERNEL: usize = 0;
const USTACK: usize = 1;
const SMOLTCP: usize = 2;

/// Which way a row improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A target of issue 10 or 11: ustack / column `vs` at least (Higher) or at most (Lower) `ratio`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub vs: usize,
    pub ratio: f64,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    pub key: &'static str,
    pub what: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// Whether the kernel column means something (not for CPU of a process).
    pub kernel: bool,
    pub goals: &'static [Goal],
}

/// One probe run against up to three stacks, feeding `rows` (one value each per run).
struct Measurement {
    /// Name of the probe: a probe run against the same stack is measured once and its
    /// samples reused (the offload rows' kernel and smoltcp columns).
    probe: &'static str,
    run: ProbeFn,
    /// Every run against a stack process of its own, started for it (what the probe
    /// measures depends on the process's history: its memory).
    fresh: bool,
    stacks: [Option<StackKind>; 3],
    rows: &'static [RowSpec],
}

const GBPS: &str = "Gbit/s";
const MBPS: &str = "Mbit/s";
const US: &str = "us";
const CPU: &str = "ms CPU/Gbit";

/// Issue 10's offload targets: 2.5x smoltcp (which has no offload) and 0.6x the kernel.
const OFFLOAD_GOALS: &[Goal] = &[
    Goal {
        vs: SMOLTCP,
        ratio: 2.5,
    },
    Goal {
        vs: KERNEL,
        ratio: 0.6,
    },
];
const THREE: [Option<StackKind>; 3] = [
    Some(StackKind::Kernel),
    Some(StackKind::Ustack),
    Some(StackKind::Smoltcp),
];
const OFFLOAD: [Option<StackKind>; 3] = [
    Some(StackKind::Kernel),
    Some(StackKind::UstackOffload),
    Some(StackKind::Smoltcp),
];

const fn row(
    key: &'static str,
    what: &'static str,
    unit: &'static str,
    better: Better,
    goals: &'static [Goal],
) -> RowSpec {
    RowSpec {
        key,
        what,
        unit,
        better,
        kernel: true,
        goals,
    }
}

const fn cpu_row(key: &'static str, what: &'static str) -> RowSpec {
    RowSpec {
        key,
        what,
        unit: CPU,
        better: Better::Lower,
        kernel: false,
        goals: &[],
    }
}

/// The whole machine's busy CPU per Gbit while a stack moves data: every column has it,
/// the kernel's too, since it counts the client and the kernel's work wherever it ran.
const fn machine_cpu_row(key: &'static str, what: &'static str) -> RowSpec {
    RowSpec {
        kernel: true,
        ..cpu_row(key, what)
    }
}

/// The stack process's CPU in % of one core: a cost, lower is better, no kernel column.
const fn cpu_share_row(key: &'static str, what: &'static str) -> RowSpec {
    RowSpec {
        unit: "% CPU",
        ..cpu_row(key, what)
    }
}

/// The columns of a lossy-path row: the kernel's and ustack's ends of `path` (no smoltcp).
const fn lossy(path: LossyPath) -> [Option<StackKind>; 3] {
    [
        Some(StackKind::LossyKernel(path)),
        Some(StackKind::LossyUstack(path)),
        None,
    ]
}

/// Issue 11's target on both lossy paths: ustack at least 0.9x the kernel, sending with the
/// same congestion control, or receiving from the same kernel BBR sender.
const LOSSY_GOAL: &[Goal] = &[Goal {
    vs: KERNEL,
    ratio: 0.9,
}];

/// Every measurement, in the order the table prints them.
static MEASUREMENTS: &[Measurement] = &[
    Measurement {
        probe: "receive",
        run: probes::receive,
        fresh: false,
        stacks: THREE,
        rows: &[
            row(
                "receive",
                "TCP receive (client -> discard 9)",
                GBPS,
                Better::Higher,
                &[Goal {
                    vs: SMOLTCP,
                    ratio: 1.2,
                }],
            ),
            cpu_row("receive_cpu", "  CPU per Gbit, receive"),
            machine_cpu_row("receive_machine_cpu", "  machine CPU, receive"),
        ],
    },
    Measurement {
        probe: "send",
        run: probes::send,
        fresh: false,
        stacks: THREE,
        rows: &[
            row(
                "send",
                "TCP send (client <- source 19)",
                GBPS,
                Better::Higher,
                &[Goal {
                    vs: SMOLTCP,
                    ratio: 1.5,
                }],
            ),
            cpu_row("send_cpu", "  CPU per Gbit, send"),
            machine_cpu_row("send_machine_cpu", "  machine CPU, send"),
        ],
    },
    // `--tx-thread` (off by default): the kernel's receive work of each packet ustack
    // writes runs on a writer thread, on the other core, instead of the stack's thread.
    Measurement {
        probe: "send",
        run: probes::send,
        fresh: false,
        stacks: [
            Some(StackKind::Kernel),
            Some(StackKind::UstackTxThread),
            Some(StackKind::Smoltcp),
        ],
        rows: &[
            row(
                "send_tx_thread",
                "TCP send, ustack --tx-thread",
                GBPS,
                Better::Higher,
                &[Goal {
                    vs: SMOLTCP,
                    ratio: 1.5,
                }],
            ),
            cpu_row("send_tx_thread_cpu", "  CPU per Gbit, send --tx-thread"),
            machine_cpu_row(
                "send_tx_thread_machine_cpu",
                "  machine CPU, send --tx-thread",
            ),
        ],
    },
    Measurement {
        probe: "receive",
        run: probes::receive,
        fresh: false,
        stacks: OFFLOAD,
        rows: &[
            row(
                "offload_receive",
                "TCP receive, ustack --offload",
                GBPS,
                Better::Higher,
                OFFLOAD_GOALS,
            ),
            cpu_row("offload_receive_cpu", "  CPU per Gbit, offload receive"),
            machine_cpu_row(
                "offload_receive_machine_cpu",
                "  machine CPU, offload receive",
            ),
        ],
    },
    Measurement {
        probe: "send",
        run: probes::send,
        fresh: false,
        stacks: OFFLOAD,
        rows: &[
            row(
                "offload_send",
                "TCP send, ustack --offload",
                GBPS,
                Better::Higher,
                OFFLOAD_GOALS,
            ),
            cpu_row("offload_send_cpu", "  CPU per Gbit, offload send"),
            machine_cpu_row("offload_send_machine_cpu", "  machine CPU, offload send"),
        ],
    },
    Measurement {
        probe: "pingpong",
        run: probes::pingpong,
        fresh: false,
        stacks: THREE,
        rows: &[
            row(
                "pingpong_p50",
                "TCP 1-byte ping-pong p50 (echo 7)",
                US,
                Better::Lower,
                &[Goal {
                    vs: KERNEL,
                    ratio: 1.2,
                }],
            ),
            row(
                "pingpong_p99",
                "TCP 1-byte ping-pong p99",
                US,
                Better::Lower,
                &[],
            ),
            row(
                "pingpong_p999",
                "TCP 1-byte ping-pong p99.9",
                US,
                Better::Lower,
                &[],
            ),
        ],
    },
    Measurement {
        probe: "ping",
        run: probes::ping,
        fresh: false,
        stacks: THREE,
        rows: &[
            row(
                "ping_p50",
                "ICMP ping p50",
                US,
                Better::Lower,
                &[Goal {
                    vs: KERNEL,
                    ratio: 1.5,
                }],
            ),
            row("ping_p99", "ICMP ping p99", US, Better::Lower, &[]),
            cpu_share_row("ping_cpu", "  CPU while pinging"),
        ],
    },
    // Issue 10's latency item: the gap to the kernel is the runtime's wake-up from sleep,
    // which `--busy-poll` (off by default: it keeps a core busy) removes.
    Measurement {
        probe: "ping",
        run: probes::ping,
        fresh: false,
        stacks: [
            Some(StackKind::Kernel),
            Some(StackKind::UstackBusyPoll),
            Some(StackKind::Smoltcp),
        ],
        rows: &[
            row(
                "ping_busy_p50",
                "ICMP ping p50, ustack --busy-poll",
                US,
                Better::Lower,
                &[Goal {
                    vs: KERNEL,
                    ratio: 1.5,
                }],
            ),
            row(
                "ping_busy_p99",
                "ICMP ping p99, --busy-poll",
                US,
                Better::Lower,
                &[],
            ),
            cpu_share_row("ping_busy_cpu", "  CPU while pinging, --busy-poll"),
        ],
    },
    Measurement {
        probe: "connect",
        run: probes::connect_rate,
        fresh: false,
        stacks: [Some(StackKind::Kernel), Some(StackKind::Ustack), None],
        rows: &[row(
            "connect_rate",
            "TCP connections/s (echo 7, 4 clients)",
            "conn/s",
            Better::Higher,
            &[Goal {
                vs: KERNEL,
                ratio: 0.5,
            }],
        )],
    },
    Measurement {
        probe: "idle_memory",
        run: probes::idle_memory,
        fresh: true,
        stacks: [None, Some(StackKind::Ustack), None],
        rows: &[
            row(
                "idle_bytes_per_conn",
                "RSS per idle connection (10k, TUN)",
                "bytes",
                Better::Lower,
                &[],
            ),
            row(
                "idle_rss_after",
                "  RSS after they closed, of before",
                "%",
                Better::Lower,
                &[],
            ),
        ],
    },
    Measurement {
        probe: "iperf3_in",
        run: probes::iperf3_in,
        fresh: false,
        stacks: [Some(StackKind::Kernel), Some(StackKind::Ustack), None],
        rows: &[row(
            "iperf3_in",
            "iperf3 into the stack (kernel -c)",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "iperf3_out",
        run: probes::iperf3_out,
        fresh: false,
        stacks: [Some(StackKind::Kernel), Some(StackKind::Ustack), None],
        rows: &[row(
            "iperf3_out",
            "iperf3 out of the stack (-R)",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "iperf3_in_p4",
        run: probes::iperf3_in_p4,
        fresh: false,
        stacks: [Some(StackKind::Kernel), Some(StackKind::Ustack), None],
        rows: &[row(
            "iperf3_in_p4",
            "iperf3 -P 4 in, 1 queue",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "iperf3_in_p4",
        run: probes::iperf3_in_p4,
        fresh: false,
        stacks: [
            Some(StackKind::Kernel),
            Some(StackKind::UstackQueues2),
            None,
        ],
        rows: &[row(
            "iperf3_in_p4_q2",
            "iperf3 -P 4 in, --queues 2",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "iperf3_out_p4",
        run: probes::iperf3_out_p4,
        fresh: false,
        stacks: [Some(StackKind::Kernel), Some(StackKind::Ustack), None],
        rows: &[row(
            "iperf3_out_p4",
            "iperf3 -P 4 -R, 1 queue",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "iperf3_out_p4",
        run: probes::iperf3_out_p4,
        fresh: false,
        stacks: [
            Some(StackKind::Kernel),
            Some(StackKind::UstackQueues2),
            None,
        ],
        rows: &[row(
            "iperf3_out_p4_q2",
            "iperf3 -P 4 -R, --queues 2",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "lossy_send_cubic",
        run: probes::lossy_send_cubic,
        fresh: false,
        stacks: lossy(LossyPath::Loss1Delay10),
        rows: &[row(
            "lossy1_send_cubic",
            "1%/10ms: send, CUBIC",
            MBPS,
            Better::Higher,
            LOSSY_GOAL,
        )],
    },
    Measurement {
        probe: "lossy_send_bbr",
        run: probes::lossy_send_bbr,
        fresh: false,
        stacks: lossy(LossyPath::Loss1Delay10),
        rows: &[row(
            "lossy1_send_bbr",
            "1%/10ms: send, BBR",
            MBPS,
            Better::Higher,
            LOSSY_GOAL,
        )],
    },
    Measurement {
        probe: "lossy_receive",
        run: probes::lossy_receive,
        fresh: false,
        stacks: lossy(LossyPath::Loss1Delay10),
        rows: &[row(
            "lossy1_receive",
            "1%/10ms: receive from kernel BBR",
            MBPS,
            Better::Higher,
            LOSSY_GOAL,
        )],
    },
    Measurement {
        probe: "lossy_send_cubic",
        run: probes::lossy_send_cubic,
        fresh: false,
        stacks: lossy(LossyPath::Loss01Delay50),
        rows: &[row(
            "lossy01_send_cubic",
            "0.1%/50ms: send, CUBIC",
            MBPS,
            Better::Higher,
            LOSSY_GOAL,
        )],
    },
    Measurement {
        probe: "lossy_send_bbr",
        run: probes::lossy_send_bbr,
        fresh: false,
        stacks: lossy(LossyPath::Loss01Delay50),
        rows: &[row(
            "lossy01_send_bbr",
            "0.1%/50ms: send, BBR",
            MBPS,
            Better::Higher,
            LOSSY_GOAL,
        )],
    },
    Measurement {
        probe: "lossy_receive",
        run: probes::lossy_receive,
        fresh: false,
        stacks: lossy(LossyPath::Loss01Delay50),
        rows: &[row(
            "lossy01_receive",
            "0.1%/50ms: receive from kernel BBR",
            MBPS,
            Better::Higher,
            LOSSY_GOAL,
        )],
    },
    Measurement {
        probe: "sim",
        run: probes::sim,
        fresh: false,
        stacks: [None, Some(StackKind::InProcess), None],
        rows: &[row(
            "sim",
            "TCP in process over a SimLink pair",
            GBPS,
            Better::Higher,
            &[],
        )],
    },
    Measurement {
        probe: "scale",
        run: probes::scale,
        fresh: false,
        stacks: [None, Some(StackKind::InProcess), None],
        rows: &[
            row(
                "sim_idle_bytes_per_conn",
                "RSS per idle conn (100k, simulator)",
                "bytes",
                Better::Lower,
                &[],
            ),
            row(
                "sim_connect_rate",
                "  connections opened/s (100k, simulator)",
                "conn/s",
                Better::Higher,
                &[],
            ),
        ],
    },
];

/// One column of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Every run's value.
    Measured(Vec<f64>),
    /// The row has no such column (kernel CPU, smoltcp iperf3, the SimLink row).
    NotApplicable,
    /// The stack lacks the feature (`ustack up --offload` before it exists).
    NotBuilt(String),
    Failed(String),
}

impl Cell {
    pub fn median(&self) -> Option<f64> {
        let Cell::Measured(samples) = self else {
            return None;
        };
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(s[n / 2]),
            _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Measured(_) => fmt_value(self.median().unwrap_or(f64::NAN)),
            Cell::NotApplicable => "-".into(),
            Cell::NotBuilt(_) => "not built".into(),
            Cell::Failed(_) => "failed".into(),
        }
    }

    /// The JSON of a column: min, median, max and every sample; null otherwise.
    fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Measured(s) => serde_json::json!({
                "median": self.median(),
                "min": s.iter().copied().fold(f64::INFINITY, f64::min),
                "max": s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "samples": s,
            }),
            _ => serde_json::Value::Null,
        }
    }

    fn note(&self) -> Option<String> {
        match self {
            Cell::Measured(_) => None,
            Cell::NotApplicable => Some("not applicable".into()),
            Cell::NotBuilt(why) => Some(format!("not built: {why}")),
            Cell::Failed(why) => Some(format!("failed: {why}")),
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A measured row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub spec: &'static RowSpec,
    /// kernel, ustack, smoltcp.
    pub cells: [Cell; 3],
}

impl Row {
    /// ustack's median over column `vs`'s.
    pub fn ratio(&self, vs: usize) -> Option<f64> {
        let (us, them) = (self.cells[USTACK].median()?, self.cells[vs].median()?);
        (them > 0.0).then(|| us / them)
    }

    /// Whether `goal` is met; None if a column is missing.
    pub fn met(&self, goal: &Goal) -> Option<bool> {
        let r = self.ratio(goal.vs)?;
        Some(match self.spec.better {
            Better::Higher => r >= goal.ratio,
            Better::Lower => r <= goal.ratio,
        })
    }

    fn goals_text(&self) -> String {
        self.spec
            .goals
            .iter()
            .map(|g| {
                let op = if self.spec.better == Better::Higher {
                    ">="
                } else {
                    "<="
                };
                let verdict = match self.met(g) {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "unmeasured",
                };
                format!("{op}{}x {}: {verdict}", g.ratio, COLUMNS[g.vs])
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn line(&self) -> String {
        let ratio = |vs| self.ratio(vs).map_or("-".into(), |r| format!("{r:.2}x"));
        format!(
            "{:<36} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8}  {}",
            self.spec.what,
            self.spec.unit,
            self.cells[KERNEL].show(),
            self.cells[USTACK].show(),
            self.cells[SMOLTCP].show(),
            ratio(KERNEL),
            ratio(SMOLTCP),
            self.goals_text(),
        )
        .trim_end()
        .to_string()
    }
}

/// Everything one bench run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub config: BenchConfig,
    pub rows: Vec<Row>,
}

impl Report {
    /// The cells that should have been measured and were not (not-built ones excepted).
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| {
                r.cells
                    .iter()
                    .zip(COLUMNS)
                    .filter_map(move |(c, col)| match c {
                        Cell::Failed(why) => Some(format!("{} / {col}: {why}", r.spec.key)),
                        _ => None,
                    })
            })
            .collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "tool": "ustack bench",
            "config": {
                "runs": c.runs,
                "seconds": c.seconds,
                "lossy_seconds": c.lossy_seconds,
                "lossy_paths": LossyPath::ALL.map(|p| serde_json::json!({
                    "path": p.describe(),
                    "impair": p.impair_command(),
                })),
                "pings": c.pings,
                "sim_bytes": c.sim_bytes,
                "mtu": MTU,
                "tun_txqueuelen": targets::TUN_TXQUEUELEN,
                "client": "ustack-bench-peer client (kernel sockets, 128 KiB writes/reads; ping-pong with TCP_NODELAY)",
                "stacks": c.stacks_config(),
            },
            "rows": self.rows.iter().map(|r| {
                let mut notes = serde_json::Map::new();
                for (cell, col) in r.cells.iter().zip(COLUMNS) {
                    if let Some(n) = cell.note() {
                        notes.insert(col.into(), n.into());
                    }
                }
                serde_json::json!({
                    "key": r.spec.key,
                    "what": r.spec.what.trim(),
                    "unit": r.spec.unit,
                    "better": if r.spec.better == Better::Higher { "higher" } else { "lower" },
                    "kernel": r.cells[KERNEL].to_json(),
                    "ustack": r.cells[USTACK].to_json(),
                    "smoltcp": r.cells[SMOLTCP].to_json(),
                    "notes": notes,
                    "ratio_to_kernel": r.ratio(KERNEL),
                    "ratio_to_smoltcp": r.ratio(SMOLTCP),
                    "goals": r.spec.goals.iter().map(|g| serde_json::json!({
                        "vs": COLUMNS[g.vs], "ratio": g.ratio, "met": r.met(g),
                    })).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
        })
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(&self.to_json())?)
    }

    pub fn write_svg(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, svg::render(&self.rows))
    }
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
        || std::process::Command::new(tool).arg("-V").output().is_ok()
}

/// The header of the table.
fn header() -> String {
    format!(
        "{:<36} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8}  {}",
        "measurement (median)",
        "unit",
        "kernel",
        "ustack",
        "smoltcp",
        "/kernel",
        "/smoltcp",
        "target (ratio = ustack / column)"
    )
}

/// Runs every measurement, printing each row to `out` as soon as it is measured.
pub fn run_bench(cfg: &BenchConfig, out: &mut dyn Write) -> Result<Report, BenchError> {
    check_only(&cfg.only)?;
    if !cfg.peer.is_file() {
        return Err(BenchError::NoPeer(cfg.peer.clone()));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("iperf3", "iperf3"),
        ("ping", "iputils-ping"),
    ] {
        if !have(tool) {
            return Err(BenchError::Missing(tool, pkg));
        }
    }
    let stacks = cfg.stacks_config();
    let _ = writeln!(
        out,
        "ustack bench: {} run(s) per measurement, {} s per throughput and ping-pong test, {} s \
         per lossy-path test, {} pings, MTU {MTU}, TUN txqueuelen {}, {} CPUs (medians; shared \
         machines make noisy numbers)",
        cfg.runs,
        cfg.seconds,
        cfg.lossy_seconds,
        cfg.pings,
        targets::TUN_TXQUEUELEN,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for col in COLUMNS {
        let s = &stacks[col];
        let _ = writeln!(
            out,
            "  {col}: congestion control {}, receive buffer {}, send buffer {}",
            s["congestion_control"].as_str().unwrap_or("?"),
            s["receive_buffer"]
                .as_str()
                .or(s["tcp_rmem"].as_str())
                .unwrap_or("?"),
            s["send_buffer"]
                .as_str()
                .or(s["tcp_wmem"].as_str())
                .unwrap_or("?"),
        );
    }
    for path in LossyPath::ALL {
        let _ = writeln!(
            out,
            "  lossy path {}: {}, a fresh forwarder per sample; goodput as the receiver counts it",
            path.describe(),
            path.impair_command(),
        );
    }
    let _ = writeln!(out, "{}", header());
    let _ = out.flush();

    let mut targets: HashMap<StackKind, Result<Target, Unavailable>> = HashMap::new();
    // Cells per (probe, stack): a probe measured once against a stack feeds every row
    // that asks for it again (the offload rows' kernel and smoltcp columns).
    let mut cache: HashMap<(&'static str, StackKind), Vec<Cell>> = HashMap::new();
    let mut rows = Vec::new();
    for m in MEASUREMENTS.iter().filter(|m| cfg.selects(m)) {
        let todo: Vec<(usize, StackKind)> = m
            .stacks
            .iter()
            .enumerate()
            .filter_map(|(col, s)| s.map(|s| (col, s)))
            .filter(|(_, s)| !cache.contains_key(&(m.probe, *s)))
            .collect();
        // samples[column][row], one value per run; runs interleaved across the stacks.
        let mut samples: [Vec<Vec<f64>>; 3] =
            std::array::from_fn(|_| vec![Vec::new(); m.rows.len()]);
        let mut failed: [Option<Cell>; 3] = [None, None, None];
        for _ in 0..cfg.runs {
            for &(col, stack) in &todo {
                if failed[col].is_some() {
                    continue;
                }
                if m.fresh {
                    targets.remove(&stack);
                }
                let target = targets
                    .entry(stack)
                    .or_insert_with(|| targets::start(stack, cfg));
                let result = match target {
                    Ok(t) => (m.run)(t, cfg).map_err(|e| Cell::Failed(e.to_string())),
                    Err(Unavailable::NotBuilt(why)) => Err(Cell::NotBuilt(why.clone())),
                    Err(Unavailable::Failed(why)) => Err(Cell::Failed(why.clone())),
                };
                match result {
                    Ok(values) if values.len() == m.rows.len() => {
                        for (row, v) in values.into_iter().enumerate() {
                            samples[col][row].push(v);
                        }
                    }
                    Ok(values) => {
                        failed[col] = Some(Cell::Failed(format!(
                            "the probe gave {} values for {} rows",
                            values.len(),
                            m.rows.len()
                        )))
                    }
                    Err(cell) => failed[col] = Some(cell),
                }
            }
        }
        for &(col, stack) in &todo {
            let cells = match &failed[col] {
                Some(cell) => vec![cell.clone(); m.rows.len()],
                None => std::mem::take(&mut samples[col])
                    .into_iter()
                    .map(Cell::Measured)
                    .collect(),
            };
            cache.insert((m.probe, stack), cells);
        }
        for (i, spec) in m.rows.iter().enumerate() {
            let cells = std::array::from_fn(|col| match m.stacks[col] {
                _ if col == KERNEL && !spec.kernel => Cell::NotApplicable,
                None => Cell::NotApplicable,
                Some(stack) => match &cache[&(m.probe, stack)][i] {
                    Cell::Measured(s) if !s.iter().all(|v| v.is_finite() && *v >= 0.0) => {
                        Cell::Failed(format!("measured no number: {s:?}"))
                    }
                    cell => cell.clone(),
                },
            });
            let row = Row { spec, cells };
            let _ = writeln!(out, "{}", row.line());
            rows.push(row);
        }
        let _ = out.flush();
    }
    drop(targets);
    let report = Report {
        config: cfg.clone(),
        rows,
    };
    for (row, col, note) in report.rows.iter().flat_map(|r| {
        r.cells
            .iter()
            .zip(COLUMNS)
            .filter(|(c, _)| matches!(c, Cell::NotBuilt(_) | Cell::Failed(_)))
            .map(move |(c, col)| (r.spec.key, col, c.note().unwrap_or_default()))
    }) {
        let _ = writeln!(out, "note: {row} / {col}: {note}");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str) -> &'static RowSpec {
        MEASUREMENTS
            .iter()
            .flat_map(|m| m.rows)
            .find(|r| r.key == key)
            .expect("a row of the table")
    }

    /// `--only` picks the measurements that have a named row, and refuses a key that is
    /// no row (saying which rows there are).
    #[test]
    fn only_selects_measurements_by_row_key() {
        let mut cfg = BenchConfig::new(true, PathBuf::from("/nonexistent/ustack"));
        assert_eq!(
            MEASUREMENTS.iter().filter(|m| cfg.selects(m)).count(),
            MEASUREMENTS.len()
        );
        cfg.only = vec!["send_cpu".into(), "lossy1_send_bbr".into()];
        let picked: Vec<&str> = MEASUREMENTS
            .iter()
            .filter(|m| cfg.selects(m))
            .map(|m| m.rows[0].key)
            .collect();
        assert_eq!(picked, ["send", "lossy1_send_bbr"]);
        assert!(check_only(&cfg.only).is_ok());
        let err = check_only(&["receive".into(), "recv".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--only recv: no such row"), "{err}");
        assert!(err.contains("offload_send_cpu"), "{err}");
    }

    /// The table prints the median of the runs: the middle one, or the mean of the two
    /// middle ones; a cell without samples has none.
    #[test]
    fn medians_of_odd_and_even_runs() {
        assert_eq!(Cell::Measured(vec![3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(Cell::Measured(vec![4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(Cell::Measured(vec![]).median(), None);
        assert_eq!(Cell::NotBuilt("x".into()).median(), None);
    }

    /// Ratios are ustack over the column; a throughput goal is met at or above its ratio,
    /// a latency goal at or below it, and a goal with a missing column is unmeasured.
    #[test]
    fn goals_compare_in_the_direction_of_the_row() {
        let m = |v: f64| Cell::Measured(vec![v]);
        let receive = Row {
            spec: spec("receive"),
            cells: [m(20.0), m(6.0), m(5.0)],
        };
        assert_eq!(receive.ratio(SMOLTCP), Some(1.2));
        assert_eq!(receive.met(&receive.spec.goals[0]), Some(true));
        let ping = Row {
            spec: spec("pingpong_p50"),
            cells: [m(10.0), m(13.0), m(9.0)],
        };
        assert_eq!(ping.met(&ping.spec.goals[0]), Some(false));
        assert!(
            ping.line().contains("<=1.2x kernel: NOT met"),
            "{}",
            ping.line()
        );
        let offload = Row {
            spec: spec("offload_receive"),
            cells: [m(20.0), Cell::NotBuilt("no flag".into()), m(5.0)],
        };
        assert_eq!(offload.met(&offload.spec.goals[0]), None);
        assert!(offload.line().contains("not built"));
    }

    /// Every row key is unique (the JSON and the root test find rows by it), and every
    /// probe named twice feeds the same number of rows, so cached cells line up.
    #[test]
    fn the_table_is_consistent() {
        let mut keys: Vec<&str> = MEASUREMENTS
            .iter()
            .flat_map(|m| m.rows)
            .map(|r| r.key)
            .collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n);
        for a in MEASUREMENTS {
            for b in MEASUREMENTS.iter().filter(|b| b.probe == a.probe) {
                assert_eq!(a.rows.len(), b.rows.len(), "{}", a.probe);
            }
        }
    }
}
