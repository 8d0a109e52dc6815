//! Prefix helpers: wire prefixes to `IpNetwork` and containment.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::bgp::packet::{Family, Prefix};

/// The network of a wire prefix (the codec guarantees a valid length).
pub fn network(prefix: &Prefix) -> Option<IpNetwork> {
    IpNetwork::new(prefix.addr(), prefix.len()).ok()
}

/// The wire prefix of a network, host bits cleared.
pub fn prefix(net: IpNetwork) -> Option<Prefix> {
    Prefix::new(net.network(), net.prefix()).ok()
}

/// A network with its host bits cleared (`10.0.0.1/24` → `10.0.0.0/24`).
pub fn normalize(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

/// The unicast family of a network.
pub fn family(net: &IpNetwork) -> Family {
    if net.is_ipv4() { Family::IPV4_UNICAST } else { Family::IPV6_UNICAST }
}

/// True when `inner` is `outer` or a more specific prefix inside it.
pub fn within(inner: &IpNetwork, outer: &IpNetwork) -> bool {
    inner.is_ipv4() == outer.is_ipv4() && inner.prefix() >= outer.prefix() && outer.contains(inner.network())
}

/// True for an address of the same family as `net`.
pub fn same_family(addr: &IpAddr, net: &IpNetwork) -> bool {
    addr.is_ipv4() == net.is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_containment_of_the_same_family() {
        let pool: IpNetwork = "10.244.0.0/16".parse().unwrap();
        assert!(within(&"10.244.3.0/26".parse().unwrap(), &pool));
        assert!(within(&pool, &pool));
        assert!(!within(&"10.0.0.0/8".parse().unwrap(), &pool));
        assert!(!within(&"10.245.0.0/24".parse().unwrap(), &pool));
        assert!(!within(&"::/0".parse().unwrap(), &"0.0.0.0/0".parse().unwrap()));
        assert_eq!(normalize("10.0.0.1/24".parse().unwrap()).to_string(), "10.0.0.0/24");
    }
}
