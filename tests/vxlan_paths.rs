//! The remote-routes stage with the kernel VXLAN device (and the userspace
//! IP-in-IP tunnel beside it) on two nodes in namespaces, with real traffic:
//! IPv4 and IPv6 pods over VXLAN next to a pool over IP-in-IP across a
//! router that knows no pod routes; a same-subnet node whose direct path
//! drops pod traffic reached through VXLAN until it answers again.

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tortie::bgp::rib::BestPathChange;
use tortie::dataplane::netlink::RouteSocket;
use tortie::dataplane::{Programmer, ProgrammerConfig};
use tortie::datastore::resources::{EncapMode, IpPool};
use tortie::fallback_ipip::encap::UserspaceIpip;
use tortie::fallback_ipip::{UserspaceConfig, UserspaceTunnel};
use tortie::netns::{NamespaceThread, Topology, spawn_in_namespace};
use tortie::remote_routes::liveness::{self, ProbeConfig};
use tortie::remote_routes::stage::{self, StageConfig, StageInputs, StageOutputs};
use tortie::remote_routes::{EncapKind, Encapsulations, LearnedSource, RemoteNode, RemoteNodes};
use tortie::testing::{json_subset, wait_until};
use tortie::vxlan::encap::VxlanEncap;
use tortie::vxlan::{DEFAULT_PORT, DEFAULT_VNI, DEVICE_V4, DEVICE_V6, DeviceConfig, OVERHEAD_V4, OVERHEAD_V6};

/// The learned routes are fixed: nothing to send again.
struct Fixed;

impl LearnedSource for Fixed {
    async fn resend_learned(&self) {}
}

fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> IpPool {
    let mut p = IpPool::new(cidr.parse().unwrap());
    p.ipip_mode = ipip;
    p.vxlan_mode = vxlan;
    p
}

fn learned(prefix: &str, node: &str) -> BestPathChange {
    let hop: IpAddr = node.parse().unwrap();
    BestPathChange {
        prefix: prefix.parse().unwrap(),
        next_hops: [hop].into_iter().collect(),
        peers: [hop].into_iter().collect(),
    }
}

/// One node's encapsulations and what it learned.
struct NodeSpec {
    ns: &'static str,
    local_v4: &'static str,
    local_v6: Option<&'static str>,
    /// The userspace IP-in-IP tunnel's address, when the node has one.
    ipip: Option<&'static str>,
    vxlan_v4: Option<&'static str>,
    /// (underlay address, tunnel address) of the IPv6 VXLAN device.
    vxlan_v6: Option<(&'static str, &'static str)>,
    pools: Vec<IpPool>,
    learned: Vec<BestPathChange>,
}

struct Running {
    _thread: NamespaceThread,
    /// The MACs of its IPv4 and IPv6 VXLAN devices.
    macs: (Option<[u8; 6]>, Option<[u8; 6]>),
}

fn ifindex(t: &Topology, ns: &str, dev: &str) -> u32 {
    t.exec_json(ns, &["ip", "-j", "link", "show", dev]).unwrap()[0]["ifindex"].as_u64().unwrap() as u32
}

/// Starts the node's devices, programmer, prober and stage; its remote
/// nodes (the other node's VTEPs) come through `remotes` once known.
fn start(t: &Topology, spec: NodeSpec, remotes: watch::Receiver<Option<RemoteNodes>>) -> Running {
    let underlay = ifindex(t, spec.ns, "eth1");
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = spawn_in_namespace(&t.ns(spec.ns), move |stop| async move {
        let mut socket = RouteSocket::open().unwrap();
        let mut encaps = Encapsulations::default();
        let mut keep = Vec::new();
        let local_v4: ipnetwork::Ipv4Network = spec.local_v4.parse().unwrap();
        let mut probe_source = local_v4.ip();
        if let Some(addr) = spec.ipip {
            let tunnel = Arc::new(
                UserspaceTunnel::start(&UserspaceConfig {
                    device: "ttipip0".into(),
                    underlay_mtu: 1500,
                    address: Some(addr.parse().unwrap()),
                })
                .unwrap(),
            );
            encaps.set(EncapKind::Ipip, false, Arc::new(UserspaceIpip(tunnel)));
            probe_source = addr.parse().unwrap();
        }
        let mut macs = (None, None);
        let mut device = |name: &str, local: IpAddr, tunnel: &str, overhead| {
            let cfg = DeviceConfig {
                name: name.into(),
                vni: DEFAULT_VNI,
                port: DEFAULT_PORT,
                parent_ifindex: underlay,
                local,
                mtu: 1500 - overhead,
                address: Some(tunnel.parse().unwrap()),
            };
            let d = tortie::vxlan::ensure_device(&mut socket, &cfg).unwrap();
            let (vteps_tx, vteps_rx) = watch::channel(None);
            keep.push(tortie::vxlan::spawn(d.ifindex, vteps_rx, Duration::from_secs(1)).unwrap());
            (d, vteps_tx)
        };
        if let Some(tunnel) = spec.vxlan_v4 {
            // Probes come from a pod-range source, filtered as pod traffic is.
            probe_source = tunnel.parse().unwrap();
            let (d, vteps) = device(DEVICE_V4, IpAddr::V4(local_v4.ip()), tunnel, OVERHEAD_V4);
            encaps.set(EncapKind::Vxlan, false, Arc::new(VxlanEncap::new(d.ifindex, false, vteps)));
            macs.0 = Some(d.mac);
        }
        if let Some((local, tunnel)) = spec.vxlan_v6 {
            let (d, vteps) = device(DEVICE_V6, local.parse().unwrap(), tunnel, OVERHEAD_V6);
            encaps.set(EncapKind::Vxlan, true, Arc::new(VxlanEncap::new(d.ifindex, true, vteps)));
            macs.1 = Some(d.mac);
        }
        let programmer = Programmer::start(ProgrammerConfig::default()).await.expect("programmer");
        let (learned_tx, learned_rx) = tokio::sync::mpsc::channel(1);
        learned_tx.try_send(spec.learned).unwrap();
        let (_pools_tx, pools) = watch::channel(spec.pools);
        let (_local_tx, local) = watch::channel(Default::default());
        let (targets_tx, targets_rx) = watch::channel(Vec::new());
        let (verdict_tx, verdicts) = watch::channel(HashMap::new());
        let (paths, _paths_rx) = watch::channel(HashMap::new());
        let (generation, _generation_rx) = watch::channel(0);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let fast = ProbeConfig { interval: Duration::from_millis(100), down_after: 3, up_after: 3 };
        tokio::spawn(liveness::run(probe_source, fast, targets_rx, verdict_tx));
        let config = StageConfig {
            local_v4,
            local_v6: spec.local_v6.map(|a| a.parse().unwrap()),
            underlay_ifindex: underlay,
            encaps,
        };
        let inputs = StageInputs { learned: learned_rx, source: Fixed, pools, local, remotes, verdicts, stop: stop_rx };
        let outputs =
            StageOutputs { paths, targets: targets_tx, generation, holding: watch::channel(false).0, latency: None };
        tokio::spawn(stage::run(config, programmer.clone(), inputs, outputs));
        tx.send(macs).unwrap();
        let _ = stop.await;
        drop((learned_tx, keep));
    })
    .unwrap();
    Running { _thread: thread, macs: rx.recv_timeout(Duration::from_secs(20)).unwrap() }
}

fn route_to(t: &Topology, ns: &str, dst: &str) -> serde_json::Value {
    let family = if dst.contains(':') { "-6" } else { "-4" };
    t.exec_json(ns, &["ip", family, "-j", "route", "show", dst, "proto", "116"]).unwrap()
}

fn wait_route(t: &Topology, ns: &str, dst: &str, want: serde_json::Value) {
    wait_until(&format!("{ns}: route to {dst} like {want}"), Duration::from_secs(10), || {
        json_subset(&want, &route_to(t, ns, dst)).ok()
    })
    .unwrap();
}

fn ping(t: &Topology, from: &str, to: &str) {
    wait_until(&format!("{from} to ping {to}"), Duration::from_secs(10), || t.ping(from, to).then_some(())).unwrap();
}

fn vtep(tunnel: &str, mac: Option<[u8; 6]>) -> RemoteNode {
    RemoteNode { vxlan_tunnel: Some(tunnel.parse().unwrap()), vxlan_mac: mac }
}

#[test]
fn ipv4_and_ipv6_pods_cross_a_router_over_vxlan_beside_an_ipip_pool() {
    let mut t = Topology::new("vxpath").unwrap();
    for ns in ["a", "r", "b"] {
        t.add_namespace(ns).unwrap();
    }
    t.add_veth(("a", "eth1", Some("10.1.0.2/24")), ("r", "eth1", Some("10.1.0.1/24"))).unwrap();
    t.add_veth(("b", "eth1", Some("10.2.0.2/24")), ("r", "eth2", Some("10.2.0.1/24"))).unwrap();
    for (ns, dev, addr) in [
        ("a", "eth1", "fd01::2/64"),
        ("r", "eth1", "fd01::1/64"),
        ("b", "eth1", "fd02::2/64"),
        ("r", "eth2", "fd02::1/64"),
    ] {
        t.exec(ns, &["ip", "addr", "add", addr, "dev", dev, "nodad"]).unwrap();
    }
    // The router forwards between the subnets and knows no pod route.
    t.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]).unwrap();
    for (ns, v4, v6) in [("a", "10.1.0.1", "fd01::1"), ("b", "10.2.0.1", "fd02::1")] {
        t.exec(ns, &["ip", "route", "add", "default", "via", v4]).unwrap();
        t.exec(ns, &["ip", "-6", "route", "add", "default", "via", v6]).unwrap();
    }
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.244.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.244.2.7").unwrap();
    support::pods::add_pod(&mut t, "a", "pax", "ttpax", "10.245.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pbx", "ttpbx", "10.245.2.7").unwrap();
    support::pods::add_pod_v6(&t, "a", "pax", "ttpax", "fd00:245:0:1::5").unwrap();
    support::pods::add_pod_v6(&t, "b", "pbx", "ttpbx", "fd00:245:0:2::7").unwrap();
    let pools = || {
        vec![
            pool("10.244.0.0/16", EncapMode::Always, EncapMode::Never),
            pool("10.245.0.0/16", EncapMode::Never, EncapMode::CrossSubnet),
            pool("fd00:245::/48", EncapMode::Never, EncapMode::Always),
        ]
    };
    let (a_remotes_tx, a_remotes) = watch::channel(None);
    let (b_remotes_tx, b_remotes) = watch::channel(None);
    let a = start(
        &t,
        NodeSpec {
            ns: "a",
            local_v4: "10.1.0.2/24",
            local_v6: Some("fd01::2/64"),
            ipip: Some("10.244.1.1"),
            vxlan_v4: Some("10.245.1.0"),
            vxlan_v6: Some(("fd01::2", "fd00:245:0:1::")),
            pools: pools(),
            learned: vec![
                learned("10.244.2.0/26", "10.2.0.2"),
                learned("10.245.2.0/26", "10.2.0.2"),
                learned("fd00:245:0:2::/122", "fd02::2"),
            ],
        },
        a_remotes,
    );
    let b = start(
        &t,
        NodeSpec {
            ns: "b",
            local_v4: "10.2.0.2/24",
            local_v6: Some("fd02::2/64"),
            ipip: Some("10.244.2.1"),
            vxlan_v4: Some("10.245.2.0"),
            vxlan_v6: Some(("fd02::2", "fd00:245:0:2::")),
            pools: pools(),
            learned: vec![
                learned("10.244.1.0/26", "10.1.0.2"),
                learned("10.245.1.0/26", "10.1.0.2"),
                learned("fd00:245:0:1::/122", "fd01::2"),
            ],
        },
        b_remotes,
    );

    // The learned routes wait for the remote nodes' VTEPs (as the agent reads them from the Nodes).
    a_remotes_tx.send_replace(Some(
        [
            ("10.2.0.2".parse().unwrap(), vtep("10.245.2.0", b.macs.0)),
            ("fd02::2".parse().unwrap(), vtep("fd00:245:0:2::", b.macs.1)),
        ]
        .into(),
    ));
    b_remotes_tx.send_replace(Some(
        [
            ("10.1.0.2".parse().unwrap(), vtep("10.245.1.0", a.macs.0)),
            ("fd01::2".parse().unwrap(), vtep("fd00:245:0:1::", a.macs.1)),
        ]
        .into(),
    ));
    wait_route(&t, "a", "10.244.2.0/26", serde_json::json!([{"dev": "ttipip0"}]));
    wait_route(
        &t,
        "a",
        "10.245.2.0/26",
        serde_json::json!([{"gateway": "10.245.2.0", "dev": DEVICE_V4, "flags": ["onlink"]}]),
    );
    wait_route(
        &t,
        "a",
        "fd00:245:0:2::/122",
        serde_json::json!([{"gateway": "fd00:245:0:2::", "dev": DEVICE_V6, "flags": ["onlink"]}]),
    );
    let neigh = t.exec_json("a", &["ip", "-j", "neigh", "show", "dev", DEVICE_V4]).unwrap();
    json_subset(&serde_json::json!([{"dst": "10.245.2.0", "state": ["PERMANENT"]}]), &neigh).unwrap();

    ping(&t, "pax", "10.245.2.7");
    ping(&t, "pbx", "10.245.1.5");
    ping(&t, "pax", "fd00:245:0:2::7");
    ping(&t, "pbx", "fd00:245:0:1::5");
    ping(&t, "pa", "10.244.2.7");
    let router = t.exec_json("r", &["ip", "-j", "route"]).unwrap();
    assert!(router.as_array().unwrap().iter().all(|r| !r["dst"].as_str().unwrap_or("").starts_with("10.24")));
}

#[test]
fn a_same_subnet_node_whose_direct_path_drops_pod_traffic_is_reached_over_vxlan_until_it_answers() {
    let mut t = Topology::new("vxfb").unwrap();
    t.add_namespace("a").unwrap();
    t.add_namespace("b").unwrap();
    t.add_veth(("a", "eth1", Some("10.0.0.2/24")), ("b", "eth1", Some("10.0.0.3/24"))).unwrap();
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.245.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.245.2.7").unwrap();
    let pools = || vec![pool("10.245.0.0/16", EncapMode::Never, EncapMode::CrossSubnet)];
    let (a_remotes_tx, a_remotes) = watch::channel(None);
    let (b_remotes_tx, b_remotes) = watch::channel(None);
    let spec = |ns, local, tunnel, block, node| NodeSpec {
        ns,
        local_v4: local,
        local_v6: None,
        ipip: None,
        vxlan_v4: Some(tunnel),
        vxlan_v6: None,
        pools: pools(),
        learned: vec![learned(block, node)],
    };
    let a = start(&t, spec("a", "10.0.0.2/24", "10.245.1.0", "10.245.2.0/26", "10.0.0.3"), a_remotes);
    let b = start(&t, spec("b", "10.0.0.3/24", "10.245.2.0", "10.245.1.0/26", "10.0.0.2"), b_remotes);
    a_remotes_tx.send_replace(Some([("10.0.0.3".parse().unwrap(), vtep("10.245.2.0", b.macs.0))].into()));
    b_remotes_tx.send_replace(Some([("10.0.0.2".parse().unwrap(), vtep("10.245.1.0", a.macs.0))].into()));

    let direct = serde_json::json!([{"gateway": "10.0.0.3", "dev": "eth1"}]);
    wait_route(&t, "a", "10.245.2.0/26", direct.clone());
    ping(&t, "pa", "10.245.2.7");

    // b starts dropping pod-sourced packets that arrive unencapsulated.
    t.exec("b", &["nft", "add table inet ttcut; add chain inet ttcut pre { type filter hook prerouting priority -300; }; add rule inet ttcut pre iifname eth1 ip saddr 10.245.0.0/16 drop"])
        .unwrap();
    wait_route(&t, "a", "10.245.2.0/26", serde_json::json!([{"gateway": "10.245.2.0", "dev": DEVICE_V4}]));
    ping(&t, "pa", "10.245.2.7");

    // The path heals: back to the direct route.
    t.exec("b", &["nft", "delete table inet ttcut"]).unwrap();
    wait_route(&t, "a", "10.245.2.0/26", direct);
    ping(&t, "pa", "10.245.2.7");
}
