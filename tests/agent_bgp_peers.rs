//! BGPPeer resources drive a running agent's peers: a global BGPPeer
//! created in the datastore brings up a session with a real BIRD, which
//! learns the node's block; deleting the resource removes the session. A
//! BGPPeer's password comes from a Secret record: a BIRD that requires MD5
//! establishes the session once the Secret exists, and drops it when the
//! Secret changes to another key. A BGPFilter keeps one of the node's blocks
//! from BIRD and one of BIRD's routes from the node's RIB, and is followed live.

mod support;

use std::process::Command;
use std::time::Duration;
use support::daemons::{birdc, start_bird};
use tortie::datastore::Datastore;
use tortie::datastore::resources::{BgpFilter, BgpPeer, IpPool, Secret, SecretKeyRef, SecretSource, SecretValue};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::ipam::{Ipam, IpamOptions, Request};
use tortie::netns::Topology;
use tortie::testing::{json_subset, wait_until};

/// A node `n` (10.`net`.0.5) and a ToR namespace `tor` (10.`net`.0.1) on one link, the agent's
/// configuration (metrics on `metrics_port`, `extra` YAML appended) and the datastore beside it.
struct Site {
    t: Topology,
    socket: std::path::PathBuf,
    config: std::path::PathBuf,
    rt: tokio::runtime::Runtime,
    ds: Datastore,
}

impl Site {
    fn new(name: &str, net: u8, metrics_port: u16, extra: &str) -> Site {
        let mut t = Topology::new(name).unwrap();
        t.add_namespace("n").unwrap();
        t.add_namespace("tor").unwrap();
        let (node, tor) = (format!("10.{net}.0.5/24"), format!("10.{net}.0.1/24"));
        t.add_veth(("n", "eth1", Some(&node)), ("tor", "eth1", Some(&tor))).unwrap();
        let dir = t.dir().to_path_buf();
        let (db, socket, config) = (dir.join("tortie.db"), dir.join("api.sock"), dir.join("tortie.yaml"));
        std::fs::write(
            &config,
            format!(
                "node: {{name: n1, address_autodetection: interface=eth1}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\n\
                 metrics: {{listen: \"127.0.0.1:{metrics_port}\"}}\nbgp: {{as_number: 64512, hold_time_seconds: 9}}\n{extra}",
                db.display(),
                socket.display()
            ),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ds =
            rt.block_on(async { Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap()) });
        Site { t, socket, config, rt, ds }
    }

    /// Starts the agent and waits until it answers on its socket.
    /// The topology owns the process and ends it when dropped.
    fn start_agent(&mut self) {
        let config = self.config.to_str().unwrap().to_string();
        self.t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", &config]).unwrap();
        wait_until("the agent to answer", Duration::from_secs(30), || self.status()["node"].as_str().map(|_| ()))
            .unwrap();
    }

    /// `tortie ARGS --socket <the agent's>`, its standard output.
    fn tortie(&self, args: &[&str]) -> String {
        let out =
            Command::new(env!("CARGO_BIN_EXE_tortie")).args(args).arg("--socket").arg(&self.socket).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.tortie(&["status", "-o", "json"])).unwrap_or_default()
    }
}

#[test]
fn a_bgppeer_resource_adds_and_removes_a_session_live() {
    let mut site = Site::new("bgppeers", 126, 19481, "ipam: {default_ipv4_pool_cidr: 10.251.0.0/16}\n");
    let ctl = start_bird(
        &mut site.t,
        "tor",
        "router id 10.126.0.1;\nprotocol device {}\nprotocol bgp n1 {\n  local 10.126.0.1 as 65001;\n  neighbor 10.126.0.5 as 64512;\n  hold time 9;\n  connect retry time 1;\n  ipv4 { import all; export none; };\n}\n",
    );
    site.start_agent();
    let (t, rt, ds) = (&site.t, &site.rt, &site.ds);
    let status = || site.status();
    let peer = BgpPeer { peer_ip: Some("10.126.0.1".into()), as_number: Some(65001), ..BgpPeer::default() };
    rt.block_on(ds.create("tor1", &peer)).unwrap();

    let expected = serde_json::json!({"peers": [{"address": "10.126.0.1", "as_number": 65001, "type": "global", "state": "established"}]});
    wait_until("the BGPPeer's session to come up", Duration::from_secs(30), || json_subset(&expected, &status()).ok())
        .unwrap();
    wait_until("BIRD to see the session established", Duration::from_secs(30), || {
        birdc(t, "tor", &ctl, &["show", "protocols", "n1"]).contains("Established").then_some(())
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

/// A peer the node has no route to (an address on the ToR's loopback) is reached through the
/// gateway `reachableBy` names: the agent programs the host route (its own protocol), the session
/// comes up over it, and the route goes with the BGPPeer.
#[test]
fn reachable_by_programs_the_host_route_the_session_needs() {
    let mut site = Site::new("bgpreach", 131, 19484, "ipam: {default_ipv4_pool_cidr: 10.253.0.0/16}\n");
    site.t.exec("tor", &["ip", "addr", "add", "10.131.9.9/32", "dev", "lo"]).unwrap();
    // iBGP, so BIRD peers from its loopback address without TTL tricks.
    let ctl = start_bird(
        &mut site.t,
        "tor",
        "router id 10.131.9.9;\nprotocol device {}\nprotocol bgp n1 {\n  local 10.131.9.9 as 64512;\n  neighbor 10.131.0.5 as 64512;\n  hold time 9;\n  connect retry time 1;\n  ipv4 { import all; export none; };\n}\n",
    );
    site.start_agent();
    let (t, rt, ds) = (&site.t, &site.rt, &site.ds);
    let status = || site.status();
    let host_route = || {
        let out = t.exec("n", &["ip", "-4", "route", "show", "10.131.9.9/32"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let peer = BgpPeer {
        peer_ip: Some("10.131.9.9".into()),
        as_number: Some(64512),
        reachable_by: Some("10.131.0.1".into()),
        ..BgpPeer::default()
    };
    rt.block_on(ds.create("tor-loopback", &peer)).unwrap();
    wait_until("the host route through the gateway", Duration::from_secs(30), || {
        let route = host_route();
        (route.contains("via 10.131.0.1") && route.contains("proto 116")).then_some(())
    })
    .unwrap();
    let expected = serde_json::json!({"peers": [{"address": "10.131.9.9", "state": "established"}]});
    wait_until("the session over the host route", Duration::from_secs(30), || json_subset(&expected, &status()).ok())
        .unwrap();
    wait_until("BIRD to see it established", Duration::from_secs(30), || {
        birdc(t, "tor", &ctl, &["show", "protocols", "n1"]).contains("Established").then_some(())
    })
    .unwrap();

    rt.block_on(async {
        let stored = ds.get::<BgpPeer>("tor-loopback").await.unwrap();
        ds.delete::<BgpPeer>("tor-loopback", stored.revision).await.unwrap();
    });
    wait_until("the host route to go with the BGPPeer", Duration::from_secs(30), || {
        host_route().trim().is_empty().then_some(())
    })
    .unwrap();
}

#[test]
fn a_bgppeer_password_from_a_secret_is_the_md5_key_and_follows_the_secret() {
    let mut site = Site::new("bgpmd5", 127, 19482, "ipam: {default_ipv4_pool_cidr: 10.252.0.0/16}\n");
    let ctl = start_bird(
        &mut site.t,
        "tor",
        "router id 10.127.0.1;\nprotocol device {}\nprotocol bgp n1 {\n  local 10.127.0.1 as 65001;\n  neighbor 10.127.0.5 as 64512;\n  password \"s3cr3t\";\n  hold time 9;\n  connect retry time 1;\n  ipv4 { import all; export none; };\n}\n",
    );
    site.start_agent();
    let (t, rt, ds) = (&site.t, &site.rt, &site.ds);
    let status = || site.status();
    let reference = SecretKeyRef { name: "tor-md5".into(), key: "password".into(), optional: false };
    let peer = BgpPeer {
        peer_ip: Some("10.127.0.1".into()),
        as_number: Some(65001),
        password: Some(SecretSource { secret_key_ref: reference }),
        ..BgpPeer::default()
    };
    rt.block_on(ds.create("tor1", &peer)).unwrap();
    let secret = |value: &[u8]| Secret { data: [("password".to_string(), SecretValue(value.to_vec()))].into() };
    rt.block_on(ds.create("tor-md5", &secret(b"s3cr3t"))).unwrap();

    let established = serde_json::json!({"peers": [{"address": "10.127.0.1", "state": "established"}]});
    wait_until("the MD5 session to come up", Duration::from_secs(40), || json_subset(&established, &status()).ok())
        .unwrap();
    wait_until("BIRD to see the session established", Duration::from_secs(30), || {
        birdc(t, "tor", &ctl, &["show", "protocols", "n1"]).contains("Established").then_some(())
    })
    .unwrap();

    // Another key in the Secret: the session restarts with it, and BIRD no longer accepts it.
    rt.block_on(async {
        let stored = ds.get::<Secret>("tor-md5").await.unwrap();
        ds.update("tor-md5", &secret(b"wrong"), stored.revision).await.unwrap();
    });
    wait_until("the session to end with the changed key", Duration::from_secs(40), || {
        (!birdc(t, "tor", &ctl, &["show", "protocols", "n1"]).contains("Established")).then_some(())
    })
    .unwrap();
}

#[test]
fn a_bgpfilter_rejects_an_export_and_an_import_and_is_followed_live() {
    let mut site = Site::new("bgpfilter", 128, 19483, "");
    let (rt, ds) = (&site.rt, &site.ds);
    // Two pools, so the node has a block in each to announce; the RIB reads the pools at start.
    let (kept, filtered) = ("10.253.0.0/16", "10.254.0.0/16");
    rt.block_on(async {
        for (name, cidr) in [("kept", kept), ("filtered", filtered)] {
            ds.create(name, &IpPool { block_size: 26, ..IpPool::new(cidr.parse().unwrap()) }).await.unwrap();
        }
    });
    let filter = |import_rule: bool| -> BgpFilter {
        let import = if import_rule {
            serde_json::json!([{"action": "Reject", "cidr": "10.98.0.0/24", "matchOperator": "Equal"}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "exportV4": [{"action": "Reject", "cidr": filtered, "matchOperator": "In"}],
            "importV4": import,
        }))
        .unwrap()
    };
    rt.block_on(ds.create("tor-filter", &filter(true))).unwrap();
    let ctl = start_bird(
        &mut site.t,
        "tor",
        "router id 10.128.0.1;\nprotocol device {}\nprotocol static { ipv4; route 10.98.0.0/24 blackhole; route 10.99.0.0/24 blackhole; }\n\
         protocol bgp n1 {\n  local 10.128.0.1 as 65001;\n  neighbor 10.128.0.5 as 64512;\n  hold time 9;\n  connect retry time 1;\n  ipv4 { import all; export all; };\n}\n",
    );
    site.start_agent();
    let (t, rt, ds) = (&site.t, &site.rt, &site.ds);
    let tortie = |args: &[&str]| site.tortie(args);
    let status = || site.status();
    let peer = BgpPeer {
        peer_ip: Some("10.128.0.1".into()),
        as_number: Some(65001),
        filters: vec!["tor-filter".into()],
        ..BgpPeer::default()
    };
    rt.block_on(ds.create("tor1", &peer)).unwrap();
    // A block in each pool, the filtered one first.
    rt.block_on(async {
        let ipam = Ipam::new(ds.clone(), IpamOptions { node: "n1".into(), ..IpamOptions::default() });
        for (handle, pool) in [("h-filtered", filtered), ("h-kept", kept)] {
            let mut request = Request::workload(handle, 4, handle, "default", "n1");
            request.pools = vec![pool.parse().unwrap()];
            ipam.allocate(request).await.unwrap();
        }
    });

    let bird_routes = || birdc(t, "tor", &ctl, &["show", "route", "protocol", "n1"]);
    let rib = || tortie(&["bgp", "routes", "-o", "json"]);
    wait_until("BIRD to learn the block of the kept pool", Duration::from_secs(40), || {
        bird_routes().contains("10.253.").then_some(())
    })
    .unwrap();
    wait_until("the node's RIB to hold both blocks and BIRD's accepted route", Duration::from_secs(30), || {
        let r = rib();
        (r.contains("10.253.") && r.contains("10.254.") && r.contains("10.99.0.0/24")).then_some(())
    })
    .unwrap();
    let advertised = serde_json::json!({"peers": [{"address": "10.128.0.1", "prefixes_advertised": 1}]});
    wait_until("one prefix advertised", Duration::from_secs(30), || json_subset(&advertised, &status()).ok()).unwrap();
    let learned = bird_routes();
    assert!(!learned.contains("10.254."), "the export filter keeps the filtered pool's block from BIRD: {learned}");
    let r = rib();
    assert!(!r.contains("10.98.0.0/24"), "the import filter keeps 10.98.0.0/24 out of the RIB: {r}");

    // Without the import rule, the route comes in.
    rt.block_on(async {
        let stored = ds.get::<BgpFilter>("tor-filter").await.unwrap();
        ds.update("tor-filter", &filter(false), stored.revision).await.unwrap();
    });
    wait_until("10.98.0.0/24 in the RIB once the rule is gone", Duration::from_secs(40), || {
        rib().contains("10.98.0.0/24").then_some(())
    })
    .unwrap();
}

/// `tortie bgp routes PREFIX [--longer] [--peer ADDR]` asks the running agent for part of its RIB,
/// as birdc's `show route for`: two BIRDs (ToRs `tor` and `tor2`) announce the same four prefixes.
#[test]
fn bgp_routes_selects_the_longest_match_the_more_specifics_and_one_peers_paths() {
    let mut site = Site::new("bgproutes", 132, 19485, "");
    site.t.add_namespace("tor2").unwrap();
    site.t.add_veth(("n", "eth2", Some("10.133.0.5/24")), ("tor2", "eth1", Some("10.133.0.1/24"))).unwrap();
    for (ns, local, node) in [("tor", "10.132.0.1", "10.132.0.5"), ("tor2", "10.133.0.1", "10.133.0.5")] {
        let config = format!(
            "router id {local};\nprotocol device {{}}\nprotocol static {{ ipv4; route 10.50.0.0/16 blackhole; \
             route 10.50.1.0/24 blackhole; route 10.50.1.128/25 blackhole; route 10.60.0.0/16 blackhole; }}\n\
             protocol bgp n1 {{\n  local {local} as 65001;\n  neighbor {node} as 64512;\n  hold time 9;\n  \
             connect retry time 1;\n  ipv4 {{ import none; export all; }};\n}}\n"
        );
        start_bird(&mut site.t, ns, &config);
    }
    site.start_agent();
    for (name, address) in [("tor-a", "10.132.0.1"), ("tor-b", "10.133.0.1")] {
        let peer = BgpPeer { peer_ip: Some(address.into()), as_number: Some(65001), ..BgpPeer::default() };
        site.rt.block_on(site.ds.create(name, &peer)).unwrap();
    }
    // (prefix, peer) of each path `tortie bgp routes ARGS -o json` prints.
    let paths = |args: &[&str]| -> Vec<(String, String)> {
        let mut all = vec!["bgp", "routes", "-o", "json"];
        all.extend_from_slice(args);
        let answer: serde_json::Value = serde_json::from_str(&site.tortie(&all)).unwrap_or_default();
        let routes = answer["routes"].as_array().cloned().unwrap_or_default();
        let learned = routes.iter().filter(|r| r["peer"].is_string());
        learned.map(|r| (r["prefix"].as_str().unwrap().into(), r["peer"].as_str().unwrap().into())).collect()
    };
    let both = |prefixes: &[&str]| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = prefixes
            .iter()
            .flat_map(|p| ["10.132.0.1", "10.133.0.1"].map(|peer| (p.to_string(), peer.to_string())))
            .collect();
        out.sort();
        out
    };
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };
    wait_until("both sessions' four prefixes in the RIB", Duration::from_secs(40), || {
        (paths(&[]).len() == 8).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}{}", site.tortie(&["bgp", "peers"]), site.tortie(&["bgp", "routes"])));

    assert_eq!(sorted(paths(&["10.50.1.200"])), both(&["10.50.1.128/25"]), "an address: its longest match");
    assert_eq!(sorted(paths(&["10.50.1.0/24"])), both(&["10.50.1.0/24"]), "a prefix in the RIB: itself");
    assert_eq!(sorted(paths(&["10.50.9.0/24"])), both(&["10.50.0.0/16"]), "a prefix not in the RIB: its cover");
    assert_eq!(
        sorted(paths(&["10.50.0.0/16", "--longer"])),
        both(&["10.50.0.0/16", "10.50.1.0/24", "10.50.1.128/25"]),
        "--longer: every prefix within"
    );
    let from_b = sorted(paths(&["10.50.0.0/16", "--longer", "--peer", "10.133.0.1"]));
    let expected: Vec<(String, String)> = both(&["10.50.0.0/16", "10.50.1.0/24", "10.50.1.128/25"])
        .into_iter()
        .filter(|(_, peer)| peer == "10.133.0.1")
        .collect();
    assert_eq!(from_b, expected, "--peer: that peer's paths only");
    assert!(paths(&["192.0.2.1"]).is_empty(), "no covering prefix: no route");

    let table = site.tortie(&["bgp", "routes", "10.60.0.1"]);
    assert!(table.contains("| 10.60.0.0/16 |") && !table.contains("10.50."), "{table}");
    // Bad input is refused with the value named, before the agent is asked.
    let refused = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["bgp", "routes", "10.50.0.0/99", "--socket"])
        .arg(&site.socket)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("10.50.0.0/99"), "{refused:?}");
}

/// Calico's own example resources (`tests/data/calico/calicoctl-export.yaml`: BGPPeers to route
/// reflectors chosen by label, a ToR peering with MD5 from a Secret, TTL security and a
/// BGPFilter, a BGPConfiguration in asdot with the mesh off) go through `tortie migrate
/// from-calico` into the datastore two agents run on; the Secret is copied by hand, as the
/// migration report asks. The topology they describe forms: node-b peers only with node-a, the
/// labelled reflector; BIRD, requiring MD5 and GTSM as the ToR, has node-a's session up and
/// learns only pod blocks through the filter.
#[test]
fn calicos_example_resources_migrated_form_their_topology() {
    const EXPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/calico/calicoctl-export.yaml");
    const NODES: [(&str, &str); 3] =
        [("node-a", "192.168.1.10/24"), ("node-b", "192.168.1.11/24"), ("tor", "192.168.1.1/24")];
    let mut t = Topology::new("calicoex").unwrap();
    t.add_namespace("sw").unwrap();
    t.add_bridge("sw", "br0").unwrap();
    for (i, (name, addr)) in NODES.iter().enumerate() {
        t.add_namespace(name).unwrap();
        let port = format!("p{i}");
        t.add_veth((name, "eth0", Some(addr)), ("sw", &port, None)).unwrap();
        t.exec("sw", &["ip", "link", "set", &port, "master", "br0"]).unwrap();
    }
    let dir = t.dir().to_path_buf();
    let db = dir.join("tortie.db");
    let admin = dir.join("admin.yaml");
    std::fs::write(&admin, format!("datastore: {{sqlite_path: {}}}\n", db.display())).unwrap();
    let migrated = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["migrate", "from-calico", EXPORT, "--config", admin.to_str().unwrap()])
        .env_remove("TORTIE_CONFIG")
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    // Secret values are never migrated: the operator copies the Secret as Kubernetes prints it.
    let secret = dir.join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-passwords, namespace: calico-system, uid: 8d9e0f1a}\n\
         type: Opaque\ndata: {tor-rack-1: c2VjcmV0LWZyb20tdGhlLXRvcg==}\n",
    )
    .unwrap();
    let applied = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["apply", "-f", secret.to_str().unwrap(), "--config", admin.to_str().unwrap()])
        .env_remove("TORTIE_CONFIG")
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    // A pod of node-a's from a pool outside the filter's CIDR (and outside the service CIDR the
    // BGPConfiguration names): its block is announced, and the filter must keep it from the ToR
    // while node-b still learns it.
    const OUTSIDE: &str = "172.30.0.0/16";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
        tortie::ipam::create_pool(&ds, "outside", &IpPool::new(OUTSIDE.parse().unwrap())).await.unwrap();
        let ipam = Ipam::new(ds, IpamOptions { node: "node-a".into(), ..IpamOptions::default() });
        let request = Request {
            pools: vec![OUTSIDE.parse().unwrap()],
            ..Request::workload("h-out", 4, "out", "default", "node-a")
        };
        ipam.allocate(request).await.unwrap();
    });
    let ctl = start_bird(
        &mut t,
        "tor",
        "router id 192.168.1.1;\nprotocol device {}\nprotocol bgp node_a {\n  local 192.168.1.1 as 65010;\n\
         neighbor 192.168.1.10 as 65546;\n  password \"secret-from-the-tor\";\n  ttl security on;\n  hold time 9;\n\
         connect retry time 1;\n  ipv4 { import all; export none; };\n}\n",
    );
    for (name, _) in &NODES[..2] {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "node: {{name: {name}, address_autodetection: interface=eth0}}\ndatastore: {{sqlite_path: {}}}\n\
                 api: {{socket: {}}}\nmetrics: {{enabled: false}}\n\
                 bgp: {{hold_time_seconds: 9, connect_retry_seconds: 1}}\n",
                db.display(),
                dir.join(format!("{name}.sock")).display(),
            ),
        )
        .unwrap();
        t.spawn(name, &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    }
    let established = |name: &str| -> Vec<String> {
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
    };
    let bird = |args: &[&str]| birdc(&t, "tor", &ctl, args).split_whitespace().collect::<Vec<_>>().join(" ");
    let wait = Duration::from_secs(60);
    wait_until("node-a's MD5 session with the ToR", wait, || {
        bird(&["show", "protocols", "node_a"]).contains("Established").then_some(())
    })
    .unwrap_or_else(|e| {
        panic!("{e}; BIRD: {}; node-a: {:?}", bird(&["show", "protocols", "all", "node_a"]), established("node-a"))
    });
    wait_until("node-b to peer with the reflector only", wait, || {
        (established("node-b") == ["192.168.1.10"]).then_some(())
    })
    .unwrap_or_else(|e| {
        let status = |n: &str| {
            let argv = [env!("CARGO_BIN_EXE_tortie"), "status", "-o", "json", "--socket"];
            let out = Command::new(argv[0]).args(&argv[1..]).arg(dir.join(format!("{n}.sock"))).output().unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        panic!("{e}; node-b: {}; node-a: {}", status("node-b"), status("node-a"))
    });
    wait_until("node-a to peer with node-b and the ToR", wait, || {
        (established("node-a") == ["192.168.1.1", "192.168.1.11"]).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; node-a: {:?}", established("node-a")));
    // node-a's tunnel address claimed it a block of the pool; the ToR learns it through the filter.
    wait_until("BIRD to learn a pod block from node-a", wait, || {
        bird(&["show", "route"]).contains("10.244.").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; BIRD: {}", bird(&["show", "route"])));
    let routes = bird(&["show", "route", "protocol", "node_a"]);
    let pods: ipnetwork::IpNetwork = "10.244.0.0/16".parse().unwrap();
    let prefixes: Vec<ipnetwork::IpNetwork> =
        routes.split(' ').filter(|w| w.contains('/')).filter_map(|w| w.parse().ok()).collect();
    assert!(
        !prefixes.is_empty() && prefixes.iter().all(|p| pods.contains(p.ip())),
        "only pod blocks pass export-pods-only: {routes}"
    );
    // node-b learns node-a's block outside the pod range (no filter there), so node-a announces
    // it; BIRD, after the session has sent everything, still holds none of it.
    let outside: ipnetwork::IpNetwork = OUTSIDE.parse().unwrap();
    wait_until("node-b to route node-a's block outside the pod range", wait, || {
        let out = t.exec("node-b", &["ip", "-4", "route", "show", "proto", "116"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains("172.30.").then_some(())
    })
    .unwrap();
    let routes = bird(&["show", "route", "protocol", "node_a"]);
    assert!(
        !routes.split(' ').filter_map(|w| w.parse::<ipnetwork::IpNetwork>().ok()).any(|p| outside.contains(p.ip())),
        "export-pods-only drops {OUTSIDE} at the ToR: {routes}"
    );
}
