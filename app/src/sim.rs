//! Building simulated networks: hosts with addresses from 198.18.0.0/15 on SimLinks.

use std::net::Ipv4Addr;

use crate::link::{ImpairError, SimConfig, SimLink};
use crate::net::{Config, Interface, Ipv4Cidr};
use crate::runtime::{BoxLink, HostId, SimWorld};
use crate::transport::stack::{Stack, StackConfig};

/// Address of host `n` (1-based) on the simulated network 198.18.0.0/24.
pub fn host_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

/// A stack on `link` with address `addr`/24.
pub fn stack(link: BoxLink, addr: Ipv4Addr, cfg: StackConfig) -> Stack<BoxLink> {
    let mut iface_cfg = Config::new(Ipv4Cidr {
        addr,
        prefix_len: 24,
    });
    iface_cfg.first_ident = (cfg.seed as u16) ^ u16::from(addr.octets()[3]);
    Stack::new(Interface::new(link, iface_cfg), cfg)
}

/// A world of two hosts, 198.18.0.1 and 198.18.0.2, on one SimLink pair.
pub fn two_hosts(
    sim: SimConfig,
    stack_cfg: StackConfig,
    seed: u64,
) -> Result<(SimWorld, HostId, HostId, SimLink), ImpairError> {
    let (a, b) = SimLink::pair(sim, seed)?;
    let probe = a.clone();
    let mut world = SimWorld::new();
    let ha = world.add_host(stack(
        Box::new(a),
        host_addr(1),
        StackConfig {
            seed: seed.wrapping_mul(2),
            ..stack_cfg.clone()
        },
    ));
    let hb = world.add_host(stack(
        Box::new(b),
        host_addr(2),
        StackConfig {
            seed: seed.wrapping_mul(2) + 1,
            ..stack_cfg
        },
    ));
    Ok((world, ha, hb, probe))
}
