//! The routes tortie owns, as a desired-state model, and what the kernel
//! reports back, normalised so the two compare with `==`.

use ipnetwork::IpNetwork;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Why a route exists; for metrics (`tortie_dataplane_routes{kind}`) and
/// for tie-breaks when two producers want the same prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// `<pod>/32 dev <veth> scope link`.
    LocalWorkload,
    /// A host route to a BGP peer through the gateway its BGPPeer's `reachableBy` names; it wins
    /// over a route to the peer learned over BGP, as BIRD's static routes do.
    PeerReachability,
    /// Another node's block via its address on the underlay.
    RemoteDirect,
    /// Another node's block through IP-in-IP.
    RemoteIpip,
    /// Another node's block through VXLAN.
    RemoteVxlan,
    /// The node's own block, so unallocated addresses are dropped here.
    Blackhole,
}

impl RouteKind {
    /// The label value used in metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::LocalWorkload => "local_workload",
            RouteKind::RemoteDirect => "remote_direct",
            RouteKind::RemoteIpip => "remote_ipip",
            RouteKind::RemoteVxlan => "remote_vxlan",
            RouteKind::Blackhole => "blackhole",
            RouteKind::PeerReachability => "peer_reachability",
        }
    }
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    pub gateway: IpAddr,
    /// Output interface; required with `onlink`.
    pub ifindex: Option<u32>,
    /// Treat the gateway as directly reachable on `ifindex` even without a
    /// matching subnet (how routes through `tunl0` are written).
    pub onlink: bool,
}

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// Straight out of an interface, scope link (local workloads, or the userspace tunnel device).
    Device { ifindex: u32 },
    /// Drop (the node's own blocks).
    Blackhole,
    /// One next hop.
    Via(NextHop),
    /// Several next hops (ECMP), kept sorted so equal sets compare equal.
    Multipath(Vec<NextHop>),
    /// Out of an interface, scope link, after a BPF program on the route's
    /// transmit hook (`encap bpf xmit <name> dev <if>`), which may take the
    /// packet elsewhere (the userspace tunnel's routes: the program
    /// encapsulates, the device is the fallback).
    BpfXmit { ifindex: u32, program: XmitProgram },
}

/// A BPF program on a route's transmit hook, known by the name the route
/// carries: the kernel reports that name back, not the program, so two
/// compare equal by name. The descriptor is there when we loaded the
/// program (to write a route with it) and absent when read from the kernel.
#[derive(Debug, Clone)]
pub struct XmitProgram {
    pub name: String,
    pub fd: Option<Arc<OwnedFd>>,
}

impl PartialEq for XmitProgram {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for XmitProgram {}

impl Hash for XmitProgram {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl RouteTarget {
    /// A target with the next hops of `hops`: `Via` for one, `Multipath` (sorted) for more.
    pub fn from_next_hops(mut hops: Vec<NextHop>) -> Option<Self> {
        hops.sort();
        hops.dedup();
        match hops.len() {
            0 => None,
            1 => hops.pop().map(RouteTarget::Via),
            _ => Some(RouteTarget::Multipath(hops)),
        }
    }
}

/// A route as tortie wants it, or as the kernel reports one of ours.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNetwork,
    pub target: RouteTarget,
    /// Per-route MTU (the `mtu` metric), e.g. for tunnel routes.
    pub mtu: Option<u32>,
}

impl NextHop {
    /// True when the kernel's next hop `k` is this one; an unset interface
    /// here means "whichever the kernel resolved".
    fn satisfied_by(&self, k: &NextHop) -> bool {
        self.gateway == k.gateway && self.onlink == k.onlink && (self.ifindex.is_none() || self.ifindex == k.ifindex)
    }
}

impl RouteTarget {
    /// True when the kernel's target `k` already sends packets where this
    /// one asks (see [`Route::satisfied_by`]).
    pub fn satisfied_by(&self, k: &RouteTarget) -> bool {
        match (self, k) {
            (RouteTarget::Via(a), RouteTarget::Via(b)) => a.satisfied_by(b),
            (RouteTarget::Multipath(a), RouteTarget::Multipath(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.satisfied_by(y)))
            }
            (a, b) => a == b,
        }
    }
}

impl Route {
    /// True when the kernel's route `k` already does what this one asks.
    pub fn satisfied_by(&self, k: &Route) -> bool {
        self.dst == k.dst && self.mtu == k.mtu && self.target.satisfied_by(&k.target)
    }
}

/// A route tortie wants, with the reason it wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoute {
    pub route: Route,
    pub kind: RouteKind,
}

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// Add a route that is not there.
    Add(Route),
    /// Overwrite a route of ours whose target differs (atomic: no gap).
    Replace(Route),
    /// Remove a route of ours that is no longer wanted.
    Delete(Route),
}

impl RouteOp {
    pub fn route(&self) -> &Route {
        match self {
            RouteOp::Add(r) | RouteOp::Replace(r) | RouteOp::Delete(r) => r,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            RouteOp::Add(_) => "add",
            RouteOp::Replace(_) => "replace",
            RouteOp::Delete(_) => "delete",
        }
    }
}
