//! The quickstart topology through the lab runner: three tortie agents come
//! up, register in the lab's shared datastore, build a BGP full mesh from
//! it and show it in `tortie status`.

mod support;

use std::time::Duration;
use support::lab::Lab;
use tortie::datastore::Datastore;
use tortie::datastore::resources::Node;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::testing::wait_until;

#[test]
fn three_agents_come_up_register_and_report_ready() {
    let lab = Lab::prepare("quickstart", "ttq", |_| {});

    let up = lab.run(&["up"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let addresses = [("node1", "10.10.0.11"), ("node2", "10.10.0.12"), ("node3", "10.10.0.13")];
    for (node, _) in addresses {
        let others: Vec<serde_json::Value> = addresses
            .iter()
            .filter(|(n, _)| *n != node)
            .map(|(_, a)| serde_json::json!({"address": a, "type": "node-to-node mesh", "state": "established", "as_number": 64512, "hold_time": 90, "keepalive": 30, "established_at": "*"}))
            .collect();
        let expected = serde_json::json!({"node": node, "ready": true, "peers": others});
        let status =
            wait_until(&format!("{node} to be ready with its mesh established"), Duration::from_secs(60), || {
                let out = lab.run(&["exec", node, "--", env!("CARGO_BIN_EXE_tortie"), "status", "-o", "json"]);
                let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                tortie::testing::json_subset(&expected, &status).ok().map(|_| status)
            })
            .unwrap();
        assert_eq!(status["peers"].as_array().map(Vec::len), Some(2), "exactly the two other nodes: {status}");
    }
    lab.assert_agents_quiet(&addresses.map(|(node, _)| node));
    let ping = lab.run(&["exec", "node1", "--", "ping", "-c1", "-W2", "10.10.0.13"]);
    assert!(ping.status.success(), "nodes reach each other across the lab bridge");

    let db = lab.dir().join("tortie.db");
    let nodes = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
        ds.list::<Node>().await.unwrap()
    });
    let mut registered: Vec<(String, String)> = nodes
        .items
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                n.spec.bgp.as_ref().and_then(|b| b.ipv4_address).map(|a| a.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    registered.sort();
    assert_eq!(
        registered,
        vec![
            ("node1".to_string(), "10.10.0.11/24".to_string()),
            ("node2".to_string(), "10.10.0.12/24".to_string()),
            ("node3".to_string(), "10.10.0.13/24".to_string()),
        ],
        "every node registered its address with the prefix length in the shared datastore"
    );
}

/// containerlab/dual-stack.clab.yml: IPv4 and IPv6 pools, BGP without encapsulation. Every pod
/// has an address of each family; each node learns the others' IPv6 blocks over the (IPv4) mesh
/// with the owner's IPv6 address as next hop, and pods reach each other over both families.
#[test]
fn dual_stack_pods_reach_each_other_over_bgp() {
    const NODES: [&str; 3] = ["node1", "node2", "node3"];
    let lab = Lab::prepare("dual-stack", "ttd", |_| {});
    lab.up();
    for node in NODES {
        wait_until(&format!("{node} ready"), Duration::from_secs(90), || {
            (lab.status(node)["ready"] == true).then_some(())
        })
        .unwrap();
    }
    for (node, next_hop) in [("node2", "fd10::12"), ("node3", "fd10::13")] {
        let pod = lab.pod_ip6(node, "pod1");
        assert!(pod.segments()[..4] == [0xfd00, 0x246, 0, 0], "{node}/pod1 has {pod}, from the IPv6 pool");
        let route = wait_until(&format!("node1 to route {node}'s IPv6 block"), Duration::from_secs(60), || {
            lab.route_to_pod("node1", pod)
        })
        .unwrap();
        tortie::testing::json_subset(&serde_json::json!({"gateway": next_hop, "dev": "eth1"}), &route).unwrap();
    }
    lab.all_pods_reach_each_other(&NODES);
    lab.all_pods_reach_each_other_v6(&NODES);
}
