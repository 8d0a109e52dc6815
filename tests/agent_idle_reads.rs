//! An idle agent reads nothing from the datastore: once its pictures and its policy follower have
//! read what they need, no kind is listed again while nothing changes. What one agent lists, every
//! agent lists, so a timer that relists is a load that grows with the cluster (at 1 000 nodes a
//! listing of the IPAM blocks is about 3 MB). Read from the agent's own
//! `tortie_datastore_listings_total`.

use std::collections::BTreeMap;
use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(30);
/// Longer than every period an agent task used to relist on (10 s and 30 s).
const IDLE: Duration = Duration::from_secs(35);
/// Kinds an idle agent must not list again. The load-balancer lease holder (this agent, the only
/// one) reads the Services and pools once per 5 s pass; the peer set reads the BGPPeers when the
/// Nodes change.
const QUIET: [&str; 7] =
    ["IPAMBlock", "Node", "NodeStatus", "IPAMHandle", "BlockAffinity", "NetworkPolicy", "Namespace"];

/// `tortie_datastore_listings_total` by kind, from the agent's metrics in namespace `ns`.
fn listings(t: &Topology, ns: &str) -> Option<BTreeMap<String, u64>> {
    let out = t.exec(ns, &["curl", "-s", "http://127.0.0.1:9478/metrics"]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = "tortie_datastore_listings_total{kind=\"";
    let counts: BTreeMap<String, u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (kind, rest) = l.split_once('"')?;
            Some((kind.to_string(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    (!counts.is_empty()).then_some(counts)
}

#[test]
fn an_idle_agent_lists_nothing_again() {
    let mut t = Topology::new("idlerd").unwrap();
    t.add_namespace("sw").unwrap();
    t.add_namespace("n1").unwrap();
    t.add_veth(("n1", "eth0", Some("192.0.2.41/24")), ("sw", "p0", None)).unwrap();
    let dir = t.dir().to_path_buf();
    let config = dir.join("n1.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: n1, address_autodetection: interface=eth0}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\n\
             metrics: {{listen: 127.0.0.1:9478}}\nbgp: {{as_number: 64512}}\n",
            db = dir.join("tortie.db").display(),
            sock = dir.join("n1.sock").display(),
        ),
    )
    .unwrap();
    t.spawn("n1", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();

    // Started: the pictures have their watches' listings, the policy follower its first read.
    let started = ["IPAMBlock", "Node", "NetworkPolicy", "Namespace"];
    let before = wait_until("the agent's first reads", WAIT, || {
        let counts = listings(&t, "n1")?;
        started.iter().all(|k| counts.get(*k).is_some_and(|n| *n > 0)).then_some(counts)
    })
    .unwrap_or_else(|e| panic!("{e}; metrics: {:?}", listings(&t, "n1")));
    // The window is what is measured, not a wait for something to happen.
    std::thread::sleep(IDLE);
    let after = listings(&t, "n1").expect("the agent's metrics");
    let listed_again: Vec<String> = QUIET
        .iter()
        .filter_map(|k| {
            let (b, a) = (before.get(*k).copied().unwrap_or(0), after.get(*k).copied().unwrap_or(0));
            (a != b).then(|| format!("{k}: {b} -> {a}"))
        })
        .collect();
    assert!(listed_again.is_empty(), "listed again in {IDLE:?} idle: {listed_again:?}");
}
