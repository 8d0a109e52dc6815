//! Service addresses over BGP in the ToR lab (containerlab/tor: node1, node2 under tor1 running
//! FRR; node3, node4 under tor2 running BIRD; the ToRs peer with each other). The resources are
//! written into the lab's shared datastore as `tortie apply` would. The ClusterIP CIDR reaches
//! both ToRs, at FRR with both rack-1 nodes as ECMP next hops; an externalTrafficPolicy=Local
//! address is advertised only by the node with its endpoint, follows the endpoint when it moves,
//! and is withdrawn when the endpoint turns not-ready, when it is terminating, and when the
//! Service is deleted.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use support::lab::Lab;
use tortie::datastore::resources::{BgpConfiguration, EndpointSlice, IpPool, PoolUse, Service};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::datastore::{Datastore, DatastoreError, Resource};
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(60);
const NODE1: &str = "10.20.1.11";
const NODE2: &str = "10.20.1.12";

struct Store {
    ds: Datastore,
    rt: tokio::runtime::Runtime,
}

impl Store {
    fn open(lab: &Lab) -> Store {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let path = lab.dir().join("tortie.db");
        let ds =
            rt.block_on(async { Datastore::new(SqliteBackend::open(&path, SqliteOptions::default()).await.unwrap()) });
        Store { ds, rt }
    }

    /// Creates or replaces `name` with `value`.
    fn put<R: Resource>(&self, name: &str, value: serde_json::Value) {
        let spec: R = serde_json::from_value(value).unwrap();
        self.rt
            .block_on(async {
                match self.ds.get::<R>(name).await {
                    Ok(stored) => self.ds.update(name, &spec, stored.revision).await.map(|_| ()),
                    Err(DatastoreError::NotFound { .. }) => self.ds.create(name, &spec).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            })
            .unwrap();
    }

    fn delete<R: Resource>(&self, name: &str) {
        self.rt
            .block_on(async {
                let stored = self.ds.get::<R>(name).await?;
                self.ds.delete::<R>(name, stored.revision).await
            })
            .unwrap();
    }
}

/// The next hops FRR on tor1 installed for exactly `prefix` (empty: no route).
fn frr_next_hops(lab: &Lab, prefix: &str) -> BTreeSet<String> {
    let vty = lab.dir().join("tor1");
    let out = Command::new("vtysh")
        .arg("--vty_socket")
        .arg(&vty)
        .args(["-c", &format!("show ip route {prefix} json")])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let routes = v[prefix].as_array().cloned().unwrap_or_default();
    routes
        .iter()
        .filter(|r| r["protocol"] == "bgp" && r["selected"] == true)
        .flat_map(|r| r["nexthops"].as_array().cloned().unwrap_or_default())
        .filter(|h| h["active"] == true)
        .filter_map(|h| h["ip"].as_str().map(str::to_string))
        .collect()
}

fn wait_frr(lab: &Lab, what: &str, prefix: &str, wanted: &[&str]) -> Duration {
    let wanted: BTreeSet<String> = wanted.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    wait_until(what, WAIT, || (frr_next_hops(lab, prefix) == wanted).then_some(()))
        .unwrap_or_else(|e| panic!("{e}: tor1 has {:?}", frr_next_hops(lab, prefix)));
    start.elapsed()
}

fn slice(node: &str, ready: bool, terminating: bool) -> serde_json::Value {
    serde_json::json!({"labels": {"kubernetes.io/service-name": "web"},
        "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": node,
                       "conditions": {"ready": ready, "terminating": terminating}}]})
}

#[test]
fn service_addresses_reach_the_tors_from_the_nodes_that_should_send_them() {
    let lab = Lab::prepare("tor", "ts", |_| {});
    lab.up();
    let store = Store::open(&lab);
    store.put::<BgpConfiguration>(
        "default",
        serde_json::json!({"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "serviceExternalIPs": [{"cidr": "192.0.2.0/24"}]}),
    );
    // The aggregate from every node: ECMP over both rack-1 nodes at FRR, and at BIRD too.
    wait_frr(&lab, "the ClusterIP CIDR at tor1 from node1 and node2", "10.96.0.0/12", &[NODE1, NODE2]);
    let ctl = lab.dir().join("tor2/bird.ctl");
    wait_until("the ClusterIP CIDR at tor2 (BIRD)", WAIT, || {
        let out =
            Command::new("birdc").arg("-s").arg(&ctl).args(["show", "route", "for", "10.96.0.1"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).contains("10.96.0.0/12").then_some(())
    })
    .unwrap();

    store.put::<Service>(
        "prod/web",
        serde_json::json!({"spec": {"clusterIP": "10.96.0.10", "externalIPs": ["192.0.2.7"], "externalTrafficPolicy": "Local"}}),
    );
    store.put::<EndpointSlice>("prod/web-1", slice("node2", true, false));
    wait_frr(&lab, "the Local address from node2 only", "192.0.2.7/32", &[NODE2]);
    store.put::<EndpointSlice>("prod/web-1", slice("node1", true, false));
    wait_frr(&lab, "the Local address to follow its endpoint to node1", "192.0.2.7/32", &[NODE1]);
    let took = {
        store.put::<EndpointSlice>("prod/web-1", slice("node1", false, false));
        wait_frr(&lab, "the address withdrawn once its endpoint is not ready", "192.0.2.7/32", &[])
    };
    eprintln!("not-ready endpoint → route gone at FRR after {took:?}");
    store.put::<EndpointSlice>("prod/web-1", slice("node2", true, false));
    wait_frr(&lab, "the address back from node2", "192.0.2.7/32", &[NODE2]);
    let took = {
        store.put::<EndpointSlice>("prod/web-1", slice("node2", true, true));
        wait_frr(&lab, "the address withdrawn once its endpoint is terminating", "192.0.2.7/32", &[])
    };
    eprintln!("terminating endpoint → route gone at FRR after {took:?}");
    store.put::<EndpointSlice>("prod/web-1", slice("node2", true, false));
    wait_frr(&lab, "the address back from node2", "192.0.2.7/32", &[NODE2]);
    store.delete::<Service>("prod/web");
    wait_frr(&lab, "the address withdrawn with its Service", "192.0.2.7/32", &[]);
    // The aggregates stay.
    assert_eq!(frr_next_hops(&lab, "10.96.0.0/12").len(), 2);
    // `tortie bgp routes` names the origin of each service prefix.
    let out = lab.exec("node2", &[env!("CARGO_BIN_EXE_tortie"), "bgp", "routes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serviceClusterIPs CIDR"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}

/// The prefixes inside `cidr` FRR on tor1 installed from BGP, each with its next hops.
fn frr_routes_within(lab: &Lab, cidr: &str) -> BTreeMap<String, BTreeSet<String>> {
    let vty = lab.dir().join("tor1");
    let out = Command::new("vtysh")
        .arg("--vty_socket")
        .arg(&vty)
        .args(["-c", &format!("show ip route {cidr} longer-prefixes json")])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut found = BTreeMap::new();
    for (prefix, routes) in v.as_object().into_iter().flatten() {
        let hops: BTreeSet<String> = routes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["protocol"] == "bgp" && r["selected"] == true)
            .flat_map(|r| r["nexthops"].as_array().cloned().unwrap_or_default())
            .filter(|h| h["active"] == true)
            .filter_map(|h| h["ip"].as_str().map(str::to_string))
            .collect();
        if !hops.is_empty() {
            found.insert(prefix.clone(), hops);
        }
    }
    found
}

/// The load-balancer addresses every Service of `names` has in its status (`None` while any
/// has none yet).
fn ingress_addresses(store: &Store, names: &[String]) -> Option<Vec<IpAddr>> {
    store.rt.block_on(async {
        let services = store.ds.list::<Service>().await.ok()?;
        let by_name: BTreeMap<&str, &Service> = services.items.iter().map(|s| (s.name.as_str(), &s.spec)).collect();
        names
            .iter()
            .map(|n| by_name.get(n.as_str())?.status.load_balancer.ingress.first()?.ip.as_deref()?.parse().ok())
            .collect()
    })
}

/// Load-balancer addresses from the LoadBalancer pool reach both ToRs as /32s from every node
/// (aggregation disabled) and leave them with their Service; a thousand Services created and
/// deleted leave no address held and no route at the ToR or in any node's RIB.
#[test]
fn load_balancer_addresses_reach_the_tors_and_leave_with_their_services() {
    const LB_POOL: &str = "198.51.100.0/22";
    let lab = Lab::prepare("tor", "tl", |_| {});
    lab.up();
    let store = Store::open(&lab);
    let mut pool = IpPool::new(LB_POOL.parse().unwrap());
    pool.allowed_uses = vec![PoolUse::LoadBalancer];
    store.rt.block_on(tortie::ipam::create_pool(&store.ds, "load-balancers", &pool)).unwrap();
    store.put::<BgpConfiguration>(
        "default",
        serde_json::json!({"serviceLoadBalancerIPs": [{"cidr": LB_POOL}], "serviceLoadBalancerAggregation": "Disabled"}),
    );
    let lb = serde_json::json!({"spec": {"type": "LoadBalancer"}});
    store.put::<Service>("prod/web", lb.clone());
    let names = vec!["prod/web".to_string()];
    let address =
        wait_until("the Service's load-balancer address", WAIT, || ingress_addresses(&store, &names)).unwrap()[0];
    assert!(pool.cidr.contains(address), "{address} is outside {LB_POOL}");
    let host = format!("{address}/32");
    wait_frr(&lab, "the load-balancer address at tor1 from node1 and node2", &host, &[NODE1, NODE2]);
    let ctl = lab.dir().join("tor2/bird.ctl");
    let at_bird = |ip: IpAddr| {
        let out = Command::new("birdc").arg("-s").arg(&ctl).args(["show", "route", "for", &ip.to_string()]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{ip}/32"))).unwrap_or(false)
    };
    wait_until("the load-balancer address at tor2 (BIRD)", WAIT, || at_bird(address).then_some(())).unwrap();
    store.delete::<Service>("prod/web");
    wait_frr(&lab, "the load-balancer address withdrawn with its Service", &host, &[]);
    wait_until("the address withdrawn at tor2 (BIRD)", WAIT, || (!at_bird(address)).then_some(())).unwrap();

    // A thousand at once, then all gone.
    let names: Vec<String> = (0..1000).map(|i| format!("load/s{i}")).collect();
    for name in &names {
        store.put::<Service>(name, lb.clone());
    }
    let churn = Duration::from_secs(180);
    let addresses = wait_until("a thousand load-balancer addresses", churn, || ingress_addresses(&store, &names))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(addresses.iter().collect::<BTreeSet<_>>().len(), 1000, "an address given twice");
    let expected: BTreeSet<String> = addresses.iter().map(|a| format!("{a}/32")).collect();
    wait_until("the thousand /32s at tor1", churn, || {
        (frr_routes_within(&lab, LB_POOL).into_keys().collect::<BTreeSet<_>>() == expected).then_some(())
    })
    .unwrap_or_else(|e| {
        let have: BTreeSet<String> = frr_routes_within(&lab, LB_POOL).into_keys().collect();
        let extra: Vec<_> = have.difference(&expected).take(5).collect();
        let missing: Vec<_> = expected.difference(&have).take(5).collect();
        panic!("{e}: tor1 has {} more than expected ({extra:?}) and lacks {missing:?}", extra.len())
    });
    for name in &names {
        store.delete::<Service>(name);
    }
    wait_until("no load-balancer route left at tor1", churn, || {
        frr_routes_within(&lab, LB_POOL).is_empty().then_some(())
    })
    .unwrap_or_else(|e| {
        panic!("{e}: tor1 still has {:?}", frr_routes_within(&lab, LB_POOL).keys().take(5).collect::<Vec<_>>())
    });
    for node in ["node1", "node2", "node3", "node4"] {
        let socket = lab.dir().join(format!("{node}/tortie.sock"));
        let stale = || -> Vec<String> {
            let snapshot: Option<tortie::bgp::rib::RibSnapshot> =
                store.rt.block_on(tortie::api::client::get_json(&socket, "/v1/bgp/routes")).ok();
            snapshot
                .into_iter()
                .flat_map(|s| s.routes)
                .filter(|r| pool.cidr.contains(r.prefix.ip()))
                .map(|r| r.prefix.to_string())
                .collect()
        };
        wait_until(&format!("no load-balancer route left in {node}'s RIB"), WAIT, || stale().is_empty().then_some(()))
            .unwrap_or_else(|e| panic!("{e}: {:?}", stale().into_iter().take(5).collect::<Vec<_>>()));
    }
    let ipam_show = || lab.exec_json("node1", &[env!("CARGO_BIN_EXE_tortie"), "ipam", "show", "-o", "json"]);
    wait_until("every load-balancer address released", churn, || {
        let pools = ipam_show()["pools"].as_array()?.clone();
        pools.iter().any(|p| p["cidr"] == LB_POOL && p["in_use"] == 0).then_some(())
    })
    .unwrap_or_else(|e| {
        let log = lab.agent_log("node1");
        let controller: Vec<&str> = log.lines().filter(|l| l.contains("load-balancer")).collect();
        panic!(
            "{e}: {}\nnode1's load-balancer log:\n{}",
            ipam_show(),
            controller[controller.len().saturating_sub(20)..].join("\n")
        )
    });
    let check = lab.exec("node1", &[env!("CARGO_BIN_EXE_tortie"), "ipam", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// The benchmark behind bench/service_withdraw.sh (ignored in normal runs): 200 times, an
/// endpoint turns not-ready; measured from the datastore write to the prefix leaving node2's RIB
/// (tortie's share: the sqlite watch's poll, the follower, the RIB) and from there to FRR on
/// tor1 deleting its kernel route (`ip monitor`: the UPDATE on the wire, FRR's best path, zebra).
#[test]
#[ignore = "a benchmark: bench/service_withdraw.sh runs it"]
fn bench_endpoint_not_ready_to_withdrawn_at_frr() {
    use std::io::BufRead;
    use std::sync::mpsc;
    let runs: usize = std::env::var("RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let lab = Lab::prepare("tor", "tb", |_| {});
    lab.up();
    let store = Store::open(&lab);
    store.put::<BgpConfiguration>("default", serde_json::json!({"serviceExternalIPs": [{"cidr": "192.0.2.0/24"}]}));
    store.put::<Service>(
        "prod/web",
        serde_json::json!({"spec": {"externalIPs": ["192.0.2.7"], "externalTrafficPolicy": "Local"}}),
    );
    store.put::<EndpointSlice>("prod/web-1", slice("node2", true, false));
    wait_frr(&lab, "the address from node2", "192.0.2.7/32", &[NODE2]);

    // Kernel route deletions at tor1, as they happen.
    let mut monitor = Command::new("ip")
        .args(["-n", &lab.ns("tor1"), "monitor", "route"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let socket = lab.dir().join("node2/tortie.sock");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let in_rib = || {
        let snapshot: tortie::bgp::rib::RibSnapshot =
            rt.block_on(tortie::api::client::get_json(&socket, "/v1/bgp/routes")).unwrap();
        snapshot.routes.iter().any(|r| r.peer.is_none() && r.prefix.to_string() == "192.0.2.7/32")
    };
    let (mut tortie_share, mut frr_share, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        store.put::<EndpointSlice>("prod/web-1", slice("node2", false, false));
        while in_rib() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t1 = Instant::now();
        let t2 = loop {
            let (at, line) = rx.recv_timeout(WAIT).expect("tor1 deletes the route");
            if line.starts_with("Deleted") && line.contains("192.0.2.7") {
                break at;
            }
        };
        tortie_share.push(t1 - t0);
        frr_share.push(t2.saturating_duration_since(t1));
        total.push(t2 - t0);
        store.put::<EndpointSlice>("prod/web-1", slice("node2", true, false));
        wait_frr(&lab, "the address back", "192.0.2.7/32", &[NODE2]);
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    let pct = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        v[(v.len() * p / 100).min(v.len() - 1)]
    };
    for (what, v) in [
        ("tortie (write → out of the RIB)", &mut tortie_share),
        ("FRR (→ kernel route deleted)", &mut frr_share),
        ("total", &mut total),
    ] {
        eprintln!("{what}: p50 {:?} p99 {:?} over {runs}", pct(v, 50), pct(v, 99));
    }
}
