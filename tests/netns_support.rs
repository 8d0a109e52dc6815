//! The network-namespace test support: topologies work and always clean up.

use std::process::Command;
use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::{json_subset, wait_until};

fn netns_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn two_namespaces_ping_across_a_veth() {
    let mut topo = Topology::new("ping").unwrap();
    topo.add_namespace("a").unwrap();
    topo.add_namespace("b").unwrap();
    topo.add_veth(("a", "eth1", Some("10.99.0.1/30")), ("b", "eth1", Some("10.99.0.2/30"))).unwrap();
    wait_until("a ping from a to b", Duration::from_secs(10), || topo.ping("a", "10.99.0.2").then_some(())).unwrap();

    let routes = topo.exec_json("b", &["ip", "-j", "route"]).unwrap();
    json_subset(&serde_json::json!([{"dst": "10.99.0.0/30", "dev": "eth1", "prefsrc": "10.99.0.2"}]), &routes).unwrap();
}

#[test]
fn processes_in_a_namespace_are_supervised_and_stopped() {
    let mut topo = Topology::new("proc").unwrap();
    topo.add_namespace("a").unwrap();
    let ns = topo.ns("a");
    let proc = topo.spawn("a", &["sleep", "300"]).unwrap();
    let pid = proc.pid();
    assert!(proc.is_running());
    // The process really runs inside the namespace (once `ip netns exec` has joined it).
    wait_until("the process to be inside the namespace", Duration::from_secs(10), || {
        let pids = Command::new("ip").args(["netns", "pids", &ns]).output().ok()?;
        String::from_utf8_lossy(&pids.stdout).split_whitespace().any(|p| p == pid.to_string()).then_some(())
    })
    .unwrap();
    drop(topo);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie_or_gone(pid));
    assert!(!netns_exists(&ns));
}

fn is_zombie_or_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn everything_is_removed_after_a_panic() {
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let mut topo = Topology::new("panic").unwrap();
        topo.add_namespace("a").unwrap();
        topo.add_namespace("b").unwrap();
        topo.add_veth(("a", "eth1", None), ("b", "eth1", None)).unwrap();
        names.lock().unwrap().extend(topo.namespaces().iter().cloned());
        for n in topo.namespaces() {
            assert!(netns_exists(n), "{n} exists while the topology lives");
        }
        panic!("deliberate panic inside a topology");
    });
    assert!(result.is_err(), "the closure panicked");
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 2);
    for n in &names {
        assert!(!netns_exists(n), "{n} must be gone after the panic");
    }
}
