//! Routes on the way in: attributes from an UPDATE, then loop detection,
//! route-reflection checks, the built-in defaults and the import policy.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::attrs::PathAttrs;
use super::net::within;
use super::policy::{PeerType, Verdict};
use super::{PeerRole, PeerSetup, RibConfig};
use crate::bgp::packet::attribute::flag;
use crate::bgp::packet::{AttributeValue, Family, NextHop, Origin, UpdateMessage, UpdateOutcome};
use crate::bgp::session::as4::merge_as4_path;

/// Why a received route was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Our AS is in the path more often than allow-as-in permits.
    AsLoop,
    /// ORIGINATOR_ID is our router id (RFC 4456 section 8).
    OwnOriginator,
    /// CLUSTER_LIST holds our cluster id (RFC 4456 section 8).
    ClusterLoop,
    /// Outside the IP pools (the default toward iBGP peers).
    OutsidePools,
    /// An External peer without an import policy (RFC 8212).
    NoImportPolicy,
    /// The import policy rejected it.
    Policy,
}

/// The attributes of an UPDATE, without next hop (it is per family);
/// attributes RFC 7606 says to discard are left out.
pub fn base_attrs(update: &UpdateMessage, outcome: &UpdateOutcome, four_octet: bool) -> PathAttrs {
    let mut attrs = PathAttrs::local();
    let mut as4_path = None;
    let mut as_path = None;
    for (index, attribute) in update.attributes.iter().enumerate() {
        if outcome.is_discarded(index) {
            continue;
        }
        match &attribute.value {
            AttributeValue::Origin(origin) => attrs.origin = *origin,
            AttributeValue::AsPath(path) => as_path = Some(path),
            AttributeValue::As4Path(path) => as4_path = Some(path),
            AttributeValue::MultiExitDisc(v) => attrs.med = Some(*v),
            AttributeValue::LocalPref(v) => attrs.local_pref = Some(*v),
            AttributeValue::AtomicAggregate => attrs.atomic_aggregate = true,
            AttributeValue::Aggregator(a) | AttributeValue::As4Aggregator(a) => attrs.aggregator = Some(*a),
            AttributeValue::Communities(c) => attrs.communities = c.clone(),
            AttributeValue::ExtendedCommunities(c) => attrs.ext_communities = c.clone(),
            AttributeValue::LargeCommunities(c) => attrs.large_communities = c.clone(),
            AttributeValue::OriginatorId(id) => attrs.originator_id = Some(*id),
            AttributeValue::ClusterList(ids) => attrs.cluster_list = ids.clone(),
            AttributeValue::Raw { type_code, data } => {
                // Only optional transitive unknowns travel on (RFC 4271 5).
                if attribute.is_optional() && attribute.is_transitive() {
                    attrs.unknown.push((attribute.flags & !flag::EXTENDED_LENGTH, *type_code, data.clone()));
                }
            }
            AttributeValue::NextHop(_) | AttributeValue::MpReachNlri(_) | AttributeValue::MpUnreachNlri(_) => {}
        }
    }
    if let Some(path) = as_path {
        attrs.as_path = if four_octet { path.clone() } else { merge_as4_path(path, as4_path) };
        attrs.as_path.four_octet = true;
    }
    if update.origin().is_none() {
        attrs.origin = Origin::Incomplete;
    }
    attrs
}

/// The next hop for routes of `family` in the UPDATE.
pub fn next_hop(update: &UpdateMessage, family: Family) -> (Option<IpAddr>, Option<std::net::Ipv6Addr>) {
    if family == Family::IPV4_UNICAST
        && let Some(nh) = update.next_hop()
        && !update.nlri.is_empty()
    {
        return (Some(IpAddr::V4(nh)), None);
    }
    match update.mp_reach().filter(|r| r.family == family).map(|r| &r.next_hop) {
        Some(NextHop::Ipv4(a)) => (Some(IpAddr::V4(*a)), None),
        Some(NextHop::Ipv6(a)) => (Some(IpAddr::V6(*a)), None),
        // A link-local alone (global ::) is only reachable on the link: use it.
        Some(NextHop::Ipv6WithLinkLocal { global, link_local }) if global.is_unspecified() => {
            (Some(IpAddr::V6(*link_local)), None)
        }
        Some(NextHop::Ipv6WithLinkLocal { global, link_local }) => (Some(IpAddr::V6(*global)), Some(*link_local)),
        Some(NextHop::Raw(_)) | None => (None, None),
    }
}

/// Applies the import rules of `setup` to one route.
pub fn import_route(
    config: &RibConfig,
    setup: &PeerSetup,
    prefix: &IpNetwork,
    attrs: PathAttrs,
) -> Result<PathAttrs, Rejected> {
    let attrs = import_attrs(config, setup, attrs)?;
    Ok(import_prefix(config, setup, prefix, &attrs)?.unwrap_or(attrs))
}

/// The import rules that depend on the attributes alone, applied once per
/// UPDATE (its prefixes share them): loops, reflection checks, and what
/// eBGP attributes mean here.
pub fn import_attrs(config: &RibConfig, setup: &PeerSetup, mut attrs: PathAttrs) -> Result<PathAttrs, Rejected> {
    let own_as = setup.local_as.unwrap_or(config.local_as);
    let loops = attrs.count_as(config.local_as).max(attrs.count_as(own_as));
    if loops > usize::from(setup.allow_as_in) {
        return Err(Rejected::AsLoop);
    }
    if setup.role.is_ibgp() {
        if attrs.originator_id == Some(config.router_id) {
            return Err(Rejected::OwnOriginator);
        }
        if attrs.cluster_list.contains(&config.cluster()) {
            return Err(Rejected::ClusterLoop);
        }
    } else {
        // LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST mean nothing from another AS.
        attrs.local_pref = None;
        attrs.originator_id = None;
        attrs.cluster_list.clear();
    }
    Ok(attrs)
}

/// The per-prefix import rules on attributes [`import_attrs`] accepted:
/// `Ok(None)` accepts them unchanged, `Ok(Some(..))` with the policy's changes.
pub fn import_prefix(
    config: &RibConfig,
    setup: &PeerSetup,
    prefix: &IpNetwork,
    attrs: &PathAttrs,
) -> Result<Option<PathAttrs>, Rejected> {
    // Calico: from nodes and reflectors only pool prefixes (no pools: no limit).
    if setup.role.is_ibgp() && !config.pools.is_empty() && !config.pools.iter().any(|pool| within(prefix, pool)) {
        return Err(Rejected::OutsidePools);
    }
    let peer_type = if setup.role == PeerRole::External { PeerType::Ebgp } else { PeerType::Ibgp };
    match &setup.import {
        // Nothing to evaluate per prefix: no copy of the attributes.
        Some(policy) if policy.rules.is_empty() => match policy.default {
            Verdict::Accept => Ok(None),
            Verdict::Reject => Err(Rejected::Policy),
        },
        Some(policy) => policy.apply(prefix, peer_type, attrs.clone()).map(Some).ok_or(Rejected::Policy),
        None if setup.role == PeerRole::External => Err(Rejected::NoImportPolicy),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::Policy;
    use std::net::Ipv4Addr;

    fn config() -> RibConfig {
        let mut c = RibConfig::new(65000, Ipv4Addr::new(10, 0, 0, 1));
        c.pools = vec!["10.244.0.0/16".parse().unwrap()];
        c
    }

    fn path(asns: &[u32]) -> PathAttrs {
        let mut a = PathAttrs::local();
        for asn in asns.iter().rev() {
            a.prepend(*asn, 1);
        }
        a.next_hop = Some("192.0.2.9".parse().unwrap());
        a
    }

    fn block() -> IpNetwork {
        "10.244.1.0/26".parse().unwrap()
    }

    #[test]
    fn own_as_in_the_path_is_a_loop_unless_allowed() {
        let mut setup = PeerSetup::new(PeerRole::External, 65002);
        setup.import = Some(Policy::accept_all());
        assert_eq!(import_route(&config(), &setup, &block(), path(&[65002, 65000])), Err(Rejected::AsLoop));
        setup.allow_as_in = 1;
        assert!(import_route(&config(), &setup, &block(), path(&[65002, 65000])).is_ok());
        assert_eq!(import_route(&config(), &setup, &block(), path(&[65000, 65002, 65000])), Err(Rejected::AsLoop));
        // A local-as override counts as ours too.
        setup.allow_as_in = 0;
        setup.local_as = Some(64999);
        assert_eq!(import_route(&config(), &setup, &block(), path(&[65002, 64999])), Err(Rejected::AsLoop));
    }

    #[test]
    fn reflected_routes_that_loop_back_are_dropped() {
        let setup = PeerSetup::new(PeerRole::RrClient, 65000);
        let mut a = path(&[]);
        a.originator_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(import_route(&config(), &setup, &block(), a), Err(Rejected::OwnOriginator));
        let mut a = path(&[]);
        a.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(10, 0, 0, 1)];
        assert_eq!(import_route(&config(), &setup, &block(), a.clone()), Err(Rejected::ClusterLoop));
        let mut c = config();
        c.cluster_id = Some(Ipv4Addr::new(9, 9, 9, 9));
        assert!(import_route(&c, &setup, &block(), a).is_ok());
    }

    #[test]
    fn ibgp_imports_pool_prefixes_only_and_ebgp_needs_a_policy() {
        let mesh = PeerSetup::new(PeerRole::Mesh, 65000);
        assert!(import_route(&config(), &mesh, &block(), path(&[])).is_ok());
        let outside: IpNetwork = "192.168.0.0/24".parse().unwrap();
        assert_eq!(import_route(&config(), &mesh, &outside, path(&[])), Err(Rejected::OutsidePools));
        let mut ext = PeerSetup::new(PeerRole::External, 65002);
        assert_eq!(import_route(&config(), &ext, &block(), path(&[65002])), Err(Rejected::NoImportPolicy));
        ext.import = Some(Policy::accept_all());
        let mut a = path(&[65002]);
        a.local_pref = Some(500);
        let got = import_route(&config(), &ext, &outside, a).unwrap();
        assert_eq!(got.local_pref, None, "LOCAL_PREF from eBGP is ignored");
    }
}
