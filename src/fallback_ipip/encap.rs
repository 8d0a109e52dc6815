//! IP-in-IP as an [`Encapsulation`] of the remote-routes stage: the kernel's
//! `tunl0` (`<block> via <node> dev tunl0 onlink`) or the userspace
//! encapsulator (`<block> encap bpf xmit tipip<node> dev <tun>` when the
//! kernel took the transmit program ([`super::lwt_xmit`]), else
//! `<block> dev <tun>`; what reaches the TUN device is carried to the node
//! looked up per packet in the table [`Encapsulation::set_peers`] fills).
//! Needs nothing of the remote node beyond its underlay address.

use super::lwt_xmit::BpfTransmit;
use super::tc_decap::BpfReceive;
use super::{TunnelPeer, UserspaceTunnel};
use crate::dataplane::{NextHop, RouteKind, RouteTarget};
use crate::remote_routes::{Encapsulation, PathKind, RemoteNode, RemoteNodes};
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Kernel IP-in-IP through `tunl0`.
pub struct KernelIpip {
    pub ifindex: u32,
}

impl Encapsulation for KernelIpip {
    fn path(&self) -> PathKind {
        PathKind::Ipip
    }
    fn route_kind(&self) -> RouteKind {
        RouteKind::RemoteIpip
    }
    fn target(&self, node: IpAddr, _remote: Option<&RemoteNode>) -> Option<RouteTarget> {
        Some(RouteTarget::Via(NextHop { gateway: node, ifindex: Some(self.ifindex), onlink: true }))
    }
    fn set_peers(&self, _tunnelled: &[(IpNetwork, IpAddr)], _senders: &[IpAddr], _remotes: &RemoteNodes) {}
}

/// Userspace IP-in-IP: the transmit programs and the receive program when
/// loaded, and the TUN device and raw socket for what they leave.
pub struct UserspaceIpip {
    tunnel: Arc<UserspaceTunnel>,
    transmit: Option<BpfTransmit>,
    receive: Option<BpfReceive>,
}

impl UserspaceIpip {
    /// `transmit`: the programs' loader when the kernel took the probe;
    /// `receive`: the ingress program when attached.
    pub fn new(tunnel: Arc<UserspaceTunnel>, transmit: Option<BpfTransmit>, receive: Option<BpfReceive>) -> Self {
        UserspaceIpip { tunnel, transmit, receive }
    }
}

impl Encapsulation for UserspaceIpip {
    fn path(&self) -> PathKind {
        PathKind::IpipUserspace
    }
    fn route_kind(&self) -> RouteKind {
        RouteKind::RemoteIpip
    }
    fn target(&self, node: IpAddr, _remote: Option<&RemoteNode>) -> Option<RouteTarget> {
        let ifindex = self.tunnel.ifindex();
        if let (Some(transmit), IpAddr::V4(node)) = (&self.transmit, node) {
            match transmit.program(node) {
                Ok(program) => return Some(RouteTarget::BpfXmit { ifindex, program }),
                Err(e) => {
                    tracing::warn!(subsys = "ipip", %node, error = %e, "no transmit program toward the node; its packets go through the TUN device")
                }
            }
        }
        Some(RouteTarget::Device { ifindex })
    }
    fn set_peers(&self, tunnelled: &[(IpNetwork, IpAddr)], senders: &[IpAddr], _remotes: &RemoteNodes) {
        let peers: Vec<TunnelPeer> = tunnelled
            .iter()
            .filter_map(|(dst, node)| match (dst, node) {
                (IpNetwork::V4(block), IpAddr::V4(node)) => Some(TunnelPeer { block: *block, node: *node }),
                _ => None,
            })
            .collect();
        let senders: Vec<Ipv4Addr> = senders
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        if let Some(transmit) = &self.transmit {
            transmit.retain(&peers.iter().map(|p| p.node).collect::<Vec<_>>());
        }
        if let Some(receive) = &self.receive {
            receive.set_nodes(&peers.iter().map(|p| p.node).chain(senders.iter().copied()).collect());
        }
        self.tunnel.set_peers(&peers, &senders);
    }
}
