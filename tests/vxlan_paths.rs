//! The remote-routes stage with the kernel VXLAN device (and the userspace
//! IP-in-IP tunnel beside it) on two nodes in namespaces, with real traffic:
//! IPv4 and IPv6 pods over VXLAN next to a pool over IP-in-IP across a
//! router that knows no pod routes; a same-subnet node whose direct path
//! drops pod traffic reached through VXLAN until it answers again.

mod support;

use std::time::Duration;
use support::stage::{NodeSpec, learned, pool, start};
use tokio::sync::watch;
use tortie::datastore::resources::EncapMode;
use tortie::netns::Topology;
use tortie::remote_routes::RemoteNode;
use tortie::testing::{json_subset, wait_until};
use tortie::vxlan::{DEVICE_V4, DEVICE_V6};

fn route_to(t: &Topology, ns: &str, dst: &str) -> serde_json::Value {
    let family = if dst.contains(':') { "-6" } else { "-4" };
    t.exec_json(ns, &["ip", family, "-j", "route", "show", dst, "proto", "116"]).unwrap()
}

fn wait_route(t: &Topology, ns: &str, dst: &str, want: serde_json::Value) {
    wait_until(&format!("{ns}: route to {dst} like {want}"), Duration::from_secs(10), || {
        json_subset(&want, &route_to(t, ns, dst)).ok()
    })
    .unwrap();
}

fn ping(t: &Topology, from: &str, to: &str) {
    wait_until(&format!("{from} to ping {to}"), Duration::from_secs(10), || t.ping(from, to).then_some(())).unwrap();
}

fn vtep(tunnel: &str, mac: Option<[u8; 6]>) -> RemoteNode {
    RemoteNode { vxlan_tunnel: Some(tunnel.parse().unwrap()), vxlan_mac: mac }
}

#[test]
fn ipv4_and_ipv6_pods_cross_a_router_over_vxlan_beside_an_ipip_pool() {
    let mut t = Topology::new("vxpath").unwrap();
    for ns in ["a", "r", "b"] {
        t.add_namespace(ns).unwrap();
    }
    t.add_veth(("a", "eth1", Some("10.1.0.2/24")), ("r", "eth1", Some("10.1.0.1/24"))).unwrap();
    t.add_veth(("b", "eth1", Some("10.2.0.2/24")), ("r", "eth2", Some("10.2.0.1/24"))).unwrap();
    for (ns, dev, addr) in [
        ("a", "eth1", "fd01::2/64"),
        ("r", "eth1", "fd01::1/64"),
        ("b", "eth1", "fd02::2/64"),
        ("r", "eth2", "fd02::1/64"),
    ] {
        t.exec(ns, &["ip", "addr", "add", addr, "dev", dev, "nodad"]).unwrap();
    }
    // The router forwards between the subnets and knows no pod route.
    t.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]).unwrap();
    for (ns, v4, v6) in [("a", "10.1.0.1", "fd01::1"), ("b", "10.2.0.1", "fd02::1")] {
        t.exec(ns, &["ip", "route", "add", "default", "via", v4]).unwrap();
        t.exec(ns, &["ip", "-6", "route", "add", "default", "via", v6]).unwrap();
    }
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.244.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.244.2.7").unwrap();
    support::pods::add_pod(&mut t, "a", "pax", "ttpax", "10.245.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pbx", "ttpbx", "10.245.2.7").unwrap();
    support::pods::add_pod_v6(&t, "a", "pax", "ttpax", "fd00:245:0:1::5").unwrap();
    support::pods::add_pod_v6(&t, "b", "pbx", "ttpbx", "fd00:245:0:2::7").unwrap();
    let pools = || {
        vec![
            pool("10.244.0.0/16", EncapMode::Always, EncapMode::Never),
            pool("10.245.0.0/16", EncapMode::Never, EncapMode::CrossSubnet),
            pool("fd00:245::/48", EncapMode::Never, EncapMode::Always),
        ]
    };
    let (a_remotes_tx, a_remotes) = watch::channel(None);
    let (b_remotes_tx, b_remotes) = watch::channel(None);
    let a = start(
        &t,
        NodeSpec {
            ns: "a",
            local_v4: "10.1.0.2/24",
            local_v6: Some("fd01::2/64"),
            ipip: Some("10.244.1.1"),
            vxlan_v4: Some("10.245.1.0"),
            vxlan_v6: Some(("fd01::2", "fd00:245:0:1::")),
            pools: pools(),
            learned: vec![
                learned("10.244.2.0/26", "10.2.0.2"),
                learned("10.245.2.0/26", "10.2.0.2"),
                learned("fd00:245:0:2::/122", "fd02::2"),
            ],
        },
        a_remotes,
    );
    let b = start(
        &t,
        NodeSpec {
            ns: "b",
            local_v4: "10.2.0.2/24",
            local_v6: Some("fd02::2/64"),
            ipip: Some("10.244.2.1"),
            vxlan_v4: Some("10.245.2.0"),
            vxlan_v6: Some(("fd02::2", "fd00:245:0:2::")),
            pools: pools(),
            learned: vec![
                learned("10.244.1.0/26", "10.1.0.2"),
                learned("10.245.1.0/26", "10.1.0.2"),
                learned("fd00:245:0:1::/122", "fd01::2"),
            ],
        },
        b_remotes,
    );

    // The learned routes wait for the remote nodes' VTEPs (as the agent reads them from the Nodes).
    a_remotes_tx.send_replace(Some(
        [
            ("10.2.0.2".parse().unwrap(), vtep("10.245.2.0", b.macs.0)),
            ("fd02::2".parse().unwrap(), vtep("fd00:245:0:2::", b.macs.1)),
        ]
        .into(),
    ));
    b_remotes_tx.send_replace(Some(
        [
            ("10.1.0.2".parse().unwrap(), vtep("10.245.1.0", a.macs.0)),
            ("fd01::2".parse().unwrap(), vtep("fd00:245:0:1::", a.macs.1)),
        ]
        .into(),
    ));
    wait_route(&t, "a", "10.244.2.0/26", serde_json::json!([{"dev": "ttipip0"}]));
    wait_route(
        &t,
        "a",
        "10.245.2.0/26",
        serde_json::json!([{"gateway": "10.245.2.0", "dev": DEVICE_V4, "flags": ["onlink"]}]),
    );
    wait_route(
        &t,
        "a",
        "fd00:245:0:2::/122",
        serde_json::json!([{"gateway": "fd00:245:0:2::", "dev": DEVICE_V6, "flags": ["onlink"]}]),
    );
    let neigh = t.exec_json("a", &["ip", "-j", "neigh", "show", "dev", DEVICE_V4]).unwrap();
    json_subset(&serde_json::json!([{"dst": "10.245.2.0", "state": ["PERMANENT"]}]), &neigh).unwrap();

    ping(&t, "pax", "10.245.2.7");
    ping(&t, "pbx", "10.245.1.5");
    ping(&t, "pax", "fd00:245:0:2::7");
    ping(&t, "pbx", "fd00:245:0:1::5");
    ping(&t, "pa", "10.244.2.7");
    let router = t.exec_json("r", &["ip", "-j", "route"]).unwrap();
    assert!(router.as_array().unwrap().iter().all(|r| !r["dst"].as_str().unwrap_or("").starts_with("10.24")));
}

#[test]
fn a_same_subnet_node_whose_direct_path_drops_pod_traffic_is_reached_over_vxlan_until_it_answers() {
    let mut t = Topology::new("vxfb").unwrap();
    t.add_namespace("a").unwrap();
    t.add_namespace("b").unwrap();
    t.add_veth(("a", "eth1", Some("10.0.0.2/24")), ("b", "eth1", Some("10.0.0.3/24"))).unwrap();
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.245.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.245.2.7").unwrap();
    let pools = || vec![pool("10.245.0.0/16", EncapMode::Never, EncapMode::CrossSubnet)];
    let (a_remotes_tx, a_remotes) = watch::channel(None);
    let (b_remotes_tx, b_remotes) = watch::channel(None);
    let spec = |ns, local, tunnel, block, node| NodeSpec {
        ns,
        local_v4: local,
        local_v6: None,
        ipip: None,
        vxlan_v4: Some(tunnel),
        vxlan_v6: None,
        pools: pools(),
        learned: vec![learned(block, node)],
    };
    let a = start(&t, spec("a", "10.0.0.2/24", "10.245.1.0", "10.245.2.0/26", "10.0.0.3"), a_remotes);
    let b = start(&t, spec("b", "10.0.0.3/24", "10.245.2.0", "10.245.1.0/26", "10.0.0.2"), b_remotes);
    a_remotes_tx.send_replace(Some([("10.0.0.3".parse().unwrap(), vtep("10.245.2.0", b.macs.0))].into()));
    b_remotes_tx.send_replace(Some([("10.0.0.2".parse().unwrap(), vtep("10.245.1.0", a.macs.0))].into()));

    let direct = serde_json::json!([{"gateway": "10.0.0.3", "dev": "eth1"}]);
    wait_route(&t, "a", "10.245.2.0/26", direct.clone());
    ping(&t, "pa", "10.245.2.7");

    // b starts dropping pod-sourced packets that arrive unencapsulated.
    t.exec("b", &["nft", "add table inet ttcut; add chain inet ttcut pre { type filter hook prerouting priority -300; }; add rule inet ttcut pre iifname eth1 ip saddr 10.245.0.0/16 drop"])
        .unwrap();
    wait_route(&t, "a", "10.245.2.0/26", serde_json::json!([{"gateway": "10.245.2.0", "dev": DEVICE_V4}]));
    ping(&t, "pa", "10.245.2.7");

    // The path heals: back to the direct route.
    t.exec("b", &["nft", "delete table inet ttcut"]).unwrap();
    wait_route(&t, "a", "10.245.2.0/26", direct);
    ping(&t, "pa", "10.245.2.7");
}
