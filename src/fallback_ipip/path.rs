//! Which path a remote block takes: direct on the underlay or through the
//! tunnel. Calico's rule (ipipMode Always / CrossSubnet / Never, with the
//! node's prefix length deciding "same subnet"), plus one step beyond
//! Calico: a same-subnet node whose direct path does not answer the
//! liveness probe is reached through the tunnel until it answers again.

use crate::config::IpipMode;
use ipnetwork::Ipv4Network;
use std::net::Ipv4Addr;

/// The chosen path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct,
    Tunnel,
}

/// Chooses the path to `remote` from this node (`local`, with its prefix
/// length). `direct_alive` is the liveness probe's verdict, `None` when
/// the path is not probed (no tunnel address to probe from).
pub fn choose(mode: IpipMode, local: Ipv4Network, remote: Ipv4Addr, direct_alive: Option<bool>) -> Path {
    let same_subnet = local.contains(remote);
    match mode {
        IpipMode::Always => Path::Tunnel,
        // A node in another subnet cannot be reached directly without a
        // router that knows pod routes; under Never that is the operator's choice.
        IpipMode::Never => Path::Direct,
        IpipMode::CrossSubnet if !same_subnet => Path::Tunnel,
        IpipMode::CrossSubnet => match direct_alive {
            Some(false) => Path::Tunnel,
            _ => Path::Direct,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Ipv4Network {
        "10.0.0.5/24".parse().unwrap()
    }

    #[test]
    fn always_and_never_ignore_the_subnet() {
        assert_eq!(choose(IpipMode::Always, local(), "10.0.0.6".parse().unwrap(), None), Path::Tunnel);
        assert_eq!(choose(IpipMode::Never, local(), "10.9.0.6".parse().unwrap(), Some(false)), Path::Direct);
    }

    #[test]
    fn cross_subnet_tunnels_only_outside_the_node_prefix() {
        assert_eq!(choose(IpipMode::CrossSubnet, local(), "10.0.0.6".parse().unwrap(), None), Path::Direct);
        assert_eq!(choose(IpipMode::CrossSubnet, local(), "10.0.1.6".parse().unwrap(), None), Path::Tunnel);
    }

    #[test]
    fn a_node_registered_as_a_host_route_is_never_same_subnet() {
        // Calico #1584: without the prefix length every peer looks remote.
        let host: Ipv4Network = "10.0.0.5/32".parse().unwrap();
        assert_eq!(choose(IpipMode::CrossSubnet, host, "10.0.0.6".parse().unwrap(), None), Path::Tunnel);
    }

    #[test]
    fn a_same_subnet_node_whose_direct_path_is_dead_goes_through_the_tunnel() {
        let peer = "10.0.0.6".parse().unwrap();
        assert_eq!(choose(IpipMode::CrossSubnet, local(), peer, Some(false)), Path::Tunnel);
        assert_eq!(choose(IpipMode::CrossSubnet, local(), peer, Some(true)), Path::Direct);
    }
}
