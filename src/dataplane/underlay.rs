//! The underlay interface — the one holding the node's address — found
//! once at start: its index (direct routes go out of it), its MTU (each
//! encapsulation subtracts its own overhead from it, pods get what is left).

use super::netlink::RouteSocket;
use ipnetwork::{Ipv4Network, Ipv6Network};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub ifname: String,
    pub mtu: u32,
    /// The node's IPv4 address with its prefix length.
    pub v4: Ipv4Network,
    pub v6: Option<Ipv6Network>,
}

impl Underlay {
    /// Finds the interface holding `v4`.
    pub fn find(socket: &mut RouteSocket, v4: Ipv4Network, v6: Option<Ipv6Network>) -> Result<Underlay, String> {
        let address = socket
            .ipv4_addresses()
            .map_err(|e| format!("cannot list interface addresses: {e}"))?
            .into_iter()
            .find(|a| a.address.ip() == std::net::IpAddr::V4(v4.ip()))
            .ok_or_else(|| format!("node address {v4} is on no interface"))?;
        let mtu =
            socket.link_mtu(address.ifindex).map_err(|e| format!("cannot read the MTU of {}: {e}", address.ifname))?;
        Ok(Underlay { ifindex: address.ifindex, ifname: address.ifname, mtu, v4, v6 })
    }

    /// What is left of the MTU inside an encapsulation of `overhead` bytes.
    pub fn inner_mtu(&self, overhead: u32) -> u32 {
        self.mtu.saturating_sub(overhead)
    }
}
