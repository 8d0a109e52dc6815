//! `tortie cluster status` from the nodes' NodeStatus records: one row per node, the sessions
//! the two ends disagree on (asymmetric), and the records their agent stopped rewriting (stale).
//! Pure: the records and the time in, the view and its text out.

use super::table;
use crate::datastore::resources::{BgpSessionStatus, NodeStatus, STALE_PERIODS};
use serde::Serialize;
use std::collections::BTreeMap;

/// The state of an established session.
const ESTABLISHED: &str = "established";

/// Every node at once, as printed by `-o json|yaml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    pub nodes: Vec<NodeRow>,
    /// Sessions one end sees Established and the other does not.
    pub asymmetric: Vec<Asymmetry>,
    /// Nodes whose record was not rewritten for more than [`STALE_PERIODS`] update periods.
    pub stale: Vec<String>,
    /// Records that could not be read, each with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// One node's record, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub ready: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ready_reasons: Vec<String>,
    pub version: String,
    pub sessions_up: usize,
    pub sessions_total: usize,
    /// Unix time (seconds) of the record's last write.
    pub updated_at: u64,
    pub update_period_seconds: u32,
    pub stale: bool,
    pub addresses: Vec<String>,
    pub pod_addresses: u64,
    pub routes: BTreeMap<String, u64>,
    pub sessions: Vec<BgpSessionStatus>,
}

/// A session node `node` sees Established with `peer` (node `peer_node`), which the peer does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asymmetry {
    pub node: String,
    pub peer: String,
    pub peer_node: String,
    /// The peer node's session state toward `node`; absent when it has no session to it.
    pub peer_state: Option<String>,
}

/// The view of `records` (node name, record) at `now` (unix seconds).
pub fn view(records: &[(String, NodeStatus)], unreadable: Vec<String>, now: u64) -> ClusterView {
    let mut records: Vec<&(String, NodeStatus)> = records.iter().collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let owner: BTreeMap<&str, &str> =
        records.iter().flat_map(|(name, s)| s.addresses.iter().map(move |a| (a.as_str(), name.as_str()))).collect();
    let mut asymmetric = Vec::new();
    for (name, status) in &records {
        for session in status.sessions.iter().filter(|s| s.state == ESTABLISHED) {
            let Some(peer_node) = owner.get(session.peer.as_str()) else { continue };
            let Some((_, peer_status)) = records.iter().find(|(n, _)| n == peer_node) else { continue };
            let back = peer_status.sessions.iter().find(|s| status.addresses.contains(&s.peer));
            if back.is_some_and(|s| s.state == ESTABLISHED) {
                continue;
            }
            asymmetric.push(Asymmetry {
                node: name.clone(),
                peer: session.peer.clone(),
                peer_node: peer_node.to_string(),
                peer_state: back.map(|s| s.state.clone()),
            });
        }
    }
    let nodes: Vec<NodeRow> = records
        .iter()
        .map(|(name, s)| NodeRow {
            node: name.clone(),
            ready: s.ready,
            not_ready_reasons: s.not_ready_reasons.clone(),
            version: s.agent_version.clone(),
            sessions_up: s.sessions.iter().filter(|x| x.state == ESTABLISHED).count(),
            sessions_total: s.sessions.len(),
            updated_at: s.updated_at,
            update_period_seconds: s.update_period_seconds,
            stale: s.is_stale(now),
            addresses: s.addresses.clone(),
            pod_addresses: s.pod_addresses,
            routes: s.routes.clone(),
            sessions: s.sessions.clone(),
        })
        .collect();
    let stale = nodes.iter().filter(|n| n.stale).map(|n| n.node.clone()).collect();
    ClusterView { nodes, asymmetric, stale, unreadable }
}

impl ClusterView {
    /// Whether every node is ready, fresh, and agrees with its peers on every session.
    pub fn healthy(&self) -> bool {
        self.nodes.iter().all(|n| n.ready)
            && self.asymmetric.is_empty()
            && self.stale.is_empty()
            && self.unreadable.is_empty()
    }
}

/// The table (`wide`: with addresses, pod addresses, routes and why not ready).
pub fn render(v: &ClusterView, now: u64, wide: bool) -> String {
    let mut headers = vec!["NODE", "READY", "VERSION", "SESSIONS", "UPDATED"];
    if wide {
        headers.extend(["ADDRESSES", "PODS", "ROUTES", "NOT READY BECAUSE"]);
    }
    let rows: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| {
            let updated = table::since(n.updated_at, now);
            let mut row = vec![
                n.node.clone(),
                if n.ready { "yes" } else { "no" }.to_string(),
                n.version.clone(),
                format!("{}/{}", n.sessions_up, n.sessions_total),
                if n.stale { format!("{updated} (stale)") } else { updated },
            ];
            if wide {
                let routes: Vec<String> = n.routes.iter().map(|(k, c)| format!("{k}={c}")).collect();
                row.extend([
                    n.addresses.join(","),
                    n.pod_addresses.to_string(),
                    routes.join(" "),
                    n.not_ready_reasons.join("; "),
                ]);
            }
            row
        })
        .collect();
    let mut out = if rows.is_empty() {
        "No node has published its status.\n".to_string()
    } else {
        table::render(&headers, &rows)
    };
    if v.asymmetric.is_empty() {
        out.push_str("No asymmetric sessions.\n");
    } else {
        out.push_str("Asymmetric sessions (one end Established, the other not):\n");
        let rows: Vec<Vec<String>> = v
            .asymmetric
            .iter()
            .map(|a| {
                let back = a.peer_state.clone().unwrap_or_else(|| "no session".into());
                vec![a.node.clone(), a.peer.clone(), a.peer_node.clone(), back]
            })
            .collect();
        out.push_str(&table::render(&["NODE (ESTABLISHED)", "PEER", "PEER NODE", "PEER NODE SEES"], &rows));
    }
    if !v.stale.is_empty() {
        out.push_str(&format!(
            "Stale (not rewritten for more than {STALE_PERIODS} update periods): {}\n",
            v.stale.join(", ")
        ));
    }
    for problem in &v.unreadable {
        out.push_str(&format!("Unreadable: {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06T14:10:40Z.
    const NOW: u64 = 1_796_566_240;

    fn session(peer: &str, state: &str) -> BgpSessionStatus {
        BgpSessionStatus {
            peer: peer.into(),
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: NOW - 600,
            info: String::new(),
            prefixes_received: 1,
            prefixes_advertised: 1,
            bfd: None,
            path: "direct".into(),
        }
    }

    fn node(address: &str, sessions: Vec<BgpSessionStatus>, updated_at: u64) -> NodeStatus {
        NodeStatus {
            addresses: vec![address.into()],
            agent_version: "0.9.0".into(),
            ready: true,
            not_ready_reasons: vec![],
            updated_at,
            update_period_seconds: 10,
            sessions,
            routes: [("blackhole".to_string(), 1), ("remote_direct".to_string(), 2)].into_iter().collect(),
            pod_addresses: 2,
        }
    }

    /// node1 sees node2 up, node2 sees node1 down; node3 has no session to node1, which sees it
    /// up; node3's record is stale.
    fn cluster() -> Vec<(String, NodeStatus)> {
        let mut n2 = node("10.0.0.2", vec![session("10.0.0.1", "active"), session("10.0.0.3", ESTABLISHED)], NOW - 5);
        n2.ready = false;
        n2.not_ready_reasons = vec!["BGP peer 10.0.0.1 is active".into()];
        vec![
            ("node3".into(), node("10.0.0.3", vec![session("10.0.0.2", ESTABLISHED)], NOW - 31)),
            (
                "node1".into(),
                node("10.0.0.1", vec![session("10.0.0.2", ESTABLISHED), session("10.0.0.3", ESTABLISHED)], NOW - 2),
            ),
            ("node2".into(), n2),
        ]
    }

    #[test]
    fn asymmetric_sessions_and_stale_records_are_found() {
        let v = view(&cluster(), vec![], NOW);
        assert_eq!(v.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["node1", "node2", "node3"]);
        assert_eq!(
            v.asymmetric,
            [
                Asymmetry {
                    node: "node1".into(),
                    peer: "10.0.0.2".into(),
                    peer_node: "node2".into(),
                    peer_state: Some("active".into())
                },
                Asymmetry {
                    node: "node1".into(),
                    peer: "10.0.0.3".into(),
                    peer_node: "node3".into(),
                    peer_state: None
                },
            ]
        );
        assert_eq!(v.stale, ["node3"]);
        assert!(!v.healthy());
    }

    #[test]
    fn symmetric_fresh_ready_nodes_are_healthy() {
        let records = vec![
            ("a".to_string(), node("10.0.0.1", vec![session("10.0.0.2", ESTABLISHED)], NOW)),
            ("b".to_string(), node("10.0.0.2", vec![session("10.0.0.1", ESTABLISHED)], NOW)),
            // A session to a router that publishes no status is nobody's to contradict.
            ("c".to_string(), node("10.0.0.3", vec![session("192.0.2.1", ESTABLISHED)], NOW)),
        ];
        let v = view(&records, vec![], NOW);
        assert!(v.healthy(), "{v:?}");
        assert_eq!(render(&v, NOW, false).lines().last(), Some("No asymmetric sessions."));
    }

    #[test]
    fn golden_table() {
        let expected = "\
+-------+-------+---------+----------+------------------+
| NODE  | READY | VERSION | SESSIONS |     UPDATED      |
+-------+-------+---------+----------+------------------+
| node1 | yes   | 0.9.0   | 2/2      | 14:10:38         |
| node2 | no    | 0.9.0   | 1/2      | 14:10:35         |
| node3 | yes   | 0.9.0   | 1/1      | 14:10:09 (stale) |
+-------+-------+---------+----------+------------------+
Asymmetric sessions (one end Established, the other not):
+--------------------+----------+-----------+----------------+
| NODE (ESTABLISHED) |   PEER   | PEER NODE | PEER NODE SEES |
+--------------------+----------+-----------+----------------+
| node1              | 10.0.0.2 | node2     | active         |
| node1              | 10.0.0.3 | node3     | no session     |
+--------------------+----------+-----------+----------------+
Stale (not rewritten for more than 3 update periods): node3
";
        assert_eq!(render(&view(&cluster(), vec![], NOW), NOW, false), expected);
    }

    #[test]
    fn golden_wide() {
        let expected = "\
+-------+-------+---------+----------+------------------+-----------+------+-----------------------------+-----------------------------+
| NODE  | READY | VERSION | SESSIONS |     UPDATED      | ADDRESSES | PODS |           ROUTES            |      NOT READY BECAUSE      |
+-------+-------+---------+----------+------------------+-----------+------+-----------------------------+-----------------------------+
| node1 | yes   | 0.9.0   | 2/2      | 14:10:38         | 10.0.0.1  | 2    | blackhole=1 remote_direct=2 |                             |
| node2 | no    | 0.9.0   | 1/2      | 14:10:35         | 10.0.0.2  | 2    | blackhole=1 remote_direct=2 | BGP peer 10.0.0.1 is active |
| node3 | yes   | 0.9.0   | 1/1      | 14:10:09 (stale) | 10.0.0.3  | 2    | blackhole=1 remote_direct=2 |                             |
+-------+-------+---------+----------+------------------+-----------+------+-----------------------------+-----------------------------+
";
        let out = render(&view(&cluster(), vec![], NOW), NOW, true);
        assert!(out.starts_with(expected), "{out}");
    }

    #[test]
    fn golden_json_and_yaml() {
        let records = vec![
            ("a".to_string(), node("10.0.0.1", vec![session("10.0.0.2", ESTABLISHED)], NOW)),
            ("b".to_string(), node("10.0.0.2", vec![], NOW - 100)),
        ];
        let v = view(&records, vec![], NOW);
        let json = serde_json::to_value(&v).unwrap();
        let expected = serde_json::json!({
            "nodes": [
                {"node": "a", "ready": true, "version": "0.9.0", "sessions_up": 1, "sessions_total": 1,
                 "updated_at": NOW, "update_period_seconds": 10, "stale": false, "addresses": ["10.0.0.1"],
                 "pod_addresses": 2, "routes": {"blackhole": 1, "remote_direct": 2},
                 "sessions": [{"peer": "10.0.0.2", "type": "node-to-node mesh", "state": "established",
                               "since": NOW - 600, "prefixesReceived": 1, "prefixesAdvertised": 1,
                               "path": "direct"}]},
                {"node": "b", "ready": true, "version": "0.9.0", "sessions_up": 0, "sessions_total": 0,
                 "updated_at": NOW - 100, "update_period_seconds": 10, "stale": true, "addresses": ["10.0.0.2"],
                 "pod_addresses": 2, "routes": {"blackhole": 1, "remote_direct": 2}, "sessions": []},
            ],
            "asymmetric": [{"node": "a", "peer": "10.0.0.2", "peer_node": "b", "peer_state": null}],
            "stale": ["b"],
        });
        assert_eq!(json, expected);
        let yaml = serde_norway::to_string(&v).unwrap();
        let expected_yaml = "\
nodes:
- node: a
  ready: true
  version: 0.9.0
  sessions_up: 1
  sessions_total: 1
  updated_at: 1796566240
  update_period_seconds: 10
  stale: false
  addresses:
  - 10.0.0.1
  pod_addresses: 2
  routes:
    blackhole: 1
    remote_direct: 2
  sessions:
  - peer: 10.0.0.2
    type: node-to-node mesh
    state: established
    since: 1796565640
    prefixesReceived: 1
    prefixesAdvertised: 1
    path: direct
- node: b
  ready: true
  version: 0.9.0
  sessions_up: 0
  sessions_total: 0
  updated_at: 1796566140
  update_period_seconds: 10
  stale: true
  addresses:
  - 10.0.0.2
  pod_addresses: 2
  routes:
    blackhole: 1
    remote_direct: 2
  sessions: []
asymmetric:
- node: a
  peer: 10.0.0.2
  peer_node: b
  peer_state: null
stale:
- b
";
        assert_eq!(yaml, expected_yaml);
    }
}
