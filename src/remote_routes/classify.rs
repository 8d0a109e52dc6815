//! What a learned prefix is, by the current pools and this node's own
//! blocks: another node's block or borrowed address (its path chosen by
//! the pool's encapsulation), one of this node's own blocks (no route: the
//! blackhole and the pod routes are already there), or a plain learned
//! route (outside every pool, or ECMP), which goes direct.

use super::encap::PoolEncap;
use crate::bgp::rib::Addrs;
use crate::datastore::resources::IpPool;
use ipnetwork::IpNetwork;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What this node announces: its blocks and its borrowed addresses; and the service CIDRs,
/// whose learned routes (other nodes' service addresses) never go into the kernel: a node reaches
/// a service through its own service proxy, and Calico keeps them out too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalPrefixes {
    pub blocks: BTreeSet<IpNetwork>,
    pub borrowed: BTreeSet<IpNetwork>,
    pub services: BTreeSet<IpNetwork>,
}

impl LocalPrefixes {
    /// The blocks and borrowed addresses (the service prefixes are originated elsewhere).
    pub fn all(&self) -> BTreeSet<IpNetwork> {
        self.blocks.union(&self.borrowed).copied().collect()
    }
}

/// One learned prefix as the stage routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A block (or borrowed address) of the node at `node`, in a pool with
    /// `encap` (`None`: the pool never encapsulates).
    Block { node: IpAddr, encap: Option<PoolEncap> },
    /// Any other learned prefix: direct via its next hops (ECMP when several).
    Direct(Addrs),
}

/// The pools and own blocks a classification reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Classifier {
    pools: Vec<(IpNetwork, Option<PoolEncap>)>,
    own_blocks: BTreeSet<IpNetwork>,
    services: Vec<IpNetwork>,
}

impl Classifier {
    pub fn new(pools: &[IpPool], own_blocks: &BTreeSet<IpNetwork>) -> Classifier {
        Classifier {
            pools: pools.iter().map(|p| (p.cidr, PoolEncap::of(p))).collect(),
            own_blocks: own_blocks.clone(),
            services: Vec::new(),
        }
    }

    /// The classifier that installs nothing within `services` (the service CIDRs).
    pub fn without_services(mut self, services: &BTreeSet<IpNetwork>) -> Classifier {
        self.services = services.iter().copied().collect();
        self
    }

    /// How `prefix`, learned with `hops`, is routed; `None`: no route
    /// (withdrawn, or this node's own block). Takes the next hops by value:
    /// a direct route keeps them.
    pub fn classify(&self, prefix: IpNetwork, hops: Addrs) -> Option<Remote> {
        if hops.is_empty()
            || self.services.iter().any(|s| s.contains(prefix.network()) && s.prefix() <= prefix.prefix())
        {
            return None;
        }
        let pool =
            self.pools.iter().find(|(cidr, _)| cidr.contains(prefix.network()) && cidr.prefix() <= prefix.prefix());
        let Some((_, encap)) = pool else { return Some(Remote::Direct(hops)) };
        if !self.own_blocks.is_empty() && self.own_blocks.contains(&prefix) {
            return None;
        }
        match (prefix, hops.as_slice()) {
            (IpNetwork::V4(_), [node @ IpAddr::V4(_)]) | (IpNetwork::V6(_), [node @ IpAddr::V6(_)]) => {
                Some(Remote::Block { node: *node, encap: *encap })
            }
            _ => Some(Remote::Direct(hops)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::EncapMode;
    use crate::remote_routes::encap::EncapKind;

    fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> IpPool {
        let mut p = IpPool::new(cidr.parse().unwrap());
        p.ipip_mode = ipip;
        p.vxlan_mode = vxlan;
        p
    }

    fn classified(c: &Classifier, prefix: &str, hops: &[&str]) -> Option<Remote> {
        let hops: Addrs = hops.iter().map(|h| h.parse().unwrap()).collect();
        c.classify(prefix.parse().unwrap(), hops)
    }

    fn classifier(own: &[&str]) -> Classifier {
        let pools = [
            pool("10.244.0.0/16", EncapMode::CrossSubnet, EncapMode::Never),
            pool("10.245.0.0/16", EncapMode::Never, EncapMode::Always),
            pool("fd00:244::/48", EncapMode::Never, EncapMode::CrossSubnet),
            pool("10.246.0.0/16", EncapMode::Never, EncapMode::Never),
        ];
        Classifier::new(&pools, &own.iter().map(|p| p.parse().unwrap()).collect())
    }

    #[test]
    fn service_prefixes_are_never_installed() {
        let services = ["10.96.0.0/12".parse().unwrap()].into();
        let c = classifier(&[]).without_services(&services);
        assert_eq!(classified(&c, "10.96.0.0/12", &["10.0.0.2", "10.0.0.3"]), None);
        assert_eq!(classified(&c, "10.96.0.10/32", &["10.0.0.2"]), None);
        assert_eq!(
            classified(&c, "10.0.0.0/8", &["10.0.0.2"]),
            Some(Remote::Direct(["10.0.0.2".parse().unwrap()].into()))
        );
    }

    #[test]
    fn a_pool_block_with_one_next_hop_is_a_block_with_the_pools_encapsulation() {
        let c = classifier(&[]);
        let ipip = Some(PoolEncap { kind: EncapKind::Ipip, mode: EncapMode::CrossSubnet });
        assert_eq!(
            classified(&c, "10.244.1.0/26", &["10.0.0.2"]),
            Some(Remote::Block { node: "10.0.0.2".parse().unwrap(), encap: ipip })
        );
        let vxlan = Some(PoolEncap { kind: EncapKind::Vxlan, mode: EncapMode::Always });
        assert_eq!(
            classified(&c, "10.245.0.7/32", &["10.0.0.3"]),
            Some(Remote::Block { node: "10.0.0.3".parse().unwrap(), encap: vxlan }),
            "a borrowed address"
        );
        let vxlan6 = Some(PoolEncap { kind: EncapKind::Vxlan, mode: EncapMode::CrossSubnet });
        assert_eq!(
            classified(&c, "fd00:244:0:1::/122", &["fd00::2"]),
            Some(Remote::Block { node: "fd00::2".parse().unwrap(), encap: vxlan6 })
        );
        assert_eq!(
            classified(&c, "10.246.1.0/26", &["10.0.0.2"]),
            Some(Remote::Block { node: "10.0.0.2".parse().unwrap(), encap: None })
        );
    }

    #[test]
    fn ecmp_outside_pools_and_a_next_hop_of_the_other_family_go_direct() {
        let c = classifier(&[]);
        for (prefix, hops) in [
            ("10.244.2.0/26", &["10.0.0.2", "10.0.0.3"][..]),
            ("192.0.2.0/24", &["10.0.0.1"]),
            ("fd00:244:0:2::/122", &["10.0.0.2"]),
            ("10.0.0.0/8", &["10.0.0.1"]),
        ] {
            let want: Addrs = hops.iter().map(|h| h.parse().unwrap()).collect();
            assert_eq!(classified(&c, prefix, hops), Some(Remote::Direct(want)), "{prefix}");
        }
    }

    #[test]
    fn no_next_hop_or_an_own_block_is_no_route() {
        let c = classifier(&["10.244.9.0/26"]);
        assert_eq!(classified(&c, "10.244.1.0/26", &[]), None);
        assert_eq!(classified(&c, "10.244.9.0/26", &["10.0.0.2"]), None, "our own block, learned back");
        assert!(classified(&c, "10.244.9.5/32", &["10.0.0.2"]).is_some(), "an address borrowed from our block");
    }
}
