//! The datastore conformance suite, run unchanged against every backend (sqlite, etcd, and
//! Kubernetes through the in-process stand-in API server), plus the multi-process writers for
//! the backends several processes can share and etcd's kill-and-restart test.

mod datastore_support;

use datastore_support::harness::{EtcdHarness, Harness, KubeHarness, SqliteHarness};
use datastore_support::suite;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tortie::datastore::resources::IpamHandle;
use tortie::datastore::{Datastore, DatastoreError, WatchEvent};

/// One test per suite check for a backend; `$make` builds a fresh harness for each test.
macro_rules! conformance {
    ($backend:ident, $make:expr, [$($check:ident),* $(,)?]) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let harness = $make;
                    suite::$check(&harness).await;
                }
            )*
        }
    };
}

conformance!(
    sqlite,
    SqliteHarness::new().await,
    [
        crud_and_typed_errors,
        compare_and_swap_conflicts_are_detected,
        concurrent_writers_lose_no_update,
        watch_sees_every_change_in_order,
        watch_from_compacted_revision_resyncs,
        lagging_watcher_recovers_with_resync,
        corrupt_record_is_invalid_data_naming_the_key,
        node_bgp_fields_round_trip,
        processes_writing_one_record_lose_no_update,
        transaction_applies_all_writes_or_none,
        a_transaction_of_the_maximum_size_commits,
        concurrent_transactions_keep_records_in_step,
    ]
);

conformance!(
    etcd,
    EtcdHarness::new().await,
    [
        crud_and_typed_errors,
        compare_and_swap_conflicts_are_detected,
        concurrent_writers_lose_no_update,
        watch_sees_every_change_in_order,
        watch_from_compacted_revision_resyncs,
        lagging_watcher_recovers_with_resync,
        corrupt_record_is_invalid_data_naming_the_key,
        node_bgp_fields_round_trip,
        processes_writing_one_record_lose_no_update,
        transaction_applies_all_writes_or_none,
        a_transaction_of_the_maximum_size_commits,
        concurrent_transactions_keep_records_in_step,
    ]
);

conformance!(
    kubernetes,
    KubeHarness::new().await,
    [
        crud_and_typed_errors,
        compare_and_swap_conflicts_are_detected,
        concurrent_writers_lose_no_update,
        watch_sees_every_change_in_order,
        watch_from_compacted_revision_resyncs,
        lagging_watcher_recovers_with_resync,
        corrupt_record_is_invalid_data_naming_the_key,
        node_bgp_fields_round_trip,
        transaction_applies_all_writes_or_none,
        a_transaction_of_the_maximum_size_commits,
    ]
);

/// The child role of `processes_writing_one_record_lose_no_update`: that test runs this binary
/// again with only this test selected and its instructions in the environment. Ignored so a
/// normal run skips it; outside that role it has nothing to do.
#[tokio::test]
#[ignore = "child role of the multi-process tests, started by them"]
async fn child_writer() {
    let spec = std::env::var(suite::CHILD_ENV)
        .unwrap_or_else(|_| panic!("run only by the multi-process tests, with {} set", suite::CHILD_ENV));
    suite::child_writer_role(&spec).await;
}

/// Records `op` in the ledger handle unless it is there already, so a retry after an answer lost
/// in the outage cannot apply it twice.
async fn record_once(store: &Datastore, op: &str) {
    loop {
        let current = match store.get::<IpamHandle>("ledger").await {
            Ok(current) => current,
            Err(e) if e.is_retryable() => {
                // etcd is down: back off a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => panic!("read the ledger: {e}"),
        };
        if current.spec.block.contains_key(op) {
            return;
        }
        let mut next = current.spec.clone();
        next.block.insert(op.to_string(), 1);
        match store.update("ledger", &next, current.revision).await {
            Ok(_) => return,
            Err(DatastoreError::Conflict { .. }) => {}
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("write the ledger: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_killed_and_restarted_mid_test_loses_no_acknowledged_write() {
    const WRITERS: usize = 3;
    const EACH: usize = 30;
    let mut harness = EtcdHarness::new().await;
    let store = harness.store().clone();
    let ledger = IpamHandle { handle_id: "ledger".into(), block: BTreeMap::new(), deleted: false };
    let start = store.create("ledger", &ledger).await.expect("create the ledger");
    let mut watch = store.watch::<IpamHandle>(Some(start.revision)).await.expect("watch");

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, acknowledged) = (store.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..EACH {
                let op = format!("w{w}-{i}");
                record_once(&store, &op).await;
                acknowledged.fetch_add(1, Ordering::SeqCst);
                done.push(op);
            }
            done
        }));
    }
    tortie::testing::wait_until("some writes before the crash", Duration::from_secs(60), || {
        (acknowledged.load(Ordering::SeqCst) >= 15).then_some(())
    })
    .unwrap();
    harness.etcd.kill();
    let at_crash = acknowledged.load(Ordering::SeqCst);
    harness.etcd.restart().await;

    let mut all = Vec::new();
    for writer in writers {
        let done = tokio::time::timeout(Duration::from_secs(120), writer).await.expect("writers finish").unwrap();
        all.extend(done);
    }
    assert!(at_crash < WRITERS * EACH, "the crash happened while writers were still writing");
    let final_state = store.get::<IpamHandle>("ledger").await.expect("the same client works after the restart");
    for op in &all {
        assert!(final_state.spec.block.contains_key(op), "acknowledged write {op} was lost");
    }
    assert_eq!(final_state.spec.block.len(), WRITERS * EACH);

    // The watch opened before the crash recovers by itself and reaches the final state.
    let mut seen = 0;
    while seen < WRITERS * EACH {
        match tokio::time::timeout(Duration::from_secs(60), watch.next()).await.expect("watch event") {
            Some(Ok(WatchEvent::Modified(s))) => seen = s.spec.block.len(),
            Some(Ok(WatchEvent::Resync(l))) => seen = l.items.first().map_or(0, |s| s.spec.block.len()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("watch error: {e}"),
            None => panic!("watch ended"),
        }
    }
}

/// A sqlite file deleted (or replaced) under a running backend: writes fail naming the file,
/// instead of going on into the deleted inode where nobody will ever read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_deleted_under_the_backend_refuses_writes() {
    use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
    let dir = tempfile::Builder::new().prefix("tortie-sqlite-").tempdir().expect("temporary directory");
    let path = dir.path().join("tortie.db");
    let store = Datastore::new(SqliteBackend::open(&path, SqliteOptions::default()).await.expect("open"));
    let first = store.create("h", &datastore_support::suite::handle("h", 1)).await.expect("create");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let refused = |result: Result<_, DatastoreError>, what: &str| match result {
        Err(e @ DatastoreError::Unavailable { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()), "{what}: {e}")
        }
        other => panic!("{what}: a write into a deleted file must fail, got {other:?}"),
    };
    refused(store.update("h", &datastore_support::suite::handle("h", 2), first.revision).await.map(|_| ()), "deleted");
    // A new database at the same path is another datastore: still refused.
    let _replacement = SqliteBackend::open(&path, SqliteOptions::default()).await.expect("a new file");
    refused(store.create("g", &datastore_support::suite::handle("g", 1)).await.map(|_| ()), "replaced");
    assert!(store.backend().check().is_err(), "the periodic check sees it too");
}

/// A listing bigger than gRPC's default message limit (4 MiB): six records of 1 MiB each, read
/// whole by `list` and by a watch's resync, as the IPAM blocks of a large cluster are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_lists_larger_than_4_mib() {
    const RECORDS: usize = 6;
    let harness = EtcdHarness::new().await;
    let store = harness.store();
    // About 1 MiB of JSON each: etcd takes requests up to 1.5 MiB.
    let big = |n: usize| IpamHandle {
        handle_id: format!("big-{n}"),
        block: (0..75_000u32).map(|i| (format!("k{i:07}"), i)).collect(),
        deleted: false,
    };
    for n in 0..RECORDS {
        store.create(&format!("big-{n}"), &big(n)).await.expect("create a 1 MiB record");
    }
    let listing = store.list::<IpamHandle>().await.expect("list 6 MiB of records");
    assert_eq!(listing.items.len(), RECORDS);
    assert!(listing.invalid.is_empty());
    let mut watch = store.watch::<IpamHandle>(None).await.expect("watch");
    match tokio::time::timeout(Duration::from_secs(30), watch.next()).await.expect("the resync in time") {
        Some(Ok(WatchEvent::Resync(l))) => assert_eq!(l.items.len(), RECORDS),
        other => panic!("expected the resync listing of {RECORDS} records, got {other:?}"),
    }
}

/// The local ports of this machine's established TCP connections to `port`.
fn connections_to(port: u16) -> std::collections::BTreeSet<String> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let remote = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2].ends_with(&remote) && f[3] == "01").then(|| f[1].to_string())
        })
        .collect()
}

/// An idle client keeps its connection: its keep-alive pings respect etcd's default
/// `--grpc-keepalive-min-time` (5 s). Pinging more often makes etcd answer GOAWAY
/// (`too_many_pings`) after three pings, so every idle agent reconnected (and reopened its watches)
/// every few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_idle_client_keeps_its_connection() {
    let harness = EtcdHarness::new().await;
    let port: u16 = harness.etcd.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let store = harness.store();
    store
        .create("idle", &IpamHandle { handle_id: "idle".into(), block: BTreeMap::new(), deleted: false })
        .await
        .unwrap();
    let mut watch = store.watch::<IpamHandle>(None).await.expect("watch");
    assert!(matches!(watch.next().await, Some(Ok(WatchEvent::Resync(_)))));
    let before = connections_to(port);
    assert!(!before.is_empty(), "no connection to etcd on port {port}");
    // The behaviour under test is what happens while nothing happens: etcd's strike count
    // reaches its limit on the third ping closer than 5 s to the one before.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let after = connections_to(port);
    let new: Vec<_> = after.difference(&before).collect();
    assert!(new.is_empty(), "the idle client reconnected to etcd: new connections {new:?} (before: {before:?})");
    assert!(!after.is_empty(), "the idle client's connection to etcd is gone");
    // And the connection works.
    store.get::<IpamHandle>("idle").await.expect("read after the idle time");
}

/// The environment variable that makes the test below start etcd and wait to be killed.
const ORPHAN_ROLE: &str = "TORTIE_TEST_ETCD_OWNER";

/// An etcd server started for a test goes with the test process, even one killed with SIGKILL
/// (a test runner's timeout), which runs no destructor: no server outlives its test holding
/// its ports and data directory. This test runs itself again as that process.
#[tokio::test]
async fn an_etcd_server_goes_with_the_test_process_that_started_it() {
    if std::env::var_os(ORPHAN_ROLE).is_some() {
        let etcd = datastore_support::etcd_process::EtcdProcess::start().await;
        println!("etcd pid {}", etcd.pid());
        std::future::pending::<()>().await;
    }
    use std::io::BufRead;
    let mut owner = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["an_etcd_server_goes_with_the_test_process_that_started_it", "--exact", "--nocapture"])
        .env(ORPHAN_ROLE, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(owner.stdout.take().unwrap()).lines();
    let pid: Option<i32> =
        lines.map_while(Result::ok).find_map(|l| l.strip_prefix("etcd pid ").and_then(|p| p.trim().parse().ok()));
    let _ = owner.kill();
    owner.wait().unwrap();
    let pid = pid.expect("the owner started etcd");
    // Gone, or a zombie left for whoever reaps orphans here.
    let alive = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
    };
    let gone =
        tortie::testing::wait_until("etcd to end with its owner", Duration::from_secs(10), || (!alive()).then_some(()));
    if gone.is_err() {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(gone.is_ok(), "etcd (pid {pid}) outlived the process that started it");
}
