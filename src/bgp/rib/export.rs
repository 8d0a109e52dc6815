//! Routes on the way out: which best paths a peer gets (the roles' rules),
//! the attributes rewritten for it, the built-in defaults and its export policy.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use super::attrs::{DEFAULT_LOCAL_PREF, PathAttrs};
use super::net::{same_family, within};
use super::policy::PeerType;
use super::{PeerRole, PeerSetup, RibConfig};

/// Where a best path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// `None` for our own origination.
    pub peer: Option<IpAddr>,
    pub role: Option<PeerRole>,
    /// The BGP identifier of that peer (the ORIGINATOR_ID we set when reflecting).
    pub router_id: Ipv4Addr,
}

/// The peer we export to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub addr: IpAddr,
    pub setup: &'a PeerSetup,
    /// Our address on the session (next hop self).
    pub local_addr: Option<IpAddr>,
}

/// Our next hop for `prefix` toward `target`: the session's local address
/// when of the prefix's family, else a configured local address of it.
fn next_hop_self(config: &RibConfig, target: &Target, prefix: &IpNetwork) -> Option<IpAddr> {
    target
        .local_addr
        .filter(|a| same_family(a, prefix))
        .or_else(|| config.local_addresses.iter().copied().find(|a| same_family(a, prefix)))
}

/// May a route from `from` go to a peer of role `to` (RFC 4271 iBGP split
/// horizon, RFC 4456 reflection)? `Some(true)` when it is reflected.
fn may_send(from: Option<PeerRole>, to: PeerRole) -> Option<bool> {
    match (from, to) {
        (None, _) | (Some(PeerRole::External), _) | (Some(_), PeerRole::External) => Some(false),
        // RFC 4456 section 6: a route from a client goes to clients and non-clients.
        (Some(PeerRole::RrClient), _) => Some(true),
        // From a non-client: to clients only.
        (Some(PeerRole::Mesh | PeerRole::RrServer), PeerRole::RrClient) => Some(true),
        (Some(PeerRole::Mesh | PeerRole::RrServer), _) => None,
    }
}

/// The attributes `target` gets for `prefix` whose best path is `attrs`
/// from `origin`, or `None` when it gets nothing.
pub fn export_route(
    config: &RibConfig,
    target: &Target,
    prefix: &IpNetwork,
    origin: &Origin,
    attrs: &PathAttrs,
) -> Option<PathAttrs> {
    if origin.peer == Some(target.addr) {
        return None;
    }
    let to = target.setup.role;
    let reflected = may_send(origin.role, to)?;
    let mut out = attrs.clone();
    let local = origin.peer.is_none();
    if to == PeerRole::External {
        // Calico: toward external peers only the pools and what lies inside them, and our own
        // prefixes (its static routes: service addresses, which lie outside the pools).
        if !local && !config.pools.iter().any(|pool| within(prefix, pool)) {
            return None;
        }
        out.prepend(target.setup.local_as.unwrap_or(config.local_as), 1);
        out.next_hop = Some(next_hop_self(config, target, prefix)?);
        out.link_local = None;
        out.local_pref = None;
        out.originator_id = None;
        out.cluster_list.clear();
        // RFC 4271 5.1.4: a MED learned from another AS is not passed on.
        if !local {
            out.med = None;
        }
    } else {
        out.local_pref = Some(attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        if reflected {
            // RFC 4456 section 8.
            out.originator_id.get_or_insert(origin.router_id);
            out.cluster_list.insert(0, config.cluster());
        } else if local || target.setup.next_hop_self {
            out.next_hop = Some(next_hop_self(config, target, prefix)?);
            out.link_local = None;
        }
    }
    let next_hop = out.next_hop?;
    if !same_family(&next_hop, prefix) {
        return None;
    }
    for unknown in &mut out.unknown {
        // RFC 4271 5: an unrecognised optional transitive attribute passed on gets the Partial bit.
        unknown.0 |= crate::bgp::packet::attribute::flag::PARTIAL;
    }
    let peer_type = if to == PeerRole::External { PeerType::Ebgp } else { PeerType::Ibgp };
    match &target.setup.export {
        Some(policy) => policy.apply_to(prefix, peer_type, !local, out),
        None => Some(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::Policy;

    fn config() -> RibConfig {
        let mut c = RibConfig::new(65000, Ipv4Addr::new(10, 0, 0, 1));
        c.pools = vec!["10.244.0.0/16".parse().unwrap()];
        c
    }

    fn block() -> IpNetwork {
        "10.244.1.0/26".parse().unwrap()
    }

    fn learned() -> PathAttrs {
        let mut a = PathAttrs::local();
        a.next_hop = Some("192.0.2.9".parse().unwrap());
        a.local_pref = Some(100);
        a.med = Some(7);
        a
    }

    fn from(role: Option<PeerRole>) -> Origin {
        Origin { peer: role.map(|_| "192.0.2.9".parse().unwrap()), role, router_id: Ipv4Addr::new(10, 0, 0, 9) }
    }

    fn send(config: &RibConfig, to: &PeerSetup, origin: Origin, attrs: &PathAttrs) -> Option<PathAttrs> {
        let target =
            Target { addr: "192.0.2.5".parse().unwrap(), setup: to, local_addr: Some("192.0.2.1".parse().unwrap()) };
        export_route(config, &target, &block(), &origin, attrs)
    }

    #[test]
    fn mesh_routes_are_never_passed_to_other_mesh_peers() {
        let mesh = PeerSetup::new(PeerRole::Mesh, 65000);
        assert!(send(&config(), &mesh, from(Some(PeerRole::Mesh)), &learned()).is_none());
        assert!(send(&config(), &mesh, from(Some(PeerRole::RrServer)), &learned()).is_none());
        let local = send(&config(), &mesh, from(None), &PathAttrs::local()).unwrap();
        assert_eq!(local.next_hop, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(local.local_pref, Some(100));
    }

    #[test]
    fn a_route_is_not_sent_back_to_its_peer() {
        let mesh = PeerSetup::new(PeerRole::RrClient, 65000);
        let mut origin = from(Some(PeerRole::RrClient));
        origin.peer = Some("192.0.2.5".parse().unwrap());
        assert!(send(&config(), &mesh, origin, &learned()).is_none());
    }

    #[test]
    fn reflection_sets_originator_and_prepends_the_cluster_id() {
        let mut c = config();
        c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
        let client = PeerSetup::new(PeerRole::RrClient, 65000);
        let non_client = PeerSetup::new(PeerRole::Mesh, 65000);
        let out = send(&c, &client, from(Some(PeerRole::Mesh)), &learned()).unwrap();
        assert_eq!(out.originator_id, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(out.cluster_list, vec![Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!(out.next_hop, Some("192.0.2.9".parse().unwrap()), "reflection keeps the next hop");
        // A client's route goes to non-clients too; an existing ORIGINATOR_ID stays.
        let mut a = learned();
        a.originator_id = Some(Ipv4Addr::new(3, 3, 3, 3));
        a.cluster_list = vec![Ipv4Addr::new(2, 2, 2, 2)];
        let out = send(&c, &non_client, from(Some(PeerRole::RrClient)), &a).unwrap();
        assert_eq!(out.originator_id, Some(Ipv4Addr::new(3, 3, 3, 3)));
        assert_eq!(out.cluster_list, vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)]);
        // A non-client's route goes to clients only.
        assert!(send(&c, &non_client, from(Some(PeerRole::Mesh)), &learned()).is_none());
    }

    #[test]
    fn external_gets_pool_prefixes_with_our_as_and_next_hop_self() {
        let mut ext = PeerSetup::new(PeerRole::External, 65002);
        let out = send(&config(), &ext, from(Some(PeerRole::Mesh)), &learned()).unwrap();
        assert_eq!(out.as_path_text(), "65000");
        assert_eq!(out.next_hop, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((out.local_pref, out.med), (None, None));
        ext.local_as = Some(64999);
        assert_eq!(send(&config(), &ext, from(None), &PathAttrs::local()).unwrap().as_path_text(), "64999");
        // Learned outside the pools: nothing, whatever the policy; our own (service) prefixes go.
        ext.export = Some(Policy::accept_all());
        let target =
            Target { addr: "192.0.2.5".parse().unwrap(), setup: &ext, local_addr: Some("192.0.2.1".parse().unwrap()) };
        let outside: IpNetwork = "192.168.0.0/24".parse().unwrap();
        assert!(export_route(&config(), &target, &outside, &from(Some(PeerRole::Mesh)), &learned()).is_none());
        assert!(export_route(&config(), &target, &outside, &from(None), &PathAttrs::local()).is_some());
        // No pools: an external peer gets nothing learned.
        let mut bare = config();
        bare.pools.clear();
        assert!(send(&bare, &ext, from(Some(PeerRole::Mesh)), &learned()).is_none());
        ext.export = Some(Policy::reject_all());
        assert!(send(&config(), &ext, from(None), &PathAttrs::local()).is_none());
    }

    #[test]
    fn next_hop_self_for_ibgp_is_per_peer() {
        let mut mesh = PeerSetup::new(PeerRole::Mesh, 65000);
        let ext_route = learned();
        let out = send(&config(), &mesh, from(Some(PeerRole::External)), &ext_route).unwrap();
        assert_eq!(out.next_hop, Some("192.0.2.9".parse().unwrap()));
        mesh.next_hop_self = true;
        let out = send(&config(), &mesh, from(Some(PeerRole::External)), &ext_route).unwrap();
        assert_eq!(out.next_hop, Some("192.0.2.1".parse().unwrap()));
    }
}
