//! The userspace IP-in-IP tunnel with its in-kernel transmit: routes carry
//! the BPF program that encapsulates toward the remote node, so pod
//! traffic crosses a router that knows no pod routes without passing
//! through the userspace encapsulator; a restart adopts those routes
//! without writing; with the program off, the TUN device carries it all.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use support::faults::RouteMonitor;
use support::transfer::bulk_transfer;
use tortie::dataplane::{DesiredRoute, Programmer, ProgrammerConfig, Route, RouteKind};
use tortie::fallback_ipip::encap::UserspaceIpip;
use tortie::fallback_ipip::packet::DropReason;
use tortie::fallback_ipip::{TunnelCounters, UserspaceConfig, UserspaceTunnel, lwt_xmit, tc_decap};
use tortie::netns::{NamespaceThread, Topology, spawn_in_namespace};
use tortie::remote_routes::{Encapsulation, RemoteNodes};
use tortie::testing::wait_until;

struct Node {
    _thread: NamespaceThread,
    counters: Arc<TunnelCounters>,
}

/// One node's side: its underlay address, tunnel address, the remote
/// block and the node holding it.
#[derive(Clone, Copy)]
struct Side {
    ns: &'static str,
    local: &'static str,
    tunnel: &'static str,
    block: &'static str,
    peer: &'static str,
}

const A: Side = Side { ns: "a", local: "10.1.0.2", tunnel: "10.244.1.1", block: "10.244.2.0/26", peer: "10.2.0.2" };
const B: Side = Side { ns: "b", local: "10.2.0.2", tunnel: "10.244.2.1", block: "10.244.1.0/26", peer: "10.1.0.2" };

/// Starts the tunnel, its encapsulation (`bpf`: with the in-kernel
/// transmit when the kernel takes it) and a route programmer writing the
/// route the encapsulation asks for.
fn start_node(t: &Topology, side: Side, bpf: bool) -> Node {
    start_node_at(t, side, side.tunnel, bpf)
}

/// [`start_node`] with the tunnel device carrying `tunnel` as its address.
fn start_node_at(t: &Topology, side: Side, tunnel: &'static str, bpf: bool) -> Node {
    let underlay = ifindex(t, side.ns, "eth1");
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = spawn_in_namespace(&t.ns(side.ns), move |stop| async move {
        let config =
            UserspaceConfig { device: "ttipip0".into(), underlay_mtu: 1500, address: Some(tunnel.parse().unwrap()) };
        let tunnel = Arc::new(UserspaceTunnel::start(&config).expect("tunnel starts"));
        let local = side.local.parse().unwrap();
        let receive = tc_decap::choose(bpf, local, underlay, tunnel.ifindex());
        assert_eq!(receive.is_some(), bpf, "the receive program is attached exactly when asked for");
        let encap = UserspaceIpip::new(tunnel.clone(), lwt_xmit::choose(bpf, local), receive);
        let block: ipnetwork::IpNetwork = side.block.parse().unwrap();
        let peer = side.peer.parse().unwrap();
        encap.set_peers(&[(block, peer)], &[peer], &RemoteNodes::default());
        let target = encap.target(peer, None).expect("a target toward the node");
        let programmer = Programmer::start(ProgrammerConfig::default()).await.expect("programmer starts");
        programmer
            .set(DesiredRoute { route: Route { dst: block, target, mtu: None }, kind: RouteKind::RemoteIpip })
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
    let mut t = Topology::new("ipipbpf").unwrap();
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

fn ifindex(t: &Topology, ns: &str, dev: &str) -> u32 {
    let out =
        String::from_utf8_lossy(&t.exec(ns, &["ip", "-o", "link", "show", "dev", dev]).unwrap().stdout).to_string();
    out.split(':').next().and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no ifindex in {out:?}"))
}

fn route_of(t: &Topology, ns: &str, block: &str) -> String {
    String::from_utf8_lossy(&t.exec(ns, &["ip", "route", "show", block]).unwrap().stdout).trim().to_string()
}

/// Large enough for TSO super-packets.
const BYTES: usize = 24 << 20;
/// Packets on the wire a transfer of `BYTES` takes at least (one per MTU).
const MIN_PACKETS: u64 = (BYTES / 1500) as u64;

#[test]
fn pod_traffic_is_encapsulated_in_the_kernel_and_a_restart_writes_nothing() {
    let mut t = lab();
    assert!(!t.ping("r", "10.244.2.7"), "the router knows no pod routes");
    let a = start_node(&t, A, true);
    let b = start_node(&t, B, true);
    for (side, program) in [(A, "tipip0a020002"), (B, "tipip0a010002")] {
        let route = route_of(&t, side.ns, side.block);
        assert!(route.contains("encap bpf") && route.contains(program), "node {}: {route}", side.ns);
    }
    wait_until("pod a to ping pod b", Duration::from_secs(15), || t.ping("pa", "10.244.2.7").then_some(())).unwrap();
    assert!(t.ping("a", "10.244.2.7"), "the node itself reaches a remote pod");

    let (sent, received) = bulk_transfer(&mut t, "pa", "pb", "10.244.2.7", BYTES);
    assert!(sent.starts_with(&format!("{BYTES} ")), "sent everything: {sent}");
    assert_eq!(received, sent, "pod b received exactly what pod a sent");
    let (sent, received) = bulk_transfer(&mut t, "pb", "pa", "10.244.1.5", BYTES);
    assert_eq!(received, sent, "and the other way");
    for (name, c) in [("a", &a.counters), ("b", &b.counters)] {
        let (encap, decap) = (c.encap_packets.load(Relaxed), c.decap_bytes.load(Relaxed));
        // The transfers arrived whole, yet neither the userspace
        // encapsulator nor the decapsulator carried them: the programs did.
        assert!(encap < MIN_PACKETS / 100, "node {name}: the userspace encapsulator sent {encap} packets");
        assert!(decap < BYTES as u64 / 100, "node {name}: the userspace decapsulator took {decap} bytes");
    }

    // Restart node a: the new run loads its program again and finds the
    // route carrying that program's name: nothing is written.
    drop(a);
    let monitor = RouteMonitor::start(&t.ns("a"));
    let _a = start_node(&t, A, true);
    wait_until("pod a to ping pod b after the restart", Duration::from_secs(15), || {
        t.ping("pa", "10.244.2.7").then_some(())
    })
    .unwrap();
    let writes: Vec<String> = monitor.all().into_iter().filter(|l| l.contains("10.244.2.0/26")).collect();
    assert!(writes.is_empty(), "the restart wrote: {writes:?}");
    assert!(route_of(&t, "a", A.block).contains("tipip0a020002"));
}

#[test]
fn the_receive_program_leaves_packets_from_unknown_senders_to_be_dropped() {
    let t = lab();
    let _a = start_node(&t, A, true);
    let b = start_node(&t, B, true);
    // The router (10.2.0.1) is not a node: the program must not hand its
    // IP-in-IP packets to the tunnel; the userspace decapsulator drops them.
    support::transfer::send_ipip(&t, "r", "10.2.0.2", "10.244.1.5", "10.244.2.7", 3);
    wait_until("the spoofed packets to be dropped", Duration::from_secs(10), || {
        (b.counters.dropped(DropReason::UnknownSource) >= 3).then_some(())
    })
    .unwrap();
    assert_eq!(b.counters.decap_packets.load(Relaxed), 0);
}

#[test]
fn with_the_program_off_the_tun_device_carries_the_traffic_and_a_restart_writes_nothing() {
    let mut t = lab();
    let a = start_node(&t, A, false);
    let b = start_node(&t, B, false);
    let route = route_of(&t, "a", A.block);
    assert!(!route.contains("encap"), "{route}");
    wait_until("pod a to ping pod b", Duration::from_secs(15), || t.ping("pa", "10.244.2.7").then_some(())).unwrap();
    let (sent, received) = bulk_transfer(&mut t, "pa", "pb", "10.244.2.7", BYTES);
    assert_eq!(received, sent, "pod b received exactly what pod a sent");
    let encap = a.counters.encap_packets.load(Relaxed);
    assert!(encap >= MIN_PACKETS, "node a's userspace encapsulator sent {encap} packets");
    let decap = b.counters.decap_bytes.load(Relaxed);
    assert!(decap >= BYTES as u64, "node b's userspace decapsulator took {decap} bytes");

    // A restart reattaches to the device; the kernel drops every route
    // through a device that loses its last address, without a word, so the
    // address must never be taken off on the way, even when it changes.
    drop(a);
    let monitor = RouteMonitor::start(&t.ns("a"));
    let _a = start_node_at(&t, A, "10.244.1.2", false);
    wait_until("pod a to ping pod b after the restart", Duration::from_secs(15), || {
        t.ping("pa", "10.244.2.7").then_some(())
    })
    .unwrap();
    let writes: Vec<String> = monitor.all().into_iter().filter(|l| l.contains("10.244.2.0/26")).collect();
    assert!(writes.is_empty(), "the restart wrote: {writes:?}");
    let addresses =
        String::from_utf8_lossy(&t.exec("a", &["ip", "-4", "-o", "addr", "show", "dev", "ttipip0"]).unwrap().stdout)
            .to_string();
    assert!(addresses.contains("10.244.1.2/32") && !addresses.contains("10.244.1.1/"), "{addresses}");
}
