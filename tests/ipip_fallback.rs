//! Two nodes on one subnet under a CrossSubnet pool: pods talk over direct
//! routes; when the direct path drops pod traffic the liveness probe moves
//! the route into the (userspace) tunnel, and back once the path answers.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tortie::bgp::rib::BestPathChange;
use tortie::dataplane::{Programmer, ProgrammerConfig};
use tortie::datastore::resources::{EncapMode, IpPool};
use tortie::fallback_ipip::encap::UserspaceIpip;
use tortie::fallback_ipip::{TunnelCounters, UserspaceConfig, UserspaceTunnel};
use tortie::netns::{NamespaceThread, Topology, spawn_in_namespace};
use tortie::remote_routes::liveness::{self, ProbeConfig};
use tortie::remote_routes::stage::{self, StageConfig, StageInputs, StageOutputs};
use tortie::remote_routes::{EncapKind, Encapsulations, LearnedSource};
use tortie::testing::wait_until;

struct Node {
    _thread: NamespaceThread,
    counters: Arc<TunnelCounters>,
}

/// The learned routes are fixed: nothing to send again.
struct Fixed;

impl LearnedSource for Fixed {
    async fn resend_learned(&self) {}
}

/// One node: the userspace tunnel, the prober and the remote-routes stage
/// with one learned block of the other node, in a CrossSubnet pool.
fn start_node(t: &Topology, ns: &str, local: &str, tunnel_addr: &str, block: &str, node: &str) -> Node {
    let underlay =
        t.exec_json(ns, &["ip", "-j", "link", "show", "eth1"]).unwrap()[0]["ifindex"].as_u64().unwrap() as u32;
    let local = local.parse().unwrap();
    let tunnel_addr = tunnel_addr.parse().unwrap();
    let learned = vec![BestPathChange {
        prefix: block.parse().unwrap(),
        next_hops: [node.parse().unwrap()].into_iter().collect(),
        peers: [node.parse().unwrap()].into_iter().collect(),
    }];
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = spawn_in_namespace(&t.ns(ns), move |stop| async move {
        let tunnel = Arc::new(
            UserspaceTunnel::start(&UserspaceConfig {
                device: "ttipip0".into(),
                underlay_mtu: 1500,
                address: Some(tunnel_addr),
            })
            .expect("tunnel"),
        );
        let programmer = Programmer::start(ProgrammerConfig::default()).await.expect("programmer");
        let (learned_tx, learned_rx) = tokio::sync::mpsc::channel(1);
        learned_tx.try_send(learned).unwrap();
        let mut pool = IpPool::new("10.244.0.0/16".parse().unwrap());
        pool.ipip_mode = EncapMode::CrossSubnet;
        let (_pools_tx, pools) = tokio::sync::watch::channel(vec![pool]);
        let (_local_tx, local_rx) = tokio::sync::watch::channel(Default::default());
        let (_remotes_tx, remotes) = tokio::sync::watch::channel(Default::default());
        let (targets_tx, targets_rx) = tokio::sync::watch::channel(Vec::new());
        let (verdict_tx, verdicts) = tokio::sync::watch::channel(HashMap::new());
        let (paths, _paths_rx) = tokio::sync::watch::channel(HashMap::new());
        let (generation, _generation_rx) = tokio::sync::watch::channel(0);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let fast = ProbeConfig { interval: Duration::from_millis(100), down_after: 3, up_after: 3 };
        tokio::spawn(liveness::run(tunnel_addr, fast, targets_rx, verdict_tx));
        let mut encaps = Encapsulations::default();
        encaps.set(EncapKind::Ipip, false, Arc::new(UserspaceIpip(tunnel.clone())));
        let config = StageConfig { local_v4: local, local_v6: None, underlay_ifindex: underlay, encaps };
        let inputs = StageInputs {
            learned: learned_rx,
            source: Fixed,
            pools,
            local: local_rx,
            remotes,
            verdicts,
            stop: stop_rx,
        };
        let outputs = StageOutputs {
            paths,
            targets: targets_tx,
            generation,
            holding: tokio::sync::watch::channel(false).0,
            latency: None,
        };
        tokio::spawn(stage::run(config, programmer.clone(), inputs, outputs));
        tx.send(tunnel.counters.clone()).unwrap();
        let _ = stop.await;
        drop(learned_tx);
    })
    .unwrap();
    Node { _thread: thread, counters: rx.recv_timeout(Duration::from_secs(20)).unwrap() }
}

fn route_to(t: &Topology, ns: &str, dst: &str) -> serde_json::Value {
    t.exec_json(ns, &["ip", "-j", "route", "show", dst, "proto", "116"]).unwrap()
}

#[test]
fn same_subnet_is_direct_and_a_cut_direct_path_falls_back_to_the_tunnel() {
    let mut t = Topology::new("ipipfb").unwrap();
    t.add_namespace("a").unwrap();
    t.add_namespace("b").unwrap();
    t.add_veth(("a", "eth1", Some("10.0.0.2/24")), ("b", "eth1", Some("10.0.0.3/24"))).unwrap();
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.244.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.244.2.7").unwrap();
    let a = start_node(&t, "a", "10.0.0.2/24", "10.244.1.1", "10.244.2.0/26", "10.0.0.3");
    let _b = start_node(&t, "b", "10.0.0.3/24", "10.244.2.1", "10.244.1.0/26", "10.0.0.2");

    // Same subnet: direct routes, ping and TCP.
    let direct = serde_json::json!([{"dst": "10.244.2.0/26", "gateway": "10.0.0.3", "dev": "eth1"}]);
    wait_until("a direct route on a", Duration::from_secs(10), || {
        tortie::testing::json_subset(&direct, &route_to(&t, "a", "10.244.2.0/26")).ok()
    })
    .unwrap();
    wait_until("pod a to reach pod b directly", Duration::from_secs(10), || t.ping("pa", "10.244.2.7").then_some(()))
        .unwrap();
    t.spawn("pb", &["iperf3", "-s", "-B", "10.244.2.7", "-p", "5202"]).unwrap();
    let tcp_ok = || {
        let out = t.exec("pa", &["iperf3", "-c", "10.244.2.7", "-p", "5202", "-t", "1", "-J"]).ok()?;
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (r["end"]["sum_received"]["bytes"].as_u64()? > 0).then_some(())
    };
    wait_until("TCP over the direct path", Duration::from_secs(20), tcp_ok).unwrap();
    let encap_before = a.counters.encap_packets.load(std::sync::atomic::Ordering::Relaxed);

    // b starts dropping pod-sourced packets that arrive unencapsulated.
    t.exec("b", &["nft", "add table inet ttcut; add chain inet ttcut pre { type filter hook prerouting priority -300; }; add rule inet ttcut pre iifname eth1 ip saddr 10.244.0.0/16 drop"])
        .unwrap();
    wait_until("a to move b's block into the tunnel", Duration::from_secs(10), || {
        tortie::testing::json_subset(
            &serde_json::json!([{"dst": "10.244.2.0/26", "dev": "ttipip0"}]),
            &route_to(&t, "a", "10.244.2.0/26"),
        )
        .ok()
    })
    .unwrap();
    wait_until("pod a to reach pod b through the tunnel", Duration::from_secs(10), || {
        t.ping("pa", "10.244.2.7").then_some(())
    })
    .unwrap();
    wait_until("TCP through the tunnel", Duration::from_secs(20), tcp_ok).unwrap();
    assert!(
        a.counters.encap_packets.load(std::sync::atomic::Ordering::Relaxed) > encap_before,
        "traffic was encapsulated"
    );

    // The path heals: back to the direct route.
    t.exec("b", &["nft", "delete table inet ttcut"]).unwrap();
    wait_until("a to return to the direct route", Duration::from_secs(10), || {
        tortie::testing::json_subset(&direct, &route_to(&t, "a", "10.244.2.0/26")).ok()
    })
    .unwrap();
    wait_until("pod a to reach pod b directly again", Duration::from_secs(10), || {
        t.ping("pa", "10.244.2.7").then_some(())
    })
    .unwrap();
}
