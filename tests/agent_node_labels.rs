//! Node labels drive BGPPeer selectors in running agents, the Calico way of building a
//! route-reflector topology: with the full mesh off, a BGPPeer with `peerSelector:
//! route-reflector == 'true'` and `nodeSelector: all()` (and its mirror for the reflectors)
//! makes sessions only to the labelled node; labelling a second node in the datastore adds the
//! sessions to it live. Pools' `nodeSelector` picks each node's VXLAN tunnel address pool by the
//! same labels.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{BgpPeer, EncapMode, IpPool, Node};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const NODES: [(&str, &str); 3] = [("rr", "192.0.2.21/24"), ("a", "192.0.2.22/24"), ("b", "192.0.2.23/24")];

fn agent_config(dir: &Path, name: &str, labels: &str) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "node: {{name: {name}, address_autodetection: interface=eth0, labels: {labels}}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{enabled: false}}\n\
             bgp: {{as_number: 64512, hold_time_seconds: 9, node_to_node_mesh: false}}\n",
            db = dir.join("tortie.db").display(),
            sock = dir.join(format!("{name}.sock")).display(),
        ),
    )
    .unwrap();
    config
}

/// The addresses of node `name`'s established sessions, sorted.
fn established(dir: &Path, name: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["status", "-o", "json", "--socket"])
        .arg(dir.join(format!("{name}.sock")))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut up: Vec<String> = status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["state"] == "established")
        .filter_map(|p| p["address"].as_str().map(str::to_string))
        .collect();
    up.sort();
    up
}

#[test]
fn peer_selectors_pick_sessions_by_node_labels_and_follow_a_relabel() {
    let mut t = Topology::new("nodelabels").unwrap();
    t.add_namespace("sw").unwrap();
    t.add_bridge("sw", "br0").unwrap();
    for (i, (name, addr)) in NODES.iter().enumerate() {
        t.add_namespace(name).unwrap();
        let port = format!("p{i}");
        t.add_veth((name, "eth0", Some(addr)), ("sw", &port, None)).unwrap();
        t.exec("sw", &["ip", "link", "set", &port, "master", "br0"]).unwrap();
    }
    let dir = t.dir().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ds = rt.block_on(async {
        Datastore::new(SqliteBackend::open(dir.join("tortie.db"), SqliteOptions::default()).await.unwrap())
    });
    let to_reflectors = BgpPeer {
        node_selector: Some("all()".into()),
        peer_selector: Some("route-reflector == 'true'".into()),
        ..BgpPeer::default()
    };
    let from_reflectors = BgpPeer {
        node_selector: Some("route-reflector == 'true'".into()),
        peer_selector: Some("all()".into()),
        ..BgpPeer::default()
    };
    let pool = |cidr: &str, selector: &str| {
        let mut pool = IpPool::new(cidr.parse().unwrap());
        pool.vxlan_mode = EncapMode::Always;
        pool.node_selector = selector.into();
        pool
    };
    let (reflectors_pool, others_pool) =
        (pool("10.253.0.0/24", "route-reflector == 'true'"), pool("10.252.0.0/16", "!has(route-reflector)"));
    rt.block_on(async {
        tortie::ipam::create_pool(&ds, "reflectors", &reflectors_pool).await.unwrap();
        tortie::ipam::create_pool(&ds, "others", &others_pool).await.unwrap();
        ds.create("to-reflectors", &to_reflectors).await.unwrap();
        ds.create("from-reflectors", &from_reflectors).await.unwrap();
    });
    let bin = env!("CARGO_BIN_EXE_tortie");
    for (name, _) in NODES {
        let labels = if name == "rr" { "{route-reflector: 'true'}" } else { "{}" };
        let config = agent_config(&dir, name, labels);
        t.spawn(name, &[bin, "node", "--config", config.to_str().unwrap()]).unwrap();
    }
    let (rr, a, b) = ("192.0.2.21".to_string(), "192.0.2.22".to_string(), "192.0.2.23".to_string());
    let expect = |name: &str, want: Vec<String>, what: &str| {
        wait_until(what, Duration::from_secs(40), || (established(&dir, name) == want).then_some(()))
            .unwrap_or_else(|e| panic!("{e}; {name} has {:?}", established(&dir, name)));
    };
    expect("rr", vec![a.clone(), b.clone()], "the reflector to peer with both clients");
    expect("a", vec![rr.clone()], "a to peer with the reflector only");
    expect("b", vec![rr.clone()], "b to peer with the reflector only");
    // Each node's tunnel address came from the pool its labels select.
    for (name, pool) in [("rr", &reflectors_pool), ("a", &others_pool), ("b", &others_pool)] {
        let address = rt.block_on(ds.get::<Node>(name)).unwrap().spec.ipv4_vxlan_tunnel_addr;
        assert!(address.is_some_and(|a| pool.cidr.contains(a)), "{name}'s tunnel address {address:?}");
    }

    // Labelling b a reflector in the datastore: a and b peer, live.
    // (The agent writes its record too: a compare-and-swap that lost is read and tried again.)
    wait_until("b's record to take the label", Duration::from_secs(10), || {
        rt.block_on(async {
            let stored = ds.get::<Node>("b").await.ok()?;
            let mut node = stored.spec.clone();
            node.labels.insert("route-reflector".into(), "true".into());
            ds.update("b", &node, stored.revision).await.ok().map(|_| ())
        })
    })
    .unwrap();
    expect("a", vec![rr.clone(), b.clone()], "a to peer with the newly labelled b");
    expect("b", vec![rr, a], "b to peer with a as a reflector");
}
