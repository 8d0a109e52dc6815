//! Two nodes on one subnet under a CrossSubnet pool: pods talk over direct
//! routes; when the direct path drops pod traffic the liveness probe moves
//! the route into the (userspace) tunnel, and back once the path answers.

mod support;

use std::time::Duration;
use support::stage::{NodeSpec, learned, pool, start};
use tortie::datastore::resources::EncapMode;
use tortie::netns::Topology;
use tortie::testing::wait_until;

/// One node with the userspace tunnel and one learned block of the other
/// node, in a CrossSubnet IP-in-IP pool.
fn start_node(
    t: &Topology,
    ns: &'static str,
    local: &'static str,
    tunnel: &'static str,
    block: &str,
    node: &str,
) -> support::stage::Running {
    let spec = NodeSpec {
        ns,
        local_v4: local,
        local_v6: None,
        ipip: Some(tunnel),
        vxlan_v4: None,
        vxlan_v6: None,
        pools: vec![pool("10.244.0.0/16", EncapMode::CrossSubnet, EncapMode::Never)],
        learned: vec![learned(block, node)],
    };
    // No VXLAN: the remote nodes' records are not needed.
    start(t, spec, tokio::sync::watch::channel(None).1)
}

fn route_to(t: &Topology, ns: &str, dst: &str) -> serde_json::Value {
    t.exec_json(ns, &["ip", "-j", "route", "show", dst, "proto", "116"]).unwrap()
}

#[test]
fn same_subnet_is_direct_and_a_cut_direct_path_falls_back_to_the_tunnel() {
    let mut t = Topology::new("ipipfb").unwrap();
    t.add_namespace("a").unwrap();
    t.add_namespace("b").unwrap();
    t.add_veth(("a", "eth1", Some("10.0.0.2/24")), ("b", "eth1", Some("10.0.0.3/24"))).unwrap();
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.244.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.244.2.7").unwrap();
    let a = start_node(&t, "a", "10.0.0.2/24", "10.244.1.1", "10.244.2.0/26", "10.0.0.3");
    let _b = start_node(&t, "b", "10.0.0.3/24", "10.244.2.1", "10.244.1.0/26", "10.0.0.2");

    // Same subnet: direct routes, ping and TCP.
    let direct = serde_json::json!([{"dst": "10.244.2.0/26", "gateway": "10.0.0.3", "dev": "eth1"}]);
    wait_until("a direct route on a", Duration::from_secs(10), || {
        tortie::testing::json_subset(&direct, &route_to(&t, "a", "10.244.2.0/26")).ok()
    })
    .unwrap();
    wait_until("pod a to reach pod b directly", Duration::from_secs(10), || t.ping("pa", "10.244.2.7").then_some(()))
        .unwrap();
    t.spawn("pb", &["iperf3", "-s", "-B", "10.244.2.7", "-p", "5202"]).unwrap();
    let tcp_ok = || {
        let out = t.exec("pa", &["iperf3", "-c", "10.244.2.7", "-p", "5202", "-t", "1", "-J"]).ok()?;
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (r["end"]["sum_received"]["bytes"].as_u64()? > 0).then_some(())
    };
    wait_until("TCP over the direct path", Duration::from_secs(20), tcp_ok).unwrap();
    let encap_before = a.counters.as_ref().unwrap().encap_packets.load(std::sync::atomic::Ordering::Relaxed);

    // b starts dropping pod-sourced packets that arrive unencapsulated.
    t.exec("b", &["nft", "add table inet ttcut; add chain inet ttcut pre { type filter hook prerouting priority -300; }; add rule inet ttcut pre iifname eth1 ip saddr 10.244.0.0/16 drop"])
        .unwrap();
    wait_until("a to move b's block into the tunnel", Duration::from_secs(10), || {
        tortie::testing::json_subset(
            &serde_json::json!([{"dst": "10.244.2.0/26", "dev": "ttipip0"}]),
            &route_to(&t, "a", "10.244.2.0/26"),
        )
        .ok()
    })
    .unwrap();
    wait_until("pod a to reach pod b through the tunnel", Duration::from_secs(10), || {
        t.ping("pa", "10.244.2.7").then_some(())
    })
    .unwrap();
    wait_until("TCP through the tunnel", Duration::from_secs(20), tcp_ok).unwrap();
    assert!(
        a.counters.as_ref().unwrap().encap_packets.load(std::sync::atomic::Ordering::Relaxed) > encap_before,
        "traffic was encapsulated"
    );

    // The path heals: back to the direct route.
    t.exec("b", &["nft", "delete table inet ttcut"]).unwrap();
    wait_until("a to return to the direct route", Duration::from_secs(10), || {
        tortie::testing::json_subset(&direct, &route_to(&t, "a", "10.244.2.0/26")).ok()
    })
    .unwrap();
    wait_until("pod a to reach pod b directly again", Duration::from_secs(10), || {
        t.ping("pa", "10.244.2.7").then_some(())
    })
    .unwrap();
}
