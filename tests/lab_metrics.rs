//! Metrics and readiness in a running lab (the quickstart topology): the
//! counters move as operators expect — a new pod raises addresses in use, a
//! session flap increments flaps, a cut direct path shows up as tunnel
//! routes — and readiness goes false, naming the peers, when they die.

mod support;

use std::process::Command;
use std::time::Duration;
use support::lab::Lab;
use tortie::testing::wait_until;

fn fetch(lab: &Lab, node: &str, path: &str) -> Option<(u16, String)> {
    let script = format!(
        "import urllib.request, urllib.error\ntry:\n  r = urllib.request.urlopen('http://127.0.0.1:9478{path}', timeout=2); print(r.status); print(r.read().decode(), end='')\nexcept urllib.error.HTTPError as e:\n  print(e.code); print(e.read().decode(), end='')"
    );
    let out = lab.exec(node, &["python3", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, body) = text.split_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

/// The value of the first sample whose line starts with `series` (name and labels as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn metric(lab: &Lab, node: &str, series: &str) -> Option<f64> {
    value(&fetch(lab, node, "/metrics")?.1, series)
}

#[test]
fn counters_move_with_pods_flaps_and_cut_paths_and_readiness_names_dead_peers() {
    let lab = Lab::prepare("quickstart", "tm", |_| {});
    lab.up();
    let up = |peer: &str| format!("tortie_bgp_session_up{{peer=\"{peer}\",peer_asn=\"64512\",peer_type=\"mesh\"}}");
    wait_until("node1's sessions to be up in its metrics", Duration::from_secs(60), || {
        (metric(&lab, "node1", &up("10.10.0.12"))? == 1.0 && metric(&lab, "node1", &up("10.10.0.13"))? == 1.0)
            .then_some(())
    })
    .unwrap();
    wait_until("node1 to be ready", Duration::from_secs(60), || {
        (fetch(&lab, "node1", "/readyz")?.0 == 200).then_some(())
    })
    .unwrap();

    // A new pod raises the pool's addresses in use.
    let in_use = "tortie_ipam_allocations_in_use{pool=\"10.244.0.0/16\"}";
    let before = wait_until("pool usage in node1's metrics", Duration::from_secs(30), || {
        metric(&lab, "node1", in_use).filter(|v| *v >= 3.0)
    })
    .unwrap();
    let add = lab.exec("node2", &[env!("CARGO_BIN_EXE_tortie"), "lab", "pod", "add", "pod2"]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    wait_until("addresses in use to rise with the new pod", Duration::from_secs(30), || {
        (metric(&lab, "node1", in_use)? == before + 1.0).then_some(())
    })
    .unwrap();

    // A cut direct path (node2 drops pod-sourced packets arriving unencapsulated) moves node1's
    // route to node2's blocks into the tunnel.
    let nft = "add table inet ttcut; add chain inet ttcut pre { type filter hook prerouting priority -300; }; add rule inet ttcut pre iifname eth1 ip saddr 10.244.0.0/16 drop";
    assert!(lab.exec("node2", &["nft", nft]).status.success());
    wait_until("node1 to route node2's blocks through the tunnel", Duration::from_secs(30), || {
        let text = fetch(&lab, "node1", "/metrics")?.1;
        (value(&text, "tortie_dataplane_node_path{node=\"10.10.0.12\",path=\"ipip\"}")? == 1.0
            && value(&text, "tortie_dataplane_routes{table=\"254\",kind=\"remote_ipip\"}")? >= 1.0)
            .then_some(())
    })
    .unwrap();
    assert!(lab.exec("node2", &["nft", "delete table inet ttcut"]).status.success());

    // A session flap: node3's agent dies and comes back.
    let flaps = "tortie_bgp_session_flaps_total{peer=\"10.10.0.13\"}";
    let flaps_before = metric(&lab, "node1", flaps).unwrap();
    let pid = lab.agent_pid("node3");
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    wait_until("node1 to count node3's flap", Duration::from_secs(30), || {
        (metric(&lab, "node1", flaps)? > flaps_before).then_some(())
    })
    .unwrap();
    lab.up();
    wait_until("node3's session back up", Duration::from_secs(60), || {
        (metric(&lab, "node1", &up("10.10.0.13"))? == 1.0).then_some(())
    })
    .unwrap();

    // Both peers die: node1 is no longer ready, and says which peers are down.
    for node in ["node2", "node3"] {
        let pid = lab.agent_pid(node);
        assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    }
    let body = wait_until("node1 to turn not ready", Duration::from_secs(30), || {
        let (code, body) = fetch(&lab, "node1", "/readyz")?;
        (code == 503).then_some(body)
    })
    .unwrap();
    assert!(body.contains("10.10.0.12") && body.contains("10.10.0.13"), "{body}");
}
