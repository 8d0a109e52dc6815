//! What the RIB shows: routes with their best/ECMP state and loss reasons,
//! and counters, for `tortie bgp routes`, the API and metrics.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// One path of one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub prefix: IpNetwork,
    /// The peer it came from; `None` for our own origination.
    pub peer: Option<IpAddr>,
    /// `None` for our own origination (each peer gets our session address).
    pub next_hop: Option<IpAddr>,
    pub best: bool,
    /// Member of the ECMP multipath set.
    pub multipath: bool,
    /// Why it is not the best (for a multipath member that is not the best,
    /// the tie-break that put it after the best); `None` for the best.
    pub reason: Option<String>,
    pub as_path: String,
    pub origin: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator_id: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_list: Vec<Ipv4Addr>,
    /// Kept for a restarting peer (RFC 4724) until it sends the route again.
    pub stale: bool,
    /// Why we originate it, when the agent knows more than "own prefix" (a service address:
    /// `agent::services`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_of_own: Option<String>,
    /// The ADD-PATH path identifier (RFC 7911) the peer sent it under; absent when the session
    /// does not receive ADD-PATH for the family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_id: Option<u32>,
}

/// Counters of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRibStats {
    /// Prefixes the peer announces now (accepted or not).
    pub received: u64,
    /// Of those, the ones import accepted (in its Adj-RIB-In).
    pub accepted: u64,
    /// Prefixes in its Adj-RIB-Out.
    pub advertised: u64,
    pub updates_received: u64,
    pub withdraws_received: u64,
    /// UPDATEs handled as withdrawals (RFC 7606).
    pub treat_as_withdraw: u64,
    /// UPDATEs with an attribute discarded (RFC 7606).
    pub attribute_discard: u64,
}

/// The RIB's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RibStats {
    pub loc_rib_prefixes: u64,
    pub paths: u64,
    /// Distinct interned attribute sets.
    #[serde(default)]
    pub attribute_sets: u64,
    /// Prefixes whose best-path change the dataplane has not taken yet.
    #[serde(default)]
    pub changes_pending: u64,
    pub per_peer: BTreeMap<IpAddr, PeerRibStats>,
}

/// The whole RIB.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RibSnapshot {
    pub routes: Vec<RouteView>,
    pub stats: RibStats,
}
