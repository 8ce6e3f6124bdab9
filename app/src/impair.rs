//! `ustack impair`: user-space netem. Forwards packets between two TUN devices through
//! the same seeded impairment engine the simulator uses, on the wall clock, so the
//! kernel's TCP can be run through exactly the faults ustack's is tested with (this
//! kernel has no netem).

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::device::{self, DeviceError, DEFAULT_MTU};
use crate::link::poll::wait_readable;
use crate::link::{
    seed, Clock, DelayLine, Duration, Engine, ImpairError, ImpairStats, Impairments, Instant, Link,
};
use crate::runtime::BoxLink;

/// How long the forwarder sleeps at most with no packet in flight.
const FORWARD_IDLE: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairConfig {
    pub tun_a: String,
    pub tun_b: String,
    pub mtu: usize,
    /// What happens to packets from A to B, and from B to A.
    pub a_to_b: Impairments,
    pub b_to_a: Impairments,
    pub seed: u64,
    /// Capture device A's side (what A sends, what reaches A) to pcapng.
    pub pcap: Option<PathBuf>,
    /// Stop after this long (`None`: until SIGINT or SIGTERM).
    pub run_for: Option<Duration>,
}

impl ImpairConfig {
    /// Forwarding between `tun_a` and `tun_b` on a perfect wire, seed 1.
    pub fn new(tun_a: &str, tun_b: &str) -> ImpairConfig {
        ImpairConfig {
            tun_a: tun_a.to_string(),
            tun_b: tun_b.to_string(),
            mtu: DEFAULT_MTU,
            a_to_b: Impairments::none(),
            b_to_a: Impairments::none(),
            seed: 1,
            pcap: None,
            run_for: None,
        }
    }
}

/// Why forwarding could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImpairRunError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("invalid impairment: {0}")]
    Impairment(#[from] ImpairError),
    #[error("device error: {0}")]
    Link(#[from] crate::link::LinkError),
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    pub a_to_b: ImpairStats,
    pub b_to_a: ImpairStats,
    /// Packets the destination device refused (its queue was full).
    pub write_drops: u64,
}

impl fmt::Display for ForwardStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "a->b: {}", self.a_to_b.summary())?;
        write!(f, "b->a: {}", self.b_to_a.summary())
    }
}

/// Forwards until `run_for` passes or SIGINT or SIGTERM arrives, then flushes the
/// capture; `out` gets the start line.
pub fn run(cfg: &ImpairConfig, out: &mut dyn Write) -> Result<ForwardStats, ImpairRunError> {
    let stop = device::stop_signals()?;
    let a = device::open(&cfg.tun_a, cfg.mtu)?;
    let b = device::open(&cfg.tun_b, cfg.mtu)?;
    let sink = device::capture(cfg.pcap.as_deref())?;
    let a = device::tap(a, sink.as_ref(), &cfg.tun_a)?;
    let mut links: [BoxLink; 2] = [a, Box::new(b)];
    let mut engines = [
        Engine::new(cfg.a_to_b.clone(), seed::derive(cfg.seed, 1))?,
        Engine::new(cfg.b_to_a.clone(), seed::derive(cfg.seed, 2))?,
    ];
    // lines[i] holds packets travelling towards device i.
    let mut lines = [DelayLine::new(), DelayLine::new()];
    let mut write_drops = 0;
    let _ = writeln!(
        out,
        "ustack impair: forwarding {} <-> {} through the impairment engine, seed {}",
        cfg.tun_a, cfg.tun_b, cfg.seed
    );
    let _ = out.flush();
    let clock = Clock::wall();
    let end = cfg.run_for.map(|d| Instant::ZERO + d);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = clock.now();
        if end.is_some_and(|e| now >= e) || stop.load(Ordering::Relaxed) {
            break;
        }
        for (to, line) in lines.iter_mut().enumerate() {
            while let Some(packet) = line.pop_due(now) {
                if links[to].send(now, &packet).is_err() {
                    write_drops += 1;
                }
            }
        }
        for from in 0..2 {
            while let Some(n) = links[from].recv(now, &mut buf)? {
                let to = 1 - from;
                let verdict = engines[from].decide(now, n, lines[to].len());
                lines[to].push(&verdict, &buf[..n]);
            }
        }
        let next = lines.iter().filter_map(|l| l.next_at()).min();
        let wait = next.map_or(FORWARD_IDLE, |t| t - clock.now());
        if !wait.is_zero() {
            let fds = links
                .each_ref()
                .map(|l| l.fd().expect("a TUN device has a descriptor"));
            // A signal or a failed poll only ends this sleep early; the next read says
            // whether a device is really gone.
            let _ = wait_readable(fds, wait.min(FORWARD_IDLE));
        }
    }
    if let Some(sink) = &sink {
        sink.flush().map_err(DeviceError::Capture)?;
    }
    Ok(ForwardStats {
        a_to_b: engines[0].stats(),
        b_to_a: engines[1].stats(),
        write_drops,
    })
}
