//! The userspace IP-in-IP tunnel between two nodes in different subnets,
//! joined by a router that knows nothing of pod addresses: pods ping and
//! talk TCP through it, and packets from unknown sources are dropped.

mod support;

use std::sync::Arc;
use std::time::Duration;
use tortie::dataplane::{DesiredRoute, Programmer, ProgrammerConfig, Route, RouteKind, RouteTarget};
use tortie::fallback_ipip::packet::DropReason;
use tortie::fallback_ipip::{TunnelCounters, TunnelPeer, UserspaceConfig, UserspaceTunnel};
use tortie::netns::{NamespaceThread, Topology, spawn_in_namespace};
use tortie::testing::wait_until;

struct Node {
    _thread: NamespaceThread,
    counters: Arc<TunnelCounters>,
}

/// Starts a tunnel and a route programmer on `node`: remote `block` via `peer`.
fn start_node(t: &Topology, node: &str, tunnel_addr: &str, block: &str, peer: &str) -> Node {
    let (tx, rx) = std::sync::mpsc::channel();
    let (tunnel_addr, block, peer) =
        (tunnel_addr.parse().unwrap(), block.parse::<ipnetwork::Ipv4Network>().unwrap(), peer.parse().unwrap());
    let thread = spawn_in_namespace(&t.ns(node), move |stop| async move {
        let config = UserspaceConfig { device: "ttipip0".into(), underlay_mtu: 1500, address: Some(tunnel_addr) };
        let tunnel = UserspaceTunnel::start(&config).expect("tunnel starts");
        tunnel.set_peers(&[TunnelPeer { block, node: peer }], &[]);
        let programmer = Programmer::start(ProgrammerConfig::default()).await.expect("programmer starts");
        programmer
            .set(DesiredRoute {
                route: Route {
                    dst: block.into(),
                    target: RouteTarget::Device { ifindex: tunnel.ifindex() },
                    mtu: None,
                },
                kind: RouteKind::RemoteIpip,
            })
            .await;
        programmer.flush().await;
        tx.send(tunnel.counters.clone()).unwrap();
        let _ = stop.await;
    })
    .unwrap();
    let counters = rx.recv_timeout(Duration::from_secs(20)).expect("node ready");
    Node { _thread: thread, counters }
}

fn lab() -> Topology {
    let mut t = Topology::new("ipipus").unwrap();
    for ns in ["a", "r", "b"] {
        t.add_namespace(ns).unwrap();
    }
    t.add_veth(("a", "eth1", Some("10.1.0.2/24")), ("r", "eth1", Some("10.1.0.1/24"))).unwrap();
    t.add_veth(("b", "eth1", Some("10.2.0.2/24")), ("r", "eth2", Some("10.2.0.1/24"))).unwrap();
    t.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
    t.exec("a", &["ip", "route", "add", "default", "via", "10.1.0.1"]).unwrap();
    t.exec("b", &["ip", "route", "add", "default", "via", "10.2.0.1"]).unwrap();
    support::pods::add_pod(&mut t, "a", "pa", "ttpa", "10.244.1.5").unwrap();
    support::pods::add_pod(&mut t, "b", "pb", "ttpb", "10.244.2.7").unwrap();
    t
}

#[test]
fn pods_in_two_subnets_talk_through_the_userspace_tunnel() {
    let mut t = lab();
    // The router has no route for pod addresses: only the tunnel can carry them.
    assert!(!t.ping("r", "10.244.2.7"));
    let a = start_node(&t, "a", "10.244.1.1", "10.244.2.0/26", "10.2.0.2");
    let b = start_node(&t, "b", "10.244.2.1", "10.244.1.0/26", "10.1.0.2");

    wait_until("pod a to ping pod b", Duration::from_secs(15), || t.ping("pa", "10.244.2.7").then_some(())).unwrap();
    assert!(t.ping("pb", "10.244.1.5"), "and back");
    assert!(t.ping("a", "10.244.2.7"), "the node itself reaches a remote pod from its tunnel address");

    // TCP both ways with iperf3.
    let server = t.spawn("pb", &["iperf3", "-s", "-B", "10.244.2.7", "-p", "5201"]).unwrap().pid();
    // iperf3 reports "connection refused" until the server listens: retry that.
    let report = wait_until("iperf3 through the tunnel", Duration::from_secs(20), || {
        let out = t.exec("pa", &["iperf3", "-c", "10.244.2.7", "-p", "5201", "-t", "1", "-J"]).ok()?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        report.get("error").is_none().then_some(report)
    })
    .unwrap();
    let bytes = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 0, "TCP data crossed the tunnel: {report}");
    let out = t.exec("pa", &["iperf3", "-c", "10.244.2.7", "-p", "5201", "-t", "1", "-R", "-J"]).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0) > 0, "and in reverse: {report}");
    assert!(server > 0);

    use std::sync::atomic::Ordering::Relaxed;
    for (name, c) in [("a", &a.counters), ("b", &b.counters)] {
        assert!(c.encap_packets.load(Relaxed) > 0 && c.decap_packets.load(Relaxed) > 0, "node {name} counted traffic");
    }
}

#[test]
fn encapsulated_packets_from_unknown_sources_are_dropped_and_counted() {
    let t = lab();
    let _a = start_node(&t, "a", "10.244.1.1", "10.244.2.0/26", "10.2.0.2");
    let b = start_node(&t, "b", "10.244.2.1", "10.244.1.0/26", "10.1.0.2");
    // The router (10.2.0.1) is not a node: its IP-in-IP packet to b must not
    // reach pod b.
    support::transfer::send_ipip(&t, "r", "10.2.0.2", "10.244.1.5", "10.244.2.7", 3);
    wait_until("the spoofed packets to be dropped", Duration::from_secs(10), || {
        (b.counters.dropped(DropReason::UnknownSource) >= 3).then_some(())
    })
    .unwrap();
    assert_eq!(b.counters.decap_packets.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_bulk_tcp_transfer_arrives_intact_both_ways() {
    let mut t = lab();
    let a = start_node(&t, "a", "10.244.1.1", "10.244.2.0/26", "10.2.0.2");
    let b = start_node(&t, "b", "10.244.2.1", "10.244.1.0/26", "10.1.0.2");
    wait_until("pod a to ping pod b", Duration::from_secs(15), || t.ping("pa", "10.244.2.7").then_some(())).unwrap();

    // Large enough for the kernel to hand over TSO super-packets and for
    // the receiving side to coalesce.
    const BYTES: usize = 24 << 20;
    let (sent, received) = support::transfer::bulk_transfer(&mut t, "pa", "pb", "10.244.2.7", BYTES);
    assert!(sent.starts_with(&format!("{BYTES} ")), "sent everything: {sent}");
    assert_eq!(received, sent, "pod b received exactly what pod a sent");
    let (sent, received) = support::transfer::bulk_transfer(&mut t, "pb", "pa", "10.244.1.5", BYTES);
    assert_eq!(received, sent, "and the other way");

    use std::sync::atomic::Ordering::Relaxed;
    // Counted per packet on the wire: at least one per MTU of data.
    let min_packets = (BYTES / 1500) as u64;
    for (name, c) in [("a", &a.counters), ("b", &b.counters)] {
        let (encap, decap) = (c.encap_packets.load(Relaxed), c.decap_packets.load(Relaxed));
        assert!(encap >= min_packets && decap >= min_packets, "node {name}: encap {encap} decap {decap} packets");
        // (Malformed counts the IPv6 the kernel itself sends on the device.)
        for reason in [DropReason::NoRoute, DropReason::SendError, DropReason::UnknownSource] {
            assert_eq!(c.dropped(reason), 0, "node {name} dropped {reason:?}");
        }
    }
}
