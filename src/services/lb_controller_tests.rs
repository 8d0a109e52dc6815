use super::*;
use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
use crate::ipam::check::CheckInput;
use crate::ipam::gc::Gc;
use crate::ipam::{Request, check, create_pool};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LB_POOL: &str = "192.0.2.0/24";
const POD_POOL: &str = "10.20.0.0/24";

async fn store(dir: &tempfile::TempDir) -> Datastore {
    let store = Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap());
    let mut lb = IpPool::new(LB_POOL.parse().unwrap());
    lb.allowed_uses = vec![PoolUse::LoadBalancer];
    create_pool(&store, "lb", &lb).await.unwrap();
    create_pool(&store, "pods", &IpPool::new(POD_POOL.parse().unwrap())).await.unwrap();
    store
}

fn service(kind: &str) -> Service {
    let mut s = Service::default();
    s.spec.service_type = Some(kind.into());
    s
}

async fn ingress(store: &Datastore, name: &str) -> Vec<IpAddr> {
    let s = store.get::<Service>(name).await.unwrap().spec;
    s.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

async fn clean(store: &Datastore) -> crate::ipam::CheckReport {
    let report =
        check(store, &CheckInput { alive_handles: Some(BTreeSet::new()), ..Default::default() }).await.unwrap();
    // The first of each kind of problem is enough to say what went wrong.
    let first = (report.leaked.first(), report.handle_mismatches.first(), report.allocations_without_handle.first());
    assert_eq!(report.problems(), 0, "{first:?}");
    report
}

#[tokio::test]
async fn pods_never_get_load_balancer_pool_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..IpamOptions::default() });
    let lb: IpNetwork = LB_POOL.parse().unwrap();
    for i in 0..20 {
        let got = ipam.allocate(Request::workload(&format!("h{i}"), 4, "p", "default", "n1")).await.unwrap();
        assert!(!lb.contains(got.ip), "{got:?}");
    }
    // A load-balancer request with no LoadBalancer pool of its family names its purpose.
    let mut v6 = request(&Assignment { service: "a/b".into(), handle: "lb.a.b".into(), want: Want::Any(6) });
    v6.family = 6;
    let err = ipam.allocate(v6).await.unwrap_err().to_string();
    assert_eq!(err, "no enabled IPv6 pool allows load-balancer addresses");
}

#[tokio::test]
async fn a_load_balancer_service_gets_an_address_in_status_and_releases_it_when_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store.create("default/web", &service("LoadBalancer")).await.unwrap();
    store.create("default/db", &service("ClusterIP")).await.unwrap();
    let first = reconcile(&store).await.unwrap();
    assert_eq!((first.assigned, first.statuses_written), (1, 1), "{first:?}");
    let ips = ingress(&store, "default/web").await;
    assert!(ips.len() == 1 && LB_POOL.parse::<IpNetwork>().unwrap().contains(ips[0]), "{ips:?}");
    assert!(ingress(&store, "default/db").await.is_empty());
    assert_eq!(reconcile(&store).await.unwrap(), Outcome::default(), "a second pass changes nothing");
    // The garbage collector, which knows only workloads, leaves load-balancer addresses alone,
    // and `ipam check` does not call them leaked.
    let node = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..IpamOptions::default() });
    let mut gc = Gc::new(Duration::from_secs(1));
    let t0 = Instant::now();
    gc.collect_leaks(&node, &BTreeSet::new(), t0).await.unwrap();
    let released = gc.collect_leaks(&node, &BTreeSet::new(), t0 + Duration::from_secs(2)).await.unwrap();
    assert!(released.is_empty(), "{released:?}");
    assert_eq!(clean(&store).await.allocations, 1);

    let stored = store.get::<Service>("default/web").await.unwrap();
    store.delete::<Service>("default/web", stored.revision).await.unwrap();
    assert_eq!(reconcile(&store).await.unwrap().released, 1);
    assert_eq!(clean(&store).await.allocations, 0);
}

#[tokio::test]
async fn a_requested_address_is_given_once_and_a_second_asker_gets_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut first = service("LoadBalancer");
    first.spec.load_balancer_ip = Some("192.0.2.50".into());
    store.create("a/first", &first).await.unwrap();
    reconcile(&store).await.unwrap();
    assert_eq!(ingress(&store, "a/first").await, vec!["192.0.2.50".parse::<IpAddr>().unwrap()]);
    let mut second = service("LoadBalancer");
    second
        .annotations
        .insert(super::super::load_balancer::LOAD_BALANCER_IPS_ANNOTATION.into(), r#"["192.0.2.50"]"#.into());
    store.create("a/second", &second).await.unwrap();
    let out = reconcile(&store).await.unwrap();
    assert_eq!(
        out.warnings,
        vec!["Service a/second: requested address 192.0.2.50 is already held by lb.a.first; it gets none".to_string()]
    );
    assert!(ingress(&store, "a/second").await.is_empty());
    assert_eq!(clean(&store).await.allocations, 1);
}

#[tokio::test]
async fn a_thousand_services_created_and_deleted_leave_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut lb = IpPool::new("198.51.100.0/22".parse().unwrap());
    lb.allowed_uses = vec![PoolUse::LoadBalancer];
    create_pool(&store, "lb-big", &lb).await.unwrap();
    let names: Vec<String> = (0..1000).map(|i| format!("load/s{i}")).collect();
    for name in &names {
        store.create(name, &service("LoadBalancer")).await.unwrap();
    }
    let out = reconcile(&store).await.unwrap();
    assert_eq!((out.assigned, out.warnings.len()), (1000, 0), "{:?}", out.warnings.first());
    let mut seen = BTreeSet::new();
    for name in &names {
        let ips = ingress(&store, name).await;
        assert_eq!(ips.len(), 1, "{name}");
        assert!(seen.insert(ips[0]), "{} given twice", ips[0]);
    }
    assert_eq!(clean(&store).await.allocations, 1000);
    for name in &names {
        let stored = store.get::<Service>(name).await.unwrap();
        store.delete::<Service>(name, stored.revision).await.unwrap();
    }
    assert_eq!(reconcile(&store).await.unwrap().released, 1000);
    assert_eq!(clean(&store).await.allocations, 0);
}

#[tokio::test]
async fn handles_are_released_in_batches_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let ipam = Ipam::new(store.clone(), IpamOptions { node: IPAM_NODE.into(), ..IpamOptions::default() });
    let handles: Vec<String> = (0..200).map(|i| format!("lb.batch.s{i}")).collect();
    let requests = handles
        .iter()
        .map(|h| request(&Assignment { service: h.clone(), handle: h.clone(), want: Want::Any(4) }))
        .collect();
    assert!(ipam.allocate_batch(requests).await.iter().all(Result::is_ok));
    assert_eq!(clean(&store).await.allocations, 200);
    // More handles than one transaction holds, spread over every block, and one never held.
    let mut release = handles.clone();
    release.insert(100, "lb.batch.never".into());
    assert_eq!(ipam.release_handles(&release).await.unwrap(), 200);
    assert_eq!(clean(&store).await.allocations, 0);
    assert_eq!(ipam.release_handles(&release).await.unwrap(), 0, "releasing twice frees nothing");
}
