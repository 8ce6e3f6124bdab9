//! Addresses with prefixes and a small routing table (connected networks plus gateways),
//! RFC 1122 section 3.3.1: a host sends to a neighbour on a connected network directly and
//! to anything else through a gateway.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

/// An IPv4 address with a prefix length, written `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// Text that is not `A.B.C.D/LEN` with LEN at most 32.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IPv4 address with prefix length (example: 198.18.0.1/24)")]
pub struct ParseCidrError(pub String);

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Cidr, ParseCidrError> {
        if prefix_len > 32 {
            return Err(ParseCidrError(format!("{addr}/{prefix_len}")));
        }
        Ok(Ipv4Cidr { addr, prefix_len })
    }

    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.netmask()))
    }

    /// The directed broadcast address of the network (none for /31 and /32, RFC 3021).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        (self.prefix_len < 31)
            .then(|| Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask())))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.network())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;
    fn from_str(s: &str) -> Result<Ipv4Cidr, ParseCidrError> {
        let bad = || ParseCidrError(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, len).map_err(|_| bad())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One entry: packets to `dest` go to `via` (a gateway) or, if `None`, straight to the
/// destination on the connected network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dest: Ipv4Cidr,
    pub via: Option<Ipv4Addr>,
}

/// Longest-prefix-match routing table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Adds a route, replacing one for the same destination.
    pub fn add(&mut self, route: Route) {
        let dest = Ipv4Cidr {
            addr: route.dest.network(),
            prefix_len: route.dest.prefix_len,
        };
        self.routes.retain(|r| r.dest != dest);
        self.routes.push(Route { dest, ..route });
    }

    /// Adds the connected network of an interface address.
    pub fn add_connected(&mut self, addr: Ipv4Cidr) {
        self.add(Route {
            dest: addr,
            via: None,
        });
    }

    pub fn set_default_gateway(&mut self, gateway: Ipv4Addr) {
        self.add(Route {
            dest: Ipv4Cidr {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
            },
            via: Some(gateway),
        });
    }

    /// The next hop towards `dst`: the gateway of the most specific matching route, or
    /// `dst` itself on a connected network. `None` if no route matches.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if dst == Ipv4Addr::BROADCAST {
            return Some(dst);
        }
        self.routes
            .iter()
            .filter(|r| r.dest.contains(dst))
            .max_by_key(|r| r.dest.prefix_len)
            .map(|r| r.via.unwrap_or(dst))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parts() {
        let c: Ipv4Cidr = "198.18.3.7/24".parse().unwrap();
        assert_eq!(c.network(), ip("198.18.3.0"));
        assert_eq!(c.netmask(), ip("255.255.255.0"));
        assert_eq!(c.broadcast(), Some(ip("198.18.3.255")));
        assert!(c.contains(ip("198.18.3.200")) && !c.contains(ip("198.18.4.1")));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert_eq!(
            "198.18.0.1/31".parse::<Ipv4Cidr>().unwrap().broadcast(),
            None
        );
        for bad in ["198.18.0.1", "198.18.0.1/33", "198.18.0/24", "x/24"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mut routes = Routes::new();
        routes.add_connected("198.18.0.1/24".parse().unwrap());
        assert_eq!(routes.next_hop(ip("198.18.0.9")), Some(ip("198.18.0.9")));
        assert_eq!(routes.next_hop(ip("198.19.0.9")), None);
        routes.set_default_gateway(ip("198.18.0.254"));
        routes.add(Route {
            dest: "198.19.5.0/24".parse().unwrap(),
            via: Some(ip("198.18.0.253")),
        });
        assert_eq!(routes.next_hop(ip("198.19.0.9")), Some(ip("198.18.0.254")));
        assert_eq!(routes.next_hop(ip("198.19.5.9")), Some(ip("198.18.0.253")));
        assert_eq!(routes.next_hop(ip("198.18.0.9")), Some(ip("198.18.0.9")));
        assert_eq!(routes.iter().count(), 3);
    }
}
