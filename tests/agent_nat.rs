//! NAT outgoing end to end: `tortie node` in a namespace, a "pod" behind a
//! veth with an address of a pool, and an outside host on a link of the
//! node that has no route back to the pool. The pod reaches the host
//! (IPv4 and IPv6) only while its pool has `natOutgoing`: the host sees the
//! node's address. The table goes on exit with `dataplane.cleanup_on_exit`.

mod support;

use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::IpPool;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const METRICS: &str = "127.0.0.1:19481";
const WAIT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Sets `natOutgoing` on every pool in the datastore at `db`.
fn set_nat(db: &std::path::Path, nat: bool) {
    runtime().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(db, SqliteOptions::default()).await.unwrap());
        for pool in ds.list::<IpPool>().await.unwrap().items {
            let mut spec = pool.spec;
            spec.nat_outgoing = nat;
            ds.update(&pool.name, &spec, pool.revision).await.unwrap();
        }
    })
}

/// The elements of one of our sets in namespace `n`.
fn elements(t: &Topology, set: &str) -> Vec<serde_json::Value> {
    let Ok(json) = t.exec_json("n", &["nft", "-j", "list", "set", "inet", "tortie", set]) else { return Vec::new() };
    json["nftables"][1]["set"].get("elem").and_then(|e| e.as_array()).cloned().unwrap_or_default()
}

#[test]
fn a_pod_reaches_an_outside_host_without_a_route_back_only_through_nat_outgoing() {
    let mut t = Topology::new("nat").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("ext").unwrap();
    t.add_veth(("n", "eth1", Some("192.0.2.1/24")), ("ext", "eth1", Some("192.0.2.2/24"))).unwrap();
    t.exec("n", &["ip", "addr", "add", "2001:db8:5::1/64", "dev", "eth1", "nodad"]).unwrap();
    t.exec("ext", &["ip", "addr", "add", "2001:db8:5::2/64", "dev", "eth1", "nodad"]).unwrap();
    support::pods::add_pod(&mut t, "n", "pod", "cali1", "10.244.3.4").unwrap();
    support::pods::add_pod_v6(&t, "n", "pod", "cali1", "fd00:244::4").unwrap();

    let dir = t.dir().to_path_buf();
    let db = dir.join("tortie.db");
    runtime().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
        for (name, cidr) in [("v4", "10.244.0.0/16"), ("v6", "fd00:244::/64")] {
            let mut pool = IpPool::new(cidr.parse().unwrap());
            pool.nat_outgoing = true;
            tortie::ipam::create_pool(&ds, name, &pool).await.unwrap();
        }
    });
    let config = dir.join("tortie.yaml");
    let socket = dir.join("api.sock");
    std::fs::write(
        &config,
        format!(
            "node: {{name: nat-test}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{listen: \"{METRICS}\"}}\nbgp: {{enabled: false}}\ndataplane: {{cleanup_on_exit: true, resync_interval_seconds: 1}}\n",
            db.display(),
            socket.display()
        ),
    )
    .unwrap();
    let agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    let pid = agent.pid();
    let log = agent.log_path().to_path_buf();
    let fail = |what: &str| -> ! {
        let table = t
            .exec("n", &["nft", "list", "table", "inet", "tortie"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let pools = runtime().block_on(async {
            let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
            ds.list::<IpPool>()
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| (p.spec.cidr, p.spec.nat_outgoing))
                .collect::<Vec<_>>()
        });
        let log: String = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("INFO") || l.contains("nat"))
            .collect::<Vec<_>>()
            .join("\n");
        panic!("{what}; pools {pools:?}; table {table:?}; agent log:\n{log}");
    };

    if wait_until("the pools in the NAT set", WAIT, || {
        (elements(&t, "nat-masq-ipam-pools-v4").len() == 1).then_some(())
    })
    .is_err()
    {
        fail("no NAT set");
    }
    // The node's own address is in the hosts set: traffic to nodes keeps the pod's address.
    assert_eq!(elements(&t, "nat-all-hosts-v4"), vec![serde_json::json!("192.0.2.1")]);
    for (addr, family) in [("192.0.2.2", "IPv4"), ("2001:db8:5::2", "IPv6")] {
        if wait_until("the outside host answering the pod", WAIT, || t.ping("pod", addr).then_some(())).is_err() {
            fail(&format!("{family}: the pod cannot reach {addr} with natOutgoing"));
        }
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["status", "-o", "json", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["nat_outgoing_pools"], serde_json::json!(["10.244.0.0/16", "fd00:244::/64"]), "{status}");

    // natOutgoing off: the sets empty, the pod's packets leave with its own address and no answer comes back.
    set_nat(&db, false);
    let emptied = || {
        (elements(&t, "nat-masq-ipam-pools-v4").is_empty() && elements(&t, "nat-masq-ipam-pools-v6").is_empty())
            .then_some(())
    };
    if wait_until("the NAT sets emptied", WAIT, emptied).is_err() {
        fail("the NAT sets stay");
    }
    assert!(!t.ping("pod", "192.0.2.2"), "without NAT the outside host cannot answer the pod");
    assert!(!t.ping("pod", "2001:db8:5::2"), "without NAT the outside host cannot answer the pod (IPv6)");

    // And on again, live (the test's datastore connection closing after its write must not
    // leave the agent reading a removed WAL).
    set_nat(&db, true);
    if wait_until("the pod reaching out again", WAIT, || t.ping("pod", "192.0.2.2").then_some(())).is_err() {
        fail("NAT not restored");
    }

    let exit = t.terminate(pid, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "SIGTERM stops the agent cleanly: {exit:?}");
    assert!(t.exec("n", &["nft", "list", "table", "inet", "tortie"]).is_err(), "the table goes with cleanup_on_exit");
}
