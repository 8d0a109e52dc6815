//! The IPAM suite, run unchanged against sqlite, etcd and the Kubernetes stand-in.

use crate::datastore_support::harness::Harness;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tortie::datastore::resources::{
    AffinityState, BlockAffinity, IpPool, IpReservation, IpamBlock, IpamConfig, IpamHandle, PoolUse,
};
use tortie::datastore::{Datastore, Key, Kind, Stored};
use tortie::ipam::check::CheckInput;
use tortie::ipam::gc::Gc;
use tortie::ipam::{Allocator, Ipam, IpamError, IpamOptions, Request, check, claim, create_pool};

pub fn ipam(store: &Datastore, node: &str) -> Ipam {
    Ipam::new(store.clone(), IpamOptions { node: node.into(), ..IpamOptions::default() })
}

pub async fn pool(store: &Datastore, name: &str, cidr: &str, block_size: u8) -> Stored<IpPool> {
    let mut pool = IpPool::new(cidr.parse().unwrap());
    pool.block_size = block_size;
    create_pool(store, name, &pool).await.expect("create pool")
}

pub fn req(handle: &str, family: u8) -> Request {
    Request::workload(handle, family, &format!("pod-{handle}"), "default", "n1")
}

async fn clean(store: &Datastore) {
    let report = check(store, &CheckInput::default()).await.expect("check");
    assert!(report.is_clean(), "ipam check found problems: {report:#?}");
}

pub async fn allocate_and_release_by_handle(h: &impl Harness) {
    let store = h.store();
    pool(store, "p4", "10.10.0.0/24", 29).await;
    let node = ipam(store, "n1");
    let a = node.allocate(req("h-a", 4)).await.unwrap();
    let b = node.allocate(req("h-b", 4)).await.unwrap();
    let a2 = node.allocate(req("h-a", 4)).await.unwrap();
    assert_eq!(a.block, b.block, "the node's own block is used first");
    assert!(!a.borrowed);
    assert_eq!(BTreeSet::from([a.ip, b.ip, a2.ip]).len(), 3);
    let block: Stored<IpamBlock> = store.get(&tortie::datastore::resources::cidr_name(&a.block)).await.unwrap();
    assert_eq!(block.spec.affinity.as_deref(), Some("host:n1"));
    let attrs = &block.spec.attributes[block.spec.allocations[1].unwrap() as usize];
    assert_eq!(attrs.handle_id.as_deref(), Some("h-b"));
    assert_eq!(attrs.secondary.get("pod"), Some("pod-h-b"));
    assert_eq!(attrs.secondary.get("namespace"), Some("default"));
    let handle: Stored<IpamHandle> = store.get("h-a").await.unwrap();
    assert_eq!(handle.spec.block[&a.block.to_string()], 2);
    clean(store).await;

    assert_eq!(node.release_handle("h-a").await.unwrap(), 2);
    assert_eq!(node.release_handle("h-a").await.unwrap(), 0, "release is idempotent");
    assert!(store.get::<IpamHandle>("h-a").await.is_err());
    // FIFO: the two just-freed addresses are not handed out next.
    let c = node.allocate(req("h-c", 4)).await.unwrap();
    assert!(c.ip != a.ip && c.ip != a2.ip, "{} reused at once", c.ip);
    assert!(node.release_ip(b.ip, Some(b.sequence)).await.unwrap());
    assert!(!node.release_ip(b.ip, None).await.unwrap(), "already free");
    assert!(store.get::<IpamHandle>("h-b").await.is_err(), "handle record goes with its last address");
    clean(store).await;
}

pub async fn stale_release_frees_nothing(h: &impl Harness) {
    let store = h.store();
    pool(store, "p4", "10.11.0.0/30", 30).await;
    let node = ipam(store, "n1");
    let first = node.allocate(req("old", 4)).await.unwrap();
    node.release_handle("old").await.unwrap();
    let mut latest = None;
    for i in 0..4 {
        latest = Some(node.allocate(req(&format!("new{i}"), 4)).await.unwrap());
    }
    let latest = latest.unwrap();
    assert_eq!(latest.ip, first.ip, "the first address comes back last (FIFO)");
    match node.release_ip(first.ip, Some(first.sequence)).await {
        Err(IpamError::StaleSequence { current, .. }) => assert_eq!(current, Some(latest.sequence)),
        other => panic!("expected a stale release, got {other:?}"),
    }
    assert!(node.release_ip(latest.ip, Some(latest.sequence)).await.unwrap());
    clean(store).await;
}

pub async fn ipv4_and_ipv6_side_by_side(h: &impl Harness) {
    let store = h.store();
    pool(store, "v4", "10.12.0.0/16", 26).await;
    pool(store, "v6", "fd00:12::/112", 122).await;
    let node = ipam(store, "n1");
    let v4 = node.allocate(req("dual", 4)).await.unwrap();
    let v6 = node.allocate(req("dual", 6)).await.unwrap();
    assert!(v4.ip.is_ipv4() && v4.block.prefix() == 26);
    assert!(v6.ip.is_ipv6() && v6.block.prefix() == 122);
    assert!(matches!(
        node.allocate(Request { purpose: PoolUse::LoadBalancer, ..req("lb", 4) }).await,
        Err(IpamError::NoPool { .. })
    ));
    clean(store).await;
    assert_eq!(node.release_handle("dual").await.unwrap(), 2);
    clean(store).await;
}

pub async fn exhaustion_borrowing_and_strict_affinity(h: &impl Harness) {
    let store = h.store();
    pool(store, "small", "10.13.0.0/28", 30).await;
    let a = ipam(store, "node-a");
    let b = ipam(store, "node-b");
    let mut held = Vec::new();
    for i in 0..12 {
        held.push(a.allocate(req(&format!("a{i}"), 4)).await.unwrap());
    }
    for i in 0..4 {
        let got = b.allocate(req(&format!("b{i}"), 4)).await.unwrap();
        assert!(!got.borrowed, "node-b claims the last free block");
    }
    match b.allocate(req("b-full", 4)).await {
        Err(IpamError::PoolsExhausted { pools }) => assert_eq!(pools, vec!["small".to_string()]),
        other => panic!("expected pool exhaustion, got {other:?}"),
    }
    a.release_handle("a0").await.unwrap();
    let borrowed = b.allocate(req("b-borrow", 4)).await.unwrap();
    assert!(borrowed.borrowed, "node-b borrows from node-a's block");
    assert_eq!(borrowed.ip, held[0].ip);
    let host_routes = tortie::ipam::routes::borrowed_addresses(store, "node-b").await.unwrap();
    assert_eq!(host_routes, vec![ipnetwork::IpNetwork::new(borrowed.ip, 32).unwrap()], "announced as a /32");
    assert!(tortie::ipam::routes::borrowed_addresses(store, "node-a").await.unwrap().is_empty());
    assert_eq!(tortie::ipam::routes::own_blocks(store, "node-b").await.unwrap().len(), 1);
    // Strict affinity: no borrowing, and a block limit.
    b.release_handle("b-borrow").await.unwrap();
    let strict = IpamConfig { strict_affinity: true, auto_allocate_blocks: true, max_blocks_per_host: 1 };
    store.create("default", &strict).await.unwrap();
    // node-b's block is full and it holds its limit of one block: no borrowing now.
    assert!(matches!(b.allocate(req("b-strict", 4)).await, Err(IpamError::BlockLimit { limit: 1, .. })));
    // node-a still uses its own blocks under strict affinity.
    for i in 1..4 {
        a.release_handle(&format!("a{i}")).await.unwrap();
    }
    for i in 0..3 {
        a.allocate(req(&format!("a-again{i}"), 4)).await.unwrap();
    }
    let c = ipam(store, "node-c");
    match c.allocate(req("c0", 4)).await {
        Err(IpamError::PoolsExhausted { .. }) => {}
        other => panic!("node-c finds no free block: {other:?}"),
    }
    clean(store).await;
}

pub async fn block_limit_is_enforced(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.14.0.0/24", 30).await;
    store
        .create("default", &IpamConfig { strict_affinity: true, auto_allocate_blocks: true, max_blocks_per_host: 2 })
        .await
        .unwrap();
    let node = ipam(store, "n1");
    for i in 0..8 {
        node.allocate(req(&format!("h{i}"), 4)).await.unwrap();
    }
    match node.allocate(req("h8", 4)).await {
        Err(IpamError::BlockLimit { node, limit }) => assert_eq!((node.as_str(), limit), ("n1", 2)),
        other => panic!("expected the block limit, got {other:?}"),
    }
}

pub async fn reservations_are_never_handed_out(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.15.0.0/29", 29).await;
    let reserved: ipnetwork::IpNetwork = "10.15.0.0/30".parse().unwrap();
    let node =
        Ipam::new(store.clone(), IpamOptions { node: "n1".into(), reservations: vec![reserved], ..Default::default() });
    for i in 0..4 {
        let got = node.allocate(req(&format!("h{i}"), 4)).await.unwrap();
        assert!(!reserved.contains(got.ip), "{} is reserved", got.ip);
    }
    assert!(matches!(node.allocate(req("h4", 4)).await, Err(IpamError::PoolsExhausted { .. })));
    let report = check(store, &CheckInput { reservations: vec![reserved], ..Default::default() }).await.unwrap();
    assert_eq!((report.pools[0].in_use, report.pools[0].reserved, report.pools[0].free), (4, 4, 0));
}

pub async fn overlapping_pool_is_refused(h: &impl Harness) {
    let store = h.store();
    pool(store, "first", "10.16.0.0/16", 26).await;
    match create_pool(store, "second", &IpPool::new("10.16.4.0/24".parse().unwrap())).await {
        Err(IpamError::PoolOverlap { new, existing, .. }) => {
            assert_eq!((new.as_str(), existing.as_str()), ("second", "first"))
        }
        other => panic!("expected an overlap error, got {other:?}"),
    }
    assert_eq!(store.list::<IpPool>().await.unwrap().items.len(), 1);
}

pub async fn tunnel_address_comes_from_a_tunnel_pool(h: &impl Harness) {
    let store = h.store();
    let mut workload = IpPool::new("10.17.0.0/24".parse().unwrap());
    workload.allowed_uses = vec![PoolUse::Workload];
    create_pool(store, "workload", &workload).await.unwrap();
    let mut tunnel = IpPool::new("10.18.0.0/24".parse().unwrap());
    tunnel.allowed_uses = vec![PoolUse::Tunnel];
    create_pool(store, "tunnel", &tunnel).await.unwrap();
    let node = ipam(store, "n1");
    let t = node.tunnel_address(4).await.unwrap();
    assert!(tunnel.cidr.contains(t.ip), "{} is from the tunnel pool", t.ip);
    assert_eq!(t.handle, "ipip-tunnel-addr-n1");
    assert_eq!(node.tunnel_address(4).await.unwrap().ip, t.ip, "allocated once");
    let w = node.allocate(req("pod", 4)).await.unwrap();
    assert!(workload.cidr.contains(w.ip));
    clean(store).await;
}

/// Two nodes claiming one block at once: exactly one owns it, with one confirmed affinity, and
/// the loser leaves nothing behind. Where transactions are atomic the claim is one transaction,
/// so a watch of the affinities never sees a pending one; the winner claiming again gets its
/// block back.
pub async fn claims_race_to_one_owner_and_leave_nothing_half_made(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.26.0.0/24", 26).await;
    let cidr: ipnetwork::IpNetwork = "10.26.0.64/26".parse().unwrap();
    let mut watch = store.watch::<BlockAffinity>(None).await.expect("watch affinities");
    let other = h.another_client().await;
    let (a, b) = tokio::join!(claim::claim(store, "a", cidr), claim::claim(&other, "b", cidr));
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    assert!(a.is_some() != b.is_some(), "exactly one claim wins: {a:?} {b:?}");
    let (winner, loser) = if a.is_some() { ("a", "b") } else { ("b", "a") };

    // Follow the watch until it shows the end state: the winner's affinity confirmed, none of
    // the loser's.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut held: BTreeMap<String, AffinityState> = BTreeMap::new();
    let mut pending_seen = false;
    let done = |held: &BTreeMap<String, AffinityState>| {
        held.len() == 1 && held.get(&claim::affinity_name(winner, &cidr)) == Some(&AffinityState::Confirmed)
    };
    while !done(&held) {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, watch.next()).await.expect("the end state in time");
        match event.expect("watch open").expect("watch event") {
            tortie::datastore::WatchEvent::Resync(listing) => {
                held = listing.items.into_iter().map(|a| (a.name, a.spec.state)).collect();
            }
            tortie::datastore::WatchEvent::Added(a) | tortie::datastore::WatchEvent::Modified(a) => {
                held.insert(a.name, a.spec.state);
            }
            tortie::datastore::WatchEvent::Deleted { name, .. } => {
                held.remove(&name);
            }
            tortie::datastore::WatchEvent::Bookmark(_) => {}
        }
        pending_seen |= held.values().any(|s| *s == AffinityState::Pending);
    }
    if store.atomic_transactions() {
        assert!(!pending_seen, "an atomic claim never shows a pending affinity");
    }
    let block: Stored<IpamBlock> = store.get(&tortie::datastore::resources::cidr_name(&cidr)).await.unwrap();
    assert_eq!(block.spec.affinity, Some(format!("host:{winner}")));
    assert_eq!(claim::claim(store, loser, cidr).await.unwrap(), None, "the loser loses again");
    let again = claim::claim(store, winner, cidr).await.unwrap().expect("the winner's block is its own");
    assert_eq!(again.revision, block.revision);
    let affinities = store.list::<BlockAffinity>().await.unwrap().items;
    assert_eq!(affinities.len(), 1, "{affinities:?}");
    clean(store).await;
}

/// A node reads its own affinities by name prefix: another node whose name extends it is not
/// its own, and a node whose affinity names Calico would shorten still finds its own.
pub async fn a_node_reads_its_own_affinities_only(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.27.0.0/24", 26).await;
    let long = "n".repeat(220);
    let nodes = ["n1", "n1-x", "n10", long.as_str()];
    for (i, node) in nodes.iter().enumerate() {
        let cidr = format!("10.27.0.{}/26", 64 * i).parse().unwrap();
        claim::claim(store, node, cidr).await.unwrap().expect("claimed");
    }
    for (i, node) in nodes.iter().enumerate() {
        let own = claim::own_affinities(store, node).await.unwrap();
        let cidrs: Vec<String> = own.iter().map(|a| a.spec.cidr.to_string()).collect();
        assert_eq!(cidrs, [format!("10.27.0.{}/26", 64 * i)], "{node}");
    }
}

pub async fn half_made_claims_are_repaired(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.19.0.0/24", 26).await;
    let (c1, c2, c3) =
        ("10.19.0.0/26".parse().unwrap(), "10.19.0.64/26".parse().unwrap(), "10.19.0.128/26".parse().unwrap());
    // Crashed after step 1; after step 2; and a pending claim on a block another node owns.
    claim::write_pending(store, "n1", c1).await.unwrap();
    claim::write_pending(store, "n1", c2).await.unwrap();
    claim::create_block(store, "n1", c2).await.unwrap();
    claim::claim(store, "other", c3).await.unwrap();
    claim::write_pending(store, "n1", c3).await.unwrap();
    let before = check(store, &CheckInput::default()).await.unwrap();
    assert_eq!(before.unfinished_affinities.len(), 3, "{before:#?}");
    assert_eq!(before.blocks_without_affinity.len(), 1, "{before:#?}");

    let node = ipam(store, "n1");
    assert_eq!(node.repair().await.unwrap().claims, 3);
    clean(store).await;
    let affinities = store.list::<BlockAffinity>().await.unwrap().items;
    let mine: BTreeMap<_, _> =
        affinities.iter().filter(|a| a.spec.node == "n1").map(|a| (a.spec.cidr, a.spec.state)).collect();
    assert_eq!(mine, BTreeMap::from([(c1, AffinityState::Confirmed), (c2, AffinityState::Confirmed)]));
    let got = node.allocate(req("h", 4)).await.unwrap();
    assert!(got.block == c1 || got.block == c2);
}

/// What a crash between a block write and its handle record write leaves (possible only where
/// the backend's transactions are not atomic): the node's start-up repair rebuilds the records
/// from the blocks, so every address is freed by its handle again. Another node's allocations
/// are left to that node.
pub async fn allocations_without_handle_records_are_repaired(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.21.0.0/24", 28).await;
    let node = ipam(store, "n1");
    let lost = node.allocate(req("lost", 4)).await.unwrap();
    node.allocate(req("short", 4)).await.unwrap();
    node.allocate(req("short", 4)).await.unwrap();
    node.allocate(req("kept", 4)).await.unwrap();
    let theirs = ipam(store, "n2").allocate(req("theirs", 4)).await.unwrap();
    // The crash states: a record never written, and one counting one address of two.
    for gone in ["lost", "theirs"] {
        let record: Stored<IpamHandle> = store.get(gone).await.unwrap();
        store.delete::<IpamHandle>(gone, record.revision).await.unwrap();
    }
    let mut short: Stored<IpamHandle> = store.get("short").await.unwrap();
    *short.spec.block.values_mut().next().unwrap() = 1;
    store.update("short", &short.spec, short.revision).await.unwrap();
    let before = check(store, &CheckInput::default()).await.unwrap();
    assert_eq!(before.allocations_without_handle.len(), 2, "{before:#?}");
    assert_eq!(before.handle_mismatches.len(), 1, "{before:#?}");

    let repaired = node.repair().await.unwrap();
    assert_eq!(repaired.handles_rebuilt, ["lost", "short"]);
    let after = check(store, &CheckInput::default()).await.unwrap();
    assert_eq!(after.allocations_without_handle.len(), 1, "only n2's is left: {after:#?}");
    assert_eq!(after.allocations_without_handle[0].ip, theirs.ip);
    assert_eq!(ipam(store, "n2").repair().await.unwrap().handles_rebuilt, ["theirs"]);
    clean(store).await;
    assert_eq!(node.repair().await.unwrap().handles_rebuilt, Vec::<String>::new(), "nothing left to repair");

    assert_eq!(node.release_handle("lost").await.unwrap(), 1);
    assert_eq!(node.release_handle("short").await.unwrap(), 2);
    assert_eq!(node.release_handle("theirs").await.unwrap(), 1);
    assert_eq!(node.release_handle("kept").await.unwrap(), 1);
    let report = check(store, &CheckInput::default()).await.unwrap();
    assert_eq!(report.allocations, 0, "every address freed by its handle: {report:#?}");
    assert!(report.is_clean(), "{report:#?}");
    assert!(!node.release_ip(lost.ip, None).await.unwrap(), "already free");
}

pub async fn corrupt_block_is_reported_by_key(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.20.0.0/24", 26).await;
    let node = ipam(store, "n1");
    let first = node.allocate(req("h1", 4)).await.unwrap();
    let name = tortie::datastore::resources::cidr_name(&first.block);
    h.corrupt(&Key::new(Kind::IpamBlock, &name), b"{\"cidr\": 7}").await;
    let report = check(store, &CheckInput::default()).await.unwrap();
    assert!(report.invalid_records.iter().any(|r| r.contains(&name)), "{report:#?}");
    // The node goes on allocating from another block.
    let next = node.allocate(req("h2", 4)).await.unwrap();
    assert_ne!(next.block, first.block);
}

pub async fn leaks_and_empty_blocks_are_collected(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.21.0.0/24", 30).await;
    let node = ipam(store, "n1");
    for i in 0..8 {
        node.allocate(req(&format!("h{i}"), 4)).await.unwrap();
    }
    let tunnel_pool_free = node.tunnel_address(4).await.unwrap();
    let alive: BTreeSet<String> = (0..4).map(|i| format!("h{i}")).collect();
    let report = check(store, &CheckInput { alive_handles: Some(alive.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(report.leaked.len(), 4, "h4..h7; tunnel addresses are not workloads: {report:#?}");
    let mut gc = Gc::new(Duration::from_secs(60));
    let t0 = Instant::now();
    assert!(gc.collect_leaks(&node, &alive, t0).await.unwrap().is_empty(), "first sighting only");
    assert!(gc.collect_leaks(&node, &alive, t0 + Duration::from_secs(30)).await.unwrap().is_empty(), "within grace");
    let released = gc.collect_leaks(&node, &alive, t0 + Duration::from_secs(61)).await.unwrap();
    assert_eq!(released, vec!["h4", "h5", "h6", "h7"]);
    assert_eq!(node.tunnel_address(4).await.unwrap().ip, tunnel_pool_free.ip, "tunnel address kept");
    // Blocks now: h0..h3 fill one /30, the tunnel address sits in another, the rest are empty.
    let blocks_before = store.list::<IpamBlock>().await.unwrap().items.len();
    assert!(gc.release_empty_blocks(&node, t0).await.unwrap().is_empty());
    let freed = gc.release_empty_blocks(&node, t0 + Duration::from_secs(61)).await.unwrap();
    assert!(!freed.is_empty());
    assert_eq!(store.list::<IpamBlock>().await.unwrap().items.len(), blocks_before - freed.len());
    for h in &alive {
        node.release_handle(h).await.unwrap();
    }
    node.release_handle("ipip-tunnel-addr-n1").await.unwrap();
    gc.release_empty_blocks(&node, t0 + Duration::from_secs(100)).await.unwrap();
    gc.release_empty_blocks(&node, t0 + Duration::from_secs(200)).await.unwrap();
    assert_eq!(store.list::<IpamBlock>().await.unwrap().items.len(), 1, "the node's last block is kept");
    clean(store).await;
}

pub async fn group_commit_serves_a_burst(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.22.0.0/22", 26).await;
    let allocator = Allocator::spawn(ipam(store, "n1"));
    // Every backend's revision is store-wide and counts writes.
    let before = store.list::<IpPool>().await.unwrap().revision;
    let burst = (0..100).map(|i| {
        let allocator = allocator.clone();
        async move { allocator.allocate(req(&format!("burst-{i}"), 4)).await }
    });
    let results = futures::future::join_all(burst).await;
    let ips: BTreeSet<IpAddr> = results.iter().map(|r| r.as_ref().expect("allocated").ip).collect();
    assert_eq!(ips.len(), 100, "no duplicates");
    let blocks: BTreeMap<_, usize> = results.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.as_ref().unwrap().block).or_default() += 1;
        m
    });
    assert!(blocks.len() >= 2, "100 addresses need two /26 blocks");
    // 100 handle records and a few claims are unavoidable; one block write per address would
    // add another 100. Group commit shares block writes between requests.
    let writes = store.list::<IpPool>().await.unwrap().revision.0 - before.0;
    assert!(writes < 150, "{writes} writes for 100 allocations: block writes were not shared");
    clean(store).await;
}

/// A pool as Calico's JSON spells it (fields tortie may not know are kept in the JSON).
fn pool_from_json(spec: serde_json::Value) -> IpPool {
    serde_json::from_value(spec).expect("a pool")
}

pub async fn manual_pools_only_when_named_and_load_balancer_pools_never_for_pods(h: &impl Harness) {
    let store = h.store();
    let manual = pool_from_json(serde_json::json!({"cidr": "10.19.0.0/24", "assignmentMode": "Manual"}));
    create_pool(store, "manual", &manual).await.unwrap();
    let lb = pool_from_json(serde_json::json!({"cidr": "10.20.0.0/24", "allowedUses": ["LoadBalancer"]}));
    create_pool(store, "lb", &lb).await.unwrap();
    let node = ipam(store, "n1");
    match node.allocate(req("auto", 4)).await {
        Err(IpamError::NoPool { family: 4, .. }) => {}
        other => panic!("a Manual pool is never chosen automatically: {other:?}"),
    }
    assert!(matches!(node.tunnel_address(4).await, Err(IpamError::NoPool { .. })), "nor for a tunnel");
    let named = Request { pools: vec![manual.cidr], ..req("named", 4) };
    let got = node.allocate(named).await.unwrap();
    assert!(manual.cidr.contains(got.ip), "{} from the Manual pool named", got.ip);
    let lb_named = Request { pools: vec![lb.cidr], ..req("lb", 4) };
    assert!(matches!(node.allocate(lb_named).await, Err(IpamError::NoPool { .. })), "LoadBalancer pools serve no pod");
    let auto = pool_from_json(serde_json::json!({"cidr": "10.21.0.0/24"}));
    create_pool(store, "auto", &auto).await.unwrap();
    assert!(auto.cidr.contains(node.allocate(req("auto", 4)).await.unwrap().ip));
    assert!(auto.cidr.contains(node.tunnel_address(4).await.unwrap().ip));
    clean(store).await;
}

pub async fn load_balancer_pools_follow_calico_rules(h: &impl Harness) {
    let store = h.store();
    let lb = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"cidr": "10.22.0.0/24", "allowedUses": ["LoadBalancer"]});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        pool_from_json(spec)
    };
    for (extra, field) in [
        (serde_json::json!({"ipipMode": "Always"}), "ipipMode"),
        (serde_json::json!({"vxlanMode": "CrossSubnet"}), "vxlanMode"),
        (serde_json::json!({"disableBGPExport": true}), "disableBGPExport"),
        (serde_json::json!({"nodeSelector": "zone == 'a'"}), "nodeSelector"),
        (serde_json::json!({"allowedUses": ["LoadBalancer", "Workload"]}), "allowedUses"),
    ] {
        match create_pool(store, "lb", &lb(extra.clone())).await {
            Err(IpamError::InvalidPool { reason, .. }) => assert!(reason.starts_with(field), "{extra}: {reason}"),
            other => panic!("{extra} must be refused naming {field}: {other:?}"),
        }
    }
    create_pool(store, "lb", &lb(serde_json::json!({}))).await.unwrap();
}

pub async fn ip_reservations_in_the_datastore_are_never_handed_out(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.23.0.0/28", 29).await;
    // The first block wholly reserved (never claimed), half of the second one.
    let spec = serde_json::json!({"reservedCIDRs": ["10.23.0.0/29", "10.23.0.8/30"]});
    let reservation: IpReservation = serde_json::from_value(spec).unwrap();
    store.create("reserved", &reservation).await.unwrap();
    let node = ipam(store, "n1");
    let mut got = Vec::new();
    for i in 0..4 {
        got.push(node.allocate(req(&format!("h{i}"), 4)).await.unwrap().ip);
    }
    let expected: Vec<IpAddr> = (12..16).map(|o| format!("10.23.0.{o}").parse().unwrap()).collect();
    got.sort();
    assert_eq!(got, expected, "only the unreserved addresses");
    assert!(matches!(node.allocate(req("h4", 4)).await, Err(IpamError::PoolsExhausted { .. })));
    let own = tortie::ipam::routes::own_blocks(store, "n1").await.unwrap();
    assert_eq!(own, vec!["10.23.0.8/29".parse().unwrap()], "the reserved block is never claimed");
    // `ipam check` counts them without being told.
    let report = check(store, &CheckInput::default()).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.pools[0].in_use, report.pools[0].reserved, report.pools[0].free), (4, 12, 0));
}

pub async fn ipam_configuration_limits_blocks_and_automatic_claims(h: &impl Harness) {
    let store = h.store();
    pool(store, "p", "10.24.0.0/24", 29).await;
    let other = ipam(store, "other");
    other.allocate(req("other0", 4)).await.unwrap();
    // Without a configuration Calico allows 20 blocks per host, and a host at its limit does
    // not borrow: the request fails with the limit, strict affinity or not.
    let node = ipam(store, "n1");
    for i in 0..20 * 8 {
        assert!(!node.allocate(req(&format!("h{i}"), 4)).await.unwrap().borrowed);
    }
    match node.allocate(req("h-over", 4)).await {
        Err(IpamError::BlockLimit { limit: 20, .. }) => {}
        other => panic!("expected the default block limit of 20, got {other:?}"),
    }
    // autoAllocateBlocks false: no new block, even below the limit.
    let config = IpamConfig { strict_affinity: true, auto_allocate_blocks: false, max_blocks_per_host: 0 };
    store.create("default", &config).await.unwrap();
    let fresh = ipam(store, "fresh");
    assert!(fresh.allocate(req("fresh0", 4)).await.is_err(), "no block is claimed automatically");
    assert!(tortie::ipam::routes::own_blocks(store, "fresh").await.unwrap().is_empty());
    // Both off is refused, as Calico's SetIPAMConfig does.
    let both_off = IpamConfig { strict_affinity: false, auto_allocate_blocks: false, max_blocks_per_host: 0 };
    let refused = store.create("refused", &both_off).await.unwrap_err().to_string();
    assert!(refused.contains("autoAllocateBlocks"), "{refused}");
}
