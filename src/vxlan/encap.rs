//! VXLAN as an [`Encapsulation`] of the remote-routes stage: routes
//! `<block> via <node's tunnel address> dev vxlan.tortie onlink`, and for
//! every remote node that has published its VTEP (tunnel address and MAC
//! on its Node record), as Calico does, a permanent neighbour and an FDB
//! entry, kept by the [`super::spawn`]ed task. A node without a published
//! VTEP cannot be reached through VXLAN: until it has one, its blocks go
//! direct in our subnet and get no route beyond it.

use super::Vtep;
use crate::dataplane::{NextHop, RouteKind, RouteTarget};
use crate::remote_routes::{Encapsulation, PathKind, RemoteNode, RemoteNodes};
use ipnetwork::IpNetwork;
use std::net::IpAddr;
use tokio::sync::watch;

/// One VXLAN device (IPv4 or IPv6 underlay) and the VTEPs wanted on it.
pub struct VxlanEncap {
    ifindex: u32,
    /// The underlay family: only nodes (and tunnel addresses) of it.
    ipv6: bool,
    /// `None` until the remote nodes are read: the task touches nothing
    /// before (a restart must not delete the entries it will want again).
    vteps: watch::Sender<Option<Vec<Vtep>>>,
}

impl VxlanEncap {
    /// `vteps` feeds the device's VTEP task.
    pub fn new(ifindex: u32, ipv6: bool, vteps: watch::Sender<Option<Vec<Vtep>>>) -> VxlanEncap {
        VxlanEncap { ifindex, ipv6, vteps }
    }

    fn vtep(&self, node: IpAddr, remote: Option<&RemoteNode>) -> Option<Vtep> {
        let remote = remote?;
        let tunnel = remote.vxlan_tunnel?;
        (node.is_ipv6() == self.ipv6 && tunnel.is_ipv6() == self.ipv6).then_some(Vtep {
            underlay: node,
            tunnel,
            mac: remote.vxlan_mac?,
        })
    }
}

impl Encapsulation for VxlanEncap {
    fn path(&self) -> PathKind {
        PathKind::Vxlan
    }
    fn route_kind(&self) -> RouteKind {
        RouteKind::RemoteVxlan
    }
    fn target(&self, node: IpAddr, remote: Option<&RemoteNode>) -> Option<RouteTarget> {
        let vtep = self.vtep(node, remote)?;
        Some(RouteTarget::Via(NextHop { gateway: vtep.tunnel, ifindex: Some(self.ifindex), onlink: true }))
    }
    fn needs_remote_nodes(&self) -> bool {
        true
    }
    /// Every remote node with a VTEP gets its entries, also one reached
    /// directly now: a path that moves into VXLAN then finds them in place.
    fn set_peers(&self, _tunnelled: &[(IpNetwork, IpAddr)], _senders: &[IpAddr], remotes: &RemoteNodes) {
        let mut vteps: Vec<Vtep> = remotes.iter().filter_map(|(n, r)| self.vtep(*n, Some(r))).collect();
        vteps.sort_by_key(|v| (v.underlay, v.tunnel));
        let vteps = Some(vteps);
        self.vteps.send_if_modified(|old| {
            let changed = *old != vteps;
            if changed {
                *old = vteps;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str) -> IpAddr {
        a.parse().unwrap()
    }

    #[test]
    fn routes_go_via_the_nodes_tunnel_address_once_its_vtep_is_known() {
        let (tx, rx) = watch::channel(None);
        let encap = VxlanEncap::new(9, false, tx);
        let node = addr("10.0.0.6");
        assert_eq!(encap.target(node, None), None);
        let partial = RemoteNode { vxlan_tunnel: Some(addr("10.244.1.0")), vxlan_mac: None };
        assert_eq!(encap.target(node, Some(&partial)), None, "no MAC, no neighbour entry");
        let full = RemoteNode { vxlan_mac: Some([2, 0, 0, 0, 0, 6]), ..partial };
        assert_eq!(
            encap.target(node, Some(&full)),
            Some(RouteTarget::Via(NextHop { gateway: addr("10.244.1.0"), ifindex: Some(9), onlink: true }))
        );
        let v6 = RemoteNode { vxlan_tunnel: Some(addr("fd00:244::")), vxlan_mac: Some([2, 0, 0, 0, 0, 8]) };
        let remotes: RemoteNodes =
            [(node, full), (addr("10.0.0.7"), RemoteNode::default()), (addr("fd00::8"), v6)].into();
        encap.set_peers(&[], &[], &remotes);
        assert_eq!(
            *rx.borrow(),
            Some(vec![Vtep { underlay: node, tunnel: addr("10.244.1.0"), mac: [2, 0, 0, 0, 0, 6] }]),
            "only nodes of our family with a VTEP"
        );
    }
}
