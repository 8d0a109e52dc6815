//! The other nodes' VXLAN tunnel endpoints, as the VXLAN device's neighbour and FDB entries need
//! them: computed from the agent's picture of the Node records ([`picture`](super::picture))
//! and published whole whenever one changes.

use super::picture::Known;
use crate::datastore::resources::Node;
use crate::remote_routes::{RemoteNode, RemoteNodes};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tokio::sync::watch;

/// One other node's endpoint: where its VXLAN packets go (the underlay, `bgp.ipv4Address` /
/// `ipv6Address`) and its device's address and MAC, per family.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeVtep {
    pub name: String,
    pub underlay_v4: Option<Ipv4Addr>,
    pub underlay_v6: Option<Ipv6Addr>,
    pub tunnel_v4: Option<Ipv4Addr>,
    pub tunnel_v6: Option<Ipv6Addr>,
    pub mac_v4: Option<[u8; 6]>,
    pub mac_v6: Option<[u8; 6]>,
}

impl NodeVtep {
    fn of(name: &str, node: &Node) -> NodeVtep {
        let bgp = node.bgp.as_ref();
        NodeVtep {
            name: name.to_string(),
            underlay_v4: bgp.and_then(|b| b.ipv4_address).and_then(|a| v4(a.ip())),
            underlay_v6: bgp.and_then(|b| b.ipv6_address).and_then(|a| v6(a.ip())),
            tunnel_v4: node.ipv4_vxlan_tunnel_addr.and_then(v4),
            tunnel_v6: node.ipv6_vxlan_tunnel_addr.and_then(v6),
            mac_v4: node.vxlan_tunnel_mac_addr.map(|m| m.octets()),
            mac_v6: node.vxlan_tunnel_mac_addr_v6.map(|m| m.octets()),
        }
    }
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn v6(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// The endpoints of every node but `me`, sorted by name.
pub fn vteps_of<'a>(me: &str, nodes: impl IntoIterator<Item = (&'a str, &'a Node)>) -> Vec<NodeVtep> {
    let mut out: Vec<NodeVtep> =
        nodes.into_iter().filter(|(name, _)| *name != me).map(|(name, node)| NodeVtep::of(name, node)).collect();
    out.sort();
    out
}

/// The endpoints as the remote-routes stage reads them: by underlay address, one entry per
/// family a node has an underlay address of.
pub fn remote_nodes(vteps: &[NodeVtep]) -> RemoteNodes {
    let mut out = RemoteNodes::new();
    for v in vteps {
        if let Some(u) = v.underlay_v4 {
            let node = RemoteNode { vxlan_tunnel: v.tunnel_v4.map(IpAddr::V4), vxlan_mac: v.mac_v4 };
            out.insert(IpAddr::V4(u), node);
        }
        if let Some(u) = v.underlay_v6 {
            let node = RemoteNode { vxlan_tunnel: v.tunnel_v6.map(IpAddr::V6), vxlan_mac: v.mac_v6 };
            out.insert(IpAddr::V6(u), node);
        }
    }
    out
}

/// Keeps `out` equal to [`remote_nodes`] of `vteps` from its first
/// value on (before, `out` stays `None`: the nodes are not read yet), until
/// `vteps` closes.
pub async fn publish_remote_nodes(mut vteps: watch::Receiver<Vec<NodeVtep>>, out: watch::Sender<Option<RemoteNodes>>) {
    if vteps.changed().await.is_err() {
        return;
    }
    loop {
        let now = Some(remote_nodes(&vteps.borrow_and_update()));
        out.send_if_modified(|old| {
            let changed = *old != now;
            if changed {
                *old = now;
            }
            changed
        });
        if vteps.changed().await.is_err() {
            return;
        }
    }
}

/// Publishes on `out` the endpoints of every node but `node_name` once the Nodes are known and
/// then whenever they change, until `stop` changes or the picture ends.
pub async fn follow_vteps(
    mut nodes: watch::Receiver<Option<Known<Node>>>,
    node_name: String,
    out: watch::Sender<Vec<NodeVtep>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut listed = false;
    loop {
        // `None` while the picture is being read: the last endpoints stay.
        let vteps = nodes
            .borrow_and_update()
            .as_ref()
            .map(|known| vteps_of(&node_name, known.stored().map(|s| (s.name.as_str(), &s.spec))));
        if let Some(vteps) = vteps {
            // The first picture is announced even when empty: the endpoints are known now.
            let first = !std::mem::replace(&mut listed, true);
            out.send_if_modified(|old| {
                let changed = first || *old != vteps;
                if changed {
                    *old = vteps;
                }
                changed
            });
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = nodes.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::Datastore;
    use crate::datastore::resources::{MacAddress, NodeBgp};
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
    use crate::testing::wait_until_async;
    use std::time::Duration;

    fn node(underlay: &str, tunnel: Option<&str>, mac: Option<[u8; 6]>) -> Node {
        Node {
            bgp: Some(NodeBgp { ipv4_address: underlay.parse().ok(), ..NodeBgp::default() }),
            ipv4_vxlan_tunnel_addr: tunnel.map(|t| t.parse().unwrap()),
            vxlan_tunnel_mac_addr: mac.map(MacAddress),
            ..Node::default()
        }
    }

    #[test]
    fn every_other_node_sorted_with_its_underlay_tunnel_and_mac() {
        let b = node("10.0.0.2/24", Some("192.168.1.0"), Some([2; 6]));
        let mut a = node("10.0.0.1/24", None, None);
        a.bgp.as_mut().unwrap().ipv6_address = "fd00::1/64".parse().ok();
        a.ipv6_vxlan_tunnel_addr = "fd00:20::1".parse().ok();
        a.vxlan_tunnel_mac_addr_v6 = Some(MacAddress([6; 6]));
        let me = node("10.0.0.3/24", Some("192.168.2.0"), Some([3; 6]));
        let vteps = vteps_of("me", [("b", &b), ("me", &me), ("a", &a)]);
        assert_eq!(
            vteps,
            vec![
                NodeVtep {
                    name: "a".into(),
                    underlay_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                    underlay_v6: "fd00::1".parse().ok(),
                    tunnel_v4: None,
                    tunnel_v6: "fd00:20::1".parse().ok(),
                    mac_v4: None,
                    mac_v6: Some([6; 6]),
                },
                NodeVtep {
                    name: "b".into(),
                    underlay_v4: Some(Ipv4Addr::new(10, 0, 0, 2)),
                    underlay_v6: None,
                    tunnel_v4: Some(Ipv4Addr::new(192, 168, 1, 0)),
                    tunnel_v6: None,
                    mac_v4: Some([2; 6]),
                    mac_v6: None,
                },
            ]
        );
    }

    #[tokio::test]
    async fn follows_other_nodes_appearing_changing_and_leaving() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap());
        ds.create("me", &node("10.0.0.1/24", Some("192.168.0.0"), Some([1; 6]))).await.unwrap();
        let (tx, rx) = watch::channel(Vec::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (nodes_tx, nodes) = watch::channel(None);
        tokio::spawn(super::super::picture::follow::<Node>(ds.clone(), nodes_tx, stop_rx.clone()));
        let task = tokio::spawn(follow_vteps(nodes, "me".into(), tx, stop_rx));
        let deadline = Duration::from_secs(10);
        let wait_for = |want: Vec<(&'static str, Option<&'static str>)>| {
            let rx = rx.clone();
            async move {
                let what = format!("endpoints {want:?}");
                wait_until_async(&what, deadline, || {
                    let now: Vec<(String, Option<Ipv4Addr>)> =
                        rx.borrow().iter().map(|v| (v.name.clone(), v.tunnel_v4)).collect();
                    let want: Vec<(String, Option<Ipv4Addr>)> =
                        want.iter().map(|(n, t)| (n.to_string(), t.map(|t| t.parse().unwrap()))).collect();
                    std::future::ready((now == want).then_some(()))
                })
                .await
                .unwrap()
            }
        };

        let created = ds.create("b", &node("10.0.0.2/24", None, None)).await.unwrap();
        wait_for(vec![("b", None)]).await;
        ds.update("b", &node("10.0.0.2/24", Some("192.168.1.0"), Some([2; 6])), created.revision).await.unwrap();
        wait_for(vec![("b", Some("192.168.1.0"))]).await;
        // A change of this node's own record is no change of the others' endpoints.
        let me = ds.get::<Node>("me").await.unwrap();
        ds.update("me", &node("10.0.0.1/24", Some("192.168.9.0"), Some([9; 6])), me.revision).await.unwrap();
        let b = ds.get::<Node>("b").await.unwrap();
        ds.delete::<Node>("b", b.revision).await.unwrap();
        wait_for(vec![]).await;
        ds.create("c", &node("10.0.0.4/24", None, None)).await.unwrap();
        wait_for(vec![("c", None)]).await;

        stop_tx.send(true).unwrap();
        tokio::time::timeout(deadline, task).await.unwrap().unwrap();
    }
}
