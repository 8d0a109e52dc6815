//! What the remote-routes stage needs of an encapsulation, and which one a
//! pool asks for. IP-in-IP (`fallback_ipip`) and VXLAN (`vxlan`) implement
//! [`Encapsulation`]; the stage decides *whether* a block is encapsulated
//! (the pool's mode, the subnet, the liveness probe), the encapsulation
//! *how*: the route form toward a node and the per-node state it keeps
//! (the userspace table, VXLAN neighbours and FDB entries).

use crate::dataplane::{RouteKind, RouteTarget};
use crate::datastore::resources::{EncapMode, IpPool};
use ipnetwork::IpNetwork;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The encapsulations a pool can ask for (`ipipMode`, `vxlanMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncapKind {
    Ipip,
    Vxlan,
}

/// How a pool's blocks travel: its encapsulation and when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolEncap {
    pub kind: EncapKind,
    /// Always or CrossSubnet (a pool that never encapsulates has no `PoolEncap`).
    pub mode: EncapMode,
}

impl PoolEncap {
    /// The pool's encapsulation; `None` when it never encapsulates. A pool
    /// has at most one (the pool check refuses both modes set).
    pub fn of(pool: &IpPool) -> Option<PoolEncap> {
        if pool.vxlan_mode != EncapMode::Never {
            Some(PoolEncap { kind: EncapKind::Vxlan, mode: pool.vxlan_mode })
        } else if pool.ipip_mode != EncapMode::Never {
            Some(PoolEncap { kind: EncapKind::Ipip, mode: pool.ipip_mode })
        } else {
            None
        }
    }

    /// Bytes each packet of the pool's family gains on the wire.
    pub fn overhead(self, ipv6: bool) -> u32 {
        match (self.kind, ipv6) {
            (EncapKind::Ipip, _) => crate::fallback_ipip::packet::OVERHEAD as u32,
            (EncapKind::Vxlan, false) => crate::vxlan::OVERHEAD_V4,
            (EncapKind::Vxlan, true) => crate::vxlan::OVERHEAD_V6,
        }
    }
}

/// The MTU pods get: the underlay's minus the largest overhead of an
/// encapsulation some enabled pool uses (Calico's rule), unless configured.
pub fn pod_mtu(configured: Option<u32>, underlay_mtu: u32, pools: &[IpPool]) -> u32 {
    let overhead = pools
        .iter()
        .filter(|p| !p.disabled)
        .filter_map(|p| PoolEncap::of(p).map(|e| e.overhead(p.cidr.is_ipv6())))
        .max()
        .unwrap_or(0);
    configured.unwrap_or(underlay_mtu.saturating_sub(overhead))
}

/// The path toward a node, as status (`tunnel_mode` per peer) and metrics
/// (`path` label) name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    Direct,
    Ipip,
    IpipUserspace,
    Vxlan,
}

impl PathKind {
    pub const ALL: [PathKind; 4] = [PathKind::Direct, PathKind::Ipip, PathKind::IpipUserspace, PathKind::Vxlan];

    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Ipip => "ipip",
            PathKind::IpipUserspace => "ipip-userspace",
            PathKind::Vxlan => "vxlan",
        }
    }

    /// The metrics' `path` label: the encapsulation, whatever implements it
    /// (`tortie_ipip_mode` says which IP-in-IP does).
    pub fn metric_label(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Ipip | PathKind::IpipUserspace => "ipip",
            PathKind::Vxlan => "vxlan",
        }
    }
}

/// What a remote node publishes for encapsulations beyond its underlay
/// address (VXLAN: its VTEP), keyed by that underlay address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteNode {
    pub vxlan_tunnel: Option<IpAddr>,
    pub vxlan_mac: Option<[u8; 6]>,
}

/// Remote nodes by underlay address (a node with IPv4 and IPv6 underlay
/// addresses has an entry under each, with that family's VTEP).
pub type RemoteNodes = HashMap<IpAddr, RemoteNode>;

/// One encapsulation on this node, as the stage uses it.
pub trait Encapsulation: Send + Sync + 'static {
    /// What status and metrics call the path through it.
    fn path(&self) -> PathKind;
    /// The kind its routes carry at the programmer.
    fn route_kind(&self) -> RouteKind;
    /// The route target toward `node` through it; `None` while the node
    /// lacks what this encapsulation needs of it (VXLAN: a published VTEP);
    /// meanwhile the node's blocks go direct in our subnet and get no route
    /// beyond it.
    fn target(&self, node: IpAddr, remote: Option<&RemoteNode>) -> Option<RouteTarget>;
    /// True when it needs the remote nodes' records ([`RemoteNode`]): the
    /// stage then routes nothing learned before it has read them.
    fn needs_remote_nodes(&self) -> bool {
        false
    }
    /// The blocks it carries now (with their nodes), every node that
    /// announced a block (it may send to us) and the remote nodes' records
    /// (read, when it needs them). Called before the routes that use them
    /// reach the programmer.
    fn set_peers(&self, tunnelled: &[(IpNetwork, IpAddr)], senders: &[IpAddr], remotes: &RemoteNodes);
}

/// The encapsulations by the family of the blocks they carry.
#[derive(Clone, Default)]
pub struct Encapsulations {
    slots: [Option<Arc<dyn Encapsulation>>; SLOTS],
}

/// Slots: IP-in-IP (IPv4 only), VXLAN over IPv4, VXLAN over IPv6.
pub(super) const SLOTS: usize = 3;

/// The slot of an encapsulation for blocks of one family; `None`: no such
/// combination (IP-in-IP carries IPv4 only).
pub(super) fn slot(kind: EncapKind, ipv6: bool) -> Option<usize> {
    match (kind, ipv6) {
        (EncapKind::Ipip, false) => Some(0),
        (EncapKind::Ipip, true) => None,
        (EncapKind::Vxlan, false) => Some(1),
        (EncapKind::Vxlan, true) => Some(2),
    }
}

impl Encapsulations {
    /// Adds the encapsulation carrying `kind` for blocks of one family.
    pub fn set(&mut self, kind: EncapKind, ipv6: bool, encap: Arc<dyn Encapsulation>) {
        if let Some(s) = slot(kind, ipv6) {
            self.slots[s] = Some(encap);
        }
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Arc<dyn Encapsulation>> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// True when one of them needs the remote nodes' records.
    pub fn need_remote_nodes(&self) -> bool {
        self.slots.iter().flatten().any(|e| e.needs_remote_nodes())
    }

    /// The paths of the encapsulations present (for the metrics' labels).
    pub fn paths(&self) -> Vec<PathKind> {
        let mut p: Vec<PathKind> = self.slots.iter().flatten().map(|e| e.path()).collect();
        p.sort();
        p.dedup();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> IpPool {
        let mut p = IpPool::new(cidr.parse().unwrap());
        p.ipip_mode = ipip;
        p.vxlan_mode = vxlan;
        p
    }

    #[test]
    fn a_pool_has_the_encapsulation_its_mode_names() {
        use EncapMode::*;
        assert_eq!(PoolEncap::of(&pool("10.0.0.0/16", Never, Never)), None);
        assert_eq!(
            PoolEncap::of(&pool("10.0.0.0/16", CrossSubnet, Never)),
            Some(PoolEncap { kind: EncapKind::Ipip, mode: CrossSubnet })
        );
        assert_eq!(
            PoolEncap::of(&pool("fd00::/48", Never, Always)),
            Some(PoolEncap { kind: EncapKind::Vxlan, mode: Always })
        );
    }

    #[test]
    fn pods_get_the_underlay_mtu_minus_the_largest_overhead_in_use() {
        use EncapMode::*;
        let ipip = pool("10.0.0.0/16", Always, Never);
        let vxlan4 = pool("10.1.0.0/16", Never, CrossSubnet);
        let vxlan6 = pool("fd00::/48", Never, Always);
        assert_eq!(pod_mtu(None, 1500, &[]), 1500);
        assert_eq!(pod_mtu(None, 1500, std::slice::from_ref(&ipip)), 1480);
        assert_eq!(pod_mtu(None, 1500, &[ipip.clone(), vxlan4.clone()]), 1450);
        assert_eq!(pod_mtu(None, 1500, &[ipip, vxlan4, vxlan6.clone()]), 1430);
        let mut off = vxlan6;
        off.disabled = true;
        assert_eq!(pod_mtu(None, 1500, &[off]), 1500, "a disabled pool gets no new pods");
        assert_eq!(pod_mtu(Some(1400), 1500, &[pool("10.0.0.0/16", Always, Never)]), 1400);
    }
}
