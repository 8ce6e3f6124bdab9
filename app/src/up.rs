//! `ustack up`: the stack on a real device, on the wall clock, serving the classic test
//! services until the process is stopped: ICMP echo (the network layer answers ping),
//! TCP echo (port 7, RFC 862), TCP discard (port 9, RFC 863), TCP source (port 19, RFC
//! 864's character generator), UDP echo (port 7) and an iperf3 server for TCP and UDP
//! tests (port 5201). The three TCP services run inside the runtime's poll loop
//! ([`crate::runtime::service`]); UDP echo and iperf3 run on threads of their own.

use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;

use crate::device::{bring_up, stop_signals, DeviceArgs, DeviceError, DeviceKind, SHUTDOWN_GRACE};
use crate::link::Duration;
use crate::net::Ipv4Cidr;
use crate::runtime::service::{self, ServiceKind};
use crate::runtime::Caller;
use crate::socket::UdpSocket;

/// Why the stack could not come up, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("cannot listen on port {port}: {source}")]
    Listen { port: u16, source: io::Error },
    #[error("the device failed; the stack stopped")]
    Stopped,
}

impl UpError {
    /// Whether the command line asked for something impossible.
    pub fn is_usage(&self) -> bool {
        matches!(self, UpError::Device(e) if e.is_usage())
    }
}

fn listen_error(port: u16) -> impl FnOnce(io::Error) -> UpError {
    move |source| UpError::Listen { port, source }
}

/// Runs `serve` on a thread of its own named `name`.
fn spawn(name: String, port: u16, serve: impl FnOnce() + Send + 'static) -> Result<(), UpError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(serve)
        .map(|_| ())
        .map_err(listen_error(port))
}

/// Accept queue of each built-in TCP service.
const SERVICE_BACKLOG: usize = 64;

fn serve_tcp(caller: &Caller, kind: ServiceKind) -> Result<(), UpError> {
    let port = kind.port();
    service::serve(caller, kind, SERVICE_BACKLOG).map_err(|e| listen_error(port)(e.into()))
}

fn serve_udp_echo(caller: &Caller, local: SocketAddrV4) -> Result<(), UpError> {
    let port = local.port();
    let sock =
        UdpSocket::bind(caller, local).map_err(|e| listen_error(port)(io::Error::from(e)))?;
    spawn(format!("udp-{port}"), port, move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    })
}

/// How often the main thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Brings the stack up on the device `args` names and serves until SIGINT or SIGTERM:
/// then stops accepting, closes the connections, flushes the capture and returns `Ok`.
pub fn run(args: &DeviceArgs, out: &mut dyn Write) -> Result<(), UpError> {
    let stop = stop_signals()?;
    let device = bring_up(args)?;
    let caller = device.runtime.caller();
    // Every queue's stack serves everything (the kernel picks a queue per flow).
    let callers = device.callers();
    for queue in &callers {
        for kind in [ServiceKind::Echo, ServiceKind::Discard, ServiceKind::Source] {
            serve_tcp(queue, kind)?;
        }
        serve_udp_echo(queue, SocketAddrV4::new(device.addr.addr, 7))?;
    }
    spawn("iperf3".into(), crate::iperf3::PORT, move || {
        let _ = crate::iperf3::serve(&callers);
    })?;
    let _ = writeln!(
        out,
        "ustack up on {}{} as {}{}: answering ping, TCP echo (7), TCP discard (9), TCP source \
         (19), UDP echo (7), and an iperf3 server for TCP and UDP tests (5201)",
        device.kind.name(),
        match device.queues.len() {
            0 => String::new(),
            more => format!(" ({} queues, a stack each)", more + 1),
        },
        device.addr,
        device.mac.map_or(String::new(), |mac| format!(" ({mac})")),
    );
    let _ = writeln!(out, "{}", setup_hint(&device.kind, device.addr));
    let _ = out.flush();
    // The runtime and the service threads do the work; this thread only keeps them alive,
    // notices if the runtime stops (the device went away), and waits for the signal.
    while !stop.load(Ordering::Relaxed) {
        if !caller.sleep(STOP_POLL) {
            return Err(UpError::Stopped);
        }
    }
    let queues = device.shut_down(SHUTDOWN_GRACE)?;
    if queues.len() > 1 {
        for (i, q) in queues.iter().enumerate() {
            let _ = writeln!(
                out,
                "ustack up: queue {i}: {} packets in, {} connections accepted",
                q.packets_in, q.connections_accepted
            );
        }
    }
    let _ = writeln!(
        out,
        "ustack up: stopped by a signal; connections closed, capture flushed"
    );
    Ok(())
}

/// What the kernel's side needs before it can talk to the stack.
fn setup_hint(kind: &DeviceKind, addr: Ipv4Cidr) -> String {
    let (peer, len) = (peer_hint(addr), addr.prefix_len);
    match kind {
        DeviceKind::Tun(name) | DeviceKind::Tap(name) => format!(
            "give the kernel side an address in {}/{len} and bring it up, e.g.: \
             ip addr add {peer}/{len} dev {name} && ip link set {name} up",
            addr.network(),
        ),
        DeviceKind::Raw(name) => format!(
            "the peers on {name}'s link need addresses in {}/{len} (e.g. {peer}); the kernel \
             must not own {} on {name} itself",
            addr.network(),
            addr.addr,
        ),
    }
}

/// An address next to ours for the kernel's side of the device.
fn peer_hint(addr: Ipv4Cidr) -> std::net::Ipv4Addr {
    let ours = u32::from(addr.addr);
    let candidate = if ours & 0xff == 1 {
        ours + 1
    } else {
        (ours & !0xff) | 1
    };
    std::net::Ipv4Addr::from(candidate)
}
