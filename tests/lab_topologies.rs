//! The three topologies of containerlab/ through the lab runner, end to end:
//! agents, BGP, IPAM, CNI and the dataplane together. Pods on every node
//! reach each other (ping and TCP); a new pod is reachable from the others;
//! a killed and restarted agent drops no pod traffic; a node that
//! disappears has its routes withdrawn within the hold time; CrossSubnet
//! tunnels only between subnets; ToRs learn every block.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::lab::Lab;
use tortie::testing::{json_subset, wait_until};

fn wait_ready(lab: &Lab, node: &str, peers: usize) -> serde_json::Value {
    wait_until(&format!("{node} ready with {peers} established peers"), Duration::from_secs(90), || {
        let s = lab.status(node);
        let up = s["peers"].as_array()?.iter().filter(|p| p["state"] == "established").count();
        (s["ready"] == true && up == peers).then_some(s)
    })
    .unwrap()
}

/// (destination, gateway or device) of each route: what must survive a restart unchanged.
fn route_set(routes: &[serde_json::Value]) -> BTreeSet<String> {
    routes
        .iter()
        .map(|r| {
            let via = r["gateway"].as_str().map(str::to_string).or_else(|| r["type"].as_str().map(str::to_string));
            format!(
                "{} {} {}",
                r["dst"].as_str().unwrap_or("?"),
                via.unwrap_or_default(),
                r["dev"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn quickstart_pods_talk_survive_an_agent_restart_and_new_pods_are_reachable() {
    let lab = Lab::prepare("quickstart", "tq", |_| {});
    lab.up();
    for node in ["node1", "node2", "node3"] {
        let status = wait_ready(&lab, node, 2);
        json_subset(
            &serde_json::json!({"node": node, "peers": [{"type": "node-to-node mesh", "tunnel_mode": "direct"}]}),
            &status,
        )
        .unwrap();
    }
    lab.all_pods_reach_each_other(&["node1", "node2", "node3"]);

    // A new pod on node3 is reachable from node1's pod soon after CNI ADD returns.
    let add = lab.exec("node3", &[env!("CARGO_BIN_EXE_tortie"), "lab", "pod", "add", "pod2"]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let added = Instant::now();
    let pod2 = lab.pod_ip("node3", "pod2");
    wait_until("node1/pod1 to reach the new pod", Duration::from_secs(30), || {
        lab.pod_ping("node1", "pod1", pod2).then_some(())
    })
    .unwrap();
    eprintln!("new pod reachable from another node {:?} after CNI ADD returned", added.elapsed());

    // kill -9 of node2's agent and a restart, under a continuous ping across it.
    let node2_pod = lab.pod_ip("node2", "pod1");
    let before = route_set(&lab.routes("node1"));
    let node2_before = route_set(&lab.routes("node2"));
    let ping = Command::new("ip")
        // 300 packets, 15 s: the kill and restart below happen well inside that window.
        .args(["netns", "exec", &lab.pod_ns("node1", "pod1"), "ping", "-i", "0.05", "-W", "1", "-c", "300"])
        .arg(node2_pod.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ping_started = Instant::now();
    support::faults::kill9(lab.agent_pid("node2"));
    lab.up(); // restarts what is not running
    wait_ready(&lab, "node2", 2);
    // Both sides have re-sent their tables (End-of-RIB) once node1's view is what it was.
    wait_until("node1's routes to come back unchanged", Duration::from_secs(30), || {
        (route_set(&lab.routes("node1")) == before).then_some(())
    })
    .unwrap();
    wait_until("node2's routes to come back unchanged", Duration::from_secs(30), || {
        (route_set(&lab.routes("node2")) == node2_before).then_some(())
    })
    .unwrap();
    let restarted_within = ping_started.elapsed();
    let out = ping.wait_with_output().unwrap();
    assert!(
        restarted_within < Duration::from_secs(14),
        "the restart took {restarted_within:?}, longer than the ping window"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default().to_string();
    eprintln!("continuous ping across the restarted node: {summary}");
    let nums: Vec<u64> = summary.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    assert!(nums.len() >= 2 && nums[0] == 300, "{summary}");
    assert_eq!(nums[0], nums[1], "no pod packet lost across the agent restart: {summary}");
    // node1's log tells the story at INFO: node2's session went down, and why, and came back.
    let log = lab.agent_log("node1");
    let about_node2: Vec<&str> = log.lines().filter(|l| l.contains("peer=10.10.0.12")).collect();
    let down = about_node2
        .iter()
        .position(|l| l.contains(" INFO ") && l.contains("BGP session down") && l.contains("reason="));
    let up = about_node2.iter().rposition(|l| l.contains(" INFO ") && l.contains("BGP session established"));
    assert!(matches!((down, up), (Some(d), Some(u)) if d < u), "node1's log about node2:\n{}", about_node2.join("\n"));
}

#[test]
fn cross_subnet_tunnels_only_between_subnets_and_a_removed_node_is_withdrawn() {
    // A short hold time, so the removal is noticed quickly.
    let lab = Lab::prepare("cross-subnet", "tx", |dir| {
        let conf = dir.join("cross-subnet/node.yaml");
        let text = std::fs::read_to_string(&conf)
            .unwrap()
            .replace("  as_number: 64512\n", "  as_number: 64512\n  hold_time_seconds: 9\n");
        std::fs::write(conf, text).unwrap();
    });
    lab.up();
    for node in ["node1", "node2", "node3"] {
        wait_ready(&lab, node, 2);
    }
    lab.all_pods_reach_each_other(&["node1", "node2", "node3"]);

    let p2 = lab.pod_ip("node2", "pod1");
    let p3 = lab.pod_ip("node3", "pod1");
    let direct = lab.route_to_pod("node1", p2).expect("node1 routes node2's block");
    json_subset(&serde_json::json!({"gateway": "10.30.1.12", "dev": "eth1"}), &direct).unwrap();
    let tunnel = lab.route_to_pod("node1", p3).expect("node1 routes node3's block");
    assert_ne!(tunnel["dev"], "eth1", "another subnet goes through the tunnel: {tunnel}");
    let router = Command::new("ip").args(["-n", &lab.ns("router"), "-j", "route"]).output().unwrap();
    let router: Vec<serde_json::Value> = serde_json::from_slice(&router.stdout).unwrap();
    assert!(router.iter().all(|r| !r["dst"].as_str().unwrap_or("").starts_with("10.244.")), "{router:?}");
    let status = lab.status("node1");
    let modes: BTreeSet<(String, String)> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["address"].as_str().unwrap().to_string(), p["tunnel_mode"].as_str().unwrap().to_string()))
        .collect();
    assert!(modes.contains(&("10.30.1.12".to_string(), "direct".to_string())), "{modes:?}");
    assert!(modes.iter().any(|(a, m)| a == "10.30.2.13" && m.starts_with("ipip")), "{modes:?}");

    // node3 disappears: its link goes, then its agent dies without a word.
    let pid = lab.agent_pid("node3");
    Command::new("ip").args(["-n", &lab.ns("node3"), "link", "del", "eth1"]).status().unwrap();
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    let gone = Instant::now();
    wait_until("node3's block to leave node1's routes", Duration::from_secs(30), || {
        lab.route_to_pod("node1", p3).is_none().then_some(())
    })
    .unwrap();
    eprintln!("a vanished node's routes withdrawn after {:?} (hold time 9 s)", gone.elapsed());
    assert!(lab.route_to_pod("node1", p2).is_some(), "node2's block stays");
}

#[test]
fn tor_racks_learn_every_block_and_reflectors_carry_the_cluster() {
    let lab = Lab::prepare("tor", "tt", |_| {});
    lab.up();
    let nodes = ["node1", "node2", "node3", "node4"];
    // Reflectors peer with every node and their ToR (4); clients with both reflectors and their ToR (3).
    for (node, peers) in [("node1", 4), ("node2", 3), ("node3", 4), ("node4", 3)] {
        let status = wait_ready(&lab, node, peers);
        let types: BTreeSet<&str> =
            status["peers"].as_array().unwrap().iter().filter_map(|p| p["type"].as_str()).collect();
        assert!(types.contains("global"), "{node} peers with its ToR: {status}");
        assert!(
            !types.contains("node-to-node mesh") || ["node1", "node3"].contains(&node),
            "clients are not meshed: {status}"
        );
    }
    lab.all_pods_reach_each_other(&nodes);

    let blocks: BTreeSet<String> = nodes
        .iter()
        // Blocks are /26 (the pool's default block size).
        .map(|n| ipnetwork::Ipv4Network::new(lab.pod_ip(n, "pod1"), 26).unwrap().network().to_string())
        .collect();
    // FRR on tor1 has a route to every node's block.
    let vty = lab.dir().join("tor1");
    let frr = wait_until("tor1 (FRR) to learn every block", Duration::from_secs(60), || {
        let out = Command::new("vtysh").arg("--vty_socket").arg(&vty).args(["-c", "show ip bgp json"]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let have: BTreeSet<String> =
            v["routes"].as_object()?.keys().filter_map(|k| k.split('/').next().map(str::to_string)).collect();
        blocks.is_subset(&have).then_some(v)
    })
    .unwrap();
    assert!(frr["routes"].as_object().unwrap().len() >= blocks.len());
    // BIRD on tor2 too.
    let ctl = lab.dir().join("tor2/bird.ctl");
    wait_until("tor2 (BIRD) to learn every block", Duration::from_secs(60), || {
        let out = Command::new("birdc").arg("-s").arg(&ctl).args(["show", "route"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        blocks.iter().all(|b| text.contains(&format!("{b}/26"))).then_some(())
    })
    .unwrap();
    // The ToRs advertise their racks' subnets, which the nodes there route on-link already:
    // tortie's route is shadowed by the kernel's, news at INFO, not a warning or a failure.
    wait_until("node3 to count rack2's subnet as shadowed", Duration::from_secs(30), || {
        (lab.metric("node3", "tortie_dataplane_routes_shadowed")? >= 1.0).then_some(())
    })
    .unwrap();
    for node in nodes {
        assert_eq!(lab.metric(node, "tortie_dataplane_failures_total{op=\"add\"}"), Some(0.0), "{node}");
    }
    lab.assert_agents_quiet(&nodes);
}
