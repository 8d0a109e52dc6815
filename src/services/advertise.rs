//! The prefixes a node advertises for Services, as a pure function of the service CIDRs of the
//! `default` BGPConfiguration, the Services, their EndpointSlices and the node's name:
//!
//! - every configured CIDR (`serviceClusterIPs`, `serviceExternalIPs`, `serviceLoadBalancerIPs`)
//!   as an aggregate, from every node (`serviceLoadBalancerIPs` only while
//!   `serviceLoadBalancerAggregation` is not `Disabled`);
//! - a Service's address as a /32 (/128) only from nodes with a usable (ready and not
//!   terminating) endpoint of it on the node, when its traffic policy for that address is
//!   `Local`: `internalTrafficPolicy` for cluster IPs, `externalTrafficPolicy` for external and
//!   load-balancer IPs;
//! - with `serviceLoadBalancerAggregation: Disabled`, every load-balancer address of a
//!   `Cluster` Service as a /32 (/128) from every node (anycast);
//! - never an address outside the configured CIDRs of its use (Calico's rule).
//!
//! Communities: those of the `prefixAdvertisements` the prefix falls within, and for a Service's
//! own prefixes those of its `tortie.io/bgp-communities` annotation.

use crate::datastore::resources::{BgpConfiguration, CommunityValue, EndpointSlice, Service, parse_community};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// A Service's annotation with communities for its own prefixes: values (`aa:nn`, `aa:nn:mm`)
/// or names from the BGPConfiguration's `communities`, separated by commas.
pub const COMMUNITIES_ANNOTATION: &str = "tortie.io/bgp-communities";

/// The service CIDRs of a BGPConfiguration, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCidrs {
    pub cluster: Vec<IpNetwork>,
    pub external: Vec<IpNetwork>,
    pub load_balancer: Vec<IpNetwork>,
    /// `serviceLoadBalancerAggregation` is not `Disabled`.
    pub aggregate_load_balancers: bool,
}

impl ServiceCidrs {
    /// The CIDRs of `config` (the `default` BGPConfiguration; none without one).
    pub fn of(config: Option<&BgpConfiguration>) -> ServiceCidrs {
        let Some(c) = config else { return ServiceCidrs { aggregate_load_balancers: true, ..Default::default() } };
        let parse = |blocks: &[crate::datastore::resources::ServiceIpBlock]| {
            blocks.iter().filter_map(|b| b.cidr.parse::<IpNetwork>().ok()).map(canonical).collect()
        };
        ServiceCidrs {
            cluster: parse(&c.service_cluster_ips),
            external: parse(&c.service_external_ips),
            load_balancer: parse(&c.service_load_balancer_ips),
            aggregate_load_balancers: c.service_load_balancer_aggregation.as_deref() != Some("Disabled"),
        }
    }

    /// Every configured CIDR.
    pub fn all(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        self.cluster.iter().chain(&self.external).chain(&self.load_balancer).copied()
    }
}

/// `net` with its host bits cleared (`10.96.0.1/12` → `10.96.0.0/12`).
fn canonical(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

/// The host prefix of an address: /32 or /128.
pub fn host(address: IpAddr) -> IpNetwork {
    IpNetwork::from(address)
}

/// Which of a Service's addresses a prefix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Use {
    Cluster,
    External,
    LoadBalancer,
}

impl Use {
    fn name(self) -> &'static str {
        match self {
            Use::Cluster => "cluster IP",
            Use::External => "external IP",
            Use::LoadBalancer => "load-balancer IP",
        }
    }
}

/// Why a prefix is advertised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A configured CIDR, from every node.
    Cidr(Use),
    /// An address of Service `namespace/name` whose traffic policy is `Local`, from this node
    /// because it has a usable endpoint here.
    LocalEndpoint { service: String, address: Use },
    /// A load-balancer address of Service `namespace/name` with aggregation disabled.
    Unaggregated { service: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Cidr(Use::Cluster) => f.write_str("serviceClusterIPs CIDR"),
            Origin::Cidr(Use::External) => f.write_str("serviceExternalIPs CIDR"),
            Origin::Cidr(Use::LoadBalancer) => f.write_str("serviceLoadBalancerIPs CIDR"),
            Origin::LocalEndpoint { service, address } => {
                let policy = if *address == Use::Cluster { "internalTrafficPolicy" } else { "externalTrafficPolicy" };
                write!(f, "service {service} {}, {policy}=Local, endpoint on this node", address.name())
            }
            Origin::Unaggregated { service } => {
                write!(f, "service {service} load-balancer IP, serviceLoadBalancerAggregation=Disabled")
            }
        }
    }
}

/// One advertised prefix: why, and the communities it carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertised {
    pub origins: BTreeSet<Origin>,
    pub communities: BTreeSet<CommunityValue>,
}

/// Prefix → what is advertised for it; and the problems met (a bad annotation), each naming the
/// Service, the field and the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertisements {
    pub prefixes: BTreeMap<IpNetwork, Advertised>,
    pub problems: Vec<String>,
}

fn within(cidrs: &[IpNetwork], address: IpAddr) -> bool {
    cidrs.iter().any(|c| c.contains(address))
}

/// The Services (by `namespace/name`) with a usable endpoint on `node`, by their EndpointSlices
/// (a Service's slices are in its namespace and name it in their `kubernetes.io/service-name`
/// label; one usable endpoint in any of them is enough).
fn with_local_endpoint<'a>(
    slices: impl IntoIterator<Item = (&'a String, &'a EndpointSlice)>,
    node: &str,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, slice) in slices {
        let (Some((namespace, _)), Some(service)) = (name.split_once('/'), slice.service_name()) else { continue };
        let local = slice
            .endpoints
            .iter()
            .any(|e| e.usable() && e.node_name.as_deref() == Some(node) && !e.addresses.is_empty());
        if local {
            out.insert(format!("{namespace}/{service}"));
        }
    }
    out
}

/// The communities of a Service's annotation, names resolved through `config`.
fn annotated_communities(
    name: &str,
    service: &Service,
    config: Option<&BgpConfiguration>,
    problems: &mut Vec<String>,
) -> BTreeSet<CommunityValue> {
    let Some(text) = service.annotations.get(COMMUNITIES_ANNOTATION) else { return BTreeSet::new() };
    let mut out = BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let named = || {
            let names = config.map(|c| c.communities.as_slice()).unwrap_or_default();
            names.iter().find(|n| n.name == item).and_then(|n| parse_community(&n.value))
        };
        match parse_community(item).or_else(named) {
            Some(value) => {
                out.insert(value);
            }
            None => problems.push(format!(
                "Service {name}: annotation {COMMUNITIES_ANNOTATION}: {item:?} is neither aa:nn, aa:nn:mm nor a name in the BGPConfiguration's communities"
            )),
        }
    }
    out
}

/// The communities `prefixAdvertisements` give `prefix`.
fn configured_communities(config: Option<&BgpConfiguration>, prefix: IpNetwork) -> BTreeSet<CommunityValue> {
    let Some(c) = config else { return BTreeSet::new() };
    c.prefix_advertisements
        .iter()
        .filter(|a| {
            a.cidr.parse::<IpNetwork>().is_ok_and(|cidr| cidr.prefix() <= prefix.prefix() && cidr.contains(prefix.ip()))
        })
        .flat_map(|a| c.advertisement_values(a))
        .collect()
}

/// What `node` advertises for the Services (by `namespace/name`) and EndpointSlices (by
/// `namespace/name`) under the `default` BGPConfiguration `config`.
pub fn advertisements(
    config: Option<&BgpConfiguration>,
    services: &BTreeMap<String, Service>,
    slices: &BTreeMap<String, EndpointSlice>,
    node: &str,
) -> Advertisements {
    let cidrs = ServiceCidrs::of(config);
    let mut out = Advertisements::default();
    let mut add = |prefix: IpNetwork, origin: Origin, extra: &BTreeSet<CommunityValue>| {
        let entry = out.prefixes.entry(prefix).or_default();
        entry.origins.insert(origin);
        entry.communities.extend(extra.iter().copied());
    };
    let none = BTreeSet::new();
    // Without aggregation (Calico's rule) the load-balancer CIDRs go unannounced; only the
    // addresses in use are, below.
    let aggregated_load_balancers: &[IpNetwork] =
        if cidrs.aggregate_load_balancers { &cidrs.load_balancer } else { &[] };
    for (use_, list) in [
        (Use::Cluster, &cidrs.cluster[..]),
        (Use::External, &cidrs.external[..]),
        (Use::LoadBalancer, aggregated_load_balancers),
    ] {
        for cidr in list {
            add(*cidr, Origin::Cidr(use_), &none);
        }
    }
    let local = with_local_endpoint(slices, node);
    let mut problems = Vec::new();
    for (name, service) in services {
        // An ExternalName Service has no address of its own to route.
        if !matches!(service.service_type(), "ClusterIP" | "NodePort" | "LoadBalancer") {
            continue;
        }
        let communities = annotated_communities(name, service, config, &mut problems);
        let has_local = local.contains(name);
        let cluster = service.cluster_addresses();
        let external: Vec<IpAddr> = service.spec.external_ips.iter().filter_map(|a| a.parse().ok()).collect();
        let balanced: Vec<IpAddr> = if service.service_type() == "LoadBalancer" {
            service.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
        } else {
            Vec::new()
        };
        for (use_, addresses, allowed, local_policy) in [
            (Use::Cluster, &cluster, &cidrs.cluster, service.internal_local()),
            (Use::External, &external, &cidrs.external, service.external_local()),
            (Use::LoadBalancer, &balanced, &cidrs.load_balancer, service.external_local()),
        ] {
            for address in addresses.iter().copied().filter(|a| within(allowed, *a)) {
                let origin = if local_policy {
                    if !has_local {
                        continue;
                    }
                    Origin::LocalEndpoint { service: name.clone(), address: use_ }
                } else if use_ == Use::LoadBalancer && !cidrs.aggregate_load_balancers {
                    Origin::Unaggregated { service: name.clone() }
                } else {
                    continue;
                };
                add(host(address), origin, &communities);
            }
        }
    }
    for (prefix, advertised) in out.prefixes.iter_mut() {
        advertised.communities.extend(configured_communities(config, *prefix));
    }
    out.problems = problems;
    out
}

#[cfg(test)]
#[path = "advertise_tests.rs"]
mod tests;
