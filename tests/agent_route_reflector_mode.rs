//! `dataplane.install_learned_routes: false` (a dedicated route reflector):
//! a route learned from a real BIRD is in the RIB but not in the kernel,
//! while an agent with the default installs the same route next to it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::daemons::start_bird;
use tortie::netns::Topology;
use tortie::testing::wait_until;

fn agent_config(dir: &Path, name: &str, tor: &str, install: bool) -> std::path::PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "node: {{name: {name}, address_autodetection: interface=eth1}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{enabled: false}}\n\
             bgp: {{as_number: 64512, hold_time_seconds: 9, node_to_node_mesh: false, \
                    peers: [{{address: {tor}, as_number: 65001}}]}}\n\
             dataplane: {{install_learned_routes: {install}}}\n\
             ipam: {{default_ipv4_pool_cidr: 10.251.0.0/16}}\n",
            db = dir.join(format!("{name}.db")).display(),
            sock = dir.join(format!("{name}.sock")).display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_reflector_without_route_installation_keeps_learned_routes_in_the_rib_only() {
    let mut t = Topology::new("rronly").unwrap();
    for ns in ["rr", "node", "tor"] {
        t.add_namespace(ns).unwrap();
    }
    t.add_veth(("rr", "eth1", Some("10.126.0.5/24")), ("tor", "eth1", Some("10.126.0.1/24"))).unwrap();
    t.add_veth(("node", "eth1", Some("10.127.0.5/24")), ("tor", "eth2", Some("10.127.0.1/24"))).unwrap();
    let _ctl = start_bird(
        &mut t,
        "tor",
        "router id 10.126.0.1;\nprotocol device {}\nprotocol static { ipv4; route 198.51.100.0/24 blackhole; }\n\
         protocol bgp to_rr { local 10.126.0.1 as 65001; neighbor 10.126.0.5 as 64512; hold time 9; \
         connect retry time 1; ipv4 { import none; export all; }; }\n\
         protocol bgp to_node { local 10.127.0.1 as 65001; neighbor 10.127.0.5 as 64512; hold time 9; \
         connect retry time 1; ipv4 { import none; export all; }; }\n",
    );
    let dir = t.dir().to_path_buf();
    let (rr, node) = (agent_config(&dir, "rr", "10.126.0.1", false), agent_config(&dir, "node", "10.127.0.1", true));
    let bin = env!("CARGO_BIN_EXE_tortie");
    t.spawn("rr", &[bin, "node", "--config", rr.to_str().unwrap()]).unwrap();
    t.spawn("node", &[bin, "node", "--config", node.to_str().unwrap()]).unwrap();

    let kernel_has = |ns: &str| {
        let routes = t.exec_json(ns, &["ip", "-j", "route", "show", "198.51.100.0/24", "proto", "116"]);
        routes.ok().and_then(|v| v.as_array().map(|a| !a.is_empty())).unwrap_or(false)
    };
    let rib_has = |name: &str| {
        let out = Command::new(bin)
            .args(["bgp", "routes", "-o", "json", "--socket"])
            .arg(dir.join(format!("{name}.sock")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("198.51.100.0/24")
    };
    let status = |name: &str| {
        let out = Command::new(bin)
            .args(["status", "-o", "json", "--socket"])
            .arg(dir.join(format!("{name}.sock")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // The control: the default agent installs the route...
    wait_until("the default agent to install the learned route", Duration::from_secs(30), || {
        kernel_has("node").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; its status: {}", status("node")));
    // ...which the reflector learned as well, and by now would have installed.
    wait_until("the reflector to learn the route", Duration::from_secs(30), || rib_has("rr").then_some(())).unwrap();
    wait_until("the default agent's RIB to show it too", Duration::from_secs(5), || rib_has("node").then_some(()))
        .unwrap();
    assert!(!kernel_has("rr"), "a reflector without route installation wrote the learned route");
}
