//! IP-in-IP as an [`Encapsulation`] of the remote-routes stage: the kernel's
//! `tunl0` (`<block> via <node> dev tunl0 onlink`) or the userspace
//! encapsulator (`<block> dev <tun>`, the node looked up per packet in the
//! table [`Encapsulation::set_peers`] fills). Needs nothing of the remote
//! node beyond its underlay address.

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

/// Userspace IP-in-IP through the TUN device.
pub struct UserspaceIpip(pub Arc<UserspaceTunnel>);

impl Encapsulation for UserspaceIpip {
    fn path(&self) -> PathKind {
        PathKind::IpipUserspace
    }
    fn route_kind(&self) -> RouteKind {
        RouteKind::RemoteIpip
    }
    fn target(&self, _node: IpAddr, _remote: Option<&RemoteNode>) -> Option<RouteTarget> {
        Some(RouteTarget::Device { ifindex: self.0.ifindex() })
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
        self.0.set_peers(&peers, &senders);
    }
}
