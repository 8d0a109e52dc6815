//! Kernel VXLAN against a real kernel: two nodes in namespaces joined by a
//! veth, each with its vxlan device and the other's VTEP entries, pinging
//! between pod addresses over IPv4 and IPv6 underlays; the device adopted
//! or replaced; VTEP entries reconciled without needless writes, repaired
//! after a hand deletion, foreign entries left alone; the task following
//! its watch.

use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;
use tortie::dataplane::netlink::RouteSocket;
use tortie::netns::{Topology, run_in_namespace};
use tortie::testing::{wait_until, wait_until_async};
use tortie::vxlan::{
    self, DEFAULT_PORT, DEFAULT_VNI, DEVICE_V4, DEVICE_V6, Device, DeviceConfig, OVERHEAD_V4, OVERHEAD_V6,
    ReconcileStats, Vtep,
};

const UNDERLAY_MTU: u32 = 1500;

/// The addresses of node `i` (1 or 2) over one underlay family.
struct Plan {
    v6: bool,
}

impl Plan {
    fn device(&self) -> &'static str {
        if self.v6 { DEVICE_V6 } else { DEVICE_V4 }
    }
    fn underlay(&self, i: u8) -> String {
        if self.v6 { format!("fd00:9::{i}") } else { format!("10.9.0.{i}") }
    }
    fn underlay_cidr(&self, i: u8) -> String {
        format!("{}/{}", self.underlay(i), if self.v6 { 64 } else { 24 })
    }
    fn tunnel(&self, i: u8) -> String {
        if self.v6 { format!("fd10::{i}:0") } else { format!("10.244.{i}.0") }
    }
    fn pod(&self, i: u8) -> String {
        if self.v6 { format!("fd20::{i}") } else { format!("10.244.{i}.1") }
    }
    fn host_len(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }
    fn mtu(&self) -> u32 {
        UNDERLAY_MTU - if self.v6 { OVERHEAD_V6 } else { OVERHEAD_V4 }
    }
    fn config(&self, t: &Topology, i: u8) -> DeviceConfig {
        DeviceConfig {
            name: self.device().into(),
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
            parent_ifindex: ifindex(t, &node(i), "eth1"),
            local: self.underlay(i).parse().unwrap(),
            mtu: self.mtu(),
            address: Some(self.tunnel(i).parse().unwrap()),
        }
    }
}

fn node(i: u8) -> String {
    format!("n{i}")
}

/// Two nodes joined by `eth1` (addresses without duplicate address
/// detection, usable at once).
fn two_nodes(label: &str, plan: &Plan) -> Topology {
    let mut t = Topology::new(label).unwrap();
    t.add_namespace("n1").unwrap();
    t.add_namespace("n2").unwrap();
    t.add_veth(("n1", "eth1", None), ("n2", "eth1", None)).unwrap();
    for i in [1, 2] {
        t.exec(&node(i), &["ip", "addr", "add", &plan.underlay_cidr(i), "dev", "eth1", "nodad"]).unwrap();
    }
    t
}

fn ifindex(t: &Topology, ns: &str, dev: &str) -> u32 {
    t.exec_json(ns, &["ip", "-j", "link", "show", dev]).unwrap()[0]["ifindex"].as_u64().unwrap() as u32
}

/// Runs `f` with a route socket inside namespace `ns` of `t`.
fn with_socket<T: Send>(t: &Topology, ns: &str, f: impl FnOnce(&mut RouteSocket) -> T + Send) -> T {
    run_in_namespace(&t.ns(ns), || f(&mut RouteSocket::open().unwrap())).unwrap()
}

fn ensure(t: &Topology, ns: &str, cfg: &DeviceConfig) -> Device {
    with_socket(t, ns, |s| vxlan::ensure_device(s, cfg)).unwrap()
}

fn reconcile(t: &Topology, ns: &str, ifindex: u32, vteps: &[Vtep]) -> ReconcileStats {
    with_socket(t, ns, |s| vxlan::reconcile(s, ifindex, vteps)).unwrap()
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn link_details(t: &Topology, ns: &str, dev: &str) -> Value {
    t.exec_json(ns, &["ip", "-d", "-j", "link", "show", dev]).unwrap()[0].clone()
}

/// Our permanent neighbours on `dev`: (address, MAC).
fn neighbours(t: &Topology, ns: &str, dev: &str) -> Pairs {
    let all = t.exec_json(ns, &["ip", "-j", "neigh", "show", "dev", dev, "nud", "permanent"]).unwrap();
    let mut out: Pairs = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["dst"].as_str().unwrap().to_string(), n["lladdr"].as_str().unwrap_or_default().to_string()))
        .collect();
    out.sort();
    out
}

/// The FDB entries of `dev` itself: (MAC, destination).
fn fdb(t: &Topology, ns: &str, dev: &str) -> Pairs {
    let all = t.exec_json(ns, &["bridge", "-j", "fdb", "show", "dev", dev]).unwrap();
    let mut out: Pairs = all
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["mac"].as_str().unwrap().to_string(), f["dst"].as_str().unwrap_or_default().to_string()))
        .collect();
    out.sort();
    out
}

fn pods_talk_across(plan: Plan) {
    let t = two_nodes(if plan.v6 { "vxping6" } else { "vxping4" }, &plan);
    let devices: Vec<Device> = [1, 2].iter().map(|&i| ensure(&t, &node(i), &plan.config(&t, i))).collect();
    for (i, j) in [(1u8, 2u8), (2, 1)] {
        let ns = node(i);
        let other = Vtep {
            underlay: plan.underlay(j).parse().unwrap(),
            tunnel: plan.tunnel(j).parse().unwrap(),
            mac: devices[usize::from(j) - 1].mac,
        };
        let stats = reconcile(&t, &ns, devices[usize::from(i) - 1].ifindex, &[other]);
        assert_eq!(stats, ReconcileStats { added: 2, replaced: 0, deleted: 0 });
        let pod = format!("{}/{}", plan.pod(i), plan.host_len());
        t.exec(&ns, &["ip", "addr", "add", &pod, "dev", "lo", "nodad"]).unwrap();
        let other_pod = format!("{}/{}", plan.pod(j), plan.host_len());
        t.exec(&ns, &["ip", "route", "add", &other_pod, "via", &plan.tunnel(j), "dev", plan.device(), "onlink"])
            .unwrap();
        let link = link_details(&t, &ns, plan.device());
        assert_eq!(link["mtu"], UNDERLAY_MTU - if plan.v6 { 70 } else { 50 });
        assert_eq!(link["linkinfo"]["info_kind"], "vxlan");
        let info = &link["linkinfo"]["info_data"];
        assert_eq!(
            (info["id"].as_u64(), info["port"].as_u64(), info["learning"].as_bool()),
            (Some(4096), Some(4789), Some(false))
        );
        if plan.v6 {
            assert_eq!(info["udp_zero_csum6_tx"], true, "{info}");
        } else {
            assert_eq!(info["udp_csum"], false, "no outer UDP checksum over IPv4: {info}");
        }
        let addrs = t.exec_json(&ns, &["ip", "-j", "addr", "show", "dev", plan.device(), "scope", "global"]).unwrap();
        assert_eq!(addrs[0]["addr_info"][0]["local"], plan.tunnel(i).as_str(), "{addrs}");
    }
    let ping = if plan.v6 { "-6" } else { "-4" };
    wait_until("a ping across the vxlan device", Duration::from_secs(10), || {
        t.exec("n1", &["ping", ping, "-c", "1", "-W", "1", "-q", "-I", &plan.pod(1), &plan.pod(2)]).ok()
    })
    .unwrap();
    // The encapsulated packets went over the underlay: the device counted them.
    let stats = t.exec_json("n1", &["ip", "-s", "-j", "link", "show", plan.device()]).unwrap();
    assert!(stats[0]["stats64"]["rx"]["packets"].as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn ipv4_pods_ping_across_the_kernel_vxlan_device() {
    pods_talk_across(Plan { v6: false });
}

#[test]
fn ipv6_pods_ping_across_the_kernel_vxlan_device_over_an_ipv6_underlay() {
    pods_talk_across(Plan { v6: true });
}

#[test]
fn a_matching_device_is_adopted_and_a_different_one_replaced() {
    let plan = Plan { v6: false };
    let t = two_nodes("vxadopt", &plan);
    let cfg = plan.config(&t, 1);
    let first = ensure(&t, "n1", &cfg);
    assert_eq!(ensure(&t, "n1", &cfg), first, "ensured twice: the same device, the same MAC");
    // Another MTU or tunnel address is changed in place.
    let moved = DeviceConfig { mtu: 1400, address: Some("10.244.7.0".parse().unwrap()), ..cfg.clone() };
    assert_eq!(ensure(&t, "n1", &moved), first);
    assert_eq!(link_details(&t, "n1", DEVICE_V4)["mtu"], 1400);
    let addrs = t.exec_json("n1", &["ip", "-j", "-4", "addr", "show", "dev", DEVICE_V4]).unwrap();
    let locals: Vec<&Value> = addrs[0]["addr_info"].as_array().unwrap().iter().map(|a| &a["local"]).collect();
    assert_eq!(locals, vec!["10.244.7.0"], "the old tunnel address is gone");
    // Another VNI: a new device.
    let other_vni = DeviceConfig { vni: 4097, ..cfg.clone() };
    let replaced = ensure(&t, "n1", &other_vni);
    assert_ne!(replaced.ifindex, first.ifindex);
    assert_eq!(link_details(&t, "n1", DEVICE_V4)["linkinfo"]["info_data"]["id"], 4097);
    // A device of our name that is not vxlan: replaced too.
    assert!(with_socket(&t, "n1", |s| vxlan::remove_device(s, DEVICE_V4)).unwrap());
    t.exec("n1", &["ip", "link", "add", DEVICE_V4, "type", "bridge"]).unwrap();
    assert!(!with_socket(&t, "n1", |s| vxlan::remove_device(s, DEVICE_V4)).unwrap(), "not ours to remove");
    ensure(&t, "n1", &cfg);
    assert_eq!(link_details(&t, "n1", DEVICE_V4)["linkinfo"]["info_kind"], "vxlan");
    assert!(with_socket(&t, "n1", |s| vxlan::remove_device(s, DEVICE_V4)).unwrap());
    assert!(!with_socket(&t, "n1", |s| vxlan::remove_device(s, DEVICE_V4)).unwrap(), "already gone");
    assert!(t.exec("n1", &["ip", "link", "show", DEVICE_V4]).is_err());
}

fn vtep(i: u8) -> Vtep {
    Vtep {
        underlay: IpAddr::from([10, 9, 0, 100 + i]),
        tunnel: IpAddr::from([10, 244, 100 + i, 0]),
        mac: [0x66, 0x74, 0, 0, 0, i],
    }
}

/// Entries as `ip neigh` / `bridge fdb` print them: (key, value) pairs.
type Pairs = Vec<(String, String)>;

/// The (neighbours, FDB entries) `vteps` need.
fn ours(vteps: &[Vtep]) -> (Pairs, Pairs) {
    let mut n: Vec<_> = vteps.iter().map(|v| (v.tunnel.to_string(), mac_text(&v.mac))).collect();
    let mut f: Vec<_> = vteps.iter().map(|v| (mac_text(&v.mac), v.underlay.to_string())).collect();
    n.sort();
    f.sort();
    (n, f)
}

/// A second vxlan device and the underlay carry entries of somebody else.
fn add_foreign_entries(t: &Topology) {
    for argv in [
        &["ip", "link", "add", "vxother", "type", "vxlan", "id", "7", "dstport", "4790", "dev", "eth1"][..],
        &["ip", "link", "set", "vxother", "up"],
        &["ip", "neigh", "add", "10.244.101.0", "lladdr", "66:74:00:00:00:01", "dev", "vxother", "nud", "permanent"],
        &["bridge", "fdb", "add", "66:74:00:00:00:01", "dev", "vxother", "dst", "10.9.0.101", "self", "permanent"],
        &["ip", "neigh", "add", "10.9.0.77", "lladdr", "66:74:00:00:00:77", "dev", "eth1", "nud", "permanent"],
    ] {
        t.exec("n1", argv).unwrap();
    }
}

fn assert_foreign_entries_intact(t: &Topology) {
    let want = vec![("10.244.101.0".to_string(), "66:74:00:00:00:01".to_string())];
    assert_eq!(neighbours(t, "n1", "vxother"), want);
    assert_eq!(fdb(t, "n1", "vxother"), vec![("66:74:00:00:00:01".into(), "10.9.0.101".into())]);
    assert_eq!(neighbours(t, "n1", "eth1"), vec![("10.9.0.77".into(), "66:74:00:00:00:77".into())]);
}

#[test]
fn vtep_entries_are_written_once_repaired_and_pruned_and_foreign_ones_stay() {
    let plan = Plan { v6: false };
    let t = two_nodes("vxrec", &plan);
    let dev = ensure(&t, "n1", &plan.config(&t, 1));
    add_foreign_entries(&t);
    let both = [vtep(1), vtep(2)];

    assert_eq!(reconcile(&t, "n1", dev.ifindex, &both), ReconcileStats { added: 4, replaced: 0, deleted: 0 });
    assert_eq!((neighbours(&t, "n1", DEVICE_V4), fdb(&t, "n1", DEVICE_V4)), ours(&both));
    assert_eq!(reconcile(&t, "n1", dev.ifindex, &both), ReconcileStats::default(), "nothing to write the second time");

    // Deleted by hand: back. A stray entry on our device: gone.
    t.exec("n1", &["ip", "neigh", "del", "10.244.101.0", "dev", DEVICE_V4]).unwrap();
    t.exec("n1", &["bridge", "fdb", "del", "66:74:00:00:00:02", "dev", DEVICE_V4, "self"]).unwrap();
    t.exec("n1", &["ip", "neigh", "add", "10.244.55.0", "lladdr", "66:74:00:00:00:55", "dev", DEVICE_V4]).unwrap();
    assert_eq!(reconcile(&t, "n1", dev.ifindex, &both), ReconcileStats { added: 2, replaced: 0, deleted: 1 });
    assert_eq!((neighbours(&t, "n1", DEVICE_V4), fdb(&t, "n1", DEVICE_V4)), ours(&both));

    // Changed by hand: replaced in place.
    t.exec(
        "n1",
        &["bridge", "fdb", "replace", "66:74:00:00:00:01", "dev", DEVICE_V4, "dst", "10.9.0.99", "self", "permanent"],
    )
    .unwrap();
    assert_eq!(reconcile(&t, "n1", dev.ifindex, &both), ReconcileStats { added: 0, replaced: 1, deleted: 0 });
    assert_eq!(fdb(&t, "n1", DEVICE_V4), ours(&both).1);

    // No longer wanted: deleted.
    assert_eq!(reconcile(&t, "n1", dev.ifindex, &both[..1]), ReconcileStats { added: 0, replaced: 0, deleted: 2 });
    assert_eq!((neighbours(&t, "n1", DEVICE_V4), fdb(&t, "n1", DEVICE_V4)), ours(&both[..1]));
    assert_eq!(reconcile(&t, "n1", dev.ifindex, &[]), ReconcileStats { added: 0, replaced: 0, deleted: 2 });
    assert_eq!((neighbours(&t, "n1", DEVICE_V4), fdb(&t, "n1", DEVICE_V4)), (vec![], vec![]));

    assert_foreign_entries_intact(&t);
}

#[test]
fn the_task_follows_the_desired_vteps_and_repairs_drift() {
    let plan = Plan { v6: false };
    let t = two_nodes("vxtask", &plan);
    let dev = ensure(&t, "n1", &plan.config(&t, 1));
    add_foreign_entries(&t);
    let follows = |want: &[Vtep]| {
        let want = ours(want);
        let t = &t;
        async move {
            wait_until_async("the kernel to follow the desired VTEPs", Duration::from_secs(10), || {
                let now = (neighbours(t, "n1", DEVICE_V4), fdb(t, "n1", DEVICE_V4));
                std::future::ready((now == want).then_some(()))
            })
            .await
            .unwrap()
        }
    };
    run_in_namespace(&t.ns("n1"), || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            // Entries of a previous run stay while the wanted ones are not known.
            let mut socket = RouteSocket::open().unwrap();
            vxlan::reconcile(&mut socket, dev.ifindex, &[vtep(1)]).unwrap();
            let (tx, rx) = tokio::sync::watch::channel(None);
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let task = vxlan::spawn(dev.ifindex, rx, Duration::from_millis(200), stop_rx).unwrap();
            // No event to wait for when nothing happens: several resync periods pass.
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!((neighbours(&t, "n1", DEVICE_V4), fdb(&t, "n1", DEVICE_V4)), ours(&[vtep(1)]));
            tx.send_replace(Some(vec![vtep(1)]));
            follows(&[vtep(1)]).await;
            tx.send_replace(Some(vec![vtep(2), vtep(3)]));
            follows(&[vtep(2), vtep(3)]).await;
            // Drift: an entry deleted by hand comes back at the next resync.
            t.exec("n1", &["bridge", "fdb", "del", "66:74:00:00:00:03", "dev", DEVICE_V4, "self"]).unwrap();
            t.exec("n1", &["ip", "neigh", "del", "10.244.102.0", "dev", DEVICE_V4]).unwrap();
            follows(&[vtep(2), vtep(3)]).await;
            // Stopping ends it while the desired set's sender still lives (the
            // agent's encapsulation holds that sender until the agent returns).
            stop_tx.send_replace(true);
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("the task ends on stop").unwrap();
            let (_running, not_stopped) = tokio::sync::watch::channel(false);
            let task = vxlan::spawn(dev.ifindex, tx.subscribe(), Duration::from_millis(200), not_stopped).unwrap();
            drop(tx);
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("the task ends with its watch").unwrap();
        })
    })
    .unwrap();
    assert_foreign_entries_intact(&t);
}
