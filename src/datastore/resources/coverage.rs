//! Every field of every resource, and what becomes of it: it takes effect (in the file named,
//! which a test checks reads it), or it is accepted and reported as unsupported (with the reason;
//! see [`crate::datastore::unsupported`]). Invalid values are refused by the type or its `check`.
//! A field added to a resource without a line here fails `every_field_is_classified`, so none
//! can be accepted and silently ignored.

use super::super::Kind;

/// What becomes of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// It takes effect; the source file that reads it.
    Effect(&'static str),
    /// Accepted, and reported as having no effect, for this reason.
    Unsupported(&'static str),
    /// Accepted only at values that mean what tortie does; the check in this file refuses the
    /// others, naming field and value.
    Refused(&'static str),
}

use Coverage::{Effect, Refused, Unsupported};

/// The file that turns Services, EndpointSlices and the BGPConfiguration's service CIDRs into
/// the prefixes a node advertises.
const ADVERTISE: &str = "src/services/advertise.rs";
const LEASE: &str = "src/agent/lease.rs";
/// The file that turns the nodes' NodeStatus records into `tortie cluster status`.
const CLUSTER_VIEW: &str = "src/cli/cluster_view.rs";
const RULE_METADATA: &str = "annotations for people: kept, matching nothing";

/// (kind, field path in the spec with `[]` for list elements, coverage); a line for an object
/// covers its parts. An `Effect` file may name the Rust field after a `#` when it is not the
/// snake-case form of the last path step.
pub const FIELDS: &[(Kind, &str, Coverage)] = &[
    (Kind::IpPool, "cidr", Effect("src/ipam/pools.rs")),
    (Kind::IpPool, "blockSize", Effect("src/ipam/client.rs")),
    (Kind::IpPool, "ipipMode", Effect("src/agent/pools.rs")),
    (Kind::IpPool, "vxlanMode", Effect("src/agent/pools.rs")),
    (Kind::IpPool, "natOutgoing", Effect("src/agent/nat.rs")),
    (Kind::IpPool, "disabled", Effect("src/ipam/pools.rs")),
    (Kind::IpPool, "disableBGPExport", Effect("src/agent/bgp.rs")),
    (Kind::IpPool, "nodeSelector", Effect("src/ipam/pools.rs")),
    (Kind::IpPool, "namespaceSelector", Effect("src/ipam/pools.rs")),
    (Kind::IpPool, "allowedUses[]", Effect("src/ipam/pools.rs")),
    (Kind::IpPool, "assignmentMode", Effect("src/ipam/client.rs")),
    (Kind::IpReservation, "reservedCIDRs[]", Effect("src/ipam/client.rs#reserved_cidrs")),
    (
        Kind::IpamBlock,
        "attributes[].releasedAt",
        Unsupported("kept as Calico wrote it: tortie has no release cool-down, a released address is free at once"),
    ),
    (
        Kind::IpamBlock,
        "attributes[].alternateOwnerAttrs",
        Unsupported("kept as Calico wrote it: tortie does not move addresses between owners (KubeVirt live migration)"),
    ),
    (Kind::IpamBlock, "cidr", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamBlock, "affinity", Effect("src/ipam/claim.rs")),
    (Kind::IpamBlock, "affinityClaimTime", Effect("src/ipam/claim.rs")),
    (Kind::IpamBlock, "allocations[]", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamBlock, "unallocated[]", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamBlock, "attributes[].handle_id", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamBlock, "attributes[].secondary", Effect("src/agent/kubernetes/pod_gc.rs")),
    (Kind::IpamBlock, "sequenceNumber", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamBlock, "sequenceNumberForAllocation", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamBlock, "deleted", Effect("src/ipam/client.rs")),
    (
        Kind::IpamBlock,
        "strictAffinity",
        Unsupported("deprecated on the block in Calico; IPAMConfig strictAffinity decides"),
    ),
    (Kind::BlockAffinity, "cidr", Effect("src/ipam/check.rs")),
    (Kind::BlockAffinity, "node", Effect("src/ipam/claim.rs")),
    (Kind::BlockAffinity, "state", Effect("src/ipam/check.rs")),
    (Kind::BlockAffinity, "type", Refused("src/datastore/resources/ipam.rs#affinity_type")),
    (Kind::BlockAffinity, "deleted", Unsupported("Calico's soft-delete marker: tortie deletes affinities outright")),
    (Kind::IpamHandle, "handleID", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamHandle, "block", Effect("src/ipam/block_ops.rs")),
    (Kind::IpamHandle, "deleted", Unsupported("Calico's soft-delete marker: tortie deletes handles outright")),
    (Kind::IpamConfig, "strictAffinity", Effect("src/ipam/client.rs")),
    (Kind::IpamConfig, "autoAllocateBlocks", Effect("src/ipam/client.rs")),
    (Kind::IpamConfig, "maxBlocksPerHost", Effect("src/ipam/client.rs")),
    (Kind::Node, "labels", Effect("src/agent/bgp_peers.rs")),
    (Kind::Node, "bgp.ipv4Address", Effect("src/agent/bgp.rs")),
    (Kind::Node, "bgp.ipv6Address", Effect("src/agent/vteps.rs")),
    (Kind::Node, "bgp.asNumber", Effect("src/agent/bgp.rs")),
    (Kind::Node, "bgp.routeReflectorClusterID", Effect("src/agent/bgp.rs")),
    (Kind::Node, "bgp.ipv4IPIPTunnelAddr", Effect("src/agent/node.rs")),
    (Kind::Node, "ipv4VXLANTunnelAddr", Effect("src/agent/vteps.rs")),
    (Kind::Node, "vxlanTunnelMACAddr", Effect("src/agent/vteps.rs")),
    (Kind::Node, "ipv6VXLANTunnelAddr", Effect("src/agent/vteps.rs")),
    (Kind::Node, "vxlanTunnelMACAddrV6", Effect("src/agent/vteps.rs")),
    (Kind::BgpPeer, "node", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "nodeSelector", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "peerIP", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "peerSelector", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "asNumber", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "localASNumber", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "nextHopMode", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "maxRestartTime", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "keepaliveTime", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "sourceAddress", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "password", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "filters[]", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "keepOriginalNextHop", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "numAllowedLocalASNumbers", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "ttlSecurity", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.enabled", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.minTxInterval", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.minRxInterval", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.multiplier", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.multihop", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.passive", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "bfd.gracefulRestart", Effect("src/agent/bgp_peers.rs")),
    (Kind::BgpPeer, "reachableBy", Effect("src/agent/bgp_peers.rs#reachable_by")),
    (Kind::BgpPeer, "localWorkloadSelector", Refused("src/datastore/resources/bgp.rs")),
    (Kind::BgpPeer, "reversePeering", Refused("src/datastore/resources/bgp.rs")),
    // A node's report: read by `tortie cluster status`, which shows every field.
    (Kind::NodeStatus, "addresses[]", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "agentVersion", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "ready", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "notReadyReasons[]", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "updatedAt", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "updatePeriodSeconds", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "sessions[]", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "routes", Effect(CLUSTER_VIEW)),
    (Kind::NodeStatus, "podAddresses", Effect(CLUSTER_VIEW)),
    (Kind::BgpFilter, "exportV4", Effect("src/agent/bgp_filters.rs")),
    (Kind::BgpFilter, "exportV6", Effect("src/agent/bgp_filters.rs")),
    (Kind::BgpFilter, "importV4", Effect("src/agent/bgp_filters.rs")),
    (Kind::BgpFilter, "importV6", Effect("src/agent/bgp_filters.rs")),
    (Kind::BgpFilter, "exportV4[].interface", Refused("src/datastore/resources/bgp_filter.rs")),
    (Kind::BgpFilter, "exportV6[].interface", Refused("src/datastore/resources/bgp_filter.rs")),
    (Kind::BgpFilter, "importV4[].interface", Refused("src/datastore/resources/bgp_filter.rs")),
    (Kind::BgpFilter, "importV6[].interface", Refused("src/datastore/resources/bgp_filter.rs")),
    (Kind::Secret, "data", Effect("src/agent/secrets.rs")),
    (Kind::BgpConfiguration, "asNumber", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "nodeToNodeMeshEnabled", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "nodeMeshMaxRestartTime", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "nodeMeshPassword", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "listenPort", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "bindMode", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "logSeverityScreen", Effect("src/agent/bgp_config.rs")),
    (Kind::BgpConfiguration, "communities[].name", Effect("src/datastore/resources/bgp_configuration.rs#communities")),
    (Kind::BgpConfiguration, "communities[].value", Effect("src/datastore/resources/bgp_configuration.rs#communities")),
    (Kind::BgpConfiguration, "prefixAdvertisements[].cidr", Effect("src/agent/bgp_config.rs#prefix_advertisements")),
    (
        Kind::BgpConfiguration,
        "prefixAdvertisements[].communities[]",
        Effect("src/agent/bgp_config.rs#prefix_advertisements"),
    ),
    (
        Kind::BgpConfiguration,
        "ignoredInterfaces[]",
        Unsupported("tortie imports no interface routes (BIRD's direct protocol), so there is nothing to ignore"),
    ),
    (Kind::BgpConfiguration, "localWorkloadPeeringIPV4", Unsupported("pods cannot peer with their node")),
    (Kind::BgpConfiguration, "localWorkloadPeeringIPV6", Unsupported("pods cannot peer with their node")),
    (
        Kind::BgpConfiguration,
        "programClusterRoutes",
        Unsupported("tortie always programs the routes to every pool's blocks itself"),
    ),
    (Kind::BgpConfiguration, "ipv4NormalRoutePriority", Unsupported("tortie's routes have no priority")),
    (Kind::BgpConfiguration, "ipv6NormalRoutePriority", Unsupported("tortie's routes have no priority")),
    (Kind::BgpConfiguration, "serviceClusterIPs[].cidr", Effect(ADVERTISE)),
    (Kind::BgpConfiguration, "serviceExternalIPs[].cidr", Effect(ADVERTISE)),
    (Kind::BgpConfiguration, "serviceLoadBalancerIPs[].cidr", Effect(ADVERTISE)),
    (Kind::BgpConfiguration, "serviceLoadBalancerAggregation", Effect(ADVERTISE)),
    (Kind::NetworkPolicy, "ingress[].action", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].ipVersion", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].protocol", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].notProtocol", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].icmp.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::NetworkPolicy, "ingress[].icmp.code", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].notICMP.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::NetworkPolicy, "ingress[].notICMP.code", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].http", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "ingress[].metadata", Unsupported(RULE_METADATA)),
    (Kind::NetworkPolicy, "ingress[].source.nets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.selector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.notSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.ports[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.notPorts[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].source.serviceAccounts", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "ingress[].source.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.nets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.selector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.notSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.ports[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.notPorts[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.serviceAccounts", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "ingress[].destination.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "egress[].action", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].ipVersion", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].protocol", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].notProtocol", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].icmp.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::NetworkPolicy, "egress[].icmp.code", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].notICMP.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::NetworkPolicy, "egress[].notICMP.code", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].http", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "egress[].metadata", Unsupported(RULE_METADATA)),
    (Kind::NetworkPolicy, "egress[].source.nets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.selector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.notSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.ports[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.notPorts[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].source.serviceAccounts", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "egress[].source.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "egress[].destination.nets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.selector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.notSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.ports[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.notPorts[]", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "egress[].destination.serviceAccounts", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "egress[].destination.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::NetworkPolicy, "order", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "selector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "serviceAccountSelector", Effect("src/policy/calico.rs")),
    (Kind::NetworkPolicy, "types[]", Effect("src/datastore/resources/network_policy.rs")),
    (Kind::NetworkPolicy, "tier", Refused("src/datastore/resources/network_policy.rs")),
    (
        Kind::NetworkPolicy,
        "performanceHints[]",
        Unsupported("a hint for Calico's own dataplane; tortie programs every policy the same way"),
    ),
    (Kind::GlobalNetworkPolicy, "ingress[].action", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].ipVersion", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].protocol", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].notProtocol", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].icmp.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::GlobalNetworkPolicy, "ingress[].icmp.code", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].notICMP.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::GlobalNetworkPolicy, "ingress[].notICMP.code", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].http", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].metadata", Unsupported(RULE_METADATA)),
    (Kind::GlobalNetworkPolicy, "ingress[].source.nets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.selector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.notSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.ports[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.notPorts[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.serviceAccounts", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].source.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.nets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.selector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.notSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.ports[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.notPorts[]", Effect("src/policy/calico.rs")),
    (
        Kind::GlobalNetworkPolicy,
        "ingress[].destination.serviceAccounts",
        Refused("src/datastore/resources/policy_rule.rs"),
    ),
    (Kind::GlobalNetworkPolicy, "ingress[].destination.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].action", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].ipVersion", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].protocol", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].notProtocol", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].icmp.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::GlobalNetworkPolicy, "egress[].icmp.code", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].notICMP.type", Effect("src/policy/calico.rs#icmp_type")),
    (Kind::GlobalNetworkPolicy, "egress[].notICMP.code", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].http", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].metadata", Unsupported(RULE_METADATA)),
    (Kind::GlobalNetworkPolicy, "egress[].source.nets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.selector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.notSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.ports[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.notPorts[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.serviceAccounts", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].source.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.nets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.notNets[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.selector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.notSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.ports[]", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "egress[].destination.notPorts[]", Effect("src/policy/calico.rs")),
    (
        Kind::GlobalNetworkPolicy,
        "egress[].destination.serviceAccounts",
        Refused("src/datastore/resources/policy_rule.rs"),
    ),
    (Kind::GlobalNetworkPolicy, "egress[].destination.services", Refused("src/datastore/resources/policy_rule.rs")),
    (Kind::GlobalNetworkPolicy, "order", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "selector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "serviceAccountSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "types[]", Effect("src/datastore/resources/network_policy.rs")),
    (Kind::GlobalNetworkPolicy, "tier", Refused("src/datastore/resources/network_policy.rs")),
    (
        Kind::GlobalNetworkPolicy,
        "performanceHints[]",
        Unsupported("a hint for Calico's own dataplane; tortie programs every policy the same way"),
    ),
    (Kind::GlobalNetworkPolicy, "namespaceSelector", Effect("src/policy/calico.rs")),
    (Kind::GlobalNetworkPolicy, "doNotTrack", Refused("src/datastore/resources/network_policy.rs")),
    (Kind::GlobalNetworkPolicy, "preDNAT", Refused("src/datastore/resources/network_policy.rs")),
    (Kind::GlobalNetworkPolicy, "applyOnForward", Refused("src/datastore/resources/network_policy.rs")),
    (Kind::KubeNetworkPolicy, "podSelector", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "policyTypes[]", Effect("src/policy/kube.rs#effective_types")),
    (Kind::KubeNetworkPolicy, "ingress[].from[].podSelector", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "ingress[].from[].namespaceSelector", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "ingress[].from[].ipBlock.cidr", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "ingress[].from[].ipBlock.except[]", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "ingress[].ports[].port", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "ingress[].ports[].endPort", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "ingress[].ports[].protocol", Effect("src/policy/kube.rs#protocol_number")),
    (Kind::KubeNetworkPolicy, "egress[].to[].podSelector", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "egress[].to[].namespaceSelector", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "egress[].to[].ipBlock.cidr", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "egress[].to[].ipBlock.except[]", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "egress[].ports[].port", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "egress[].ports[].endPort", Effect("src/policy/kube.rs")),
    (Kind::KubeNetworkPolicy, "egress[].ports[].protocol", Effect("src/policy/kube.rs#protocol_number")),
    (Kind::Namespace, "labels", Effect("src/policy/model.rs")),
    (Kind::Namespace, "annotations", Effect("src/agent/workloads.rs")),
    (Kind::Service, "annotations", Effect(ADVERTISE)),
    (
        Kind::Service,
        "annotations[projectcalico.org/loadBalancerIPs]",
        Effect("src/services/load_balancer.rs#annotations"),
    ),
    (Kind::Service, "spec.type", Effect("src/services/advertise.rs#service_type")),
    (Kind::Service, "spec.clusterIP", Effect("src/services/advertise.rs#cluster_addresses")),
    (Kind::Service, "spec.clusterIPs[]", Effect("src/services/advertise.rs#cluster_addresses")),
    (Kind::Service, "spec.externalIPs[]", Effect("src/services/advertise.rs#external_ips")),
    (Kind::Service, "spec.loadBalancerIP", Effect("src/services/load_balancer.rs")),
    (Kind::Service, "spec.loadBalancerClass", Effect("src/datastore/resources/service.rs")),
    (Kind::Service, "spec.externalTrafficPolicy", Effect("src/services/advertise.rs#external_local")),
    (Kind::Service, "spec.internalTrafficPolicy", Effect("src/services/advertise.rs#internal_local")),
    (Kind::Service, "status.loadBalancer.ingress[].ip", Effect(ADVERTISE)),
    (Kind::EndpointSlice, "labels", Effect("src/services/advertise.rs#service_name")),
    (Kind::EndpointSlice, "endpoints[].addresses[]", Effect(ADVERTISE)),
    (Kind::EndpointSlice, "endpoints[].conditions.ready", Effect("src/services/advertise.rs#usable")),
    (Kind::EndpointSlice, "endpoints[].conditions.terminating", Effect("src/services/advertise.rs#usable")),
    (Kind::EndpointSlice, "endpoints[].nodeName", Effect(ADVERTISE)),
    (Kind::Lease, "holderIdentity", Effect(LEASE)),
    (Kind::Lease, "leaseDurationSeconds", Effect(LEASE)),
    (Kind::Lease, "leaseTransitions", Effect(LEASE)),
    (Kind::Lease, "acquireTime", Effect(LEASE)),
    (Kind::Lease, "renewTime", Effect(LEASE)),
];

/// Fields of Kubernetes' own objects that tortie's records of them do not hold, and why: they are
/// dropped when the object is read (`kube_projection`), neither refused nor reported, because
/// they configure Kubernetes or another component (the service proxy), not tortie.
pub const NOT_READ: &[(Kind, &str, &str)] = &[
    (
        Kind::Service,
        "spec.ports, spec.selector, spec.sessionAffinity*",
        "the service proxy's: tortie routes addresses, not ports",
    ),
    (Kind::Service, "spec.ipFamilies, spec.ipFamilyPolicy", "the families follow from the addresses themselves"),
    (Kind::Service, "spec.externalName", "a DNS name: no address to advertise"),
    (Kind::Service, "spec.healthCheckNodePort, spec.loadBalancerSourceRanges", "the service proxy's"),
    (Kind::Service, "spec.allocateLoadBalancerNodePorts", "for load-balancer controllers"),
    (Kind::Service, "spec.publishNotReadyAddresses, spec.trafficDistribution", "for DNS and the service proxy"),
    (
        Kind::Service,
        "status.loadBalancer.ingress[].hostname, .ipMode, .ports; status.conditions",
        "no address tortie routes",
    ),
    (Kind::EndpointSlice, "addressType, ports", "the addresses' own family; ports are the proxy's"),
    (
        Kind::EndpointSlice,
        "endpoints[].conditions.serving",
        "ready already means serving and not terminating; a terminating endpoint is not advertised",
    ),
    (Kind::EndpointSlice, "endpoints[].hostname, targetRef, zone, hints", "for DNS and topology-aware routing"),
];

/// The fields of `kind` that are accepted without effect: (path, reason).
pub fn unsupported(kind: Kind) -> Vec<(&'static str, &'static str)> {
    FIELDS
        .iter()
        .filter_map(|(k, path, c)| match c {
            Unsupported(reason) if *k == kind => Some((*path, *reason)),
            _ => None,
        })
        .collect()
}

/// The leaf field paths of a JSON schema (sub-schemas inlined): objects are walked through
/// `properties`, lists get `[]`, maps with free keys and scalars are leaves.
pub fn schema_leaves(schema: &serde_json::Value) -> Vec<String> {
    fn walk(node: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        let branches: Vec<&serde_json::Value> = ["anyOf", "oneOf", "allOf"]
            .iter()
            .filter_map(|k| node.get(*k)?.as_array())
            .flatten()
            .filter(|b| b.get("type").and_then(|t| t.as_str()) != Some("null"))
            .collect();
        if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in props {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                walk(child, &path, out);
            }
        } else if let Some(items) = node.get("items") {
            walk(items, &format!("{prefix}[]"), out);
        } else if !branches.is_empty() && branches.iter().any(|b| b.get("properties").is_some()) {
            for b in branches {
                walk(b, prefix, out);
            }
        } else if !prefix.is_empty() && !out.iter().any(|p| p == prefix) {
            out.push(prefix.to_string());
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

/// `R`'s JSON schema with every sub-schema inlined.
pub fn schema_of<R: schemars::JsonSchema>() -> serde_json::Value {
    let generator =
        schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator();
    generator.into_root_schema_for::<R>().to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::*;

    /// Every kind's schema leaves.
    fn leaves() -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        let mut add = |kind: Kind, schema: serde_json::Value| {
            out.extend(schema_leaves(&schema).into_iter().map(|p| (kind, p)));
        };
        add(Kind::IpPool, schema_of::<IpPool>());
        add(Kind::IpamBlock, schema_of::<IpamBlock>());
        add(Kind::BlockAffinity, schema_of::<BlockAffinity>());
        add(Kind::IpamHandle, schema_of::<IpamHandle>());
        add(Kind::IpamConfig, schema_of::<IpamConfig>());
        add(Kind::IpReservation, schema_of::<IpReservation>());
        add(Kind::Node, schema_of::<Node>());
        add(Kind::BgpPeer, schema_of::<BgpPeer>());
        add(Kind::BgpConfiguration, schema_of::<BgpConfiguration>());
        add(Kind::BgpFilter, schema_of::<BgpFilter>());
        add(Kind::Secret, schema_of::<Secret>());
        add(Kind::NetworkPolicy, schema_of::<NetworkPolicy>());
        add(Kind::GlobalNetworkPolicy, schema_of::<GlobalNetworkPolicy>());
        add(Kind::KubeNetworkPolicy, schema_of::<KubeNetworkPolicy>());
        add(Kind::Namespace, schema_of::<Namespace>());
        add(Kind::Service, schema_of::<Service>());
        add(Kind::EndpointSlice, schema_of::<EndpointSlice>());
        add(Kind::Lease, schema_of::<Lease>());
        add(Kind::NodeStatus, schema_of::<NodeStatus>());
        out
    }

    /// The Rust field name of a wire name: snake case, acronyms kept whole (`peerIP` → `peer_ip`).
    fn snake(wire: &str) -> String {
        let chars: Vec<char> = wire.chars().collect();
        let mut out = String::new();
        for (i, c) in chars.iter().enumerate() {
            if c.is_ascii_uppercase() {
                let prev = if i > 0 { chars[i - 1] } else { ' ' };
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                if i > 0
                    && (prev.is_ascii_lowercase()
                        || prev.is_ascii_digit()
                        || (prev.is_ascii_uppercase() && next.is_ascii_lowercase()))
                {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(*c);
            }
        }
        out
    }

    #[test]
    fn each_effect_is_in_a_file_that_reads_the_field() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut wrong = Vec::new();
        for (kind, path, coverage) in FIELDS {
            let (Effect(file) | Refused(file)) = coverage else { continue };
            let (file, ident) = match file.split_once('#') {
                Some((f, i)) => (f, i.to_string()),
                None => (*file, snake(path.rsplit('.').next().unwrap_or(path).trim_end_matches("[]"))),
            };
            let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            let reads = text
                .match_indices(&format!(".{ident}"))
                .any(|(at, m)| !text[at + m.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
            if !reads {
                wrong.push(format!("{kind:?} {path}: {file} does not read .{ident}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// A line for a field covers it and, for an object such as a secret reference, its parts.
    fn covers(line: &str, leaf: &str) -> bool {
        leaf == line || leaf.strip_prefix(line).is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
    }

    #[test]
    fn every_field_is_classified() {
        let missing: Vec<String> = leaves()
            .into_iter()
            .filter(|(k, p)| !FIELDS.iter().any(|(fk, fp, _)| fk == k && covers(fp, p)))
            .map(|(k, p)| format!("    (Kind::{k:?}, \"{p}\", Effect(\"\")),"))
            .collect();
        assert!(missing.is_empty(), "fields without a line in FIELDS:\n{}", missing.join("\n"));
    }
}
