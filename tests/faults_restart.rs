//! Fault injection: an agent killed with SIGKILL and restarted, over and
//! over, under continuous pod traffic across it. The previous run's routes
//! carry traffic until BGP is back, so no route of tortie's is deleted on
//! any node and no ping is lost.

mod support;

use std::time::{Duration, Instant};
use support::faults::{Pinger, RouteMonitor, kill9};
use support::lab::Lab;
use tortie::testing::wait_until;

/// Restart cycles; `TORTIE_FAULT_CYCLES` changes it for a longer soak.
fn cycles() -> usize {
    std::env::var("TORTIE_FAULT_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

fn wait_ready(lab: &Lab, node: &str, peers: usize) {
    wait_until(&format!("{node} ready with {peers} established peers"), Duration::from_secs(90), || {
        let s = lab.status(node);
        let up = s["peers"].as_array()?.iter().filter(|p| p["state"] == "established").count();
        (s["ready"] == true && up == peers).then_some(())
    })
    .unwrap();
}

#[test]
fn kill9_and_restart_cycles_delete_no_route_and_lose_no_ping() {
    let lab = Lab::prepare("quickstart", "tf", |_| {});
    lab.up();
    let nodes = ["node1", "node2", "node3"];
    for node in nodes {
        wait_ready(&lab, node, 2);
    }
    let pods: Vec<_> = nodes.iter().map(|n| lab.pod_ip(n, "pod1")).collect();
    for (i, node) in nodes.iter().enumerate() {
        let next = pods[(i + 1) % pods.len()];
        wait_until(&format!("{node}/pod1 to reach {next}"), Duration::from_secs(60), || {
            lab.pod_ping(node, "pod1", next).then_some(())
        })
        .unwrap();
    }
    let monitors: Vec<RouteMonitor> = nodes.iter().map(|n| RouteMonitor::start(&lab.ns(n))).collect();
    // Into the restarted node's pod and out of it, 50 ms apart.
    let interval = Duration::from_millis(50);
    let into = Pinger::start(&lab.pod_ns("node1", "pod1"), pods[1].into(), interval, "node1/pod1 -> node2/pod1");
    let out_of = Pinger::start(&lab.pod_ns("node2", "pod1"), pods[2].into(), interval, "node2/pod1 -> node3/pod1");

    let started = Instant::now();
    for cycle in 0..cycles() {
        kill9(lab.agent_pid("node2"));
        lab.up(); // restarts what is not running
        wait_ready(&lab, "node2", 2);
        for m in &monitors {
            let deleted = m.deleted_ours();
            assert!(
                deleted.is_empty(),
                "cycle {cycle}: routes deleted in {}: {deleted:#?}\nits route events: {:#?}\nnode2's agent log:\n{}",
                m.namespace(),
                m.all(),
                lab.agent_log("node2")
            );
        }
    }
    eprintln!("{} kill -9 + restart cycles in {:?}", cycles(), started.elapsed());
    // Replies still in flight when ping stops are not losses: let the last ones arrive.
    for node in nodes {
        wait_ready(&lab, node, 2);
    }
    let (into, out_of) = (into.stop(), out_of.stop());
    assert!(into.transmitted > 0 && out_of.transmitted > 0);
    assert!(into.transmitted - into.received <= 1, "pings into the restarted node lost: {into:?}");
    assert!(out_of.transmitted - out_of.received <= 1, "pings out of the restarted node lost: {out_of:?}");
}

/// The userspace tunnel's device (`ipip.userspace_device`'s default).
const TUNNEL_DEVICE: &str = "tortie-ipip";

#[test]
fn a_restart_keeps_the_userspace_tunnel_and_its_routes() {
    let lab = Lab::prepare("cross-subnet", "tu", |_| {});
    lab.up();
    for node in ["node1", "node2", "node3"] {
        wait_ready(&lab, node, 2);
    }
    // node3 is in another subnet: node1 reaches its pod through the tunnel.
    let p3 = lab.pod_ip("node3", "pod1");
    wait_until("node1/pod1 to reach node3/pod1 through the tunnel", Duration::from_secs(60), || {
        lab.pod_ping("node1", "pod1", p3).then_some(())
    })
    .unwrap();
    let tunnel_routes = || {
        let out = std::process::Command::new("ip")
            .args(["-n", &lab.ns("node1"), "route", "show", "dev", TUNNEL_DEVICE, "proto", "116"])
            .output()
            .unwrap();
        // While no process holds the device it has no carrier: the routes stay, marked linkdown.
        String::from_utf8_lossy(&out.stdout).replace(" linkdown", "")
    };
    let before = tunnel_routes();
    assert!(!before.trim().is_empty(), "node1 routes node3's block through {TUNNEL_DEVICE}");
    let monitor = RouteMonitor::start(&lab.ns("node1"));
    let interval = Duration::from_millis(50);
    let ping = Pinger::start(&lab.pod_ns("node1", "pod1"), p3.into(), interval, "node1/pod1 -> node3/pod1 (tunnel)");

    // SIGTERM, as an init system stops it.
    let down = Instant::now();
    lab.stop_agent("node1", Duration::from_secs(20));
    assert_eq!(tunnel_routes(), before, "the device and its routes outlive the agent");
    lab.up();
    wait_until("node1/pod1 to reach node3/pod1 again", Duration::from_secs(60), || {
        lab.pod_ping("node1", "pod1", p3).then_some(())
    })
    .unwrap();
    let down_for = down.elapsed();
    wait_ready(&lab, "node1", 2);
    let summary = ping.stop();
    let lost = summary.transmitted - summary.received;
    eprintln!(
        "tunnel traffic across an agent restart: {lost} of {} pings lost ({:?} at {interval:?} apart); agent down to traffic back: {down_for:?}",
        summary.transmitted,
        interval * u32::try_from(lost).unwrap_or(u32::MAX),
    );
    assert!(monitor.deleted_ours().is_empty(), "no route deleted: {:#?}", monitor.deleted_ours());
    assert!(
        interval * u32::try_from(lost).unwrap_or(u32::MAX) <= down_for + interval,
        "only the time the agent was down is lost: {lost} pings lost, down {down_for:?}"
    );
}
