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
    Smoltcp,
    /// ustack's TCP in this process over a SimLink pair (no device, no namespace).
    InProcess,
}

impl StackKind {
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Kernel => "kernel (veth)",
            StackKind::Ustack => "ustack up (TUN)",
            StackKind::UstackOffload => "ustack up --offload (TUN)",
            StackKind::Smoltcp => "smoltcp (TUN)",
            StackKind::InProcess => "ustack in process (SimLink)",
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
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|hz| *hz > 0)
            .unwrap_or(100);
        Some(ticks as f64 / hz as f64)
    }

    /// Whether the stack's process is still running.
    pub fn alive(&mut self) -> bool {
        self.procs
            .iter_mut()
            .all(|p| matches!(p.child.try_wait(), Ok(None)))
    }
}

/// Addresses: one /24 per stack, so a mix-up shows as "unreachable", not as a wrong number.
const KERNEL_NET: &str = "198.18.3";
const USTACK_NET: &str = "198.18.4";
const SMOLTCP_NET: &str = "198.18.6";
const OFFLOAD_NET: &str = "198.18.7";

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
        StackKind::Ustack | StackKind::UstackOffload | StackKind::Smoltcp => tun(kind, cfg),
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
        if !target.alive() {
            let why = target
                .procs
                .iter()
                .map(Spawned::stderr)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BenchError::Down(target.kind.name(), why));
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
