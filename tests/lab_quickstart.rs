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
