//! IPAM against every backend: the generic suite (`ipam_support/suite.rs`) on sqlite, etcd and
//! the Kubernetes stand-in; three node processes allocating and releasing thousands of
//! addresses on sqlite and etcd; and a process killed in the middle of claiming a block.

#[allow(dead_code)] // the IPAM tests use the harnesses, not the datastore suite
mod datastore_support;
mod ipam_support;

use datastore_support::harness::{EtcdHarness, Harness, KubeHarness, SqliteHarness};
use ipam_support::children::{self, ALLOCATED, CHILD_ENV, HELD, Role, STAGE_REACHED};
use ipam_support::suite;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tortie::ipam::check;
use tortie::ipam::check::CheckInput;

const DEADLINE: Duration = Duration::from_secs(240);

macro_rules! ipam_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            ipam_suite!(@tests $make, [
                allocate_and_release_by_handle,
                stale_release_frees_nothing,
                ipv4_and_ipv6_side_by_side,
                exhaustion_borrowing_and_strict_affinity,
                block_limit_is_enforced,
                reservations_are_never_handed_out,
                overlapping_pool_is_refused,
                tunnel_address_comes_from_a_tunnel_pool,
                claims_race_to_one_owner_and_leave_nothing_half_made,
                a_node_reads_its_own_affinities_only,
                half_made_claims_are_repaired,
                allocations_without_handle_records_are_repaired,
                corrupt_block_is_reported_by_key,
                leaks_and_empty_blocks_are_collected,
                group_commit_serves_a_burst,
                manual_pools_only_when_named_and_load_balancer_pools_never_for_pods,
                load_balancer_pools_follow_calico_rules,
                ip_reservations_in_the_datastore_are_never_handed_out,
                ipam_configuration_limits_blocks_and_automatic_claims,
            ]);
        }
    };
    (@tests $make:expr, [$($check:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let harness = $make;
                suite::$check(&harness).await;
            }
        )*
    };
}

ipam_suite!(sqlite, SqliteHarness::new().await);
ipam_suite!(etcd, EtcdHarness::new().await);
ipam_suite!(kubernetes, KubeHarness::new().await);

/// The child role of the multi-process tests (see `ipam_support/children.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child role of the multi-process IPAM tests, started by them"]
async fn ipam_child() {
    let spec = std::env::var(CHILD_ENV).expect("started by a multi-process test with its role set");
    children::run(&spec).await;
}

fn spawn_child(role: &Role) -> tokio::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    tokio::process::Command::new(exe)
        .args(["--exact", "ipam_child", "--ignored", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, serde_json::to_string(role).unwrap())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a child")
}

const NODES: u32 = 3;
const ALLOCATIONS: u32 = 1200;

/// Three node processes allocate 1200 addresses each (releasing every other one at once) with
/// 40 requests in flight per node, from one pool: no address is handed out twice, and what the
/// datastore holds afterwards is exactly what the nodes hold — `ipam check` finds nothing.
async fn three_nodes_churn(h: &impl Harness) {
    let store = h.store();
    suite::pool(store, "churn", "10.40.0.0/18", 26).await;
    let target = h.child_target().expect("shared across processes");
    let children: Vec<_> = (0..NODES)
        .map(|n| {
            spawn_child(&Role::Churn {
                target: target.clone(),
                node: format!("node-{n}"),
                allocations: ALLOCATIONS,
                concurrency: 40,
            })
        })
        .collect();
    let mut held: Vec<(String, IpAddr)> = Vec::new();
    for child in children {
        let out = tokio::time::timeout(DEADLINE, child.wait_with_output()).await.expect("child finished").unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once(HELD).map(|(_, held)| held))
            .expect("the child reports what it holds");
        held.extend(serde_json::from_str::<Vec<(String, IpAddr)>>(line).unwrap());
    }
    assert_eq!(held.len(), (NODES * ALLOCATIONS / 2) as usize);
    verify_held(store, held).await;
    eprintln!(
        "three nodes: {} allocations, {} releases, 0 duplicates, 0 leaks",
        NODES * ALLOCATIONS,
        NODES * ALLOCATIONS / 2
    );
}

/// No address held twice; the datastore holds exactly `held`, each under its holder's handle;
/// `ipam check` finds nothing.
async fn verify_held(store: &tortie::datastore::Datastore, held: Vec<(String, IpAddr)>) {
    let unique: BTreeSet<IpAddr> = held.iter().map(|(_, ip)| *ip).collect();
    assert_eq!(unique.len(), held.len(), "duplicate addresses handed out");
    let alive: BTreeSet<String> = held.iter().map(|(h, _)| h.clone()).collect();
    let report = check(store, &CheckInput { alive_handles: Some(alive), ..Default::default() }).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.allocations, held.len(), "no leaked addresses");
    // Every held address is recorded under its holder's handle.
    let by_ip: BTreeMap<IpAddr, String> = held.into_iter().map(|(h, ip)| (ip, h)).collect();
    for block in store.list::<tortie::datastore::resources::IpamBlock>().await.unwrap().items {
        for ordinal in 0..block.spec.allocations.len() {
            if let Some(handle) = tortie::ipam::block_ops::handle_at(&block.spec, ordinal) {
                let ip = tortie::ipam::block_math::ip_at(&block.spec.cidr, ordinal);
                assert_eq!(by_ip.get(&ip).map(String::as_str), Some(handle), "{ip}");
            }
        }
    }
}

/// The Kubernetes stand-in lives in the test process, so its three nodes are three clients and
/// allocators in one process (each with its own connection), churning as the processes do.
async fn three_clients_churn(h: &impl Harness, allocations: u32) {
    use futures::StreamExt;
    let store = h.store();
    suite::pool(store, "churn", "10.42.0.0/20", 26).await;
    let mut runs = Vec::new();
    for n in 0..NODES {
        let node = format!("node-{n}");
        let ipam = tortie::ipam::Ipam::new(
            h.another_client().await,
            tortie::ipam::IpamOptions { node: node.clone(), ..Default::default() },
        );
        let allocator = tortie::ipam::Allocator::spawn(ipam);
        runs.push(tokio::spawn(async move {
            futures::stream::iter(0..allocations)
                .map(|i| {
                    let (allocator, handle) = (allocator.clone(), format!("{node}-{i}"));
                    async move {
                        let got = allocator
                            .allocate(suite::req(&handle, 4))
                            .await
                            .unwrap_or_else(|e| panic!("{handle}: {e}"));
                        if i % 2 == 1 {
                            assert_eq!(allocator.release_handle(&handle).await.unwrap(), 1);
                            None
                        } else {
                            Some((handle, got.ip))
                        }
                    }
                })
                .buffer_unordered(40)
                .filter_map(|x| async move { x })
                .collect::<Vec<_>>()
                .await
        }));
    }
    let mut held = Vec::new();
    for run in runs {
        held.extend(tokio::time::timeout(DEADLINE, run).await.expect("in time").expect("node run"));
    }
    assert_eq!(held.len(), (NODES * allocations / 2) as usize);
    verify_held(store, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_three_clients_churn_without_duplicates_or_leaks() {
    three_clients_churn(&KubeHarness::new().await, 300).await;
}

/// A node process killed after step `stage` of a claim: the node's next start repairs it, so
/// `ipam check` reports nothing and the node allocates.
async fn killed_mid_claim(h: &impl Harness, stage: u8) {
    let store = h.store();
    suite::pool(store, "p", "10.41.0.0/24", 26).await;
    let cidr = "10.41.0.64/26".parse().unwrap();
    let mut child = spawn_child(&Role::Claim { target: h.child_target().unwrap(), node: "n1".into(), cidr, stage });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(STAGE_REACHED) {
                return;
            }
        }
        panic!("the child ended before reaching its stage");
    })
    .await
    .expect("the child reached its stage");
    child.kill().await.expect("kill the child");
    let broken = check(store, &CheckInput::default()).await.unwrap();
    assert!(!broken.unfinished_affinities.is_empty(), "{broken:#?}");

    let node = suite::ipam(store, "n1");
    node.repair().await.unwrap();
    let report = check(store, &CheckInput::default()).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    let got = node.allocate(suite::req("after", 4)).await.unwrap();
    assert_eq!(got.block, cidr, "the repaired claim is the node's block");
}

const CRASH_ROUNDS: u64 = 10;
/// How many more allocations each round's child gets before it is killed than the previous
/// round's: the first round kills it right after its first answer, mid-way through the first
/// batch of 40, later rounds amid the small batches that follow.
const KILL_STEP: u64 = 13;

/// Ten rounds of a node process SIGKILLed with 40 allocations in flight. After each, the node's
/// start-up repair leaves nothing `ipam check` reports, and every address the datastore holds
/// is freed by releasing its handle — no address is lost to a crash.
async fn killed_mid_allocation(h: &impl Harness) {
    let store = h.store();
    suite::pool(store, "crash", "10.43.0.0/20", 26).await;
    let node = "n1";
    for round in 0..CRASH_ROUNDS {
        let role = Role::Allocate {
            target: h.child_target().unwrap(),
            node: node.into(),
            prefix: format!("r{round}"),
            concurrency: 40,
        };
        let before_kill = 1 + round * KILL_STEP;
        let mut child = spawn_child(&role);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.strip_prefix(ALLOCATED).and_then(|n| n.parse::<u64>().ok()) >= Some(before_kill) {
                    return;
                }
            }
            panic!("the child ended before allocating {before_kill} addresses");
        })
        .await
        .expect("the child allocated in time");
        child.kill().await.expect("SIGKILL the child");

        let repaired = suite::ipam(store, node);
        repaired.repair().await.unwrap();
        let report = check(store, &CheckInput::default()).await.unwrap();
        eprintln!("round {round}: {} allocations after the crash", report.allocations);
        assert!(report.is_clean(), "round {round}: {report:#?}");
        assert!(report.allocations as u64 >= before_kill, "round {round}: {} allocations", report.allocations);

        // Every address is freed by its handle.
        let mut handles = BTreeSet::new();
        for block in store.list::<tortie::datastore::resources::IpamBlock>().await.unwrap().items {
            for ordinal in 0..block.spec.allocations.len() {
                if block.spec.allocations[ordinal].is_some() {
                    let handle = tortie::ipam::block_ops::handle_at(&block.spec, ordinal);
                    handles.insert(handle.expect("every allocation names its handle").to_string());
                }
            }
        }
        for handle in &handles {
            assert_eq!(repaired.release_handle(handle).await.unwrap(), 1, "round {round}: release {handle}");
        }
        let after = check(store, &CheckInput::default()).await.unwrap();
        assert_eq!(after.allocations, 0, "round {round}: addresses left after releasing every handle");
        assert!(after.is_clean(), "round {round}: {after:#?}");
        let records = store.list::<tortie::datastore::resources::IpamHandle>().await.unwrap();
        assert!(records.items.is_empty(), "round {round}: handle records left: {:?}", records.items);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_node_killed_mid_allocation_loses_no_address() {
    killed_mid_allocation(&SqliteHarness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_node_killed_mid_allocation_loses_no_address() {
    killed_mid_allocation(&EtcdHarness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_three_node_processes_churn_without_duplicates_or_leaks() {
    three_nodes_churn(&SqliteHarness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_three_node_processes_churn_without_duplicates_or_leaks() {
    three_nodes_churn(&EtcdHarness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_killed_after_pending_affinity_is_repaired() {
    killed_mid_claim(&SqliteHarness::new().await, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_killed_after_block_create_is_repaired() {
    killed_mid_claim(&SqliteHarness::new().await, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_killed_after_pending_affinity_is_repaired() {
    killed_mid_claim(&EtcdHarness::new().await, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_killed_after_block_create_is_repaired() {
    killed_mid_claim(&EtcdHarness::new().await, 2).await;
}
