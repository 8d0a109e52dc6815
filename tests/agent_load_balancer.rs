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
