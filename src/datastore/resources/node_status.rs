//! A node's own report of its state (like Calico's CalicoNodeStatus): its BGP sessions, readiness,
//! version and route counts. Each agent writes only its own, named after the node
//! (`agent::node_status`); `tortie cluster status` reads them all. It configures nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// The node's addresses its peers reach it at (IPv4, IPv6), so a reader can tell which
    /// node a session's peer address belongs to.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The version of the agent that wrote it.
    pub agent_version: String,
    pub ready: bool,
    /// Why the agent is not ready; empty when ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready_reasons: Vec<String>,
    /// Unix time (seconds) of the write.
    pub updated_at: u64,
    /// The agent rewrites an unchanged status this often (seconds): a status older than a few
    /// periods is stale (the agent is gone or cannot write).
    pub update_period_seconds: u32,
    #[serde(default)]
    pub sessions: Vec<BgpSessionStatus>,
    /// Kernel routes the agent wants, by kind (`local_workload`, `blackhole`, `remote_direct`,
    /// `remote_ipip`, `remote_vxlan`, `peer_reachability`).
    #[serde(default)]
    pub routes: BTreeMap<String, u64>,
    /// The pod addresses on this node (one host route each).
    #[serde(default)]
    pub pod_addresses: u64,
}

/// One BGP session as the node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpSessionStatus {
    /// The peer's address.
    pub peer: String,
    /// `node-to-node mesh`, `global` or `node specific`.
    #[serde(rename = "type")]
    pub peer_type: String,
    /// RFC 4271 state in lower case: idle, connect, active, opensent, openconfirm, established.
    pub state: String,
    /// Unix time (seconds) of the last state change.
    pub since: u64,
    /// The last error sent or received, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub info: String,
    pub prefixes_received: u64,
    pub prefixes_advertised: u64,
    /// The peer's BFD session state (admindown, down, init, up); absent without BFD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<String>,
    /// The path toward the peer node's blocks: `direct`, `ipip`, `ipip-userspace` or `vxlan`.
    pub path: String,
}

impl NodeStatus {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.update_period_seconds == 0 {
            return Err("updatePeriodSeconds: 0 is not a period; it must be at least 1".into());
        }
        Ok(())
    }

    /// Whether it is stale at `now` (unix seconds): not rewritten for more than
    /// [`STALE_PERIODS`] periods.
    pub fn is_stale(&self, now: u64) -> bool {
        now.saturating_sub(self.updated_at) > u64::from(self.update_period_seconds) * STALE_PERIODS
    }

    /// The same report apart from when it was written: what decides whether a write is due.
    pub fn same_content(&self, other: &NodeStatus) -> bool {
        NodeStatus { updated_at: 0, ..self.clone() } == NodeStatus { updated_at: 0, ..other.clone() }
    }

    /// The sessions' states by peer: a change of these is written at once.
    pub fn session_states(&self) -> BTreeMap<&str, &str> {
        self.sessions.iter().map(|s| (s.peer.as_str(), s.state.as_str())).collect()
    }
}

/// How many update periods a status may go without a rewrite before it is stale.
pub const STALE_PERIODS: u64 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_three_periods() {
        let s = NodeStatus { updated_at: 1000, update_period_seconds: 10, ..Default::default() };
        assert!(!s.is_stale(1030));
        assert!(s.is_stale(1031));
        assert!(!s.is_stale(900), "a clock behind the writer's is not staleness");
    }

    #[test]
    fn a_zero_period_is_refused_naming_the_field() {
        let err = NodeStatus::default().check().unwrap_err();
        assert!(err.starts_with("updatePeriodSeconds: "), "{err}");
    }
}
