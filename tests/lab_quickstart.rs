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

    // inspect finds each node's agent alive and its pod with an address; graph draws the mesh's
    // sessions green (both ends Established), once per pair.
    let inspect = lab.run(&["inspect", "-o", "json"]);
    let found: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    for (node, address) in addresses {
        let expected = serde_json::json!({"nodes": [{"name": node, "exists": true,
            "addresses": [format!("eth1 {address}/24")],
            "processes": [{"program": env!("CARGO_BIN_EXE_tortie"), "alive": true}],
            "pods": [{"name": "pod1", "namespace": lab.pod_ns(node, "pod1"), "addresses": ["*"]}]}]});
        tortie::testing::json_subset(&expected, &found).unwrap_or_else(|e| panic!("{node}: {e}: {found:#}"));
    }
    let graph = lab.run(&["graph"]);
    let dot = String::from_utf8_lossy(&graph.stdout);
    assert!(graph.status.success() && !dot.contains("not running"), "{dot}");
    for (a, b) in [("node1", "node2"), ("node1", "node3"), ("node2", "node3")] {
        let edge = format!("\"{a}\" -- \"{b}\" [style=dashed, penwidth=2, constraint=false, color=forestgreen");
        assert_eq!(dot.matches(&edge).count(), 1, "{a}-{b}: {dot}");
    }
    let svg = lab.file.with_extension("svg");
    let drawn = lab.run(&["graph", "-o", svg.to_str().unwrap()]);
    assert!(drawn.status.success(), "{}", String::from_utf8_lossy(&drawn.stderr));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("forestgreen"), "the sessions are drawn");
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

/// `tortie cluster status` (here as the kubectl plugin `kubectl-tortie status`) over the
/// quickstart lab's datastore: all three nodes ready with 2/2 sessions; then node1 drops whatever
/// node2 sends (an nftables rule on node1 only) and node2's session to node1 is reset on node2
/// alone (`ss -K`). node2 sees the session down at once, node1 keeps it Established until its
/// hold timer (90 s) runs out: the command shows that asymmetry and exits 3.
#[test]
fn cluster_status_shows_a_session_cut_on_one_side() {
    let lab = Lab::prepare("quickstart", "ttc", |_| {});
    lab.up();
    let plugin_dir = tempfile::tempdir().unwrap();
    let plugin = plugin_dir.path().join("kubectl-tortie");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tortie"), &plugin).unwrap();
    let db = lab.dir().join("tortie.db");
    let cluster_status = |format: &str| {
        std::process::Command::new(&plugin)
            .args(["status", "-o", format])
            .env("TORTIE_DATASTORE_TYPE", "sqlite")
            .env("TORTIE_DATASTORE_SQLITE_PATH", &db)
            .env_remove("TORTIE_CONFIG")
            .output()
            .unwrap()
    };
    let json = |out: &std::process::Output| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok();

    let node = |name: &str| serde_json::json!({"node": name, "ready": true, "sessions_up": 2, "sessions_total": 2, "stale": false});
    let healthy =
        serde_json::json!({"nodes": [node("node1"), node("node2"), node("node3")], "asymmetric": [], "stale": []});
    wait_until("every node ready with its mesh in cluster status", Duration::from_secs(90), || {
        let out = cluster_status("json");
        (out.status.code() == Some(0) && tortie::testing::json_subset(&healthy, &json(&out)?).is_ok()).then_some(())
    })
    .unwrap();

    let cut = lab.dir().join("cut.nft");
    std::fs::write(
        &cut,
        "table inet ttcut {\n  chain input {\n    type filter hook input priority 0;\n    ip saddr 10.10.0.12 tcp dport 179 drop\n    ip saddr 10.10.0.12 tcp sport 179 drop\n  }\n}\n",
    )
    .unwrap();
    let out = lab.exec("node1", &["nft", "-f", cut.to_str().unwrap()]);
    assert!(out.status.success(), "nft on node1: {}", String::from_utf8_lossy(&out.stderr));
    let out = lab.exec("node2", &["ss", "-K", "dst", "10.10.0.11"]);
    assert!(out.status.success(), "ss -K on node2: {}", String::from_utf8_lossy(&out.stderr));

    let asymmetric = wait_until("cluster status to show node1's one-sided session", Duration::from_secs(60), || {
        let out = cluster_status("json");
        let view = json(&out)?;
        let found = view["asymmetric"].as_array()?.iter().find(|a| a["node"] == "node1")?.clone();
        Some((out.status.code(), found))
    })
    .unwrap();
    assert_eq!(asymmetric.0, Some(3), "exit 3 while a session is asymmetric");
    assert_eq!((&asymmetric.1["peer"], &asymmetric.1["peer_node"]), (&"10.10.0.12".into(), &"node2".into()));
    assert_ne!(asymmetric.1["peer_state"], "established", "{}", asymmetric.1);
    let table = String::from_utf8_lossy(&cluster_status("table").stdout).to_string();
    let row = table.lines().find(|l| l.starts_with("| node1") && l.contains("10.10.0.12"));
    assert!(row.is_some_and(|r| r.contains("node2")), "the asymmetric session in the table:\n{table}");
    let yaml = cluster_status("yaml");
    let yaml: serde_json::Value = serde_norway::from_slice(&yaml.stdout).unwrap();
    assert_eq!(yaml["nodes"].as_array().map(Vec::len), Some(3), "{yaml}");
}
