//! `ustack up`: the stack on a real device, on the wall clock, serving the classic test
//! services until the process is stopped: ICMP echo (the network layer answers ping),
//! TCP echo (port 7, RFC 862), TCP discard (port 9, RFC 863), UDP echo (port 7) and an
//! iperf3 server for TCP tests (port 5201).

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::path::PathBuf;

use crate::link::{tap_boxed, Duration, PcapSink, TunLink};
use crate::net::{Config, Interface, Ipv4Cidr};
use crate::runtime::{Caller, Runtime};
use crate::socket::{TcpListener, UdpSocket};
use crate::transport::stack::{Stack, StackConfig};

/// Where and how to run.
#[derive(Debug, Clone, PartialEq)]
pub struct UpConfig {
    pub tun: String,
    pub addr: Ipv4Cidr,
    pub mtu: usize,
    pub pcap: Option<PathBuf>,
}

/// Why the stack could not come up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{0}")]
    Device(std::io::Error),
    #[error("cannot write the capture: {0}")]
    Pcap(std::io::Error),
    #[error("cannot listen on port {0}: {1}")]
    Listen(u16, String),
}

fn serve_tcp(caller: &Caller, port: u16, echo: bool) -> Result<(), UpError> {
    let listener =
        TcpListener::bind(caller, port, 64).map_err(|e| UpError::Listen(port, e.to_string()))?;
    std::thread::Builder::new()
        .name(format!("tcp-{port}"))
        .spawn(move || {
            while let Ok((mut s, _)) = listener.accept() {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || (echo && s.write_all(&buf[..n]).is_err()) {
                            break;
                        }
                    }
                });
            }
        })
        .map(|_| ())
        .map_err(|e| UpError::Listen(port, e.to_string()))
}

fn serve_udp_echo(caller: &Caller, local: SocketAddrV4) -> Result<(), UpError> {
    let sock =
        UdpSocket::bind(caller, local).map_err(|e| UpError::Listen(local.port(), e.to_string()))?;
    std::thread::Builder::new()
        .name("udp-7".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        })
        .map(|_| ())
        .map_err(|e| UpError::Listen(7, e.to_string()))
}

/// Brings the stack up and serves until the process ends.
pub fn run(cfg: &UpConfig, out: &mut dyn Write) -> Result<(), UpError> {
    let tun = TunLink::open(&cfg.tun, cfg.mtu).map_err(UpError::Device)?;
    let sink = cfg
        .pcap
        .as_ref()
        .map(PcapSink::create)
        .transpose()
        .map_err(UpError::Pcap)?;
    let link = tap_boxed(tun, sink.as_ref(), &cfg.tun).map_err(UpError::Pcap)?;
    let stack = Stack::new(
        Interface::new(link, Config::new(cfg.addr)),
        StackConfig::default(),
    );
    let runtime = Runtime::start(stack);
    let caller = runtime.caller();
    serve_tcp(&caller, 7, true)?;
    serve_tcp(&caller, 9, false)?;
    serve_udp_echo(&caller, SocketAddrV4::new(cfg.addr.addr, 7))?;
    let iperf = caller.clone();
    std::thread::Builder::new()
        .name("iperf3".into())
        .spawn(move || crate::iperf3::serve(&iperf))
        .map_err(|e| UpError::Listen(crate::iperf3::PORT, e.to_string()))?;
    let _ = writeln!(
        out,
        "ustack up on {} as {}: answering ping, TCP echo (7), TCP discard (9), UDP echo (7), \
         and an iperf3 server for TCP tests (5201)",
        cfg.tun, cfg.addr
    );
    let _ = writeln!(
        out,
        "give the kernel side an address in {}/{} and bring it up, e.g.: ip addr add {}/{} dev {} && ip link set {} up",
        cfg.addr.network(),
        cfg.addr.prefix_len,
        peer_hint(cfg.addr),
        cfg.addr.prefix_len,
        cfg.tun,
        cfg.tun
    );
    let _ = out.flush();
    // The runtime and the service threads do the work; this thread only keeps them alive
    // and notices if the runtime stops (the device went away).
    while caller.sleep(Duration::from_secs(3600)) {}
    Err(UpError::Device(std::io::Error::other(
        "the device failed; the stack stopped",
    )))
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
