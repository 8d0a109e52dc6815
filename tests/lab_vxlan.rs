//! containerlab/vxlan.clab.yml through the lab runner: three nodes without
//! BGP (Calico's VXLAN-only mode) in two subnets behind a router that knows
//! no pod routes. Every node learns the others' blocks from the datastore;
//! same-subnet pods talk directly, the others through the kernel VXLAN
//! device. A restarted agent writes nothing when nothing changed, and
//! neighbour and FDB entries that are not tortie's stay untouched.
//! containerlab/vxlan-v6.clab.yml: the same with a dual-stack underlay, IPv6
//! pods across the subnets going through `vxlan-v6.tortie`.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;
use support::faults::RouteMonitor;
use support::lab::Lab;
use tortie::testing::{json_subset, wait_until};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn wait_ready(lab: &Lab, node: &str) {
    wait_until(&format!("{node} ready"), Duration::from_secs(90), || (lab.status(node)["ready"] == true).then_some(()))
        .unwrap();
}

fn lines(lab: &Lab, node: &str, argv: &[&str]) -> BTreeSet<String> {
    let out = lab.exec(node, argv);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// What differs between the IPv4 and the IPv6 VXLAN lab.
struct Family {
    /// `ip`'s family flag.
    flag: &'static str,
    device: &'static str,
    /// node2's underlay address: node1 reaches node2's block directly through it.
    node2: &'static str,
    /// The start of the pool's addresses (the router must know none of them).
    pool: &'static str,
}

const V4: Family = Family { flag: "-4", device: "vxlan.tortie", node2: "10.40.1.12", pool: "10.245." };
const V6: Family = Family { flag: "-6", device: "vxlan-v6.tortie", node2: "fd40:1::12", pool: "fd00:245:" };

/// Starts the lab and waits until every node is ready and every pod reaches every other.
fn up_and_talking(lab: &Lab, family: &Family) {
    lab.up();
    for node in NODES {
        wait_ready(lab, node);
    }
    if family.flag == "-6" {
        lab.all_pods_reach_each_other_v6(&NODES);
    } else {
        lab.all_pods_reach_each_other(&NODES);
    }
}

/// node1 reaches node2's pod (`p2`, same subnet) directly and node3's (`p3`,
/// the other subnet) through the family's VXLAN device via node3's tunnel
/// address; the router knows no pod route. Returns node3's tunnel address.
fn paths_are_direct_and_vxlan(lab: &Lab, family: &Family, p2: IpAddr, p3: IpAddr) -> String {
    let direct = lab.route_to_pod("node1", p2).expect("node1 routes node2's block");
    json_subset(&serde_json::json!({"gateway": family.node2, "dev": "eth1"}), &direct).unwrap();
    let vxlan = lab.route_to_pod("node1", p3).expect("node1 routes node3's block");
    json_subset(&serde_json::json!({"dev": family.device, "flags": ["onlink"]}), &vxlan).unwrap();
    let node3 =
        lab.exec_json("node3", &["ip", "-j", family.flag, "addr", "show", "dev", family.device, "scope", "global"]);
    let tunnel3 = node3[0]["addr_info"][0]["local"].as_str().expect("node3's tunnel address").to_string();
    assert!(tunnel3.starts_with(family.pool), "{tunnel3} is from the pool");
    assert_eq!(vxlan["gateway"], tunnel3.as_str(), "{vxlan}");
    let router = Command::new("ip").args(["-n", &lab.ns("router"), "-j", family.flag, "route"]).output().unwrap();
    let router: Vec<serde_json::Value> = serde_json::from_slice(&router.stdout).unwrap();
    assert!(router.iter().all(|r| !r["dst"].as_str().unwrap_or("").starts_with(family.pool)), "{router:?}");
    tunnel3
}

/// Restarts node1's agent with nothing changed and returns what `ip monitor`
/// saw of `objects` meanwhile, once the agent is ready, has done its first
/// full reconcile and its pod still reaches `p3`.
fn restart_node1(lab: &Lab, objects: &[&str], p3: IpAddr) -> Vec<String> {
    let monitor = RouteMonitor::start_objects(&lab.ns("node1"), objects);
    lab.stop_agent("node1", Duration::from_secs(10));
    lab.up();
    wait_ready(lab, "node1");
    // Its first full reconcile (after the learned routes settle) is where stale routes would go.
    wait_until("node1's first reconcile", Duration::from_secs(40), || {
        (lab.metric("node1", "tortie_dataplane_synced")? == 1.0).then_some(())
    })
    .unwrap();
    assert!(lab.pod_ping("node1", "pod1", p3), "pods still talk over VXLAN");
    monitor.all()
}

#[test]
fn pods_talk_over_vxlan_without_bgp_and_a_restart_writes_nothing() {
    let lab = Lab::prepare("vxlan", "tv", |_| {});
    up_and_talking(&lab, &V4);
    // Same subnet: direct. The other subnet: VXLAN, via node3's tunnel address.
    let (p2, p3) = (lab.pod_ip("node2", "pod1").into(), lab.pod_ip("node3", "pod1").into());
    paths_are_direct_and_vxlan(&lab, &V4, p2, p3);
    wait_until("node1's status to show the paths without BGP", Duration::from_secs(30), || {
        let paths = lab.status("node1")["paths"].clone();
        (paths
            == serde_json::json!([{"node": "10.40.1.12", "path": "direct"}, {"node": "10.40.2.13", "path": "vxlan"}]))
        .then_some(())
    })
    .unwrap();
    wait_until("node1's metrics to show the VXLAN path to node3", Duration::from_secs(30), || {
        let v = lab.metric("node1", "tortie_dataplane_node_path{node=\"10.40.2.13\",path=\"vxlan\"}")?;
        (v == 1.0 && lab.metric("node1", "tortie_dataplane_routes{table=\"254\",kind=\"remote_vxlan\"}")? >= 1.0)
            .then_some(())
    })
    .unwrap();

    // Entries that are not tortie's: a neighbour on the underlay and a
    // foreign VXLAN device with its own FDB entry.
    let foreign = [
        "ip neigh add 10.40.1.99 lladdr 02:00:00:00:00:99 dev eth1 nud permanent",
        "ip link add ttforeign type vxlan id 77 dstport 4790 local 10.40.1.11 nolearning",
        "bridge fdb append 00:00:00:00:00:00 dev ttforeign dst 10.40.1.98",
        "ip neigh add 10.77.0.1 lladdr 02:00:00:00:00:77 dev ttforeign nud permanent",
    ];
    for cmd in foreign {
        let argv: Vec<&str> = cmd.split(' ').collect();
        assert!(lab.exec("node1", &argv).status.success(), "{cmd}");
    }
    let neigh_before = lines(&lab, "node1", &["ip", "neigh", "show"]);
    let fdb_before = lines(&lab, "node1", &["bridge", "fdb", "show"]);
    let routes_before = lines(&lab, "node1", &["ip", "route", "show", "proto", "116"]);

    // Restart node1's agent with nothing changed: it adopts everything.
    let ours: Vec<String> = restart_node1(&lab, &["route", "neigh", "nexthop", "link"], p3)
        .into_iter()
        .filter(|l| l.contains("proto 116") || l.contains("vxlan.tortie") || l.contains("nhid"))
        .collect();
    assert!(ours.is_empty(), "the restart wrote: {ours:#?}");
    assert_eq!(lines(&lab, "node1", &["ip", "route", "show", "proto", "116"]), routes_before);
    let neigh_after = lines(&lab, "node1", &["ip", "neigh", "show"]);
    let fdb_after = lines(&lab, "node1", &["bridge", "fdb", "show"]);
    for l in neigh_before
        .iter()
        .filter(|l| l.contains("10.40.1.99") || l.contains("ttforeign") || l.contains("vxlan.tortie"))
    {
        assert!(neigh_after.contains(l), "neighbour entry gone or changed: {l}");
    }
    for l in fdb_before.iter().filter(|l| l.contains("ttforeign") || l.contains("vxlan.tortie")) {
        assert!(fdb_after.contains(l), "FDB entry gone or changed: {l}");
    }
}

#[test]
fn with_bgp_the_vxlan_path_shows_per_peer_in_status() {
    let lab = Lab::prepare("vxlan", "tw", |dir| {
        let conf = dir.join("vxlan/node.yaml");
        let text = std::fs::read_to_string(&conf).unwrap().replace("  enabled: false\n", "  as_number: 64512\n");
        std::fs::write(conf, text).unwrap();
    });
    lab.up();
    let status = wait_until("node1 ready with both peers established", Duration::from_secs(90), || {
        let s = lab.status("node1");
        let up = s["peers"].as_array()?.iter().filter(|p| p["state"] == "established").count();
        (s["ready"] == true && up == 2).then_some(s)
    })
    .unwrap();
    let p3 = lab.pod_ip("node3", "pod1");
    wait_until("node1/pod1 to ping node3/pod1 over VXLAN", Duration::from_secs(60), || {
        lab.pod_ping("node1", "pod1", p3).then_some(())
    })
    .unwrap();
    let modes = |s: &serde_json::Value| -> BTreeSet<(String, String)> {
        s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["address"].as_str().unwrap().to_string(), p["tunnel_mode"].as_str().unwrap().to_string()))
            .collect()
    };
    let want: BTreeSet<(String, String)> =
        [("10.40.1.12".into(), "direct".into()), ("10.40.2.13".into(), "vxlan".into())].into();
    wait_until("node1's status to show the path per peer", Duration::from_secs(30), || {
        (modes(&lab.status("node1")) == want).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", modes(&status)));
    let vxlan = lab.route_to_pod("node1", p3).expect("node1 routes node3's block");
    json_subset(&serde_json::json!({"dev": "vxlan.tortie", "flags": ["onlink"]}), &vxlan).unwrap();
}

#[test]
fn ipv6_pods_talk_across_subnets_over_vxlan_v6_without_bgp() {
    let lab = Lab::prepare("vxlan-v6", "tv6", |_| {});
    up_and_talking(&lab, &V6);
    // Same subnet: direct via node2's IPv6 address. The other subnet: VXLAN over
    // IPv6, via node3's IPv6 tunnel address, which its Node publishes with the MAC.
    let (p2, p3) = (lab.pod_ip6("node2", "pod1").into(), lab.pod_ip6("node3", "pod1").into());
    let tunnel3 = paths_are_direct_and_vxlan(&lab, &V6, p2, p3);
    let link = lab.exec_json("node3", &["ip", "-j", "-d", "link", "show", "dev", "vxlan-v6.tortie"]);
    assert_eq!(link[0]["linkinfo"]["info_data"]["local6"], "fd40:2::13", "{link}");
    // node1's device knows node3's endpoint: tunnel address → MAC → IPv6 underlay.
    let mac3 = lab.exec_json("node3", &["ip", "-j", "link", "show", "dev", "vxlan-v6.tortie"])[0]["address"]
        .as_str()
        .expect("node3's device MAC")
        .to_string();
    let neigh = lines(&lab, "node1", &["ip", "-6", "neigh", "show", "dev", "vxlan-v6.tortie"]);
    assert!(neigh.iter().any(|l| l.starts_with(&format!("{tunnel3} lladdr {mac3} PERMANENT"))), "{neigh:?}");
    let fdb = lines(&lab, "node1", &["bridge", "fdb", "show", "dev", "vxlan-v6.tortie"]);
    assert!(fdb.iter().any(|l| l.starts_with(&format!("{mac3} dst fd40:2::13 "))), "{fdb:?}");
    // The IPv4 pods still take their own device.
    let vxlan4 = lab.route_to_pod("node1", lab.pod_ip("node3", "pod1")).expect("node1 routes node3's IPv4 block");
    json_subset(&serde_json::json!({"dev": "vxlan.tortie", "flags": ["onlink"]}), &vxlan4).unwrap();
    // Pods fit the larger overhead: VXLAN over IPv6 (70 bytes) under the lab's 9500.
    let pod = Command::new("ip").args(["-n", &lab.pod_ns("node1", "pod1"), "-j", "link", "show", "eth0"]).output();
    let pod: serde_json::Value = serde_json::from_slice(&pod.unwrap().stdout).unwrap();
    assert_eq!(pod[0]["mtu"], 9430, "{pod}");

    // A restart with nothing changed adopts the IPv6 device, its entries and routes.
    let routes_before = lines(&lab, "node1", &["ip", "-6", "route", "show", "proto", "116"]);
    let ours: Vec<String> = restart_node1(&lab, &["route", "neigh", "link"], p3)
        .into_iter()
        .filter(|l| l.contains("proto 116") || l.contains("vxlan-v6.tortie"))
        .collect();
    assert!(ours.is_empty(), "the restart wrote: {ours:#?}");
    assert_eq!(lines(&lab, "node1", &["ip", "-6", "route", "show", "proto", "116"]), routes_before);
}

#[test]
fn with_bgp_ipv6_pods_talk_across_subnets_over_vxlan_v6() {
    let lab = Lab::prepare("vxlan-v6", "tb6", |dir| {
        let conf = dir.join("vxlan-v6/node.yaml");
        let text = std::fs::read_to_string(&conf).unwrap().replace("  enabled: false\n", "  as_number: 64512\n");
        std::fs::write(conf, text).unwrap();
    });
    lab.up();
    for node in NODES {
        wait_ready(&lab, node);
    }
    lab.all_pods_reach_each_other_v6(&NODES);
    let p3 = lab.pod_ip6("node3", "pod1");
    let vxlan = lab.route_to_pod("node1", p3).expect("node1 routes node3's IPv6 block");
    json_subset(&serde_json::json!({"dev": "vxlan-v6.tortie", "flags": ["onlink"]}), &vxlan).unwrap();
}
