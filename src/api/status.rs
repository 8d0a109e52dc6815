//! The status report served at `GET /v1/status` (schema: docs/status-json.md).

use serde::{Deserialize, Serialize};

/// The agent's state as `tortie status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    pub version: String,
    /// Unix time (seconds) the agent started.
    pub started_at: u64,
    /// True once the dataplane has synced and BGP is up (see /readyz).
    pub ready: bool,
    /// Why the agent is not ready; empty when ready.
    pub not_ready_reasons: Vec<String>,
    /// How this node encapsulates IP-in-IP: `ipip-kernel` (tunl0) or
    /// `ipip-userspace` (the kernel has no ipip).
    pub ipip_mode: String,
    pub peers: Vec<PeerStatus>,
    /// The path toward each remote node whose blocks can be encapsulated
    /// (with or without BGP), by node address; other nodes are reached directly.
    #[serde(default)]
    pub paths: Vec<NodePath>,
    /// Fields of stored resources that have no effect in tortie (`datastore::unsupported`).
    #[serde(default)]
    pub unsupported_fields: Vec<UnsupportedField>,
    /// The CIDRs of the pools whose pods' traffic leaving the cluster is masqueraded.
    #[serde(default)]
    pub nat_outgoing_pools: Vec<String>,
    /// Why tortie's nftables table could not be written, until it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_error: Option<String>,
    /// Network policies the agent skips (the others apply), and why.
    #[serde(default)]
    pub invalid_policies: Vec<InvalidPolicy>,
}

/// A network policy from the datastore that the agent skips: it does not decode, does not
/// convert to the policy model, or nftables refuses its rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InvalidPolicy {
    /// `NetworkPolicy`, `GlobalNetworkPolicy` or `KubernetesNetworkPolicy`.
    pub kind: String,
    /// `namespace/name` for the namespaced kinds.
    pub name: String,
    pub reason: String,
}

/// One field of one stored resource that has no effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsupportedField {
    /// Calico's kind name: `BGPConfiguration`, `IPPool`, ...
    pub kind: String,
    pub name: String,
    pub field: String,
    pub reason: String,
}

/// The path toward one remote node's blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePath {
    pub node: String,
    /// `direct`, `ipip`, `ipip-userspace` or `vxlan`.
    pub path: String,
}

/// One BGP peer, with Calico's `calicoctl node status` columns and more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: String,
    pub as_number: u32,
    /// `node-to-node mesh`, `global` or `node specific` (Calico's names).
    #[serde(rename = "type")]
    pub peer_type: String,
    /// RFC 4271 state in lower case: idle, connect, active, opensent, openconfirm, established.
    pub state: String,
    /// Unix time (seconds) of the last state change.
    pub since: u64,
    /// Last error sent or received, if any.
    pub info: String,
    pub prefixes_received: u64,
    pub prefixes_advertised: u64,
    /// `direct`, `ipip`, `ipip-userspace` or `vxlan`: the path toward the peer node's blocks.
    pub tunnel_mode: String,
    /// Negotiated hold time and keepalive interval (seconds); absent until Established.
    #[serde(default)]
    pub hold_time: Option<u16>,
    #[serde(default)]
    pub keepalive: Option<u16>,
    /// Unix time (seconds) the session last reached Established.
    #[serde(default)]
    pub established_at: Option<u64>,
    /// Established sessions that went down.
    #[serde(default)]
    pub flaps: u64,
    /// The peer's BFD session state in lower case (admindown, down, init,
    /// up); absent when the peer has no BFD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<String>,
}
