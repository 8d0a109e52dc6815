//! BGPConfiguration drives a running agent: a real BIRD stands for another node (its Node
//! record in the datastore) and sees the mesh session follow `nodeToNodeMeshEnabled`, the
//! session re-made with a new `asNumber`, the node's block carry the `prefixAdvertisements`
//! communities, and the agent listen and dial on a new `listenPort`; and three agents mesh
//! with `nodeMeshPassword` as TCP-MD5, a node holding another password left out.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::daemons::{birdc, start_bird};
use tortie::datastore::resources::{BgpConfiguration, Node, NodeBgp, Secret, SecretValue};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::datastore::{Datastore, DatastoreError};
use tortie::ipam::{Ipam, IpamOptions, Request};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(30);

/// The agent `n1` in namespace `n` (10.128.0.5) and BIRD in `peer` (10.128.0.1, AS 65001),
/// recorded as node `n2`. BIRD accepts any external AS and dials the agent on port 1179.
struct Lab {
    t: Topology,
    ctl: PathBuf,
    socket: PathBuf,
    ds: Datastore,
    rt: tokio::runtime::Runtime,
}

impl Lab {
    fn start(name: &str) -> Lab {
        let mut t = Topology::new(name).unwrap();
        t.add_namespace("n").unwrap();
        t.add_namespace("peer").unwrap();
        t.add_veth(("n", "eth1", Some("10.128.0.5/24")), ("peer", "eth1", Some("10.128.0.1/24"))).unwrap();
        let dir = t.dir().to_path_buf();
        let (db, socket, config) = (dir.join("tortie.db"), dir.join("api.sock"), dir.join("tortie.yaml"));
        std::fs::write(
            &config,
            format!(
                "node: {{name: n1, address_autodetection: interface=eth1}}\ndatastore: {{sqlite_path: {}}}\n\
                 api: {{socket: {}}}\nmetrics: {{enabled: false}}\n\
                 bgp: {{as_number: 64512, hold_time_seconds: 9, connect_retry_seconds: 1}}\n\
                 ipam: {{default_ipv4_pool_cidr: 10.251.0.0/16}}\n",
                db.display(),
                socket.display()
            ),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ds =
            rt.block_on(async { Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap()) });
        let n2 = NodeBgp { ipv4_address: "10.128.0.1/24".parse().ok(), as_number: Some(65001), ..NodeBgp::default() };
        rt.block_on(ds.create("n2", &Node { bgp: Some(n2), ..Node::default() })).unwrap();
        let ctl = start_bird(
            &mut t,
            "peer",
            "router id 10.128.0.1;\nprotocol device {}\nprotocol bgp n1 {\n  local 10.128.0.1 as 65001;\n\
             neighbor 10.128.0.5 port 1179 external;\n  hold time 9;\n  connect retry time 1;\n\
             ipv4 { import all; export none; };\n}\n",
        );
        t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
        let lab = Lab { t, ctl, socket, ds, rt };
        wait_until("the agent to answer", WAIT, || lab.status()["node"].as_str().map(|_| ())).unwrap();
        lab
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "-o", "json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// A `birdc` answer with its whitespace runs collapsed to one space.
    fn bird(&self, args: &[&str]) -> String {
        birdc(&self.t, "peer", &self.ctl, args).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn wait_bird(&self, what: &str, args: &[&str], wanted: &str) {
        wait_until(what, WAIT, || self.bird(args).contains(wanted).then_some(()))
            .unwrap_or_else(|e| panic!("{e}; BIRD: {}; agent: {}", self.bird(args), self.status()));
    }

    /// Creates or replaces BGPConfiguration `default`.
    fn set_default(&self, json: serde_json::Value) {
        let spec: BgpConfiguration = serde_json::from_value(json).unwrap();
        self.rt
            .block_on(async {
                match self.ds.get::<BgpConfiguration>("default").await {
                    Ok(stored) => self.ds.update("default", &spec, stored.revision).await.map(|_| ()),
                    Err(DatastoreError::NotFound { .. }) => self.ds.create("default", &spec).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            })
            .unwrap();
    }

    /// `ss` in the agent's namespace, whitespace collapsed.
    fn sockets(&self, args: &[&str]) -> String {
        let mut argv = vec!["ss", "-Htn"];
        argv.extend_from_slice(args);
        let out = self.t.exec("n", &argv).unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[test]
fn mesh_switch_as_number_and_communities_follow_the_resource_live() {
    let lab = Lab::start("bgpconf-mesh");
    lab.wait_bird("the mesh session to come up in AS 64512", &["show", "protocols", "all", "n1"], "Neighbor AS: 64512");
    lab.wait_bird("BIRD to see it established", &["show", "protocols", "n1"], "Established");

    // A block of the node's, then communities on everything within the pool.
    let ipam = Ipam::new(lab.ds.clone(), IpamOptions { node: "n1".into(), ..IpamOptions::default() });
    lab.rt.block_on(ipam.allocate(Request::workload("h-a", 4, "a", "default", "n1"))).unwrap();
    lab.wait_bird("the block to reach BIRD", &["show", "route", "protocol", "n1"], "10.251.");
    lab.set_default(serde_json::json!({
        "communities": [{"name": "pods", "value": "65000:100"}],
        "prefixAdvertisements": [{"cidr": "10.251.0.0/16", "communities": ["pods", "65000:1:2"]}],
    }));
    let routes = ["show", "route", "all", "protocol", "n1"];
    lab.wait_bird("the standard community on the block", &routes, "BGP.community: (65000,100)");
    lab.wait_bird("the large community on the block", &routes, "BGP.large_community: (65000, 1, 2)");

    // A new AS: the session is re-made with it, and the Node record says it.
    lab.set_default(serde_json::json!({"asNumber": 65010}));
    // BIRD keeps the AS a dynamic (`external`) neighbor first had and refuses the new one with
    // "Bad peer AS" (then waits out its error delay): a restart of its protocol takes the new one.
    wait_until("the session re-made in AS 65010", WAIT, || {
        let now = lab.bird(&["show", "protocols", "all", "n1"]);
        if now.contains("Bad peer AS") {
            lab.bird(&["restart", "n1"]);
        }
        now.contains("Neighbor AS: 65010").then_some(())
    })
    .unwrap_or_else(|e| {
        panic!("{e}; BIRD: {}; agent: {}", lab.bird(&["show", "protocols", "all", "n1"]), lab.status())
    });
    lab.wait_bird("BIRD to see it established again", &["show", "protocols", "n1"], "Established");
    let recorded = lab.rt.block_on(lab.ds.get::<Node>("n1")).unwrap().spec.bgp.and_then(|b| b.as_number);
    assert_eq!(recorded, Some(65010));
    wait_until("the communities to go with the prefix advertisements", WAIT, || {
        let now = lab.bird(&routes);
        (now.contains("10.251.") && !now.contains("BGP.community")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", lab.bird(&routes)));

    // The mesh switched off removes the session; on again brings it back.
    lab.set_default(serde_json::json!({"asNumber": 65010, "nodeToNodeMeshEnabled": false}));
    wait_until("the mesh session to go", WAIT, || {
        lab.status()["peers"].as_array().is_some_and(|p| p.is_empty()).then_some(())
    })
    .unwrap();
    wait_until("BIRD to lose it", WAIT, || {
        (!lab.bird(&["show", "protocols", "n1"]).contains("Established")).then_some(())
    })
    .unwrap();
    lab.set_default(serde_json::json!({"asNumber": 65010, "nodeToNodeMeshEnabled": true}));
    lab.wait_bird("the mesh session back", &["show", "protocols", "n1"], "Established");
}

#[test]
fn a_new_listen_port_moves_the_listener_and_unsupported_fields_are_reported() {
    let lab = Lab::start("bgpconf-port");
    lab.wait_bird("the mesh session to come up", &["show", "protocols", "n1"], "Established");
    assert!(lab.sockets(&["-l"]).contains("0.0.0.0:179 "), "{}", lab.sockets(&["-l"]));

    lab.set_default(serde_json::json!({"listenPort": 1179, "programClusterRoutes": "Enabled"}));
    wait_until("the agent to listen on 1179 only", WAIT, || {
        let listening = lab.sockets(&["-l"]);
        (listening.contains("0.0.0.0:1179 ") && !listening.contains(":179 ")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", lab.sockets(&["-l"])));
    // BIRD dials 1179: the session re-forms on the agent's new port.
    wait_until("the session on the agent's port 1179", WAIT, || {
        lab.sockets(&["state", "established"]).contains("10.128.0.5:1179 10.128.0.1:").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", lab.sockets(&["state", "established"])));
    lab.wait_bird("BIRD to see it established", &["show", "protocols", "n1"], "Established");

    let expected = serde_json::json!({"unsupported_fields": [{"kind": "BGPConfiguration", "name": "default",
        "field": "programClusterRoutes", "reason": "tortie always programs the routes to every pool's blocks itself"}]});
    wait_until("the unsupported field in the status", WAIT, || {
        tortie::testing::json_subset(&expected, &lab.status()).ok()
    })
    .unwrap_or_else(|e| panic!("{e}: {}", lab.status()));
}

/// `nodeMeshPassword`: nodes `a` and `b` (one datastore) mesh with TCP-MD5 keyed by the Secret
/// it names. Node `c` has its own datastore, recording `a` and `b` as they record it, whose
/// Secret holds another value: its SYNs fail the MD5 check on `a` (the kernel counts them) and
/// its sessions never come up, until its Secret holds the same value (re-keyed live).
#[test]
fn mesh_sessions_use_the_node_mesh_password() {
    const NODES: [(&str, &str); 3] = [("a", "10.129.0.1/24"), ("b", "10.129.0.2/24"), ("c", "10.129.0.3/24")];
    let mut t = Topology::new("meshmd5").unwrap();
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
    let open = |db: &str| {
        let path = dir.join(db);
        rt.block_on(async { Datastore::new(SqliteBackend::open(path, SqliteOptions::default()).await.unwrap()) })
    };
    let (shared, own) = (open("ab.db"), open("c.db"));
    let secret =
        |value: &str| Secret { data: [("password".to_string(), SecretValue(value.as_bytes().to_vec()))].into() };
    let node = |addr: &str| Node {
        bgp: Some(NodeBgp { ipv4_address: addr.parse().ok(), ..NodeBgp::default() }),
        ..Node::default()
    };
    let default: BgpConfiguration = serde_json::from_value(
        serde_json::json!({"nodeMeshPassword": {"secretKeyRef": {"name": "mesh", "key": "password"}}}),
    )
    .unwrap();
    rt.block_on(async {
        shared.create("mesh", &secret("right-one")).await.unwrap();
        shared.create("default", &default).await.unwrap();
        shared.create("c", &node(NODES[2].1)).await.unwrap();
        own.create("mesh", &secret("wrong-one")).await.unwrap();
        own.create("default", &default).await.unwrap();
        own.create("a", &node(NODES[0].1)).await.unwrap();
        own.create("b", &node(NODES[1].1)).await.unwrap();
    });
    for (name, _) in NODES {
        let db = if name == "c" { "c.db" } else { "ab.db" };
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "node: {{name: {name}, address_autodetection: interface=eth0}}\ndatastore: {{sqlite_path: {}}}\n\
                 api: {{socket: {}}}\nmetrics: {{enabled: false}}\n\
                 bgp: {{as_number: 64512, hold_time_seconds: 9, connect_retry_seconds: 1}}\n",
                dir.join(db).display(),
                dir.join(format!("{name}.sock")).display(),
            ),
        )
        .unwrap();
        t.spawn(name, &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    }
    let peers = |name: &str| -> Vec<(String, String)> {
        let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "-o", "json", "--socket"])
            .arg(dir.join(format!("{name}.sock")))
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut peers: Vec<(String, String)> = status["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["address"].as_str().unwrap_or("").to_string(), p["state"].as_str().unwrap_or("").to_string()))
            .collect();
        peers.sort();
        peers
    };
    let up = |name: &str, addr: &str| peers(name).iter().any(|(a, s)| a == addr && s == "established");
    let (a, b, c) = ("10.129.0.1", "10.129.0.2", "10.129.0.3");
    wait_until("a and b to mesh with the password", WAIT, || (up("a", b) && up("b", a)).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; a: {:?}; b: {:?}", peers("a"), peers("b")));
    // c's SYNs carry another key: a's kernel drops them, counting each.
    let md5_failures = || {
        let out = t.exec("a", &["nstat", "-az", "TcpExtTCPMD5Failure"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace().skip_while(|w| *w != "TcpExtTCPMD5Failure").skip(1);
        words.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
    };
    wait_until("a to drop c's SYNs for a wrong MD5 signature", WAIT, || (md5_failures() > 0).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; a: {:?}; c: {:?}", peers("a"), peers("c")));
    assert!(!up("a", c) && !up("c", a) && !up("c", b), "a: {:?}; c: {:?}", peers("a"), peers("c"));

    // The right value in c's Secret: c's sessions are re-keyed and come up.
    rt.block_on(async {
        let stored = own.get::<Secret>("mesh").await.unwrap();
        own.update("mesh", &secret("right-one"), stored.revision).await.unwrap();
    });
    wait_until("c to mesh with a and b", WAIT, || (up("c", a) && up("c", b) && up("a", c)).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; a: {:?}; c: {:?}", peers("a"), peers("c")));
}
