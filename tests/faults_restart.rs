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
