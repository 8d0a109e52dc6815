//! A running agent gives a LoadBalancer Service an address from the LoadBalancer pool, writes it
//! to the Service's status, advertises it (the local RIB, as `tortie bgp routes` shows it), and
//! releases and withdraws it when the Service is deleted, leaving `tortie ipam check` clean.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{BgpConfiguration, IpPool, PoolUse, Service};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const LB_POOL: &str = "198.51.100.0/24";
const WAIT: Duration = Duration::from_secs(30);

/// The prefixes the agent originates itself.
fn originated(socket: &Path, rt: &tokio::runtime::Runtime) -> Vec<String> {
    let snapshot: Option<tortie::bgp::rib::RibSnapshot> =
        rt.block_on(tortie::api::client::get_json(socket, "/v1/bgp/routes")).ok();
    snapshot.into_iter().flat_map(|s| s.routes).filter(|r| r.peer.is_none()).map(|r| r.prefix.to_string()).collect()
}

#[test]
fn a_load_balancer_service_gets_an_advertised_address_released_on_delete() {
    let mut t = Topology::new("lbipam").unwrap();
    t.add_namespace("sw").unwrap();
    t.add_namespace("n1").unwrap();
    t.add_veth(("n1", "eth0", Some("192.0.2.31/24")), ("sw", "p0", None)).unwrap();
    let dir = t.dir().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ds = rt.block_on(async {
        Datastore::new(SqliteBackend::open(dir.join("tortie.db"), SqliteOptions::default()).await.unwrap())
    });
    let mut pool = IpPool::new(LB_POOL.parse().unwrap());
    pool.allowed_uses = vec![PoolUse::LoadBalancer];
    let config: BgpConfiguration = serde_json::from_value(serde_json::json!({
        "serviceLoadBalancerIPs": [{"cidr": LB_POOL}],
        "serviceLoadBalancerAggregation": "Disabled",
    }))
    .unwrap();
    let mut service = Service::default();
    service.spec.service_type = Some("LoadBalancer".into());
    rt.block_on(async {
        tortie::ipam::create_pool(&ds, "lb", &pool).await.unwrap();
        ds.create("default", &config).await.unwrap();
        ds.create("prod/web", &service).await.unwrap();
    });
    let config = dir.join("n1.yaml");
    let socket = dir.join("n1.sock");
    std::fs::write(
        &config,
        format!(
            "node: {{name: n1, address_autodetection: interface=eth0}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{enabled: false}}\n\
             bgp: {{as_number: 64512}}\n",
            db = dir.join("tortie.db").display(),
            sock = socket.display(),
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_tortie");
    t.spawn("n1", &[bin, "node", "--config", config.to_str().unwrap()]).unwrap();

    let address: IpAddr = wait_until("the Service's status to name its address", WAIT, || {
        let service = rt.block_on(ds.get::<Service>("prod/web")).ok()?;
        service.spec.status.load_balancer.ingress.first()?.ip.as_deref()?.parse().ok()
    })
    .unwrap();
    assert!(pool.cidr.contains(address), "{address} is outside {LB_POOL}");
    let host = format!("{address}/32");
    wait_until("the address to be advertised", WAIT, || originated(&socket, &rt).contains(&host).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; originated {:?}", originated(&socket, &rt)));

    let stored = rt.block_on(ds.get::<Service>("prod/web")).unwrap();
    rt.block_on(ds.delete::<Service>("prod/web", stored.revision)).unwrap();
    wait_until("the address to be withdrawn", WAIT, || (!originated(&socket, &rt).contains(&host)).then_some(()))
        .unwrap();
    let check = || Command::new(bin).args(["ipam", "check", "--config"]).arg(&config).output().unwrap();
    wait_until("the address to be released", WAIT, || {
        let json = Command::new(bin).args(["ipam", "show", "-o", "json", "--config"]).arg(&config).output().ok()?;
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).ok()?;
        let pools = json["pools"].as_array()?.clone();
        pools.iter().any(|p| p["cidr"] == LB_POOL && p["in_use"] == 0).then_some(())
    })
    .unwrap();
    let out = check();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The controller runs on the node holding the lease; when that node stops renewing it (dead but
/// still registered), another node takes the lease over and new Services get addresses again.
#[test]
fn another_node_takes_over_when_the_controllers_node_stops() {
    use tortie::agent::load_balancers::{LEASE, follow};
    use tortie::datastore::resources::Lease;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ds = rt.block_on(async {
        Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap())
    });
    let mut pool = IpPool::new(LB_POOL.parse().unwrap());
    pool.allowed_uses = vec![PoolUse::LoadBalancer];
    rt.block_on(tortie::ipam::create_pool(&ds, "lb", &pool)).unwrap();
    let (resync, lease) = (Duration::from_millis(100), Duration::from_secs(1));
    let mut stops = std::collections::BTreeMap::new();
    for node in ["node-a", "node-b"] {
        let (tx, rx) = tokio::sync::watch::channel(false);
        rt.spawn(follow(ds.clone(), node.to_string(), resync, lease, rx));
        stops.insert(node, tx);
    }
    let address_of = |name: &str| -> Option<IpAddr> {
        let service = rt.block_on(ds.get::<Service>(name)).ok()?;
        service.spec.status.load_balancer.ingress.first()?.ip.as_deref()?.parse().ok()
    };
    let mut service = Service::default();
    service.spec.service_type = Some("LoadBalancer".into());
    rt.block_on(ds.create("prod/first", &service)).unwrap();
    wait_until("the first Service's address", WAIT, || address_of("prod/first")).unwrap();
    let holder = rt.block_on(ds.get::<Lease>(LEASE)).unwrap().spec.holder_identity.unwrap();
    // The holder's agent ends without a word: its lease is left to run out.
    stops[holder.as_str()].send(true).unwrap();
    let taken = wait_until("the other node to take the lease over", WAIT, || {
        let lease = rt.block_on(ds.get::<Lease>(LEASE)).ok()?.spec;
        (lease.holder_identity.as_deref() != Some(holder.as_str())).then_some(lease)
    })
    .unwrap();
    assert_eq!(taken.lease_transitions, 1, "{taken:?}");
    rt.block_on(ds.create("prod/second", &service)).unwrap();
    let second =
        wait_until("the second Service's address from the other node", WAIT, || address_of("prod/second")).unwrap();
    assert_ne!(Some(second), address_of("prod/first"));
}

/// A node holding the lease with nothing to do reads the Services once per resync period: a
/// renewal of the lease is not a reason for a pass (it was, so every period read everything
/// twice). Without a load-balancer pool it reads no IPAM block (at 1 000 nodes a listing of
/// them is about 3 MB).
#[test]
fn an_idle_controller_passes_once_per_period_and_reads_no_block_without_a_pool() {
    use tortie::agent::load_balancers::follow;
    use tortie::datastore::Kind;
    use tortie::testing::CountingBackend;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (backend, listings) = rt.block_on(CountingBackend::sqlite(dir.path()));
    let ds = Datastore::new(backend);
    let (resync, lease) = (Duration::from_millis(100), Duration::from_secs(1));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    rt.spawn(follow(ds.clone(), "node-a".into(), resync, lease, stop));
    wait_until("the first pass", WAIT, || (listings.of(Kind::Service) > 0).then_some(())).unwrap();
    let (before, started) = (listings.of(Kind::Service), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let passes = listings.of(Kind::Service) - before;
    let periods = started.elapsed().as_secs_f64() / resync.as_secs_f64();
    // One pass per period (the interval catches up on late ticks), with room for a few more;
    // a pass per renewal too would be about two per period.
    assert!((passes as f64) < periods * 1.4 + 3.0, "{passes} passes in {periods:.1} periods");
    assert_eq!(listings.of(Kind::IpamBlock), 0, "block listings without a load-balancer pool");
    stop_tx.send(true).unwrap();
}
