//! `ustack demo scale`: many TCP connections on one simulated stack pair (issue 12). Host A
//! opens `connections` connections to host B, sends a short request on each and reads
//! B's answer, leaves them all idle past every timer a quiet connection runs (delayed
//! ACK, the 200 ms buffer reclaim), then closes them (A first, so A's ends wait in
//! TIME-WAIT) and waits TIME-WAIT out. It reports how long that took on the wall clock
//! and the process's resident memory (`/proc/self/statm`) at each stage: per idle
//! connection end, and what is left after they are all gone.
//!
//! The stacks are driven directly on a virtual clock (no runtime, no application
//! threads), so the figures are the stacks' own.

use std::io::Write;
use std::net::SocketAddrV4;
use std::time::Instant as WallInstant;

use crate::link::{Duration, Instant, SimConfig, SimLink};
use crate::runtime::BoxLink;
use crate::sim::{host_addr, stack};
use crate::transport::stack::{Stack, StackConfig, TcpHandle};
use crate::transport::tcp::State;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleConfig {
    pub connections: usize,
    pub seed: u64,
}

impl Default for ScaleConfig {
    fn default() -> ScaleConfig {
        ScaleConfig {
            connections: 10_000,
            seed: 1,
        }
    }
}

/// Why the run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("--connections must be 1 to {MAX_CONNECTIONS}")]
    Count,
    #[error("{0}")]
    Stalled(String),
    #[error("the simulated link: {0}")]
    Link(#[from] crate::link::ImpairError),
}

/// Most connections one run opens (63 server ports, each taking 16 000 of one client
/// address's ephemeral ports).
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// Server ports from here on, each serving [`PER_PORT`] connections (one client
/// address has 16 384 ephemeral ports per remote address and port).
const FIRST_PORT: u16 = 1000;
const PER_PORT: usize = 16_000;
/// Connections opened (or requests sent) between two slices of virtual time, so a burst
/// stays within the simulated link's queue.
const BURST: usize = 1000;

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleReport {
    pub connections: usize,
    /// Wall-clock seconds to open every connection (handshakes included).
    pub open_seconds: f64,
    /// Wall-clock seconds of the whole run.
    pub total_seconds: f64,
    /// Resident memory before, with every connection idle, and after they were gone.
    pub rss_start: u64,
    pub rss_idle: u64,
    pub rss_after: u64,
}

impl ScaleReport {
    /// Resident bytes per idle connection end (each connection has one on each host).
    pub fn rss_per_idle_end(&self) -> f64 {
        self.rss_idle.saturating_sub(self.rss_start) as f64 / (2 * self.connections) as f64
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "connections": self.connections,
            "open_seconds": self.open_seconds,
            "connections_per_second": self.connections as f64 / self.open_seconds.max(1e-9),
            "total_seconds": self.total_seconds,
            "rss_start": self.rss_start,
            "rss_idle": self.rss_idle,
            "rss_after": self.rss_after,
            "rss_per_idle_end": self.rss_per_idle_end(),
        })
    }
}

/// Resident memory of this process, 0 if unknown.
fn rss() -> u64 {
    crate::runtime::resident_bytes(None).unwrap_or(0)
}

/// The two hosts and their virtual clock.
struct Pair {
    a: Stack<BoxLink>,
    b: Stack<BoxLink>,
    now: Instant,
}

impl Pair {
    fn poll(&mut self) {
        let _ = self.a.poll(self.now);
        let _ = self.b.poll(self.now);
    }

    /// Runs both stacks for `length` of virtual time, jumping from event to event.
    fn run_for(&mut self, length: Duration) {
        let end = self.now + length;
        loop {
            self.poll();
            let next = [self.a.poll_at(self.now), self.b.poll_at(self.now)]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => self.now = t.max(self.now + Duration::from_micros(1)),
                _ => break,
            }
        }
        self.now = end;
        self.poll();
    }

    /// After the `i`th call of a loop over every connection: every [`BURST`] calls, lets
    /// 10 ms of virtual time pass so what they queued leaves before the link's queue fills.
    fn after_call(&mut self, i: usize) {
        if i % BURST == BURST - 1 {
            self.run_for(Duration::from_millis(10));
        }
    }

    /// Runs until `done` says so, at most `limit` of virtual time; whether it did.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(Duration::from_millis(10));
        }
        done(self)
    }
}

/// Runs the demo, printing each stage to `out`.
pub fn run(cfg: &ScaleConfig, out: &mut dyn Write) -> Result<ScaleReport, ScaleError> {
    let n = cfg.connections;
    if n == 0 || n > MAX_CONNECTIONS {
        return Err(ScaleError::Count);
    }
    let stalled = |what: &str| ScaleError::Stalled(what.to_string());
    let wall = WallInstant::now();
    let (la, lb) = SimLink::pair(SimConfig::default(), cfg.seed)?;
    let stack_cfg = |seed| StackConfig {
        seed,
        syn_backlog: n,
        max_time_wait: n,
        ..StackConfig::default()
    };
    let mut p = Pair {
        a: stack(
            Box::new(la),
            host_addr(1),
            stack_cfg(cfg.seed.wrapping_mul(2)),
        ),
        b: stack(
            Box::new(lb),
            host_addr(2),
            stack_cfg(cfg.seed.wrapping_mul(2).wrapping_add(1)),
        ),
        now: Instant::ZERO,
    };
    let ports = n.div_ceil(PER_PORT);
    for i in 0..ports {
        p.b.tcp_listen(FIRST_PORT + i as u16, n)
            .map_err(|e| ScaleError::Stalled(format!("listen: {e}")))?;
    }
    p.poll();
    let rss_start = rss();
    let _ = writeln!(
        out,
        "scale demo: {n} TCP connections from {} to {} on one simulated link (seed {}), \
         RSS at the start {:.1} MiB",
        host_addr(1),
        host_addr(2),
        cfg.seed,
        rss_start as f64 / (1 << 20) as f64
    );
    let mut clients: Vec<TcpHandle> = Vec::with_capacity(n);
    let mut servers: Vec<TcpHandle> = Vec::with_capacity(n);
    for i in 0..n {
        let port = FIRST_PORT + (i / PER_PORT) as u16;
        let h =
            p.a.tcp_connect(p.now, SocketAddrV4::new(host_addr(2), port))
                .map_err(|e| ScaleError::Stalled(format!("connect {i}: {e}")))?;
        clients.push(h);
        p.after_call(i);
    }
    let accepted = p.run_until(Duration::from_secs(60), |p| {
        for i in 0..ports {
            while let Some(h) = p.b.tcp_accept(FIRST_PORT + i as u16) {
                servers.push(h);
            }
        }
        servers.len() == n
    });
    if !accepted {
        return Err(stalled("not every connection was accepted in 60 s"));
    }
    let open_seconds = wall.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "  opened {n} connections in {open_seconds:.2} s of wall time ({:.0} per second)",
        n as f64 / open_seconds.max(1e-9)
    );
    for (i, &c) in clients.iter().enumerate() {
        let _ = p.a.tcp_send(c, format!("hello {i}").as_bytes());
        p.after_call(i);
    }
    let arrived = p.run_until(Duration::from_secs(60), |p| {
        servers
            .iter()
            .all(|&s| p.b.tcp(s).is_ok_and(|c| c.recv_queue() > 0))
    });
    if !arrived {
        return Err(stalled("not every request arrived in 60 s"));
    }
    let mut buf = [0u8; 64];
    for (i, &s) in servers.iter().enumerate() {
        let got = p.b.tcp_recv(s, &mut buf).unwrap_or(0);
        let answer = [b"echo ", &buf[..got]].concat();
        let _ = p.b.tcp_send(s, &answer);
        p.after_call(i);
    }
    let answered = p.run_until(Duration::from_secs(60), |p| {
        clients
            .iter()
            .all(|&c| p.a.tcp(c).is_ok_and(|c| c.recv_queue() > 0))
    });
    if !answered {
        return Err(stalled("not every answer arrived in 60 s"));
    }
    for (i, &c) in clients.iter().enumerate() {
        let got = p.a.tcp_recv(c, &mut buf).unwrap_or(0);
        if buf[..got] != *format!("echo hello {i}").as_bytes() {
            return Err(ScaleError::Stalled(format!(
                "connection {i} got a wrong answer"
            )));
        }
    }
    // Idle past the delayed ACK and the buffer reclaim timers.
    p.run_for(Duration::from_secs(1));
    let rss_idle = rss();
    let _ = writeln!(
        out,
        "  all {n} idle after a request and an answer each: RSS {:.1} MiB, {:.0} bytes per \
         connection end",
        rss_idle as f64 / (1 << 20) as f64,
        rss_idle.saturating_sub(rss_start) as f64 / (2 * n) as f64
    );
    for (i, &c) in clients.iter().enumerate() {
        let _ = p.a.tcp_close(c);
        p.after_call(i);
    }
    let fins = p.run_until(Duration::from_secs(60), |p| {
        servers
            .iter()
            .all(|&s| p.b.tcp(s).is_ok_and(|c| c.state() == State::CloseWait))
    });
    if !fins {
        return Err(stalled("not every FIN arrived in 60 s"));
    }
    for (i, &s) in servers.iter().enumerate() {
        let _ = p.b.tcp_close(s);
        p.after_call(i);
    }
    let _ = writeln!(
        out,
        "  closed: {} ends in TIME-WAIT on {}, {} connections left on {}",
        p.a.connections(),
        host_addr(1),
        p.b.connections(),
        host_addr(2)
    );
    // TIME-WAIT is 2 MSL (60 s here, as Linux).
    let gone = p.run_until(Duration::from_secs(180), |p| {
        p.a.connections() == 0 && p.b.connections() == 0
    });
    if !gone {
        return Err(stalled("connections were left after TIME-WAIT"));
    }
    // What a runtime does once its connections went (see `return_free_memory`).
    crate::runtime::return_free_memory();
    let rss_after = rss();
    let total_seconds = wall.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "  all gone after TIME-WAIT, free memory given back to the OS: RSS {:.1} MiB ({:.0}% \
         of the start), {total_seconds:.1} s of wall time in all",
        rss_after as f64 / (1 << 20) as f64,
        rss_after as f64 * 100.0 / rss_start.max(1) as f64
    );
    Ok(ScaleReport {
        connections: n,
        open_seconds,
        total_seconds,
        rss_start,
        rss_idle,
        rss_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run goes through every stage; an idle connection end stays in the
    /// kilobytes (RSS moves in pages and with the allocator, so only a loose bound).
    #[test]
    fn a_thousand_connections_open_idle_and_close() {
        let mut out = Vec::new();
        let report = run(
            &ScaleConfig {
                connections: 1000,
                seed: 3,
            },
            &mut out,
        )
        .expect("ran");
        let text = String::from_utf8(out).unwrap();
        println!("{text}");
        assert_eq!(report.connections, 1000);
        assert!(text.contains("closed: 1000 ends in TIME-WAIT"), "{text}");
        assert!(report.rss_per_idle_end() < 64.0 * 1024.0, "{report:?}");
    }

    #[test]
    fn zero_connections_is_an_error() {
        let cfg = ScaleConfig {
            connections: 0,
            seed: 1,
        };
        assert!(matches!(run(&cfg, &mut Vec::new()), Err(ScaleError::Count)));
    }
}
