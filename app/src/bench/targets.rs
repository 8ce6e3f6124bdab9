//! The stacks under test, each brought up once per bench run in network namespaces of its
//! own and reached by the same kernel-socket client:
//! - the kernel: a veth pair between a client namespace and a server namespace running
//!   `ustack-bench-peer serve` and `iperf3 -s`;
//! - ustack: `ustack up` on a TUN device, the client in the same namespace on the kernel
//!   side of the TUN (and again with `--offload`);
//! - smoltcp: `ustack-bench-peer smoltcp` on a TUN device, set up like ustack.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{BenchConfig, BenchError};
use crate::netns::Netns;

/// Which stack a column measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StackKind {
    Kernel,
    Ustack,
    /// `ustack up --offload` (IFF_VNET_HDR).
    UstackOffload,
    /// `ustack up --busy-poll BUSY_POLL_US`: polls instead of sleeping between pings.
    UstackBusyPoll,
    /// `ustack up --queues 2`: a multi-queue TUN with a stack per queue.
    UstackQueues2,
    /// `ustack up --tx-thread`: a writer thread takes the kernel's work of each write.
    UstackTxThread,
    Smoltcp,
    /// ustack's TCP in this process over a SimLink pair (no device, no namespace).
    InProcess,
    /// The kernel's iperf3 at both ends of a lossy path through `ustack impair`.
    LossyKernel(LossyPath),
    /// ustack at one end of the same lossy path (`ustack iperf3 -c` sending, `ustack up`
    /// receiving), the kernel's iperf3 at the other.
    LossyUstack(LossyPath),
}

/// The two lossy paths of issue 11, each a `ustack impair` between two namespaces with the
/// same loss and delay in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossyPath {
    /// 1% loss, 10 ms each way (20 ms RTT).
    Loss1Delay10,
    /// 0.1% loss, 50 ms each way (100 ms RTT).
    Loss01Delay50,
}

impl LossyPath {
    pub const ALL: [LossyPath; 2] = [LossyPath::Loss1Delay10, LossyPath::Loss01Delay50];

    /// The forwarder's command line, as the output states it.
    pub fn impair_command(self) -> String {
        format!(
            "ustack impair {} --seed {LOSSY_SEED}",
            self.impair_flags().join(" ")
        )
    }

    /// `--loss` and `--delay` of `ustack impair`.
    pub fn impair_flags(self) -> [&'static str; 4] {
        match self {
            LossyPath::Loss1Delay10 => ["--loss", "0.01", "--delay", "10ms"],
            LossyPath::Loss01Delay50 => ["--loss", "0.001", "--delay", "50ms"],
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            LossyPath::Loss1Delay10 => "1% loss, 10 ms each way",
            LossyPath::Loss01Delay50 => "0.1% loss, 50 ms each way",
        }
    }

    /// The third octets of its three /24s: ustack's sender TUN, the impaired link, ustack's
    /// receiver TUN.
    fn nets(self) -> [u8; 3] {
        match self {
            LossyPath::Loss1Delay10 => [8, 9, 10],
            LossyPath::Loss01Delay50 => [11, 12, 13],
        }
    }
}

impl StackKind {
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Kernel => "kernel (veth)",
            StackKind::Ustack => "ustack up (TUN)",
            StackKind::UstackOffload => "ustack up --offload (TUN)",
            StackKind::UstackBusyPoll => "ustack up --busy-poll (TUN)",
            StackKind::UstackQueues2 => "ustack up --queues 2 (TUN)",
            StackKind::UstackTxThread => "ustack up --tx-thread (TUN)",
            StackKind::Smoltcp => "smoltcp (TUN)",
            StackKind::InProcess => "ustack in process (SimLink)",
            StackKind::LossyKernel(_) => "kernel through ustack impair",
            StackKind::LossyUstack(_) => "ustack through ustack impair",
        }
    }
}

/// Why a stack is not there to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum Unavailable {
    /// The binary does not have the feature yet (it exited with a usage error).
    NotBuilt(String),
    /// It should have come up and did not.
    Failed(String),
}

/// A process started in a namespace, killed and reaped when dropped.
struct Spawned {
    child: Child,
    stderr: PathBuf,
}

impl Spawned {
    fn start(ns: &Netns, args: &[&str], tag: &str) -> Result<Spawned, BenchError> {
        let stderr =
            std::env::temp_dir().join(format!("ustack-bench-{}-{tag}.stderr", std::process::id()));
        let file = std::fs::File::create(&stderr).map_err(BenchError::Io)?;
        let child = ns
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(BenchError::Io)?;
        Ok(Spawned { child, stderr })
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// A stack up and reachable: the client runs in `client` and talks to `addr`.
pub struct Target {
    pub kind: StackKind,
    /// Where the client runs (None for the in-process stack).
    client: Option<Netns>,
    pub addr: String,
    /// The process whose CPU time is the stack's (None for the kernel).
    pid: Option<u32>,
    // Dropped before the namespaces (fields drop in order): processes first.
    procs: Vec<Spawned>,
    _server: Option<Netns>,
}

impl Target {
    pub fn client(&self) -> &Netns {
        self.client
            .as_ref()
            .expect("device probes run only against device targets")
    }

    /// User plus system CPU seconds of the stack's process so far (all its threads,
    /// including those that ended), from /proc/PID/stat; None for the kernel.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.pid?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / clock_ticks_per_second())
    }

    /// Resident memory of the stack process now, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        crate::runtime::resident_bytes(Some(self.pid?))
    }

    /// Seconds on a CPU of the stack process's threads now, to the nanosecond (the first
    /// field of each `/proc/PID/task/TID/schedstat`), for windows too short for the clock
    /// ticks of [`Target::cpu_seconds`]. Threads that have ended are not counted, so this
    /// is for probes during which none end (pings); None for the kernel.
    pub fn cpu_seconds_precise(&self) -> Option<f64> {
        let pid = self.pid?;
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 / 1e9)
    }

    /// The error for a stack whose process has ended, with what it printed; None while
    /// it runs.
    fn down(&mut self) -> Option<BenchError> {
        if self.alive() {
            return None;
        }
        let why = self
            .procs
            .iter()
            .map(Spawned::stderr)
            .collect::<Vec<_>>()
            .join("; ");
        Some(BenchError::Down(self.kind.name(), why))
    }

    /// Whether the stack's process is still running.
    pub fn alive(&mut self) -> bool {
        self.procs
            .iter_mut()
            .all(|p| matches!(p.child.try_wait(), Ok(None)))
    }
}

/// The clock ticks in a second (`sysconf(_SC_CLK_TCK)`) that /proc counts CPU time in.
fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as f64
}

/// CPU seconds the whole machine has been busy so far, all CPUs summed: the first line of
/// /proc/stat (proc(5)) less idle and iowait time. This is what a transfer costs in all:
/// the stack, the client, and the kernel's work for both wherever it ran (softirq on
/// either CPU, ksoftirqd), which a process's own user+system time leaves out when the
/// kernel's per-packet work runs outside the stack's threads. Anything else running on
/// the machine counts too, so it is only a measure on a quiet machine.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_busy_ticks(stat.lines().next()?).map(|ticks| ticks as f64 / clock_ticks_per_second())
}

/// Busy ticks in /proc/stat's `cpu` line: user, nice, system, irq, softirq and steal (guest
/// time is inside user and nice already, so it is not added again).
fn machine_busy_ticks(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let busy = [0, 1, 2, 5, 6, 7]; // user nice system (idle iowait) irq softirq steal
    busy.iter().map(|&i| values.get(i).copied()).sum()
}

/// Addresses: one /24 per stack, so a mix-up shows as "unreachable", not as a wrong number.
const KERNEL_NET: &str = "198.18.3";
const USTACK_NET: &str = "198.18.4";
const SMOLTCP_NET: &str = "198.18.6";
const OFFLOAD_NET: &str = "198.18.7";
const BUSY_POLL_NET: &str = "198.18.14";
const QUEUES_NET: &str = "198.18.15";
const TX_THREAD_NET: &str = "198.18.16";
/// `--busy-poll` of the busy-polling ustack, in microseconds: longer than the 10 ms between
/// the bench's pings, so the runtime never sleeps between them (the CPU row shows the cost).
pub const BUSY_POLL_US: &str = "20000";

/// Packets the kernel may queue towards a TUN device (`ip link set DEV txqueuelen`), for
/// ustack and smoltcp alike. Linux's default of 500 is less than one 4 MiB window of
/// 1500-byte packets (about 2900): a stack that advertises that window (smoltcp's fixed
/// buffers) has the kernel's bursts dropped at the device and retransmitted, and measured
/// 0.7-1.1 Gbit/s here instead of 5.3 (3000) to 6.0 (10000); ustack measured the same with
/// either (its buffers start small and autotune). One full window fits in 10000.
pub const TUN_TXQUEUELEN: u32 = 10_000;

/// How long a stack may take to create its device.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Brings up `kind`; `Err` says why it cannot be measured.
pub fn start(kind: StackKind, cfg: &BenchConfig) -> Result<Target, Unavailable> {
    let failed = |e: BenchError| Unavailable::Failed(e.to_string());
    match kind {
        StackKind::Kernel => kernel(cfg).map_err(failed),
        StackKind::InProcess => Ok(Target {
            kind,
            client: None,
            addr: String::new(),
            pid: None,
            procs: Vec::new(),
            _server: None,
        }),
        StackKind::Ustack
        | StackKind::UstackOffload
        | StackKind::UstackBusyPoll
        | StackKind::UstackQueues2
        | StackKind::UstackTxThread
        | StackKind::Smoltcp => tun(kind, cfg),
        StackKind::LossyKernel(path) | StackKind::LossyUstack(path) => {
            lossy(kind, path, cfg).map_err(failed)
        }
    }
}

fn kernel(cfg: &BenchConfig) -> Result<Target, BenchError> {
    let client = Netns::new("bench-ka")?;
    let server = Netns::new("bench-kb")?;
    client.must(&[
        "ip",
        "link",
        "add",
        "ubench0",
        "type",
        "veth",
        "peer",
        "ubench1",
        "netns",
        server.name(),
    ])?;
    let (ours, theirs) = (format!("{KERNEL_NET}.1"), format!("{KERNEL_NET}.2"));
    client.must(&["ip", "addr", "add", &format!("{ours}/24"), "dev", "ubench0"])?;
    client.must(&["ip", "link", "set", "ubench0", "up"])?;
    server.must(&[
        "ip",
        "addr",
        "add",
        &format!("{theirs}/24"),
        "dev",
        "ubench1",
    ])?;
    server.must(&["ip", "link", "set", "ubench1", "up"])?;
    let peer = cfg.peer.to_string_lossy().to_string();
    let procs = vec![
        Spawned::start(
            &server,
            &[&peer, "serve", "--addr", &theirs],
            "kernel-serve",
        )?,
        Spawned::start(&server, &["iperf3", "-s", "-B", &theirs], "kernel-iperf3")?,
    ];
    let mut target = Target {
        kind: StackKind::Kernel,
        client: Some(client),
        addr: theirs,
        pid: None,
        procs,
        _server: Some(server),
    };
    wait_for_services(&mut target)?;
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    while let Some(server) = &target._server {
        let listening = server.must(&["ss", "-Hltn", "sport = :5201"])?;
        if !listening.trim().is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Down(
                "iperf3 -s",
                "not listening after 10 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(target)
}

fn tun(kind: StackKind, cfg: &BenchConfig) -> Result<Target, Unavailable> {
    let failed = |e: BenchError| Unavailable::Failed(e.to_string());
    let (net, dev, tag) = match kind {
        StackKind::Ustack => (USTACK_NET, "ubench2", "bench-us"),
        StackKind::UstackOffload => (OFFLOAD_NET, "ubench4", "bench-uo"),
        StackKind::UstackBusyPoll => (BUSY_POLL_NET, "ubench5", "bench-ub"),
        StackKind::UstackQueues2 => (QUEUES_NET, "ubench6", "bench-uq"),
        StackKind::UstackTxThread => (TX_THREAD_NET, "ubench7", "bench-ut"),
        _ => (SMOLTCP_NET, "ubench3", "bench-sm"),
    };
    let client = Netns::new(tag).map_err(|e| failed(e.into()))?;
    let (ours, theirs) = (format!("{net}.1"), format!("{net}.2"));
    let cidr = format!("{theirs}/24");
    let ustack = cfg.ustack.to_string_lossy().to_string();
    let peer = cfg.peer.to_string_lossy().to_string();
    let args: Vec<&str> = match kind {
        StackKind::Ustack => vec![&ustack, "up", "--tun", dev, "--addr", &cidr],
        StackKind::UstackOffload => vec![&ustack, "up", "--offload", "--tun", dev, "--addr", &cidr],
        StackKind::UstackQueues2 => vec![
            &ustack, "up", "--queues", "2", "--tun", dev, "--addr", &cidr,
        ],
        StackKind::UstackTxThread => {
            vec![&ustack, "up", "--tx-thread", "--tun", dev, "--addr", &cidr]
        }
        StackKind::UstackBusyPoll => vec![
            &ustack,
            "up",
            "--busy-poll",
            BUSY_POLL_US,
            "--tun",
            dev,
            "--addr",
            &cidr,
        ],
        _ => vec![&peer, "smoltcp", "--tun", dev, "--addr", &cidr],
    };
    let proc = Spawned::start(&client, &args, tag).map_err(failed)?;
    let pid = proc.child.id();
    let mut target = Target {
        kind,
        client: Some(client),
        addr: theirs,
        pid: Some(pid),
        procs: vec![proc],
        _server: None,
    };
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    loop {
        if let Ok(Some(status)) = target.procs[0].child.try_wait() {
            let why = format!(
                "`{}` exited ({status}): {}",
                args[1..].join(" "),
                target.procs[0].stderr()
            );
            // Exit status 2 is ustack's usage error: the flag is not built yet.
            return Err(
                if status.code() == Some(2) && kind == StackKind::UstackOffload {
                    Unavailable::NotBuilt(why)
                } else {
                    Unavailable::Failed(why)
                },
            );
        }
        let shown = target
            .client()
            .exec(&["ip", "link", "show", dev])
            .map_err(|e| failed(e.into()))?;
        if shown.status.success() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Unavailable::Failed(format!("{dev} never appeared")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns = target.client();
    ns.must(&["ip", "addr", "add", &format!("{ours}/24"), "dev", dev])
        .map_err(|e| failed(e.into()))?;
    let qlen = TUN_TXQUEUELEN.to_string();
    ns.must(&["ip", "link", "set", dev, "txqueuelen", &qlen, "up"])
        .map_err(|e| failed(e.into()))?;
    wait_for_services(&mut target).map_err(failed)?;
    Ok(target)
}

/// Waits (at most 10 s) until the stack answers ping and accepts on the discard port.
fn wait_for_services(target: &mut Target) -> Result<(), BenchError> {
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    let probe = format!("exec 3<>/dev/tcp/{}/9", target.addr);
    loop {
        let ns = target.client();
        let pinged = ns
            .exec(&["ping", "-c", "1", "-W", "1", &target.addr])?
            .status
            .success();
        if pinged
            && ns
                .exec(&["timeout", "2", "bash", "-c", &probe])?
                .status
                .success()
        {
            return Ok(());
        }
        if let Some(down) = target.down() {
            return Err(down);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Down(
                target.kind.name(),
                "no answer in 10 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seed of the impairment engine on both lossy paths, in every column and sample: each
/// sample starts a fresh `ustack impair`, so the Nth packet each way meets the same loss
/// decision whichever stack sends it.
pub const LOSSY_SEED: &str = "1";

/// Longest a lossy-path forwarder runs, should the bench be killed before it stops it.
const IMPAIR_FOR: &str = "300s";

/// Addresses on a lossy path (see [`lossy`] for the picture).
pub struct LossyAddrs {
    /// The kernel's `iperf3 -s` in R, on the impaired link's device `ib`.
    pub kernel_server: String,
    /// `ustack up` in R, on its TUN `ur`.
    pub ustack_server: String,
    /// `ustack iperf3 -c` in L, on its TUN `ul`: address with prefix, and its gateway.
    pub ustack_client: String,
    pub ustack_gateway: String,
}

impl LossyPath {
    pub fn addrs(self) -> LossyAddrs {
        let [s, l, r] = self.nets();
        LossyAddrs {
            kernel_server: format!("198.18.{l}.2"),
            ustack_server: format!("198.18.{r}.2"),
            ustack_client: format!("198.18.{s}.2/24"),
            ustack_gateway: format!("198.18.{s}.1"),
        }
    }
}

/// Device names on a lossy path, the same in every target (each has namespaces of its own).
pub const SENDER_TUN: &str = "ul";
const RECEIVER_TUN: &str = "ur";

/// A lossy path, one per path and column. Data always flows from L to R, through the
/// engine's a->b direction, so every column meets the same loss decisions:
///
/// ```text
///  namespace L (senders)                              namespace R (receivers)
///  ustack iperf3 -c on TUN ul, 198.18.8.2 (ustack)    kernel iperf3 -s on ib, 198.18.9.2
///    ul 198.18.8.1/24, L forwards                     ustack up on TUN ur, 198.18.10.2 (ustack)
///  kernel iperf3 -c on ia, 198.18.9.1                   ur 198.18.10.1/24, R forwards
///            ia 198.18.9.1/24 == ustack impair (in L) == ib 198.18.9.2/24 (moved into R)
/// ```
///
/// (addresses of the 1% path; the 0.1% path uses 198.18.11-13). `ul` and `ur` are
/// persistent TUN devices (`ip tuntap add`) that ustack attaches to, so they are configured
/// before ustack's first packet. The forwarder is not part of the target: [`impair`] starts
/// a fresh one per sample. ustack's packets cross one kernel forwarding hop more than the
/// kernel's (its TUN into L or out of R), which costs microseconds on a 20-100 ms path.
fn lossy(kind: StackKind, path: LossyPath, cfg: &BenchConfig) -> Result<Target, BenchError> {
    let ustack_col = matches!(kind, StackKind::LossyUstack(_));
    let tag = format!(
        "bench-l{}{}",
        if ustack_col { 'u' } else { 'k' },
        path.nets()[0]
    );
    let left = Netns::new(&format!("{tag}l"))?;
    let right = Netns::new(&format!("{tag}r"))?;
    for ns in [&left, &right] {
        ns.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    }
    let a = path.addrs();
    let mut procs = vec![Spawned::start(
        &right,
        &["iperf3", "-s"],
        &format!("{tag}-iperf3"),
    )?];
    let ustack = cfg.ustack.to_string_lossy().to_string();
    let qlen = TUN_TXQUEUELEN.to_string();
    if ustack_col {
        let [s, _, r] = path.nets();
        for (ns, dev, net) in [(&left, SENDER_TUN, s), (&right, RECEIVER_TUN, r)] {
            ns.must(&["ip", "tuntap", "add", "dev", dev, "mode", "tun"])?;
            let cidr = format!("198.18.{net}.1/24");
            ns.must(&["ip", "addr", "add", &cidr, "dev", dev])?;
            ns.must(&["ip", "link", "set", dev, "txqueuelen", &qlen, "up"])?;
        }
        let cidr = format!("{}/24", a.ustack_server);
        let gateway = format!("198.18.{r}.1");
        procs.push(Spawned::start(
            &right,
            &[
                &ustack,
                "up",
                "--tun",
                RECEIVER_TUN,
                "--addr",
                &cidr,
                "--gateway",
                &gateway,
            ],
            &format!("{tag}-up"),
        )?);
    }
    let pid = procs.get(1).map(|p| p.child.id());
    let mut target = Target {
        kind,
        client: Some(left),
        addr: if ustack_col {
            a.ustack_server
        } else {
            a.kernel_server
        },
        pid,
        procs,
        _server: Some(right),
    };
    // Up when the kernel's iperf3 -s listens in R and `ustack up` answers there on
    // discard 9 (asked from R itself: the forwarder only runs during a sample).
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    let probe = format!("exec 3<>/dev/tcp/{}/9", target.addr);
    loop {
        let right = target._server.as_ref().expect("a lossy target has R");
        let listening = !right
            .must(&["ss", "-Hltn", "sport = :5201"])?
            .trim()
            .is_empty();
        let answering = !ustack_col
            || right
                .exec(&["timeout", "2", "bash", "-c", &probe])?
                .status
                .success();
        if listening && answering {
            return Ok(target);
        }
        if let Some(down) = target.down() {
            return Err(down);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Down(kind.name(), "no answer in 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `ustack impair` forwarding between L and R of a lossy target; stopped when dropped
/// (its TUN devices, addresses and routes go with it).
pub struct Impaired {
    _forwarder: Spawned,
}

/// How long the end of an iperf3 test may take to cross the path after the client exits.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

impl Impaired {
    /// Stops the forwarder once no kernel socket in L or R is still busy with port 5201
    /// (time-wait aside), at most [`SETTLE_TIMEOUT`]: an iperf3 client exits before its FINs
    /// have crossed a lossy 100 ms path, and a forwarder stopped then would leave the
    /// kernel's `iperf3 -s` holding the old test ("the server is busy") for the next sample.
    pub fn settle(self, t: &Target) -> Result<(), BenchError> {
        let right = t._server.as_ref().expect("a lossy target has R");
        let busy = [
            "ss",
            "-Htan",
            "exclude",
            "listening",
            "exclude",
            "time-wait",
            "exclude",
            "closed",
            "( sport = :5201 or dport = :5201 )",
        ];
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            if t.client().must(&busy)?.trim().is_empty() && right.must(&busy)?.trim().is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Starts a fresh forwarder for one sample on `t`'s path: `ustack impair` in L with
/// [`LOSSY_SEED`], `ib` moved into R, both ends addressed and the routes to ustack's TUNs
/// through them.
pub fn impair(t: &Target, cfg: &BenchConfig) -> Result<Impaired, BenchError> {
    let (StackKind::LossyKernel(path) | StackKind::LossyUstack(path)) = t.kind else {
        unreachable!("lossy probes run only against lossy targets");
    };
    let (left, right) = (
        t.client(),
        t._server.as_ref().expect("a lossy target has R"),
    );
    let ustack = cfg.ustack.to_string_lossy().to_string();
    let mut args = vec![
        ustack.as_str(),
        "impair",
        "--tun-a",
        "ia",
        "--tun-b",
        "ib",
        "--seed",
        LOSSY_SEED,
        "--for",
        IMPAIR_FOR,
    ];
    args.extend(path.impair_flags());
    let mut fwd = Spawned::start(left, &args, &format!("impair-{}", path.nets()[1]))?;
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    while !left.exec(&["ip", "link", "show", "ib"])?.status.success() {
        if let Ok(Some(status)) = fwd.child.try_wait() {
            return Err(BenchError::Down(
                "ustack impair",
                format!("exited ({status}): {}", fwd.stderr()),
            ));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Down("ustack impair", "no ib after 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let [s, l, r] = path.nets();
    left.must(&["ip", "link", "set", "ib", "netns", right.name()])?;
    for (ns, dev, host) in [(left, "ia", 1), (right, "ib", 2)] {
        let cidr = format!("198.18.{l}.{host}/24");
        ns.must(&["ip", "addr", "add", &cidr, "dev", dev])?;
        ns.must(&["ip", "link", "set", dev, "up"])?;
    }
    let (to_r, to_l) = (format!("198.18.{r}.0/24"), format!("198.18.{s}.0/24"));
    left.must(&["ip", "route", "add", &to_r, "via", &format!("198.18.{l}.2")])?;
    right.must(&["ip", "route", "add", &to_l, "via", &format!("198.18.{l}.1")])?;
    Ok(Impaired { _forwarder: fwd })
}

#[cfg(test)]
mod tests {
    use super::machine_busy_ticks;

    /// proc(5): user nice system idle iowait irq softirq steal guest guest_nice; idle,
    /// iowait and the guest fields (inside user and nice) are not busy time.
    #[test]
    fn machine_busy_time_is_user_nice_system_irq_softirq_and_steal() {
        let line = "cpu  1000 20 300 9000 50 4 600 7 100 0";
        assert_eq!(
            machine_busy_ticks(line),
            Some(1000 + 20 + 300 + 4 + 600 + 7)
        );
        assert_eq!(machine_busy_ticks("cpu0 1 2 3 4 5 6 7 8 9 10"), None);
        assert_eq!(machine_busy_ticks("cpu  1 2 x 4 5 6 7 8"), None);
        assert_eq!(machine_busy_ticks("cpu  1 2 3 4 5"), None);
    }
}
