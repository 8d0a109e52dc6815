//! BGPPeer resources drive a running agent's peers: a global BGPPeer
//! created in the datastore brings up a session with a real BIRD, which
//! learns the node's block; deleting the resource removes the session.

mod support;

use std::process::Command;
use std::time::Duration;
use support::daemons::{birdc, start_bird};
use tortie::datastore::Datastore;
use tortie::datastore::resources::BgpPeer;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::{json_subset, wait_until};

#[test]
fn a_bgppeer_resource_adds_and_removes_a_session_live() {
    let mut t = Topology::new("bgppeers").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("tor").unwrap();
    t.add_veth(("n", "eth1", Some("10.126.0.5/24")), ("tor", "eth1", Some("10.126.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let (db, socket, config) = (dir.join("tortie.db"), dir.join("api.sock"), dir.join("tortie.yaml"));
    std::fs::write(
        &config,
        format!(
            "node: {{name: n1, address_autodetection: interface=eth1}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\n\
             metrics: {{listen: \"127.0.0.1:19481\"}}\nbgp: {{as_number: 64512, hold_time_seconds: 9}}\n\
             ipam: {{default_ipv4_pool_cidr: 10.251.0.0/16}}\n",
            db.display(),
            socket.display()
        ),
    )
    .unwrap();
    let ctl = start_bird(
        &mut t,
        "tor",
        "router id 10.126.0.1;\nprotocol device {}\nprotocol bgp n1 {\n  local 10.126.0.1 as 65001;\n  neighbor 10.126.0.5 as 64512;\n  hold time 9;\n  connect retry time 1;\n  ipv4 { import all; export none; };\n}\n",
    );
    let _agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    let status = || -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "-o", "json", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    wait_until("the agent to answer", Duration::from_secs(30), || status()["node"].as_str().map(|_| ())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ds = rt.block_on(async { Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap()) });
    let peer = BgpPeer { peer_ip: Some("10.126.0.1".into()), as_number: Some(65001), ..BgpPeer::default() };
    rt.block_on(ds.create("tor1", &peer)).unwrap();

    let expected = serde_json::json!({"peers": [{"address": "10.126.0.1", "as_number": 65001, "type": "global", "state": "established"}]});
    wait_until("the BGPPeer's session to come up", Duration::from_secs(30), || json_subset(&expected, &status()).ok())
        .unwrap();
    wait_until("BIRD to see the session established", Duration::from_secs(30), || {
        birdc(&t, "tor", &ctl, &["show", "protocols", "n1"]).contains("Established").then_some(())
    })
    .unwrap();

    rt.block_on(async {
        let stored = ds.get::<BgpPeer>("tor1").await.unwrap();
        ds.delete::<BgpPeer>("tor1", stored.revision).await.unwrap();
    });
    wait_until("the session to go with the resource", Duration::from_secs(30), || {
        status()["peers"].as_array().is_some_and(|p| p.is_empty()).then_some(())
    })
    .unwrap();
}
