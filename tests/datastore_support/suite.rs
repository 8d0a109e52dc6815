//! The conformance suite: the same checks, unchanged, for every backend.

use super::harness::Harness;
use std::collections::BTreeMap;
use std::time::Duration;
use tortie::datastore::resources::{IpPool, IpamBlock, IpamHandle, Node, NodeBgp};
use tortie::datastore::{Datastore, DatastoreError, Revision, Stored, Transaction, WatchEvent, WatchStream};

const DEADLINE: Duration = Duration::from_secs(60);

pub fn handle(id: &str, count: u32) -> IpamHandle {
    IpamHandle { handle_id: id.to_string(), block: BTreeMap::from([("count".to_string(), count)]), deleted: false }
}

/// Adds one to the handle's `count` with compare-and-swap, retrying on conflicts and on
/// retryable failures (re-reading first, so a write whose answer was lost is not repeated
/// blindly). Returns how many conflicts it met.
pub async fn increment(store: &Datastore, name: &str) -> u32 {
    let mut conflicts = 0;
    for _ in 0..100_000 {
        let current = match store.get::<IpamHandle>(name).await {
            Ok(current) => current,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("read {name}: {e}"),
        };
        let mut next = current.spec.clone();
        *next.block.entry("count".to_string()).or_default() += 1;
        match store.update(name, &next, current.revision).await {
            Ok(_) => return conflicts,
            Err(DatastoreError::Conflict { .. }) => conflicts += 1,
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("update {name}: {e}"),
        }
    }
    panic!("{name}: no increment succeeded in 100000 attempts");
}

pub async fn count(store: &Datastore, name: &str) -> u32 {
    store.get::<IpamHandle>(name).await.expect("read the counter").spec.block["count"]
}

/// The next event within the deadline.
pub async fn next_event<R: tortie::datastore::Resource>(watch: &mut WatchStream<R>) -> WatchEvent<R> {
    match tokio::time::timeout(DEADLINE, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {DEADLINE:?}"),
    }
}

pub async fn crud_and_typed_errors(h: &impl Harness) {
    let store = h.store();
    let pool = IpPool::new("10.64.0.0/16".parse().unwrap());
    let created = store.create("pool-a", &pool).await.expect("create");
    assert!(matches!(store.create("pool-a", &pool).await, Err(DatastoreError::AlreadyExists { .. })));

    let got = store.get::<IpPool>("pool-a").await.expect("get");
    assert_eq!(got, created);

    let mut changed = pool.clone();
    changed.nat_outgoing = true;
    let updated = store.update("pool-a", &changed, got.revision).await.expect("update");
    assert!(updated.revision > got.revision, "revisions grow: {} then {}", got.revision, updated.revision);
    assert_eq!(store.get::<IpPool>("pool-a").await.expect("get").spec, changed);

    store.create("pool-b", &IpPool::new("10.65.0.0/16".parse().unwrap())).await.expect("create b");
    let listing = store.list::<IpPool>().await.expect("list");
    let names: Vec<_> = listing.items.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pool-a", "pool-b"]);
    assert!(listing.invalid.is_empty());
    assert!(listing.revision >= updated.revision);

    store.delete::<IpPool>("pool-a", updated.revision).await.expect("delete");
    assert!(matches!(store.get::<IpPool>("pool-a").await, Err(DatastoreError::NotFound { .. })));
    assert!(matches!(store.update("pool-a", &pool, updated.revision).await, Err(DatastoreError::NotFound { .. })));
    assert!(matches!(store.delete::<IpPool>("pool-a", updated.revision).await, Err(DatastoreError::NotFound { .. })));

    let bad = IpPool::new("10.66.0.1/16".parse().unwrap());
    match store.create("pool-c", &bad).await {
        Err(DatastoreError::InvalidData { key, reason }) => {
            assert_eq!(key, "IPPool/pool-c");
            assert!(reason.starts_with("cidr:"), "{reason}");
        }
        other => panic!("an unmasked pool must be refused, got {other:?}"),
    }
    assert!(matches!(store.get::<IpPool>("pool-c").await, Err(DatastoreError::NotFound { .. })));
}

pub async fn compare_and_swap_conflicts_are_detected(h: &impl Harness) {
    let store = h.store();
    let first = store.create("cas", &handle("cas", 0)).await.expect("create");
    let other = h.another_client().await;
    other.update("cas", &handle("cas", 1), first.revision).await.expect("the first writer wins");
    match store.update("cas", &handle("cas", 2), first.revision).await {
        Err(DatastoreError::Conflict { key, expected }) => {
            assert_eq!(key.to_string(), "IPAMHandle/cas");
            assert_eq!(expected, first.revision);
        }
        other => panic!("a stale update must conflict, got {other:?}"),
    }
    assert!(matches!(store.delete::<IpamHandle>("cas", first.revision).await, Err(DatastoreError::Conflict { .. })));
    assert_eq!(count(store, "cas").await, 1, "the stale writes changed nothing");
}

pub async fn concurrent_writers_lose_no_update(h: &impl Harness) {
    const TASKS: u32 = 6;
    const EACH: u32 = 20;
    h.store().create("counter", &handle("counter", 0)).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let client = h.another_client().await;
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..EACH {
                conflicts += increment(&client, "counter").await;
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.expect("writer task");
    }
    assert_eq!(count(h.store(), "counter").await, TASKS * EACH, "after {conflicts} conflicts");
}

/// A transaction applies all its writes, each with its own revision, or — when one write's
/// condition fails — none, with the error naming that write's key.
/// A transaction of the largest size the datastore takes commits whatever its writes are (etcd
/// counts each compare against its limit of 128 operations per transaction).
pub async fn a_transaction_of_the_maximum_size_commits(h: &impl Harness) {
    let store = h.store();
    let max = tortie::datastore::MAX_TRANSACTION_WRITES;
    let names: Vec<String> = (0..max).map(|i| format!("max-{i}")).collect();
    let mut creates = Transaction::new();
    for name in &names {
        creates.create(name, &handle(name, 1));
    }
    let created = store.commit(creates).await.expect("a full transaction of creates");
    let mut updates = Transaction::new();
    for (name, revision) in names.iter().zip(&created) {
        updates.update(name, &handle(name, 2), *revision);
    }
    let updated = store.commit(updates).await.expect("a full transaction of updates");
    let mut deletes = Transaction::new();
    for (name, revision) in names.iter().zip(&updated) {
        deletes.delete::<IpamHandle>(name, *revision);
    }
    store.commit(deletes).await.expect("a full transaction of deletes");
    assert!(store.list::<IpamHandle>().await.unwrap().items.iter().all(|s| !s.name.starts_with("max-")));
}

pub async fn transaction_applies_all_writes_or_none(h: &impl Harness) {
    let store = h.store();
    let a = store.create("a", &handle("a", 1)).await.expect("create a");
    let b = store.create("b", &handle("b", 1)).await.expect("create b");
    let mut watch = store.watch::<IpamHandle>(Some(b.revision)).await.expect("watch");
    let mut txn = Transaction::new();
    txn.update("a", &handle("a", 2), a.revision).create("c", &handle("c", 1)).delete::<IpamHandle>("b", b.revision);
    let revisions = store.commit(txn).await.expect("commit");
    assert_eq!(revisions.len(), 3);
    assert!(revisions[0] > b.revision, "{revisions:?}");
    let (a2, c) = (store.get::<IpamHandle>("a").await.unwrap(), store.get::<IpamHandle>("c").await.unwrap());
    assert_eq!((a2.revision, a2.spec.block["count"]), (revisions[0], 2));
    assert_eq!((c.revision, c.spec.block["count"]), (revisions[1], 1));
    assert!(matches!(store.get::<IpamHandle>("b").await, Err(DatastoreError::NotFound { .. })));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match next_event(&mut watch).await {
            WatchEvent::Added(s) | WatchEvent::Modified(s) => seen.push(s.name),
            WatchEvent::Deleted { name, .. } => seen.push(name),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Resync(l) => panic!("unexpected resync: {l:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"], "the watch sees every write of the transaction");

    // One stale write: nothing is applied, and the error names it.
    let mut stale = Transaction::new();
    stale.update("a", &handle("a", 3), a2.revision).update("c", &handle("c", 3), a.revision);
    match store.commit(stale).await {
        Err(DatastoreError::Conflict { key, .. }) => assert_eq!(key.to_string(), "IPAMHandle/c"),
        other => panic!("a stale write must fail the transaction, got {other:?}"),
    }
    let mut exists = Transaction::new();
    exists.update("a", &handle("a", 3), a2.revision).create("c", &handle("c", 3));
    match store.commit(exists).await {
        Err(DatastoreError::AlreadyExists { key }) => assert_eq!(key.to_string(), "IPAMHandle/c"),
        other => panic!("creating an existing record must fail the transaction, got {other:?}"),
    }
    let mut missing = Transaction::new();
    missing.update("a", &handle("a", 3), a2.revision).delete::<IpamHandle>("b", b.revision);
    match store.commit(missing).await {
        Err(DatastoreError::NotFound { key }) => assert_eq!(key.to_string(), "IPAMHandle/b"),
        other => panic!("deleting a missing record must fail the transaction, got {other:?}"),
    }
    let mut twice = Transaction::new();
    twice.update("a", &handle("a", 3), a2.revision).update("a", &handle("a", 4), a2.revision);
    assert!(matches!(store.commit(twice).await, Err(DatastoreError::InvalidData { .. })), "a key written twice");
    let mut invalid = Transaction::new();
    invalid.update("a", &handle("a", 3), a2.revision).create("d", &handle("", 1));
    match store.commit(invalid).await {
        Err(DatastoreError::InvalidData { key, .. }) => assert_eq!(key, "IPAMHandle/d"),
        other => panic!("an invalid record must fail the transaction, got {other:?}"),
    }
    assert_eq!(store.get::<IpamHandle>("a").await.unwrap(), a2, "no failed transaction changed a");
    assert_eq!(count(store, "c").await, 1);
    assert!(matches!(store.get::<IpamHandle>("d").await, Err(DatastoreError::NotFound { .. })));
    assert_eq!(store.commit(Transaction::new()).await.expect("an empty transaction"), Vec::<Revision>::new());
}

/// Tasks with their own clients each add one to two records in one transaction, retrying on
/// conflicts: no update is lost and the records never drift apart (atomic backends only).
pub async fn concurrent_transactions_keep_records_in_step(h: &impl Harness) {
    const TASKS: u32 = 6;
    const EACH: u32 = 15;
    assert!(h.store().atomic_transactions());
    h.store().create("x", &handle("x", 0)).await.expect("create x");
    h.store().create("y", &handle("y", 0)).await.expect("create y");
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let client = h.another_client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                loop {
                    let (x, y) = (client.get::<IpamHandle>("x").await, client.get::<IpamHandle>("y").await);
                    let (Ok(x), Ok(y)) = (x, y) else { continue };
                    let mut txn = Transaction::new();
                    txn.update("x", &handle("x", x.spec.block["count"] + 1), x.revision);
                    txn.update("y", &handle("y", y.spec.block["count"] + 1), y.revision);
                    match client.commit(txn).await {
                        Ok(_) => break,
                        Err(DatastoreError::Conflict { .. }) => {}
                        Err(e) if e.is_retryable() => {}
                        Err(e) => panic!("commit: {e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    assert_eq!(count(h.store(), "x").await, TASKS * EACH);
    assert_eq!(count(h.store(), "y").await, TASKS * EACH);
}

/// A change the watch test makes, and the event it must see.
#[derive(Debug, PartialEq)]
enum Seen {
    Added(String, u32),
    Modified(String, u32),
    Deleted(String),
}

pub async fn watch_sees_every_change_in_order(h: &impl Harness) {
    let store = h.store();
    let before = store.create("before", &handle("before", 0)).await.expect("create");
    let mut watch = store.watch::<IpamHandle>(Some(before.revision)).await.expect("watch");
    // Writes of another kind in between must not show up in this watch.
    store.create("unrelated", &IpPool::new("10.70.0.0/16".parse().unwrap())).await.expect("create pool");

    let mut expected = Vec::new();
    let mut revisions = BTreeMap::new();
    for i in 0..3 {
        let name = format!("w{i}");
        let s = store.create(&name, &handle(&name, 0)).await.expect("create");
        revisions.insert(name.clone(), s.revision);
        expected.push(Seen::Added(name, 0));
    }
    for round in 1..=5 {
        for i in 0..3 {
            let name = format!("w{i}");
            let s = store.update(&name, &handle(&name, round), revisions[&name]).await.expect("update");
            revisions.insert(name.clone(), s.revision);
            expected.push(Seen::Modified(name, round));
        }
    }
    store.delete::<IpamHandle>("w1", revisions["w1"]).await.expect("delete");
    expected.push(Seen::Deleted("w1".into()));

    let mut seen = Vec::new();
    let mut last = before.revision;
    while seen.len() < expected.len() {
        let (event, revision) = match next_event(&mut watch).await {
            WatchEvent::Added(s) => (Seen::Added(s.name, s.spec.block["count"]), s.revision),
            WatchEvent::Modified(s) => (Seen::Modified(s.name, s.spec.block["count"]), s.revision),
            WatchEvent::Deleted { name, revision } => (Seen::Deleted(name), revision),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Resync(l) => panic!("no resync expected on a healthy watch, got one at {}", l.revision),
        };
        assert!(revision > last, "revisions must increase: {revision} after {last}");
        last = revision;
        seen.push(event);
    }
    assert_eq!(seen, expected);
}

/// Applies watch events to a map of name → count, as a cache would.
fn apply(state: &mut BTreeMap<String, u32>, event: WatchEvent<IpamHandle>) -> (bool, Option<Revision>) {
    match event {
        WatchEvent::Added(s) | WatchEvent::Modified(s) => {
            state.insert(s.name, s.spec.block["count"]);
            (false, Some(s.revision))
        }
        WatchEvent::Deleted { name, revision } => {
            state.remove(&name);
            (false, Some(revision))
        }
        WatchEvent::Resync(listing) => {
            assert!(listing.invalid.is_empty(), "{:?}", listing.invalid);
            *state = listing.items.into_iter().map(|s| (s.name, s.spec.block["count"])).collect();
            (true, Some(listing.revision))
        }
        WatchEvent::Bookmark(r) => (false, Some(r)),
    }
}

/// Reads the watch until the state it builds reaches `target` (revision) and equals `truth`.
async fn converge(
    watch: &mut WatchStream<IpamHandle>,
    state: &mut BTreeMap<String, u32>,
    target: Revision,
    truth: &BTreeMap<String, u32>,
) -> bool {
    let mut resynced = false;
    let mut at = Revision(0);
    while at < target || state != truth {
        let (resync, revision) = apply(state, next_event(watch).await);
        resynced |= resync;
        at = revision.unwrap_or(at).max(at);
    }
    resynced
}

async fn truth(store: &Datastore) -> (BTreeMap<String, u32>, Revision) {
    let listing = store.list::<IpamHandle>().await.expect("list");
    let state = listing.items.into_iter().map(|s: Stored<IpamHandle>| (s.name, s.spec.block["count"])).collect();
    (state, listing.revision)
}

pub async fn watch_from_compacted_revision_resyncs(h: &impl Harness) {
    let store = h.store();
    let first = store.create("old", &handle("old", 0)).await.expect("create");
    let mut revision = first.revision;
    for i in 1..=5 {
        revision = store.update("old", &handle("old", i), revision).await.expect("update").revision;
    }
    store.create("new", &handle("new", 7)).await.expect("create");
    h.compact().await;

    let mut watch = store.watch::<IpamHandle>(Some(first.revision)).await.expect("watch");
    match next_event(&mut watch).await {
        WatchEvent::Resync(listing) => {
            let got: BTreeMap<_, _> = listing.items.into_iter().map(|s| (s.name, s.spec.block["count"])).collect();
            assert_eq!(got, BTreeMap::from([("new".to_string(), 7), ("old".to_string(), 5)]));
        }
        other => panic!("a watch from a compacted revision must start with a resync, got {other:?}"),
    }
    // And it goes on live after the resync.
    store.update("old", &handle("old", 6), revision).await.expect("update");
    loop {
        match next_event(&mut watch).await {
            WatchEvent::Modified(s) => {
                assert_eq!((s.name.as_str(), s.spec.block["count"]), ("old", 6));
                break;
            }
            WatchEvent::Bookmark(_) => continue,
            other => panic!("expected the update after the resync, got {other:?}"),
        }
    }
}

pub async fn lagging_watcher_recovers_with_resync(h: &impl Harness) {
    let store = h.store();
    let start = store.create("lag", &handle("lag", 0)).await.expect("create");
    let mut watch = store.watch::<IpamHandle>(Some(start.revision)).await.expect("watch");
    // Far more changes than the watch buffers, while nobody reads the watch.
    let mut revision = start.revision;
    for i in 1..=600 {
        revision = store.update("lag", &handle("lag", i), revision).await.expect("update").revision;
    }
    h.compact().await;
    for i in 0..5 {
        store.create(&format!("late{i}"), &handle("late", i)).await.expect("create");
    }
    let (truth, at) = truth(store).await;
    let mut state = BTreeMap::new();
    let resynced = converge(&mut watch, &mut state, at, &truth).await;
    if h.compaction_cuts_live_watches() {
        assert!(resynced, "a watcher whose place was compacted away must resync");
    }
}

pub async fn corrupt_record_is_invalid_data_naming_the_key(h: &impl Harness) {
    let store = h.store();
    store.create("good", &handle("good", 1)).await.expect("create");
    let victim = store.create("victim", &handle("victim", 1)).await.expect("create");
    let mut watch = store.watch::<IpamHandle>(Some(victim.revision)).await.expect("watch");
    let key = tortie::datastore::Key::new(tortie::datastore::Kind::IpamHandle, "victim");

    h.corrupt(&key, b"{\"handleID\": \"victim\", \"block\": {\"count\": \"many\"}}").await;
    match store.get::<IpamHandle>("victim").await {
        Err(DatastoreError::InvalidData { key, reason }) => {
            assert!(key.contains("victim"), "the error names the key: {key}");
            assert!(reason.contains("block.count"), "the error names the field: {reason}");
        }
        other => panic!("a corrupt record must be InvalidData, got {other:?}"),
    }
    h.corrupt(&key, b"\xff\x00 not json").await;
    assert!(matches!(store.get::<IpamHandle>("victim").await, Err(DatastoreError::InvalidData { .. })));

    let listing = store.list::<IpamHandle>().await.expect("a listing survives one corrupt record");
    assert_eq!(listing.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["good"]);
    assert_eq!(listing.invalid.len(), 1);
    assert!(listing.invalid[0].to_string().contains("victim"), "{}", listing.invalid[0]);

    // A record that is well-formed JSON but breaks the resource's rules is refused too.
    let block = IpamBlock::empty("10.80.0.0/30".parse().unwrap(), None);
    store.create("10-80-0-0-30", &block).await.expect("create block");
    let block_key = tortie::datastore::Key::new(tortie::datastore::Kind::IpamBlock, "10-80-0-0-30");
    let mut broken = serde_json::to_value(&block).unwrap();
    broken["allocations"] = serde_json::json!([null]);
    h.corrupt(&block_key, &serde_json::to_vec(&broken).unwrap()).await;
    match store.get::<IpamBlock>("10-80-0-0-30").await {
        Err(DatastoreError::InvalidData { reason, .. }) => assert!(reason.starts_with("allocations"), "{reason}"),
        other => panic!("an inconsistent block must be InvalidData, got {other:?}"),
    }

    // Watchers see the corruption as an error item naming the key, and carry on. Backends whose
    // raw writes do not reach watches (none today) would skip straight to the next event.
    store.create("after", &handle("after", 2)).await.expect("create");
    let mut errors = 0;
    loop {
        match tokio::time::timeout(DEADLINE, watch.next()).await.expect("watch event") {
            Some(Err(DatastoreError::InvalidData { key, .. })) => {
                assert!(key.contains("victim"), "{key}");
                errors += 1;
            }
            Some(Ok(WatchEvent::Added(s))) if s.name == "after" => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("unexpected watch error {e}"),
            None => panic!("watch ended"),
        }
    }
    assert!(errors <= 2);

    // Names alone: every record of the kind, the ones that do not decode included, no other kind.
    let mut names = store.list_names::<IpamHandle>().await.expect("handle names");
    names.sort();
    assert_eq!(names, ["after", "good", "victim"]);
    assert_eq!(store.list_names::<IpamBlock>().await.expect("block names"), ["10-80-0-0-30"]);

    // By name prefix: the records whose names start with it, those that do not decode reported.
    for name in ["a-1", "a-2", "ab-1", "b-a-1"] {
        store.create(name, &handle(name, 1)).await.expect("create");
    }
    let listing = store.list_prefix::<IpamHandle>("a-").await.expect("prefix listing");
    assert_eq!(listing.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a-1", "a-2"]);
    assert!(listing.invalid.is_empty(), "{:?}", listing.invalid);
    let listing = store.list_prefix::<IpamHandle>("vic").await.expect("prefix listing");
    assert!(listing.items.is_empty());
    assert_eq!(listing.invalid.len(), 1, "the corrupt record is reported by key");
    let all = store.list_prefix::<IpamHandle>("").await.expect("everything");
    assert_eq!(all.items.len() + all.invalid.len(), 7);
    assert!(store.list_prefix::<IpamBlock>("a-").await.expect("other kind").items.is_empty());
}

pub async fn node_bgp_fields_round_trip(h: &impl Harness) {
    let store = h.store();
    h.prepare_node("node-a").await;
    let node = Node {
        bgp: Some(NodeBgp {
            ipv4_address: Some("192.0.2.10/24".parse().unwrap()),
            ipv6_address: Some("2001:db8::10/64".parse().unwrap()),
            as_number: Some(64512),
            route_reflector_cluster_id: Some("224.0.0.1".parse().unwrap()),
            ipv4_ipip_tunnel_addr: Some("10.64.0.1".parse().unwrap()),
        }),
        ipv4_vxlan_tunnel_addr: Some("10.64.0.2".parse().unwrap()),
        vxlan_tunnel_mac_addr: Some("66:0a:bb:00:ee:ff".parse().unwrap()),
        ipv6_vxlan_tunnel_addr: Some("fd00:64::2".parse().unwrap()),
        vxlan_tunnel_mac_addr_v6: Some("66:0a:bb:00:ee:01".parse().unwrap()),
        labels: BTreeMap::from([
            ("route-reflector".into(), "true".into()),
            ("topology.kubernetes.io/zone".into(), "a".into()),
        ]),
    };
    let created = store.create("node-a", &node).await.expect("create node");
    assert!(matches!(store.create("node-a", &node).await, Err(DatastoreError::AlreadyExists { .. })));
    let got = store.get::<Node>("node-a").await.expect("get node");
    assert_eq!(got.spec, node);
    let mut changed = node.clone();
    changed.bgp.as_mut().unwrap().as_number = Some(65001);
    changed.labels.remove("route-reflector");
    let updated = store.update("node-a", &changed, got.revision).await.expect("update node");
    assert!(matches!(store.update("node-a", &node, created.revision).await, Err(DatastoreError::Conflict { .. })));
    assert_eq!(store.get::<Node>("node-a").await.expect("get node").spec, changed);
    let listing = store.list::<Node>().await.expect("list nodes");
    assert_eq!(listing.items.len(), 1);
    store.delete::<Node>("node-a", updated.revision).await.expect("delete node");
    assert!(matches!(store.get::<Node>("node-a").await, Err(DatastoreError::NotFound { .. })));
}

/// Increments from child processes (each a copy of this test binary in its child role) and from
/// this process at once; none may be lost.
pub async fn processes_writing_one_record_lose_no_update(h: &impl Harness) {
    const CHILDREN: u32 = 3;
    const EACH: u32 = 20;
    let target = h.child_target().expect("this backend can be shared across processes");
    let created = h.store().create("shared", &handle("shared", 0)).await.expect("create");
    let mut watch = h.store().watch::<IpamHandle>(Some(created.revision)).await.expect("watch");
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        let child = tokio::process::Command::new(&exe)
            .args(["--exact", "child_writer", "--ignored", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, serde_json::to_string(&(target.clone(), "shared", EACH)).unwrap())
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start a child writer");
        children.push(child);
    }
    for _ in 0..EACH {
        increment(h.store(), "shared").await;
    }
    for child in children {
        let out = tokio::time::timeout(DEADLINE, child.wait_with_output()).await.expect("child finished").unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child writer failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(h.store(), "shared").await, (CHILDREN + 1) * EACH);
    // The watch saw the other processes' writes too: it reaches the final count, one by one.
    let mut last = 0;
    while last < (CHILDREN + 1) * EACH {
        match next_event(&mut watch).await {
            WatchEvent::Modified(s) => {
                let now = s.spec.block["count"];
                assert_eq!(now, last + 1, "every increment is seen, in order");
                last = now;
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The environment variable that puts the test binary in its child-writer role.
pub const CHILD_ENV: &str = "TORTIE_DATASTORE_CHILD";

/// The child role: `(target, record, increments)` from [`CHILD_ENV`].
pub async fn child_writer_role(spec: &str) {
    let (target, name, each): (super::harness::ChildTarget, String, u32) =
        serde_json::from_str(spec).expect("child spec");
    let store = target.connect().await;
    for _ in 0..each {
        increment(&store, &name).await;
    }
}
